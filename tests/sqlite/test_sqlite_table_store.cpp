// sqlite::table_store on tables the user already has: the contract on a version column, on
// compare_values (NULLs compare with IS), on a composite key; server-side patches with an exact
// change report, caps, guards and non-object targets; every construction error, named; hostile
// identifiers; corrupt stored values reported, never replaced. The checks PostgreSQL shares are in
// tests/table_store_contract.hpp; this file holds the SQLite fixture and what only SQLite has
// (compare_values, declared types and affinities, dynamic typing, NOT NULL columns left unmapped).
#include <noclobber/adapters/sqlite/table_store.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "raw_db.hpp"
#include "table_store_contract.hpp"
#include "temp_db.hpp"

namespace nc = noclobber;
namespace tc = table_contract;
using nc::table_spec;
using nc::table_token_kind;
using nc::write_status;
using nc::sqlite::table_store;

namespace {

// A database file for one test, removed after it.
struct sqlite_fixture {
  static inline const tc::type_names types{
      "TEXT", "INTEGER", "INTEGER", "REAL", "BOOLEAN", "TEXT", "INTEGER PRIMARY KEY"};
  noclobber_test::temp_db file;
  noclobber_test::raw_db raw;

  explicit sqlite_fixture(const std::string& tag) : file(tag), raw(file.path()) {}
  static std::string name(const std::string& stem) { return stem; }
  static std::string quote(const std::string& identifier) {
    std::string out = "\"";
    for (char c : identifier) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
  }
  void exec(const std::string& sql) { raw.exec(sql); }
  std::string text(const std::string& sql) { return raw.text(sql); }
  void create_table(const std::string& table, const std::string& columns) {
    raw.exec("CREATE TABLE " + table + " (" + tc::spell(columns, types) + ")");
  }
  void create_view(const std::string& view, const std::string& table) {
    raw.exec("CREATE VIEW " + view + " AS SELECT * FROM " + table);
  }
  template <class V, class K>
  table_store<V, K> open(const table_spec<V, K>& spec) {
    return table_store<V, K>(file.path(), spec);
  }
};

auto patient() {
  nc::retry_policy p;
  p.max_attempts = 1000;
  p.backoff = nc::backoff_policy::full_jitter(std::chrono::microseconds(10), std::chrono::milliseconds(1));
  return p;
}

}  // namespace

static_assert(nc::conditional_writer<table_store<tc::model>>);
static_assert(nc::erasable_writer<table_store<tc::model>>);
static_assert(nc::patchable_writer<table_store<tc::model>>);
static_assert(nc::overwritable_store<table_store<tc::model>>);

TEST_CASE("sqlite table_store: the contract on a version column", "[sqlite][table]") {
  sqlite_fixture f("table_version");
  tc::check_contract(f, table_token_kind::version_column);
}

TEST_CASE("sqlite table_store: compare_values needs no version column; NULLs compare with IS",
          "[sqlite][table]") {
  struct inode {
    std::string path;
    std::optional<std::int64_t> dirty_since;
    bool operator==(const inode&) const = default;
  };
  noclobber_test::temp_db file("table_compare");
  noclobber_test::raw_db raw(file.path());
  raw.exec(
      "CREATE TABLE inodes (ino INTEGER PRIMARY KEY, path TEXT NOT NULL, dirty_since INTEGER, size INTEGER)");
  raw.exec("INSERT INTO inodes VALUES (1, '/a', NULL, 10)");
  table_store<inode, std::int64_t> inodes(file.path(), table_spec<inode, std::int64_t>("inodes")
                                                           .key("ino")
                                                           .column("path", &inode::path)
                                                           .column("dirty_since", &inode::dirty_since)
                                                           .compare_values());
  auto r = inodes.read(1);
  REQUIRE(r.found());
  CHECK_FALSE(r.value.dirty_since.has_value());
  // dirty_since is NULL: with `=` this write could never apply (NULL = NULL is not true).
  auto w = inodes.write_if_match(1, r.token, inode{"/a", 1715760000123});
  REQUIRE(w.ok());
  CHECK(raw.text("SELECT dirty_since FROM inodes WHERE ino = 1") == "1715760000123");
  // The token moved with the value: the old one conflicts.
  CHECK(inodes.write_if_match(1, r.token, inode{"/a", std::nullopt}).status == write_status::conflict);
  // Another writer changes a mapped column: conflict. An unmapped one: no conflict (we never write it).
  const auto t = inodes.read(1).token;
  raw.exec("UPDATE inodes SET size = 11 WHERE ino = 1");
  CHECK(inodes.write_if_match(1, t, inode{"/a", std::nullopt}).ok());
  const auto t2 = inodes.read(1).token;
  raw.exec("UPDATE inodes SET dirty_since = 5 WHERE ino = 1");
  CHECK(inodes.write_if_match(1, t2, inode{"/a", 6}).status == write_status::conflict);
  CHECK(raw.text("SELECT dirty_since FROM inodes WHERE ino = 1") == "5");
}

