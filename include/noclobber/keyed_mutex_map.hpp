// noclobber/keyed_mutex_map.hpp — one lock per key, created on demand and freed when unused.
//
// Overview
// --------
// A read-modify-write against a shared store (download, edit, conditional put) loses updates when two
// writers start from the same version. Conditional writes catch that across processes; inside one
// process it is cheaper to make writers of the same key queue behind a per-key lock than to let them
// race and burn round-trips and retry budget. `keyed_mutex_map<Key>` is that per-key lock:
//
//   noclobber::keyed_mutex_map<std::string, noclobber::string_hash, std::equal_to<>> locks;
//   {
//     auto g = locks.lock("bucket/tenant-7/db.sqlite");   // writers of this key queue here
//     read_modify_write(...);                              // writers of other keys never wait
//   }                                                      // entry freed if nobody else wants it
//
// Locks are exclusive (`lock`, `try_lock`, `try_lock_for`, `try_lock_until`) or shared
// (`lock_shared`, ...); several keys can be locked at once without deadlock (`lock_all`,
// `try_lock_all`, `try_lock_all_for`, `try_lock_all_until`), all-or-nothing for the try and timed
// forms. The multi-key functions take any input range of keys (a vector, a span, an array, a
// view), a braced list, or the keys as arguments.
//
// An entry exists only while its key is held or waited on: once every guard is gone `size() == 0`,
// whichever thread released and whatever was thrown. Entries are pooled (no heap allocation per
// lock/unlock in steady state); the pool keeps the high-water mark of simultaneously live entries
// until the map is destroyed.
//
// Timeouts and deadlines saturate (noclobber/duration.hpp): `try_lock_for(k, hours::max())` and
// `try_lock_until(k, time_point::max())` of any clock wait without limit; a zero, negative or
// past one tries once. `lock(k, stop_token)`, `lock_shared(k, stop_token)` and
// `lock_all(keys, stop_token)` wait until the keys are held or a stop is requested (a parked
// waiter is woken for it) and then return an empty guard, holding nothing.
//
// Waiting and fairness: a locker that finds its key held spins briefly, then parks. A release
// wakes one parked waiter, which races running threads for the key (barging: a hot key changes
// hands without a context switch each time); once the first parked waiter has waited longer than
// keyed_mutex_map_options::handoff_after (1 ms by default), the next release that wakes anyone
// hands the key straight to it instead. Shared lockers wait behind a parked exclusive waiter.
//
// Thread safety
// -------------
// All member functions of keyed_mutex_map may be called concurrently. A guard object is not itself
// thread-safe, but it may be moved to and released on another thread than the one that locked
// (coroutines resuming elsewhere do this): nothing is tied to the locking thread. Locks are not
// recursive: locking a key you already hold in the same map deadlocks (the timed forms time out).
// Destroying the map while a guard is alive is undefined behaviour. Each thread keeps a small
// cache of free entries per map (up to 4 maps); a thread_local destructor that runs after that
// cache is gone may still lock and unlock (it then goes through the shared pool's mutex).
//
// What runs under which lock: `Hash` and the construction/assignment of `Key` from the argument run
// under no internal lock. `KeyEqual` runs under no internal lock (the lock-free lookup of a live
// entry, which it compares while holding a reference to it) or under the key's shard lock (an
// internal spin-then-sleep word); if it throws, the shard is restored and the exception
// propagates, nothing is held. No other user code runs inside the map. The only caller code that
// runs "under the key's lock" is what the caller itself runs while holding the guard.
//
// Thread-safety annotations: guard, shared_guard and multi_guard are Clang capabilities. Clang
// cannot follow a guard returned by value, so after `auto g = map.lock(k);` call `g.assert_held()`;
// from then on functions declared `void edit(const guard& g) NOCLOBBER_REQUIRES(g)` are checked at
// compile time. The annotations compile to nothing elsewhere (noclobber/thread_annotations.hpp).
//
// Inside (noclobber/keyed_mutex_map/, one piece per header, each stating its invariants):
//   options.hpp       keyed_mutex_map_options, keyed_mutex_map_counters, string_hash
//   shard.hpp         the shard word (chain head + lock bits), the shard lock, the waiter queue
//   entry_state.hpp   an entry's state word: the key's lock, its references, its waiter bits
//   entry_pool.hpp    an entry (the lock of one live key) and the pool that recycles entries
//   thread_cache.hpp  per-thread caches of free entries and counters
//   parking.hpp       how waiters park on a busy key, who wakes them or hands them the key
//   shards.hpp        shards + pool, and what the algorithms share (references, claims, sweeps,
//                     the release that serves the queue)
//   core.hpp          the acquire / release algorithms for one key
//   multi_key.hpp     several keys at once (lock_all and friends)
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <ranges>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "noclobber/keyed_mutex_map/core.hpp"
#include "noclobber/keyed_mutex_map/multi_key.hpp"
#include "noclobber/keyed_mutex_map/options.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber {

