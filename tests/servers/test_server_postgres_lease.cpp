// postgres::advisory_lease_backend against a real PostgreSQL (scripts/test_servers.sh starts it).
#include <catch2/catch.hpp>
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/adapters/postgres_lease.hpp>
#include <noclobber/lease_lock.hpp>

#include <chrono>
#include <string>

#include "server_env.hpp"

namespace nc = noclobber;
using namespace std::chrono_literals;
using backend_t = nc::postgres::advisory_lease_backend;
using locks_t = nc::lease_lock_map<backend_t>;

namespace {
nc::lease_lock_options<std::string> waiting(std::chrono::milliseconds ttl) {
  nc::lease_lock_options<std::string> o;
  o.ttl = ttl;
  o.wait_backoff = nc::backoff_policy::full_jitter(5ms, 100ms);
  return o;
}
}  // namespace

TEST_CASE("postgres advisory lease: grant, busy, release, tokens grow (both scopes)",
          "[server][postgres][lease]") {
  const std::string conninfo = nc_test::server_env("NOCLOBBER_PG_CONNINFO");
  const auto sc = GENERATE(backend_t::scope::session, backend_t::scope::transaction);
  const std::string key = nc_test::unique_name("lease");
  backend_t ba(conninfo, sc), bb(conninfo, sc);
  locks_t a(ba, 10s), b(bb, 10s);
  nc::fencing_token last = 0;
  for (int i = 0; i < 3; ++i) {
    auto g = a.lock(key);
    CHECK(g.token() > last);
    last = g.token();
    CHECK(g.grant().owner == std::to_string(ba.session().backend_pid()));
    CHECK_FALSE(b.try_lock(key));
    CHECK(g.renew() == nc::lease_check::held);
    CHECK(g.unlock() == nc::lease_check::held);
  }
  auto gb = b.try_lock(key);
  REQUIRE(gb.owns_lock());
  CHECK(gb.token() > last);
}

TEST_CASE("postgres advisory lease: a holder idle past its TTL loses the session and the lock",
          "[server][postgres][lease]") {
  const std::string conninfo = nc_test::server_env("NOCLOBBER_PG_CONNINFO");
  const auto sc = GENERATE(backend_t::scope::session, backend_t::scope::transaction);
  const std::string key = nc_test::unique_name("lease");
  backend_t ba(conninfo, sc), bb(conninfo, sc);
  int reports = 0;
  auto aopts = waiting(200ms);
  aopts.on_lost = [&](const std::string&, nc::fencing_token) { ++reports; };
  locks_t a(ba, aopts), b(bb, waiting(10s));
  auto ga = a.lock(key);
  auto gb = b.try_lock_for(key, 30s);  // granted once the server has ended a's idle session
  REQUIRE(gb.owns_lock());
  CHECK(gb.token() > ga.token());
  CHECK(ga.renew() == nc::lease_check::lost);
  CHECK(ga.unlock() == nc::lease_check::lost);
  CHECK(reports == 1);
  CHECK(gb.renew() == nc::lease_check::held);
  CHECK(gb.unlock() == nc::lease_check::held);
  CHECK(a.lock(key).owns_lock());  // a's backend reconnects for its next grant
}

TEST_CASE("postgres advisory lease: a terminated holder session frees the lock at once",
          "[server][postgres][lease]") {
  const std::string conninfo = nc_test::server_env("NOCLOBBER_PG_CONNINFO");
  const std::string key = nc_test::unique_name("lease");
  backend_t ba(conninfo), bb(conninfo);
  locks_t a(ba, 1h), b(bb, 1h);  // no TTL would free it for an hour
  auto ga = a.lock(key);
  nc::postgres::connection admin(conninfo);
  const std::string pid = std::to_string(ba.session().backend_pid());
  REQUIRE(admin.exec_simple("SELECT pg_terminate_backend(" + pid + ")", true).ok());
  auto gb = b.try_lock_for(key, 30s);
  REQUIRE(gb.owns_lock());
  CHECK(ga.renew() == nc::lease_check::lost);
  CHECK_THROWS_AS(backend_t("host=127.0.0.1 port=" + std::to_string(nc_test::closed_port())),
                  std::runtime_error);
  CHECK_THROWS_AS(a.try_lock(""), std::invalid_argument);
}
