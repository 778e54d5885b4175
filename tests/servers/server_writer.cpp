// A writer process for the multi-process tests: increments a decimal counter `iterations` times
// through one adapter, or (mode `hold`) reads, prints READ and sleeps between its read and its
// write until it is killed.
//
//   noclobber_server_writer ADAPTER TABLE KEY ITERATIONS run|hold
//   ADAPTER: postgres | postgres_row_lock | redis | redis_lua | etcd | http
//   TABLE:   the PostgreSQL table (ignored by the others)
// Connection details come from the same environment variables as the tests.
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/http_etag.hpp>
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/adapters/redis.hpp>
#include <noclobber/read_modify_write.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
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

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s ADAPTER TABLE KEY ITERATIONS run|hold\n", argv[0]);
    return 2;
  }
  const std::string adapter = argv[1], table = argv[2], key = argv[3];
  const long n = std::atol(argv[4]);
  const bool hold = std::string(argv[5]) == "hold";
  if (adapter == "postgres") {
    noclobber::postgres::version_store s(env("NOCLOBBER_PG_CONNINFO"), table);
    return run_cas(s, key, n, hold);
  }
  if (adapter == "postgres_row_lock") {
    noclobber::postgres::version_store s(env("NOCLOBBER_PG_CONNINFO"), table);
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
    return run_cas(s, key, n, hold);
  }
  if (adapter == "etcd") {
    noclobber::etcd::store s(env("NOCLOBBER_ETCD_URL"));
    return run_cas(s, key, n, hold);
  }
  if (adapter == "http") {
    noclobber::http_etag::store s(env("NOCLOBBER_DAV_URL"));
    return run_cas(s, key, n, hold);
  }
  std::fprintf(stderr, "server_writer: unknown adapter '%s'\n", adapter.c_str());
  return 2;
}