template <class Key, class Hash = std::hash<Key>, class KeyEqual = std::equal_to<Key>>
class keyed_mutex_map {
  using core = detail::kmm_multi_core<Key, Hash, KeyEqual>;
  using entry = typename core::entry;
  using mode = detail::kmm_mode;
  using wait = detail::kmm_wait;
  using wait_spec = detail::kmm_wait_spec;
  using clock = detail::kmm_clock;

  static wait_spec forever() noexcept { return {}; }
  static wait_spec once() noexcept { return {wait::try_once, {}, nullptr}; }
  static wait_spec until(clock::time_point deadline) noexcept {
    return {wait::until_deadline, deadline, nullptr};
  }
  static wait_spec until_stopped(const std::stop_token& stop) noexcept { return {wait::forever, {}, &stop}; }

  template <class K>
  static constexpr bool lookup_key = core::template lookup_key<K>;
  // A key passed as an argument of lock_all(k1, k2, ...): never the stop token of lock_all(keys, stop).
  template <class K>
  static constexpr bool key_arg =
      lookup_key<std::decay_t<K>> && !std::is_same_v<std::decay_t<K>, std::stop_token>;
  // An input range whose elements can be looked up as they are, or converted to Key.
  template <class R>
  static constexpr bool key_range = std::ranges::input_range<R>&&
      core::template multi_key<std::remove_cvref_t<std::ranges::range_reference_t<R>>>;

 public:
  using key_type = Key;
  using hasher = Hash;
  using key_equal = KeyEqual;

  template <detail::kmm_mode Mode>
  class basic_guard;
  using guard = basic_guard<detail::kmm_mode::exclusive>;      // exclusive hold of one key
  using shared_guard = basic_guard<detail::kmm_mode::shared>;  // shared hold of one key
  class multi_guard;

  keyed_mutex_map() : keyed_mutex_map(keyed_mutex_map_options{}) {}
  explicit keyed_mutex_map(keyed_mutex_map_options options, Hash hash = Hash(), KeyEqual eq = KeyEqual())
      : core_(options, std::move(hash), std::move(eq)) {}

  keyed_mutex_map(const keyed_mutex_map&) = delete;
  keyed_mutex_map& operator=(const keyed_mutex_map&) = delete;

  // Precondition: no guard of this map is alive. Entries cached by other threads go back to the
  // shared pool, which is freed when the last of them lets go.
  ~keyed_mutex_map() = default;

  // ---- exclusive ------------------------------------------------------------------------------

  // Blocks until `key` is held exclusively by the returned guard.
  template <class K>
  requires lookup_key<K>
  [[nodiscard]] guard lock(const K& key) {
    return guard(&core_, core_.acquire(key, mode::exclusive, forever()));
  }
  // Returns an empty guard (owns_lock() == false) if the key is held.
  template <class K>
  requires lookup_key<K>
  [[nodiscard]] guard try_lock(const K& key) {
    return guard(&core_, core_.acquire(key, mode::exclusive, once()));
  }
  template <class K, class Rep, class Period>
  requires lookup_key<K>
  [[nodiscard]] guard try_lock_for(const K& key, std::chrono::duration<Rep, Period> timeout) {
    return guard(&core_, core_.acquire(key, mode::exclusive, until(detail::kmm_deadline_after(timeout))));
  }
  template <class K, class Clock, class Duration>
  requires lookup_key<K>
  [[nodiscard]] guard try_lock_until(const K& key, std::chrono::time_point<Clock, Duration> when) {
    return guard(&core_, core_.acquire(key, mode::exclusive, until(detail::kmm_to_steady(when))));
  }
  // Blocks until `key` is held, or returns an empty guard once a stop is requested on `stop`
  // (a waiter parked on the key is woken for it). A stop requested before the call returns an
  // empty guard at once, without trying.
  template <class K>
  requires lookup_key<K>
  [[nodiscard]] guard lock(const K& key, std::stop_token stop) {
    return guard(&core_, core_.acquire(key, mode::exclusive, until_stopped(stop)));
  }

