// redis::lease_backend against a real redis-server (scripts/test_servers.sh starts it).
#include <catch2/catch.hpp>
#include <noclobber/adapters/redis.hpp>
#include <noclobber/adapters/redis_lease.hpp>
#include <noclobber/fenced_read_modify_write.hpp>
#include <noclobber/lease_lock.hpp>

#include <chrono>
#include <latch>
#include <optional>
#include <string>
#include <thread>

#include "server_env.hpp"

namespace nc = noclobber;
using namespace std::chrono_literals;
using locks_t = nc::lease_lock_map<nc::redis::lease_backend>;

namespace {
std::string redis_get(nc::redis::lease_backend&, const std::string& addr, const std::string& key) {
  nc::redis::store s(addr);
  nc::redis::detail::reply_ptr r = nc::redis::detail::command(s.native_handle(), {"GET", key});
  REQUIRE(r);
  return r->type == REDIS_REPLY_STRING ? std::string(r->str, static_cast<std::size_t>(r->len))
                                       : std::string();
}
long long redis_pttl(const std::string& addr, const std::string& key) {
  nc::redis::store s(addr);
  nc::redis::detail::reply_ptr r = nc::redis::detail::command(s.native_handle(), {"PTTL", key});
  REQUIRE(r);
  REQUIRE(r->type == REDIS_REPLY_INTEGER);
  return r->integer;
}
}  // namespace

TEST_CASE("redis lease: grant, busy, compare-and-delete release, tokens grow", "[server][redis][lease]") {
  const std::string addr = nc_test::server_env("NOCLOBBER_REDIS_ADDR");
  const std::string key = nc_test::unique_name("lease");
  nc::redis::lease_backend ba(addr), bb(addr);  // two connections: two clients
  locks_t a(ba, 10s), b(bb, 10s);
  nc::fencing_token last = 0;
  for (int i = 0; i < 3; ++i) {
    auto g = a.lock(key);
    CHECK(g.token() > last);
    last = g.token();
    CHECK(redis_get(ba, addr, ba.lock_key(key)) == g.grant().owner);
    CHECK_FALSE(b.try_lock(key));
    CHECK(g.unlock() == nc::lease_check::held);
    CHECK(redis_get(ba, addr, ba.lock_key(key)).empty());
  }
  auto gb = b.lock(key);
  CHECK(gb.token() == last + 1);  // one counter for every client
}

TEST_CASE(
    "redis lease: an expired lease goes to the next client, then the old holder is told and cannot delete it",
    "[server][redis][lease]") {
  const std::string addr = nc_test::server_env("NOCLOBBER_REDIS_ADDR");
  const std::string key = nc_test::unique_name("lease");
  nc::redis::lease_backend ba(addr), bb(addr);
  int reports = 0;
  nc::lease_lock_options<std::string> opts;
  opts.ttl = 50ms;
  opts.on_lost = [&](const std::string&, nc::fencing_token) { ++reports; };
  locks_t a(ba, opts), b(bb, 10s);
  auto ga = a.lock(key);
  std::this_thread::sleep_for(200ms);  // 4x the TTL: the server has expired it
  CHECK(ga.lost());                    // the local deadline says so too
  auto gb = b.try_lock(key);
  REQUIRE(gb.owns_lock());
  CHECK(gb.token() > ga.token());
  CHECK(ga.renew() == nc::lease_check::lost);   // compare-and-extend refused
  CHECK(ga.unlock() == nc::lease_check::lost);  // compare-and-delete refused
  CHECK(redis_get(bb, addr, bb.lock_key(key)) == gb.grant().owner);
  CHECK(reports == 1);
}

TEST_CASE("redis lease: renew extends the server's TTL", "[server][redis][lease]") {
  const std::string addr = nc_test::server_env("NOCLOBBER_REDIS_ADDR");
  const std::string key = nc_test::unique_name("lease");
  nc::redis::lease_backend ba(addr);
  nc::lease_lock_options<std::string> opts;
  opts.ttl = 1s;
  locks_t a(ba, opts);
  auto g = a.lock(key);
  CHECK(redis_pttl(addr, ba.lock_key(key)) <= 1000);
  nc::redis::lease_backend raw(addr);
  CHECK(raw.extend(key, g.grant(), 60s) == nc::lease_check::held);
  CHECK(redis_pttl(addr, ba.lock_key(key)) > 30000);
  CHECK(g.renew() == nc::lease_check::held);  // back to 1 s
  CHECK(redis_pttl(addr, ba.lock_key(key)) <= 1000);
  CHECK(redis_pttl(addr, ba.fence_key(key)) == -1);  // the counter never expires
}

TEST_CASE("redis lease: an unreachable or silent server is a clear error, not a grant",
          "[server][redis][lease]") {
  CHECK_THROWS_AS(nc::redis::lease_backend("127.0.0.1", nc_test::closed_port()), std::runtime_error);
  nc_test::silent_listener silent;
  nc::redis::lease_backend b("127.0.0.1", silent.port(), "noclobber:lease:", 200ms);
  nc::lease_lock_options<std::string> opts;
  opts.max_consecutive_failures = 2;
  opts.wait_backoff = nc::backoff_policy::full_jitter(1ms, 5ms);
  locks_t locks(b, opts);
  CHECK_THROWS_AS(locks.try_lock("k"), nc::lease_error);
  CHECK_THROWS_AS(locks.lock("k"), nc::lease_error);
  CHECK(b.last_error().code == "IO");
  CHECK_THROWS_AS(locks.try_lock(""), std::invalid_argument);
}

TEST_CASE("redis lease + conditional write: a paused holder's late write is refused (threads)",
          "[server][redis][lease]") {
  const std::string addr = nc_test::server_env("NOCLOBBER_REDIS_ADDR");
  const std::string key = nc_test::unique_name("fenced");
  nc::redis::lease_backend ba(addr), bb(addr);
  nc::redis::store sa(addr), sb(addr);
  locks_t a(ba, 100ms), b(bb, 10s);
  std::latch a_read(1), b_wrote(1);
  auto add = [](const std::optional<std::string>& v) -> nc::update<std::string> {
    return std::to_string((v ? std::stoll(*v) : 0) + 1);
  };
  nc::store_fenced_rmw_result_t<nc::redis::store> ra;
  std::thread holder([&] {
    bool first = true;
    ra = nc::fenced_read_modify_write(a, sa, key, [&](const std::optional<std::string>& v) {
      if (first) {  // A read under its lease, then "pauses" until B has written
        first = false;
        a_read.count_down();
        b_wrote.wait();
      }
      return add(v);
    });
  });
  a_read.wait();
  auto rb = nc::fenced_read_modify_write(b, sb, key, add);  // granted once A's 100 ms run out
  CHECK(rb.ok());
  b_wrote.count_down();
  holder.join();
  CHECK(ra.ok());
  CHECK(ra.attempts == 2);  // the late write was refused, re-read, applied
  CHECK(ra.lease_lost);
  CHECK(rb.fence > ra.fence);
  CHECK(sa.read(key).value == "2");  // both updates kept
}
