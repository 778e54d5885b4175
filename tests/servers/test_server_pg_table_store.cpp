// postgres::table_store on tables the user already has (NOCLOBBER_PG_CONNINFO): the contract on
// a version column and on xmin, a composite key, server-side patches with an exact change report,
// caps, guards and non-object targets as distinct outcomes, every construction error named,
// hostile identifiers, corrupt stored values reported and never replaced.
#include <noclobber/adapters/postgres/table_store.hpp>
#include <noclobber/patch_if_unchanged.hpp>
#include <noclobber/read_modify_write.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server_env.hpp"

namespace nc = noclobber;
namespace pg = noclobber::postgres;
using nc::change_kind;
using nc::field_value;
using nc::table_spec;
using nc::write_status;
using pg::table_store;

namespace {

std::string conninfo() {
  return nc_test::server_env("NOCLOBBER_PG_CONNINFO");
}

void exec_ok(pg::connection& c, const std::string& sql) {
  auto r = c.exec_simple(sql, true);
  INFO(sql);
  REQUIRE(r.ok());
}

// A table created for one test and dropped after it.
struct scratch {
  pg::connection admin{conninfo()};
  std::string name;
  explicit scratch(const std::string& prefix, const std::string& columns)
      : name(nc_test::unique_name(prefix)) {
    exec_ok(admin, "CREATE TABLE " + name + " (" + columns + ")");
  }
  ~scratch() { (void)admin.exec_simple("DROP TABLE IF EXISTS " + name + " CASCADE", true); }
  // The first column of the first row, in text format.
  std::string text(const std::string& sql) {
    auto r = admin.exec_simple(sql, false);
    if (!r.ok() || r.rows() == 0 || r.is_null(0, 0)) return r.ok() ? "NULL" : "ERROR " + r.error.message;
    return r.bytes(0, 0);
  }
};

struct model {
  std::string description;
  std::optional<std::string> backing_sql;
  std::string env = "{}";
  bool published = false;
  double weight = 0;
  bool operator==(const model&) const = default;
};

model described(std::string d) {
  model m;
  m.description = std::move(d);
  return m;
}

table_spec<model> models_spec(const std::string& table, bool xmin) {
  auto s = table_spec<model>(table)
               .key("name")
               .column("description", &model::description)
               .column("backing_sql", &model::backing_sql)
               .column("env", &model::env, nc::field_kind::json)
               .column("published", &model::published)
               .column("weight", &model::weight);
  if (xmin) {
    s.xmin();
  } else {
    s.version("revision");
  }
  return s;
}

const char* models_columns =
    "id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, description text NOT NULL, backing_sql text, env "
    "jsonb "
    "NOT NULL DEFAULT '{}', published boolean NOT NULL DEFAULT false, weight double precision NOT NULL "
    "DEFAULT 0, "
    "revision bigint NOT NULL DEFAULT 1, owner text";

}  // namespace

static_assert(nc::conditional_writer<table_store<model>>);
static_assert(nc::erasable_writer<table_store<model>>);
static_assert(nc::patchable_writer<table_store<model>>);
static_assert(nc::overwritable_store<table_store<model>>);

