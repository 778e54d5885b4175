// A writer process for the multi-process tests: increments a decimal counter `iterations` times
// through one adapter, or (mode `hold`) reads, prints READ and sleeps between its read and its
// write until it is killed.
//
//   noclobber_server_writer ADAPTER TABLE KEY ITERATIONS MODE
//   ADAPTER: postgres | postgres_row_lock | redis | redis_lua | etcd | http
//   TABLE:   the PostgreSQL table (ignored by the others)
//   MODE:    run | gated | hold, and for redis / redis_lua the kill points inside write_if_match:
//     gated    like run, but once connected it prints READY and waits for a line on stdin (the
//              test's start barrier across processes: writer_process::go)
//     watched  (redis)      read, then WATCH + GET (the adapter's first pipeline, stamp compared)
//     queued   (redis)      ... and MULTI + SET queued (the second pipeline without its EXEC)
//     loaded   (redis_lua)  read, then SCRIPT LOAD: the next command would be EVALSHA
//     partial  (redis_lua)  ... and the EVALSHA sent except its final CRLF (the server holds a
//                           partial command)
//   In these four modes the writer names its connection `victim-KEY` (CLIENT SETNAME), prints
//   ARMED and sleeps until it is killed. The write it stops in front of would set the value to
//   1000000000 under the stamp deaddead...: if it ever ran, the counter would show it.
// Connection details come from the same environment variables as the tests.
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/http_etag.hpp>
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/adapters/redis.hpp>
#include <noclobber/read_modify_write.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <string_view>
#include <thread>

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    std::fprintf(stderr, "server_writer: %s is not set\n", name);
    std::exit(2);
  }
  return v;
}

[[noreturn]] void hold_forever() {
  std::printf("READ\n");
  std::fflush(stdout);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

// Mode `gated`: connected; wait for the test to release every writer at once.
void wait_at_gate(bool gated) {
  if (!gated) return;
  std::printf("READY\n");
  std::fflush(stdout);
  char line[16];
  if (std::fgets(line, sizeof line, stdin) == nullptr) std::exit(4);  // the test went away
}

std::string next_count(const std::optional<std::string>& cur) {
  return std::to_string((cur && !cur->empty() ? std::stoll(*cur) : 0) + 1);
}

template <class Store>
int run_cas(Store& s, const std::string& key, long n, bool hold) {
  noclobber::retry_policy policy;
  policy.max_attempts = 100000;
  policy.timeout = std::chrono::seconds(60);
  policy.backoff =
      noclobber::backoff_policy::full_jitter(std::chrono::microseconds(500), std::chrono::milliseconds(20));
  for (long i = 0; i < n; ++i) {
    auto r = noclobber::read_modify_write(
        s, key,
        [&](const std::optional<std::string>& cur) -> noclobber::update<std::string> {
          if (hold) hold_forever();
          return next_count(cur);
        },
        policy);
    if (!r.ok()) {
      std::fprintf(stderr, "server_writer: write %ld gave up: %s %s\n", i,
                   std::string(noclobber::to_string(r.last_status)).c_str(), r.last_error.message.c_str());
      return 1;
    }
  }
  return 0;
}

// One command on a raw hiredis connection; exits 3 on an I/O error or an error reply.
noclobber::redis::detail::reply_ptr redis_cmd(redisContext* c, std::initializer_list<std::string_view> args) {
  auto r = noclobber::redis::detail::command(c, args);
  if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
    std::fprintf(stderr, "server_writer: %s failed: %s\n", std::string(*args.begin()).c_str(),
                 r ? r->str : c->errstr);
    std::exit(3);
  }
  return r;
}

