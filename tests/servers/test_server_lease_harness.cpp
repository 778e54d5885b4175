// The lease-lock proof across processes (issue 15): 4 writer processes x 4 threads add 1 to one
// counter (tests/servers/lease_writer.cpp), on Redis, etcd and PostgreSQL (store and lock on one
// server); and each add a row to a SQLite file kept as one object on radosgw, the lease lock on
// Redis. One writer process is paused by the nemesis's pause_fault (SIGSTOP) between its read and
// its write while it holds the lease, until the others have taken the expired lease and written;
// then it is resumed (SIGCONT) and finishes.
//   lease lock + blind write:        the paused holder's late write erases the others' updates
//   lease lock + conditional write:  0 lost (the late write is refused, re-read, retried)
// And a holder killed (kill_fault, SIGKILL) while holding: the others proceed once its lease
// runs out, and no acknowledged update is lost. Figures (attempts per update for CAS alone and
// for lease + CAS) are printed for docs/lease_locks.md.
#include <catch2/catch.hpp>
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/adapters/redis.hpp>
#include <noclobber/race_harness/posix/process.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server_env.hpp"
#include "sqlite_image.hpp"
#include "test_server_s3_common.hpp"

namespace nc = noclobber;
using namespace std::chrono_literals;

namespace {

/// One lease_writer process; a reader thread counts its `A n` lines (acknowledged updates). The
/// counts are final once wait_exit() returned: it reaps the process and then waits for the reader
/// to reach the end of the pipe (lines the process wrote just before exiting may still be unread
/// when it is reaped).
class lease_writer {
 public:
  explicit lease_writer(std::vector<std::string> args, const char* binary = NOCLOBBER_LEASE_WRITER) {
    const int fd = nc_test::spawn_with_stdout_pipe(binary, std::move(args), pid_);
    reader_ = std::thread([this, fd] { read_lines(fd); });
  }
  lease_writer(const lease_writer&) = delete;
  lease_writer& operator=(const lease_writer&) = delete;
  ~lease_writer() {
    if (pid_ > 0) {  // a failed test: never leave a writer behind
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (reader_.joinable()) reader_.join();
  }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  void signal(int sig) const { REQUIRE(::kill(pid_, sig) == 0); }
  /// Waits until the writer printed `what` (READY, HOLDING); false after 30 s or at EOF.
  bool wait_for(std::atomic<bool>& flag) {
    for (int i = 0; i < 3000 && !flag.load() && !eof_.load(); ++i) std::this_thread::sleep_for(10ms);
    return flag.load();
  }
  bool wait_ready() { return wait_for(ready_); }
  bool wait_holding() { return wait_for(holding_); }
  /// Waits for exit (killed after 120 s) and for the reader to have read all it printed: the exit
  /// status, 128 + signal.
  int wait_exit() {
    int st = 0;
    for (int i = 0; i < 12000; ++i) {
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        reader_.join();  // EOF: the process is gone, and with it the pipe's only write end
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  /// Reaped elsewhere (kill_fault waits for it to be gone): the counts are final once this returns.
  void reaped() {
    pid_ = -1;
    reader_.join();
  }
  [[nodiscard]] long acknowledged() const { return acked_.load(); }
  [[nodiscard]] long attempts() const { return attempts_.load(); }
  [[nodiscard]] long lease_requests() const { return lease_requests_.load(); }
  [[nodiscard]] long unknown() const { return unknown_.load(); }

 private:
  void read_lines(int fd) {
    std::string cur;
    char buf[512];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] != '\n') {
          cur += buf[i];
          continue;
        }
        if (cur == "READY") ready_ = true;
        if (cur == "HOLDING") holding_ = true;
        if (cur.rfind("A ", 0) == 0) {
          ++acked_;
          attempts_ += std::stol(cur.substr(2));
        }
        if (cur.rfind("L ", 0) == 0) lease_requests_ += std::stol(cur.substr(2));
        if (cur == "U") ++unknown_;
        cur.clear();
      }
    }
    ::close(fd);
    eof_ = true;
  }
  pid_t pid_ = -1;
  std::thread reader_;
  std::atomic<bool> ready_{false}, holding_{false}, eof_{false};
  std::atomic<long> acked_{0}, attempts_{0}, lease_requests_{0}, unknown_{0};
};

