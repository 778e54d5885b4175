// Tests for noclobber/keyed_mutex_map.hpp: each operation, real races with exact plain counters,
// deadlock-free random multi-key sets, timeouts, cross-thread release, exceptions, size() back to 0.
#include <pthread.h>
#include <noclobber/keyed_mutex_map.hpp>

#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <ctime>
#include <iterator>
#include <latch>
#include <random>
#include <ranges>
#include <span>
#include <sstream>
#include <stdexcept>
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

std::string object_key(int i) {
  return "bucket/tenant-" + std::to_string(4824 + i % 7) + "/2024/06/part-" + std::to_string(100000 + i) +
         ".parquet";
}

// Every key collides: one hash, so everything shares one shard and one chain.
struct colliding_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view) const noexcept { return 42; }
};

// KeyEqual that throws on demand (to prove nothing stays held or allocated when it does).
struct throwing_equal {
  using is_transparent = void;
  static inline std::atomic<bool> armed{false};
  bool operator()(std::string_view a, std::string_view b) const {
    if (armed.load(std::memory_order_relaxed)) throw std::runtime_error("KeyEqual threw");
    return a == b;
  }
};

// Holds worker threads until all have started, so they really overlap.
using start_gate = std::latch;

}  // namespace

TEST_CASE("lock, try_lock, unlock, key, move and size") {
  string_map m;
  REQUIRE(m.size() == 0);
  {
    auto g = m.lock(std::string_view("a"));
    REQUIRE(g.owns_lock());
    REQUIRE(static_cast<bool>(g));
    REQUIRE(g.key() == "a");
    REQUIRE(m.size() == 1);

    auto t = m.try_lock("a");  // held: fails, empty guard
    REQUIRE_FALSE(t.owns_lock());
    REQUIRE_THROWS_AS(t.unlock(), std::logic_error);
    REQUIRE_THROWS_AS(t.key(), std::logic_error);

    auto other = m.try_lock(std::string("b"));  // another key: independent
    REQUIRE(other.owns_lock());
    REQUIRE(m.size() == 2);

    string_map::guard moved = std::move(g);
    REQUIRE_FALSE(g.owns_lock());
    REQUIRE(moved.owns_lock());
    moved.unlock();
    REQUIRE_FALSE(moved.owns_lock());
    REQUIRE(m.size() == 1);
    REQUIRE(m.try_lock("a").owns_lock());  // freed by unlock
    // move-assign over a held guard releases the held key first
    auto c = m.lock("c");
    c = std::move(other);
    REQUIRE(c.key() == "b");
    REQUIRE(m.try_lock("c").owns_lock());
  }
  REQUIRE(m.size() == 0);
  auto c = m.counters();
  REQUIRE(c.acquisitions == 5);  // a, b (try), a (try), c, c (try); failed tries don't count
  REQUIRE(c.contended_acquisitions == 0);
}

TEST_CASE("integer keys and a non-default shard count") {
  noclobber::keyed_mutex_map<int> m(noclobber::keyed_mutex_map_options{1});
  REQUIRE(m.shard_count() == 1);
  auto a = m.lock(1);
  auto b = m.lock(2);  // same (only) shard, different key: no wait
  REQUIRE_FALSE(m.try_lock(1).owns_lock());
  REQUIRE(m.size() == 2);
  a.unlock();
  REQUIRE(m.size() == 1);
  b.unlock();
  REQUIRE(m.size() == 0);
}

TEST_CASE("bad shard count is rejected with a message naming it") {
  using M = noclobber::keyed_mutex_map<int>;
  REQUIRE_THROWS_WITH(M(noclobber::keyed_mutex_map_options{0}), Catch::Contains("got 0"));
  REQUIRE_THROWS_WITH(M(noclobber::keyed_mutex_map_options{1000}), Catch::Contains("got 1000"));
}

TEST_CASE("shared mode: readers share, writers exclude, writers are preferred", "[concurrency]") {
  string_map m;
  auto r1 = m.lock_shared("k");
  auto r2 = m.try_lock_shared("k");
  REQUIRE(r1.owns_lock());
  REQUIRE(r2.owns_lock());
  REQUIRE(r2.key() == "k");
  REQUIRE(m.size() == 1);
  REQUIRE_FALSE(m.try_lock("k").owns_lock());
  REQUIRE_FALSE(m.try_lock_for("k", 5ms).owns_lock());

  // A writer waiting blocks new readers (writer preference).
  std::atomic<bool> writer_in{false};
  std::thread writer([&] {
    auto w = m.lock("k");
    writer_in = true;
  });
  while (m.try_lock_shared("k").owns_lock()) std::this_thread::yield();  // until the writer queues
  REQUIRE_FALSE(writer_in.load());
  r1.unlock();
  REQUIRE_FALSE(writer_in.load());
  r2.unlock();
  writer.join();
  REQUIRE(writer_in.load());
  REQUIRE(m.size() == 0);

  auto w = m.lock("k");
  REQUIRE_FALSE(m.try_lock_shared("k").owns_lock());
  REQUIRE_FALSE(m.try_lock_shared_for("k", 5ms).owns_lock());
  REQUIRE_FALSE(m.try_lock_shared_until("k", std::chrono::system_clock::now() + 5ms).owns_lock());
}

