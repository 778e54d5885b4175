// PostgreSQL adapter against a real server (NOCLOBBER_PG_CONNINFO): every outcome category of the
// version-column store, SQLSTATE classification from real errors, the env_patch row-lock path, four
// writer processes, and a writer killed between its read and its write.
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/read_modify_write.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <barrier>
#include <map>
#include <thread>
#include <type_traits>

#include "server_env.hpp"

namespace pg = noclobber::postgres;

// The name before 0.2 stays for one release, deprecated.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static_assert(std::is_same_v<pg::version_store, pg::store>);
#pragma GCC diagnostic pop

// lock_timeout converts any duration without overflow: max() is "no limit" (PostgreSQL's 0).
static_assert(pg::detail::lock_timeout_ms(std::chrono::hours::max()) == 0);
static_assert(pg::detail::lock_timeout_ms(std::chrono::seconds::max()) == 0);
static_assert(pg::detail::lock_timeout_ms(std::chrono::seconds(2)) == 2000);
static_assert(pg::detail::lock_timeout_ms(std::chrono::hours(1'000'000)) == 2147483647);
using noclobber::write_status;

namespace {

std::string conninfo() {
  return nc_test::server_env("NOCLOBBER_PG_CONNINFO");
}

pg::store make_store(const std::string& table) {
  pg::store s(conninfo(), table);
  s.ensure_table();
  return s;
}

void exec_ok(pg::connection& c, const std::string& sql) {
  auto r = c.exec_simple(sql, true);
  INFO(sql << " -> " << r.error.code << " " << r.error.message);
  REQUIRE(r.ok());
}

// Waits until `pid`'s backend is waiting on a lock.
void wait_until_lock_wait(pg::connection& observer, int pid) {
  const std::string sql =
      "SELECT 1 FROM pg_stat_activity WHERE pid = " + std::to_string(pid) + " AND wait_event_type = 'Lock'";
  for (int i = 0; i < 1000; ++i) {
    auto r = observer.exec_simple(sql, false);
    REQUIRE(r.ok());
    if (r.rows() == 1) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  FAIL("backend " << pid << " never waited on a lock");
}

}  // namespace

TEST_CASE("postgres store: every outcome category against the server", "[server][postgres]") {
  const std::string table = nc_test::unique_name("nc_contract");
  auto s = make_store(table);
  const std::string key = "k";

  auto r0 = s.read(key);
  CHECK(r0.status == noclobber::read_status::absent);

  auto c1 = s.create_if_absent(key, std::string("v1\0bin", 6));
  REQUIRE(c1.status == write_status::applied);
  REQUIRE(c1.token.has_value());
  CHECK(s.create_if_absent(key, "other").status == write_status::exists);

  auto r1 = s.read(key);
  REQUIRE(r1.found());
  CHECK(r1.value == std::string("v1\0bin", 6));  // bytea keeps NUL bytes
  CHECK(r1.token == *c1.token);

  auto w2 = s.write_if_match(key, r1.token, "v2");
  REQUIRE(w2.status == write_status::applied);
  REQUIRE(w2.token.has_value());
  CHECK(*w2.token != r1.token);
  CHECK(s.read(key).token == *w2.token);

  auto stale = s.write_if_match(key, r1.token, "lost");
  CHECK(stale.status == write_status::conflict);
  CHECK(s.read(key).value == "v2");

  CHECK(s.write_if_match("missing", r1.token, "x").status == write_status::absent);
  CHECK(s.erase_if_match(key, r1.token).status == write_status::conflict);
  CHECK(s.erase_if_match(key, *w2.token).status == write_status::applied);
  CHECK(s.read(key).status == noclobber::read_status::absent);
  CHECK(s.erase_if_match(key, *w2.token).status == write_status::absent);

  // Re-created keys never get an old version back (the versions come from one sequence).
  auto c3 = s.create_if_absent(key, "v1");
  REQUIRE(c3.ok());
  CHECK(*c3.token != *c1.token);
  CHECK(*c3.token != *w2.token);

  auto o = s.overwrite(key, "blind");
  REQUIRE(o.ok());
  CHECK(s.read(key).value == "blind");

  // permanent: a table that does not exist (42P01).
  pg::store missing(conninfo(), nc_test::unique_name("nc_no_such_table"));
  auto rm = missing.read(key);
  CHECK(rm.status == noclobber::read_status::permanent);
  CHECK(rm.error.code == "42P01");
  auto wm = missing.create_if_absent(key, "x");
  CHECK(wm.status == write_status::permanent);

  exec_ok(s.conn(), "DROP TABLE " + table + "; DROP SEQUENCE " + table + "_version");
}

TEST_CASE("postgres: bad input is rejected at the boundary", "[server][postgres]") {
  CHECK_THROWS_AS(pg::store(conninfo(), "Robert'); DROP TABLE students;--"), std::invalid_argument);
  CHECK_THROWS_AS(pg::store(conninfo(), ""), std::invalid_argument);
  CHECK_THROWS_AS(pg::connection(""), std::invalid_argument);
  CHECK_THROWS_AS(
      pg::connection("host=127.0.0.1 port=" + std::to_string(nc_test::closed_port()) + " connect_timeout=2"),
      std::runtime_error);
  pg::connection c(conninfo());
  CHECK_THROWS_AS(pg::update_under_row_lock(c, "SELECT 1 WHERE $1 = ''", "SELECT $1, $2", "k",
                                            [](const pg::locked_row&) { return pg::row_decision::keep(); }),
                  std::invalid_argument);
}

TEST_CASE("postgres: SQLSTATEs from real errors are classified", "[server][postgres][concurrency]") {
  const std::string table = nc_test::unique_name("nc_sqlstate");
  pg::connection a(conninfo()), b(conninfo()), observer(conninfo());
  exec_ok(a, "CREATE TABLE " + table + " (id int PRIMARY KEY, n int); INSERT INTO " + table +
                 " VALUES (1, 0), (2, 0)");

  SECTION("55P03 lock_timeout -> transient") {
    exec_ok(a, "BEGIN; SELECT * FROM " + table + " WHERE id = 1 FOR UPDATE");
    exec_ok(b, "BEGIN; SET LOCAL lock_timeout = '50ms'");
    auto r = b.exec_simple("UPDATE " + table + " SET n = 1 WHERE id = 1", true);
    CHECK(r.error.code == "55P03");
    CHECK(r.failure == write_status::transient);
    exec_ok(b, "ROLLBACK");
    exec_ok(a, "ROLLBACK");
  }
  SECTION("40001 serialization failure -> transient_restart") {
    exec_ok(a, "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT * FROM " + table);
    exec_ok(b, "UPDATE " + table + " SET n = n + 1 WHERE id = 1");
    auto r = a.exec_simple("UPDATE " + table + " SET n = n + 1 WHERE id = 1", true);
    CHECK(r.error.code == "40001");
    CHECK(r.failure == write_status::transient_restart);
    exec_ok(a, "ROLLBACK");
  }
  SECTION("40P01 deadlock -> transient_restart") {
    exec_ok(a, "BEGIN; UPDATE " + table + " SET n = 1 WHERE id = 1");
    exec_ok(b, "BEGIN; UPDATE " + table + " SET n = 1 WHERE id = 2");
    pg::exec_result ra, rb;
    std::thread t([&] { ra = a.exec_simple("UPDATE " + table + " SET n = 2 WHERE id = 2", true); });
    wait_until_lock_wait(observer, a.backend_pid());
    rb = b.exec_simple("UPDATE " + table + " SET n = 2 WHERE id = 1", true);
    t.join();
    // Exactly one of the two is chosen as the deadlock victim.
    const bool a_victim = ra.error.code == "40P01", b_victim = rb.error.code == "40P01";
    CHECK(a_victim != b_victim);
    CHECK((a_victim ? ra.failure : rb.failure) == write_status::transient_restart);
    exec_ok(a, "ROLLBACK");
    exec_ok(b, "ROLLBACK");
  }
  SECTION("a write whose connection is killed mid-statement -> indeterminate") {
    auto s = make_store(nc_test::unique_name("nc_indet"));
    REQUIRE(s.create_if_absent("k", "v").ok());
    const auto tok = s.read("k").token;
    exec_ok(a, "BEGIN; SELECT * FROM " + s.table() + " WHERE key = 'k' FOR UPDATE");
    noclobber::write_result<std::int64_t> w;
    std::thread t([&] { w = s.write_if_match("k", tok, "v2"); });
    wait_until_lock_wait(observer, s.conn().backend_pid());
    exec_ok(observer, "SELECT pg_terminate_backend(" + std::to_string(s.conn().backend_pid()) + ")");
    t.join();
    CHECK(w.status == write_status::indeterminate);
    exec_ok(a, "ROLLBACK");
    // The connection resets itself on the next call, and the write had not landed.
    auto after = s.read("k");
    REQUIRE(after.found());
    CHECK(after.value == "v");
    exec_ok(a, "DROP TABLE " + s.table() + "; DROP SEQUENCE " + s.table() + "_version");
  }
  CHECK(pg::classify_sqlstate("08006", true) == write_status::indeterminate);
  CHECK(pg::classify_sqlstate("08006", false) == write_status::transient);
  CHECK(pg::classify_sqlstate("42601", true) == write_status::permanent);
  exec_ok(observer, "DROP TABLE " + table);
}

// ---- env_patch: PATCH /stacks/:slug/env as one row-locked transaction ----------------------------

namespace {

using env_map = std::map<std::string, std::string>;

env_map parse_env(const std::string& json_text) {
  // Runs on writer threads, where Catch2 assertions are not allowed: throw instead.
  const auto doc = nlohmann::json::parse(json_text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    throw std::runtime_error("env_vars is not a JSON object: " + json_text);
  return doc.get<env_map>();
}
std::string to_json(const env_map& m) {
  return nlohmann::json(m).dump();
}

struct stacks_table {
  std::string name = nc_test::unique_name("nc_stacks");
  pg::connection admin{conninfo()};
  stacks_table() {
    exec_ok(admin, "CREATE TABLE " + name +
                       " (slug text PRIMARY KEY, status text NOT NULL, env_vars jsonb NOT NULL)");
  }
  ~stacks_table() { (void)admin.exec_simple("DROP TABLE " + name, true); }
  void add(const std::string& slug, const std::string& status) {
    exec_ok(admin, "INSERT INTO " + name + " VALUES ('" + slug + "', '" + status + "', '{}')");
  }
  env_map env(const std::string& slug) {
    auto r = admin.exec("SELECT env_vars::text FROM " + std::string() + name + " WHERE slug = $1", {{slug}},
                        false);
    REQUIRE(r.rows() == 1);
    return parse_env(r.bytes(0, 0));
  }
  std::string select_sql() const {
    return "SELECT env_vars::text, status FROM " + name + " WHERE slug = $1 FOR UPDATE";
  }
  std::string update_sql() const {
    return "UPDATE " + name + " SET env_vars = ($2::text)::jsonb WHERE slug = $1";
  }
};

// MergeStackEnvVars: merge a PATCH delta under the row lock; empty value = delete.
pg::row_lock_result merge_env(pg::connection& c, const stacks_table& t, const std::string& slug,
                              const env_map& delta,
                              std::chrono::milliseconds lock_timeout = std::chrono::seconds(3)) {
  const std::string sel = t.select_sql(), up = t.update_sql();
  return pg::update_under_row_lock(c, sel.c_str(), up.c_str(), slug,
                                   [&](const pg::locked_row& row) {
                                     if (row.columns.at(1) == "deleting")
                                       return pg::row_decision::reject("stack_deleting");
                                     env_map env = parse_env(*row.columns.at(0));
                                     for (const auto& [k, v] : delta) {
                                       if (v.empty()) {
                                         env.erase(k);
                                       } else {
                                         env[k] = v;
                                       }
                                     }
                                     return pg::row_decision::set(to_json(env));
                                   },
                                   {lock_timeout, 64 * 1024});
}

}  // namespace

TEST_CASE("env_patch: 16 concurrent disjoint-key PATCHes under the row lock all survive",
          "[server][postgres][env_patch][concurrency]") {
  stacks_table t;
  t.add("web", "running");
  constexpr int writers = 16, rounds = 25;
  std::barrier start(writers);  // every connection is open before anyone patches
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      pg::connection c(conninfo());
      start.arrive_and_wait();
      for (int i = 0; i < rounds; ++i) {
        auto r = merge_env(c, t, "web", {{"K" + std::to_string(w) + "_" + std::to_string(i), "v"}});
        if (!r.ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
  CHECK(t.env("web").size() == static_cast<std::size_t>(writers * rounds));
}

TEST_CASE("env_patch: the naive load-merge-store loses disjoint keys (forced window)",
          "[server][postgres][env_patch][concurrency]") {
  stacks_table t;
  t.add("web", "running");
  constexpr int writers = 16;
  std::barrier all_read(writers);
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      pg::connection c(conninfo());
      auto r =
          c.exec(("SELECT env_vars::text FROM " + t.name + " WHERE slug = $1").c_str(), {{"web"}}, false);
      env_map env = parse_env(r.bytes(0, 0));
      all_read.arrive_and_wait();  // every writer has read the same snapshot
      env["K" + std::to_string(w)] = "v";
      const std::string body = to_json(env);
      (void)c.exec(t.update_sql().c_str(), {{"web"}, {body, true}}, true);
    });
  }
  for (auto& th : threads) th.join();
  CHECK(t.env("web").size() == 1);  // 15 of 16 PATCHes lost
}

TEST_CASE("env_patch: 413 / 404 / 409 / 503 outcomes, checked under the row lock",
          "[server][postgres][env_patch][concurrency]") {
  stacks_table t;
  t.add("web", "running");
  t.add("old", "deleting");
  pg::connection c(conninfo());

  auto ok = merge_env(c, t, "web", {{"A", "1"}});
  CHECK(ok.status == pg::row_lock_status::applied);
  CHECK(pg::http_status(ok.status) == 200);

  auto big = merge_env(c, t, "web", {{"B", std::string(70 * 1024, 'x')}});
  CHECK(big.status == pg::row_lock_status::too_large);
  CHECK(pg::http_status(big.status) == 413);
  CHECK(t.env("web") == env_map{{"A", "1"}});  // rolled back, nothing written

  auto none = merge_env(c, t, "nope", {{"A", "1"}});
  CHECK(none.status == pg::row_lock_status::not_found);
  CHECK(pg::http_status(none.status) == 404);

  auto deleting = merge_env(c, t, "old", {{"A", "1"}});
  CHECK(deleting.status == pg::row_lock_status::rejected);
  CHECK(pg::http_status(deleting.status) == 409);
  CHECK(t.env("old").empty());

  // The status flips while a PATCH waits for the lock: the guard sees the committed status.
  exec_ok(t.admin, "BEGIN; SELECT * FROM " + t.name + " WHERE slug = 'web' FOR UPDATE");
  pg::row_lock_result raced;
  std::thread patch([&] { raced = merge_env(c, t, "web", {{"Z", "1"}}); });
  pg::connection observer(conninfo());
  wait_until_lock_wait(observer, c.backend_pid());
  exec_ok(t.admin, "UPDATE " + t.name + " SET status = 'deleting' WHERE slug = 'web'; COMMIT");
  patch.join();
  CHECK(raced.status == pg::row_lock_status::rejected);
  CHECK(t.env("web").count("Z") == 0);

  // A long-held row lock: lock_timeout answers busy (503) instead of hanging.
  exec_ok(t.admin, "UPDATE " + t.name + " SET status = 'running'");
  exec_ok(t.admin, "BEGIN; SELECT * FROM " + t.name + " WHERE slug = 'web' FOR UPDATE");
  auto busy = merge_env(c, t, "web", {{"A", "2"}}, std::chrono::milliseconds(100));
  CHECK(busy.status == pg::row_lock_status::busy);
  CHECK(busy.error.code == "55P03");
  CHECK(pg::http_status(busy.status) == 503);
  exec_ok(t.admin, "ROLLBACK");
  // The connection is usable afterwards, and an exception from modify rolls back.
  CHECK_THROWS_AS(pg::update_under_row_lock(
                      c, t.select_sql().c_str(), t.update_sql().c_str(), "web",
                      [](const pg::locked_row&) -> pg::row_decision { throw std::runtime_error("boom"); }),
                  std::runtime_error);
  auto again = merge_env(c, t, "web", {{"A", "3"}});
  INFO(again.error.code << " " << again.error.message);
  CHECK(again.ok());
  CHECK(t.env("web").at("A") == "3");
}

TEST_CASE("postgres: 4 writer processes at once lose nothing", "[server][postgres][process][concurrency]") {
  for (const char* adapter : {"postgres", "postgres_row_lock"}) {
    INFO(adapter);
    const std::string table = nc_test::unique_name("nc_procs");
    auto s = make_store(table);
    REQUIRE(s.create_if_absent("counter", "0").ok());
    constexpr int procs = 4, each = 100;
    std::vector<std::unique_ptr<nc_test::writer_process>> ws;
    for (int i = 0; i < procs; ++i) {
      ws.push_back(std::make_unique<nc_test::writer_process>(
          std::vector<std::string>{adapter, table, "counter", std::to_string(each), "gated"}));
    }
    nc_test::start_together(ws);
    for (auto& w : ws) CHECK(w->wait() == 0);
    CHECK(s.read("counter").value == std::to_string(procs * each));
    exec_ok(s.conn(), "DROP TABLE " + table + "; DROP SEQUENCE " + table + "_version");
  }
}

TEST_CASE("postgres: a writer killed between read and write loses nothing and blocks no one",
          "[server][postgres][process][concurrency]") {
  // postgres: killed after its read (no lock held). postgres_row_lock: killed while holding the
  // row lock — the server must release it when the connection dies.
  for (const char* adapter : {"postgres", "postgres_row_lock"}) {
    INFO(adapter);
    const std::string table = nc_test::unique_name("nc_killed");
    auto s = make_store(table);
    REQUIRE(s.create_if_absent("counter", "0").ok());
    nc_test::writer_process victim({adapter, table, "counter", "1", "hold"});
    REQUIRE(victim.wait_for_line("READ"));
    victim.kill_now();
    std::vector<std::unique_ptr<nc_test::writer_process>> ws;
    for (int i = 0; i < 4; ++i) {
      ws.push_back(std::make_unique<nc_test::writer_process>(
          std::vector<std::string>{adapter, table, "counter", "50", "run"}));
    }
    for (auto& w : ws) CHECK(w->wait() == 0);
    CHECK(s.read("counter").value == "200");
    exec_ok(s.conn(), "DROP TABLE " + table + "; DROP SEQUENCE " + table + "_version");
  }
}
