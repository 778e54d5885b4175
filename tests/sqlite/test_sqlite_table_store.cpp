// sqlite::table_store on tables the user already has: the contract on a version column, on
// compare_values (NULLs compare with IS), on a composite key; server-side patches with an exact
// change report, caps, guards and non-object targets; every construction error, named; hostile
// identifiers; corrupt stored values reported, never replaced.
#include <noclobber/adapters/sqlite/table_store.hpp>
#include <noclobber/patch_if_unchanged.hpp>
#include <noclobber/read_modify_write.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "raw_db.hpp"
#include "temp_db.hpp"

namespace nc = noclobber;
using nc::change_kind;
using nc::field_value;
using nc::table_spec;
using nc::write_status;
using nc::sqlite::table_store;

namespace {

struct model {
  std::string description;
  std::optional<std::string> backing_sql;
  std::string env = "{}";  // a JSON object, as text
  bool operator==(const model&) const = default;
};

table_spec<model> models_spec() {
  return table_spec<model>("models")
      .key("name")
      .column("description", &model::description)
      .column("backing_sql", &model::backing_sql)
      .column("env", &model::env, nc::field_kind::json)
      .version("revision");
}

void make_models(noclobber_test::raw_db& db) {
  db.exec(
      "CREATE TABLE models (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL, "
      "backing_sql TEXT, env TEXT NOT NULL DEFAULT '{}', revision INTEGER NOT NULL DEFAULT 1, owner TEXT)");
}

auto patient() {
  nc::retry_policy p;
  p.max_attempts = 1000;
  p.backoff = nc::backoff_policy::full_jitter(std::chrono::microseconds(10), std::chrono::milliseconds(1));
  return p;
}

}  // namespace

static_assert(nc::conditional_writer<table_store<model>>);
static_assert(nc::erasable_writer<table_store<model>>);
static_assert(nc::patchable_writer<table_store<model>>);
static_assert(nc::overwritable_store<table_store<model>>);

TEST_CASE("sqlite table_store: the contract on a version column", "[sqlite][table]") {
  noclobber_test::temp_db file("table_version");
  noclobber_test::raw_db raw(file.path());
  make_models(raw);
  raw.exec("INSERT INTO models (name, description, revision, owner) VALUES ('qb', 'old', 7, 'ann')");
  table_store<model> models(file.path(), models_spec());

  auto r = models.read("qb");
  REQUIRE(r.found());
  CHECK(r.token.number == 7);
  CHECK(r.value == model{"old", std::nullopt, "{}"});
  CHECK(models.read("nope").absent());

  // write_if_match: bumps the version; a stale token is a conflict; a missing key absent.
  auto w = models.write_if_match("qb", r.token, model{"new", "select 1", "{\"a\":1}"});
  REQUIRE(w.ok());
  CHECK(w.token->number == 8);
  CHECK(models.write_if_match("qb", r.token, model{"lost", {}, "{}"}).status == write_status::conflict);
  CHECK(models.write_if_match("nope", r.token, model{}).status == write_status::absent);
  CHECK(raw.text("SELECT description || '/' || revision || '/' || owner FROM models WHERE name = 'qb'") ==
        "new/8/ann");  // the unmapped column is untouched

  // create_if_absent: the first version; a second create is `exists`.
  auto c = models.create_if_absent("fresh", model{"d", {}, "{}"});
  REQUIRE(c.ok());
  CHECK(c.token->number == 1);
  CHECK(models.create_if_absent("fresh", model{"e", {}, "{}"}).status == write_status::exists);

  // read_modify_write end to end.
  auto rmw = nc::read_modify_write(models, "fresh", [](const std::optional<model>& m) -> nc::update<model> {
    model next = *m;
    next.description += "+";
    return next;
  });
  REQUIRE(rmw.ok());
  CHECK(models.read("fresh").value.description == "d+");

  // erase_if_match.
  const auto t = models.read("fresh").token;
  CHECK(models.erase_if_match("fresh", nc::table_token{99, {}}).status == write_status::conflict);
  CHECK(models.erase_if_match("fresh", t).ok());
  CHECK(models.read("fresh").absent());
  CHECK(models.erase_if_match("fresh", t).status == write_status::absent);

  // overwrite: the blind upsert.
  CHECK(models.overwrite("blind", model{"x", {}, "{}"}).ok());
  CHECK(models.overwrite("blind", model{"y", {}, "{}"}).token->number == 2);
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
  struct run_key {
    std::string source_id;
    std::string content_hash;
    bool operator==(const run_key&) const = default;
  };
  struct run {
    std::string state;
    std::int64_t bans = 0;
    bool operator==(const run&) const = default;
  };
  noclobber_test::temp_db file("table_composite");
  noclobber_test::raw_db raw(file.path());
  raw.exec(
      "CREATE TABLE import_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, source_id TEXT NOT NULL, content_hash "
      "TEXT NOT "
      "NULL, state TEXT NOT NULL, bans INTEGER NOT NULL DEFAULT 0, UNIQUE (source_id, content_hash))");
  table_store<run, run_key> runs(file.path(), table_spec<run, run_key>("import_runs")
                                                  .key("source_id", &run_key::source_id)
                                                  .key("content_hash", &run_key::content_hash)
                                                  .column("state", &run::state)
                                                  .column("bans", &run::bans)
                                                  .compare_values());
  const run_key k{"spamhaus", "abc"};
  REQUIRE(runs.create_if_absent(k, run{"pending", 0}).ok());
  CHECK(runs.create_if_absent(k, run{"pending", 0}).status == write_status::exists);
  CHECK(runs.create_if_absent(run_key{"spamhaus", "def"}, run{"pending", 0}).ok());
  auto r = runs.read(k);
  REQUIRE(r.found());
  CHECK(runs.write_if_match(k, r.token, run{"completed", 1432}).ok());
  CHECK(raw.text("SELECT count(*) FROM import_runs") == "2");
  CHECK(raw.text("SELECT state || bans FROM import_runs WHERE content_hash = 'abc'") == "completed1432");
}