namespace {
std::chrono::nanoseconds cpu_time(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}
}  // namespace

TEST_CASE("a blocked waiter sleeps instead of spinning", "[concurrency]") {
  // The waiter is known to be parked (the map counted its sleep; a spinning waiter never is)
  // before its CPU clock is read; then the test sleeps at least 300 ms with the key still held.
  // A parked thread uses no CPU in that window; a spinning one would use most of it.
  string_map m;
  auto held = m.lock("k");
  std::atomic<bool> acquired{false};
  std::thread waiter([&] {
    auto g = m.lock("k");
    acquired = true;
  });
  wait_for_sleeps(m, 1);
  clockid_t waiter_clock{};
  REQUIRE(pthread_getcpuclockid(waiter.native_handle(), &waiter_clock) == 0);
  const auto cpu0 = cpu_time(waiter_clock);
  std::this_thread::sleep_for(300ms);
  const auto waiter_cpu = cpu_time(waiter_clock) - cpu0;
  const bool acquired_while_held = acquired.load();
  held.unlock();
  waiter.join();
  INFO("parked waiter used " << waiter_cpu.count() << " ns CPU in a window of at least 300 ms");
  REQUIRE_FALSE(acquired_while_held);
  REQUIRE(acquired.load());
  REQUIRE(waiter_cpu < 30ms);
  REQUIRE(m.size() == 0);
}

TEST_CASE("a release wakes one exclusive waiter, not every waiter", "[concurrency]") {
  // 8 writers park on a held key; each then holds it for a while in turn. Every release that
  // leaves the key free with writers parked must wake (or hand the key to) exactly one of them, never all
  // (a thundering herd: 8 + 7 + ... + 1 = 36 parkings). Counted where the map sends the wake-up,
  // so exact whatever the scheduler does: all 8 are parked before the first release, the test's
  // release and the first 7 writers' each find parked writers (8 wake-ups, each of one exclusive
  // waiter), the last writer's finds none. How often a writer parked is not asserted beyond its
  // first time: a condition variable may wake a thread spuriously, and it then parks again.
  constexpr int writers = 8;
  string_map m;
  auto held = m.lock("hot");
  padded_counter turns;
  std::vector<std::thread> pool;
  for (int t = 0; t < writers; ++t)
    pool.emplace_back([&] {
      auto g = m.lock("hot");
      std::this_thread::sleep_for(1ms);  // holders that block keep the others parked
      ++turns.value;
    });
  wait_for_sleeps(m, writers);  // all parked before the first hand-over
  REQUIRE(m.counters().wakeups == 0);
  held.unlock();
  for (auto& th : pool) th.join();
  const auto c = m.counters();
  INFO("sleeps " << c.sleeps << ", wake-ups " << c.wakeups << " (of every shared waiter: " << c.shared_wakeups
                 << "), contended acquisitions " << c.contended_acquisitions);
  REQUIRE(turns.value == writers);
  REQUIRE(c.contended_acquisitions == writers);
  REQUIRE(c.wakeups == writers);   // one per hand-over to a parked writer
  REQUIRE(c.shared_wakeups == 0);  // and each woke one writer, not all of them
  REQUIRE(c.sleeps >= writers);    // each parked at least once (forced above)
  REQUIRE(m.size() == 0);
}

