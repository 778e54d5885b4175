// What the keyed_mutex_map test programs share: the string-keyed map they test, checks from worker
// threads, a plain counter that only a working lock keeps exact, and a wait for parked waiters.
#pragma once

#include <noclobber/keyed_mutex_map.hpp>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace kmm_test {

using string_map = noclobber::keyed_mutex_map<std::string, noclobber::string_hash, std::equal_to<>>;

// Catch2 assertions are not thread-safe: worker threads count failures, the test thread checks
// `REQUIRE(kmm_test::thread_failures.exchange(0) == 0)`.
inline std::atomic<long> thread_failures{0};
#define KMM_CHECK_IN_THREAD(cond)                        \
  do {                                                   \
    if (!(cond)) kmm_test::thread_failures.fetch_add(1); \
  } while (false)

struct padded_counter {
  alignas(64) long value = 0;  // plain, non-atomic: only correct if the per-key lock works
};

// Waits (up to 60 s) until exactly `n` waiters in all have parked on the map: each park counts one
// sleep. The way to force contention deterministically: hold the key, start the waiters, wait
// here. Exact, not a guess: the map counts a sleep just before the waiter parks, and nothing wakes
// a parked waiter while its key is held (a spurious condition-variable wake-up sleeps again
// without counting).
template <class Map>
void wait_for_sleeps(const Map& m, std::uint64_t n) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (m.counters().sleeps < n && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(m.counters().sleeps == n);
}

// Waits (up to 60 s) until at least `n` waiters in all have parked: for a test whose other
// waiters may park too by then (it needs one parked, not all).
template <class Map>
void wait_for_sleeps_at_least(const Map& m, std::uint64_t n) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (m.counters().sleeps < n && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(m.counters().sleeps >= n);
}

}  // namespace kmm_test
