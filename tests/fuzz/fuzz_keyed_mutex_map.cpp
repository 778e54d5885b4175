// Fuzz target: keyed_mutex_map operation sequences against a model of who holds what.
//
// The input is a program over a few keys (string keys looked up as std::string, string_view and
// const char*, or int keys) on a map with 1, 2, 8 or 4096 shards (so keys share shard chains):
//   lock / try_lock / try_lock_for / try_lock_until (steady and system clock, zero, negative,
//   huge and max() timeouts), the shared forms, lock_all / try_lock_all / try_lock_all_for /
//   try_lock_all_until over key sets with duplicates (spans, ranges of converting elements), unlock, moving
//   guards (move-assign onto a held guard releases it), releasing a guard on another thread, and waiter
//   threads: a second thread blocks on a key the program holds (exclusive, shared or several keys; parked for
//   certain before the program goes on), then the program releases and the waiter must get the key.
// The main thread never blocks on a key the model says is taken. Checked after every step:
//   a try form succeeds exactly when the model says the key is free for its mode (writer
//   preference: no new shared holder while an exclusive waiter is parked); guards report their
//   keys; size() equals the number of keys held or waited on; counters().acquisitions equals the
//   model's count. At the end every guard is released: size() == 0.
//
// Library API under test (public header only): noclobber/keyed_mutex_map.hpp.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fuzz_support.hpp"
#include "noclobber/keyed_mutex_map.hpp"

namespace {

using namespace std::chrono;
constexpr int key_count = 5;

template <class Map>
struct program {
  using key_t = typename Map::key_type;
  using guard = typename Map::guard;
  using shared_guard = typename Map::shared_guard;
  using multi_guard = typename Map::multi_guard;

  enum class kind { exclusive, shared, multi };
  struct held {
    kind k = kind::exclusive;
    guard g;
    shared_guard sg;
    multi_guard mg;
    std::vector<int> keys;  // distinct, the keys this guard holds
  };

  Map& map;
  const std::vector<key_t>& keys;
  nc_fuzz::reader& in;
  std::vector<held> slots;
  int exclusive[key_count] = {};  // 0 or 1
  int shared[key_count] = {};     // shared holders
  std::uint64_t acquisitions = 0;

  std::string where(const char* what, int k) const {
    return std::string(what) + " key " + std::to_string(k) + " (exclusive " + std::to_string(exclusive[k]) +
           ", shared " + std::to_string(shared[k]) + ")";
  }

  bool free_for_exclusive(int k) const { return exclusive[k] == 0 && shared[k] == 0; }
  bool free_for_shared(int k) const { return exclusive[k] == 0; }

  void take(held&& h) {
    for (int k : h.keys) {
      if (h.k == kind::shared)
        ++shared[k];
      else
        exclusive[k] = 1;
      ++acquisitions;
    }
    slots.push_back(std::move(h));
  }
  void forget(const held& h) {
    for (int k : h.keys) {
      if (h.k == kind::shared)
        --shared[k];
      else
        exclusive[k] = 0;
    }
  }
  // Releases slot i in one of the ways a guard can be let go.
  void release(std::size_t i, std::uint8_t how) {
    held& h = slots[i];
    forget(h);
    switch (how % 3) {
      case 0:  // unlock()
        if (h.k == kind::exclusive)
          h.g.unlock();
        else if (h.k == kind::shared)
          h.sg.unlock();
        else
          h.mg.unlock();
        break;
      case 1: {  // move-assigning an empty guard releases
        if (h.k == kind::exclusive)
          h.g = guard();
        else if (h.k == kind::shared)
          h.sg = shared_guard();
        else
          h.mg = multi_guard();
        break;
      }
      default:
        break;  // destroyed with the slot
    }
    slots.erase(slots.begin() + static_cast<std::ptrdiff_t>(i));
  }

  // A timeout for a try on a key the model says is taken: it must fail, so keep it short.
  nanoseconds short_timeout() {
    switch (in.u8() % 4) {
      case 0:
        return nanoseconds(0);
      case 1:
        return -nanoseconds(in.edgy_i64() & 0x7fffffffffffffff);
      case 2:
        return microseconds(in.u8() % 50);
      default:
        return nanoseconds(in.u16());
    }
  }