TEST_CASE("sqlite table_store: a patch is one conditional UPDATE with an exact change report",
          "[sqlite][table][patch]") {
  noclobber_test::temp_db file("table_patch");
  noclobber_test::raw_db raw(file.path());
  make_models(raw);
  raw.exec(
      "INSERT INTO models (name, description, env) VALUES ('qb', 'd', '{\"KEEP\":\"k\",\"SAME\":\"s\","
      "\"OLD\":\"o\",\"GONE\":\"g\"}')");
  auto spec = models_spec();
  table_store<model> models(file.path(), spec);
  const auto t = models.read("qb").token;

  nc::change_report report;
  nc::table_patch p;
  spec.set(p, &model::backing_sql, std::optional<std::string>("select 2"));
  p.set("description", field_value::of_text("d"));  // the same value: unchanged
  p.merge("env")
      .set_string("NEW", "n")
      .set_string("SAME", "s")
      .set_string("OLD", "o2")
      .remove("GONE")
      .remove("NEVER");
  p.report_to(&report);
  auto w = models.patch_if_match("qb", t, p);
  REQUIRE(w.ok());
  CHECK(w.token->number == t.number + 1);
  const auto after = models.read("qb").value;
  CHECK(after.backing_sql == "select 2");
  CHECK(after.env == R"({"KEEP":"k","SAME":"s","OLD":"o2","NEW":"n"})");  // untouched keys keep their place
  using entry = nc::change_report::entry;
  CHECK(report.entries == std::vector<entry>{{"backing_sql", "", change_kind::changed},
                                             {"description", "", change_kind::unchanged},
                                             {"env", "NEW", change_kind::added},
                                             {"env", "SAME", change_kind::unchanged},
                                             {"env", "OLD", change_kind::changed},
                                             {"env", "GONE", change_kind::deleted},
                                             {"env", "NEVER", change_kind::absent_delete}});
  CHECK(report.keys_set() == 3);  // backing_sql, NEW, OLD: not the unchanged ones
  CHECK(report.keys_deleted() == 1);
  CHECK(report.count(change_kind::absent_delete) == 1);

  // At a stale token: conflict, and the report stays empty.
  CHECK(models.patch_if_match("qb", t, p).status == write_status::conflict);
  CHECK(report.entries.empty());
  CHECK(models.patch_if_match("nope", t, p).status == write_status::absent);

  // patch_if_unchanged drives it (retry re-reads the token and sends the same patch again).
  nc::table_patch q;
  q.merge("env").set_json("N", "[1, 2]");
  auto u = nc::patch_if_unchanged(models, "qb", t, q, nc::patch_conflict::retry);
  CHECK(u.outcome == nc::patch_outcome::applied);
  CHECK(models.read("qb").value.env == R"({"KEEP":"k","SAME":"s","OLD":"o2","NEW":"n","N":[1,2]})");
  auto d = nc::patch_if_unchanged(models, "qb", t, q, nc::patch_conflict::drop);
  CHECK(d.outcome == nc::patch_outcome::dropped);
}

