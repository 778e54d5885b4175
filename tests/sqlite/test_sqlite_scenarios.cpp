// Three real-world scenarios in their own shape, on SQLite tables as their services have them,
// through typed records (sqlite::table_store, JSON columns through json::codec):
//
//   the model cache refresh    `models` with a revision: a read path refreshes three cache
//                              columns while editors change the model; the refresh is a sparse
//                              patch at the revision it read, dropped when the model moved
//   the import ledger          `import_runs` with UNIQUE(source_id, content_hash): the
//                              idempotency ledger runs each import once, on that table
//   the dirty flag             `inodes` with a nullable dirty_since and no version column: the
//                              push worker clears the flag only if it still holds what it saw
//
// Each is proven by the race harness on its table (16 writers: the naive form loses 15 of 16
// forced writes, read_modify_write none), and its own operation is raced for real behind a latch.
#include <noclobber/adapters/sqlite/table_store.hpp>
#include <noclobber/idempotency_ledger.hpp>
#include <noclobber/json/codec.hpp>
#include <noclobber/naive_read_modify_write.hpp>
#include <noclobber/patch_if_unchanged.hpp>
#include <noclobber/race_harness/field_workload.hpp>
#include <noclobber/read_modify_write.hpp>
#include <noclobber/write_if_unchanged.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <latch>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "raw_db.hpp"
#include "scenario_harness.hpp"
#include "temp_db.hpp"

namespace nc = noclobber;
using nc::sqlite::table_store;
using noclobber_test::model;
using noclobber_test::patient;

namespace {

// ---- the model cache refresh --------------------------------------------------------------------

void make_models(const std::string& path) {
  noclobber_test::raw_db raw(path);
  raw.exec(
      "CREATE TABLE models (name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '', edits INTEGER NOT "
      "NULL "
      "DEFAULT 0, columns TEXT NOT NULL DEFAULT '[]', backing_sql TEXT, data_source TEXT, revision INTEGER "
      "NOT NULL "
      "DEFAULT 1, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)");
  raw.exec("INSERT INTO models (name, description) VALUES ('qb', 'query-backed model')");
}

nc::table_spec<model> models_spec() {
  return nc::table_spec<model>("models")
      .key("name")
      .column("description", &model::description)
      .column("edits", &model::edits)
      .column("columns", &model::columns, nc::json::codec<std::vector<std::string>>{})
      .column("backing_sql", &model::backing_sql)
      .column("data_source", &model::data_source)
      .version("revision");
}

// What a read path resolves from the model it loaded (slow in real life).
nc::table_patch cache_refresh(const nc::table_spec<model>& spec, const model& loaded) {
  nc::table_patch p;
  spec.set(p, &model::columns, std::vector<std::string>{"region", "total-" + std::to_string(loaded.edits)});
  spec.set(
      p, &model::backing_sql,
      std::optional<std::string>("SELECT region, sum(x) FROM t /*" + std::to_string(loaded.edits) + "*/"));
  spec.set(p, &model::data_source, std::optional<std::string>("warehouse"));
  return p;
}

}  // namespace

TEST_CASE("scenario, model cache refresh: the harness on the models table (16 writers)",
          "[sqlite][scenario]") {
  noclobber_test::temp_db file("scn_models");
  make_models(file.path());
  {
    noclobber_test::raw_db raw(file.path());
    raw.exec("INSERT INTO models (name) VALUES ('naive'), ('cas')");
  }
  using store_t = table_store<model>;
  noclobber_test::prove_with_harness<store_t>(
      "sqlite models", [&](unsigned) { return store_t(file.path(), models_spec()); },
      nc::field_workload<model>(&model::description, [](model& m, const nc::write_tag&) { ++m.edits; }),
      {"naive"}, {"cas"});
  store_t check(file.path(), models_spec());
  CHECK(check.read("cas").value.edits == noclobber_test::scenario_writers * noclobber_test::scenario_ops);
  CHECK(check.read("naive").value.edits < noclobber_test::scenario_writers);
}