TEST_CASE("pg table_store: the contract on a version column and on xmin", "[server][postgres][table]") {
  for (const bool xmin : {false, true}) {
    INFO("xmin " << xmin);
    scratch t("nc_models", models_columns);
    exec_ok(t.admin,
            "INSERT INTO " + t.name + " (name, description, revision, owner) VALUES ('qb', 'old', 7, 'ann')");
    table_store<model> models(conninfo(), models_spec(t.name, xmin));

    auto r = models.read("qb");
    REQUIRE(r.found());
    CHECK(r.value == model{"old", std::nullopt, "{}", false, 0});
    if (!xmin) CHECK(r.token.number == 7);
    CHECK(models.read("nope").absent());

    const model next{"new", "select 1", R"({"a": 1})", true, 2.5};
    auto w = models.write_if_match("qb", r.token, next);
    REQUIRE(w.ok());
    CHECK(w.token != r.token);
    CHECK(models.read("qb").token == *w.token);
    CHECK(models.read("qb").value == next);
    CHECK(models.write_if_match("qb", r.token, described("lost")).status == write_status::conflict);
    CHECK(models.write_if_match("nope", r.token, model{}).status == write_status::absent);
    CHECK(t.text("SELECT description || '/' || owner FROM " + t.name + " WHERE name = 'qb'") == "new/ann");
    if (!xmin) CHECK(t.text("SELECT revision FROM " + t.name + " WHERE name = 'qb'") == "8");

    auto c = models.create_if_absent("fresh", described("d"));
    REQUIRE(c.ok());
    if (!xmin) CHECK(c.token->number == 1);
    CHECK(models.create_if_absent("fresh", described("e")).status == write_status::exists);
    CHECK(models.read("fresh").token == *c.token);

    auto rmw = nc::read_modify_write(models, "fresh", [](const std::optional<model>& m) -> nc::update<model> {
      model n = *m;
      n.description += "+";
      return n;
    });
    REQUIRE(rmw.ok());
    CHECK(models.read("fresh").value.description == "d+");

    const auto tok = models.read("fresh").token;
    CHECK(models.erase_if_match("fresh", nc::table_token{tok.number + 1000, {}}).status ==
          write_status::conflict);
    CHECK(models.erase_if_match("fresh", tok).ok());
    CHECK(models.read("fresh").absent());
    CHECK(models.erase_if_match("fresh", tok).status == write_status::absent);

    CHECK(models.overwrite("blind", described("x")).ok());
    CHECK(models.overwrite("blind", described("y")).ok());
    CHECK(models.read("blind").value.description == "y");
  }
}

TEST_CASE("pg table_store: a composite key over a UNIQUE constraint", "[server][postgres][table]") {
  struct run_key {
    std::string source_id;
    std::string content_hash;
    bool operator==(const run_key&) const = default;
  };
  struct run {
    std::string state;
    std::int64_t bans = 0;
  };
  scratch t(
      "nc_runs",
      "id bigserial PRIMARY KEY, source_id text NOT NULL, content_hash text NOT NULL, state text NOT NULL, "
      "bans integer NOT NULL DEFAULT 0, revision integer NOT NULL, UNIQUE (source_id, content_hash)");
  table_store<run, run_key> runs(conninfo(), table_spec<run, run_key>(t.name)
                                                 .key("source_id", &run_key::source_id)
                                                 .key("content_hash", &run_key::content_hash)
                                                 .column("state", &run::state)
                                                 .column("bans", &run::bans)
                                                 .version("revision"));
  const run_key k{"spamhaus", "abc"};
  REQUIRE(runs.create_if_absent(k, run{"pending", 0}).ok());
  CHECK(runs.create_if_absent(k, run{"pending", 0}).status == write_status::exists);
  CHECK(runs.create_if_absent(run_key{"spamhaus", "def"}, run{"pending", 0}).ok());
  auto r = runs.read(k);
  REQUIRE(r.found());
  CHECK(runs.write_if_match(k, r.token, run{"completed", 1432}).ok());
  CHECK(t.text("SELECT count(*) FROM " + t.name) == "2");
  CHECK(t.text("SELECT state || bans FROM " + t.name + " WHERE content_hash = 'abc'") == "completed1432");
}

