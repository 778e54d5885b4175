// Every duration option of the core given hours::max() or seconds::max(): it means "none" / "max"
// (saturating_ns, duration.hpp), never an overflow inside std::chrono reported as a negative value.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <latch>
#include <limits>
#include <random>
#include <stop_token>
#include <string>
#include <thread>

#include "noclobber/backoff.hpp"
#include "noclobber/cas_retry.hpp"
#include "noclobber/idempotency_ledger.hpp"
#include "noclobber/memory_store.hpp"

namespace nc = noclobber;
using namespace std::chrono;
using std::chrono::nanoseconds;

TEST_CASE("retry_policy::timeout = hours::max() / seconds::max(): no deadline", "[duration][cas_retry]") {
  for (nc::saturating_ns none : {nc::saturating_ns(hours::max()), nc::saturating_ns(seconds::max())}) {
    nc::retry_policy p;
    p.timeout = none;
    p.backoff = nc::backoff_policy::exponential(hours(1), hours(2));
    p.max_attempts = 3;
    REQUIRE_NOTHROW(p.validate());
    CHECK(p.timeout.is_max());
    nc::virtual_retry_env env;
    auto r = nc::cas_retry(
        p, [] { return nc::write_status::transient; }, env);
    CHECK(r.reason == nc::stop_reason::attempts_exhausted);  // not deadline, not invalid_argument
    CHECK(r.slept == hours(1) + hours(2));
  }
}

TEST_CASE("backoff factories: hours::max() / seconds::max() as base or cap mean the maximum",
          "[duration][backoff]") {
  const auto uncapped = nc::backoff_policy::full_jitter(milliseconds(1), hours::max());
  CHECK(uncapped.cap() == nanoseconds::max());
  const auto exp = nc::backoff_policy::exponential(seconds(1), seconds::max());
  CHECK(exp.cap() == nanoseconds::max());
  CHECK(exp.ceiling(200) == nanoseconds::max());  // grows to the (saturated) cap, never wraps
  const auto huge = nc::backoff_policy::decorrelated_jitter(seconds::max(), hours::max());
  CHECK(huge.base() == nanoseconds::max());
  std::mt19937_64 rng(1);
  for (unsigned n : {1U, 2U, 64U, 4'000'000'000U}) {
    CHECK(uncapped.delay(n, nanoseconds(0), rng) >= nanoseconds::zero());
    CHECK(huge.delay(n, nanoseconds::max(), rng) == nanoseconds::max());
  }
}

TEST_CASE("virtual_retry_env: advancing by hours::max() stops at the end of time", "[duration][cas_retry]") {
  nc::virtual_retry_env env;
  env.advance(hours(1));
  env.advance(hours::max());
  CHECK(env.now() == steady_clock::time_point::max());
  env.advance(hours::max());
  CHECK(env.now() == steady_clock::time_point::max());
}

TEST_CASE("system_retry_env: a sleep of hours::max() waits until the stop token fires",
          "[duration][cas_retry][concurrency]") {
  // condition_variable_any::wait_for(now + nanoseconds::max()) overflows into the past and returns
  // at once as if the sleep had ended; the saturated deadline waits for the stop request. The
  // request comes 50 ms after the sleeper is about to sleep (a correct sleep ends only by it).
  nc::system_retry_env env;
  std::stop_source stop;
  std::latch sleeping(1);
  std::jthread requester([&] {
    sleeping.wait();
    std::this_thread::sleep_for(milliseconds(50));
    stop.request_stop();
  });
  sleeping.count_down();
  const bool woke_normally = env.sleep_for(hours::max(), stop.get_token());
  CHECK_FALSE(woke_normally);
  CHECK(stop.stop_requested());
}

TEST_CASE("ledger_options::lease = hours::max(): a claim that never expires", "[duration][ledger]") {
  nc::memory_store<std::string, nc::ledger_entry> store;
  std::int64_t now_ns = 1'700'000'000'000'000'000;
  nc::ledger_options o;
  o.lease = hours::max();
  o.clock = [&now_ns] {
    return system_clock::time_point(duration_cast<system_clock::duration>(nanoseconds(now_ns)));
  };
  REQUIRE(o.lease.is_max());
  nc::idempotency_ledger first(store, o);
  nc::idempotency_ledger second(store, o);
  auto [claim, why] = first.claim("src", "h");
  REQUIRE(claim.has_value());
  CHECK(claim->entry.lease_until_ns == std::numeric_limits<std::int64_t>::max());
  now_ns = std::numeric_limits<std::int64_t>::max() - 1;  // as late as the clock goes
  auto later = second.claim("src", "h");
  CHECK_FALSE(later.first.has_value());
  CHECK(later.second.outcome == nc::ledger_outcome::in_progress);
}

TEST_CASE("fault_config latency: seconds::max() / hours::max() are valid maximums",
          "[duration][memory_store]") {
  nc::fault_config f;
  f.latency_min = seconds::max();
  f.latency_max = hours::max();
  REQUIRE_NOTHROW(f.validate());  // not "latency_min = -...ns is negative"
  CHECK(f.latency_min.is_max());
  CHECK(f.latency_max.is_max());
  nc::memory_store<std::string, int> store;
  REQUIRE_NOTHROW(store.set_faults(f));
  CHECK(store.faults().latency_max.is_max());
}
