// Benchmarks for read_modify_write on the reference memory_store.
//
//   uncontended/*   one thread, one key: what the algorithm costs over a hand-written
//                   read + write_if_match loop (and over the naive blind write it replaces).
//   hooks/*         one thread, one key, read_modify_write with the same policy: no hooks set
//                   (what every caller pays for the hooks existing), empty hooks, a sink of
//                   atomic counters, and memory_metrics (noclobber/metrics.hpp) installed.
//   contended/*     N threads on one hot key, with 0 or 50 µs latency per store call (slept,
//                   like a network round trip): throughput, and attempts per update (1.0 = no
//                   wasted attempts) for a hand-written CAS loop, read_modify_write spinning
//                   or with full jitter, and lock + CAS (the two layers of the
//                   object_store_file fix, docs/scenarios.md).
//
// Run: build-*/bench/bench_read_modify_write --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "noclobber/backoff.hpp"
#include "noclobber/cas_retry.hpp"
#include "noclobber/keyed_mutex_map.hpp"
#include "noclobber/locked_read_modify_write.hpp"
#include "noclobber/memory_metrics.hpp"
#include "noclobber/memory_store.hpp"
#include "noclobber/metrics.hpp"
#include "noclobber/naive_read_modify_write.hpp"
#include "noclobber/read_modify_write.hpp"
#include "uncontended_loops.hpp"

namespace nc = noclobber;
using store_t = nc_bench::counter_store;
using nc_bench::hand_written;
using nc_bench::increment;

