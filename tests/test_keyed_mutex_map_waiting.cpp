// Tests for how keyed_mutex_map waits: stop tokens that wake parked waiters, hand-overs once a
// waiter has waited past handoff_after (FIFO when it is zero), and a hot key hammered through the
// lock-free hot path, parking and hand-overs at once. Contention is forced, never hoped for: the
// key is held while the waiters start and park (counters().sleeps says when they have).
#include <noclobber/keyed_mutex_map.hpp>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <latch>
#include <mutex>
#include <random>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "keyed_mutex_map_test_support.hpp"

namespace {

using namespace std::chrono_literals;
using kmm_test::padded_counter;
using kmm_test::string_map;
using kmm_test::thread_failures;
using kmm_test::wait_for_sleeps;
using kmm_test::wait_for_sleeps_at_least;

noclobber::keyed_mutex_map_options with_handoff_after(std::chrono::nanoseconds d) {
  noclobber::keyed_mutex_map_options o;
  o.handoff_after = d;
  return o;
}

}  // namespace

// ---- lock(key, std::stop_token) -----------------------------------------------------------------

TEST_CASE("a stop requested before the call returns an empty guard without taking the key") {
  string_map m;
  std::stop_source stop;
  stop.request_stop();
  REQUIRE_FALSE(m.lock("k", stop.get_token()).owns_lock());
  REQUIRE_FALSE(m.lock_shared("k", stop.get_token()).owns_lock());
  REQUIRE_FALSE(m.lock_all(std::vector<std::string>{"k", "j"}, stop.get_token()).owns_lock());
  REQUIRE_FALSE(m.lock_all({std::string_view("k")}, stop.get_token()).owns_lock());
  REQUIRE(m.size() == 0);
  REQUIRE(m.counters().acquisitions == 0);
  // A token that is never stopped waits like lock().
  std::stop_source never;
  auto g = m.lock("k", never.get_token());
  REQUIRE(g.owns_lock());
  REQUIRE(m.lock_shared("s", never.get_token()).owns_lock());
}

TEST_CASE("a stop request wakes every parked waiter; nothing stays held", "[concurrency]") {
  // The key is held for the whole test, so no waiter can get it: each must come back empty, and
  // once the holder lets go nothing is held and no entry is left.
  constexpr int waiters = 6;
  string_map m(noclobber::keyed_mutex_map_options{GENERATE(std::size_t{1}, std::size_t{4096})});
  auto held = m.lock("k");
  std::stop_source stop;
  std::latch start(waiters);
  std::atomic<int> empty{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < waiters; ++t)
    pool.emplace_back([&, t] {
      start.arrive_and_wait();
      switch (t % 3) {
        case 0: {
          auto g = m.lock("k", stop.get_token());
          if (!g) empty.fetch_add(1);
          break;
        }
        case 1: {
          auto g = m.lock_shared("k", stop.get_token());
          if (!g) empty.fetch_add(1);
          break;
        }
        default: {
          auto g = m.lock_all(std::vector<std::string>{"other", "k"}, stop.get_token());
          if (!g) empty.fetch_add(1);
          break;
        }
      }
    });
  wait_for_sleeps(m, waiters);  // every waiter is parked: on "k", or on "other" behind a lock_all
  stop.request_stop();
  for (auto& th : pool) th.join();
  REQUIRE(empty.load() == waiters);
  REQUIRE(m.size() == 1);  // only the holder's "k": the lock_all callers let go of "other"
  REQUIRE(m.try_lock("other").owns_lock());
  held.unlock();
  REQUIRE(m.size() == 0);
  REQUIRE(m.try_lock("k").owns_lock());
  REQUIRE(m.counters().acquisitions == 3);  // held, and the two try_locks
}

