// The table_store checks that PostgreSQL (tests/servers/test_server_pg_table_store.cpp) and SQLite
// (tests/sqlite/test_sqlite_table_store.cpp) share, written once. Each check takes a dialect fixture
// F, which both files define:
//
//   F::types                      table_contract::type_names: how the dialect spells each column type
//   f.name(stem)                  a table or view name for this test (PostgreSQL: unique per run)
//   f.quote(identifier)           the identifier quoted by the dialect's rules
//   f.exec(sql), f.text(sql)      run SQL; the first column of the first row as text ("NULL" for NULL)
//   f.create_table(name, cols)    CREATE TABLE name (cols), {type} placeholders spelled; dropped with f
//   f.create_view(name, table)    CREATE VIEW name AS SELECT * FROM table; dropped with f
//   f.open(spec)                  the dialect's table_store<V, K> on that spec
//
// What differs between the dialects (how the database prints JSON, the wording of its messages) is
// passed in as literal expectations, so every check states exactly what it expects.
#pragma once

#include <noclobber/adapters/table_patch.hpp>
#include <noclobber/adapters/table_spec.hpp>
#include <noclobber/patch_if_unchanged.hpp>
#include <noclobber/read_modify_write.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace table_contract {

namespace nc = noclobber;
using nc::change_kind;
using nc::field_value;
using nc::table_spec;
using nc::table_token_kind;
using nc::write_status;

/// The dialect's spelling of each placeholder a column list may use.
struct type_names {
  std::string text, integer, bigint, real, boolean, json, serial_key;
};

/// `columns` with every {text}, {integer}, {bigint}, {real}, {boolean}, {json} and {serial_key}
/// replaced by the dialect's spelling (other braces, such as DEFAULT '{}', stay).
inline std::string spell(std::string columns, const type_names& t) {
  const std::pair<std::string, const std::string*> names[] = {{"{text}", &t.text},
                                                              {"{integer}", &t.integer},
                                                              {"{bigint}", &t.bigint},
                                                              {"{real}", &t.real},
                                                              {"{boolean}", &t.boolean},
                                                              {"{json}", &t.json},
                                                              {"{serial_key}", &t.serial_key}};
  for (const auto& [placeholder, spelling] : names) {
    for (auto at = columns.find(placeholder); at != std::string::npos;
         at = columns.find(placeholder, at + spelling->size())) {
      columns.replace(at, placeholder.size(), *spelling);
    }
  }
  return columns;
}

/// The spec with its token: the integer column `version_column`, xmin or compare_values.
template <class V, class K>
table_spec<V, K>& with_token(table_spec<V, K>& spec, table_token_kind token,
                             const std::string& version_column) {
  switch (token) {
    case table_token_kind::version_column:
      return spec.version(version_column);
    case table_token_kind::xmin:
      return spec.xmin();
    case table_token_kind::compare_values:
      return spec.compare_values();
    case table_token_kind::none:
      break;
  }
  return spec;
}

struct model {
  std::string description;
  std::optional<std::string> backing_sql;
  std::string env = "{}";  // a JSON object
  bool published = false;
  double weight = 0;
  bool operator==(const model&) const = default;
};

inline model described(std::string d) {
  model m;
  m.description = std::move(d);
  return m;
}

/// A `models` table as a service has it: a surrogate id, a UNIQUE name, a revision and an owner the
/// mapping leaves alone.
inline const char* const models_columns =
    "id {serial_key}, name {text} NOT NULL UNIQUE, description {text} NOT NULL, backing_sql {text}, "
    "env {json} NOT NULL DEFAULT '{}', published {boolean} NOT NULL DEFAULT false, weight {real} NOT NULL "
    "DEFAULT 0, revision {bigint} NOT NULL DEFAULT 1, owner {text}";

inline table_spec<model> models_spec(const std::string& table, table_token_kind token) {
  auto s = table_spec<model>(table)
               .key("name")
               .column("description", &model::description)
               .column("backing_sql", &model::backing_sql)
               .column("env", &model::env, nc::field_kind::json)
               .column("published", &model::published)
               .column("weight", &model::weight);
  with_token(s, token, "revision");
  return s;
}

template <class F>
std::string models_table(F& f, const std::string& stem) {
  const std::string t = f.name(stem);
  f.create_table(t, models_columns);
  return t;
}

