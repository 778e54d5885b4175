// The race harness on embedded SQLite: one connection per writer, on one file, and writers in
// several processes (the test binary spawns itself). Naive loses exactly what forced mode
// forces; read_modify_write and lock + CAS lose nothing.
#include <noclobber/adapters/sqlite.hpp>
#include <noclobber/catch2/race_harness.hpp>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "temp_db.hpp"

namespace nc = noclobber;
using sqlite_store = nc::sqlite::store;
using options_t = nc::race_options_for<sqlite_store>;

namespace {

options_t options(nc::race_mode mode, unsigned writers, unsigned ops, const char* strategy) {
  options_t o;
  o.mode = mode;
  o.writers = writers;
  o.ops_per_writer = ops;
  o.store_name = "sqlite";
  o.strategy_name = strategy;
  o.keys = {"location/42.db"};
  return o;
}

auto connections(const std::string& path) {
  return [path](unsigned) { return sqlite_store(path); };
}

nc::race_report run(const std::string& path, const options_t& o) {
  if (o.strategy_name == "naive") return nc::run_race_per_writer(connections(path), nc::naive_strategy{}, o);
  if (o.strategy_name == "cas") return nc::run_race_per_writer(connections(path), nc::cas_strategy{}, o);
  return nc::run_race_per_writer(connections(path), nc::locked_cas_strategy<std::string>{}, o);
}

}  // namespace

TEST_CASE("sqlite race: naive forced writers lose W - 1; CAS and lock + CAS lose nothing",
          "[sqlite][race][concurrency]") {
  noclobber_test::temp_db file("race");
  const auto naive = run(file.path(), options(nc::race_mode::forced, 8, 1, "naive"));
  INFO(naive.to_text());
  REQUIRE(naive.lost() == 7);
  REQUIRE_FALSE(naive.writers_serialised);

  const auto cas = run(file.path(), options(nc::race_mode::forced, 8, 15, "cas"));
  NOCLOBBER_REQUIRE_NO_LOST_UPDATES(cas);
  REQUIRE(cas.check.applied == 8 * 15);
  REQUIRE(cas.retries > 0);

  auto lo = options(nc::race_mode::forced, 8, 15, "locked");
  lo.barrier_timeout = std::chrono::milliseconds(100);
  const auto locked = run(file.path(), lo);
  NOCLOBBER_REQUIRE_NO_LOST_UPDATES(locked);
  REQUIRE(locked.writers_serialised);
}

TEST_CASE("sqlite race: explore finds the naive loss and replays it; CAS survives",
          "[sqlite][race][concurrency]") {
  noclobber_test::temp_db file("explore");
  auto o = options(nc::race_mode::explore, 8, 2, "naive");
  o.iterations = 10;
  o.stall_timeout = std::chrono::seconds(5);  // nothing blocks here; keep a slow machine deterministic
  const auto naive = run(file.path(), o);
  INFO(naive.to_text());
  REQUIRE(naive.failing_iterations == 1);
  REQUIRE(naive.replay_deterministic == std::optional<bool>(true));
  o.strategy_name = "cas";
  o.iterations = 5;
  const auto cas = run(file.path(), o);
  NOCLOBBER_REQUIRE_NO_LOST_UPDATES(cas);
}

TEST_CASE("sqlite race: stress over several keys", "[sqlite][race][concurrency]") {
  noclobber_test::temp_db file("stress");
  auto o = options(nc::race_mode::stress, 6, 40, "cas");
  o.keys = {"a", "b", "c"};
  const auto cas = run(file.path(), o);
  NOCLOBBER_REQUIRE_NO_LOST_UPDATES(cas);
  REQUIRE(cas.check.applied == 6 * 40);
}

// ---- several processes on one file ----------------------------------------------------------

