// postgres::table_store on tables the user already has (NOCLOBBER_PG_CONNINFO): the contract on
// a version column and on xmin, a composite key, server-side patches with an exact change report,
// caps, guards and non-object targets as distinct outcomes, every construction error named,
// hostile identifiers, corrupt stored values reported and never replaced. The checks SQLite shares
// are in tests/table_store_contract.hpp; this file holds the PostgreSQL fixture and what only
// PostgreSQL has (xmin, jsonb's printing, PQescapeIdentifier, its type names).
#include <noclobber/adapters/postgres/table_store.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "server_env.hpp"
#include "table_store_contract.hpp"

namespace nc = noclobber;
namespace pg = noclobber::postgres;
namespace tc = table_contract;
using nc::table_spec;
using nc::table_token_kind;
using pg::table_store;

namespace {

std::string conninfo() {
  return nc_test::server_env("NOCLOBBER_PG_CONNINFO");
}

// The tables and views one test creates, dropped after it (last first).
struct pg_fixture {
  static inline const tc::type_names types{
      "text", "integer", "bigint", "double precision", "boolean", "jsonb", "bigserial PRIMARY KEY"};
  pg::connection admin{conninfo()};
  std::vector<std::string> drops;

  pg_fixture() = default;
  pg_fixture(const pg_fixture&) = delete;
  pg_fixture& operator=(const pg_fixture&) = delete;
  ~pg_fixture() {
    for (auto it = drops.rbegin(); it != drops.rend(); ++it) (void)admin.exec_simple(*it, true);
  }
  static std::string name(const std::string& stem) { return nc_test::unique_name(stem); }
  std::string quote(const std::string& identifier) { return pg::quote_identifier(admin, identifier); }
  void exec(const std::string& sql) {
    auto r = admin.exec_simple(sql, true);
    INFO(sql);
    REQUIRE(r.ok());
  }
  // The first column of the first row, in text format.
  std::string text(const std::string& sql) {
    auto r = admin.exec_simple(sql, false);
    if (!r.ok() || r.rows() == 0 || r.is_null(0, 0)) return r.ok() ? "NULL" : "ERROR " + r.error.message;
    return r.bytes(0, 0);
  }
  void create_table(const std::string& table, const std::string& columns) {
    exec("CREATE TABLE " + table + " (" + tc::spell(columns, types) + ")");
    drops.push_back("DROP TABLE IF EXISTS " + table + " CASCADE");
  }
  void create_view(const std::string& view, const std::string& table) {
    exec("CREATE VIEW " + view + " AS SELECT * FROM " + table);
    drops.push_back("DROP VIEW IF EXISTS " + view);
  }
  template <class V, class K>
  table_store<V, K> open(const table_spec<V, K>& spec) {
    return table_store<V, K>(conninfo(), spec);
  }
};

}  // namespace

static_assert(nc::conditional_writer<table_store<tc::model>>);
static_assert(nc::erasable_writer<table_store<tc::model>>);
static_assert(nc::patchable_writer<table_store<tc::model>>);
static_assert(nc::overwritable_store<table_store<tc::model>>);

TEST_CASE("pg table_store: the contract on a version column and on xmin", "[server][postgres][table]") {
  for (const auto token : {table_token_kind::version_column, table_token_kind::xmin}) {
    INFO("xmin " << (token == table_token_kind::xmin));
    pg_fixture f;
    tc::check_contract(f, token);
  }
}

TEST_CASE("pg table_store: a composite key over a UNIQUE constraint", "[server][postgres][table]") {
  pg_fixture f;
  tc::check_composite_key(f, table_token_kind::version_column);
}

TEST_CASE("pg table_store: a patch is one statement with an exact change report",
          "[server][postgres][table][patch]") {
  pg_fixture f;
  // jsonb compares numbers by value (1 = 1.0) and prints keys shortest first, then bytewise.
  tc::check_patch_report(
      f, table_token_kind::xmin,
      {nc::change_kind::unchanged, R"({"NEW": "n", "NUM": 1, "OLD": "o2", "KEEP": "k", "SAME": "s"})",
       R"({"N": [1, 2], "NEW": "n", "NUM": 1, "OLD": "o2", "KEEP": "k", "SAME": "s"})"});
}

TEST_CASE("pg table_store: caps, guards and non-object merge targets are distinct permanent outcomes",
          "[server][postgres][table][patch]") {
  pg_fixture f;
  tc::check_caps_guards(
      f, table_token_kind::xmin,
      {"column \"env_vars\": 111 bytes > cap of 64",  // {"BIG": "x…"} as jsonb prints it
       "51", "column \"status\" holds 'deleting' (the write is refused while it is 'deleting')"});
}

TEST_CASE("pg table_store: every misfit is a clear error at construction",
          "[server][postgres][table][schema]") {
  using tc::item;
  pg_fixture f;
  const auto t = tc::check_common_misfits(
      f, ", raw bytea",
      {table_token_kind::xmin, "is not a table (relkind 'v')",
       "the version column \"owner\" is of type text; a version column must be an integer",
       table_token_kind::compare_values, "compare_values() is an SQLite token"});
  auto expect = [&](const table_spec<item>& spec, const std::string& message) {
    tc::expect_misfit(f, spec, message);
  };
  const std::string& m = t.models;
  expect(table_spec<item>(m).key("name").column("revision", &item::body).xmin(),
         "column \"revision\" is of type bigint, which does not fit a text member");
  expect(table_spec<item>(m).key("name").column("description", &item::n).xmin(),
         "column \"description\" is of type text, which does not fit a integer member");
  expect(table_spec<item>(m).key("name").column("weight", &item::n).xmin(), "of type double precision");
  expect(table_spec<item>(m).key("name").column("published", &item::body).xmin(), "of type boolean");
  expect(table_spec<item>(m).key("name").column("revision", &item::b).xmin(),
         "does not fit a boolean member");
  expect(table_spec<item>(m).key("name").column("env", &item::r).xmin(),
         "of type jsonb, which does not fit a real");
  expect(table_spec<item>(t.loose).key("name").column("raw", &item::body).xmin(), "of type bytea");
}

TEST_CASE("pg table_store: hostile identifiers are quoted by PQescapeIdentifier",
          "[server][postgres][table][schema]") {
  pg_fixture f;
  tc::check_hostile_identifiers(f, table_token_kind::xmin, R"({"we\"ird\\key": "v\n"})");
}

TEST_CASE("pg table_store: a stored value that does not fit is a permanent read; nothing is written",
          "[server][postgres][table]") {
  struct rec {
    std::int32_t n = 0;
    std::string doc;
  };
  pg_fixture f;
  const std::string t = f.name("nc_corrupt");
  f.create_table(t, "k text PRIMARY KEY, n bigint, doc text NOT NULL, v integer NOT NULL DEFAULT 1");
  f.exec("INSERT INTO " + t +
         " VALUES ('null', NULL, '{}'), ('big', 5000000000, '{}'), ('json', 1, '{\"n\": \"x\"}')");
  auto s = f.open(table_spec<rec>(t).key("k").column("n", &rec::n).column("doc", &rec::doc).version("v"));
  tc::check_unreadable(
      s, std::string("null"),
      "key (\"k\" = text 'null'): field 'n': is NULL, but the member is not a std::optional");
  tc::check_unreadable(s, std::string("big"),
                       "field 'n': holds integer 5000000000, which does not fit the member's type");
  CHECK(f.text("SELECT n FROM " + t + " WHERE k = 'big'") == "5000000000");
}
