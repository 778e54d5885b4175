// Benchmarks of the Boost.Asio forms against the blocking ones, peers in one binary.
//
//   BM_lock_uncontended/*   cost of one lock + unlock of a free key, one thread:
//                           keyed_async_mutex::async_lock (co_await, completes via post),
//                           keyed_async_mutex::lock (co_await, no suspension when free),
//                           keyed_async_mutex::try_lock, keyed_mutex_map::lock (blocking form),
//                           and a plain std::mutex as the floor.
//   BM_writers/*            10,000 concurrent writers, 100 keys, each writer does one locked
//                           read-modify-write of a counter on memory_store:
//                           - coroutines on one io_context thread, async_locked_read_modify_write
//                             (keyed_async_mutex) through an async store whose calls wait
//                             `latency` on a timer;
//                           - a thread per writer, locked_read_modify_write (keyed_mutex_map)
//                             through memory_store with the same latency slept.
//                           Reports updates per second and, per writer, the memory held while
//                           all were in flight: live heap (mallinfo2), resident set growth and
//                           address space reserved (thread stacks). Kernel memory per thread
//                           (its kernel stack, ~16 KiB on x86-64) is in none of these.
// Every run checks that the counters come out exact, so a fast wrong answer cannot hide here.
#include <benchmark/benchmark.h>
#include <noclobber/asio/async_read_modify_write.hpp>
#include <noclobber/asio/async_store.hpp>
#include <noclobber/asio/keyed_async_mutex.hpp>
#include <noclobber/keyed_mutex_map.hpp>
#include <noclobber/locked_read_modify_write.hpp>
#include <noclobber/memory_store.hpp>

#include <malloc.h>
#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;

namespace {

using store_type = noclobber::memory_store<int, long>;

// Resident set and virtual size of this process (from /proc/self/statm) and live heap bytes
// (glibc's mallinfo2: small blocks in use plus mmapped blocks).
struct memory_sample {
  double resident = 0;
  double virtual_size = 0;
  double heap_in_use = 0;
};
memory_sample sample_memory() {
  std::ifstream statm("/proc/self/statm");
  double pages_virtual = 0, pages_resident = 0;
  statm >> pages_virtual >> pages_resident;
  const double page = 4096.0;
  const struct mallinfo2 mi = mallinfo2();
  return {pages_resident * page, pages_virtual * page, static_cast<double>(mi.uordblks + mi.hblkhd)};
}

constexpr double kib = 1024.0;

// ---------------------------------------------------------------------------------------------
// Uncontended lock + unlock.

void BM_lock_uncontended_async_lock(benchmark::State& state) {
  asio::io_context io(1);
  noclobber::keyed_async_mutex<int> m;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (auto _ : state) {
          auto g = co_await m.async_lock(42, asio::use_awaitable);
          benchmark::DoNotOptimize(g);
        }
      },
      asio::detached);
  io.run();
}
BENCHMARK(BM_lock_uncontended_async_lock);

void BM_lock_uncontended_async_co_lock(benchmark::State& state) {
  asio::io_context io(1);
  noclobber::keyed_async_mutex<int> m;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (auto _ : state) {
          auto g = co_await m.lock(42);
          benchmark::DoNotOptimize(g);
        }
      },
      asio::detached);
  io.run();
}
BENCHMARK(BM_lock_uncontended_async_co_lock);

void BM_lock_uncontended_async_try_lock(benchmark::State& state) {
  noclobber::keyed_async_mutex<int> m;
  for (auto _ : state) {
    auto g = m.try_lock(42);
    benchmark::DoNotOptimize(g);
  }
}
BENCHMARK(BM_lock_uncontended_async_try_lock);

void BM_lock_uncontended_blocking_keyed_mutex_map(benchmark::State& state) {
  noclobber::keyed_mutex_map<int> m;
  for (auto _ : state) {
    auto g = m.lock(42);
    benchmark::DoNotOptimize(g);
  }
}
BENCHMARK(BM_lock_uncontended_blocking_keyed_mutex_map);

