// Redis under failover (scripts/clusters/redis.sh): a primary, 2 replicas and 3 Sentinels on
// loopback. 16 writers race through read_modify_write, each on its own redis::sentinel_store
// (which asks the Sentinels for the primary and moves to the new one after a failover), while the
// nemesis SIGKILLs the primary (the Sentinels promote a replica; heal: the old node comes back as
// a replica) or SIGSTOPs it (the Sentinels promote a replica; heal: SIGCONT, the Sentinels demote
// the old primary, which drops what only it had). Three configurations:
//   async         plain asynchronous replication
//   wait1         the adapter sends WAIT 1 <ms> after each write; fewer replicas → indeterminate
//   min-replicas  every node runs with min-replicas-to-write 1 (min-replicas-max-lag 2)
// Nothing may be lost to a stale read or applied twice; what vanished is measured and printed
// (docs/faults.md has the table from the repeated runs, scripts/fault_matrix.sh). The kill cells
// are hidden ([.], no [fault] tag: not in CI's faults stage, whose 6 minutes they would overrun);
// scripts/fault_matrix.sh runs them by name. The [latency] cell puts a TCP proxy
// (faults/latency_proxy.hpp) between plain redis::stores and the primary.
#include <noclobber/adapters/redis.hpp>
#include <noclobber/adapters/redis_sentinel.hpp>
#include <noclobber/race_harness/posix/process.hpp>

#include <unistd.h>

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <memory>
#include <string>

#include "faults/cluster.hpp"
#include "faults/fault_check.hpp"
#include "faults/latency_proxy.hpp"

namespace posix = noclobber::posix;
using nc_faults::cluster;

namespace {

enum class replication { async, wait1, min_replicas };

const char* name_of(replication r) {
  switch (r) {
    case replication::async:
      return "async";
    case replication::wait1:
      return "wait1";
    case replication::min_replicas:
      return "min-replicas";
  }
  return "?";
}

std::vector<std::string> start_args(replication r) {
  if (r == replication::min_replicas) return {"--min-replicas", "1"};
  return {};
}

noclobber::redis::sentinel_options options_of(const cluster& c, replication r) {
  noclobber::redis::sentinel_options o;
  o.sentinels = noclobber::redis::split_addresses(c.env("NOCLOBBER_REDIS_SENTINELS"));
  o.master_name = c.env("NOCLOBBER_REDIS_MASTER");
  o.timeout = std::chrono::seconds(5);
  if (r == replication::wait1) {
    o.wait_replicas = 1;
    o.wait_timeout = std::chrono::milliseconds(500);
  }
  return o;
}

nc_faults::fault_case<noclobber::redis::sentinel_store> redis_case(const cluster& c, replication r,
                                                                   const std::string& fault) {
  nc_faults::fault_case<noclobber::redis::sentinel_store> fc;
  fc.store_name = std::string("redis-sentinel-") + name_of(r);
  fc.fault_name = fault;
  // One fault per run: a failover takes the Sentinels 2-3 s; max_hold bounds a pause that stops
  // every writer (their requests wait on the paused primary). CI's short form: 16 x 125 ops (a
  // pause cell's time is the cluster start, the pause and the Sentinels' demotion of the old
  // primary, ~8 + 4 + 10 s: 8,000 ops took 27-32 s a run, 2,000 ops 27-28 s);
  // scripts/fault_matrix.sh runs 16 x 500.
  nc_faults::size_from_env(fc, 125, 1, std::chrono::seconds(4));
  const auto o = options_of(c, r);
  fc.make_store = [o](unsigned) { return std::make_unique<noclobber::redis::sentinel_store>(o); };
  fc.settle = [&c] { (void)c.run("wait-settled"); };
  return fc;
}

// The node the Sentinels name as primary, asked directly (a script takes ~1 s on a loaded
// machine: the writers may be done by then), and its redis-server process.
posix::process_target primary_of(const cluster& c) {
  noclobber::store_error e;
  for (const std::string& a : noclobber::redis::split_addresses(c.env("NOCLOBBER_REDIS_SENTINELS"))) {
    const auto [host, port] = noclobber::redis::parse_address(a);
    noclobber::redis::connect_options o;
    o.host = host;
    o.port = port;
    o.timeout = std::chrono::seconds(2);
    noclobber::write_status failure{};
    auto ctx = noclobber::redis::detail::connect(o, e, failure);
    if (!ctx) continue;
    auto r = noclobber::redis::detail::command(
        ctx.get(), {"SENTINEL", "get-master-addr-by-name", c.env("NOCLOBBER_REDIS_MASTER")});
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) continue;
    const std::string primary_port = r->element[1]->str;
    for (const char* n : {"1", "2", "3"}) {
      const std::string node = n;
      std::ifstream port_file(c.state() + "/n" + node + "/port");
      std::string node_port;
      port_file >> node_port;
      if (node_port != primary_port) continue;
      const pid_t pid = posix::read_pid_file(c.state() + "/n" + node + "/pid");
      return {{pid}, "Redis n" + node + " (primary)", node};
    }
  }
  throw std::runtime_error("no Sentinel names a primary of this cluster");
}

