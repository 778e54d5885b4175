// The program every consumer test builds (find_package, add_subdirectory, FetchContent,
// pkg-config, the single header): threads increment counters in noclobber's memory_store, first
// with read_modify_write alone (conflicts, re-reads), then with a keyed_mutex_map in front
// (locked_read_modify_write: same-process writers queue, so every update takes one attempt).
// It fails unless no update was lost.
#include <noclobber/noclobber.hpp>

#if defined(NOCLOBBER_EXPECT_SINGLE_HEADER) && __has_include(<noclobber/outcome.hpp>)
#error "include/ is on the include path: this build must see only single_include/"
#endif

#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

int main() {
  constexpr int threads = 4;
  constexpr int increments = 500;
  noclobber::memory_store<std::string, long> store;
  noclobber::keyed_mutex_map<std::string> locks;
  noclobber::retry_policy policy;
  policy.max_attempts = 10000;
  policy.backoff =
      noclobber::backoff_policy::full_jitter(std::chrono::microseconds(1), std::chrono::milliseconds(1));
  auto add_one = [](const std::optional<long>& n) { return n.value_or(0) + 1; };

  std::atomic<long> failed{0}, extra_attempts_locked{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < increments; ++i) {
        if (!noclobber::read_modify_write(store, "optimistic", add_one, policy).ok()) ++failed;
        auto r = noclobber::locked_read_modify_write(locks, store, "locked", add_one, policy);
        if (!r.ok()) ++failed;
        extra_attempts_locked += static_cast<long>(r.attempts) - 1;
      }
    });
  }
  for (auto& w : workers) w.join();

  const long optimistic = store.read("optimistic").value;
  const long locked = store.read("locked").value;
  std::printf("noclobber %s: optimistic %ld/%d, locked %ld/%d (%ld retries under the lock), %ld failed\n",
              std::string(noclobber::version.text).c_str(), optimistic, threads * increments, locked,
              threads * increments, extra_attempts_locked.load(), failed.load());
  const bool ok = optimistic == threads * increments && locked == threads * increments && failed == 0 &&
                  extra_attempts_locked == 0 && locks.size() == 0;
  return ok ? 0 : 1;
}