TEST_CASE("sqlite table_store: caps, guards and non-object merge targets are distinct permanent outcomes",
          "[sqlite][table][patch]") {
  noclobber_test::temp_db file("table_cap");
  noclobber_test::raw_db raw(file.path());
  raw.exec(
      "CREATE TABLE stacks (slug TEXT PRIMARY KEY, status TEXT NOT NULL, env_vars TEXT NOT NULL DEFAULT "
      "'{}', "
      "version INTEGER NOT NULL DEFAULT 1)");
  raw.exec(
      "INSERT INTO stacks (slug, status) VALUES ('web', 'running'), ('old', 'deleting'), ('arr', 'running')");
  raw.exec("UPDATE stacks SET env_vars = '[1]' WHERE slug = 'arr'");
  struct stack {
    std::string env_vars;
  };
  table_store<stack> stacks(file.path(), table_spec<stack>("stacks")
                                             .key("slug")
                                             .column("env_vars", &stack::env_vars, nc::field_kind::json)
                                             .version("version")
                                             .require_not("status", "deleting")
                                             .max_bytes("env_vars", 64));
  auto patch_big = [](std::size_t n) {
    nc::table_patch p;
    p.merge("env_vars").set_string("BIG", std::string(n, 'x'));
    return p;
  };
  const auto web = stacks.read("web").token;
  auto w = stacks.patch_if_match("web", web, patch_big(100));
  CHECK(w.status == write_status::permanent);
  CHECK(w.error.code == nc::table_error::too_large);
  CHECK(w.error.message == "column \"env_vars\": 110 bytes > cap of 64");
  REQUIRE(stacks.patch_if_match("web", web, patch_big(40)).ok());  // {"BIG":"x…"}: 50 bytes
  CHECK(raw.text("SELECT length(env_vars) FROM stacks WHERE slug = 'web'") == "50");

  // Whole writes are capped too.
  const auto web2 = stacks.read("web").token;
  auto whole = stacks.write_if_match("web", web2, stack{std::string(65, ' ')});
  CHECK(whole.error.code == nc::table_error::too_large);
  CHECK(stacks.create_if_absent("new", stack{std::string(65, ' ')}).error.code == nc::table_error::too_large);

  // The guard: a stack mid-teardown refuses the patch (checked in the UPDATE's WHERE).
  const auto old = stacks.read("old").token;
  auto g = stacks.patch_if_match("old", old, patch_big(1));
  CHECK(g.status == write_status::permanent);
  CHECK(g.error.code == nc::table_error::guard);
  CHECK(g.error.message ==
        "column \"status\" holds text 'deleting' (the write is refused while it is 'deleting')");
  CHECK(stacks.write_if_match("old", old, stack{"{}"}).error.code == nc::table_error::guard);
  CHECK(stacks.erase_if_match("old", old).error.code == nc::table_error::guard);

  // A merge into a JSON array is refused, not turned into an object.
  auto a = stacks.patch_if_match("arr", stacks.read("arr").token, patch_big(1));
  CHECK(a.error.code == nc::table_error::not_object);
  CHECK(raw.text("SELECT env_vars FROM stacks WHERE slug = 'arr'") == "[1]");

  // Bad patches are rejected before anything is sent.
  nc::table_patch unknown;
  unknown.set("status", field_value::of_text("x"));
  CHECK_THROWS_WITH(stacks.patch_if_match("web", web2, unknown),
                    Catch::Contains("'status', which is not a value column"));
  CHECK_THROWS_WITH(stacks.patch_if_match("web", web2, nc::table_patch{}),
                    Catch::Contains("the patch is empty"));
  nc::table_patch p;
  CHECK_THROWS_WITH(p.merge("env_vars").set_json("K", " null "), Catch::Contains("JSON null"));
  CHECK_THROWS_WITH(p.merge("env_vars").set_string("A", "1").remove("A"), Catch::Contains("named twice"));
}