  // ---- shared (readers) -----------------------------------------------------------------------
  // Any number of shared holders, or one exclusive holder. Writer preference: once an exclusive
  // locker waits on a key, new shared lockers of that key wait behind it.

  template <class K>
  requires lookup_key<K>
  [[nodiscard]] shared_guard lock_shared(const K& key) {
    return shared_guard(&core_, core_.acquire(key, mode::shared, forever()));
  }
  template <class K>
  requires lookup_key<K>
  [[nodiscard]] shared_guard try_lock_shared(const K& key) {
    return shared_guard(&core_, core_.acquire(key, mode::shared, once()));
  }
  template <class K, class Rep, class Period>
  requires lookup_key<K>
  [[nodiscard]] shared_guard try_lock_shared_for(const K& key, std::chrono::duration<Rep, Period> timeout) {
    return shared_guard(&core_, core_.acquire(key, mode::shared, until(detail::kmm_deadline_after(timeout))));
  }
  template <class K, class Clock, class Duration>
  requires lookup_key<K>
  [[nodiscard]] shared_guard try_lock_shared_until(const K& key,
                                                   std::chrono::time_point<Clock, Duration> when) {
    return shared_guard(&core_, core_.acquire(key, mode::shared, until(detail::kmm_to_steady(when))));
  }
  // As lock(key, stop), shared.
  template <class K>
  requires lookup_key<K>
  [[nodiscard]] shared_guard lock_shared(const K& key, std::stop_token stop) {
    return shared_guard(&core_, core_.acquire(key, mode::shared, until_stopped(stop)));
  }

  // ---- several keys at once (exclusive) -------------------------------------------------------
  // Duplicates are folded; keys are taken shard by shard in ascending shard order, all keys of one
  // shard at once under its lock, so two lock_all calls can never deadlock each other. The try and
  // timed forms are all-or-nothing: on failure nothing is held. Allocates a few small vectors.
  //
  // `keys`: any input range (std::vector, std::span, std::array, a view, ...) of keys that can be
  // looked up as they are (Key, or anything with a transparent Hash and KeyEqual) or that convert
  // to Key (converted once, up front); or a braced list {k1, k2} (a braced list has no type a
  // range template could deduce, hence its own overload, which forwards); or, for lock_all and
  // try_lock_all, the keys as arguments: lock_all(k1, k2, ...).

  template <class R>
  requires key_range<R>
  [[nodiscard]] multi_guard lock_all(R&& keys) { return acquire_all(keys, forever()); }
  template <class R>
  requires key_range<R>
  [[nodiscard]] multi_guard try_lock_all(R&& keys) { return acquire_all(keys, once()); }
  template <class R, class Rep, class Period>
  requires key_range<R>
  [[nodiscard]] multi_guard try_lock_all_for(R&& keys, std::chrono::duration<Rep, Period> timeout) {
    return acquire_all(keys, until(detail::kmm_deadline_after(timeout)));
  }
  template <class R, class Clock, class Duration>
  requires key_range<R>
  [[nodiscard]] multi_guard try_lock_all_until(R&& keys, std::chrono::time_point<Clock, Duration> when) {
    return acquire_all(keys, until(detail::kmm_to_steady(when)));
  }

  // All the keys, or an empty guard (nothing held) once a stop is requested on `stop`.
  template <class R>
  requires key_range<R>
  [[nodiscard]] multi_guard lock_all(R&& keys, std::stop_token stop) {
    return acquire_all(keys, until_stopped(stop));
  }