long read_counter(const std::string& backend, const std::string& addr, const std::string& key) {
  if (backend == "s3") {  // the rows in the SQLite file
    nc::s3::store s(nc_s3::options_for(nc_s3::server::radosgw));
    auto r = s.read(key);
    REQUIRE(!r.failed());
    return r.found() ? static_cast<long>(nc_sqlite::sqlite_db(r.value).names().size()) : 0L;
  }
  auto value = [&](auto&& s) {
    auto r = s.read(key);
    REQUIRE(!r.failed());
    return r.found() ? std::stol(r.value) : 0L;
  };
  if (backend == "postgres") {
    nc::postgres::store s(addr, "lease_harness");  // run_writers created the table
    return value(s);
  }
  return backend == "etcd" ? value(nc::etcd::store(addr)) : value(nc::redis::store(addr));
}

constexpr int processes = 4, threads = 4;

/// Updates per writer thread: each s3 update moves a whole SQLite file through radosgw.
int updates_for(const std::string& backend) {
  return backend == "s3" ? 5 : 25;
}

struct run_result {
  long acknowledged = 0, stored = 0, attempts = 0, lease_requests = 0, unknown = 0;
  double seconds = 0;
};

enum class fault { none, pause, kill };

/// Runs the writers; with a fault, process 0 is the holder that stops after its read.
run_result run_writers(const std::string& backend, const std::string& mode, fault f, int ttl_ms) {
  const std::string addr =
      nc_test::server_env(backend == "etcd"       ? "NOCLOBBER_ETCD_URL"
                          : backend == "postgres" ? "NOCLOBBER_PG_CONNINFO"
                                                  : "NOCLOBBER_REDIS_ADDR");  // s3: its lease server
  const std::string key = nc_test::unique_name("lease_" + mode) + (backend == "s3" ? ".sqlite" : "");
  const int updates = updates_for(backend);
  if (backend == "postgres") nc::postgres::store(addr, "lease_harness").ensure_table();
  std::vector<std::unique_ptr<lease_writer>> ws;
  for (int p = 0; p < processes; ++p) {
    ws.push_back(std::make_unique<lease_writer>(
        std::vector<std::string>{mode, backend, key, std::to_string(threads), std::to_string(updates),
                                 std::to_string(ttl_ms), p == 0 && f != fault::none ? "holder" : "plain"}));
  }
  for (auto& w : ws) REQUIRE(w->wait_ready());
  const auto start = std::chrono::steady_clock::now();
  // With a fault, the holder starts alone and the others only once it holds the lease: had they
  // started together, a slow holder could reach its stop after the others had written all their
  // updates, leaving nobody to take the expired lease (a CI run saw the counter stay put).
  if (f != fault::none) {
    lease_writer& holder = *ws[0];
    holder.signal(SIGUSR1);
    REQUIRE(holder.wait_holding());  // read under the lease, stopped before its write
    const long before = read_counter(backend, addr, key);
    for (std::size_t p = 1; p < ws.size(); ++p) ws[p]->signal(SIGUSR1);
    auto target = [&](std::uint64_t) {
      return nc::posix::process_target{{holder.pid()}, "lease holder", "0"};
    };
    if (f == fault::pause) {
      nc::posix::pause_fault pause("pause-holder", target);
      INFO(pause.inject(0));
      // The others can only write once the holder's lease has run out on the server.
      for (int i = 0; i < 3000 && read_counter(backend, addr, key) < before + 5; ++i)
        std::this_thread::sleep_for(10ms);
      REQUIRE(read_counter(backend, addr, key) >= before + 5);
      INFO(pause.heal());
      holder.signal(SIGUSR1);  // resumed: it goes on to write what it read before the pause
    } else {
      nc::posix::kill_fault kill("kill-holder", target, {"true"});
      INFO(kill.inject(0));
      const pid_t dead = holder.pid();  // kill_fault waited until it was gone (a zombie until reaped here)
      REQUIRE(::waitpid(dead, nullptr, 0) == dead);
      holder.reaped();
    }
  } else {
    for (auto& w : ws) w->signal(SIGUSR1);  // all start together
  }
  run_result out;
  for (std::size_t p = 0; p < ws.size(); ++p) {
    if (f == fault::kill && p == 0) continue;
    CHECK(ws[p]->wait_exit() == 0);
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (auto& w : ws) {
    out.acknowledged += w->acknowledged();
    out.attempts += w->attempts();
    out.lease_requests += w->lease_requests();
    out.unknown += w->unknown();
  }
  out.stored = read_counter(backend, addr, key);
  return out;
}

void print(const std::string& backend, const char* what, const run_result& r) {
  const double n = r.acknowledged > 0 ? static_cast<double>(r.acknowledged) : 1.0;
  std::printf(
      "lease harness %-8s %-28s acked %4ld stored %4ld lost %4ld | per update: conditional writes %.3f, "
      "lease requests %.2f | unknown outcomes run again %ld | %.2f s\n",
      backend.c_str(), what, r.acknowledged, r.stored, r.acknowledged - r.stored,
      static_cast<double>(r.attempts) / n, static_cast<double>(r.lease_requests) / n, r.unknown, r.seconds);
}

// TTLs: Redis and PostgreSQL (idle_session_timeout) take milliseconds; etcd whole seconds with a
// 2 s minimum (it rounds up).
// s3: the holder downloads and uploads a SQLite file under the lease, slower on a loaded radosgw.
int short_ttl(const std::string& backend) {
  return backend == "etcd" ? 2000 : backend == "s3" ? 1000 : 300;
}

void paused_holder(const std::string& backend) {
  const run_result blind = run_writers(backend, "blind", fault::pause, short_ttl(backend));
  print(backend, "lease + blind, paused holder", blind);
  CHECK(blind.acknowledged == processes * threads * updates_for(backend));
  // The resumed holder's write read a value 5 or more writes old. Whichever way it lands, the
  // chain of writes each reading its predecessor is broken, so something is lost: either the
  // writes since its read (nobody wrote on top of it before reading it) or its own update (a
  // writer that read before it wrote after it). Which, depends on timing; that one is lost does not.
  CHECK(blind.stored < blind.acknowledged);

  const run_result fenced = run_writers(backend, "fenced", fault::pause, short_ttl(backend));
  print(backend, "lease + CAS, paused holder", fenced);
  CHECK(fenced.acknowledged == processes * threads * updates_for(backend));
  CHECK(fenced.stored == fenced.acknowledged);
}

void killed_holder(const std::string& backend) {
  const run_result r = run_writers(backend, "fenced", fault::kill, short_ttl(backend));
  print(backend, "lease + CAS, killed holder", r);
  // the holder had acknowledged 2 updates on thread 0 (and some on its other threads) before it died
  CHECK(r.acknowledged >= (processes - 1) * threads * updates_for(backend) + 2);
  CHECK(r.stored >= r.acknowledged);                // nothing acknowledged lost; at most the killed
  CHECK(r.stored <= r.acknowledged + threads - 1);  // process's other threads' in-flight writes
}

void attempts_per_update(const std::string& backend) {
  const run_result cas = run_writers(backend, "cas", fault::none, 5000);
  const run_result fenced = run_writers(backend, "fenced", fault::none, 5000);
  print(backend, "CAS alone", cas);
  print(backend, "lease + CAS", fenced);
  CHECK(cas.stored == cas.acknowledged);
  CHECK(fenced.stored == fenced.acknowledged);
  CHECK(cas.acknowledged == processes * threads * updates_for(backend));
  CHECK(fenced.acknowledged == processes * threads * updates_for(backend));
}

// The two layers across processes: CAS alone, the in-process lock + CAS, the lease + CAS, and
// both locks + CAS, in one run.
void layers(const std::string& backend) {
  for (const char* mode : {"cas", "local", "fenced", "layered"}) {
    const run_result r = run_writers(backend, mode, fault::none, 5000);
    print(backend, mode, r);
    CHECK(r.acknowledged == processes * threads * updates_for(backend));
    CHECK(r.stored == r.acknowledged);
  }
}

}  // namespace

