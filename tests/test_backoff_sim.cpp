// The backoff simulation (bench/sim/backoff_sim.hpp) and the peers it runs (backoff_peers.hpp):
// the lower bound docs/backoff.md leans on, and the governors' rules as their sources state them.
#include <catch2/catch.hpp>

#include <chrono>
#include <climits>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "noclobber/backoff.hpp"
#include "noclobber/retry_controller.hpp"
#include "sim/backoff_peers.hpp"
#include "sim/backoff_sim.hpp"

using namespace std::chrono_literals;
namespace sim = noclobber::sim;
using noclobber::backoff_policy;

namespace {

class policy_client : public sim::client_strategy {
 public:
  explicit policy_client(const noclobber::retry_policy& p) : ctl_(p) {}
  sim::ns on_conflict(const sim::observation& o, std::mt19937_64& rng) override {
    ctl_.meter().observe(o.last_version, o.last_read, o.now);
    return ctl_.on_outcome(noclobber::write_status::conflict, {}, sim::ns(0), rng).delay;
  }

 private:
  noclobber::retry_controller ctl_;
};

noclobber::retry_policy unbounded(backoff_policy b) {
  noclobber::retry_policy p;
  p.backoff = b;
  p.max_attempts = UINT_MAX;
  return p;
}

sim::observation conflict_at(sim::ns now, unsigned failures) {
  return sim::observation{now, failures, 0, now - 10ms, 0, now - 10ms};
}

}  // namespace

TEST_CASE("without a lock every strategy pays 2N - 1 writes at least: all first reads see one version",
          "[backoff_sim]") {
  const std::vector<backoff_policy> policies = {
      backoff_policy::immediate(), backoff_policy::full_jitter(10ms, 1s), backoff_policy::commit_rate(),
      backoff_policy::load_tracking(), backoff_policy::exponential(1s, 1s)};
  for (const auto& b : policies) {
    const auto p = unbounded(b);
    for (unsigned n : {2u, 5u, 10u, 20u}) {
      for (std::uint64_t seed = 1; seed <= 30; ++seed) {
        sim::sim_config cfg;
        cfg.clients = n;
        cfg.seed = seed;
        const auto r = sim::simulate(cfg, [&] { return std::make_unique<policy_client>(p); });
        INFO(to_string(b.kind()) << " N=" << n << " seed " << seed);
        REQUIRE(r.writes >= 2 * n - 1);
        REQUIRE(r.writes_by_attempt.at(0) == n);      // every client's first write
        REQUIRE(r.writes_by_attempt.at(1) == n - 1);  // and every first write but one was refused
        std::uint64_t sum = 0;
        for (auto w : r.writes_by_attempt) sum += w;
        REQUIRE(sum == r.writes);
        if (n == 2) REQUIRE(r.writes == 3);  // two clients: the bound is met exactly
      }
    }
  }
  // With one process behind a FIFO lock, only the holder writes: exactly N writes.
  sim::sim_config cfg;
  cfg.clients = 10;
  cfg.processes = 1;
  const auto p = unbounded(backoff_policy::full_jitter(10ms, 1s));
  CHECK(sim::simulate(cfg, [&] { return std::make_unique<policy_client>(p); }).writes == 10);
}

TEST_CASE("load_tracking's first retry is full jitter's: two clients finish exactly as with full jitter",
          "[backoff_sim][load_tracking]") {
  const auto fj = unbounded(backoff_policy::full_jitter(10ms, 1s));
  const auto lt = unbounded(backoff_policy::load_tracking());
  for (std::uint64_t seed = 1; seed <= 100; ++seed) {
    sim::sim_config cfg;
    cfg.clients = 2;
    cfg.seed = seed;
    const auto a = sim::simulate(cfg, [&] { return std::make_unique<policy_client>(fj); });
    const auto b = sim::simulate(cfg, [&] { return std::make_unique<policy_client>(lt); });
    REQUIRE(a.completion == b.completion);
    REQUIRE(a.writes == b.writes);
  }
}