TEST_CASE("pg table_store: a patch is one statement with an exact change report",
          "[server][postgres][table][patch]") {
  scratch t("nc_patch", models_columns);
  exec_ok(t.admin,
          "INSERT INTO " + t.name +
              " (name, description, env) VALUES ('qb', 'd', '{\"KEEP\":\"k\",\"SAME\":\"s\",\"OLD\":\"o\","
              "\"GONE\":\"g\",\"NUM\":1.0}')");
  auto spec = models_spec(t.name, true);
  table_store<model> models(conninfo(), spec);
  const auto tok = models.read("qb").token;

  nc::change_report report;
  nc::table_patch p;
  spec.set(p, &model::backing_sql, std::optional<std::string>("select 2"));
  p.set("description", field_value::of_text("d"));
  p.merge("env")
      .set_string("NEW", "n")
      .set_string("SAME", "s")
      .set_string("OLD", "o2")
      .set_json("NUM", "1")  // jsonb compares numbers by value: 1 = 1.0
      .remove("GONE")
      .remove("NEVER");
  p.report_to(&report);
  auto w = models.patch_if_match("qb", tok, p);
  INFO(w.error.code << " " << w.error.message);
  REQUIRE(w.ok());
  CHECK(t.text("SELECT env::text FROM " + t.name + " WHERE name = 'qb'") ==
        R"({"NEW": "n", "NUM": 1, "OLD": "o2", "KEEP": "k", "SAME": "s"})");
  CHECK(models.read("qb").value.backing_sql == "select 2");
  using entry = nc::change_report::entry;
  CHECK(report.entries == std::vector<entry>{{"backing_sql", "", change_kind::changed},
                                             {"description", "", change_kind::unchanged},
                                             {"env", "NEW", change_kind::added},
                                             {"env", "SAME", change_kind::unchanged},
                                             {"env", "OLD", change_kind::changed},
                                             {"env", "NUM", change_kind::unchanged},
                                             {"env", "GONE", change_kind::deleted},
                                             {"env", "NEVER", change_kind::absent_delete}});
  CHECK(report.keys_set() == 3);
  CHECK(report.keys_deleted() == 1);

  CHECK(models.patch_if_match("qb", tok, p).status == write_status::conflict);
  CHECK(report.entries.empty());
  CHECK(models.patch_if_match("nope", tok, p).status == write_status::absent);

  nc::table_patch q;
  q.merge("env").set_json("N", "[1, 2]");
  CHECK(nc::patch_if_unchanged(models, "qb", tok, q, nc::patch_conflict::retry).outcome ==
        nc::patch_outcome::applied);
  CHECK(t.text("SELECT env->>'N' FROM " + t.name + " WHERE name = 'qb'") == "[1, 2]");
  CHECK(nc::patch_if_unchanged(models, "qb", tok, q, nc::patch_conflict::drop).outcome ==
        nc::patch_outcome::dropped);
}

TEST_CASE("pg table_store: caps, guards and non-object merge targets are distinct permanent outcomes",
          "[server][postgres][table][patch]") {
  struct stack {
    std::string env_vars;
  };
  scratch t("nc_stacks", "slug text PRIMARY KEY, status text NOT NULL, env_vars jsonb NOT NULL DEFAULT '{}'");
  exec_ok(t.admin, "INSERT INTO " + t.name +
                       " (slug, status) VALUES ('web', 'running'), ('old', 'deleting'), ('arr', 'running')");
  exec_ok(t.admin, "UPDATE " + t.name + " SET env_vars = '[1]' WHERE slug = 'arr'");
  table_store<stack> stacks(conninfo(), table_spec<stack>(t.name)
                                            .key("slug")
                                            .column("env_vars", &stack::env_vars, nc::field_kind::json)
                                            .xmin()
                                            .require_not("status", "deleting")
                                            .max_bytes("env_vars", 64));
  auto big = [](std::size_t n) {
    nc::table_patch p;
    p.merge("env_vars").set_string("BIG", std::string(n, 'x'));
    return p;
  };
  const auto web = stacks.read("web").token;
  auto w = stacks.patch_if_match("web", web, big(100));
  CHECK(w.status == write_status::permanent);
  CHECK(w.error.code == nc::table_error::too_large);
  CHECK(w.error.message == "column \"env_vars\": 111 bytes > cap of 64");  // {"BIG": "x…"} as jsonb prints it
  REQUIRE(stacks.patch_if_match("web", web, big(40)).ok());
  CHECK(t.text("SELECT octet_length(env_vars::text) FROM " + t.name + " WHERE slug = 'web'") == "51");

  const auto web2 = stacks.read("web").token;
  CHECK(stacks.write_if_match("web", web2, stack{"\"" + std::string(70, 'y') + "\""}).error.code ==
        nc::table_error::too_large);
  CHECK(stacks.create_if_absent("new", stack{"\"" + std::string(70, 'y') + "\""}).error.code ==
        nc::table_error::too_large);

  const auto old = stacks.read("old").token;
  auto g = stacks.patch_if_match("old", old, big(1));
  CHECK(g.status == write_status::permanent);
  CHECK(g.error.code == nc::table_error::guard);
  CHECK(g.error.message ==
        "column \"status\" holds 'deleting' (the write is refused while it is 'deleting')");
  CHECK(stacks.write_if_match("old", old, stack{"{}"}).error.code == nc::table_error::guard);
  CHECK(stacks.erase_if_match("old", old).error.code == nc::table_error::guard);

  auto a = stacks.patch_if_match("arr", stacks.read("arr").token, big(1));
  CHECK(a.error.code == nc::table_error::not_object);
  CHECK(t.text("SELECT env_vars::text FROM " + t.name + " WHERE slug = 'arr'") == "[1]");

  nc::table_patch unknown;
  unknown.set("status", field_value::of_text("x"));
  CHECK_THROWS_WITH(stacks.patch_if_match("web", web2, unknown),
                    Catch::Contains("'status', which is not a value column"));
}

