// keyed_mutex_map: races inside its lock-free windows, forced deterministically. This program
// defines the core's test seam, NOCLOBBER_KMM_TEST_WINDOW(point), before its first include: a
// thread armed here stops at the named point until the test lets it go, so another thread can
// change the map exactly where a preemption would.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <string_view>

namespace window {

inline thread_local bool armed = false;  // only the armed thread stops or counts
inline std::latch* at_window = nullptr;  // counted down when the armed thread reaches `stop_at`
inline std::latch* go = nullptr;         // the armed thread waits on it there
inline std::string_view stop_at;
inline std::atomic<int> passed_lost{0};  // times the armed thread lost the CAS of replace_dead_head

inline void reached(std::string_view point) {
  if (!armed) return;
  if (point == "replace_dead_head_lost") passed_lost.fetch_add(1);
  if (point != stop_at) return;
  stop_at = {};  // stop once
  at_window->count_down();
  go->wait();
}

}  // namespace window

#define NOCLOBBER_KMM_TEST_WINDOW(point) ::window::reached(#point)

#include <noclobber/keyed_mutex_map.hpp>

#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

// Key "<n>" hashes to n, so the test can place keys in shards.
struct numbered_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view k) const {
    return static_cast<std::size_t>(std::stoul(std::string(k)));
  }
};
using numbered_map = noclobber::keyed_mutex_map<std::string, numbered_hash, std::equal_to<>>;

// The shard of hash `h` among 2, as keyed_mutex_map/shards.hpp picks it (Fibonacci mixing, top
// bit). If that changes, the test fails on its check that the window was reached, not silently.
int shard_of_two(std::size_t h) {
  return static_cast<int>((static_cast<std::uint64_t>(h) * 0x9E3779B97F4A7C15ull) >> 63);
}

}  // namespace

TEST_CASE("window: a dead shard head claimed through a stale shard word is unlinked from its own chain",
          "[concurrency]") {
  // Thread A reads shard S's word: its only entry E is key x's, dead. A stops before claiming E.
  // Meanwhile B locks z (in S): it replaces E (recycled into B's cache) and unlocks z; then B locks y
  // (the other shard, empty): E, taken from B's cache, now heads that shard, and dies there when B
  // unlocks y. A resumes: its claim of E succeeds, its CAS on S's word fails, and E must be
  // unlinked from the chain of the shard y names. Unlinking it from S's chain (the bug) walked off
  // that chain's end: SEGV.
  std::vector<std::string> in_s, in_other;
  for (std::size_t n = 1; in_s.size() < 3 || in_other.empty(); ++n)
    (shard_of_two(n) == shard_of_two(1) ? in_s : in_other).push_back(std::to_string(n));
  const std::string x = in_s[0], w = in_s[1], z = in_s[2], y = in_other[0];

  numbered_map m(noclobber::keyed_mutex_map_options{2});
  { auto g = m.lock(x); }  // E: x's entry, dead, the only one in S
  REQUIRE(m.size() == 0);

  std::latch at_window(1), go(1);
  window::at_window = &at_window;
  window::go = &go;
  window::stop_at = "replace_dead_head";
  window::passed_lost = 0;
  bool a_held = false;
  std::thread a([&] {
    window::armed = true;
    auto g = m.lock(w);  // stops in replace_dead_head, then finishes through the shard lock
    a_held = g.owns_lock();
    window::armed = false;
  });
  at_window.wait();
  { auto g = m.lock(z); }  // replaces E; E goes into this thread's cache
  { auto g = m.lock(y); }  // E (the cache's last entry) heads the other shard, then dies there
  go.count_down();
  a.join();

  REQUIRE(window::passed_lost.load() == 1);  // A took the path under test
  REQUIRE(a_held);
  REQUIRE(m.size() == 0);
  // Both chains are whole: every key locks, alone and together, and nothing stays live.
  for (const std::string& k : {x, w, z, y}) {
    auto g = m.try_lock(k);
    REQUIRE(g.owns_lock());
  }
  {
    auto all = m.try_lock_all({x, w, z, y});
    REQUIRE(all.owns_lock());
    REQUIRE(m.size() == 4);
  }
  REQUIRE(m.size() == 0);
}
