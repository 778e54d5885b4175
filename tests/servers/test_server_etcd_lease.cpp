// etcd::lease_backend against a real etcd (scripts/test_servers.sh starts it).
#include <catch2/catch.hpp>
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/etcd_lease.hpp>
#include <noclobber/fenced_read_modify_write.hpp>
#include <noclobber/lease_lock.hpp>

#include <chrono>
#include <string>
#include <thread>

#include "server_env.hpp"

namespace nc = noclobber;
using namespace std::chrono_literals;
using locks_t = nc::lease_lock_map<nc::etcd::lease_backend>;

TEST_CASE("etcd lease: grant, busy, release, the token is the lock key's create revision",
          "[server][etcd][lease]") {
  const std::string url = nc_test::server_env("NOCLOBBER_ETCD_URL");
  const std::string key = nc_test::unique_name("lease");
  nc::etcd::lease_backend ba(url), bb(url);
  locks_t a(ba, 10s), b(bb, 10s);
  nc::etcd::store kv(url);
  nc::fencing_token last = 0;
  for (int i = 0; i < 3; ++i) {
    auto g = a.lock(key);
    CHECK(g.token() > last);
    last = g.token();
    auto r = kv.read(ba.lock_key(key));
    REQUIRE(r.found());
    CHECK(r.value == g.grant().owner);                            // the lease ID
    CHECK(static_cast<nc::fencing_token>(r.token) == g.token());  // created (and last modified) then
    CHECK(g.grant().ttl >= 10s);
    CHECK_FALSE(b.try_lock(key));
    CHECK(g.renew() == nc::lease_check::held);  // keep-alive
    CHECK(g.unlock() == nc::lease_check::held);
    CHECK(kv.read(ba.lock_key(key)).absent());  // revoking the lease deleted the key
  }
  auto w = kv.overwrite(nc_test::unique_name("other"), "x");  // the revision moves on for any write
  REQUIRE(w.ok());
  auto gb = b.lock(key);
  CHECK(gb.token() > last);
}

TEST_CASE("etcd lease: an expired lease goes to the next client, then the old holder is told",
          "[server][etcd][lease]") {
  const std::string url = nc_test::server_env("NOCLOBBER_ETCD_URL");
  const std::string key = nc_test::unique_name("lease");
  nc::etcd::lease_backend ba(url), bb(url);
  int reports = 0;
  nc::lease_lock_options<std::string> opts;
  opts.ttl = 1s;  // etcd grants its minimum (2 s with the default election timeout)
  opts.on_lost = [&](const std::string&, nc::fencing_token) { ++reports; };
  locks_t a(ba, opts);
  auto ga = a.lock(key);
  CHECK(ga.grant().ttl >= 1s);
  nc::lease_lock_options<std::string> bopts;
  bopts.wait_backoff = nc::backoff_policy::full_jitter(10ms, 200ms);
  locks_t b(bb, bopts);
  auto gb = b.try_lock_for(key, 30s);  // granted once etcd has expired a's lease
  REQUIRE(gb.owns_lock());
  CHECK(gb.token() > ga.token());
  CHECK(ga.lost());                             // the local deadline had passed before
  CHECK(ga.renew() == nc::lease_check::lost);   // keep-alive of an expired lease
  CHECK(ga.unlock() == nc::lease_check::lost);  // revoke: NotFound
  CHECK(reports == 1);
  CHECK(gb.renew() == nc::lease_check::held);
}

TEST_CASE("etcd lease: an unreachable server is a clear error", "[server][etcd][lease]") {
  nc::etcd::lease_backend b("http://127.0.0.1:" + std::to_string(nc_test::closed_port()), "noclobber/lease/",
                            500ms);
  nc::lease_lock_options<std::string> opts;
  opts.max_consecutive_failures = 2;
  opts.wait_backoff = nc::backoff_policy::full_jitter(1ms, 5ms);
  locks_t locks(b, opts);
  CHECK_THROWS_AS(locks.try_lock("k"), nc::lease_error);
  CHECK_THROWS_AS(locks.lock("k"), nc::lease_error);
  CHECK_THROWS_AS(nc::etcd::lease_backend("127.0.0.1:2379"), std::invalid_argument);
}