TEST_CASE("pg table_store: every misfit is a clear error at construction",
          "[server][postgres][table][schema]") {
  scratch t("nc_misfit", models_columns);
  scratch loose("nc_loose", "name text, body text, n integer, ver text, iver integer, tag text, raw bytea");
  exec_ok(t.admin, "CREATE UNIQUE INDEX ON " + loose.name + " (tag) WHERE tag IS NOT NULL");
  exec_ok(t.admin, "CREATE UNIQUE INDEX ON " + loose.name + " (lower(body))");
  const std::string view = nc_test::unique_name("nc_view");
  exec_ok(t.admin, "CREATE VIEW " + view + " AS SELECT * FROM " + t.name);
  struct item {
    std::string body;
    std::int64_t n = 0;
    double r = 0;
    bool b = false;
  };
  auto expect = [&](const table_spec<item>& spec, const std::string& message) {
    INFO(message);
    CHECK_THROWS_WITH((table_store<item>(conninfo(), spec)), Catch::Contains(message));
  };
  const std::string m = t.name, l = loose.name;
  expect(table_spec<item>("nc_missing_table").key("name").column("body", &item::body).xmin(),
         "no such table: \"nc_missing_table\"");
  expect(table_spec<item>(view).key("name").column("description", &item::body).xmin(),
         "is not a table (relkind 'v')");
  expect(table_spec<item>(l).key("name").column("body", &item::body).xmin(),
         "the key (\"name\") is neither the primary key nor a UNIQUE index");
  expect(table_spec<item>(l).key("tag").column("body", &item::body).xmin(),
         "neither the primary key nor a UNIQUE");
  expect(table_spec<item>(m).key("name").column("nope", &item::body).xmin(),
         "no such column \"nope\" (the value)");
  expect(table_spec<item>(m).key("nope").column("description", &item::body).xmin(),
         "no such column \"nope\" (the key)");
  expect(table_spec<item>(m).key("name").column("description", &item::body).version("nope"),
         "no such column \"nope\" (the version column)");
  expect(table_spec<item>(m).key("name").column("description", &item::body).xmin().require("nope", "x"),
         "no such column \"nope\" (the guard column)");
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
  expect(table_spec<item>(l).key("name").column("raw", &item::body).xmin(), "of type bytea");
  expect(table_spec<item>(m).key("name").column("description", &item::body).version("owner"),
         "the version column \"owner\" is of type text; a version column must be an integer");
  expect(table_spec<item>(m).key("name").column("description", &item::body).compare_values(),
         "compare_values() is an SQLite token");
  expect(table_spec<item>(m)
             .key("name")
             .column("description", &item::body)
             .column("id", &item::n)
             .xmin()
             .max_bytes("id", 4),
         "max_bytes on \"id\", a integer column");
  CHECK_NOTHROW(table_store<item>(conninfo(),
                                  table_spec<item>(m).key("name").column("description", &item::body).xmin()));
  exec_ok(t.admin, "DROP VIEW " + view);
}

