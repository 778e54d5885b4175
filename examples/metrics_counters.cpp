// example: examples/metrics_counters.cpp
// Eight threads add to one counter at once; the retry loops report to a metrics sink.
#include <barrier>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <latch>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <noclobber/memory_metrics.hpp>
#include <noclobber/memory_store.hpp>
#include <noclobber/metrics.hpp>
#include <noclobber/ostream.hpp>
#include <noclobber/read_modify_write.hpp>

int main() {
  constexpr int threads = 8;
  constexpr int updates_per_thread = 500;
  noclobber::fault_config slow;  // every store call takes 10-100 us, like a fast network hop
  slow.latency_min = std::chrono::microseconds(10);
  slow.latency_max = std::chrono::microseconds(100);
  noclobber::memory_store<std::string, int> store(slow);
  (void)store.create_if_absent("hits", 0);

  // The sink: OpenTelemetry-shaped counters and histograms, kept in memory (thread-safe).
  noclobber::memory_metrics sink;
  noclobber::retry_policy base;
  base.backoff =
      noclobber::backoff_policy::full_jitter(std::chrono::microseconds(1), std::chrono::microseconds(100));
  base.max_attempts = 100000;  // patient: give up only if something is badly wrong
  const noclobber::retry_policy policy = noclobber::with_metrics(base, sink, "page.hits");

  std::latch start(threads);            // every thread starts together...
  std::barrier everyone_read(threads);  // ...and the first updates all read the same version
  std::vector<std::thread> pool;
  std::vector<noclobber::store_rmw_result_t<decltype(store)>> first_results(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      bool first = true;
      start.arrive_and_wait();
      for (int i = 0; i < updates_per_thread; ++i) {
        auto r = noclobber::read_modify_write(
            store, "hits",
            [&](const std::optional<int>& hits) {
              if (first) {
                first = false;
                everyone_read.arrive_and_wait();
              }
              return hits.value_or(0) + 1;
            },
            policy);
        if (!r.ok()) std::cerr << "gave up: " << r << '\n';
        if (i == 0) first_results[static_cast<std::size_t>(t)] = std::move(r);
      }
    });
  }
  for (auto& th : pool) th.join();

  // Every call's own statistics come back in its result; operator<< says them in words.
  for (int t = 0; t < threads; ++t)
    std::cout << "thread " << t << "'s first update: " << first_results[t] << '\n';
  std::cout << "\nmetrics:\n" << sink.text();

  const int hits = store.read("hits").value;
  std::cout << "\nhits = " << hits << " (expected " << threads * updates_per_thread << ")\n";
  namespace in = noclobber::instruments;
  const bool counted_every_call =
      sink.counter(in::calls, {{noclobber::metric_keys::reason, "applied"}}) == threads * updates_per_thread;
  return hits == threads * updates_per_thread && counted_every_call ? 0 : 1;
}
