// example: examples/backoff.cpp
// Twelve writers in a hurry on one row, backing off with load_tracking: each attempt tells the
// contention_meter the version it read, and the backoff window follows the row's commit load
// (wider while the row commits back to back, narrower once it goes quiet).
#include <noclobber/cas_retry.hpp>
#include <noclobber/memory_store.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

int main() {
  using namespace std::chrono_literals;
  noclobber::fault_config slow;  // every call takes 0.5-1.5 ms, like a round trip to a store
  slow.latency_min = 500us;
  slow.latency_max = 1500us;
  noclobber::memory_store<std::string, long> store(slow);
  (void)store.create_if_absent("hits", 0);

  noclobber::retry_policy policy;  // shared by all threads: it is only read
  policy.backoff = noclobber::backoff_policy::load_tracking(1ms, 200ms);
  policy.max_attempts = 200;
  std::atomic<int> retries{0}, failures{0};
  policy.on_retry = [&](const noclobber::retry_event&) { ++retries; };

  auto add_one = [&] {
    noclobber::read_result<long, std::uint64_t> seen;
    return noclobber::cas_retry(policy, [&](const noclobber::attempt_info& a) {
      if (a.reread || !seen.found()) seen = store.read("hits");
      if (!seen.found()) {
        return noclobber::write_result<std::uint64_t>::make_failed(noclobber::as_write_status(seen.status),
                                                                   seen.error);
      }
      // memory_store's tokens are ordinal versions: exactly what the meter needs.
      if (a.meter != nullptr) a.meter->note_read(seen.token);
      return store.write_if_match("hits", seen.token, seen.value + 1);
    });
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < 12; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        if (!add_one().ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();

  const long hits = store.read("hits").value;
  std::printf("hits = %ld (expected 60), %d retries, %d gave up\n", hits, retries.load(), failures.load());
  return hits == 60 && failures == 0 ? 0 : 1;
}
