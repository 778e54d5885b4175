// keyed_async_mutex::try_lock (and try_lock_shared, try_lock_all's per-key work) allocates nothing
// once the shards have reusable map nodes: this program counts every allocation per thread
// (tests/allocation_counter.hpp) around loops that run after a warm-up.
#include <noclobber/asio/keyed_async_mutex.hpp>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "allocation_counter.hpp"
#include "object_keys.hpp"

TEST_CASE("async mutex: the counter sees allocations (the test can fail)") {
  const long before = allocations_on_this_thread;
  auto* p = new std::string(100, 'x');
  delete p;
  REQUIRE(allocations_on_this_thread - before == 2);
}

TEST_CASE("try_lock and try_lock_shared allocate nothing once map nodes are reused") {
  noclobber::keyed_async_mutex<std::string> m(8);
  const auto keys = object_keys(64);
  auto round = [&] {
    for (const auto& k : keys) {
      auto g = m.try_lock(k);
      auto busy = m.try_lock(k);  // fails: held
      auto busy_shared = m.try_lock_shared(k);
    }
    for (const auto& k : keys) {
      auto r1 = m.try_lock_shared(k);
      auto r2 = m.try_lock_shared(k);
      auto w = m.try_lock(k);  // fails: held shared
    }
    // Many keys live at once: the shards' high-water mark.
    std::vector<noclobber::keyed_async_mutex<std::string>::guard> all;
    all.reserve(keys.size());
    for (const auto& k : keys) all.push_back(m.try_lock(k));
  };
  round();  // warm-up: map nodes, bucket arrays and key buffers come into existence once
  round();
  const long before = allocations_on_this_thread;
  for (int i = 0; i < 20; ++i) {
    for (const auto& k : keys) {
      auto g = m.try_lock(k);
      auto busy = m.try_lock(k);
    }
    for (const auto& k : keys) {
      auto r = m.try_lock_shared(k);
      auto r2 = m.try_lock_shared(k);
    }
  }
  const long steady = allocations_on_this_thread - before;
  REQUIRE(steady == 0);
  REQUIRE(m.entry_count() == 0);
}

TEST_CASE("a shard growing to more live keys does allocate (the test can fail)") {
  // Keys live at once beyond the shards' high-water mark need new map nodes: the counter sees the
  // map's allocations, so the zero above is not the counter missing them.
  noclobber::keyed_async_mutex<std::string> m(8);
  const auto keys = object_keys(64);
  std::vector<noclobber::keyed_async_mutex<std::string>::guard> all;
  all.reserve(keys.size());
  const long before = allocations_on_this_thread;
  for (const auto& k : keys) all.push_back(m.try_lock(k));
  REQUIRE(allocations_on_this_thread - before >= static_cast<long>(keys.size()));
  all.clear();
  REQUIRE(m.entry_count() == 0);
}
