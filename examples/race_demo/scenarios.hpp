// race_demo: the five scenarios (docs/scenarios.md), each on the table its service has, through
// typed records (docs/records.md): the naive read-modify-write the report describes first, then
// noclobber's fix.
//
//   object_store_file  the SQLite file kept as one object: one blob per location in noclobber_kv
//   dirty_flag         `inodes` with a nullable dirty_since and no version column (compare_values)
//   env_patch          `stacks` with an env JSON column, a status guard and a 64 KiB cap
//   cache_refresh      `models` with a revision and three cache columns
//   import_retry       `import_runs` with UNIQUE(source_id, content_hash) (import_retry.hpp)
#pragma once

#include <noclobber/adapters/sqlite.hpp>
#include <noclobber/adapters/sqlite/table_store.hpp>
#include <noclobber/json/codec.hpp>
#include <noclobber/patch_if_unchanged.hpp>
#include <noclobber/race_harness.hpp>
#include <noclobber/race_harness/field_workload.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "demo_run.hpp"
#include "import_retry.hpp"

namespace demo {

struct scenario {
  std::string id;     // what --scenario takes: object_store_file, dirty_flag, ...
  std::string alias;  // the number earlier versions of the demo took (000 … 004)
  std::string title;  // the plain name of the real bug (docs/scenarios.md)
  std::string table;  // where it runs, in a few words
  unsigned writers = 8;
  std::function<void(const std::string& path)> setup;      // creates the table (and its row)
  std::vector<std::pair<std::string, runner>> strategies;  // the first is the naive one
  std::string unknown_cause = {};  // why writes here may end with an unknown outcome (empty: no reason)
};

// ---- the dirty flag: inodes, no version column ------------------------------------------------------

struct inode {
  std::string path;
  std::optional<std::int64_t> dirty_since;  // ms; set by a local write, cleared after a push
  std::string updated_by;                   // who wrote the row (the harness's tags)
  friend bool operator==(const inode&, const inode&) = default;
};

inline auto inodes_spec() {
  return nc::table_spec<inode, std::int64_t>("inodes")
      .key("ino")
      .column("path", &inode::path)
      .column("dirty_since", &inode::dirty_since)
      .column("updated_by", &inode::updated_by)
      .compare_values();  // no schema change: the values read are the token
}

// ---- the env PATCH: stacks with an env JSON column ------------------------------------------------

using env_map = std::map<std::string, std::string>;

struct stack {
  std::string status = "running";
  env_map env;
  std::string updated_by;
};

inline auto stacks_spec() {
  return nc::table_spec<stack>("stacks")
      .key("slug")
      .column("status", &stack::status)
      .column("env", &stack::env, nc::json::codec<env_map>{})
      .column("updated_by", &stack::updated_by)
      .version("revision")
      .require_not("status", "deleting")  // a stack being torn down takes no PATCH
      .max_bytes("env", 64 * 1024);
}

// ---- the cache refresh: models with a revision -------------------------------------------------------

struct model {
  std::string description;                 // what editors change
  std::vector<std::string> columns;        // cache: resolved columns (a JSON column)
  std::optional<std::string> backing_sql;  // cache
  std::string updated_by;
};

inline auto models_spec() {
  return nc::table_spec<model>("models")
      .key("name")
      .column("description", &model::description)
      .column("columns", &model::columns, nc::json::codec<std::vector<std::string>>{})
      .column("backing_sql", &model::backing_sql)
      .column("updated_by", &model::updated_by)
      .version("revision");
}

// ---- the scenarios ----------------------------------------------------------------------------------

template <class Strategy>
runner on_kv(Strategy s) {  // object_store_file: the file as one blob
  return on_table<nc::sqlite::store>(
      "noclobber_kv", [](const std::string& path) { return nc::sqlite::store(path); }, {"locations/42.db"},
      nc::append_workload(64), s);
}

template <class Strategy>
runner on_inodes(Strategy s) {
  using store_t = nc::sqlite::table_store<inode, std::int64_t>;
  return on_table<store_t>(
      "inodes", [](const std::string& path) { return store_t(path, inodes_spec()); }, {7},
      nc::field_workload<inode>(&inode::updated_by,
                                [](inode& i, const nc::write_tag& t) {
                                  if (t.writer % 2) {
                                    i.dirty_since =
                                        1715760000000LL + t.writer * 1000 + t.op;  // a user writes
                                  } else {
                                    i.dirty_since.reset();  // a push worker clears the flag
                                  }
                                }),
      s);
}

template <class Strategy>
runner on_stacks(Strategy s) {
  using store_t = nc::sqlite::table_store<stack>;
  return on_table<store_t>(
      "stacks", [](const std::string& path) { return store_t(path, stacks_spec()); }, {"web"},
      nc::field_workload<stack>(&stack::updated_by,
                                [](stack& st, const nc::write_tag& t) {
                                  st.env["K" + std::to_string(t.writer)] =
                                      std::to_string(t.op);  // its own key
                                }),
      s);
}

template <class Strategy>
runner on_models(Strategy s) {
  using store_t = nc::sqlite::table_store<model>;
  return on_table<store_t>(
      "models", [](const std::string& path) { return store_t(path, models_spec()); }, {"qb"},
      nc::field_workload<model>(&model::updated_by,
                                [](model& m, const nc::write_tag& t) {
                                  const std::string at =
                                      std::to_string(t.writer) + "." + std::to_string(t.op);
                                  if (t.writer % 2) {
                                    m.description = "edit " + at;  // an editor
                                  } else {
                                    m.columns = {"region", "total " + at};  // the cache refresh
                                    m.backing_sql = "SELECT region, sum(x) FROM t /* " + at + " */";
                                  }
                                }),
      s);
}

inline std::vector<scenario> make_scenarios() {
  std::vector<scenario> all;
  {  // A location's SQLite DB kept as one object; store() appends rows.
    scenario s{"object_store_file",
               "000",
               "the SQLite file kept as one object-store object",
               "noclobber_kv: the file as one blob",
               8,
               [](const std::string&) {},
               {}};
    s.strategies = {{"naive", on_kv(nc::naive_strategy{})},
                    {"cas", on_kv(nc::cas_strategy{})},
                    {"lock+cas", on_kv(nc::locked_cas_strategy<std::string>{})}};
    all.push_back(std::move(s));
  }
  {  // Users set dirty_since; push workers clear it after a long wait.
    scenario s{"dirty_flag",
               "001",
               "the dirty flag cleared after a long wait",
               "inodes: dirty_since, no version column",
               8,
               [](const std::string& path) {
                 run_sql(path,
                         "CREATE TABLE inodes (ino INTEGER PRIMARY KEY, parent INTEGER, path TEXT NOT NULL,"
                         " dirty_since INTEGER, updated_by TEXT NOT NULL DEFAULT '', size INTEGER NOT NULL "
                         "DEFAULT 0); INSERT INTO inodes (ino, path) VALUES (7, '/notes.md')");
               },
               {}};
    // The fix: a worker clears only if the row still holds what it saw when it claimed the job.
    auto compare_and_clear = [](auto& store, const std::int64_t& key, auto& fn) {
      const bool worker = store.writer() % 2 == 0;
      const auto claimed = store.read(key);  // the snapshot at claim time (then: push, wait)
      (void)nc::read_modify_write(
          store, key,
          [&](const std::optional<inode>& cur) -> nc::update<inode> {
            if (worker && (!cur || !claimed.found() || *cur != claimed.value)) return nc::keep;
            return fn(cur);
          },
          nc::harness_retry_policy());
    };
    s.strategies = {{"naive", on_inodes(nc::naive_strategy{})},
                    {"compare-and-clear", on_inodes(compare_and_clear)}};
    all.push_back(std::move(s));
  }
  {  // 16 concurrent PATCHes of disjoint keys into one env map.
    scenario s{"env_patch",
               "002",
               "the concurrent disjoint-key env PATCH",
               "stacks: env JSON, status guard, 64 KiB cap",
               16,
               [](const std::string& path) {
                 run_sql(
                     path,
                     "CREATE TABLE stacks (slug TEXT PRIMARY KEY, status TEXT NOT NULL, env TEXT NOT NULL "
                     "DEFAULT '{}', updated_by TEXT NOT NULL DEFAULT '', revision INTEGER NOT NULL DEFAULT 1,"
                     " created_at TEXT DEFAULT CURRENT_TIMESTAMP);"
                     " INSERT INTO stacks (slug, status) VALUES ('web', 'running')");
               },
               {}};
    s.strategies = {{"naive", on_stacks(nc::naive_strategy{})},
                    {"cas", on_stacks(nc::cas_strategy{})},
                    {"lock+cas", on_stacks(nc::locked_cas_strategy<std::string>{})}};
    all.push_back(std::move(s));
  }
  {  // A read path refreshes a cache inside the model while users edit the model.
    scenario s{
        "cache_refresh",
        "003",
        "the cache refresh that overwrites an edit",
        "models: a revision, three cache columns",
        8,
        [](const std::string& path) {
          run_sql(path,
                  "CREATE TABLE models (name TEXT PRIMARY KEY, description TEXT NOT NULL, columns TEXT NOT "
                  "NULL DEFAULT '[]', backing_sql TEXT, updated_by TEXT NOT NULL DEFAULT '', revision "
                  "INTEGER NOT NULL DEFAULT 1, created_at TEXT DEFAULT CURRENT_TIMESTAMP);"
                  " INSERT INTO models (name, description) VALUES ('qb', 'initial')");
        },
        {}};
    // The fix: editors use CAS; the cache refresh is a patch against the revision it loaded,
    // dropped when the model moved (the next read refreshes again).
    auto patch_or_drop = [](auto& store, const std::string& key, auto& fn) {
      if (store.writer() % 2) {
        (void)nc::read_modify_write(store, key, fn, nc::harness_retry_policy());
        return;
      }
      const auto loaded = store.read(key);
      if (!loaded.found()) return;
      (void)nc::patch_if_unchanged(
          store, key, loaded.token, [&](model& m) { m = fn(m); }, nc::patch_conflict::drop,
          nc::harness_retry_policy());
    };
    s.strategies = {{"naive", on_models(nc::naive_strategy{})}, {"patch-or-drop", on_models(patch_or_drop)}};
    all.push_back(std::move(s));
  }
  {  // Duplicate import requests, retried after crashes; one idempotency key per batch.
    scenario s{"import_retry",
               "004",
               "the import retried after a crash",
               "import_runs: UNIQUE(source_id, content_hash)",
               8,
               make_import_runs,
               {},
               "the importer crashed after sending COMMIT"};
    s.strategies = {{"naive", check_then_insert()}, {"idempotency-ledger", idempotency_ledger()}};
    all.push_back(std::move(s));
  }
  return all;
}

}  // namespace demo