TEST_CASE("sqlite table_store: every misfit is a clear error at construction", "[sqlite][table][schema]") {
  noclobber_test::temp_db file("table_errors");
  noclobber_test::raw_db raw(file.path());
  make_models(raw);
  raw.exec("CREATE VIEW models_view AS SELECT * FROM models");
  raw.exec(
      "CREATE TABLE loose (name TEXT, body TEXT, n INTEGER, d DATE, r REAL, ver TEXT, iver INTEGER, "
      "tag TEXT)");
  raw.exec("CREATE UNIQUE INDEX loose_partial ON loose (tag) WHERE tag IS NOT NULL");
  raw.exec("CREATE UNIQUE INDEX loose_expr ON loose (lower(body))");
  struct item {
    std::string body;
    std::int64_t n = 0;
    double r = 0;
  };
  auto loose = [] { return table_spec<item>("loose").key("name").column("body", &item::body); };
  auto expect = [&](const table_spec<item>& spec, const std::string& message) {
    INFO(message);
    CHECK_THROWS_WITH((table_store<item>(file.path(), spec)), Catch::Contains(message));
  };
  expect(table_spec<item>("missing").key("name").column("body", &item::body).version("v"),
         "no such table: \"missing\"");
  expect(table_spec<item>("models_view").key("name").column("description", &item::body).version("revision"),
         "is a view, not a table");
  expect(loose().version("iver"), "the key (\"name\") is neither the primary key nor a UNIQUE index");
  expect(table_spec<item>("loose").key("tag").column("body", &item::body).version("iver"),
         "neither the primary key nor a UNIQUE index");  // a partial index does not count
  expect(table_spec<item>("models").key("name").column("nope", &item::body).version("revision"),
         "no such column \"nope\" (the value)");
  expect(table_spec<item>("models").key("nope").column("description", &item::body).version("revision"),
         "no such column \"nope\" (the key)");
  expect(table_spec<item>("models").key("name").column("description", &item::body).version("nope"),
         "no such column \"nope\" (the version column)");
  expect(table_spec<item>("models")
             .key("name")
             .column("description", &item::body)
             .version("revision")
             .require_not("nope", "x"),
         "no such column \"nope\" (the guard column)");
  expect(table_spec<item>("models").key("name").column("revision", &item::body).version("id"),
         "column \"revision\" is declared 'INTEGER' (INTEGER affinity), which does not fit a text member");
  expect(table_spec<item>("models").key("name").column("description", &item::n).version("revision"),
         "column \"description\" is declared 'TEXT' (TEXT affinity), which does not fit a integer member");
  expect(table_spec<item>("models").key("name").column("revision", &item::r).version("id"),
         "does not fit a real member");
  expect(table_spec<item>("loose").key("name").column("d", &item::body).version("iver"),
         "column \"d\" is declared 'DATE' (NUMERIC affinity)");
  expect(table_spec<item>("models").key("name").column("description", &item::body).version("owner"),
         "the version column \"owner\" is declared 'TEXT'; a version column must be an INTEGER");
  expect(table_spec<item>("models").key("name").column("description", &item::body).xmin(),
         "xmin() is a PostgreSQL token");
  expect(table_spec<item>("models").key("name").column("description", &item::body), "no token");
  expect(table_spec<item>("models").column("description", &item::body).version("revision"), "no key column");
  expect(table_spec<item>("models").key("name").version("revision"), "no value column");
  expect(table_spec<item>("models").key("name").column("name", &item::body).version("revision"),
         "column 'name' is both a key and a value column");
  expect(table_spec<item>("models")
             .key("name")
             .column("description", &item::body)
             .column("revision", &item::n)
             .version("revision"),
         "the version column 'revision' is also a value column");
  expect(table_spec<item>("models")
             .key("name")
             .column("description", &item::body)
             .column("id", &item::n)
             .version("revision")
             .max_bytes("id", 10),
         "max_bytes on \"id\", a integer column");
  expect(table_spec<item>("models")
             .key("name")
             .column("description", &item::body)
             .version("revision")
             .max_bytes("env", 10),
         "max_bytes names 'env', which is not a value column");
  CHECK_THROWS_WITH(table_spec<item>("models").version("a").compare_values(), Catch::Contains("two tokens"));
  CHECK_THROWS_WITH(table_spec<item>("models").column("a", &item::body).column("a", &item::body),
                    Catch::Contains("mapped twice"));
  CHECK_THROWS_WITH(table_spec<item>(""), Catch::Contains("table name is empty"));
  // A well-formed spec on the same file opens.
  CHECK_NOTHROW(table_store<item>(
      file.path(),
      table_spec<item>("models").key("name").column("description", &item::body).version("revision")));
}

