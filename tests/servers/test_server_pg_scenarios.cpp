// Two real-world scenarios in their own shape on PostgreSQL (NOCLOBBER_PG_CONNINFO), through
// typed records on the tables their services have:
//
//   the env PATCH              `stacks` with `env jsonb`, `status` and a 64 KiB cap: a PATCH of
//                              some keys is ONE conditional statement (jsonb merge at the row's
//                              xmin, the status guard and the cap in its WHERE), its change report
//                              makes the audit counts honest, and a stack mid-teardown refuses it
//   the model cache refresh    `models` with a revision: a sparse patch of three cache columns
//                              at the revision read, dropped when the model moved
//
// Each is proven by the race harness on its table (16 writers: the naive read-merge-write loses
// 15 of 16 forced writes, read_modify_write none), and its own operation is raced for real.
#include <noclobber/adapters/postgres/table_store.hpp>
#include <noclobber/json/codec.hpp>
#include <noclobber/patch_if_unchanged.hpp>
#include <noclobber/race_harness/field_workload.hpp>
#include <noclobber/read_modify_write.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <latch>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "scenario_harness.hpp"
#include "server_env.hpp"

namespace nc = noclobber;
namespace pg = noclobber::postgres;
using noclobber_test::model;
using noclobber_test::patient;

namespace {

std::string conninfo() {
  return nc_test::server_env("NOCLOBBER_PG_CONNINFO");
}

void exec_ok(pg::connection& c, const std::string& sql) {
  auto r = c.exec_simple(sql, true);
  INFO(sql << ": " << r.error.message);
  REQUIRE(r.ok());
}

// ---- the env PATCH ----------------------------------------------------------------------------

using env_map = std::map<std::string, std::string>;

struct stack {
  std::string status = "running";
  env_map env;
  bool operator==(const stack&) const = default;
};

struct stacks_table {
  pg::connection admin{conninfo()};
  std::string name = nc_test::unique_name("stacks");
  stacks_table() {
    exec_ok(admin,
            "CREATE TABLE " + name +
                " (id bigserial PRIMARY KEY, slug text NOT NULL UNIQUE, status text NOT NULL, env jsonb NOT "
                "NULL DEFAULT '{}', updated_at timestamptz NOT NULL DEFAULT now())");
  }
  ~stacks_table() { (void)admin.exec_simple("DROP TABLE " + name, true); }
  void add(const std::string& slug, const std::string& status = "running") {
    exec_ok(admin, "INSERT INTO " + name + " (slug, status) VALUES ('" + slug + "', '" + status + "')");
  }
  nc::table_spec<stack> spec() const {
    return nc::table_spec<stack>(name)
        .key("slug")
        .column("status", &stack::status)
        .column("env", &stack::env, nc::json::codec<env_map>{})
        .xmin()  // the table has no version column: none is added
        .require_not("status", "deleting")
        .max_bytes("env", 64 * 1024);
  }
  pg::table_store<stack> store() const { return pg::table_store<stack>(conninfo(), spec()); }
};

// PATCH /stacks/:slug/env — the handler, as one conditional write.
struct patch_outcome {
  nc::patch_result<nc::table_token> result;
  nc::change_report report;
};
patch_outcome patch_env(pg::table_store<stack>& stacks, const std::string& slug, const env_map& set,
                        const std::vector<std::string>& remove) {
  patch_outcome out;
  nc::table_patch p;
  auto& m = p.merge("env");
  for (const auto& [k, v] : set) m.set_string(k, v);
  for (const auto& k : remove) m.remove(k);
  p.report_to(&out.report);
  const auto current = stacks.read(slug);  // the token only: the record is not written back
  if (!current.found()) {
    out.result.outcome = nc::patch_outcome::absent;
    return out;
  }
  out.result = nc::patch_if_unchanged(stacks, slug, current.token, p, nc::patch_conflict::retry, patient());
  return out;
}

}  // namespace

TEST_CASE("scenario, env PATCH: the harness on the stacks table (16 writers)",
          "[server][postgres][scenario]") {
  stacks_table t;
  t.add("naive");
  t.add("cas");
  nc::race_workload<stack> workload;
  workload.next_value = [](const std::optional<stack>& current, const nc::write_tag& tag) {
    stack s = current.value_or(stack{});
    s.env["W" + std::to_string(tag.writer)] = nc::tag_text(tag);  // each writer's own key
    s.env["LAST"] = nc::tag_text(tag);
    return s;
  };
  workload.id_of = [](const stack& s) {
    auto it = s.env.find("LAST");
    return it == s.env.end() ? nc::initial_version : nc::parse_write_id(it->second);
  };
  using store_t = pg::table_store<stack>;
  noclobber_test::prove_with_harness<store_t>("postgres stacks", [&](unsigned) { return t.store(); },
                                              workload, {"naive"}, {"cas"});
  auto check = t.store();
  CHECK(check.read("cas").value.env.size() == noclobber_test::scenario_writers + 1);  // every writer's key
  CHECK(check.read("naive").value.env.size() < noclobber_test::scenario_writers + 1);
}