TEST_CASE("a waiter woken for a key it cannot use passes the wake-up on", "[concurrency]") {
  // One shard, so lock_all("a", "b") waits for both keys as one group. The group parks on "a"
  // first, a single-key waiter behind it; then "b" is taken and "a" released. The one wake-up goes
  // to the group (first in line), which now finds "b" held and parks there: unless it passes the
  // wake-up on, the single-key waiter sleeps on a free "a" for as long as "b" is held.
  string_map m(noclobber::keyed_mutex_map_options{1});
  auto a = m.lock("a");
  std::thread group([&] { auto g = m.lock_all("a", "b"); });
  wait_for_sleeps(m, 1);
  std::atomic<bool> single_got_a{false};
  std::thread single([&] {
    auto g = m.lock("a");
    single_got_a = true;
  });
  wait_for_sleeps(m, 2);
  auto b = m.lock("b");
  a.unlock();
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (!single_got_a && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(1ms);
  CHECK(single_got_a);  // not REQUIRE: "b" must still be released and the threads joined
  b.unlock();
  group.join();
  single.join();
  REQUIRE(m.size() == 0);
}

TEST_CASE("race: shared, exclusive, timed and multi-key waiters on hot keys never miss a wake-up",
          "[concurrency]") {
  // Waking one exclusive waiter per release is only safe if every waiter that does not end up
  // holding the key passes its wake-up on. Mix every kind of waiter on two keys, with holders
  // that sleep (so waiters park), and require progress and exact counts. With one shard, "a" and
  // "b" are locked as one group, so a waiter woken for one key can end up parked on the other.
  // Parking is forced, not hoped for: the test holds both keys until every thread's first
  // operation (exclusive, shared, or both keys) has parked, then releases them into that queue.
  const std::size_t shards = GENERATE(std::size_t{1}, std::size_t{4096});
  string_map m(noclobber::keyed_mutex_map_options{shards});
  padded_counter a, b;  // a guarded by "a", b by "b"; readers check nothing tears
  std::atomic<long> reads{0}, timeouts{0};
  long expected_a[8] = {}, expected_b[8] = {};
  auto hold_a = m.lock("a");
  auto hold_b = m.lock("b");
  std::vector<std::thread> pool;
  start_gate gate(8);
  for (int t = 0; t < 8; ++t)
    pool.emplace_back([&, t] {
      gate.arrive_and_wait();
      switch (t % 4) {  // the first operation parks behind the test's hold
        case 0: {
          auto g = m.lock("a");
          ++a.value;
          ++expected_a[t];
          break;
        }
        case 1: {
          auto g = m.lock_shared("a");
          KMM_CHECK_IN_THREAD(g.owns_lock());
          reads.fetch_add(1, std::memory_order_relaxed);
          break;
        }
        case 2: {
          auto g = m.lock_all("a", "b");
          ++a.value;
          ++b.value;
          ++expected_a[t];
          ++expected_b[t];
          break;
        }
        default: {
          auto g = m.lock_shared("b");
          KMM_CHECK_IN_THREAD(g.owns_lock());
          reads.fetch_add(1, std::memory_order_relaxed);
          break;
        }
      }
      std::minstd_rand rng(7 + t);
      for (int i = 0; i < 300; ++i) {
        const bool nap = rng() % 4 == 0;  // holders that block make waiters park
        switch (rng() % 5) {
          case 0: {
            auto g = m.lock("a");
            ++a.value;
            ++expected_a[t];
            if (nap) std::this_thread::sleep_for(100us);
            break;
          }
          case 1: {
            auto g = m.try_lock_for("a", std::chrono::microseconds(rng() % 300));
            if (!g) {
              timeouts.fetch_add(1, std::memory_order_relaxed);
              break;
            }
            ++a.value;
            ++expected_a[t];
            break;
          }
          case 2: {
            auto g = m.lock_shared("a");
            const long before = a.value;
            if (nap) std::this_thread::sleep_for(50us);
            KMM_CHECK_IN_THREAD(a.value == before);
            reads.fetch_add(1, std::memory_order_relaxed);
            break;
          }
          case 3: {
            auto g = m.lock_all("a", "b");
            ++a.value;
            ++b.value;
            ++expected_a[t];
            ++expected_b[t];
            if (nap) std::this_thread::sleep_for(100us);
            break;
          }
          default: {
            auto g = m.try_lock_shared_for("b", std::chrono::microseconds(rng() % 300));
            if (g) {
              reads.fetch_add(1, std::memory_order_relaxed);
            } else {
              timeouts.fetch_add(1, std::memory_order_relaxed);
            }
            break;
          }
        }
      }
    });
  wait_for_sleeps(m, 8);  // every thread is parked behind the hold
  hold_b.unlock();
  hold_a.unlock();
  for (auto& th : pool) th.join();
  long sum_a = 0, sum_b = 0;
  for (int t = 0; t < 8; ++t) {
    sum_a += expected_a[t];
    sum_b += expected_b[t];
  }
  INFO("reads " << reads.load() << ", timeouts " << timeouts.load() << ", sleeps " << m.counters().sleeps);
  REQUIRE(thread_failures.exchange(0) == 0);
  REQUIRE(a.value == sum_a);
  REQUIRE(b.value == sum_b);
  REQUIRE(m.counters().sleeps >= 8);  // waiters really parked (forced above)
  REQUIRE(m.size() == 0);
}

TEST_CASE("timeouts are honoured and leave nothing behind", "[concurrency]") {
  string_map m;
  auto held = m.lock("k");
  const auto t0 = std::chrono::steady_clock::now();
  auto g = m.try_lock_for("k", 30ms);
  const auto waited = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(g.owns_lock());
  REQUIRE(waited >= 30ms);  // lower bound only: it did wait, it did not give up early
  auto u = m.try_lock_until("k", std::chrono::system_clock::now() + 20ms);
  REQUIRE_FALSE(u.owns_lock());
  REQUIRE_FALSE(m.try_lock_for("k", -5ms).owns_lock());
  REQUIRE_FALSE(m.try_lock_for("k", std::chrono::hours(0)).owns_lock());
  REQUIRE(m.size() == 1);
  // A timed waiter does get the key when it is released in time: the release comes only once
  // the waiter below has parked (the map counts it), so the acquisition is contended for sure.
  const auto parked_before = m.counters().sleeps;
  std::thread releaser([&] {
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    while (m.counters().sleeps == parked_before && std::chrono::steady_clock::now() < give_up)
      std::this_thread::sleep_for(1ms);
    held.unlock();
  });
  auto late = m.try_lock_for("k", std::chrono::hours(1));
  releaser.join();
  REQUIRE(late.owns_lock());
  late.unlock();
  REQUIRE(m.size() == 0);
  REQUIRE(m.counters().contended_acquisitions == 1);
}

TEST_CASE("multi-key: folded, all-or-nothing for try and timed forms") {
  string_map m;
  {
    auto g = m.lock_all(
        {std::string_view("a"), std::string_view("b"), std::string_view("a"), std::string_view("c")});
    REQUIRE(g.owns_lock());
    REQUIRE(g.size() == 3);
    REQUIRE(m.size() == 3);
    REQUIRE_FALSE(m.try_lock("a").owns_lock());
    REQUIRE_FALSE(m.try_lock("c").owns_lock());
    REQUIRE_THROWS_AS(g.key(3), std::out_of_range);
  }
  REQUIRE(m.size() == 0);
  auto b = m.lock("b");
  std::vector<std::string> keys{"a", "b", "c", "d"};
  REQUIRE_FALSE(m.try_lock_all(keys).owns_lock());
  REQUIRE_FALSE(m.try_lock_all_for(keys, 10ms).owns_lock());
  REQUIRE_FALSE(m.try_lock_all_until(keys, std::chrono::steady_clock::now() + 5ms).owns_lock());
  REQUIRE(m.size() == 1);  // nothing of a, c, d left held or allocated
  REQUIRE(m.try_lock("a").owns_lock());
  b.unlock();
  auto all = m.try_lock_all(keys);
  REQUIRE(all.size() == 4);
  all.unlock();
  auto none = m.lock_all(std::vector<std::string>{});
  REQUIRE(none.owns_lock());
  REQUIRE(none.size() == 0);
  REQUIRE(m.size() == 0);
}

// N threads x M iterations over a few keys; each key guards a plain counter. With
// `force_contention`, the test holds every key until each thread's first lock has parked.
template <class Map>
void race_counters(Map& m, int threads, int iterations, int keys, bool force_contention = false) {
  std::vector<std::string> names;
  for (int k = 0; k < keys; ++k) names.push_back(object_key(k));
  std::vector<padded_counter> counters(keys);
  typename Map::multi_guard held;
  if (force_contention) held = m.lock_all(names);
  std::vector<std::thread> pool;
  start_gate gate(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      gate.arrive_and_wait();
      std::minstd_rand rng(t + 1);
      for (int i = 0; i < iterations; ++i) {
        const int k = static_cast<int>(rng() % keys);
        switch (i % 4) {
          case 0:
          case 1: {
            auto g = m.lock(std::string_view(names[k]));
            ++counters[k].value;
            break;
          }
          case 2: {
            auto g = m.try_lock_for(names[k], std::chrono::hours(1));
            KMM_CHECK_IN_THREAD(g.owns_lock());
            ++counters[k].value;
            break;
          }
          default: {
            for (;;) {
              auto g = m.try_lock(names[k]);
              if (g) {
                ++counters[k].value;
                break;
              }
              std::this_thread::yield();
            }
          }
        }
      }
    });
  }
  if (force_contention) {
    wait_for_sleeps(m, static_cast<std::uint64_t>(threads));  // iteration 0 is a plain lock(): it parks
    held.unlock();
  }
  for (auto& th : pool) th.join();
  REQUIRE(thread_failures.exchange(0) == 0);
  long total = 0;
  for (auto& c : counters) total += c.value;
  REQUIRE(total == static_cast<long>(threads) * iterations);
  REQUIRE(m.size() == 0);
}

