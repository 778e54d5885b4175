// Keyed lease locks (lease_lock.hpp) on the in-process lease server (memory_lease_backend.hpp),
// and fenced_read_modify_write: a paused holder's late write is refused by the conditional write.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "noclobber/fenced_read_modify_write.hpp"
#include "noclobber/key_lock.hpp"
#include "noclobber/lease_lock.hpp"
#include "noclobber/memory_lease_backend.hpp"
#include "noclobber/memory_store.hpp"
#include "noclobber/naive_read_modify_write.hpp"

namespace nc = noclobber;
using namespace std::chrono_literals;
using server_t = nc::memory_lease_backend<std::string>;
using locks_t = nc::lease_lock_map<server_t>;
using vlocks_t = nc::lease_lock_map<server_t, nc::virtual_retry_env>;

static_assert(nc::key_lock_map<locks_t, std::string>);
static_assert(nc::lease_backend<server_t>);

TEST_CASE("lease lock: try, release, tokens grow, guards move", "[lease]") {
  server_t server;
  locks_t a(server), b(server);
  auto ga = a.lock("k");
  REQUIRE(ga.owns_lock());
  CHECK(ga.key() == "k");
  const nc::fencing_token t1 = ga.token();
  CHECK(t1 > 0);
  CHECK_FALSE(b.try_lock("k"));  // held by a
  CHECK(b.try_lock("other"));    // other keys are independent

  locks_t::guard moved = std::move(ga);
  CHECK_FALSE(ga.owns_lock());  // NOLINT(bugprone-use-after-move): moved-from is empty
  CHECK_THROWS_AS(ga.token(), std::logic_error);
  CHECK(moved.token() == t1);
  CHECK(moved.unlock() == nc::lease_check::held);
  CHECK_FALSE(moved.owns_lock());
  CHECK_FALSE(server.held("k"));

  auto gb = b.lock("k");
  CHECK(gb.token() > t1);
  { auto gone = std::move(gb); }  // destructor releases
  CHECK_FALSE(server.held("k"));
}

TEST_CASE("lease lock: an expired lease is granted again with a larger token, then the holder is told",
          "[lease]") {
  server_t server;
  std::vector<nc::fencing_token> lost_reports;
  nc::lease_lock_options<std::string> opts;
  opts.ttl = 10s;
  opts.on_lost = [&](const std::string& key, nc::fencing_token t) {
    CHECK(key == "k");
    lost_reports.push_back(t);
  };
  locks_t a(server, opts), b(server);
  auto ga = a.lock("k");
  CHECK(ga.renew() == nc::lease_check::held);
  CHECK_FALSE(ga.lost());
  server.advance(1h);  // the holder "paused" past its TTL, as far as the server knows
  auto gb = b.try_lock("k");
  REQUIRE(gb.owns_lock());
  CHECK(gb.token() > ga.token());
  CHECK(ga.renew() == nc::lease_check::lost);
  CHECK(ga.lost());
  CHECK_THROWS_AS(ga.check(), nc::lease_lost_error);
  CHECK(ga.unlock() == nc::lease_check::lost);  // and the release does not free b's grant
  CHECK(server.held("k"));
  REQUIRE(lost_reports.size() == 1);  // reported once, on the first finding
  CHECK(lost_reports[0] == 1);
}

TEST_CASE("lease lock: the local deadline alone marks a lease lost", "[lease]") {
  server_t server;
  nc::lease_lock_options<std::string> opts;
  opts.ttl = 1ms;
  locks_t a(server, opts);
  auto g = a.lock("k");
  std::this_thread::sleep_for(5ms);  // past expires_at() for sure (sleeps last at least this long)
  CHECK(g.lost());
}

TEST_CASE("lease lock: waiting is paced by the backoff policy, never faster", "[lease][backoff]") {
  server_t server;
  locks_t holder(server);
  auto held = holder.lock("k");
  nc::lease_lock_options<std::string> opts;
  opts.wait_backoff = nc::backoff_policy::full_jitter(10ms, 80ms);
  vlocks_t waiter(server, opts, nc::virtual_retry_env(42));

  SECTION("try_lock_for: every request after the first follows the policy's delay") {
    const auto calls_before = server.calls();
    auto g = waiter.try_lock_for("k", 1s);
    CHECK_FALSE(g.owns_lock());
    const auto& sleeps = waiter.env().sleeps();
    std::mt19937_64 rng(42);
    std::chrono::nanoseconds previous{0};
    std::chrono::nanoseconds total{0};
    for (std::size_t i = 0; i < sleeps.size(); ++i) {
      auto want = opts.wait_backoff->delay(static_cast<unsigned>(i + 1), previous, rng);
      previous = want;
      want = std::min<std::chrono::nanoseconds>(want, 1s - total);  // the last is clipped
      CHECK(sleeps[i] == want);
      total += sleeps[i];
    }
    CHECK(total == 1s);
    // one request per sleep plus the first: at most 1 s / (expected 40 ms) worth, not a spin
    CHECK(server.calls() - calls_before == sleeps.size() + 1);
    CHECK(waiter.requests() == sleeps.size() + 1);
    CHECK(sleeps.size() < 100);
  }
  SECTION("lock: waits until the holder lets go") {
    int slept = 0;
    waiter.env().on_sleep = [&](std::chrono::nanoseconds) {
      if (++slept == 3) (void)held.unlock();
    };
    auto g = waiter.lock("k");
    CHECK(g.owns_lock());
    CHECK(waiter.requests() == 4);
  }
}