TEST_CASE(
    "scenario, model cache refresh: saving the loaded model undoes an edit; the patch at the revision "
    "does not",
    "[sqlite][scenario]") {
  noclobber_test::temp_db file("scn_refresh_det");
  make_models(file.path());
  const auto spec = models_spec();
  table_store<model> reader(file.path(), spec), editor(file.path(), spec);

  SECTION("the bug: the read path saves the whole model it loaded") {
    auto loaded = reader.read("qb");  // T0: request A loads the model
    REQUIRE(nc::read_modify_write(editor, "qb", [](const std::optional<model>& m) {
              model next = *m;  // T1..T3: request B edits it
              next.description = "edited by B";
              ++next.edits;
              return next;
            }).ok());
    model refreshed = loaded.value;  // T5: A saves its copy with the cache filled in
    refreshed.columns = {"region"};
    REQUIRE(reader.overwrite("qb", refreshed).ok());
    CHECK(reader.read("qb").value.description == "query-backed model");  // B's edit is gone
  }
  SECTION("the fix: a sparse patch at the revision it read, dropped when the model moved") {
    auto loaded = reader.read("qb");
    REQUIRE(nc::read_modify_write(editor, "qb", [](const std::optional<model>& m) {
              model next = *m;
              next.description = "edited by B";
              ++next.edits;
              return next;
            }).ok());
    auto r = nc::patch_if_unchanged(reader, "qb", loaded.token, cache_refresh(spec, loaded.value),
                                    nc::patch_conflict::drop);
    CHECK(r.outcome == nc::patch_outcome::dropped);
    const model now = reader.read("qb").value;
    CHECK(now.description == "edited by B");
    CHECK(now.edits == 1);
    CHECK(now.columns.empty());  // the next read refreshes it
    // On an unchanged revision the same patch applies, and touches only the cache.
    auto fresh = reader.read("qb");
    REQUIRE(nc::patch_if_unchanged(reader, "qb", fresh.token, cache_refresh(spec, fresh.value)).ok());
    CHECK(reader.read("qb").value.columns == std::vector<std::string>{"region", "total-1"});
    CHECK(reader.read("qb").value.description == "edited by B");
  }
}

TEST_CASE("scenario, model cache refresh: 8 editors and 8 refreshers race; no edit is lost",
          "[sqlite][scenario]") {
  noclobber_test::temp_db file("scn_refresh_race");
  make_models(file.path());
  const auto spec = models_spec();
  const auto counts =
      noclobber_test::race_cache_refresh([&] { return table_store<model>(file.path(), spec); }, "qb", spec);
  CHECK(counts.errors == 0);
  CHECK(counts.applied + counts.dropped == 8 * 25);
  CHECK(counts.applied > 0);
  table_store<model> check(file.path(), spec);
  CHECK(check.read("qb").value.edits == 8 * 25);  // every edit survived every refresh
}

// ---- the import ledger --------------------------------------------------------------------------

