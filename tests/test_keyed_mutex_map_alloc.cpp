// keyed_mutex_map makes no heap allocation per lock/unlock in steady state: this TU replaces the
// global operator new and counts, per thread, what each loop allocates after a warm-up.
#include <noclobber/keyed_mutex_map.hpp>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "allocation_counter.hpp"
#include "object_keys.hpp"

namespace {

using string_map = noclobber::keyed_mutex_map<std::string, noclobber::string_hash, std::equal_to<>>;

}  // namespace

TEST_CASE("the counter sees allocations (the test can fail)") {
  const long before = allocations_on_this_thread;
  auto* p = new std::string(100, 'x');
  delete p;
  REQUIRE(allocations_on_this_thread - before == 2);
}

TEST_CASE("steady state: lock/unlock with string_view keys allocates nothing") {
  string_map m;
  const auto keys = object_keys(256);
  std::vector<std::string_view> views(keys.begin(), keys.end());
  auto round = [&] {
    for (auto k : views) {
      auto g = m.lock(k);
      auto t = m.try_lock(k);  // fails: held
      auto s = m.try_lock_for(views[0] == k ? views[1] : views[0], std::chrono::microseconds(0));
    }
    for (std::size_t i = 0; i + 1 < views.size(); i += 2) {
      auto r = m.lock_shared(views[i]);
      auto r2 = m.try_lock_shared(views[i]);
    }
  };
  round();  // warm-up: entries and key capacity come into the pool once
  round();
  const long before = allocations_on_this_thread;
  for (int i = 0; i < 20; ++i) round();
  REQUIRE(allocations_on_this_thread - before == 0);
  REQUIRE(m.size() == 0);
}

TEST_CASE("contended lock/unlock on two threads: allocations bounded, not per lock", "[concurrency]") {
  // A key released by the thread that did not create its entry retires the entry into that
  // thread's cache, so entries drift between the two caches and the pool grows on rare
  // interleavings, up to a bound: when a thread must allocate, its cache and the pool are empty,
  // so every entry is live (<= keys), in a thread's hand (<= threads) or in the other thread's
  // cache (<= capacity). Each entry costs two allocations (itself and its key's buffer). The
  // total over the whole run must stay under that bound however many locks are taken.
  string_map m;
  const auto keys = object_keys(4);
  std::vector<std::string_view> views(keys.begin(), keys.end());
  constexpr long iterations = 60000;
  std::atomic<long> allocations{0};
  std::atomic<int> ready{0};
  long counter[4] = {0, 0, 0, 0};
  auto worker = [&] {
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();
    const long before = allocations_on_this_thread;
    for (long i = 0; i < iterations; ++i) {
      auto g = m.lock(views[i % 4]);
      ++counter[i % 4];
    }
    allocations.fetch_add(allocations_on_this_thread - before);
  };
  std::thread a(worker), b(worker);
  a.join();
  b.join();
  constexpr long bound = 2 * (noclobber::detail::kmm_cache_slot::capacity + 4 /*keys*/ + 2 /*threads*/ + 1);
  INFO("allocations over " << 2 * iterations << " contended locks: " << allocations.load());
  REQUIRE(allocations.load() <= bound);
  REQUIRE(counter[0] + counter[1] + counter[2] + counter[3] == 2 * iterations);
  REQUIRE(m.size() == 0);
}