TEST_CASE("lease lock: server failures are retried, then reported", "[lease]") {
  server_t server;
  nc::lease_lock_options<std::string> opts;
  opts.max_consecutive_failures = 3;
  vlocks_t locks(server, opts, nc::virtual_retry_env(1));
  server.fail_next(2);
  CHECK(locks.lock("k").owns_lock());
  server.fail_next(3);
  CHECK_THROWS_AS(locks.lock("k"), nc::lease_error);
  server.fail_next(1);
  CHECK_THROWS_AS(locks.try_lock("k"), nc::lease_error);
  CHECK_THROWS_AS(locks_t(server, 0ms), std::invalid_argument);
  server.fail_next(1);
  {
    auto g = locks.lock("k");
    server.fail_next(1);
    CHECK(g.renew() == nc::lease_check::unknown);  // no answer: nothing changes
    CHECK_FALSE(g.lost());
  }  // the release went through
  CHECK_FALSE(server.held("k"));
}

TEST_CASE("lease lock: 4 clients x 4 threads exclude each other and tokens grow in grant order",
          "[lease][race]") {
  server_t server;
  constexpr int clients = 4, threads = 4, rounds = 200;
  nc::lease_lock_options<std::string> opts;
  opts.ttl = 1h;  // no expiry here: exclusion is the server's
  opts.wait_backoff = nc::backoff_policy::full_jitter(1us, 50us);
  std::vector<std::unique_ptr<locks_t>> maps;
  for (int c = 0; c < clients; ++c) maps.push_back(std::make_unique<locks_t>(server, opts));
  long counter = 0;  // unsynchronised on purpose: only the lease protects it (TSan would see a race)
  std::vector<nc::fencing_token> tokens;
  std::atomic<int> inside{0};
  std::atomic<bool> overlap{false};
  std::latch start(clients * threads);
  std::vector<std::thread> pool;
  for (int c = 0; c < clients; ++c) {
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, c] {
        start.arrive_and_wait();
        for (int i = 0; i < rounds; ++i) {
          auto g = maps[c]->lock("k");
          if (inside.fetch_add(1) != 0) overlap = true;
          ++counter;
          tokens.push_back(g.token());
          inside.fetch_sub(1);
        }
      });
    }
  }
  for (auto& th : pool) th.join();
  CHECK_FALSE(overlap.load());
  CHECK(counter == clients * threads * rounds);
  REQUIRE(tokens.size() == static_cast<std::size_t>(counter));
  for (std::size_t i = 1; i < tokens.size(); ++i) REQUIRE(tokens[i] > tokens[i - 1]);
}

namespace {
using store_t = nc::memory_store<std::string, long>;
nc::update<long> add_one(const std::optional<long>& v) {
  return nc::update<long>(v.value_or(0) + 1);
}

// Holder A reads under its lease and stops in `fn` (paused) until B has taken the expired lease
// and written; then A resumes and writes. `fenced` picks the conditional write or the blind one.
long paused_holder_run(bool fenced, nc::store_fenced_rmw_result_t<store_t>* a_result) {
  server_t server;
  store_t store;
  locks_t a(server), b(server);
  std::latch a_read(1), b_wrote(1);
  std::thread holder([&] {
    bool first = true;
    auto fn = [&](const std::optional<long>& v) {
      if (first) {
        first = false;
        a_read.count_down();
        b_wrote.wait();  // paused past the lease
      }
      return add_one(v);
    };
    if (fenced) {
      *a_result = nc::fenced_read_modify_write(a, store, std::string("k"), fn);
    } else {
      auto g = a.lock("k");
      (void)nc::naive_read_modify_write(store, std::string("k"), fn);
    }
  });
  a_read.wait();
  server.advance(1h);  // A's lease runs out
  auto rb = nc::fenced_read_modify_write(b, store, std::string("k"), add_one);
  CHECK(rb.ok());
  CHECK(rb.fence > 1);
  b_wrote.count_down();
  holder.join();
  auto r = store.read("k");
  return r.found() ? r.value : -1;
}
}  // namespace

TEST_CASE("fenced_read_modify_write: a paused holder's late write is refused, the blind one lands",
          "[lease][rmw]") {
  nc::store_fenced_rmw_result_t<store_t> ra;
  CHECK(paused_holder_run(true, &ra) == 2);  // both updates kept
  CHECK(ra.ok());
  CHECK(ra.attempts == 2);  // the late write was refused once, re-read, applied
  CHECK(ra.lease_lost);     // and the holder was told its lease was gone
  CHECK(ra.fence == 1);
  CHECK(paused_holder_run(false, nullptr) == 1);  // lease alone: B's update is lost
}

TEST_CASE("fenced_read_modify_write: fn throws -> lease released, nothing written", "[lease][rmw]") {
  server_t server;
  store_t store;
  locks_t locks(server);
  CHECK_THROWS_AS(nc::fenced_read_modify_write(locks, store, std::string("k"),
                                               [](const std::optional<long>&) -> nc::update<long> {
                                                 throw std::runtime_error("boom");
                                               }),
                  std::runtime_error);
  CHECK_FALSE(server.held("k"));
  CHECK(store.read("k").absent());
}
