// A writer process for the lease-lock harness (test_server_lease_harness.cpp): THREADS threads
// each add 1 to a decimal counter at KEY, UPDATES times, on Redis (store + lease lock both on
// Redis), etcd (both on etcd) or PostgreSQL (a version-column table, advisory locks of
// session scope); or, BACKEND s3, each adds one uniquely named row to a SQLite database kept as
// one object on radosgw (the SQLite file in an object store), the lease lock on Redis. Modes:
//
//   cas     read_modify_write alone (conditional write, no lock)
//   fenced  fenced_read_modify_write: a Redis lease lock in front, the conditional write behind
//   blind   the Redis lease lock in front, an unconditional write behind (the unsafe usual way)
//   local   a keyed_mutex_map shared by the process's threads in front of the conditional write
//           (locked_read_modify_write: the in-process layer alone)
//   layered both layers: the keyed_mutex_map inside the process, the lease lock between
//           processes, the conditional write behind (the SQLite-file scenario's design)
//
//   noclobber_lease_writer MODE BACKEND KEY THREADS UPDATES TTL_MS ROLE
//   BACKEND: redis | etcd | postgres | s3
//   ROLE: plain | holder (thread 0, on its 3rd update, stops after its read: prints HOLDING and
//         waits for SIGUSR1 — the harness pauses or kills the process meanwhile)
//
// Protocol on stdout: READY once connected; then it waits for SIGUSR1 (so all writers start
// together); one line `A <attempts>` per applied update (conditional writes it took), `U` per
// update run again because its outcome stayed unknown; `L <n>` per
// thread at its end (lease requests it sent: tries, releases); DONE at the end. Exit status 0, or 1
// when an update gave up. Addresses from NOCLOBBER_REDIS_ADDR / NOCLOBBER_ETCD_URL /
// NOCLOBBER_PG_CONNINFO, and NOCLOBBER_RGW_* for s3. An update whose outcome stayed unknown
// (radosgw answers HTTP 500 to some conditional PUTs under load) is run again: adding a row is
// idempotent (INSERT OR IGNORE of the writer's own row name), so a second run cannot double it.
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/etcd_lease.hpp>
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/adapters/postgres_lease.hpp>
#include <noclobber/adapters/redis.hpp>
#include <noclobber/adapters/redis_lease.hpp>
#include <noclobber/adapters/s3.hpp>
#include <noclobber/fenced_read_modify_write.hpp>
#include <noclobber/keyed_mutex_map.hpp>
#include <noclobber/locked_read_modify_write.hpp>
#include <noclobber/naive_read_modify_write.hpp>
#include <noclobber/read_modify_write.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "s3_options.hpp"
#include "sqlite_image.hpp"

