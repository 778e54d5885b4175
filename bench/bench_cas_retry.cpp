// cas_retry's cost on the fast path (the write applies at once) against a hand-written loop
// around the same attempt, plus what a deadline, a budget and hooks add, and the cost of one
// backoff draw per kind. Peers run in the same binary; compare ratios within one run.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>

#include "noclobber/backoff.hpp"
#include "noclobber/cas_retry.hpp"

namespace {

using namespace std::chrono_literals;
using noclobber::write_result;
using noclobber::write_status;

// A versioned cell: the attempt reads the version and writes if it still matches — the cheapest
// real conditional write there is, so any overhead of the loop around it shows.
struct versioned_cell {
  std::atomic<std::uint64_t> version{0};
  std::atomic<std::uint64_t> value{0};

  write_result<std::uint64_t> add_one() {
    std::uint64_t v = version.load(std::memory_order_acquire);
    const std::uint64_t x = value.load(std::memory_order_relaxed) + 1;
    if (!version.compare_exchange_strong(v, v + 1, std::memory_order_acq_rel))
      return write_result<std::uint64_t>::make_conflict();
    value.store(x, std::memory_order_relaxed);
    return write_result<std::uint64_t>::make_applied(v + 1);
  }
};

// The loop a careful engineer writes by hand: 5 attempts, full jitter, stop on permanent.
write_result<std::uint64_t> hand_written(versioned_cell& cell, std::mt19937_64& rng) {
  write_result<std::uint64_t> r;
  for (unsigned attempt = 1; attempt <= 5; ++attempt) {
    r = cell.add_one();
    if (r.status == write_status::applied || r.status == write_status::permanent ||
        r.status == write_status::indeterminate)
      return r;
    if (attempt == 5) break;
    std::uniform_int_distribution<std::int64_t> d(0, (10ms * (1 << (attempt - 1))).count());
    std::this_thread::sleep_for(std::chrono::nanoseconds(d(rng)));
  }
  return r;
}

void BM_hand_written_loop(benchmark::State& state) {
  versioned_cell cell;
  std::mt19937_64 rng(1);
  for (auto _ : state) {
    auto r = hand_written(cell, rng);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_hand_written_loop);

void BM_cas_retry(benchmark::State& state) {
  versioned_cell cell;
  noclobber::retry_policy policy;  // full jitter 10ms..1s, 5 attempts
  for (auto _ : state) {
    auto r = noclobber::cas_retry(policy, [&] { return cell.add_one(); });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_cas_retry);

void BM_cas_retry_with_info(benchmark::State& state) {
  versioned_cell cell;
  noclobber::retry_policy policy;
  for (auto _ : state) {
    auto r = noclobber::cas_retry(policy, [&](const noclobber::attempt_info& a) {
      benchmark::DoNotOptimize(a.number);
      return cell.add_one();
    });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_cas_retry_with_info);

void BM_cas_retry_deadline(benchmark::State& state) {  // two clock reads per call
  versioned_cell cell;
  noclobber::retry_policy policy;
  policy.timeout = 5s;
  for (auto _ : state) {
    auto r = noclobber::cas_retry(policy, [&] { return cell.add_one(); });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_cas_retry_deadline);

void BM_cas_retry_budget(benchmark::State& state) {  // a full bucket: one atomic load per success
  versioned_cell cell;
  noclobber::retry_policy policy;
  policy.budget = std::make_shared<noclobber::retry_budget>();
  for (auto _ : state) {
    auto r = noclobber::cas_retry(policy, [&] { return cell.add_one(); });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_cas_retry_budget);

void BM_cas_retry_hooks(benchmark::State& state) {  // hooks set but not called on success
  versioned_cell cell;
  noclobber::retry_policy policy;
  std::uint64_t retries = 0;
  policy.on_retry = [&](const noclobber::retry_event&) { ++retries; };
  policy.on_give_up = [&](const noclobber::give_up_event&) { ++retries; };
  for (auto _ : state) {
    auto r = noclobber::cas_retry(policy, [&] { return cell.add_one(); });
    benchmark::DoNotOptimize(r);
  }
  state.counters["retries"] = static_cast<double>(retries);
}
BENCHMARK(BM_cas_retry_hooks);

template <class Make>
void backoff_delay(benchmark::State& state, Make make) {
  const noclobber::backoff_policy p = make();
  std::mt19937_64 rng(1);
  std::chrono::nanoseconds prev{0};
  unsigned n = 0;
  for (auto _ : state) {
    n = n % 20 + 1;
    prev = p.delay(n, prev, rng);
    benchmark::DoNotOptimize(prev);
  }
}
BENCHMARK_CAPTURE(backoff_delay, exponential,
                  [] { return noclobber::backoff_policy::exponential(10ms, 1s); });
BENCHMARK_CAPTURE(backoff_delay, full_jitter,
                  [] { return noclobber::backoff_policy::full_jitter(10ms, 1s); });
BENCHMARK_CAPTURE(backoff_delay, equal_jitter,
                  [] { return noclobber::backoff_policy::equal_jitter(10ms, 1s); });
BENCHMARK_CAPTURE(backoff_delay, decorrelated_jitter,
                  [] { return noclobber::backoff_policy::decorrelated_jitter(10ms, 1s); });

}  // namespace

BENCHMARK_MAIN();