// The harness itself: a writer's last lines may still be in the pipe when it is reaped. Here the
// line comes 300 ms after the process exited, from a child it left running with the pipe, so a
// count read as soon as the process is reaped misses it every time. (A CI run read 79 of 80
// acknowledged updates, with all 80 stored.)
TEST_CASE(
    "lease harness: a writer's counts include every line on its pipe, also lines read after it was reaped",
    "[server][lease][harness]") {
  lease_writer w({"-c", "(sleep 0.3; echo 'A 2'; echo U) & echo 'A 1'; exit 0"}, "/bin/sh");
  CHECK(w.wait_exit() == 0);
  CHECK(w.acknowledged() == 2);
  CHECK(w.attempts() == 3);
  CHECK(w.unknown() == 1);
}

TEST_CASE(
    "lease harness, redis: a holder paused past its lease, then blind write loses, conditional write loses 0",
    "[server][redis][lease][harness]") {
  paused_holder("redis");
}
TEST_CASE(
    "lease harness, redis: a holder killed while holding, then the others proceed, nothing acknowledged is "
    "lost",
    "[server][redis][lease][harness]") {
  killed_holder("redis");
}
TEST_CASE("lease harness, redis: attempts per update, CAS alone against lease + CAS (no fault)",
          "[server][redis][lease][harness]") {
  attempts_per_update("redis");
}
TEST_CASE(
    "lease harness, etcd: a holder paused past its lease, then blind write loses, conditional write loses 0",
    "[server][etcd][lease][harness]") {
  paused_holder("etcd");
}
TEST_CASE(
    "lease harness, etcd: a holder killed while holding, then the others proceed, nothing acknowledged is "
    "lost",
    "[server][etcd][lease][harness]") {
  killed_holder("etcd");
}
TEST_CASE("lease harness, etcd: attempts per update, CAS alone against lease + CAS (no fault)",
          "[server][etcd][lease][harness]") {
  attempts_per_update("etcd");
}
TEST_CASE(
    "lease harness, postgres: a holder paused past its lease, then blind write loses, conditional write "
    "loses 0",
    "[server][postgres][lease][harness]") {
  paused_holder("postgres");
}
TEST_CASE(
    "lease harness, postgres: a holder killed while holding, then the others proceed, nothing acknowledged "
    "is "
    "lost",
    "[server][postgres][lease][harness]") {
  killed_holder("postgres");
}
TEST_CASE("lease harness, postgres: attempts per update, CAS alone against lease + CAS (no fault)",
          "[server][postgres][lease][harness]") {
  attempts_per_update("postgres");
}
TEST_CASE("lease harness, redis: CAS alone, in-process lock + CAS, lease + CAS, both locks + CAS",
          "[server][redis][lease][harness]") {
  layers("redis");
}
TEST_CASE("lease harness, postgres: CAS alone, in-process lock + CAS, lease + CAS, both locks + CAS",
          "[server][postgres][lease][harness]") {
  layers("postgres");
}
TEST_CASE("lease harness, etcd: CAS alone, in-process lock + CAS, lease + CAS, both locks + CAS",
          "[server][etcd][lease][harness]") {
  layers("etcd");
}

// The SQLite file kept as one object (radosgw), the lease lock on Redis: the scenario's design
// across processes (lease lock between them, keyed_mutex_map inside each, If-Match on the object).
TEST_CASE(
    "lease harness, SQLite file in an S3 object, Redis lease: a holder paused past its lease, then blind "
    "write loses rows, conditional write loses 0",
    "[server][s3][radosgw][redis][lease][harness][object_store_file]") {
  paused_holder("s3");
}
TEST_CASE(
    "lease harness, SQLite file in an S3 object, Redis lease: CAS alone, in-process lock + CAS, lease + "
    "CAS, both locks + CAS",
    "[server][s3][radosgw][redis][lease][harness][object_store_file]") {
  layers("s3");
}
