// example: examples/conditional_writer_faults.cpp
// The reference store misbehaving on purpose: latency, transient errors, indeterminate writes
// and an outside writer. 8 threads x 100 increments still lose nothing.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <noclobber/memory_store.hpp>
#include <noclobber/read_modify_write.hpp>

// A counter alone is not enough to recognise our own write after an indeterminate answer: two
// writers that read 41 both send 42. So each update carries its own id (see "Indeterminate
// writes" in docs/read_modify_write.md).
struct counter {
  long hits = 0;
  std::uint64_t last_update = 0;  // unique per update
  friend bool operator==(const counter&, const counter&) = default;
};

int main() {
  noclobber::fault_config faults;
  faults.seed = 42;  // same calls, same faults
  faults.latency_max = std::chrono::microseconds(50);
  faults.transient = 0.05;              // nothing happened: send the same write again
  faults.transient_restart = 0.02;      // nothing happened: restart from the read
  faults.indeterminate_applied = 0.02;  // it landed, but the answer was lost
  faults.indeterminate_lost = 0.02;     // it did not land, and the answer was lost
  faults.outside_writer = 0.05;         // somebody else wrote first: a real conflict
  faults.read_transient = 0.02;
  noclobber::memory_store<std::string, counter> store(faults);  // bad settings: std::invalid_argument

  noclobber::retry_policy policy;
  policy.backoff =
      noclobber::backoff_policy::full_jitter(std::chrono::microseconds(10), std::chrono::milliseconds(2));
  policy.max_attempts = 1000;

  std::atomic<long> applied{0}, unknown{0};
  std::vector<std::thread> threads;
  for (std::uint64_t t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (std::uint64_t i = 0; i < 100; ++i) {
        const std::uint64_t update_id = t * 1000 + i + 1;
        auto r = noclobber::read_modify_write(
            store, "hits",
            [&](const std::optional<counter>& c) {
              return counter{c.value_or(counter{}).hits + 1, update_id};
            },
            policy);
        if (r.ok()) ++applied;
        if (r.indeterminate) ++unknown;  // may or may not have landed: the caller decides
      }
    });
  }
  for (auto& t : threads) t.join();

  const long stored = store.peek("hits")->first.hits;
  const auto st = store.stats();
  std::printf(
      "stored %ld, applied %ld, unknown %ld; injected: %llu transient, %llu indeterminate, %llu outside\n",
      stored, applied.load(), unknown.load(), static_cast<unsigned long long>(st.injected_transient),
      static_cast<unsigned long long>(st.injected_indeterminate),
      static_cast<unsigned long long>(st.outside_writes));
  return stored >= applied && stored <= applied + unknown ? 0 : 1;  // nothing lost, nothing doubled
}
