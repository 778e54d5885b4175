// renewed_lease (lease_renewal.hpp): a lease kept past its TTL by the renewal thread, loss found
// by a renewal or by the local deadline, release that never waits out the interval, bad input at
// the boundary, and the readers racing the renewals (TSan). Server time moves by
// memory_lease_backend::advance, so no check depends on how fast a thread is scheduled: each
// waits for the state it needs, with a deadline far beyond any scheduling delay.
#include <catch2/catch.hpp>
#include <noclobber/lease_renewal.hpp>
#include <noclobber/memory_lease_backend.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <latch>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace nc = noclobber;
using namespace std::chrono_literals;

namespace {

using server_t = nc::memory_lease_backend<std::string>;
using map_t = nc::lease_lock_map<server_t>;
using lease_t = nc::renewed_lease<map_t::guard>;

/// Polls `done` every millisecond for up to 60 s.
bool eventually(const std::function<bool()>& done) {
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

nc::lease_lock_options<std::string> with_ttl(std::chrono::milliseconds ttl) {
  nc::lease_lock_options<std::string> o;
  o.ttl = ttl;
  return o;
}

}  // namespace

TEST_CASE("renewed_lease: the lease outlives its TTL on the server while it is renewed", "[lease][renewal]") {
  server_t server;
  map_t a(server, with_ttl(10s)), b(server, with_ttl(10s));
  lease_t lease(a.lock("k"), 50ms);
  const auto token = lease.token();
  // Server time: 9 s of the first TTL gone. Then a renewal that starts after that point runs a
  // fresh TTL from there, so 9 s more (18 s after the grant, 8 s past the first TTL) it still holds.
  server.advance(9s);
  const auto before = lease.renewals();
  REQUIRE(eventually([&] { return lease.renewals() >= before + 1; }));
  server.advance(9s);
  CHECK(server.held("k"));
  CHECK_FALSE(b.try_lock("k").owns_lock());
  CHECK_FALSE(lease.lost());
  CHECK(lease.token() == token);
  CHECK(lease.failed_renewals() == 0);
  CHECK(lease.unlock() == nc::lease_check::held);
  CHECK(b.try_lock("k").owns_lock());  // released at once
}

TEST_CASE("renewed_lease: without renewal the same lease is gone (the test above can fail)",
          "[lease][renewal]") {
  server_t server;
  map_t a(server, with_ttl(10s)), b(server, with_ttl(10s));
  auto g = a.lock("k");
  server.advance(9s);
  server.advance(9s);
  CHECK(b.try_lock("k").owns_lock());
  CHECK(g.renew() == nc::lease_check::lost);
}

TEST_CASE("renewed_lease: a renewal that finds another owner marks it lost, once, and stops",
          "[lease][renewal]") {
  server_t server;
  std::atomic<int> lost_calls{0}, other_key{0};
  auto o = with_ttl(10s);
  o.on_lost = [&](const std::string& key, nc::fencing_token) {  // on the renewal thread: no Catch2
    if (key != "k") other_key.fetch_add(1);
    lost_calls.fetch_add(1);
  };
  map_t a(server, o), b(server, with_ttl(10s));
  lease_t lease(a.lock("k"), 5ms);
  server.advance(1h);  // gone on the server (a pause, a partition) and taken
  auto other = b.lock("k");
  REQUIRE(eventually([&] { return lease.lost(); }));
  CHECK_THROWS_AS(lease.check(), nc::lease_lost_error);
  const auto renewals = lease.renewals();
  REQUIRE(eventually([&] { return lost_calls.load() == 1; }));  // lost() may answer first
  CHECK(other_key.load() == 0);
  CHECK(lease.unlock() == nc::lease_check::lost);  // the release finds the new owner too
  CHECK(lost_calls.load() == 1);                   // reported once
  CHECK(lease.renewals() == renewals);
  CHECK(other.owns_lock());
  CHECK(other.renew() == nc::lease_check::held);  // the new owner's lease is untouched
}

TEST_CASE("renewed_lease: renewals without an answer are retried; the local deadline makes it lost",
          "[lease][renewal]") {
  server_t server;
  std::atomic<int> lost_calls{0};
  auto o = with_ttl(300ms);
  o.on_lost = [&](const std::string&, nc::fencing_token) { lost_calls.fetch_add(1); };
  map_t a(server, o);
  auto g = a.lock("k");
  server.fail_next(1000000);  // the server stops answering before the first renewal
  lease_t lease(std::move(g), 100ms);
  REQUIRE(eventually([&] { return lease.lost(); }));
  CHECK(std::chrono::steady_clock::now() >= lease.expires_at());
  CHECK_THROWS_AS(lease.check(), nc::lease_lost_error);
  // The renewal thread saw the deadline pass after a renewal without an answer.
  REQUIRE(eventually([&] { return lost_calls.load() == 1; }));
  CHECK(lease.failed_renewals() >= 1);
  CHECK(lease.renewals() == 0);
}

TEST_CASE("renewed_lease: the destructor and take() stop the thread at once, whatever the interval",
          "[lease][renewal]") {
  server_t server;
  map_t a(server, with_ttl(std::chrono::hours(2))), b(server, with_ttl(10s));
  { lease_t lease(a.lock("k"), std::chrono::hours(1)); }  // must not wait an hour; the guard releases
  CHECK(b.try_lock("k").owns_lock());

  lease_t lease(a.lock("k2"), std::chrono::hours(1));
  auto g = lease.take();  // renewing stopped; the guard holds on
  REQUIRE(g.owns_lock());
  CHECK_FALSE(b.try_lock("k2").owns_lock());
  CHECK(g.unlock() == nc::lease_check::held);
  CHECK_THROWS_AS(lease.unlock(), std::logic_error);  // nothing left to release
}

TEST_CASE("renewed_lease: bad input is refused at construction", "[lease][renewal]") {
  server_t server;
  map_t a(server, with_ttl(1s));
  CHECK_THROWS_AS(lease_t(map_t::guard()), std::invalid_argument);
  CHECK_THROWS_AS(lease_t(a.lock("k"), 1s), std::invalid_argument);  // not below the TTL
  CHECK_THROWS_AS(lease_t(a.lock("k"), -5ms), std::invalid_argument);
  lease_t dflt(a.lock("k"));
  CHECK(dflt.interval() == 333ms);  // a third of the TTL
  // Refused constructions released their guards: the key was free for the last one.
  CHECK(dflt.unlock() == nc::lease_check::held);
}

TEST_CASE("renewed_lease race: readers on 4 threads while it renews every millisecond",
          "[lease][renewal][concurrency]") {
  server_t server;
  map_t a(server, with_ttl(60s));
  for (int round = 0; round < 20; ++round) {
    lease_t lease(a.lock("k"), 1ms);
    std::latch start(5);
    std::atomic<long> lost_seen{0}, wrong_token{0};
    std::vector<std::jthread> readers;
    for (int t = 0; t < 4; ++t) {
      readers.emplace_back([&] {
        start.arrive_and_wait();
        for (int i = 0; i < 2000 || lease.renewals() < 3; ++i) {  // until renewals ran meanwhile
          if (lease.lost()) lost_seen.fetch_add(1);
          if (lease.token() == 0) wrong_token.fetch_add(1);
          (void)lease.expires_at();
          (void)lease.renewals();
        }
      });
    }
    start.arrive_and_wait();
    readers.clear();  // joined: each read until the third renewal was published
    CHECK(lost_seen.load() == 0);
    CHECK(wrong_token.load() == 0);
    CHECK(lease.unlock() == nc::lease_check::held);
  }
}