TEST_CASE(
    "scenario, env PATCH: 16 concurrent disjoint-key PATCHes, one statement each; audit counts are exact",
    "[server][postgres][scenario]") {
  stacks_table t;
  t.add("web");
  constexpr int writers = 16, rounds = 25;
  std::atomic<int> not_applied{0};
  std::atomic<std::size_t> set{0}, deleted{0}, absent_deletes{0}, unchanged{0};
  std::latch start(writers);
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      auto stacks = t.store();
      start.arrive_and_wait();
      for (int r = 0; r < rounds; ++r) {
        const std::string key = "K" + std::to_string(w) + "_" + std::to_string(r);
        std::vector<std::string> remove{"GHOST" + std::to_string(w)};  // never there: a no-op delete
        if (r > 0) remove.push_back("K" + std::to_string(w) + "_" + std::to_string(r - 1));
        env_map sets{{key, "v"}};
        if (r > 0) sets["SAME" + std::to_string(w)] = "s";  // set to the value it already has
        if (r == 0) sets["SAME" + std::to_string(w)] = "s";
        auto out = patch_env(stacks, "web", sets, remove);
        if (out.result.outcome != nc::patch_outcome::applied) {
          ++not_applied;
          continue;
        }
        // The audit line of this PATCH: only what the statement really did.
        set += out.report.keys_set();
        deleted += out.report.keys_deleted();
        absent_deletes += out.report.count(nc::change_kind::absent_delete);
        unchanged += out.report.count(nc::change_kind::unchanged);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(not_applied == 0);
  // Each round sets one new key (round 0 also the SAME key); each later round deletes the
  // previous one; every round deletes one absent key; SAME is unchanged after round 0.
  CHECK(set == writers * rounds + writers);
  CHECK(deleted == writers * (rounds - 1));
  CHECK(absent_deletes == writers * rounds);
  CHECK(unchanged == writers * (rounds - 1));
  auto stacks = t.store();
  const env_map env = stacks.read("web").value.env;
  CHECK(env.size() == 2 * writers);  // K<w>_24 and SAME<w> for every writer: no PATCH lost
  for (int w = 0; w < writers; ++w)
    CHECK(env.count("K" + std::to_string(w) + "_" + std::to_string(rounds - 1)) == 1);
}

TEST_CASE("scenario, env PATCH: read-merge-write loses a PATCH; the merge statement does not",
          "[server][postgres][scenario]") {
  stacks_table t;
  t.add("web");
  auto a = t.store(), b = t.store();
  SECTION("the bug: both handlers read, merge in the client, and write the whole env") {
    auto ra = a.read("web"), rb = b.read("web");  // both read {}
    stack sa = ra.value, sb = rb.value;
    sa.env["A"] = "1";
    sb.env["B"] = "2";
    REQUIRE(a.overwrite("web", sa).ok());
    REQUIRE(b.overwrite("web", sb).ok());
    CHECK(a.read("web").value.env == env_map{{"B", "2"}});  // A is gone
  }
  SECTION("the fix: each PATCH is a server-side merge at the token it read") {
    const auto ta = a.read("web").token, tb = b.read("web").token;  // both at the same xmin
    nc::table_patch pa, pb;
    pa.merge("env").set_string("A", "1");
    pb.merge("env").set_string("B", "2");
    REQUIRE(nc::patch_if_unchanged(a, "web", ta, pa, nc::patch_conflict::retry).ok());
    auto rb = nc::patch_if_unchanged(b, "web", tb, pb, nc::patch_conflict::retry);
    REQUIRE(rb.ok());
    CHECK(rb.attempts == 2);  // the token moved: re-read the token, the same sparse patch again
    CHECK(a.read("web").value.env == env_map{{"A", "1"}, {"B", "2"}});
  }
}

TEST_CASE("scenario, env PATCH: a stack mid-teardown refuses the PATCH, checked under the write",
          "[server][postgres][scenario]") {
  stacks_table t;
  t.add("web");
  t.add("gone", "deleting");
  auto stacks = t.store();
  auto refused = patch_env(stacks, "gone", {{"A", "1"}}, {});
  CHECK(refused.result.outcome == nc::patch_outcome::gave_up);
  CHECK(refused.result.last_status == nc::write_status::permanent);
  CHECK(refused.result.last_error.code == nc::table_error::guard);  // -> 409 stack_deleting
  CHECK(refused.report.entries.empty());

  // The teardown flips the status while 16 PATCHes race; the env it sees at that moment is the
  // final env: nothing lands on a stack mid-teardown (the old pre-read guard let it).
  constexpr int writers = 16;
  std::latch start(writers + 1);
  std::string env_at_teardown;
  std::atomic<int> applied{0}, guarded{0}, other{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      auto s = t.store();
      start.arrive_and_wait();
      for (int r = 0; r < 40; ++r) {
        auto out = patch_env(s, "web", {{"K" + std::to_string(w) + "_" + std::to_string(r), "v"}}, {});
        if (out.result.ok()) {
          ++applied;
        } else if (out.result.last_error.code == nc::table_error::guard) {
          ++guarded;
          break;
        } else {
          ++other;
        }
      }
    });
  }
  threads.emplace_back([&] {
    pg::connection c(conninfo());
    start.arrive_and_wait();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let some PATCHes land first
    auto r = c.exec_simple(
        "UPDATE " + t.name + " SET status = 'deleting' WHERE slug = 'web' RETURNING env::text", true);
    if (r.ok() && r.rows() == 1) env_at_teardown = r.bytes(0, 0);
  });
  for (auto& th : threads) th.join();
  CHECK(other == 0);
  REQUIRE_FALSE(env_at_teardown.empty());
  auto r = t.admin.exec_simple("SELECT env::text FROM " + t.name + " WHERE slug = 'web'", false);
  REQUIRE(r.rows() == 1);
  CHECK(r.bytes(0, 0) == env_at_teardown);  // not one key after the teardown began
  INFO("applied " << applied << ", refused " << guarded);
  CHECK(guarded + applied > 0);
}

