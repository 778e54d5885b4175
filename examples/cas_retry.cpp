// example: examples/cas_retry.cpp
// Eight threads add to one counter with conditional writes. Each lost race comes back as a
// conflict; cas_retry backs off, the attempt re-reads, and no increment is lost.
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
  noclobber::fault_config slow;  // every call takes 20-200 us, like a fast network hop
  slow.latency_min = 20us;
  slow.latency_max = 200us;
  noclobber::memory_store<std::string, long> store(slow);
  (void)store.create_if_absent("hits", 0);

  std::atomic<int> retries{0}, failures{0};
  noclobber::retry_policy policy;  // shared by all threads: it is only read
  policy.backoff = noclobber::backoff_policy::full_jitter(50us, 5ms);
  policy.max_attempts = 100;
  policy.on_retry = [&](const noclobber::retry_event&) { ++retries; };  // runs on the calling thread

  auto add_one = [&] {
    noclobber::read_result<long, std::uint64_t> seen;
    return noclobber::cas_retry(policy, [&](const noclobber::attempt_info& a) {
      if (a.reread || !seen.found()) seen = store.read("hits");
      if (!seen.found()) {
        return noclobber::write_result<std::uint64_t>::make_failed(noclobber::as_write_status(seen.status),
                                                                   seen.error);
      }
      return store.write_if_match("hits", seen.token, seen.value + 1);
    });
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        auto r = add_one();
        if (!r.ok()) {
          ++failures;
          std::printf("gave up: %s after %u attempts\n", std::string(to_string(r.reason)).c_str(),
                      r.attempts);
        }
      }
    });
  }
  for (auto& t : threads) t.join();

  const long hits = store.read("hits").value;
  std::printf("hits = %ld (expected 1600), %d retries, %d gave up\n", hits, retries.load(), failures.load());
  return hits == 1600 && failures == 0 ? 0 : 1;
}