// Run by the parent test below through NOCLOBBER_SQLITE_CHILD="path mode strategy first writers ops out".
TEST_CASE("sqlite race child process", "[.][sqlite_child]") {
  const char* spec = std::getenv("NOCLOBBER_SQLITE_CHILD");
  REQUIRE(spec != nullptr);
  std::istringstream in(spec);
  std::string path, mode, strategy, out;
  unsigned first = 0, writers = 0, ops = 0;
  in >> path >> mode >> strategy >> first >> writers >> ops >> out;
  REQUIRE(!out.empty());
  auto o = options(nc::parse_race_mode(mode), writers, ops, strategy.c_str());
  o.first_writer = first;
  o.barrier_timeout = std::chrono::milliseconds(strategy == "locked" ? 100 : 2000);
  const auto report = run(path, o);
  REQUIRE(report.op_errors == 0);
  std::ofstream(out) << nc::serialize_history(report.history);
}

namespace {

// Spawns `processes` copies of this binary, each running `writers` writers; merges their
// histories and checks them against the file's final state.
nc::race_check run_processes(const std::string& path, const std::string& mode, const std::string& strategy,
                             unsigned processes, unsigned writers, unsigned ops) {
  sqlite_store db(path);
  const std::string key = "location/42.db";
  const auto workload = nc::append_workload();
  auto version = [&] {
    const auto r = db.read(key);
    return r.found() ? workload.id_of(r.value) : nc::initial_version;
  };
  nc::race_history merged;
  merged.keys = {key};
  merged.initial_versions = {version()};

  std::vector<pid_t> children;
  std::vector<std::string> outs;
  for (unsigned p = 0; p < processes; ++p) {
    outs.push_back(path + ".history" + std::to_string(p));
    const std::string spec = "NOCLOBBER_SQLITE_CHILD=" + path + " " + mode + " " + strategy + " " +
                             std::to_string(1 + p * writers) + " " + std::to_string(writers) + " " +
                             std::to_string(ops) + " " + outs.back();
    std::vector<std::string> env_strings{spec};
    for (char** e = ::environ; *e != nullptr; ++e) {  // <unistd.h> (_GNU_SOURCE)
      if (std::string_view(*e).rfind("NOCLOBBER_SQLITE_CHILD=", 0) != 0) env_strings.emplace_back(*e);
    }
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string exe = "/proc/self/exe", name = "sqlite race child process", quiet = "--out=/dev/null";
    char* argv[] = {exe.data(), name.data(), quiet.data(), nullptr};
    pid_t pid = 0;
    REQUIRE(posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, envp.data()) == 0);
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
  }
  for (const auto& out : outs) {
    std::ifstream f(out);
    std::stringstream text;
    text << f.rdbuf();
    nc::append_history(merged, text.str());
    std::remove(out.c_str());
  }
  merged.final_versions = {version()};
  REQUIRE(merged.writes.size() >= std::size_t{processes} * writers * ops);
  return nc::check_race_history(merged);
}

}  // namespace

TEST_CASE("sqlite race: several processes on one file", "[sqlite][race][process][concurrency]") {
  constexpr unsigned processes = 3, writers = 4, ops = 20;
  SECTION("CAS loses nothing across processes") {
    noclobber_test::temp_db file("procs_cas");
    const auto c = run_processes(file.path(), "stress", "cas", processes, writers, ops);
    INFO("lost " << c.lost.size() << ", anomalies " << c.anomalies.size());
    REQUIRE(c.ok());
    REQUIRE(c.applied == processes * writers * ops);
  }
  SECTION("lock + CAS (the lock is per process, CAS covers the rest) loses nothing") {
    noclobber_test::temp_db file("procs_locked");
    const auto c = run_processes(file.path(), "forced", "locked", processes, writers, ops);
    REQUIRE(c.ok());
    REQUIRE(c.applied == processes * writers * ops);
  }
  SECTION("naive, forced inside each process, loses at least P x (W - 1)") {
    noclobber_test::temp_db file("procs_naive");
    const auto c = run_processes(file.path(), "forced", "naive", processes, writers, 1);
    REQUIRE(c.anomalies.empty());
    REQUIRE(c.lost.size() >= processes * (writers - 1));
  }
}