TEST_CASE("scenario, env PATCH: the 64 KiB cap is checked by the server, in the same statement",
          "[server][postgres][scenario]") {
  stacks_table t;
  t.add("web");
  auto stacks = t.store();
  auto ok = patch_env(stacks, "web", {{"BIG", std::string(60 * 1024, 'x')}}, {});
  REQUIRE(ok.result.ok());
  const auto before = stacks.read("web");
  auto over = patch_env(stacks, "web", {{"MORE", std::string(5 * 1024, 'y')}}, {});
  CHECK(over.result.outcome == nc::patch_outcome::gave_up);
  CHECK(over.result.last_status == nc::write_status::permanent);
  CHECK(over.result.last_error.code == nc::table_error::too_large);  // -> 413
  CHECK(over.result.attempts == 1);
  CHECK(stacks.read("web").token == before.token);  // nothing written
  // Deleting a key makes room again, in one PATCH that also sets.
  auto swap = patch_env(stacks, "web", {{"MORE", std::string(5 * 1024, 'y')}}, {"BIG"});
  CHECK(swap.result.ok());
  CHECK(swap.report.keys_deleted() == 1);
}

// ---- the model cache refresh ---------------------------------------------------------------------

namespace {

struct models_table {
  pg::connection admin{conninfo()};
  std::string name = nc_test::unique_name("models");
  models_table() {
    exec_ok(
        admin,
        "CREATE TABLE " + name +
            " (name text PRIMARY KEY, description text NOT NULL DEFAULT '', edits bigint NOT NULL DEFAULT "
            "0, columns jsonb NOT NULL DEFAULT '[]', backing_sql text, data_source text, revision integer "
            "NOT NULL DEFAULT 1, created_at timestamptz NOT NULL DEFAULT now())");
    exec_ok(admin, "INSERT INTO " + name + " (name) VALUES ('qb'), ('naive'), ('cas')");
  }
  ~models_table() { (void)admin.exec_simple("DROP TABLE " + name, true); }
  nc::table_spec<model> spec() const {
    return nc::table_spec<model>(name)
        .key("name")
        .column("description", &model::description)
        .column("edits", &model::edits)
        .column("columns", &model::columns, nc::json::codec<std::vector<std::string>>{})
        .column("backing_sql", &model::backing_sql)
        .column("data_source", &model::data_source)
        .version("revision");
  }
};

}  // namespace

TEST_CASE("scenario, model cache refresh: the harness on the models table (16 writers)",
          "[server][postgres][scenario]") {
  models_table t;
  using store_t = pg::table_store<model>;
  noclobber_test::prove_with_harness<store_t>(
      "postgres models", [&](unsigned) { return store_t(conninfo(), t.spec()); },
      nc::field_workload<model>(&model::description, [](model& m, const nc::write_tag&) { ++m.edits; }),
      {"naive"}, {"cas"});
  store_t check(conninfo(), t.spec());
  CHECK(check.read("cas").value.edits == noclobber_test::scenario_writers * noclobber_test::scenario_ops);
}

TEST_CASE("scenario, model cache refresh: 8 editors and 8 refreshers race; no edit is lost",
          "[server][postgres][scenario]") {
  models_table t;
  const auto spec = t.spec();
  const auto counts = noclobber_test::race_cache_refresh(
      [&] { return pg::table_store<model>(conninfo(), spec); }, "qb", spec);
  CHECK(counts.errors == 0);
  CHECK(counts.applied + counts.dropped == 8 * 25);
  CHECK(counts.applied > 0);
  pg::table_store<model> check(conninfo(), spec);
  CHECK(check.read("qb").value.edits == 8 * 25);  // every edit survived every refresh
}