  template <class K>
  requires key_range<std::initializer_list<K>>
  [[nodiscard]] multi_guard lock_all(std::initializer_list<K> keys) { return acquire_all(keys, forever()); }
  template <class K>
  requires key_range<std::initializer_list<K>>
  [[nodiscard]] multi_guard lock_all(std::initializer_list<K> keys, std::stop_token stop) {
    return acquire_all(keys, until_stopped(stop));
  }
  template <class K>
  requires key_range<std::initializer_list<K>>
  [[nodiscard]] multi_guard try_lock_all(std::initializer_list<K> keys) { return acquire_all(keys, once()); }
  template <class K, class Rep, class Period>
  requires key_range<std::initializer_list<K>>
  [[nodiscard]] multi_guard try_lock_all_for(std::initializer_list<K> keys,
                                             std::chrono::duration<Rep, Period> timeout) {
    return acquire_all(keys, until(detail::kmm_deadline_after(timeout)));
  }
  template <class K, class Clock, class Duration>
  requires key_range<std::initializer_list<K>>
  [[nodiscard]] multi_guard try_lock_all_until(std::initializer_list<K> keys,
                                               std::chrono::time_point<Clock, Duration> when) {
    return acquire_all(keys, until(detail::kmm_to_steady(when)));
  }

  // Keys as arguments. Keys of one type are used in place; mixed types are converted to their
  // common type first (e.g. std::string_view for std::string + const char*).
  // clang-format off
  template <class K1, class K2, class... Ks>
    requires (key_arg<K1> && key_arg<K2> && (key_arg<Ks> && ...))
  [[nodiscard]] multi_guard lock_all(const K1& k1, const K2& k2, const Ks&... rest) {
    // clang-format on
    return acquire_variadic(forever(), k1, k2, rest...);
  }
  // clang-format off
  template <class K1, class K2, class... Ks>
    requires (key_arg<K1> && key_arg<K2> && (key_arg<Ks> && ...))
  [[nodiscard]] multi_guard try_lock_all(const K1& k1, const K2& k2, const Ks&... rest) {
    // clang-format on
    return acquire_variadic(once(), k1, k2, rest...);
  }

  // ---- observation ----------------------------------------------------------------------------

  // Live entries (keys held or waited on). Visits every shard under its lock: O(shard_count); a
  // snapshot per shard, exact when no other thread is locking.
  std::size_t size() const { return core_.size(); }

  keyed_mutex_map_counters counters() const { return core_.counters(); }

  std::size_t shard_count() const noexcept { return core_.shard_count(); }

 private:
  template <class R>
  multi_guard acquire_all(R& keys, const wait_spec& w) {
    multi_guard g(&core_);
    if (!core_.acquire_range(keys, w, g.entries_)) return multi_guard{};  // g releases
    return g;
  }
  template <class... Ks>
  multi_guard acquire_variadic(const wait_spec& w, const Ks&... keys) {
    multi_guard g(&core_);
    if (!core_.acquire_variadic(w, g.entries_, keys...)) return multi_guard{};  // g releases
    return g;
  }

  core core_;
};

// Hold of one key, exclusive (guard) or shared (shared_guard). Movable, not copyable; releases on
// destruction. May be released on another thread than the one that locked. An empty guard (failed
// try, moved-from) owns nothing.
template <class Key, class Hash, class KeyEqual>
template <detail::kmm_mode Mode>
class NOCLOBBER_CAPABILITY("keyed_mutex_map key") keyed_mutex_map<Key, Hash, KeyEqual>::basic_guard {
 public:
  basic_guard() noexcept = default;
  basic_guard(basic_guard&& other) noexcept
      : map_(std::exchange(other.map_, nullptr)), entry_(std::exchange(other.entry_, nullptr)) {}
  basic_guard& operator=(basic_guard&& other) noexcept {
    if (this != &other) {
      reset();
      map_ = std::exchange(other.map_, nullptr);
      entry_ = std::exchange(other.entry_, nullptr);
    }
    return *this;
  }
  basic_guard(const basic_guard&) = delete;
  basic_guard& operator=(const basic_guard&) = delete;
  ~basic_guard() { reset(); }