TEST_CASE("pg table_store: hostile identifiers are quoted by PQescapeIdentifier",
          "[server][postgres][table][schema]") {
  struct row {
    std::string a;
    std::optional<std::int64_t> b;
    std::string j = "{}";
    bool operator==(const row&) const = default;
  };
  pg::connection admin(conninfo());
  const std::string table = nc_test::unique_name("We\"ird tab'le ünï; DROP TABLE victim; --");
  const std::string key = "K\"ey", col_a = "col a\"); DROP TABLE victim; --", col_b = "ключ", col_j = "j'\"",
                    ver = "v E\"r", victim = nc_test::unique_name("nc_victim");
  auto q = [&](const std::string& s) { return pg::quote_identifier(admin, s); };
  exec_ok(admin, "CREATE TABLE " + victim + " (x int)");
  exec_ok(admin, "CREATE TABLE " + q(table) + " (" + q(key) + " text PRIMARY KEY, " + q(col_a) +
                     " text NOT NULL, " + q(col_b) + " bigint, " + q(col_j) + " jsonb, " + q(ver) +
                     " integer NOT NULL DEFAULT 1)");
  for (const bool xmin : {false, true}) {
    auto spec = table_spec<row>(table)
                    .key(key)
                    .column(col_a, &row::a)
                    .column(col_b, &row::b)
                    .column(col_j, &row::j, nc::field_kind::json);
    if (xmin) {
      spec.xmin();
    } else {
      spec.version(ver).require_not(col_a, "frozen").max_bytes(col_j, 1000);
    }
    table_store<row> s(conninfo(), spec);
    const std::string k = xmin ? "x'\"k" : "v'\"k";
    auto created = s.create_if_absent(k, row{"x", 1, "{}"});
    INFO(created.error.message);
    REQUIRE(created.ok());
    auto r = s.read(k);
    REQUIRE(r.found());
    REQUIRE(s.write_if_match(k, r.token, row{"y\"'", std::nullopt, "{}"}).ok());
    nc::table_patch p;
    nc::change_report rep;
    p.merge(col_j).set_string("we\"ird\\key", "v\n").remove("a'b");
    p.set(col_b, field_value::of_integer(5));
    p.report_to(&rep);
    auto w = s.patch_if_match(k, s.read(k).token, p);
    INFO(w.error.message);
    REQUIRE(w.ok());
    CHECK(s.read(k).value == row{"y\"'", 5, R"({"we\"ird\\key": "v\n"})"});
    CHECK(rep.count(change_kind::added) == 1);
    CHECK(rep.count(change_kind::absent_delete) == 1);
    REQUIRE(s.erase_if_match(k, s.read(k).token).ok());
  }
  auto v = admin.exec_simple("SELECT count(*) FROM " + victim, false);
  CHECK(v.ok());  // still there
  exec_ok(admin, "DROP TABLE " + q(table) + "; DROP TABLE " + victim);
}

TEST_CASE("pg table_store: a stored value that does not fit is a permanent read; nothing is written",
          "[server][postgres][table]") {
  scratch t("nc_corrupt", "k text PRIMARY KEY, n bigint, doc text NOT NULL, v integer NOT NULL DEFAULT 1");
  exec_ok(t.admin, "INSERT INTO " + t.name +
                       " VALUES ('null', NULL, '{}'), ('big', 5000000000, '{}'), "
                       "('json', 1, '{\"n\": \"x\"}')");
  struct doc {
    int n = 0;
  };
  struct rec {
    std::int32_t n = 0;
    std::string doc;
  };
  table_store<rec> s(
      conninfo(),
      table_spec<rec>(t.name).key("k").column("n", &rec::n).column("doc", &rec::doc).version("v"));
  const std::pair<const char*, const char*> cases[] = {
      {"null", "key (\"k\" = text 'null'): field 'n': is NULL, but the member is not a std::optional"},
      {"big", "field 'n': holds integer 5000000000, which does not fit the member's type"},
  };
  for (const auto& [key, message] : cases) {
    auto r = s.read(key);
    INFO(key);
    CHECK(r.status == nc::read_status::permanent);
    CHECK(r.error.code == "codec");
    CHECK_THAT(r.error.message, Catch::Contains(message));
    bool called = false;
    auto rmw = nc::read_modify_write(s, key, [&](const std::optional<rec>&) -> nc::update<rec> {
      called = true;
      return rec{};
    });
    CHECK(rmw.last_status == write_status::permanent);
    CHECK_FALSE(called);
  }
  CHECK(t.text("SELECT n FROM " + t.name + " WHERE k = 'big'") == "5000000000");
}