// SIGKILL the primary and wait until the Sentinels promote a replica (the moment of the fault and
// the failover in one step); heal: the killed node comes back, empty, as a replica of the new
// primary (never as a primary: an empty primary would wipe its replicas).
std::shared_ptr<noclobber::fault_action> kill_primary(const cluster& c) {
  auto down = std::make_shared<std::string>();
  return std::make_shared<noclobber::function_fault>(
      "kill-primary",
      [&c, down](std::uint64_t) {
        const posix::process_target t = primary_of(c);
        const auto t0 = std::chrono::steady_clock::now();
        ::kill(t.pids.front(), SIGKILL);
        if (!posix::wait_gone(t.pids, std::chrono::seconds(10)))
          throw std::runtime_error(t.label + " survived SIGKILL");
        *down = t.id;
        const std::string promoted = c.run("wait-failover", {t.id});
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
        return "SIGKILL " + t.label + ", " + promoted + " " + std::to_string(ms.count()) + " ms later";
      },
      [&c, down] {
        if (down->empty()) return std::string("nothing to heal");
        const std::string node = *down;
        down->clear();
        return c.run("restart", {node});
      });
}

// SIGSTOP the primary; heal SIGCONT. The Sentinels promote a replica while it is stopped (after
// 1 s down plus the election), and demote it once it answers again.
std::shared_ptr<noclobber::fault_action> pause_primary(const cluster& c) {
  return std::make_shared<posix::pause_fault>("pause-primary", [&c](std::uint64_t) { return primary_of(c); });
}

nc_faults::fault_result run_cell(replication r, bool kill) {
  cluster c("redis.sh", start_args(r));
  auto fc = redis_case(c, r, kill ? "kill-primary" : "pause-primary");
  fc.actions = {kill ? kill_primary(c) : pause_primary(c)};
  auto result = nc_faults::run_fault_case(fc);
  nc_faults::check_run(result, fc.nemesis.faults);
  return result;
}

}  // namespace

TEST_CASE("Redis Sentinel, primary SIGKILLed, asynchronous replication: measured, not assumed",
          "[.][fault_long][redis][kill][async]") {
  nc_faults::check_strategy_sound(run_cell(replication::async, true));
}

TEST_CASE("Redis Sentinel, primary SIGKILLed, WAIT 1 after each write: measured, not assumed",
          "[.][fault_long][redis][kill][wait1]") {
  nc_faults::check_strategy_sound(run_cell(replication::wait1, true));
}

TEST_CASE("Redis Sentinel, primary SIGKILLed, min-replicas-to-write 1: measured, not assumed",
          "[.][fault_long][redis][kill][min_replicas]") {
  nc_faults::check_strategy_sound(run_cell(replication::min_replicas, true));
}

TEST_CASE("Redis Sentinel, primary paused, asynchronous replication: measured, not assumed",
          "[fault][redis][pause][async]") {
  nc_faults::check_strategy_sound(run_cell(replication::async, false));
}

TEST_CASE("Redis Sentinel, primary paused, WAIT 1 after each write: measured, not assumed",
          "[fault][redis][pause][wait1]") {
  nc_faults::check_strategy_sound(run_cell(replication::wait1, false));
}

TEST_CASE("Redis Sentinel, primary paused, min-replicas-to-write 1: measured, not assumed",
          "[fault][redis][pause][min_replicas]") {
  nc_faults::check_strategy_sound(run_cell(replication::min_replicas, false));
}