/// read, write_if_match, create_if_absent, read_modify_write, erase_if_match and overwrite on an
/// existing row, with an unmapped column (owner) left untouched.
template <class F>
void check_contract(F& f, table_token_kind token) {
  const bool version = token == table_token_kind::version_column;
  const std::string t = models_table(f, "nc_models");
  f.exec("INSERT INTO " + t + " (name, description, revision, owner) VALUES ('qb', 'old', 7, 'ann')");
  auto models = f.open(models_spec(t, token));

  auto r = models.read("qb");
  REQUIRE(r.found());
  CHECK(r.value == model{"old", std::nullopt, "{}", false, 0});
  if (version) CHECK(r.token.number == 7);
  CHECK(models.read("nope").absent());

  // write_if_match: a new token; a stale token is a conflict; a missing key absent.
  const model next{"new", "select 1", R"({"a": 1})", true, 2.5};
  auto w = models.write_if_match("qb", r.token, next);
  REQUIRE(w.ok());
  CHECK(w.token != r.token);
  if (version) CHECK(w.token->number == 8);
  CHECK(models.read("qb").token == *w.token);
  CHECK(models.read("qb").value == next);
  CHECK(models.write_if_match("qb", r.token, described("lost")).status == write_status::conflict);
  CHECK(models.write_if_match("nope", r.token, model{}).status == write_status::absent);
  CHECK(f.text("SELECT description || '/' || owner FROM " + t + " WHERE name = 'qb'") ==
        "new/ann");  // the unmapped column is untouched
  if (version) CHECK(f.text("SELECT revision FROM " + t + " WHERE name = 'qb'") == "8");

  // create_if_absent: the first version; a second create is `exists`.
  auto c = models.create_if_absent("fresh", described("d"));
  REQUIRE(c.ok());
  if (version) CHECK(c.token->number == 1);
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

  // overwrite: the blind upsert.
  CHECK(models.overwrite("blind", described("x")).ok());
  auto o = models.overwrite("blind", described("y"));
  REQUIRE(o.ok());
  if (version) CHECK(o.token->number == 2);
  CHECK(models.read("blind").value.description == "y");
}

/// A key of two columns that is no primary key but a UNIQUE constraint (the import_runs shape).
template <class F>
void check_composite_key(F& f, table_token_kind token) {
  struct run_key {
    std::string source_id;
    std::string content_hash;
    bool operator==(const run_key&) const = default;
  };
  struct run {
    std::string state;
    std::int64_t bans = 0;
  };
  const std::string t = f.name("nc_runs");
  f.create_table(t, std::string("id {serial_key}, source_id {text} NOT NULL, content_hash {text} NOT NULL, "
                                "state {text} NOT NULL, bans {integer} NOT NULL DEFAULT 0, ") +
                        (token == table_token_kind::version_column ? "revision {integer} NOT NULL, " : "") +
                        "UNIQUE (source_id, content_hash)");
  auto spec = table_spec<run, run_key>(t)
                  .key("source_id", &run_key::source_id)
                  .key("content_hash", &run_key::content_hash)
                  .column("state", &run::state)
                  .column("bans", &run::bans);
  auto runs = f.open(with_token(spec, token, "revision"));
  const run_key k{"spamhaus", "abc"};
  REQUIRE(runs.create_if_absent(k, run{"pending", 0}).ok());
  CHECK(runs.create_if_absent(k, run{"pending", 0}).status == write_status::exists);
  CHECK(runs.create_if_absent(run_key{"spamhaus", "def"}, run{"pending", 0}).ok());
  auto r = runs.read(k);
  REQUIRE(r.found());
  CHECK(runs.write_if_match(k, r.token, run{"completed", 1432}).ok());
  CHECK(f.text("SELECT count(*) FROM " + t) == "2");
  CHECK(f.text("SELECT state || bans FROM " + t + " WHERE content_hash = 'abc'") == "completed1432");
}

/// How the dialect stores and reports the documents of check_patch_report.
struct patch_texts {
  change_kind number_respelled;  // NUM: 1.0 set to 1 (jsonb compares numbers by value)
  std::string env_after_patch;   // the env column, as the database prints it
  std::string env_after_merge;   // after the second patch ("N": [1, 2])
};