TEST_CASE("AWS adaptive mode: the first throttle starts the bucket empty at 0.5 tokens/s",
          "[backoff_sim][peers]") {
  // botocore: nothing measured yet (rate 0), so the new rate is max(0 * 0.7, min rate 0.5) and
  // the empty bucket needs 2 s for its first token, whatever the backoff drew before that.
  std::mt19937_64 rng(1);
  for (int i = 0; i < 50; ++i) {
    sim::aws_adaptive_client c;
    const sim::ns d = c.on_conflict(conflict_at(20ms, 1), rng);
    REQUIRE(d >= 1999ms);
    REQUIRE(d <= 2001ms);
  }
  sim::peers::cubic_calculator cubic(0, 0);
  CHECK(cubic.error_received(10.0, 1.0) == Approx(7.0));  // beta 0.7
  // W_max 10, K = cbrt(10 * 0.3 / 0.4): the rate is back to W_max K seconds after the throttle.
  CHECK(cubic.success_received(1.0 + std::cbrt(7.5)) == Approx(10.0));
  sim::peers::token_bucket bucket(1);
  bucket.set_max_rate(0.1, 0.0);
  CHECK(bucket.max_rate() == Approx(0.5));  // never below 0.5 tokens/s
  CHECK(bucket.acquire(0.0) == Approx(2.0));
  CHECK(bucket.acquire(10.0) == Approx(0.0));  // capacity 1 refilled meanwhile
}

TEST_CASE("gRPC throttling: retries stop once tokens fall to maxTokens / 2; 5 attempts per call",
          "[backoff_sim][peers]") {
  std::mt19937_64 rng(1);
  sim::grpc_throttling_client c;  // maxTokens 10, tokenRatio 0.1
  for (unsigned f = 1; f <= 4; ++f) {
    (void)c.on_conflict(conflict_at(sim::ns(std::chrono::milliseconds(20 * f)), f), rng);
    CHECK(c.refused() == 0);
  }
  CHECK(c.tokens() == Approx(6.0));
  (void)c.on_conflict(conflict_at(100ms, 5), rng);  // tokens 5: not above 5, throttled
  CHECK(c.refused() == 1);
  for (unsigned f = 6; f <= 20; ++f)
    (void)c.on_conflict(conflict_at(sim::ns(std::chrono::milliseconds(20 * f)), f), rng);
  CHECK(c.tokens() == 0.0);  // never negative
  CHECK(c.refused() == 16);
  // The backoff is A6's: random(0, min(10 ms * 2^(n-1), 1 s)).
  for (unsigned n = 1; n <= 12; ++n) {
    const sim::ns d = c.on_conflict(conflict_at(1s, n), rng);
    REQUIRE(d <= std::min<sim::ns>(sim::ns(10ms) * (1LL << (n - 1)), 1s));
  }
}

TEST_CASE("Finagle's RetryBudget: 20 % of requests plus a reserve, deposits expire after ttl",
          "[backoff_sim][peers]") {
  std::mt19937_64 rng(1);
  // The default reserve (10 retries/s over a 10 s ttl) is 100 retries: one client never runs out.
  sim::finagle_budget_client fresh;
  for (unsigned f = 1; f <= 100; ++f)
    (void)fresh.on_conflict(conflict_at(sim::ns(std::chrono::milliseconds(f)), f), rng);
  CHECK(fresh.refused() == 0);
  (void)fresh.on_conflict(conflict_at(101ms, 101), rng);
  CHECK(fresh.refused() == 1);
  // No reserve: one request buys 0.2 retries, so the first retry is refused (the caller's new
  // call deposits again); after 5 requests one retry is allowed.
  sim::finagle_budget_client::config c;
  c.min_retries_per_s = 0;
  sim::finagle_budget_client lean(c);
  (void)lean.on_conflict(conflict_at(10ms, 1), rng);
  CHECK(lean.refused() == 1);
  for (unsigned f = 2; f <= 5; ++f)
    (void)lean.on_conflict(conflict_at(sim::ns(std::chrono::milliseconds(10 * f)), f), rng);
  CHECK(lean.refused() == 4);  // the fifth request's deposit paid for the fifth retry
  // Deposits expire after ttl: 11 s later the balance is empty again.
  (void)lean.on_conflict(conflict_at(11s, 6), rng);
  CHECK(lean.refused() == 5);
}
