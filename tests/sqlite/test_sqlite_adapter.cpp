// The SQLite adapter's contract, outcome by outcome, against a real database file: versions
// never reused, conflict/absent/exists, SQLITE_BUSY and SQLITE_BUSY_SNAPSHOT classified, bad
// options rejected.
#include <noclobber/adapters/sqlite.hpp>
#include <noclobber/read_modify_write.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <latch>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "temp_db.hpp"

namespace nc = noclobber;
using nc::write_status;
using sqlite_store = nc::sqlite::store;

// The name before 0.2 stays for one release, deprecated.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static_assert(std::is_same_v<nc::sqlite::version_store, nc::sqlite::store>);
#pragma GCC diagnostic pop

TEST_CASE("sqlite: every outcome of the contract", "[sqlite]") {
  noclobber_test::temp_db file("contract");
  sqlite_store db(file.path());
  STATIC_REQUIRE(nc::check_conditional_writer<sqlite_store>());

  REQUIRE(db.read("k").absent());
  auto created = db.create_if_absent("k", "v1");
  REQUIRE(created.status == write_status::applied);
  REQUIRE(created.token.has_value());
  REQUIRE(db.create_if_absent("k", "other").status == write_status::exists);

  auto r = db.read("k");
  REQUIRE(r.found());
  REQUIRE(r.value == "v1");
  REQUIRE(r.token == *created.token);

  auto w = db.write_if_match("k", r.token, std::string("v2\0bin", 6));
  REQUIRE(w.status == write_status::applied);
  REQUIRE(*w.token > r.token);
  REQUIRE(db.write_if_match("k", r.token, "stale").status == write_status::conflict);
  REQUIRE(db.read("k").value == std::string("v2\0bin", 6));  // blobs keep their bytes
  REQUIRE(db.write_if_match("missing", 1, "x").status == write_status::absent);

  REQUIRE(db.erase_if_match("k", r.token).status == write_status::conflict);
  REQUIRE(db.erase_if_match("k", *w.token).status == write_status::applied);
  REQUIRE(db.read("k").absent());
  REQUIRE(db.erase_if_match("k", *w.token).status == write_status::absent);

  // No ABA: a re-created key gets a version above every earlier one.
  auto again = db.create_if_absent("k", "v3");
  REQUIRE(*again.token > *w.token);
  auto ow = db.overwrite("k", "blind");
  REQUIRE(ow.ok());
  REQUIRE(*ow.token > *again.token);
  auto ow2 = db.overwrite("new", "blind");
  REQUIRE(ow2.ok());
  REQUIRE(db.read("new").value == "blind");
}

TEST_CASE("sqlite: versions are unique across connections writing at once", "[sqlite][concurrency]") {
  noclobber_test::temp_db file("versions");
  { sqlite_store init(file.path()); }
  constexpr int threads = 4, writes = 50;
  std::vector<std::vector<std::int64_t>> seen(threads);
  {
    std::latch start(threads);  // every connection is open before anyone writes
    std::vector<std::jthread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        sqlite_store db(file.path());
        start.arrive_and_wait();
        for (int i = 0; i < writes; ++i) {
          auto w = db.overwrite("k" + std::to_string(i % 3), "x");
          if (w.ok()) seen[t].push_back(*w.token);
        }
      });
    }
  }
  std::set<std::int64_t> all;
  std::size_t count = 0;
  for (auto& v : seen) {
    count += v.size();
    all.insert(v.begin(), v.end());
  }
  REQUIRE(count == threads * writes);  // busy_timeout absorbed the contention
  REQUIRE(all.size() == count);
}