/// One conditional statement per patch, with a change report that tells set, changed, unchanged,
/// deleted and deletes of absent keys apart; a stale token reports nothing.
template <class F>
void check_patch_report(F& f, table_token_kind token, const patch_texts& texts) {
  const std::string t = models_table(f, "nc_patch");
  f.exec("INSERT INTO " + t +
         " (name, description, env) VALUES ('qb', 'd', '{\"KEEP\":\"k\",\"SAME\":\"s\",\"OLD\":\"o\","
         "\"GONE\":\"g\",\"NUM\":1.0}')");
  auto spec = models_spec(t, token);
  auto models = f.open(spec);
  const auto tok = models.read("qb").token;

  nc::change_report report;
  nc::table_patch p;
  spec.set(p, &model::backing_sql, std::optional<std::string>("select 2"));
  p.set("description", field_value::of_text("d"));  // the same value: unchanged
  p.merge("env")
      .set_string("NEW", "n")
      .set_string("SAME", "s")
      .set_string("OLD", "o2")
      .set_json("NUM", "1")
      .remove("GONE")
      .remove("NEVER");
  p.report_to(&report);
  auto w = models.patch_if_match("qb", tok, p);
  INFO(w.error.code << " " << w.error.message);
  REQUIRE(w.ok());
  if (token == table_token_kind::version_column) CHECK(w.token->number == tok.number + 1);
  CHECK(f.text("SELECT env FROM " + t + " WHERE name = 'qb'") == texts.env_after_patch);
  CHECK(models.read("qb").value.backing_sql == "select 2");
  using entry = nc::change_report::entry;
  CHECK(report.entries == std::vector<entry>{{"backing_sql", "", change_kind::changed},
                                             {"description", "", change_kind::unchanged},
                                             {"env", "NEW", change_kind::added},
                                             {"env", "SAME", change_kind::unchanged},
                                             {"env", "OLD", change_kind::changed},
                                             {"env", "NUM", texts.number_respelled},
                                             {"env", "GONE", change_kind::deleted},
                                             {"env", "NEVER", change_kind::absent_delete}});
  // backing_sql, NEW, OLD (and NUM where it changed): not the unchanged ones
  CHECK(report.keys_set() == (texts.number_respelled == change_kind::changed ? 4U : 3U));
  CHECK(report.keys_deleted() == 1);
  CHECK(report.count(change_kind::absent_delete) == 1);

  // At a stale token: conflict, and the report stays empty.
  CHECK(models.patch_if_match("qb", tok, p).status == write_status::conflict);
  CHECK(report.entries.empty());
  CHECK(models.patch_if_match("nope", tok, p).status == write_status::absent);

  // patch_if_unchanged drives it (retry re-reads the token and sends the same patch again).
  nc::table_patch q;
  q.merge("env").set_json("N", "[1, 2]");
  CHECK(nc::patch_if_unchanged(models, "qb", tok, q, nc::patch_conflict::retry).outcome ==
        nc::patch_outcome::applied);
  CHECK(models.read("qb").value.env == texts.env_after_merge);
  CHECK(nc::patch_if_unchanged(models, "qb", tok, q, nc::patch_conflict::drop).outcome ==
        nc::patch_outcome::dropped);
}

/// How the dialect words the outcomes of check_caps_guards.
struct cap_texts {
  std::string cap_message;    // a {"BIG": 100 x} patch over the 64-byte cap
  std::string length_at_40;   // the stored env_vars after a {"BIG": 40 x} patch, in bytes
  std::string guard_message;  // the guard refusing a stack that is 'deleting'
};