TEST_CASE("race: stop requests land while waiters arrive, park and are handed the key", "[concurrency]") {
  // Each round: the key is held while waiters start behind a latch; a stopper thread requests a
  // stop while the holder lets go, at no fixed point relative to either. Every waiter either gets
  // the key (and bumps a plain counter under it) or comes back empty; no lock stays held.
  const auto handoff = GENERATE(std::chrono::nanoseconds::zero(), std::chrono::nanoseconds::max());
  string_map m(with_handoff_after(handoff));
  padded_counter counter;
  long got_total = 0;
  for (int round = 0; round < 60; ++round) {
    std::stop_source stop;
    auto held = m.lock("k");
    std::latch start(5);
    std::atomic<long> got{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; ++t)
      pool.emplace_back([&, t] {
        start.arrive_and_wait();
        if (t % 2 == 0) {
          auto g = m.lock("k", stop.get_token());
          if (g) {
            ++counter.value;
            got.fetch_add(1);
          }
        } else {
          auto g = m.lock_all(std::vector<std::string>{"k", "j"}, stop.get_token());
          if (g) {
            ++counter.value;
            got.fetch_add(1);
          }
        }
      });
    // Even rounds: the stop and the release both come once a waiter has parked; odd rounds: at
    // any point, perhaps before anyone parks.
    const std::uint64_t sleeps_before = m.counters().sleeps;
    std::thread stopper([&] {
      start.arrive_and_wait();
      if (round % 2 == 0)
        while (m.counters().sleeps == sleeps_before) std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::microseconds(round % 7 * 50));
      stop.request_stop();
    });
    if (round % 2 == 0) wait_for_sleeps_at_least(m, sleeps_before + 1);
    held.unlock();
    stopper.join();
    for (auto& th : pool) th.join();
    got_total += got.load();
    REQUIRE(m.size() == 0);
    REQUIRE(m.try_lock("k").owns_lock());
    REQUIRE(m.try_lock("j").owns_lock());
  }
  INFO("waiters that got the key: " << got_total << " of " << 60 * 4);
  REQUIRE(counter.value == got_total);
}

// ---- hand-overs and the fairness bound ----------------------------------------------------------

TEST_CASE("handoff_after = 0: a release hands the key to the parked waiters in the order they parked",
          "[concurrency]") {
  constexpr int waiters = 6;
  string_map m(with_handoff_after(std::chrono::nanoseconds::zero()));
  auto held = m.lock("hot");
  std::mutex order_mutex;
  std::vector<int> order;
  std::latch tried(1);
  std::vector<std::thread> pool;
  for (int t = 0; t < waiters; ++t) {
    pool.emplace_back([&, t] {
      auto g = m.lock("hot");
      if (t == 0) tried.wait();  // the first waiter holds the key until the test has tried it
      std::lock_guard<std::mutex> lk(order_mutex);
      order.push_back(t);
    });
    wait_for_sleeps(m, static_cast<std::uint64_t>(t) + 1);  // parked in this order
  }
  held.unlock();
  // Handed over, not woken: the key never became free, so nobody can take it in between.
  const bool taken_in_between = m.try_lock("hot").owns_lock();
  tried.count_down();
  for (auto& th : pool) th.join();
  REQUIRE_FALSE(taken_in_between);
  REQUIRE(order == std::vector<int>{0, 1, 2, 3, 4, 5});
  const auto c = m.counters();
  REQUIRE(c.handoffs == waiters);  // every release with a parked waiter behind it
  REQUIRE(c.sleeps == waiters);
  REQUIRE(m.size() == 0);
}

TEST_CASE("handoff_after = max: releases wake the parked waiters and never hand over", "[concurrency]") {
  constexpr int waiters = 6;
  string_map m(with_handoff_after(std::chrono::nanoseconds::max()));
  auto held = m.lock("hot");
  padded_counter counter;
  std::vector<std::thread> pool;
  for (int t = 0; t < waiters; ++t)
    pool.emplace_back([&] {
      auto g = m.lock("hot");
      std::this_thread::sleep_for(2ms);  // long past the default bound: only max() keeps it barging
      ++counter.value;
    });
  wait_for_sleeps(m, waiters);
  held.unlock();
  for (auto& th : pool) th.join();
  REQUIRE(counter.value == waiters);
  REQUIRE(m.counters().handoffs == 0);
  REQUIRE(m.size() == 0);
}