void BM_lock_uncontended_std_mutex(benchmark::State& state) {
  std::mutex m;
  for (auto _ : state) {
    std::lock_guard g(m);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_lock_uncontended_std_mutex);

// ---------------------------------------------------------------------------------------------
// 10,000 writers on 100 keys.

constexpr int writers = 10'000;
constexpr int keys = 100;

// An async store over memory_store whose every call first waits `latency` on a timer, the way
// a network round trip would, without blocking the thread.
class timer_latency_store {
 public:
  using key_type = int;
  using value_type = long;
  using token_type = store_type::token_type;

  timer_latency_store(store_type& s, std::chrono::microseconds latency) : store_(s), latency_(latency) {}

  asio::awaitable<noclobber::read_result<long, token_type>> async_read(int key) {
    co_await delay();
    co_return store_.read(key);
  }
  asio::awaitable<noclobber::write_result<token_type>> async_write_if_match(int key, token_type token,
                                                                            long v) {
    co_await delay();
    co_return store_.write_if_match(key, token, v);
  }
  asio::awaitable<noclobber::write_result<token_type>> async_create_if_absent(int key, long v) {
    co_await delay();
    co_return store_.create_if_absent(key, v);
  }

 private:
  asio::awaitable<void> delay() {
    if (latency_.count() == 0) co_return;
    asio::steady_timer t(co_await asio::this_coro::executor, latency_);
    co_await t.async_wait(asio::use_awaitable);
  }

  store_type& store_;
  std::chrono::microseconds latency_;
};
static_assert(noclobber::async_conditional_writer<timer_latency_store>);

void check_counters(benchmark::State& state, store_type& store) {
  for (int k = 0; k < keys; ++k) {
    auto v = store.peek(k);
    if (!v || v->first != writers / keys) {
      state.SkipWithError("lost update: a counter did not come out exact");
      return;
    }
  }
}

noclobber::retry_policy bench_policy() {
  noclobber::retry_policy p;
  p.max_attempts = 100;
  return p;
}

void BM_writers_coroutines_async(benchmark::State& state) {
  const std::chrono::microseconds latency(state.range(0));
  const noclobber::retry_policy policy = bench_policy();
  memory_sample growth;
  for (auto _ : state) {
    store_type backing;
    timer_latency_store store(backing, latency);
    noclobber::keyed_async_mutex<int> locks;
    asio::io_context io(1);
    state.PauseTiming();  // creating the writers is not timed, for either form
    const memory_sample before = sample_memory();
    memory_sample peak = before;
    int done = 0;
    for (int w = 0; w < writers; ++w) {
      asio::co_spawn(
          io,
          [&, w]() -> asio::awaitable<void> {
            auto r = co_await noclobber::async_locked_read_modify_write(
                locks, store, w % keys, [](const std::optional<long>& v) { return v.value_or(0) + 1; },
                policy);
            if (!r.ok()) throw std::runtime_error("update failed");
            // Every writer starts (and suspends on its lock, which always completes through post)
            // before the first one finishes: this is the moment all 10,000 are in flight.
            if (done++ == 0) peak = sample_memory();
          },
          asio::detached);
    }
    state.ResumeTiming();
    io.run();
    growth = {peak.resident - before.resident, peak.virtual_size - before.virtual_size,
              peak.heap_in_use - before.heap_in_use};
    check_counters(state, backing);
  }
  state.SetItemsProcessed(state.iterations() * writers);
  state.counters["heap_per_writer_KiB"] = growth.heap_in_use / writers / kib;
  state.counters["rss_per_writer_KiB"] = growth.resident / writers / kib;
  state.counters["vsize_per_writer_KiB"] = growth.virtual_size / writers / kib;
}
BENCHMARK(BM_writers_coroutines_async)
    ->Arg(0)
    ->Arg(50)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

void BM_writers_threads_blocking(benchmark::State& state) {
  const std::chrono::microseconds latency(state.range(0));
  const noclobber::retry_policy policy = bench_policy();
  memory_sample growth;
  for (auto _ : state) {
    noclobber::fault_config faults;
    faults.latency_min = faults.latency_max = latency;
    store_type store(faults);
    noclobber::keyed_mutex_map<int> locks;
    state.PauseTiming();  // creating the writers is not timed, for either form
    const memory_sample before = sample_memory();
    std::atomic<int> started{0};
    std::latch go(1);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    threads.reserve(writers);
    for (int w = 0; w < writers; ++w) {
      threads.emplace_back([&, w] {
        started.fetch_add(1);
        go.wait();
        auto r = noclobber::locked_read_modify_write(
            locks, store, w % keys, [](const std::optional<long>& v) { return v.value_or(0) + 1; }, policy);
        if (!r.ok()) failures.fetch_add(1);
      });
    }
    while (started.load() < writers) std::this_thread::yield();
    const memory_sample all_alive = sample_memory();  // every writer exists, none has started work
    state.ResumeTiming();
    go.count_down();
    for (auto& t : threads) t.join();
    growth = {all_alive.resident - before.resident, all_alive.virtual_size - before.virtual_size,
              all_alive.heap_in_use - before.heap_in_use};
    if (failures.load() != 0) state.SkipWithError("update failed");
    check_counters(state, store);
  }
  state.SetItemsProcessed(state.iterations() * writers);
  state.counters["heap_per_writer_KiB"] = growth.heap_in_use / writers / kib;
  state.counters["rss_per_writer_KiB"] = growth.resident / writers / kib;
  state.counters["vsize_per_writer_KiB"] = growth.virtual_size / writers / kib;
}
BENCHMARK(BM_writers_threads_blocking)
    ->Arg(0)
    ->Arg(50)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