TEST_CASE("sqlite: SQLITE_BUSY after busy_timeout is transient; reads go on in WAL", "[sqlite]") {
  noclobber_test::temp_db file("busy");
  sqlite_store holder(file.path());
  REQUIRE(holder.create_if_absent("k", "v").ok());
  nc::sqlite::store_options quick;
  quick.busy_timeout = std::chrono::milliseconds(20);
  sqlite_store other(file.path(), quick);

  REQUIRE(sqlite3_exec(holder.handle(), "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  const auto r = other.read("k");
  REQUIRE(r.found());  // WAL: a reader is not blocked by the writer
  const auto w = other.write_if_match("k", r.token, "v2");
  REQUIRE(w.status == write_status::transient);
  REQUIRE_THAT(w.error.code, Catch::Contains("SQLITE(5)"));
  REQUIRE(other.create_if_absent("k2", "x").status == write_status::transient);
  REQUIRE(sqlite3_exec(holder.handle(), "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  REQUIRE(other.write_if_match("k", r.token, "v2").ok());  // nothing was written by the busy try
}

TEST_CASE("sqlite: SQLITE_BUSY_SNAPSHOT (a stale read snapshot) is transient_restart", "[sqlite]") {
  noclobber_test::temp_db file("snapshot");
  sqlite_store a(file.path());
  sqlite_store b(file.path());
  REQUIRE(a.create_if_absent("k", "v").ok());
  // A deferred transaction reads (taking a snapshot), another connection commits, and the first
  // then tries to write: SQLite refuses at once with SQLITE_BUSY_SNAPSHOT.
  REQUIRE(sqlite3_exec(a.handle(), "BEGIN", nullptr, nullptr, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_exec(a.handle(), "SELECT value FROM noclobber_kv", nullptr, nullptr, nullptr) == SQLITE_OK);
  const auto t = b.read("k").token;
  REQUIRE(b.write_if_match("k", t, "moved").ok());
  const int rc = sqlite3_exec(a.handle(), "UPDATE noclobber_kv SET value = 'late' WHERE key = 'k'", nullptr,
                              nullptr, nullptr);
  REQUIRE(rc == SQLITE_BUSY_SNAPSHOT);
  REQUIRE(nc::sqlite::classify(rc, false) == write_status::transient_restart);
  sqlite3_exec(a.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  REQUIRE(b.read("k").value == "moved");
}

TEST_CASE("sqlite: result codes map onto the outcome categories", "[sqlite]") {
  using nc::sqlite::classify;
  CHECK(classify(SQLITE_BUSY, false) == write_status::transient);
  CHECK(classify(SQLITE_BUSY_RECOVERY, false) == write_status::transient);
  CHECK(classify(SQLITE_LOCKED, false) == write_status::transient);
  CHECK(classify(SQLITE_BUSY_SNAPSHOT, false) == write_status::transient_restart);
  CHECK(classify(SQLITE_IOERR_WRITE, true) == write_status::indeterminate);
  CHECK(classify(SQLITE_IOERR_WRITE, false) == write_status::transient);
  CHECK(classify(SQLITE_CONSTRAINT_PRIMARYKEY, false) == write_status::exists);
  CHECK(classify(SQLITE_CONSTRAINT_UNIQUE, false) == write_status::exists);
  // A constraint other than a duplicate key is the request's fault: retrying cannot help.
  CHECK(classify(SQLITE_CONSTRAINT_NOTNULL, false) == write_status::permanent);
  CHECK(classify(SQLITE_CONSTRAINT_CHECK, false) == write_status::permanent);
  CHECK(classify(SQLITE_CONSTRAINT_FOREIGNKEY, false) == write_status::permanent);
  CHECK(classify(SQLITE_READONLY, false) == write_status::permanent);
  CHECK(classify(SQLITE_ERROR, false) == write_status::permanent);
}

TEST_CASE("sqlite: bad options and bad files are rejected at the boundary", "[sqlite]") {
  noclobber_test::temp_db file("options");
  nc::sqlite::store_options o;
  o.table = "kv; DROP TABLE x";
  REQUIRE_THROWS_WITH(sqlite_store(file.path(), o), Catch::Contains("'kv; DROP TABLE x'"));
  o = {};
  o.synchronous = "SOMETIMES";
  REQUIRE_THROWS_WITH(sqlite_store(file.path(), o), Catch::Contains("'SOMETIMES'"));
  o = {};
  o.busy_timeout = std::chrono::milliseconds(-1);
  REQUIRE_THROWS_AS(sqlite_store(file.path(), o), std::invalid_argument);
  o = {};
  o.create_if_missing = false;
  REQUIRE_THROWS_WITH(sqlite_store("/nonexistent-dir/x.db", o), Catch::Contains("/nonexistent-dir/x.db"));
}

TEST_CASE("sqlite: read_modify_write works on the adapter, and two tables share a file", "[sqlite]") {
  noclobber_test::temp_db file("rmw");
  nc::sqlite::store_options other_table;
  other_table.table = "second";
  sqlite_store a(file.path());
  sqlite_store b(file.path(), other_table);
  auto r = nc::read_modify_write(
      a, "n", [](const std::optional<std::string>& cur) { return cur.value_or("") + "x"; });
  REQUIRE(r.ok());
  r = nc::read_modify_write(a, "n",
                            [](const std::optional<std::string>& cur) { return cur.value_or("") + "x"; });
  REQUIRE(a.read("n").value == "xx");
  REQUIRE(b.read("n").absent());
}

TEST_CASE("sqlite: opening in WAL mode waits for a writer on a file not yet in WAL mode",
          "[sqlite][concurrency]") {
  // Switching to WAL needs an exclusive lock; while another connection holds the write lock
  // SQLite answers SQLITE_BUSY at once, without calling the busy handler (it would deadlock),
  // so a connection opened then used to throw "database is locked" (16 table stores opened
  // together on a fresh file hit it).
  noclobber_test::temp_db file("wal_switch");
  {
    nc::sqlite::store_options plain;
    plain.wal = false;
    sqlite_store first(file.path(), plain);  // creates the file in rollback-journal mode
  }
  sqlite3* writer = nullptr;
  REQUIRE(sqlite3_open(file.path().c_str(), &writer) == SQLITE_OK);
  // The writer's COMMIT needs every shared lock gone, and the opener takes one for a moment each
  // time it reads the journal mode: with no busy timeout, a COMMIT that met it answered
  // SQLITE_BUSY at once (CI, once; 3 of 300 runs under stress-ng --cpu 2).
  REQUIRE(sqlite3_busy_timeout(writer, 5000) == SQLITE_OK);
  REQUIRE(sqlite3_exec(writer, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  std::string error;
  std::thread opener([&] {
    try {
      sqlite_store s(file.path());  // busy_timeout 5 s
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the opener meets the writer's lock
  REQUIRE(sqlite3_exec(writer, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  opener.join();
  sqlite3_close_v2(writer);
  CHECK(error.empty());
}

TEST_CASE("sqlite: busy_timeout = hours::max() waits the longest SQLite allows", "[sqlite][duration]") {
  // The option converts any duration without overflow; SQLite counts int milliseconds.
  noclobber_test::temp_db file("busy_max");
  nc::sqlite::store_options o;
  o.busy_timeout = std::chrono::hours::max();
  sqlite_store db(file.path(), o);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(db.handle(), "PRAGMA busy_timeout", -1, &s, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  CHECK(sqlite3_column_int64(s, 0) == std::numeric_limits<int>::max());
  sqlite3_finalize(s);
  static_assert(nc::sqlite::detail::clamp_ms(std::chrono::seconds(2)) == 2000);
}