/// The stacks shape: a 64-byte cap on a JSON column, a guard on a status column and a merge into a
/// JSON array are each a permanent outcome with its own code; bad patches throw before any SQL.
template <class F>
void check_caps_guards(F& f, table_token_kind token, const cap_texts& texts) {
  struct stack {
    std::string env_vars;
  };
  const std::string t = f.name("nc_stacks");
  f.create_table(
      t, std::string("slug {text} PRIMARY KEY, status {text} NOT NULL, env_vars {json} NOT NULL "
                     "DEFAULT '{}'") +
             (token == table_token_kind::version_column ? ", version {integer} NOT NULL DEFAULT 1" : ""));
  f.exec("INSERT INTO " + t +
         " (slug, status) VALUES ('web', 'running'), ('old', 'deleting'), ('arr', 'running')");
  f.exec("UPDATE " + t + " SET env_vars = '[1]' WHERE slug = 'arr'");
  auto spec = table_spec<stack>(t).key("slug").column("env_vars", &stack::env_vars, nc::field_kind::json);
  with_token(spec, token, "version").require_not("status", "deleting").max_bytes("env_vars", 64);
  auto stacks = f.open(spec);
  auto big = [](std::size_t n) {
    nc::table_patch p;
    p.merge("env_vars").set_string("BIG", std::string(n, 'x'));
    return p;
  };
  const auto web = stacks.read("web").token;
  auto w = stacks.patch_if_match("web", web, big(100));
  CHECK(w.status == write_status::permanent);
  CHECK(w.error.code == nc::table_error::too_large);
  CHECK(w.error.message == texts.cap_message);
  REQUIRE(stacks.patch_if_match("web", web, big(40)).ok());
  CHECK(f.text("SELECT length(CAST(env_vars AS text)) FROM " + t + " WHERE slug = 'web'") ==
        texts.length_at_40);

  // Whole writes are capped too.
  const auto web2 = stacks.read("web").token;
  CHECK(stacks.write_if_match("web", web2, stack{"\"" + std::string(70, 'y') + "\""}).error.code ==
        nc::table_error::too_large);
  CHECK(stacks.create_if_absent("new", stack{"\"" + std::string(70, 'y') + "\""}).error.code ==
        nc::table_error::too_large);

  // The guard: a stack mid-teardown refuses the patch (checked in the UPDATE's WHERE).
  const auto old = stacks.read("old").token;
  auto g = stacks.patch_if_match("old", old, big(1));
  CHECK(g.status == write_status::permanent);
  CHECK(g.error.code == nc::table_error::guard);
  CHECK(g.error.message == texts.guard_message);
  CHECK(stacks.write_if_match("old", old, stack{"{}"}).error.code == nc::table_error::guard);
  CHECK(stacks.erase_if_match("old", old).error.code == nc::table_error::guard);

  // A merge into a JSON array is refused, not turned into an object.
  auto a = stacks.patch_if_match("arr", stacks.read("arr").token, big(1));
  CHECK(a.error.code == nc::table_error::not_object);
  CHECK(f.text("SELECT env_vars FROM " + t + " WHERE slug = 'arr'") == "[1]");

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

/// The member types the construction checks map.
struct item {
  std::string body;
  std::int64_t n = 0;
  double r = 0;
  bool b = false;
};

/// Opening `spec` throws an error that contains `message`.
template <class F>
void expect_misfit(F& f, const table_spec<item>& spec, const std::string& message) {
  INFO(message);
  CHECK_THROWS_WITH((void)f.open(spec), Catch::Contains(message));
}

/// How the dialect words the construction errors of check_common_misfits.
struct misfit_texts {
  table_token_kind token;           // the token the checks use (the loose table's is column iver)
  std::string not_a_table;          // the spec names a view
  std::string version_not_integer;  // version("owner"), a text column
  table_token_kind foreign_token;   // the other dialect's token
  std::string foreign_token_refused;
};

/// The tables check_common_misfits made, for the dialect's own checks.
struct misfit_tables {
  std::string models, loose;
};

/// Every construction error the dialects share, on a models table, a loose table (no key, a
/// partial and an expression UNIQUE index; `loose_extra` adds the dialect's own columns) and a view.
template <class F>
misfit_tables check_common_misfits(F& f, const std::string& loose_extra, const misfit_texts& texts) {
  const misfit_tables t{models_table(f, "nc_misfit"), f.name("nc_loose")};
  f.create_table(
      t.loose, "name {text}, body {text}, n {integer}, ver {text}, iver {integer}, tag {text}" + loose_extra);
  f.exec("CREATE UNIQUE INDEX " + f.name("nc_loose_partial") + " ON " + t.loose +
         " (tag) WHERE tag IS NOT NULL");
  f.exec("CREATE UNIQUE INDEX " + f.name("nc_loose_expr") + " ON " + t.loose + " (lower(body))");
  const std::string view = f.name("nc_view");
  f.create_view(view, t.models);
  auto on = [&](const std::string& table, const std::string& key, const std::string& column,
                const std::string& version_column) {
    auto s = table_spec<item>(table).key(key).column(column, &item::body);
    return with_token(s, texts.token, version_column);
  };
  const std::string m = t.models, l = t.loose;
  expect_misfit(f, on("nc_missing_table", "name", "body", "v"), "no such table: \"nc_missing_table\"");
  expect_misfit(f, on(view, "name", "description", "revision"), texts.not_a_table);
  expect_misfit(f, on(l, "name", "body", "iver"),
                "the key (\"name\") is neither the primary key nor a UNIQUE index");
  expect_misfit(f, on(l, "tag", "body", "iver"),
                "neither the primary key nor a UNIQUE index");  // a partial index does not count
  expect_misfit(f, on(m, "name", "nope", "revision"), "no such column \"nope\" (the value)");
  expect_misfit(f, on(m, "nope", "description", "revision"), "no such column \"nope\" (the key)");
  expect_misfit(f, table_spec<item>(m).key("name").column("description", &item::body).version("nope"),
                "no such column \"nope\" (the version column)");
  expect_misfit(f, on(m, "name", "description", "revision").require("nope", "x"),
                "no such column \"nope\" (the guard column)");
  expect_misfit(f, on(m, "name", "description", "revision").require_not("nope", "x"),
                "no such column \"nope\" (the guard column)");
  expect_misfit(f, table_spec<item>(m).key("name").column("description", &item::body).version("owner"),
                texts.version_not_integer);
  auto foreign = table_spec<item>(m).key("name").column("description", &item::body);
  expect_misfit(f, with_token(foreign, texts.foreign_token, "revision"), texts.foreign_token_refused);
  expect_misfit(f, on(m, "name", "description", "revision").column("id", &item::n).max_bytes("id", 4),
                "max_bytes on \"id\", a integer column");
  // A well-formed spec on the same tables opens.
  CHECK_NOTHROW((void)f.open(on(m, "name", "description", "revision")));
  return t;
}

/// Table, key, value, JSON and version names that would break SQL if spliced (quotes, a statement
/// terminator, a comment, non-ASCII), under a version column and under `schemaless` (a token that
/// needs no column); `patched` is the JSON column after the patch, as the database prints it.
template <class F>
void check_hostile_identifiers(F& f, table_token_kind schemaless, const std::string& patched) {
  struct row {
    std::string a;
    std::optional<std::int64_t> b;
    std::string j = "{}";
    bool operator==(const row&) const = default;
  };
  const std::string table = f.name("We\"ird tab'le ünï; DROP TABLE victim; --");
  const std::string key = "K\"ey", col_a = "col a\"); DROP TABLE victim; --", col_b = "ключ", col_j = "j'\"",
                    ver = "v E\"r", victim = f.name("victim");
  f.create_table(victim, "x {integer}");
  f.create_table(f.quote(table), f.quote(key) + " {text} PRIMARY KEY, " + f.quote(col_a) +
                                     " {text} NOT NULL, " + f.quote(col_b) + " {bigint}, " + f.quote(col_j) +
                                     " {json}, " + f.quote(ver) + " {integer} NOT NULL DEFAULT 1");
  for (const auto token : {table_token_kind::version_column, schemaless}) {
    const bool version = token == table_token_kind::version_column;
    INFO("version column " << version);
    auto spec = table_spec<row>(table)
                    .key(key)
                    .column(col_a, &row::a)
                    .column(col_b, &row::b)
                    .column(col_j, &row::j, nc::field_kind::json);
    with_token(spec, token, ver);
    if (version) spec.require_not(col_a, "frozen").max_bytes(col_j, 1000);
    auto s = f.open(spec);
    const std::string k = version ? "v'\"k" : "x'\"k";
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
    auto w = s.patch_if_match(k, s.read(k).token, p);
    INFO(w.error.message);
    REQUIRE(w.ok());
    CHECK(s.read(k).value == row{"y\"'", 5, patched});
    CHECK(rep.count(change_kind::added) == 1);
    CHECK(rep.count(change_kind::absent_delete) == 1);
    REQUIRE(s.erase_if_match(k, s.read(k).token).ok());
  }
  CHECK(f.text("SELECT count(*) FROM " + victim) == "0");  // still there
}

/// Reading `key` of `store` is a permanent codec error containing `message`, and a
/// read_modify_write on it fails permanently without calling its function (nothing is written).
template <class Store, class Key>
void check_unreadable(Store& store, const Key& key, const std::string& message) {
  using value = typename Store::value_type;
  auto r = store.read(key);
  INFO(key);
  CHECK(r.status == nc::read_status::permanent);
  CHECK(r.error.code == "codec");
  CHECK_THAT(r.error.message, Catch::Contains(message));
  bool called = false;
  auto rmw = nc::read_modify_write(store, key, [&](const std::optional<value>&) -> nc::update<value> {
    called = true;
    return value{};
  });
  CHECK(rmw.last_status == write_status::permanent);
  CHECK_FALSE(called);
}

}  // namespace table_contract