TEST_CASE("sqlite table_store: a composite key over a UNIQUE constraint", "[sqlite][table]") {
  sqlite_fixture f("table_composite");
  tc::check_composite_key(f, table_token_kind::compare_values);
}

TEST_CASE("sqlite table_store: a patch is one conditional UPDATE with an exact change report",
          "[sqlite][table][patch]") {
  sqlite_fixture f("table_patch");
  // json_patch keeps the untouched keys in their place; a number spelled anew is a change.
  tc::check_patch_report(f, table_token_kind::version_column,
                         {nc::change_kind::changed, R"({"KEEP":"k","SAME":"s","OLD":"o2","NUM":1,"NEW":"n"})",
                          R"({"KEEP":"k","SAME":"s","OLD":"o2","NUM":1,"NEW":"n","N":[1,2]})"});
}

TEST_CASE("sqlite table_store: caps, guards and non-object merge targets are distinct permanent outcomes",
          "[sqlite][table][patch]") {
  sqlite_fixture f("table_cap");
  tc::check_caps_guards(
      f, table_token_kind::version_column,
      {"column \"env_vars\": 110 bytes > cap of 64",  // {"BIG":"x…"}
       "50", "column \"status\" holds text 'deleting' (the write is refused while it is 'deleting')"});
}

TEST_CASE("sqlite table_store: every misfit is a clear error at construction", "[sqlite][table][schema]") {
  using tc::item;
  sqlite_fixture f("table_errors");
  const auto t = tc::check_common_misfits(
      f, ", d DATE, r REAL",
      {table_token_kind::version_column, "is a view, not a table",
       "the version column \"owner\" is declared 'TEXT'; a version column must be an INTEGER",
       table_token_kind::xmin, "xmin() is a PostgreSQL token"});
  auto expect = [&](const table_spec<item>& spec, const std::string& message) {
    tc::expect_misfit(f, spec, message);
  };
  const std::string& m = t.models;
  expect(table_spec<item>(m).key("name").column("revision", &item::body).version("id"),
         "column \"revision\" is declared 'INTEGER' (INTEGER affinity), which does not fit a text member");
  expect(table_spec<item>(m).key("name").column("description", &item::n).version("revision"),
         "column \"description\" is declared 'TEXT' (TEXT affinity), which does not fit a integer member");
  expect(table_spec<item>(m).key("name").column("revision", &item::r).version("id"),
         "does not fit a real member");
  expect(table_spec<item>(t.loose).key("name").column("d", &item::body).version("iver"),
         "column \"d\" is declared 'DATE' (NUMERIC affinity)");
  expect(table_spec<item>(m).key("name").column("description", &item::body), "no token");
  expect(table_spec<item>(m).column("description", &item::body).version("revision"), "no key column");
  expect(table_spec<item>(m).key("name").version("revision"), "no value column");
  expect(table_spec<item>(m).key("name").column("name", &item::body).version("revision"),
         "column 'name' is both a key and a value column");
  expect(table_spec<item>(m)
             .key("name")
             .column("description", &item::body)
             .column("revision", &item::n)
             .version("revision"),
         "the version column 'revision' is also a value column");
  expect(table_spec<item>(m)
             .key("name")
             .column("description", &item::body)
             .version("revision")
             .max_bytes("env", 10),
         "max_bytes names 'env', which is not a value column");
  CHECK_THROWS_WITH(table_spec<item>(m).version("a").compare_values(), Catch::Contains("two tokens"));
  CHECK_THROWS_WITH(table_spec<item>(m).column("a", &item::body).column("a", &item::body),
                    Catch::Contains("mapped twice"));
  CHECK_THROWS_WITH(table_spec<item>(""), Catch::Contains("table name is empty"));
}