namespace {

// The key of import_runs: (source_id, content_hash). The ledger names entries by ledger_key(),
// so the key type is also built from that text.
struct run_key {
  std::string source_id;
  std::string content_hash;
  run_key() = default;
  run_key(std::string source, std::string hash)
      : source_id(std::move(source)), content_hash(std::move(hash)) {}
  explicit run_key(const std::string& ledger_key) {  // "ledger/<n>:<source>/<hash>"
    const auto colon = ledger_key.find(':');
    const auto n = std::stoul(ledger_key.substr(7, colon - 7));
    source_id = ledger_key.substr(colon + 1, n);
    content_hash = ledger_key.substr(colon + 2 + n);
  }
  friend bool operator==(const run_key&, const run_key&) = default;
};

struct state_codec {
  std::string encode(const nc::ledger_state& s) const { return std::string(nc::to_string(s)); }
  nc::ledger_state decode(const std::string& s) const {
    for (auto v : {nc::ledger_state::pending, nc::ledger_state::completed, nc::ledger_state::failed}) {
      if (nc::to_string(v) == s) return v;
    }
    throw nc::codec_error("unknown import state '" + s + "'");
  }
};

void make_import_runs(const std::string& path) {
  noclobber_test::raw_db raw(path);
  raw.exec(
      "CREATE TABLE import_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, source_id TEXT NOT NULL, content_hash "
      "TEXT NOT "
      "NULL, state TEXT NOT NULL CHECK (state IN ('pending', 'completed', 'failed')), claim TEXT NOT NULL, "
      "lease_until_ns INTEGER NOT NULL, runs INTEGER NOT NULL, result TEXT NOT NULL, revision INTEGER NOT "
      "NULL, "
      "started_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, UNIQUE (source_id, content_hash))");
}

nc::table_spec<nc::ledger_entry, run_key> import_runs_spec() {
  return nc::table_spec<nc::ledger_entry, run_key>("import_runs")
      .key("source_id", &run_key::source_id)
      .key("content_hash", &run_key::content_hash)
      .column("state", &nc::ledger_entry::state, state_codec{})
      .column("claim", &nc::ledger_entry::claim)
      .column("lease_until_ns", &nc::ledger_entry::lease_until_ns)
      .column("runs", &nc::ledger_entry::runs)
      .column("result", &nc::ledger_entry::result)
      .version("revision");
}

}  // namespace

TEST_CASE("scenario, import ledger: the harness on the import_runs table (16 writers)",
          "[sqlite][scenario]") {
  noclobber_test::temp_db file("scn_imports_harness");
  make_import_runs(file.path());
  using store_t = table_store<nc::ledger_entry, run_key>;
  noclobber_test::prove_with_harness<store_t>(
      "sqlite import_runs", [&](unsigned) { return store_t(file.path(), import_runs_spec()); },
      nc::field_workload<nc::ledger_entry>(&nc::ledger_entry::result,
                                           [](nc::ledger_entry& e, const nc::write_tag&) { ++e.runs; }),
      {run_key{"spamhaus", "naive"}}, {run_key{"spamhaus", "cas"}});
}

TEST_CASE("scenario, import ledger: 16 workers import one blocklist; the bans are applied once",
          "[sqlite][scenario]") {
  noclobber_test::temp_db file("scn_imports");
  make_import_runs(file.path());
  constexpr int workers = 16;
  std::atomic<int> applied_naive{0}, applied_ledger{0};

  SECTION("the bug: check, then import, then record: every worker that checked first imports") {
    std::latch checked(workers);
    std::vector<std::thread> threads;
    for (int i = 0; i < workers; ++i) {
      threads.emplace_back([&] {
        table_store<nc::ledger_entry, run_key> runs(file.path(), import_runs_spec());
        const run_key k{"spamhaus", "sha256:feed"};
        const bool done = runs.read(k).found();
        checked.arrive_and_wait();  // everybody has checked before anybody records
        if (done) return;
        ++applied_naive;  // apply_bans(body)
        nc::ledger_entry e;
        e.state = nc::ledger_state::completed;
        e.result = "1432 bans";
        (void)runs.overwrite(k, e);
      });
    }
    for (auto& t : threads) t.join();
    CHECK(applied_naive == workers);
  }
  SECTION("the fix: the idempotency ledger on import_runs") {
    std::latch start(workers);
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int i = 0; i < workers; ++i) {
      threads.emplace_back([&] {
        table_store<nc::ledger_entry, run_key> runs(file.path(), import_runs_spec());
        nc::ledger_options o;
        o.policy = patient();
        nc::idempotency_ledger ledger(runs, o);
        start.arrive_and_wait();
        for (;;) {
          auto r = ledger.run("spamhaus", "sha256:feed", [&] {
            ++applied_ledger;  // apply_bans(body)
            return std::string("1432 bans");
          });
          if (r.outcome == nc::ledger_outcome::in_progress) {
            std::this_thread::yield();
            continue;  // somebody holds the claim: ask again until it is completed
          }
          if (r.ok() && r.result == "1432 bans") ++ok;
          break;
        }
      });
    }
    for (auto& t : threads) t.join();
    CHECK(applied_ledger == 1);
    CHECK(ok == workers);
    noclobber_test::raw_db raw(file.path());
    CHECK(raw.text("SELECT count(*) || ' ' || state || ' ' || runs FROM import_runs") == "1 completed 1");
  }
}