  template <class K>
  guard try_exclusive(const K& key, bool may_block) {
    switch (in.u8() % 7) {
      case 0:
        return map.try_lock(key);
      case 1:
        return map.try_lock_for(key, short_timeout());
      case 2:
        return may_block ? map.try_lock_for(key, hours::max()) : map.try_lock(key);
      case 3:
        return map.try_lock_until(key, steady_clock::now() + short_timeout());
      case 4:
        return map.try_lock_until(
            key, may_block ? system_clock::time_point::max() : system_clock::time_point::min());
      case 5:
        return map.try_lock_until(
            key, may_block ? steady_clock::time_point::max() : steady_clock::time_point::min());
      default:
        return may_block ? map.try_lock_for(key, duration<double>(in.f64())) : map.try_lock(key);
    }
  }
  template <class K>
  shared_guard try_shared(const K& key, bool may_block) {
    switch (in.u8() % 4) {
      case 0:
        return map.try_lock_shared(key);
      case 1:
        return map.try_lock_shared_for(key, short_timeout());
      case 2:
        return may_block ? map.try_lock_shared_for(key, seconds::max()) : map.try_lock_shared(key);
      default:
        return map.try_lock_shared_until(
            key, may_block ? system_clock::time_point::max() : system_clock::now() + short_timeout());
    }
  }

  // The key as the map is asked for it: the key itself, or (strings) a string_view / const char*.
  template <class F>
  auto with_key(int k, F&& f) {
    if constexpr (std::is_same_v<key_t, std::string>) {
      switch (in.u8() % 3) {
        case 0:
          return f(keys[k]);
        case 1:
          return f(std::string_view(keys[k]));
        default:
          return f(keys[k].c_str());
      }
    } else {
      return f(keys[k]);
    }
  }

  void check_guard_key(const key_t& got, int k) {
    NC_FUZZ_CHECK(got == keys[k], "guard reports another key");
  }

  void op_exclusive() {
    const int k = static_cast<int>(in.u8() % key_count);
    const bool is_free = free_for_exclusive(k);
    const bool blocking = in.u8() % 2 == 0;
    held h;
    h.k = kind::exclusive;
    h.g = with_key(k, [&](const auto& key) {
      return blocking && is_free ? map.lock(key) : try_exclusive(key, is_free);
    });
    NC_FUZZ_CHECK(h.g.owns_lock() == is_free, where("exclusive try", k));
    if (!h.g) return;
    check_guard_key(h.g.key(), k);
    h.keys = {k};
    take(std::move(h));
  }

  void op_shared() {
    const int k = static_cast<int>(in.u8() % key_count);
    const bool is_free = free_for_shared(k);
    const bool blocking = in.u8() % 2 == 0;
    held h;
    h.k = kind::shared;
    h.sg = with_key(k, [&](const auto& key) {
      return blocking && is_free ? map.lock_shared(key) : try_shared(key, is_free);
    });
    NC_FUZZ_CHECK(h.sg.owns_lock() == is_free, where("shared try", k));
    if (!h.sg) return;
    check_guard_key(h.sg.key(), k);
    h.keys = {k};
    take(std::move(h));
  }

  void op_multi() {
    const std::uint8_t mask = in.u8();
    std::vector<key_t> list;
    std::set<int> distinct;
    for (int k = 0; k < key_count; ++k) {
      if (mask & (1u << k)) {
        list.push_back(keys[k]);
        distinct.insert(k);
      }
    }
    if ((mask & 0x80) && !list.empty()) list.push_back(list.front());  // a duplicate is folded
    if (mask & 0x40) std::reverse(list.begin(), list.end());
    bool all_free = true;
    for (int k : distinct) all_free = all_free && free_for_exclusive(k);
    const std::span<const key_t> span(list);
    held h;
    h.k = kind::multi;
    switch (in.u8() % 6) {
      case 0:
        h.mg = all_free ? map.lock_all(span) : map.try_lock_all(span);
        break;
      case 1:
        h.mg = map.try_lock_all(span);
        break;
      case 2:
        h.mg = map.try_lock_all_for(span, all_free ? nanoseconds(in.edgy_i64()) : short_timeout());
        break;
      case 3:
        h.mg = map.try_lock_all_until(span, all_free && in.flag() ? system_clock::time_point::max()
                                                                  : system_clock::now() + short_timeout());
        break;
      case 4: {
        // Another range type, whose elements convert to (or are looked up as) the key type.
        auto other = [&] {
          if constexpr (std::is_same_v<key_t, std::string>)
            return std::vector<std::string_view>(list.begin(), list.end());
          else
            return std::vector<long>(list.begin(), list.end());
        }();
        h.mg = map.try_lock_all_until(
            other, all_free ? steady_clock::time_point::max() : steady_clock::time_point::min());
        break;
      }
      default:
        if (list.size() >= 2 && all_free)
          h.mg = map.lock_all(list[0], list[1]);  // the variadic form (possibly the same key twice)
        else
          h.mg = map.try_lock_all(span);
        if (list.size() >= 2 && all_free) {
          distinct.clear();
          for (int k = 0; k < key_count; ++k)
            if (keys[k] == list[0] || keys[k] == list[1]) distinct.insert(k);
        }
    }
    NC_FUZZ_CHECK(h.mg.owns_lock() == all_free, "try_lock_all mask " + std::to_string(mask));
    if (!h.mg) return;
    NC_FUZZ_CHECK(h.mg.size() == distinct.size(), "multi_guard size");
    std::set<int> reported;
    for (std::size_t i = 0; i < h.mg.size(); ++i) {
      for (int k = 0; k < key_count; ++k)
        if (h.mg.key(i) == keys[k]) reported.insert(k);
    }
    NC_FUZZ_CHECK(reported == distinct, "multi_guard keys");
    bool threw = false;
    try {
      (void)h.mg.key(h.mg.size());
    } catch (const std::out_of_range&) {
      threw = true;
    }
    NC_FUZZ_CHECK(threw, "multi_guard::key past the end");
    h.keys.assign(distinct.begin(), distinct.end());
    take(std::move(h));
  }