[[noreturn]] void armed_forever() {
  std::printf("ARMED\n");
  std::fflush(stdout);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

// Stops inside write_if_match at `mode` (see the top of this file) and waits to be killed. The
// adapter's own calls cannot be paused there, so this replays its commands on the store's
// connection: the same read, the same pipelines, up to the kill point.
[[noreturn]] void redis_stop_at(noclobber::redis::store& s, const std::string& key, const std::string& mode) {
  namespace rd = noclobber::redis;
  const std::string dead_payload = std::string("deaddeaddeaddeaddeaddeaddeaddead") + "1000000000";
  redis_cmd(s.native_handle(), {"CLIENT", "SETNAME", "victim-" + key});
  const auto cur = s.read(key);  // read_modify_write's read: GET
  if (!cur.found()) {
    std::fprintf(stderr, "server_writer: %s: key '%s' not found\n", mode.c_str(), key.c_str());
    std::exit(3);
  }
  redisContext* c = s.native_handle();
  if (mode == "watched" || mode == "queued") {
    // write_if_match, watch_multi_exec: WATCH + GET in one pipeline, then the stamp compare.
    redisAppendCommand(c, "WATCH %b", key.data(), key.size());
    redisAppendCommand(c, "GET %b", key.data(), key.size());
    void* w = nullptr;
    void* g = nullptr;
    if (redisGetReply(c, &w) != REDIS_OK || redisGetReply(c, &g) != REDIS_OK) std::exit(3);
    const rd::detail::reply_ptr watch(static_cast<redisReply*>(w)), get(static_cast<redisReply*>(g));
    if (watch->type == REDIS_REPLY_ERROR || get->type != REDIS_REPLY_STRING ||
        static_cast<std::size_t>(get->len) < rd::detail::stamp_size ||
        std::string(get->str, rd::detail::stamp_size) != cur.token) {  // changed since the read
      std::fprintf(stderr, "server_writer: %s: the key changed between read and WATCH\n", mode.c_str());
      std::exit(4);
    }
    if (mode == "queued") {
      // The second pipeline, MULTI + SET + EXEC, without its EXEC.
      redis_cmd(c, {"MULTI"});
      auto q = redis_cmd(c, {"SET", key, dead_payload});
      if (q->type != REDIS_REPLY_STATUS || std::string(q->str) != "QUEUED") std::exit(3);
    }
    armed_forever();
  }
  // write_if_match, lua_compare_and_set: SCRIPT LOAD on first use, then EVALSHA.
  auto sha = redis_cmd(c, {"SCRIPT", "LOAD", rd::detail::cas_script});
  if (mode == "partial") {
    char* cmd = nullptr;
    const int n = redisFormatCommand(
        &cmd, "EVALSHA %b 1 %b %b %b", sha->str, static_cast<std::size_t>(sha->len), key.data(), key.size(),
        cur.token.data(), cur.token.size(), dead_payload.data(), dead_payload.size());
    if (n < 2 || ::write(c->fd, cmd, static_cast<std::size_t>(n) - 2) != n - 2) std::exit(3);
    std::free(cmd);
  }
  armed_forever();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s ADAPTER TABLE KEY ITERATIONS MODE\n", argv[0]);
    return 2;
  }
  const std::string adapter = argv[1], table = argv[2], key = argv[3];
  const long n = std::atol(argv[4]);
  const std::string mode = argv[5];
  const bool hold = mode == "hold";
  const bool gated = mode == "gated";
  const bool redis_kill_point = adapter == "redis"
                                    ? (mode == "watched" || mode == "queued")
                                    : adapter == "redis_lua" && (mode == "loaded" || mode == "partial");
  if (mode != "run" && !gated && !hold && !redis_kill_point) {
    std::fprintf(stderr, "server_writer: mode '%s' is not valid for adapter '%s'\n", mode.c_str(),
                 adapter.c_str());
    return 2;
  }
  if (adapter == "postgres") {
    noclobber::postgres::store s(env("NOCLOBBER_PG_CONNINFO"), table);
    wait_at_gate(gated);
    return run_cas(s, key, n, hold);
  }
  if (adapter == "postgres_row_lock") {
    noclobber::postgres::store s(env("NOCLOBBER_PG_CONNINFO"), table);
    wait_at_gate(gated);
    for (long i = 0; i < n; ++i) {
      noclobber::postgres::row_lock_result r;
      do {
        r = s.update_locked(key, [&](const std::string& cur) {
          if (hold) hold_forever();  // holds the row lock until killed
          return noclobber::postgres::row_decision::set(next_count(cur));
        });
      } while (r.status == noclobber::postgres::row_lock_status::busy ||
               r.status == noclobber::postgres::row_lock_status::restart);
      if (!r.ok()) {
        std::fprintf(stderr, "server_writer: locked write %ld failed: %s\n", i, r.error.message.c_str());
        return 1;
      }
    }
    return 0;
  }
  if (adapter == "redis" || adapter == "redis_lua") {
    noclobber::redis::store s(env("NOCLOBBER_REDIS_ADDR"),
                              adapter == "redis" ? noclobber::redis::method::watch_multi_exec
                                                 : noclobber::redis::method::lua_compare_and_set);
    if (redis_kill_point) redis_stop_at(s, key, mode);
    wait_at_gate(gated);
    return run_cas(s, key, n, hold);
  }
  if (adapter == "etcd") {
    noclobber::etcd::store s(env("NOCLOBBER_ETCD_URL"));
    wait_at_gate(gated);
    return run_cas(s, key, n, hold);
  }
  if (adapter == "http") {
    noclobber::http_etag::store s(env("NOCLOBBER_DAV_URL"));
    wait_at_gate(gated);
    return run_cas(s, key, n, hold);
  }
  std::fprintf(stderr, "server_writer: unknown adapter '%s'\n", adapter.c_str());
  return 2;
}
