// example: examples/records/records_harness.cpp
// From a struct and a table your service already has to a race-harness test that passes:
// 16 writers edit the same row of `models`, each through its own connection, and none of their
// updates is lost. The second test shows that the harness does catch the naive form.
#define CATCH_CONFIG_MAIN
#include <noclobber/adapters/sqlite/table_store.hpp>
#include <noclobber/catch2/race_harness.hpp>
#include <noclobber/race_harness/field_workload.hpp>

#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

// ---- the table your service already has (set up here so that the example runs) -----------------
const std::string db =
    (std::filesystem::temp_directory_path() / ("records_" + std::to_string(getpid()) + ".db")).string();
struct existing_models {
  existing_models() {
    sqlite3* c = nullptr;
    sqlite3_open(db.c_str(), &c);
    sqlite3_exec(c,
                 "CREATE TABLE models (name TEXT PRIMARY KEY, description TEXT NOT NULL, backing_sql TEXT,"
                 " revision INTEGER NOT NULL DEFAULT 1, created_at TEXT DEFAULT CURRENT_TIMESTAMP);"
                 "INSERT INTO models (name, description) VALUES ('qb', 'query-backed'), ('n', 'naive')",
                 nullptr, nullptr, nullptr);
    sqlite3_close(c);
  }
  ~existing_models() {
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());
  }
} models_table;

// ---- your code ------------------------------------------------------------------------------------
struct model {
  std::string description;
  std::optional<std::string> backing_sql;
};
const auto spec = noclobber::table_spec<model>("models")
                      .key("name")
                      .column("description", &model::description)
                      .column("backing_sql", &model::backing_sql)
                      .version("revision");  // or .compare_values() where there is no version column
using models = noclobber::sqlite::table_store<model>;

TEST_CASE("editing a model loses no update") {
  auto opt = noclobber::catch2::race_options_from_env<models>();  // honours NOCLOBBER_RACE_REPLAY
  opt.writers = 16;
  opt.ops_per_writer = 25;
  opt.keys = {"qb"};
  opt.workload = noclobber::field_workload(&model::description);  // each write tags description
  auto report = noclobber::run_race_per_writer([](unsigned) { return models(db, spec); },
                                               noclobber::cas_strategy{}, opt);
  NOCLOBBER_REQUIRE_NO_LOST_UPDATES(report);
}
// ---- end of your code: 20 lines (and the three noclobber #include lines above) ---------------------

TEST_CASE("the naive read, change, save loses updates on the same table") {
  auto opt = noclobber::catch2::race_options_from_env<models>();
  opt.writers = 16;
  opt.keys = {"n"};
  opt.workload = noclobber::field_workload(&model::description);
  auto report = noclobber::run_race_per_writer([](unsigned) { return models(db, spec); },
                                               noclobber::naive_strategy{}, opt);
  CHECK(report.lost() > 0);  // forced mode: all 16 read before any of them writes
}