  void op_release() {
    if (slots.empty()) return;
    const std::size_t i = in.u8() % slots.size();
    release(i, in.u8());
  }

  // Moves guard i onto guard j (j's keys are released by the assignment), or into a new slot.
  void op_move() {
    if (slots.empty()) return;
    const std::size_t i = in.u8() % slots.size();
    const std::size_t j = in.u8() % slots.size();
    if (i == j || slots[i].k != slots[j].k) {
      held moved;
      moved.k = slots[i].k;
      moved.g = std::move(slots[i].g);
      moved.sg = std::move(slots[i].sg);
      moved.mg = std::move(slots[i].mg);
      moved.keys = slots[i].keys;
      NC_FUZZ_CHECK(!slots[i].g && !slots[i].sg && !slots[i].mg, "a moved-from guard owns a lock");
      slots.erase(slots.begin() + static_cast<std::ptrdiff_t>(i));
      slots.push_back(std::move(moved));
      return;
    }
    forget(slots[j]);
    if (slots[i].k == kind::exclusive)
      slots[j].g = std::move(slots[i].g);
    else if (slots[i].k == kind::shared)
      slots[j].sg = std::move(slots[i].sg);
    else
      slots[j].mg = std::move(slots[i].mg);
    slots[j].keys = slots[i].keys;
    slots.erase(slots.begin() + static_cast<std::ptrdiff_t>(i));
  }

  // Releases a guard on another thread (entries go to that thread's cache, then to the pool).
  void op_release_elsewhere() {
    if (slots.empty()) return;
    const std::size_t i = in.u8() % slots.size();
    held h = std::move(slots[i]);
    slots.erase(slots.begin() + static_cast<std::ptrdiff_t>(i));
    forget(h);
    std::thread t([h = std::move(h)]() mutable {
      h.g = guard();
      h.sg = shared_guard();
      h.mg = multi_guard();
    });
    t.join();
  }

  // Waits (bounded) until the waiter thread has parked: counters().sleeps moved past `before`.
  bool parked(std::uint64_t before, const std::atomic<bool>& done) const {
    for (int i = 0; i < 200000; ++i) {
      if (map.counters().sleeps > before) return true;
      if (done.load()) return false;
      std::this_thread::yield();
    }
    return false;
  }

  // A second thread blocks on keys the program holds; the program releases them; the waiter must
  // get them, and its guard comes back to the program.
  void op_waiter() {
    const std::uint8_t how = in.u8();
    const int k = static_cast<int>(in.u8() % key_count);
    const int k2 = static_cast<int>(in.u8() % key_count);
    const int mode = how % 3;  // 0 exclusive, 1 shared, 2 two keys exclusively
    const bool blocked =
        mode == 1 ? !free_for_shared(k) : !free_for_exclusive(k) || (mode == 2 && !free_for_exclusive(k2));
    if (!blocked) return;  // nothing to wait for
    const std::uint64_t sleeps_before = map.counters().sleeps;
    std::atomic<bool> done{false};
    held got;
    got.k = mode == 0 ? kind::exclusive : mode == 1 ? kind::shared : kind::multi;
    const bool timed = (how & 0x10) != 0;
    std::thread waiter([&] {
      if (mode == 0)
        got.g = timed ? map.try_lock_for(keys[k], hours(1)) : map.lock(keys[k]);
      else if (mode == 1)
        got.sg = timed ? map.try_lock_shared_for(keys[k], hours(1)) : map.lock_shared(keys[k]);
      else
        got.mg = map.lock_all(keys[k], keys[k2]);
      done.store(true);
    });
    const bool is_parked = parked(sleeps_before, done);
    NC_FUZZ_CHECK(is_parked, "the waiter neither parked nor finished while its key was held");
    NC_FUZZ_CHECK(!done.load(), "the waiter got a key the program holds");
    // Writer preference: with an exclusive waiter parked on k, no new shared holder gets k.
    if (mode == 0 && shared[k] > 0 && exclusive[k] == 0) {
      shared_guard s = map.try_lock_shared(keys[k]);
      NC_FUZZ_CHECK(!s, "a shared lock jumped a parked exclusive waiter");
    }
    // Release whatever stands in the waiter's way (in the order the program chose).
    std::vector<int> wanted = {k};
    if (mode == 2) wanted.push_back(k2);
    for (std::size_t i = slots.size(); i-- > 0;) {
      bool blocks = false;
      for (int w : wanted) {
        for (int hk : slots[i].keys) {
          if (hk == w && (mode != 1 || slots[i].k != kind::shared)) blocks = true;
        }
      }
      if (blocks) release(i, in.u8());
    }
    waiter.join();
    NC_FUZZ_CHECK(done.load(), "waiter did not finish");
    std::set<int> distinct(wanted.begin(), wanted.end());
    got.keys.assign(distinct.begin(), distinct.end());
    const bool owns = got.k == kind::exclusive ? got.g.owns_lock()
                      : got.k == kind::shared  ? got.sg.owns_lock()
                                               : got.mg.owns_lock();
    NC_FUZZ_CHECK(owns, "the waiter did not get the keys once they were released");
    take(std::move(got));
  }