namespace {

namespace nc = noclobber;
std::mutex out_mutex;
noclobber::keyed_mutex_map<std::string> process_locks;  // the in-process layer (local, layered)

void say(const std::string& line) {
  std::lock_guard<std::mutex> lock(out_mutex);
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

void wait_sigusr1() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  int sig = 0;
  sigwait(&set, &sig);
}

nc::update<std::string> add_one(const std::optional<std::string>& cur) {
  return std::to_string((cur && !cur->empty() ? std::stoll(*cur) : 0) + 1);
}

struct config {
  std::string mode, backend, key, addr;
  int threads = 0, updates = 0;
  std::chrono::milliseconds ttl{0};
  bool holder = false;
};

/// One update's change: +1 on the counter, or (s3) the writer's own row in the SQLite image.
nc::update<std::string> step(const config& c, int index, int u, const std::optional<std::string>& cur) {
  if (c.backend != "s3") return add_one(cur);
  nc_sqlite::sqlite_db db(cur);
  db.exec("INSERT OR IGNORE INTO assets VALUES ('p" + std::to_string(::getpid()) + "-t" +
          std::to_string(index) + "-u" + std::to_string(u) + "', 0)");
  return db.image();
}

template <class Store, class Backend>
bool run_thread(const config& c, int index, Store& store, Backend& backend) {
  nc::lease_lock_options<std::string> opts;
  opts.ttl = c.ttl;
  opts.wait_backoff = nc::backoff_policy::full_jitter(std::chrono::milliseconds(1), c.ttl / 4);
  nc::lease_lock_map<Backend> locks(backend, opts);
  nc::retry_policy policy;
  policy.max_attempts = 100000;
  policy.timeout = std::chrono::seconds(120);
  policy.backoff =
      nc::backoff_policy::full_jitter(std::chrono::milliseconds(1), std::chrono::milliseconds(50));
  for (int u = 0; u < c.updates; ++u) {
    bool stop_here = c.holder && index == 0 && u == 2;
    auto fn = [&](const std::optional<std::string>& cur) {
      if (stop_here) {  // paused (or killed) between the read and the write, lease held
        stop_here = false;
        say("HOLDING");
        wait_sigusr1();
      }
      return step(c, index, u, cur);
    };
    unsigned attempts = 0;
    bool ok = false;
    bool unknown = false;
    auto note = [&](const auto& r) {
      attempts += r.attempts;
      ok = r.ok();
      unknown = !ok && r.indeterminate;
      if (unknown) say("U");  // run again below
      if (!ok && !unknown) {  // says why on stderr (the harness's output), so a failed run can be read
        std::fprintf(stderr, "noclobber_lease_writer: thread %d update %d: %s, indeterminate %d, %s: %s\n",
                     index, u, std::string(nc::to_string(r.outcome)).c_str(), r.indeterminate ? 1 : 0,
                     r.last_error.code.c_str(), r.last_error.message.c_str());
      }
    };
    for (int round = 0; round < 20 && (round == 0 || unknown); ++round) {
      if (c.mode == "cas") {
        note(nc::read_modify_write(store, c.key, fn, policy));
      } else if (c.mode == "local") {
        note(nc::locked_read_modify_write(process_locks, store, c.key, fn, policy));
      } else if (c.mode == "layered") {
        auto in_process = process_locks.lock(c.key);  // one thread per process asks the lease server
        note(nc::fenced_read_modify_write(locks, store, c.key, fn, policy));
      } else if (c.mode == "fenced") {
        note(nc::fenced_read_modify_write(locks, store, c.key, fn, policy));
      } else {
        auto g = locks.lock(c.key);
        note(nc::naive_read_modify_write(store, c.key, fn));
      }
    }
    if (!ok) return false;
    say("A " + std::to_string(attempts));
  }
  say("L " + std::to_string(locks.requests()));  // lease requests this thread sent (acquire, release)
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr,
                 "usage: noclobber_lease_writer cas|fenced|blind|local|layered redis|etcd|postgres|s3 KEY "
                 "THREADS UPDATES TTL_MS "
                 "plain|holder\n");
    return 2;
  }
  config c;
  c.mode = argv[1];
  c.backend = argv[2];
  c.key = argv[3];
  c.threads = std::atoi(argv[4]);
  c.updates = std::atoi(argv[5]);
  c.ttl = std::chrono::milliseconds(std::atoi(argv[6]));
  c.holder = std::string(argv[7]) == "holder";
  const char* addr = std::getenv(c.backend == "etcd"       ? "NOCLOBBER_ETCD_URL"
                                 : c.backend == "postgres" ? "NOCLOBBER_PG_CONNINFO"
                                                           : "NOCLOBBER_REDIS_ADDR");
  if (addr == nullptr ||
      (c.mode != "cas" && c.mode != "fenced" && c.mode != "blind" && c.mode != "local" &&
       c.mode != "layered") ||
      (c.backend != "redis" && c.backend != "etcd" && c.backend != "postgres" && c.backend != "s3") ||
      c.threads <= 0 || c.updates <= 0 || c.ttl.count() <= 0) {
    std::fprintf(stderr, "noclobber_lease_writer: bad arguments or NOCLOBBER_REDIS_ADDR unset\n");
    return 2;
  }
  c.addr = addr;
  // SIGUSR1 is blocked in every thread (inherited) and taken with sigwait.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  say("READY");
  wait_sigusr1();
  std::atomic<bool> all_ok{true};
  std::vector<std::thread> pool;
  for (int t = 0; t < c.threads; ++t) {
    pool.emplace_back([&, t] {
      try {
        bool ok = false;
        if (c.backend == "postgres") {
          nc::postgres::store store(c.addr, "lease_harness");
          store.ensure_table();
          nc::postgres::advisory_lease_backend backend(c.addr);
          ok = run_thread(c, t, store, backend);
        } else if (c.backend == "etcd") {
          nc::etcd::store store(c.addr);
          nc::etcd::lease_backend backend(c.addr);
          ok = run_thread(c, t, store, backend);
        } else if (c.backend == "s3") {
          nc::s3::store store(nc_s3::options_from(nc_s3::server::radosgw, [](const char* variable) {
            const char* v = std::getenv(variable);
            if (v == nullptr || *v == '\0') throw std::runtime_error(std::string(variable) + " is not set");
            return std::string(v);
          }));
          nc::redis::lease_backend backend(c.addr);
          ok = run_thread(c, t, store, backend);
        } else {
          nc::redis::store store(c.addr, nc::redis::method::lua_compare_and_set);
          nc::redis::lease_backend backend(c.addr);
          ok = run_thread(c, t, store, backend);
        }
        if (!ok) all_ok = false;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "noclobber_lease_writer: %s\n", e.what());
        all_ok = false;
      }
    });
  }
  for (auto& th : pool) th.join();
  say("DONE");
  return all_ok ? 0 : 1;
}