TEST_CASE("sqlite table_store: hostile identifiers are quoted, never spliced", "[sqlite][table][schema]") {
  struct row {
    std::string a;
    std::optional<std::int64_t> b;
    std::string j = "{}";
    bool operator==(const row&) const = default;
  };
  noclobber_test::temp_db file("table_hostile");
  noclobber_test::raw_db raw(file.path());
  const std::string table = "we\"ird tab'le ünï; DROP TABLE victim; --";
  const std::string key = "k\"ey", col_a = "col a\"); DROP TABLE victim; --", col_b = "ключ", col_j = "j'\"",
                    ver = "v e\"r";
  auto q = [](const std::string& s) {
    std::string out = "\"";
    for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
  };
  raw.exec("CREATE TABLE victim (x)");
  raw.exec("CREATE TABLE " + q(table) + " (" + q(key) + " TEXT PRIMARY KEY, " + q(col_a) +
           " TEXT NOT NULL, " + q(col_b) + " INTEGER, " + q(col_j) + " TEXT, " + q(ver) +
           " INTEGER NOT NULL DEFAULT 1)");
  for (const bool compare : {false, true}) {
    auto spec = table_spec<row>(table)
                    .key(key)
                    .column(col_a, &row::a)
                    .column(col_b, &row::b)
                    .column(col_j, &row::j, nc::field_kind::json);
    if (compare) {
      spec.compare_values();
    } else {
      spec.version(ver).require_not(col_a, "frozen").max_bytes(col_j, 1000);
    }
    table_store<row> s(file.path(), spec);
    const std::string k = compare ? "c'\"k" : "v'\"k";
    auto created = s.create_if_absent(k, row{"x", 1, "{}"});
    INFO(created.error.code << " " << created.error.message);
    REQUIRE(created.ok());
    auto r = s.read(k);
    REQUIRE(r.found());
    REQUIRE(s.write_if_match(k, r.token, row{"y\"'", std::nullopt, "{}"}).ok());
    nc::table_patch p;
    nc::change_report rep;
    p.merge(col_j).set_string("we\"ird\\key", "v\n").remove("a'b");
    p.set(col_b, field_value::of_integer(5));
    p.report_to(&rep);
    REQUIRE(s.patch_if_match(k, s.read(k).token, p).ok());
    CHECK(s.read(k).value == row{"y\"'", 5, R"({"we\"ird\\key":"v\n"})"});
    CHECK(rep.count(change_kind::added) == 1);
    CHECK(rep.count(change_kind::absent_delete) == 1);
    REQUIRE(s.erase_if_match(k, s.read(k).token).ok());
  }
  CHECK(raw.text("SELECT count(*) FROM victim") == "0");  // still there
  CHECK_THROWS_WITH(
      table_store<row>(file.path(),
                       table_spec<row>(std::string("a\0b", 3)).key("k").column("a", &row::a).version("v")),
      Catch::Contains("NUL"));
}

TEST_CASE("sqlite table_store: a stored value that does not fit is a permanent read; nothing is written",
          "[sqlite][table]") {
  noclobber_test::temp_db file("table_corrupt");
  noclobber_test::raw_db raw(file.path());
  raw.exec("CREATE TABLE t (k TEXT PRIMARY KEY, n, s TEXT, v INTEGER NOT NULL)");
  raw.exec(
      "INSERT INTO t VALUES ('text', 'abc', 's', 1), ('null', NULL, 's', 1), ('big', 5000000000, 's', 1), "
      "('ver', 1, 's', 'x')");
  struct rec {
    std::int32_t n = 0;
    std::string s;
  };
  table_store<rec> t(file.path(),
                     table_spec<rec>("t").key("k").column("n", &rec::n).column("s", &rec::s).version("v"));
  const std::pair<const char*, const char*> cases[] = {
      {"text", "key (\"k\" = text 'text'): field 'n': holds text 'abc', expected an integer"},
      {"null", "field 'n': is NULL, but the member is not a std::optional"},
      {"big", "field 'n': holds integer 5000000000, which does not fit the member's type"},
      {"ver", "the version column \"v\" holds text 'x', not an integer"},
  };
  for (const auto& [key, message] : cases) {
    auto r = t.read(key);
    INFO(key);
    CHECK(r.status == nc::read_status::permanent);
    CHECK(r.error.code == "codec");
    CHECK_THAT(r.error.message, Catch::Contains(message));
    bool called = false;
    auto rmw = nc::read_modify_write(t, key, [&](const std::optional<rec>&) -> nc::update<rec> {
      called = true;
      return rec{};
    });
    CHECK(rmw.last_status == write_status::permanent);
    CHECK_FALSE(called);
  }
  CHECK(raw.text("SELECT n FROM t WHERE k = 'text'") == "abc");
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