// ---- the dirty flag -------------------------------------------------------------------------------

namespace {

struct inode {
  std::string path;
  std::optional<std::int64_t> dirty_since;  // ms; set by every local write, cleared after a push
  std::string last_write;                   // who wrote the file last
  friend bool operator==(const inode&, const inode&) = default;
};

void make_inodes(const std::string& path) {
  noclobber_test::raw_db raw(path);
  // The schema the service has: no version column.
  raw.exec(
      "CREATE TABLE inodes (ino INTEGER PRIMARY KEY, parent INTEGER, path TEXT NOT NULL, dirty_since "
      "INTEGER, "
      "last_write TEXT NOT NULL DEFAULT '', size INTEGER NOT NULL DEFAULT 0)");
  raw.exec("INSERT INTO inodes (ino, path) VALUES (1, '/notes.md'), (2, '/naive'), (3, '/cas')");
}

auto inodes_spec() {
  return nc::table_spec<inode, std::int64_t>("inodes")
      .key("ino")
      .column("path", &inode::path)
      .column("dirty_since", &inode::dirty_since)
      .column("last_write", &inode::last_write)
      .compare_values();  // no schema change: the previous values are the token
}

}  // namespace

TEST_CASE("scenario, dirty flag: the harness on the inodes table, no version column (16 writers)",
          "[sqlite][scenario]") {
  noclobber_test::temp_db file("scn_inodes_harness");
  make_inodes(file.path());
  using store_t = table_store<inode, std::int64_t>;
  noclobber_test::prove_with_harness<store_t>(
      "sqlite inodes", [&](unsigned) { return store_t(file.path(), inodes_spec()); },
      nc::field_workload<inode>(
          &inode::last_write,
          [](inode& i, const nc::write_tag& t) { i.dirty_since = t.writer * 1000 + t.op; }),
      {2}, {3});
}

TEST_CASE("scenario, dirty flag: the push worker's clear never destroys a newer write",
          "[sqlite][scenario]") {
  noclobber_test::temp_db file("scn_inodes");
  make_inodes(file.path());
  table_store<inode, std::int64_t> worker(file.path(), inodes_spec()), user(file.path(), inodes_spec());
  auto write_file = [&](std::int64_t when) {
    return nc::read_modify_write(user, 1, [&](const std::optional<inode>& i) {
      inode next = *i;
      next.dirty_since = when;
      next.last_write = "user@" + std::to_string(when);
      return next;
    });
  };
  REQUIRE(write_file(1000).ok());
  const auto seen = worker.read(1).value.dirty_since;  // the job is claimed: T1 = 1000
  REQUIRE(write_file(2000).ok());                      // during the 30 s wait the user writes again

  SECTION("the bug: an unconditional clear") {
    auto r = nc::naive_read_modify_write(worker, 1, [](const std::optional<inode>& i) {
      inode next = *i;
      next.dirty_since.reset();
      return next;
    });
    REQUIRE(r.ok());
    CHECK_FALSE(worker.read(1).value.dirty_since.has_value());  // T2 destroyed: the reconciler will overwrite
  }
  SECTION("the fix: compare-and-clear") {
    auto r =
        nc::update_field_if_unchanged(worker, 1, &inode::dirty_since, seen, std::optional<std::int64_t>{});
    CHECK(r.outcome == nc::rmw_outcome::unchanged);
    CHECK(worker.read(1).value.dirty_since == 2000);  // the protection flag is preserved
    // With nothing newer, it clears.
    const auto now = worker.read(1).value.dirty_since;
    CHECK(nc::update_field_if_unchanged(worker, 1, &inode::dirty_since, now, std::optional<std::int64_t>{})
              .outcome == nc::rmw_outcome::applied);
    CHECK_FALSE(worker.read(1).value.dirty_since.has_value());
  }
}