TEST_CASE("a key is handed over at most once per handoff_after", "[concurrency]") {
  // Six writers park and then wait past the bound, so each is due a hand-over; but each hand-over
  // leaves the key idle while its taker wakes, so a key hands over at most once per bound period:
  // the first release hands over, the others wake (unless the whole chain took over a period).
  constexpr int waiters = 6;
  const auto bound = 100ms;
  string_map m(with_handoff_after(bound));
  auto held = m.lock("hot");
  padded_counter counter;
  std::vector<std::thread> pool;
  for (int t = 0; t < waiters; ++t)
    pool.emplace_back([&] {
      auto g = m.lock("hot");
      ++counter.value;
    });
  wait_for_sleeps(m, waiters);
  std::this_thread::sleep_for(bound + 20ms);  // every waiter is now past the bound
  const auto released = std::chrono::steady_clock::now();
  held.unlock();
  for (auto& th : pool) th.join();
  const auto elapsed = std::chrono::steady_clock::now() - released;
  const auto handoffs = m.counters().handoffs;
  INFO(handoffs << " hand-overs in " << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                << " ms");
  REQUIRE(counter.value == waiters);
  REQUIRE(handoffs >= 1);  // the first release: its waiter was past the bound
  REQUIRE(handoffs <= 1 + static_cast<std::uint64_t>(elapsed / bound));
  REQUIRE(m.size() == 0);
}

TEST_CASE("shared waiters are handed the key together, up to the first exclusive waiter", "[concurrency]") {
  string_map m(with_handoff_after(std::chrono::nanoseconds::zero()));
  auto held = m.lock("k");
  std::atomic<int> readers_in{0};
  std::atomic<bool> writer_done{false};
  std::latch readers_inside(2);
  std::vector<std::thread> pool;
  for (int t = 0; t < 2; ++t) {
    pool.emplace_back([&] {
      auto g = m.lock_shared("k");
      readers_in.fetch_add(1);
      readers_inside.count_down();
      readers_inside.wait();  // both readers hold it at once, or this never returns
      KMM_CHECK_IN_THREAD(!writer_done.load());
    });
    wait_for_sleeps(m, static_cast<std::uint64_t>(t) + 1);
  }
  pool.emplace_back([&] {
    auto g = m.lock("k");
    KMM_CHECK_IN_THREAD(readers_in.load() == 2);  // served after both readers
    writer_done = true;
  });
  wait_for_sleeps(m, 3);
  held.unlock();
  for (auto& th : pool) th.join();
  REQUIRE(thread_failures.exchange(0) == 0);
  REQUIRE(m.counters().handoffs == 3);  // two readers at once, then the writer
  REQUIRE(m.size() == 0);
}

TEST_CASE("race: a hot key hammered by many threads through every path comes out exact", "[concurrency]") {
  // 12 threads on one key: the lock-free hot path, spinning, parking, wake-ups, hand-overs (with
  // a tiny bound they happen all the time), try and shared locks. A plain counter must come out
  // exact and the entry must be freed.
  const auto handoff = GENERATE(std::chrono::nanoseconds(0), std::chrono::nanoseconds(20'000),
                                std::chrono::nanoseconds::max());
  string_map m(with_handoff_after(handoff));
  constexpr int threads = 12;
  constexpr int iterations = 3000;
  padded_counter counter;
  std::atomic<long> expected{0};
  std::latch start(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      start.arrive_and_wait();
      std::minstd_rand rng(static_cast<unsigned>(t) + 1);
      long mine = 0;
      for (int i = 0; i < iterations; ++i) {
        switch (rng() % 8) {
          case 0: {
            if (auto g = m.try_lock("hot")) {
              ++counter.value;
              ++mine;
            }
            break;
          }
          case 1: {
            auto g = m.lock_shared("hot");
            const long before = counter.value;
            std::this_thread::yield();
            KMM_CHECK_IN_THREAD(counter.value == before);  // no writer inside meanwhile
            break;
          }
          case 2: {
            if (auto g = m.try_lock_for("hot", std::chrono::microseconds(rng() % 200))) {
              ++counter.value;
              ++mine;
            }
            break;
          }
          default: {
            auto g = m.lock("hot");
            ++counter.value;
            ++mine;
            if (rng() % 64 == 0) std::this_thread::sleep_for(20us);  // make waiters park
          }
        }
      }
      expected.fetch_add(mine);
    });
  for (auto& th : pool) th.join();
  INFO("handoff_after " << handoff.count() << " ns; " << m.counters().sleeps << " sleeps, "
                        << m.counters().handoffs << " hand-overs");
  REQUIRE(thread_failures.exchange(0) == 0);
  REQUIRE(counter.value == expected.load());
  REQUIRE(m.size() == 0);
}

TEST_CASE("a negative handoff_after is rejected with a message naming it") {
  REQUIRE_THROWS_WITH(string_map(with_handoff_after(-1ms)),
                      Catch::Contains("handoff_after") && Catch::Contains("-1000000"));
}