TEST_CASE("race: plain per-key counters come out exact", "[concurrency]") {
  SECTION("default shards") {
    // Counts must be exact. Contention is forced, not hoped for: all 8 threads park on held keys
    // before any key is free, so at least their 8 first acquisitions were contended.
    string_map m;
    race_counters(m, 8, 4000, 3, true);
    auto c = m.counters();
    REQUIRE(c.acquisitions == 8u * 4000u + 3u);  // + the test's own hold of the 3 keys
    REQUIRE(c.contended_acquisitions >= 8u);
    REQUIRE(c.contended_acquisitions <= c.acquisitions);
  }
  SECTION("one shard") {
    string_map m(noclobber::keyed_mutex_map_options{1});
    race_counters(m, 6, 3000, 5);
  }
  SECTION("every key colliding in one chain") {
    noclobber::keyed_mutex_map<std::string, colliding_hash, std::equal_to<>> m;
    race_counters(m, 6, 3000, 5);
  }
}

TEST_CASE("race: readers see no torn writes under shared mode", "[concurrency]") {
  string_map m;
  padded_counter a, b;  // invariant under the key: a == b
  std::atomic<long> reads{0};
  std::vector<std::thread> pool;
  start_gate gate(6);
  for (int t = 0; t < 6; ++t) {
    pool.emplace_back([&, t] {
      gate.arrive_and_wait();
      for (int i = 0; i < 3000; ++i) {
        if ((i + t) % 3 == 0) {
          auto g = m.lock("pair");
          ++a.value;
          ++b.value;
        } else {
          auto g = (i % 2) ? m.lock_shared("pair") : m.try_lock_shared_for("pair", std::chrono::hours(1));
          KMM_CHECK_IN_THREAD(g.owns_lock());
          KMM_CHECK_IN_THREAD(a.value == b.value);
          reads.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  REQUIRE(thread_failures.exchange(0) == 0);
  REQUIRE(a.value == 6000);
  REQUIRE(reads.load() == 12000);
  REQUIRE(m.size() == 0);
}

TEST_CASE("race: random multi-key sets finish without deadlock and stay exact", "[concurrency]") {
  constexpr int keys = 12;
  for (std::size_t shards : {std::size_t{1}, std::size_t{4}, std::size_t{4096}}) {
    string_map m(noclobber::keyed_mutex_map_options{shards});
    std::vector<std::string> names;
    for (int k = 0; k < keys; ++k) names.push_back(object_key(k));
    std::vector<padded_counter> counters(keys);
    std::vector<long> expected_per_thread(keys * 6, 0);
    std::vector<std::thread> pool;
    start_gate gate(6);
    for (int t = 0; t < 6; ++t) {
      pool.emplace_back([&, t] {
        gate.arrive_and_wait();
        std::minstd_rand rng(100 + t);
        std::vector<std::string_view> set;
        std::vector<int> idx;
        for (int i = 0; i < 1500; ++i) {
          set.clear();
          idx.clear();
          const int n = 1 + static_cast<int>(rng() % 5);
          for (int j = 0; j < n; ++j) idx.push_back(static_cast<int>(rng() % keys));  // duplicates on purpose
          for (int k : idx) set.push_back(names[k]);
          auto bump = [&] {
            std::vector<bool> seen(keys, false);
            for (int k : idx) {
              if (seen[k]) continue;
              seen[k] = true;
              ++counters[k].value;
              ++expected_per_thread[t * keys + k];
            }
          };
          if (i % 3 == 0) {
            auto g = m.try_lock_all_for(std::span<const std::string_view>(set), std::chrono::hours(1));
            KMM_CHECK_IN_THREAD(g.owns_lock());
            bump();
          } else if (i % 3 == 1) {
            auto g = m.try_lock_all(std::span<const std::string_view>(set));
            if (g) bump();
          } else {
            auto g = m.lock_all(std::span<const std::string_view>(set));
            bump();
          }
          // Also mix in single-key locks, which must order against the multi-key ones.
          auto single = m.lock(names[rng() % keys]);
        }
      });
    }
    for (auto& th : pool) th.join();
    REQUIRE(thread_failures.exchange(0) == 0);
    REQUIRE(thread_failures.exchange(0) == 0);
    for (int k = 0; k < keys; ++k) {
      long expected = 0;
      for (int t = 0; t < 6; ++t) expected += expected_per_thread[t * keys + k];
      REQUIRE(counters[k].value == expected);
    }
    REQUIRE(m.size() == 0);
  }
}

TEST_CASE("race: a dead shard head reached through a stale shard word is unlinked from its own chain",
          "[concurrency]") {
  // A locker that finds its shard's only entry dead (another key's) claims it and swaps in its own
  // entry with one CAS on the shard word it read. Between that read and the claim, the dead entry
  // can be replaced by another thread, recycled, reused for a key of another shard and die there:
  // the claim then succeeds on an entry of another chain, the CAS fails, and the entry must be
  // unlinked from the chain of the shard its hash names (unlinking it from the caller's chain
  // walked off that chain's end: SEGV). Few keys over few shards, all dying between locks, keep
  // that window busy; the counters only come out exact if every lock excluded.
  constexpr int keys = 4;
  constexpr int threads = 8;  // more threads than cores: preempted inside the window too
  constexpr int rounds = 200000;
  for (std::size_t shards : {std::size_t{2}, std::size_t{4}}) {
    string_map m(noclobber::keyed_mutex_map_options{shards});
    std::vector<std::string> names;
    for (int k = 0; k < keys; ++k) names.push_back("k" + std::to_string(k));
    std::vector<padded_counter> counters(keys);
    std::vector<long> expected(keys * threads, 0);
    std::vector<std::thread> pool;
    start_gate gate(threads);
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        gate.arrive_and_wait();
        std::minstd_rand rng(7 + t);
        for (int i = 0; i < rounds; ++i) {
          const int k = static_cast<int>(rng() % keys);
          auto g = (i % 2 == 0) ? m.lock(names[k]) : m.try_lock(names[k]);
          if (!g) continue;
          ++counters[k].value;
          ++expected[t * keys + k];
        }
      });
    }
    for (auto& th : pool) th.join();
    REQUIRE(thread_failures.exchange(0) == 0);
    for (int k = 0; k < keys; ++k) {
      long sum = 0;
      for (int t = 0; t < threads; ++t) sum += expected[t * keys + k];
      REQUIRE(counters[k].value == sum);
    }
    REQUIRE(m.size() == 0);
  }
}

TEST_CASE("a guard may be released on another thread", "[concurrency]") {
  string_map m;
  constexpr int rounds = 2000;
  padded_counter counter;
  std::atomic<bool> stop{false};
  // A contender keeps the key busy so the hand-off crosses the slow path too.
  std::thread contender([&] {
    while (!stop.load()) {
      auto g = m.lock("k");
      ++counter.value;
    }
  });
  long mine = 0;
  for (int i = 0; i < rounds; ++i) {
    auto g = m.lock("k");
    ++counter.value;
    ++mine;
    std::thread([g = std::move(g)]() mutable { g.unlock(); }).join();
  }
  stop = true;
  contender.join();
  REQUIRE(mine == rounds);
  REQUIRE(m.size() == 0);
  REQUIRE(m.counters().acquisitions == static_cast<std::uint64_t>(counter.value));
}

namespace {
// Constructed before the thread first uses a map, so it is destroyed after the thread's entry cache.
struct late_user {
  string_map* map = nullptr;
  std::atomic<int>* locked = nullptr;
  ~late_user() {
    if (map == nullptr) return;
    auto g = map->lock("late");
    auto all = map->lock_all({std::string_view("late-a"), std::string_view("late-b")});
    if (g && all) locked->fetch_add(1);
  }
};
}  // namespace

TEST_CASE("a thread_local destructor may lock after the thread's cache is gone") {
  string_map m;
  std::atomic<int> locked{0};
  std::thread([&] {
    thread_local late_user user;
    user.map = &m;
    user.locked = &locked;
    auto g = m.lock("early");  // first use: the cache is built now, after `user`
  }).join();
  REQUIRE(locked.load() == 1);
  REQUIRE(m.size() == 0);
  REQUIRE(m.counters().acquisitions == 4);  // early, late, late-a, late-b
}

TEST_CASE("whatever is thrown, nothing stays held and size() returns to 0", "[concurrency]") {
  SECTION("caller code throws while holding the guard") {
    string_map m;
    for (int i = 0; i < 100; ++i) {
      try {
        auto g = m.lock(object_key(i % 3));
        throw std::runtime_error("user code failed");
      } catch (const std::runtime_error&) {
      }
    }
    REQUIRE(m.size() == 0);
  }
  SECTION("KeyEqual throws under the shard lock, with waiters around") {
    noclobber::keyed_mutex_map<std::string, colliding_hash, throwing_equal> m;
    auto held = m.lock("a");                            // chain non-empty: the next lock compares keys
    std::thread waiter([&] { auto g = m.lock("a"); });  // parks on "a"
    wait_for_sleeps(m, 1);                              // parked: the throws below happen with a waiter
    throwing_equal::armed = true;
    REQUIRE_THROWS_AS(m.lock("b"), std::runtime_error);
    REQUIRE_THROWS_AS(m.try_lock_for("a", 1ms), std::runtime_error);
    REQUIRE_THROWS_AS(m.lock_all({std::string_view("x"), std::string_view("y")}), std::runtime_error);
    throwing_equal::armed = false;
    held.unlock();
    waiter.join();
    REQUIRE(m.size() == 0);
    auto again = m.try_lock("b");  // the shard is usable after the throw
    REQUIRE(again.owns_lock());
  }
}

TEST_CASE("entries retired and re-created concurrently are never used after reuse", "[concurrency]") {
  // Many threads churn a few keys with try_lock/lock/timed locks so entries are retired, recycled
  // through thread caches and re-created while others still wait: ASan/TSan catch any reuse bug.
  noclobber::keyed_mutex_map<std::string, noclobber::string_hash, std::equal_to<>> m(
      noclobber::keyed_mutex_map_options{2});
  std::vector<std::string> names{"x", "y", "z", "w"};
  std::vector<padded_counter> counters(names.size());
  std::atomic<long> done{0};
  std::vector<std::thread> pool;
  start_gate gate(8);
  for (int t = 0; t < 8; ++t) {
    pool.emplace_back([&, t] {
      gate.arrive_and_wait();
      std::minstd_rand rng(7 * t + 3);
      for (int i = 0; i < 3000; ++i) {
        const std::size_t k = rng() % names.size();
        string_map::guard g;
        switch (rng() % 3) {
          case 0:
            g = m.lock(names[k]);
            break;
          case 1:
            g = m.try_lock(names[k]);
            break;
          default:
            g = m.try_lock_for(names[k], std::chrono::microseconds(rng() % 50));
            break;
        }
        if (g) {
          ++counters[k].value;
          done.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  REQUIRE(thread_failures.exchange(0) == 0);
  long total = 0;
  for (auto& c : counters) total += c.value;
  REQUIRE(total == done.load());
  REQUIRE(m.size() == 0);
  REQUIRE(m.counters().acquisitions == static_cast<std::uint64_t>(total));
}

// ---- regression tests for what tests/fuzz/fuzz_keyed_mutex_map found ---------------------------

TEST_CASE("a failed try_lock_all counts no acquisitions, even for the shards it took first") {
  // try_lock_all takes its keys shard by shard; when a later shard's key was held it released the
  // earlier ones but had already counted them ("failed tries are not counted").
  noclobber::keyed_mutex_map<int> m(noclobber::keyed_mutex_map_options{64});
  const std::vector<int> keys = {0, 1, 2, 3, 4, 5, 6, 7};
  std::uint64_t expected = 0;
  for (int held_key : keys) {  // whichever shard the held key lands in, some keys come before it
    auto held = m.lock(held_key);
    ++expected;
    REQUIRE_FALSE(m.try_lock_all(keys).owns_lock());
    REQUIRE_FALSE(m.try_lock_all_for(keys, 1ms).owns_lock());
    REQUIRE(m.counters().acquisitions == expected);
    REQUIRE(m.size() == 1);
  }
  auto all = m.try_lock_all(keys);
  REQUIRE(all.owns_lock());
  REQUIRE(m.counters().acquisitions == expected + keys.size());
}

namespace {
// A forward range whose elements are prvalues (like a transform view): object_key(first … last).
// (Hand-written: clang 14 cannot compile libstdc++ 12's views.)
struct generated_keys {
  struct iterator {
    using value_type = std::string;
    using difference_type = std::ptrdiff_t;
    int i = 0;
    std::string operator*() const { return object_key(i); }
    iterator& operator++() {
      ++i;
      return *this;
    }
    iterator operator++(int) { return {i++}; }
    bool operator==(const iterator&) const = default;
  };
  int first = 0, last = 0;
  iterator begin() const { return {first}; }
  iterator end() const { return {last}; }
};
static_assert(std::ranges::forward_range<generated_keys>);

// A single-pass range whose elements are lvalues that change under it: every word of a stream.
struct words_of {
  std::istream& in;
  std::istream_iterator<std::string> begin() const { return std::istream_iterator<std::string>(in); }
  std::istream_iterator<std::string> end() const { return {}; }
};
static_assert(std::ranges::input_range<words_of> && !std::ranges::forward_range<words_of>);

template <class Map, class Arg>
concept can_lock_all = requires(Map& map, const Arg& arg) {
  map.lock_all(arg);
};
}  // namespace

TEST_CASE("multi-key: any input range of keys, braced lists, keys converted to Key") {
  string_map m;
  SECTION("containers and views, folded") {
    const std::array<std::string_view, 3> arr{"a", "b", "a"};
    auto g1 = m.lock_all(arr);
    REQUIRE(g1.size() == 2);
    g1.unlock();
    const std::vector<std::string> vec{"c", "d"};
    auto g2 = m.try_lock_all(std::span<const std::string>(vec));
    REQUIRE(g2.size() == 2);
    g2.unlock();
    // prvalue elements (a transform view) are copied first, so nothing points at a temporary
    auto g3 = m.try_lock_all_for(generated_keys{0, 5}, 1s);
    REQUIRE(g3.size() == 5);
    REQUIRE_FALSE(m.try_lock(object_key(3)).owns_lock());
    g3.unlock();
    auto g4 = m.lock_all({"p", "q", "p"});  // braced list of const char*
    REQUIRE(g4.size() == 2);
    REQUIRE(m.size() == 2);
  }
  SECTION("a single-pass range: every key is kept, not just the last one read") {
    std::istringstream words("w1 w2 w1 w3");
    auto g = m.lock_all(words_of{words});
    REQUIRE(g.size() == 3);
    REQUIRE_FALSE(m.try_lock("w1").owns_lock());
    REQUIRE_FALSE(m.try_lock("w2").owns_lock());
    REQUIRE_FALSE(m.try_lock("w3").owns_lock());
  }
  SECTION("elements that convert to Key, on maps without a transparent hash") {
    noclobber::keyed_mutex_map<std::string> plain;
    const std::vector<const char*> names{"x", "y", "x"};
    auto g = plain.lock_all(names);
    REQUIRE(g.size() == 2);
    REQUIRE_FALSE(plain.try_lock(std::string("y")).owns_lock());
    noclobber::keyed_mutex_map<int> ints;
    const std::vector<long> numbers{1, 2, 3};
    auto h = ints.try_lock_all(numbers);
    REQUIRE(h.size() == 3);
    REQUIRE_FALSE(ints.try_lock(2).owns_lock());
  }
  REQUIRE(m.size() == 0);
  // A string key is a range of characters, not a list of keys: lock_all(s) does not compile.
  STATIC_REQUIRE_FALSE(can_lock_all<string_map, std::string>);
  STATIC_REQUIRE_FALSE(can_lock_all<noclobber::keyed_mutex_map<std::string>, std::string>);
  STATIC_REQUIRE(can_lock_all<string_map, std::vector<std::string>>);
}

TEST_CASE("timeouts and deadlines of any length saturate: max() waits without limit, min() gives up",
          "[concurrency]") {
  string_map m;
  // Each timed call below waits for a key held by another thread, which lets go only once the
  // caller has parked (the map counted its sleep) or has returned: a deadline that overflowed to
  // the past gives up before parking and fails the REQUIRE, whatever the scheduler does.
  auto wait_out = [&](auto&& timed_lock) {
    auto held = m.lock("k");
    const auto parked_before = m.counters().sleeps;
    std::atomic<bool> returned{false};
    std::thread releaser([&] {
      while (m.counters().sleeps == parked_before && !returned.load()) std::this_thread::sleep_for(1ms);
      held.unlock();
    });
    const bool got = static_cast<bool>(timed_lock());
    returned = true;
    releaser.join();
    return got;
  };
  REQUIRE(wait_out([&] { return m.try_lock_for("k", std::chrono::hours::max()); }));
  REQUIRE(wait_out([&] { return m.try_lock_for("k", std::chrono::milliseconds::max()); }));
  REQUIRE(wait_out([&] { return m.try_lock_for("k", std::chrono::duration<double>(std::nan(""))); }));
  REQUIRE(wait_out([&] { return m.try_lock_shared_for("k", std::chrono::seconds::max()); }));
  REQUIRE(wait_out([&] {
    return m.try_lock_until("k",
                            std::chrono::time_point<std::chrono::steady_clock, std::chrono::hours>::max());
  }));
  REQUIRE(wait_out([&] { return m.try_lock_until("k", std::chrono::system_clock::time_point::max()); }));
  REQUIRE(wait_out([&] {
    return m.try_lock_shared_until(
        "k", std::chrono::time_point<std::chrono::system_clock, std::chrono::hours>::max());
  }));
  REQUIRE(wait_out([&] {
    return m.try_lock_all_for(std::vector<std::string>{"k", "j"}, std::chrono::hours::max());
  }));
  REQUIRE(wait_out([&] {
    return m.try_lock_all_until({std::string_view("k")}, std::chrono::steady_clock::time_point::max());
  }));
  // The far past: one try, then give up (no overflow on the way).
  auto held = m.lock("k");
  REQUIRE_FALSE(m.try_lock_until("k", std::chrono::system_clock::time_point::min()).owns_lock());
  REQUIRE_FALSE(m.try_lock_until("k", std::chrono::steady_clock::time_point::min()).owns_lock());
  REQUIRE_FALSE(
      m.try_lock_until("k", std::chrono::time_point<std::chrono::system_clock, std::chrono::hours>::min())
          .owns_lock());
  REQUIRE_FALSE(m.try_lock_for("k", std::chrono::hours::min()).owns_lock());
  REQUIRE(m.size() == 1);
  held.unlock();
  REQUIRE(m.size() == 0);
}