  bool owns_lock() const noexcept { return entry_ != nullptr; }
  explicit operator bool() const noexcept { return owns_lock(); }

  // Tells Clang's analysis this guard is held (throws std::logic_error if it is not), so functions
  // declared NOCLOBBER_REQUIRES(g) can be called with it: see "Thread-safety annotations" below.
  void assert_held() const NOCLOBBER_ASSERT_CAPABILITY(this) {
    if (!owns_lock())
      throw std::logic_error("keyed_mutex_map guard: assert_held on a guard that owns no lock");
  }

  // Releases early. Throws std::logic_error if the guard owns nothing.
  void unlock() {
    if (entry_ == nullptr) throw std::logic_error(std::string(name()) + "::unlock: guard owns no lock");
    reset();
  }

  // The held key. Throws std::logic_error if the guard owns nothing.
  const Key& key() const {
    if (entry_ == nullptr) throw std::logic_error(std::string(name()) + "::key: guard owns no lock");
    return *entry_->key;
  }

 private:
  friend class keyed_mutex_map;
  basic_guard(core* map, entry* e) noexcept : map_(e != nullptr ? map : nullptr), entry_(e) {}
  static constexpr const char* name() noexcept {
    return Mode == detail::kmm_mode::exclusive ? "keyed_mutex_map::guard" : "keyed_mutex_map::shared_guard";
  }
  void reset() noexcept {
    if (entry_ != nullptr) map_->release(std::exchange(entry_, nullptr), Mode);
    map_ = nullptr;
  }

  core* map_ = nullptr;
  entry* entry_ = nullptr;
};

// Exclusive hold of a folded set of keys (lock_all and friends). Releases them all on destruction.
template <class Key, class Hash, class KeyEqual>
class NOCLOBBER_CAPABILITY("keyed_mutex_map keys") keyed_mutex_map<Key, Hash, KeyEqual>::multi_guard {
 public:
  multi_guard() noexcept = default;
  multi_guard(multi_guard&& other) noexcept
      : map_(std::exchange(other.map_, nullptr)), entries_(std::move(other.entries_)) {
    other.entries_.clear();
  }
  multi_guard& operator=(multi_guard&& other) noexcept {
    if (this != &other) {
      reset();
      map_ = std::exchange(other.map_, nullptr);
      entries_ = std::move(other.entries_);
      other.entries_.clear();
    }
    return *this;
  }
  multi_guard(const multi_guard&) = delete;
  multi_guard& operator=(const multi_guard&) = delete;
  ~multi_guard() { reset(); }

  // True when the keys are held (an empty key list is held trivially).
  bool owns_lock() const noexcept { return map_ != nullptr; }
  explicit operator bool() const noexcept { return owns_lock(); }

  // Tells Clang's analysis this guard is held (throws std::logic_error if it is not), so functions
  // declared NOCLOBBER_REQUIRES(g) can be called with it: see "Thread-safety annotations" below.
  void assert_held() const NOCLOBBER_ASSERT_CAPABILITY(this) {
    if (!owns_lock())
      throw std::logic_error("keyed_mutex_map guard: assert_held on a guard that owns no lock");
  }
  // Number of distinct keys held.
  std::size_t size() const noexcept { return entries_.size(); }
  // The i-th held key, in lock order (not the caller's order).
  const Key& key(std::size_t i) const {
    if (i >= entries_.size())
      throw std::out_of_range("keyed_mutex_map::multi_guard::key: index " + std::to_string(i) + " >= size " +
                              std::to_string(entries_.size()));
    return *entries_[i]->key;
  }

  void unlock() {
    if (map_ == nullptr) throw std::logic_error("keyed_mutex_map::multi_guard::unlock: guard owns no lock");
    reset();
  }

 private:
  friend class keyed_mutex_map;
  explicit multi_guard(core* map) noexcept : map_(map) {}
  void reset() noexcept {
    while (!entries_.empty()) {
      entry* e = entries_.back();
      entries_.pop_back();
      map_->release(e, detail::kmm_mode::exclusive);
    }
    map_ = nullptr;
  }

  core* map_ = nullptr;
  std::vector<entry*> entries_;
};

}  // namespace noclobber
