// Each server adapter proven by the race harness against its real server: 16 writers, 2,000
// operations (16 × 125): the naive blind read-modify-write loses updates, CAS and lock + CAS lose
// none. One store object (one connection) per writer, as the adapters require.
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/http_etag.hpp>
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/adapters/redis.hpp>
#include <noclobber/race_harness.hpp>

#include <memory>

#include "server_env.hpp"

namespace {

constexpr unsigned writers = 16;
constexpr unsigned ops_per_writer = 125;  // 2,000 operations

template <class Store>
noclobber::race_options_for<Store> options(const std::string& store_name, const std::string& strategy,
                                           noclobber::race_mode mode, unsigned ops,
                                           std::vector<std::string> keys) {
  noclobber::race_options_for<Store> o;
  o.writers = writers;
  o.ops_per_writer = ops;
  o.mode = mode;
  o.keys = std::move(keys);
  o.store_name = store_name;
  o.strategy_name = strategy;
  o.barrier_timeout = std::chrono::milliseconds(2000);
  return o;
}

std::vector<std::string> fresh_keys(const std::string& prefix, int n) {
  std::vector<std::string> keys;
  const std::string base = nc_test::unique_name(prefix);
  for (int i = 0; i < n; ++i) keys.push_back(base + "-" + std::to_string(i));
  return keys;
}

// The same proof for every adapter. `make(i)` returns a std::unique_ptr<Store>, one connection.
template <class Store, class Make>
void prove_adapter(const std::string& name, Make make) {
  using noclobber::race_mode;
  SECTION("naive, forced window: 15 of 16 writes lost") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::naive_strategy{},
        options<Store>(name, "naive", race_mode::forced, 1, fresh_keys("naive-forced", 1)));
    INFO(r.to_text());
    CHECK(r.op_errors == 0);
    CHECK(r.lost() == writers - 1);
  }
  SECTION("naive, 2,000 free-running ops: updates lost") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::naive_strategy{},
        options<Store>(name, "naive", race_mode::stress, ops_per_writer, fresh_keys("naive-stress", 4)));
    INFO(r.to_text());
    CHECK(r.operations == writers * ops_per_writer);
    CHECK(r.lost() > 0);
  }
  SECTION("CAS, forced window then 2,000 ops: nothing lost") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::cas_strategy{},
        options<Store>(name, "cas", race_mode::forced, ops_per_writer, fresh_keys("cas", 4)));
    INFO(r.to_text());
    CHECK(r.operations == writers * ops_per_writer);
    CHECK(r.op_errors == 0);
    CHECK(r.check.applied >= writers * ops_per_writer);
    CHECK(r.lost() == 0);
    CHECK(r.check.ok());
  }
  SECTION("lock + CAS, 2,000 ops: nothing lost") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::locked_cas_strategy<std::string>{},
        options<Store>(name, "lock+cas", race_mode::stress, ops_per_writer, fresh_keys("locked", 4)));
    INFO(r.to_text());
    CHECK(r.operations == writers * ops_per_writer);
    CHECK(r.op_errors == 0);
    CHECK(r.lost() == 0);
    CHECK(r.check.ok());
  }
}

}  // namespace

TEST_CASE("race harness: postgres version_store", "[server][postgres][harness]") {
  const std::string conninfo = nc_test::server_env("NOCLOBBER_PG_CONNINFO");
  const std::string table = nc_test::unique_name("nc_harness");
  noclobber::postgres::version_store admin(conninfo, table);
  admin.ensure_table();
  prove_adapter<noclobber::postgres::version_store>("postgres", [&](unsigned) {
    return std::make_unique<noclobber::postgres::version_store>(conninfo, table);
  });
  (void)admin.conn().exec_simple("DROP TABLE " + table + "; DROP SEQUENCE " + table + "_version", true);
}

TEST_CASE("race harness: redis WATCH/MULTI/EXEC", "[server][redis][harness]") {
  const std::string addr = nc_test::server_env("NOCLOBBER_REDIS_ADDR");
  prove_adapter<noclobber::redis::store>("redis-watch", [&](unsigned) {
    return std::make_unique<noclobber::redis::store>(addr, noclobber::redis::method::watch_multi_exec);
  });
}

TEST_CASE("race harness: redis Lua compare-and-set", "[server][redis][harness]") {
  const std::string addr = nc_test::server_env("NOCLOBBER_REDIS_ADDR");
  prove_adapter<noclobber::redis::store>("redis-lua", [&](unsigned) {
    return std::make_unique<noclobber::redis::store>(addr, noclobber::redis::method::lua_compare_and_set);
  });
}

TEST_CASE("race harness: etcd mod_revision", "[server][etcd][harness]") {
  const std::string url = nc_test::server_env("NOCLOBBER_ETCD_URL");
  prove_adapter<noclobber::etcd::store>(
      "etcd", [&](unsigned) { return std::make_unique<noclobber::etcd::store>(url); });
}

// Apache httpd 2.4 mod_dav with FileETag Digest. What the harness found (docs/adapters/http_etag.md):
// its precondition check and its write are not atomic. Two PUTs with the same If-Match (or two
// If-None-Match: * creates) can both pass the check and both answer 2xx, so CAS alone loses
// updates against this server. An in-process per-key lock in front of CAS (seed 000's second
// layer) serialises one process's writers and loses nothing; it cannot protect across processes.
TEST_CASE("race harness: http_etag against Apache mod_dav", "[server][http][harness]") {
  using S = noclobber::http_etag::store;
  using noclobber::race_mode;
  const std::string url = nc_test::server_env("NOCLOBBER_DAV_URL");
  auto make = [&](unsigned) { return std::make_unique<S>(url); };
  SECTION("naive, forced window: 15 of 16 writes lost") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::naive_strategy{},
        options<S>("apache", "naive", race_mode::forced, 1, fresh_keys("naive", 1)));
    INFO(r.to_text());
    CHECK(r.lost() == writers - 1);
  }
  SECTION("finding: CAS alone loses updates, because mod_dav's conditional PUT is not atomic") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::cas_strategy{},
        options<S>("apache", "cas", race_mode::forced, ops_per_writer, fresh_keys("cas", 4)));
    INFO(r.to_text());
    CHECK(r.op_errors == 0);
    // Every lost write was answered 2xx to an If-Match whose ETag another 2xx had already replaced.
    CHECK(r.lost() > 0);
    CHECK(r.check.lost_update_pairs > 0);
  }
  SECTION("lock + CAS in one process, 2,000 ops: nothing lost") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::locked_cas_strategy<std::string>{},
        options<S>("apache", "lock+cas", race_mode::forced, ops_per_writer, fresh_keys("locked", 4)));
    INFO(r.to_text());
    CHECK(r.writers_serialised);  // the per-key lock spans read and write: the barrier times out
    CHECK(r.operations == writers * ops_per_writer);
    CHECK(r.op_errors == 0);
    CHECK(r.lost() == 0);
    CHECK(r.check.ok());
  }
}