TEST_CASE("Redis: a primary short of min-replicas-to-write refuses a write as transient, not permanent",
          "[fault][redis][noreplicas]") {
  // The primary demands 3 replicas, 2 exist: every write is refused with NOREPLICAS and nothing
  // runs. Before NOREPLICAS was classed transient, and before a write refused while queued in
  // MULTI answered with its own error instead of EXEC's EXECABORT, read_modify_write gave up on
  // it as permanent (84 % of the ops of a paused-primary run with min-replicas-to-write 1).
  cluster c("redis.sh");
  noclobber::redis::sentinel_store s(options_of(c, replication::async));
  REQUIRE(s.create_if_absent("noreplicas", "v").status == noclobber::write_status::applied);
  const auto before = s.read("noreplicas");
  REQUIRE(before.found());
  (void)c.run("cli", {primary_of(c).id, "CONFIG", "SET", "min-replicas-to-write", "3"});
  const auto created = s.create_if_absent("noreplicas2", "v");  // SET NX
  INFO(created.error.code << " " << created.error.message);
  CHECK(created.status == noclobber::write_status::transient);
  CHECK(created.error.message.starts_with("NOREPLICAS"));
  for (auto m : {noclobber::redis::method::watch_multi_exec, noclobber::redis::method::lua_compare_and_set}) {
    auto o = options_of(c, replication::async);
    o.write_method = m;
    noclobber::redis::sentinel_store w(o);
    const auto written = w.write_if_match("noreplicas", before.token, "w");  // MULTI/EXEC or EVALSHA
    INFO(written.error.code << " " << written.error.message);
    CHECK(written.status == noclobber::write_status::transient);
    CHECK(written.error.message.find("NOREPLICAS") != std::string::npos);
    CHECK(w.connects() == 1);  // refused by the primary itself: no reason to look for another
  }
  const auto after = s.read("noreplicas");
  REQUIRE(after.found());
  CHECK(after.token == before.token);  // nothing ran
}

TEST_CASE("Redis Sentinel: the store follows the primary to the promoted replica", "[fault][redis][follow]") {
  cluster c("redis.sh");
  noclobber::redis::sentinel_store s(options_of(c, replication::async));
  REQUIRE(s.create_if_absent("follow", "one").status == noclobber::write_status::applied);
  const std::string before = s.primary();
  const posix::process_target t = primary_of(c);
  ::kill(t.pids.front(), SIGKILL);
  REQUIRE(posix::wait_gone(t.pids, std::chrono::seconds(10)));
  const auto lost = s.read("follow");  // the dead primary: transient, and the store forgets it
  CHECK(lost.status == noclobber::read_status::transient);
  CHECK(s.primary().empty());
  (void)c.run("wait-failover", {t.id});
  noclobber::read_result<std::string, std::string> r;
  for (int i = 0; i < 100; ++i) {
    r = s.read("follow");
    if (!r.failed()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  REQUIRE(r.status == noclobber::read_status::found);
  CHECK(r.value == "one");  // replicated before the kill (WAIT-free: it had seconds)
  CHECK(s.primary() != before);
  CHECK(s.connects() == 2);
  CHECK(s.write_if_match("follow", r.token, "two").status == noclobber::write_status::applied);

  // docs/adapters/redis.md's example, against the promoted primary (scripts/test_servers.sh has
  // no Sentinels to run it with).
  const std::string example =
      std::string(NOCLOBBER_BINARY_DIR) + "/examples/adapters/example_adapters_redis_sentinel";
  if (::access(example.c_str(), X_OK) != 0) {
    WARN("not built (NOCLOBBER_BUILD_EXAMPLES off): " << example);
    return;
  }
  const auto ran =
      posix::run_command({"env", "NOCLOBBER_REDIS_SENTINELS=" + c.env("NOCLOBBER_REDIS_SENTINELS"),
                          "NOCLOBBER_REDIS_MASTER=" + c.env("NOCLOBBER_REDIS_MASTER"), example},
                         std::chrono::seconds(30));
  INFO(ran.output);
  CHECK(ran.ok());
}

TEST_CASE(
    "Redis: 1.5 s of latency through a TCP proxy, 1 s client timeout: nothing lost, vanished or doubled",
    "[fault][redis][latency]") {
  // Every chunk sent during the fault waits 1.5 s in the proxy, so each client gives up on its
  // request after 1 s (indeterminate when it was an EXEC or EVALSHA) while the request still
  // reaches the server later: a write lands after its writer was told "unknown", and after the
  // heal possibly after that writer's next request. The unknown-outcome rule resends only the same
  // request, conditioned on the same version, so nothing may be applied twice. Replication and
  // the Sentinels bypass the proxy: no failover.
  cluster c("redis.sh");
  const std::string node = primary_of(c).id;
  nc_faults::latency_proxy proxy("127.0.0.1", std::stoi(c.run("port", {node})));
  nc_faults::fault_case<noclobber::redis::store> fc;
  fc.store_name = "redis-proxied";
  nc_faults::latency_cell(fc, proxy, std::chrono::milliseconds(1500), 60);
  const int port = proxy.port();
  fc.make_store = [port](unsigned) {
    return std::make_unique<noclobber::redis::store>(
        "127.0.0.1", port, noclobber::redis::method::watch_multi_exec, std::chrono::seconds(1));
  };
  const auto result = nc_faults::run_fault_case(fc);
  nc_faults::check_run(result, fc.nemesis.faults);
  nc_faults::check_no_loss(result);
  CHECK(proxy.delayed_chunks() > 0);
}