TEST_CASE("sqlite table_store: hostile identifiers are quoted, never spliced", "[sqlite][table][schema]") {
  sqlite_fixture f("table_hostile");
  tc::check_hostile_identifiers(f, table_token_kind::compare_values, R"({"we\"ird\\key":"v\n"})");
  struct row {
    std::string a;
  };
  CHECK_THROWS_WITH(
      (void)f.open(table_spec<row>(std::string("a\0b", 3)).key("k").column("a", &row::a).version("v")),
      Catch::Contains("NUL"));
}

TEST_CASE("sqlite table_store: a stored value that does not fit is a permanent read; nothing is written",
          "[sqlite][table]") {
  sqlite_fixture f("table_corrupt");
  f.exec("CREATE TABLE t (k TEXT PRIMARY KEY, n, s TEXT, v INTEGER NOT NULL)");
  f.exec(
      "INSERT INTO t VALUES ('text', 'abc', 's', 1), ('null', NULL, 's', 1), ('big', 5000000000, 's', 1), "
      "('ver', 1, 's', 'x')");
  struct rec {
    std::int32_t n = 0;
    std::string s;
  };
  auto t = f.open(table_spec<rec>("t").key("k").column("n", &rec::n).column("s", &rec::s).version("v"));
  // SQLite's dynamic typing lets a column hold what its declared type does not say.
  tc::check_unreadable(t, std::string("text"),
                       "key (\"k\" = text 'text'): field 'n': holds text 'abc', expected an integer");
  tc::check_unreadable(t, std::string("null"), "field 'n': is NULL, but the member is not a std::optional");
  tc::check_unreadable(t, std::string("big"),
                       "field 'n': holds integer 5000000000, which does not fit the member's type");
  tc::check_unreadable(t, std::string("ver"), "the version column \"v\" holds text 'x', not an integer");
  CHECK(f.text("SELECT n FROM t WHERE k = 'text'") == "abc");
}

TEST_CASE("sqlite table_store: a NOT NULL column the mapping leaves out makes a create permanent, not exists",
          "[sqlite][table]") {
  noclobber_test::temp_db file("table_notnull");
  noclobber_test::raw_db raw(file.path());
  raw.exec("CREATE TABLE t (k TEXT PRIMARY KEY, s TEXT, owner TEXT NOT NULL, v INTEGER NOT NULL)");
  struct rec {
    std::string s;
  };
  table_store<rec> t(file.path(), table_spec<rec>("t").key("k").column("s", &rec::s).version("v"));
  auto c = t.create_if_absent("a", rec{"x"});
  CHECK(c.status == write_status::permanent);  // a read-modify-write must not loop on "exists"
  CHECK_THAT(c.error.message, Catch::Contains("NOT NULL constraint failed: t.owner"));
  auto rmw = nc::read_modify_write(
      t, "a", [](const std::optional<rec>&) { return rec{"y"}; }, patient());
  CHECK(rmw.attempts == 1);
  CHECK(rmw.last_status == write_status::permanent);
}
