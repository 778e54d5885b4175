// race_demo: what one run of one strategy needs and gives back, shared by the scenarios
// (scenarios.hpp, import_retry.hpp) and the command line (race_demo.cpp).
#pragma once

#include <noclobber/race_harness.hpp>

#include <sqlite3.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace demo {

namespace nc = noclobber;

/// What the command line sets for every run.
struct settings {
  unsigned writers = 8;
  unsigned ops = 5;
  nc::race_mode mode = nc::race_mode::forced;
  std::uint64_t seed = 1;
  std::optional<std::uint64_t> schedule;
  unsigned iterations = 10;
  std::string strategy;  // the name shown in the report
  std::chrono::milliseconds stall_timeout{200};
  bool ops_write_in_steps =
      false;            // race_options::ops_write_in_steps (an idempotency ledger's claim, then its result)
  std::string replay;   // a report's replay line, applied after the rest (race_options::apply_replay)
  bool shrink = false;  // explore: shrink a losing run (race_harness/shrink.hpp)
  /// A fresh SQLite file with the scenario's table set up (each shrink candidate gets one).
  std::function<std::string()> fresh_path;
};

/// What the import requests got (import_retry only): how often each batch was imported, and each answer.
struct once_stats {
  std::size_t requests = 0, imports = 0, runs = 0, duplicate_runs = 0, recorded = 0, unanswered = 0;
  std::size_t other_result = 0;  // an answer that no import of that batch produced
  std::size_t not_once = 0;      // batches imported more than once, or never
  // Exactly one import per batch, and every other request got that import's result.
  [[nodiscard]] bool ok() const { return not_once == 0 && unanswered == 0 && other_result == 0; }
};

struct run_result {
  nc::race_report report;
  std::optional<once_stats> once;           // import_retry: the import requests
  std::optional<nc::shrink_result> shrunk;  // --shrink: the smallest losing run found
};

/// One strategy of one scenario, on the SQLite file at `path` (its table already set up).
using runner = std::function<run_result(const std::string& path, const settings&)>;

/// The harness options of a run on `Store`.
template <class Store>
nc::race_options_for<Store> options_for(const settings& s, std::vector<nc::store_key_t<Store>> keys,
                                        nc::race_workload<nc::store_value_t<Store>> workload,
                                        const std::string& table) {
  nc::race_options_for<Store> o;
  o.writers = s.writers;
  o.ops_per_writer = s.ops;
  o.mode = s.mode;
  o.seed = s.seed;
  o.schedule = s.schedule;
  o.iterations = s.iterations;
  o.keys = std::move(keys);
  o.workload = std::move(workload);
  o.store_name = "sqlite " + table;
  o.strategy_name = s.strategy;
  o.barrier_timeout = std::chrono::milliseconds(300);
  o.stall_timeout = s.stall_timeout;
  o.ops_write_in_steps = s.ops_write_in_steps;
  return o;
}

/// The run of `run_on(path, options)` on `path` with the command line's options; with --shrink
/// (explore), a losing run is shrunk, each candidate run on a fresh file.
template <class Options, class RunOn>
run_result run_and_shrink(const std::string& path, const settings& s, Options o, RunOn run_on) {
  if (!s.replay.empty()) o.apply_replay(s.replay);
  run_result result = run_on(path, o);
  if (s.shrink && o.mode == nc::race_mode::explore && result.report.lost() > 0) {
    auto fresh_run = [&](const Options& candidate) {
      const std::string p = s.fresh_path();
      auto report = run_on(p, candidate).report;
      for (const char* suffix : {"", "-wal", "-shm"}) std::remove((p + suffix).c_str());
      return report;
    };
    result.shrunk = nc::shrink_race_with(fresh_run, o, result.report);
  }
  return result;
}

/// A runner: `strategy` on one `Store` per writer, made by `make(path)`.
template <class Store, class Make, class Strategy>
runner on_table(std::string table, Make make, std::vector<nc::store_key_t<Store>> keys,
                nc::race_workload<nc::store_value_t<Store>> workload, Strategy strategy) {
  return [=](const std::string& path, const settings& s) {
    auto run_on = [&](const std::string& p, const nc::race_options_for<Store>& o) {
      return run_result{
          nc::run_race_per_writer([&](unsigned) -> Store { return make(p); }, strategy, o), {}, {}};
    };
    return run_and_shrink(path, s, options_for<Store>(s, keys, workload, table), run_on);
  };
}

/// Runs SQL on the database file at `path` (the tables a service already has); throws on error.
inline void run_sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open(path.c_str(), &db);
  char* msg = nullptr;
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
  const std::string error = msg ? msg : (db ? sqlite3_errmsg(db) : "cannot open");
  sqlite3_free(msg);
  sqlite3_close(db);
  if (rc != SQLITE_OK) throw std::runtime_error("race_demo: SQL failed on " + path + ": " + error);
}

}  // namespace demo