namespace {

const std::string& kKey = nc_bench::counter_key();

nc::retry_policy spinning_policy() {
  nc::retry_policy p;
  p.backoff = nc::backoff_policy::immediate();
  p.max_attempts = 1'000'000;
  return p;
}

nc::retry_policy jitter_policy() {
  nc::retry_policy p;
  p.backoff = nc::backoff_policy::full_jitter(std::chrono::microseconds(1), std::chrono::microseconds(50));
  p.max_attempts = 1'000'000;
  return p;
}

// ---- uncontended ------------------------------------------------------------------------------

void BM_uncontended_hand_written(benchmark::State& state) {
  store_t store;
  for (auto _ : state) benchmark::DoNotOptimize(hand_written(store, kKey));
}
BENCHMARK(BM_uncontended_hand_written);

void BM_uncontended_read_modify_write(benchmark::State& state) {
  store_t store;
  for (auto _ : state) {
    auto r = nc::read_modify_write(store, kKey, increment);
    benchmark::DoNotOptimize(r.attempts);
  }
}
BENCHMARK(BM_uncontended_read_modify_write);

void BM_uncontended_locked_read_modify_write(benchmark::State& state) {
  store_t store;
  nc::keyed_mutex_map<std::string> locks;
  for (auto _ : state) {
    auto r = nc::locked_read_modify_write(locks, store, kKey, increment);
    benchmark::DoNotOptimize(r.attempts);
  }
}
BENCHMARK(BM_uncontended_locked_read_modify_write);

void BM_uncontended_naive(benchmark::State& state) {
  store_t store;
  for (auto _ : state) {
    auto r = nc::naive_read_modify_write(store, kKey, increment);
    benchmark::DoNotOptimize(r.attempts);
  }
}
BENCHMARK(BM_uncontended_naive);

// ---- hooks: the cost of observability, unused and used ---------------------------------------

// A sink that ignores attributes: one relaxed atomic add per measurement (the floor of any sink).
struct atomic_sink {
  std::atomic<std::uint64_t> counted{0};
  std::atomic<std::uint64_t> recorded{0};
  void add(const nc::instrument&, std::uint64_t n, nc::metric_attributes) {
    counted.fetch_add(n, std::memory_order_relaxed);
  }
  void record(const nc::instrument&, double, nc::metric_attributes) {
    recorded.fetch_add(1, std::memory_order_relaxed);
  }
};

void run_hooks(benchmark::State& state, const nc::retry_policy& policy) {
  store_t store;
  for (auto _ : state) {
    auto r = nc::read_modify_write(store, kKey, increment, policy);
    benchmark::DoNotOptimize(r.attempts);
  }
}

void BM_hooks_unused(benchmark::State& state) {
  run_hooks(state, nc::retry_policy{});
}
BENCHMARK(BM_hooks_unused);

void BM_hooks_empty(benchmark::State& state) {
  nc::retry_policy p;
  p.on_attempt = [](const nc::attempt_event&) {};
  p.on_success = [](const nc::success_event&) {};
  run_hooks(state, p);
}
BENCHMARK(BM_hooks_empty);

void BM_hooks_atomic_sink(benchmark::State& state) {
  atomic_sink sink;
  run_hooks(state, nc::with_metrics(nc::retry_policy{}, sink));
  benchmark::DoNotOptimize(sink.counted.load());
}
BENCHMARK(BM_hooks_atomic_sink);

void BM_hooks_memory_metrics(benchmark::State& state) {
  nc::memory_metrics sink;
  run_hooks(state, nc::with_metrics(nc::retry_policy{}, sink, "bench"));
}
BENCHMARK(BM_hooks_memory_metrics);

// ---- contended: all threads on one key ----------------------------------------------------------

struct shared_state {
  explicit shared_state(nc::fault_config f) : store(f) {}
  store_t store;
  nc::keyed_mutex_map<std::string> locks;
};
std::unique_ptr<shared_state> g_shared;

// state.range(0): latency of every store call in microseconds (0: none), like a network store.
template <class Body>
void contended(benchmark::State& state, Body body) {
  // Thread 0 replaces the shared store before the timed loop; Google Benchmark starts every
  // thread's loop together (a barrier), after the previous run's threads have all finished.
  if (state.thread_index() == 0) {
    nc::fault_config f;
    f.latency_min = f.latency_max = std::chrono::microseconds(state.range(0));
    g_shared = std::make_unique<shared_state>(f);
  }
  long attempts = 0;
  long updates = 0;
  for (auto _ : state) {
    attempts += body(*g_shared);
    ++updates;
  }
  state.counters["attempts_per_update"] =
      benchmark::Counter(static_cast<double>(attempts) / static_cast<double>(updates ? updates : 1),
                         benchmark::Counter::kAvgThreads);
}

void BM_contended_hand_written(benchmark::State& state) {
  contended(state, [](shared_state& s) { return hand_written(s.store, kKey); });
}

void BM_contended_cas_spin(benchmark::State& state) {
  static const nc::retry_policy policy = spinning_policy();
  contended(state, [](shared_state& s) {
    return static_cast<long>(nc::read_modify_write(s.store, kKey, increment, policy).attempts);
  });
}

void BM_contended_cas_jitter(benchmark::State& state) {
  static const nc::retry_policy policy = jitter_policy();
  contended(state, [](shared_state& s) {
    return static_cast<long>(nc::read_modify_write(s.store, kKey, increment, policy).attempts);
  });
}

void BM_contended_lock_cas(benchmark::State& state) {
  static const nc::retry_policy policy = spinning_policy();
  contended(state, [](shared_state& s) {
    return static_cast<long>(
        nc::locked_read_modify_write(s.locks, s.store, kKey, increment, policy).attempts);
  });
}

#define NOCLOBBER_CONTENDED(fn) \
  BENCHMARK(fn)->ArgName("latency_us")->Arg(0)->Arg(50)->Threads(2)->Threads(8)->UseRealTime()
NOCLOBBER_CONTENDED(BM_contended_hand_written);
NOCLOBBER_CONTENDED(BM_contended_cas_spin);
NOCLOBBER_CONTENDED(BM_contended_cas_jitter);
NOCLOBBER_CONTENDED(BM_contended_lock_cas);

}  // namespace

BENCHMARK_MAIN();