  void check_observations() {
    std::size_t held_keys = 0;
    for (int k = 0; k < key_count; ++k) {
      NC_FUZZ_CHECK(exclusive[k] == 0 || shared[k] == 0, "model: exclusive and shared at once");
      if (exclusive[k] != 0 || shared[k] != 0) ++held_keys;
    }
    NC_FUZZ_CHECK(map.size() == held_keys,
                  "size() " + std::to_string(map.size()) + " != keys held " + std::to_string(held_keys));
    const auto c = map.counters();
    NC_FUZZ_CHECK(c.acquisitions == acquisitions, "acquisitions " + std::to_string(c.acquisitions) +
                                                      " != model " + std::to_string(acquisitions));
    NC_FUZZ_CHECK(c.contended_acquisitions <= c.acquisitions, "contended > acquisitions");
  }

  void run() {
    while (!in.empty()) {
      switch (in.u8() % 16) {
        case 0:
        case 1:
        case 2:
          op_exclusive();
          break;
        case 3:
        case 4:
          op_shared();
          break;
        case 5:
        case 6:
          op_multi();
          break;
        case 7:
        case 8:
        case 9:
          op_release();
          break;
        case 10:
          op_move();
          break;
        case 11:
          op_release_elsewhere();
          break;
        case 12:
          op_waiter();
          break;
        default:
          break;
      }
      check_observations();
    }
    while (!slots.empty()) release(slots.size() - 1, 0);
    check_observations();
    NC_FUZZ_CHECK(map.size() == 0, "entries left after every guard was released");
  }
};

void check_empty_guard_errors() {
  noclobber::keyed_mutex_map<int> m(noclobber::keyed_mutex_map_options{1});
  noclobber::keyed_mutex_map<int>::guard g;
  int refused = 0;
  try {
    g.unlock();
  } catch (const std::logic_error&) {
    ++refused;
  }
  try {
    (void)g.key();
  } catch (const std::logic_error&) {
    ++refused;
  }
  try {
    g.assert_held();
  } catch (const std::logic_error&) {
    ++refused;
  }
  NC_FUZZ_CHECK(refused == 3, "an empty guard did not refuse unlock / key / assert_held");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nc_fuzz::reader in(data, size);
  const std::uint8_t setup = in.u8();
  static const std::size_t shard_counts[] = {1, 2, 8, 4096, 0, 3};
  const std::size_t shards = shard_counts[setup % 6];
  const bool valid = shards != 0 && (shards & (shards - 1)) == 0;
  if (!valid) {
    bool threw = false;
    try {
      noclobber::keyed_mutex_map<int> m(noclobber::keyed_mutex_map_options{shards});
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    NC_FUZZ_CHECK(threw, "shard_count " + std::to_string(shards) + " accepted");
    check_empty_guard_errors();
    return 0;
  }
  if ((setup & 0x80) == 0) {
    using map_t = noclobber::keyed_mutex_map<std::string, noclobber::string_hash, std::equal_to<>>;
    map_t map(noclobber::keyed_mutex_map_options{shards});
    // Short and long keys (a long one does not fit the small-string buffer).
    const std::vector<std::string> keys = {"a", "b", "", "tenant-7/db.sqlite", std::string(40, 'x')};
    program<map_t> p{map, keys, in, {}};
    p.run();
  } else {
    using map_t = noclobber::keyed_mutex_map<int>;
    map_t map(noclobber::keyed_mutex_map_options{shards});
    const std::vector<int> keys = {0, 1, -1, 4096, 1 << 30};
    program<map_t> p{map, keys, in, {}};
    p.run();
  }
  return 0;
}
