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
// `try_lock_all`, `try_lock_all_for`, `try_lock_all_until`), all-or-nothing for the try and timed forms.
//
// An entry exists only while its key is held or waited on: once every guard is gone `size() == 0`,
// whichever thread released and whatever was thrown. Entries are pooled (no heap allocation per
// lock/unlock in steady state); the pool keeps the high-water mark of simultaneously live entries
// until the map is destroyed.
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
// under no internal lock. `KeyEqual` runs under the key's shard lock (an internal spin-then-sleep
// word); if it throws, the shard is restored and the exception propagates, nothing is held. No other
// user code runs inside the map. The only caller code that runs "under the key's lock" is what the
// caller itself runs while holding the guard.
//
// Thread-safety annotations: guard, shared_guard and multi_guard are Clang capabilities. Clang
// cannot follow a guard returned by value, so after `auto g = map.lock(k);` call `g.assert_held()`;
// from then on functions declared `void edit(const guard& g) NOCLOBBER_REQUIRES(g)` are checked at
// compile time. The annotations compile to nothing elsewhere (noclobber/thread_annotations.hpp).
//
// Lock order: shard lock -> entry park mutex (held only to bump the entry's wake sequence); nothing
// else is taken under either. Per-key waiters sleep on the entry's condition variable, holding no
// shard lock. A release wakes one parked waiter when all waiters want the key exclusively, all of
// them otherwise; fairness is not FIFO (a running thread may take a key before a woken one).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "noclobber/duration.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber {

// Transparent hash for string keys: keyed_mutex_map<std::string, string_hash, std::equal_to<>> can be
// locked with a std::string_view or a const char* without building a std::string.
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  std::size_t operator()(const std::string& s) const noexcept { return (*this)(std::string_view(s)); }
  std::size_t operator()(const char* s) const noexcept { return (*this)(std::string_view(s)); }
};

// Snapshot of a map's counters. Each thread counts in its own cache line (relaxed), the snapshot
// sums them; exact once the counting threads are quiescent.
struct keyed_mutex_map_counters {
  std::uint64_t acquisitions = 0;            // successful lock acquisitions (a lock_all of n keys: n)
  std::uint64_t contended_acquisitions = 0;  // of those, the ones that found the key held first
  std::uint64_t sleeps = 0;                  // times a waiter went to sleep on a held key (each costs
                                             // a wake-up); about one per contended acquisition when
                                             // waiters hold the key long, since a release wakes one
};

// Constructor options.
struct keyed_mutex_map_options {
  // Number of shards, a power of two >= 1. Each shard is one 64-byte cache line. More shards mean
  // fewer unrelated keys sharing a line (better scaling across cores) at 64 bytes each.
  std::size_t shard_count = 4096;
};

namespace detail {

inline void kmm_cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Shard word layout: pointer to the first live entry of the shard's chain | flag bits.
inline constexpr std::uintptr_t kmm_locked = 1;    // the shard lock is held
inline constexpr std::uintptr_t kmm_sleepers = 2;  // someone sleeps waiting for the shard lock
inline constexpr std::uintptr_t kmm_slow = 4;      // chain is not "one entry, held exclusively, no waiters"
inline constexpr std::uintptr_t kmm_flags = 7;

inline constexpr int kmm_shard_spins = 128;  // pauses before sleeping on a shard lock
inline constexpr int kmm_key_spin_rounds = 2;
inline constexpr int kmm_key_spins = 64;  // pauses per round before sleeping on a busy key

struct alignas(64) kmm_shard {
  std::atomic<std::uintptr_t> word{0};
};

struct kmm_entry_base {
  kmm_entry_base* free_next = nullptr;  // link while in a pool or thread cache
};

struct kmm_cache_slot;

// Entry pool shared between a map and the thread caches attached to it. Held by shared_ptr so a
// thread cache can hand entries back even after the map is gone.
struct kmm_pool_base {
  virtual ~kmm_pool_base() = default;
  virtual void destroy_entry(kmm_entry_base* e) noexcept = 0;

  void destroy_all(kmm_entry_base* head) noexcept {
    while (head != nullptr) {
      kmm_entry_base* next = head->free_next;
      destroy_entry(head);
      head = next;
    }
  }

  std::mutex mutex;
  kmm_entry_base* free_head = nullptr;      // guarded by mutex
  std::uint64_t detached_acquisitions = 0;  // guarded by mutex; from slots detached so far
  std::uint64_t detached_contended = 0;     // guarded by mutex
  std::uint64_t detached_sleeps = 0;        // guarded by mutex
  kmm_cache_slot* attached = nullptr;       // guarded by mutex; slots currently attached
};

// One thread's cache of free entries for one pool, plus that thread's counters for it.
struct alignas(64) kmm_cache_slot {
  static constexpr unsigned capacity = 8;
  static constexpr unsigned batch = 4;

  kmm_pool_base* pool_raw = nullptr;  // fast comparison; equals pool.get()
  kmm_entry_base* head = nullptr;
  unsigned count = 0;
  std::atomic<std::uint64_t> acquisitions{0};  // written only by the owning thread
  std::atomic<std::uint64_t> contended{0};
  std::atomic<std::uint64_t> sleeps{0};
  std::shared_ptr<kmm_pool_base> pool;
  kmm_cache_slot* prev = nullptr;  // in pool->attached, guarded by pool->mutex
  kmm_cache_slot* next = nullptr;

  void bump(std::atomic<std::uint64_t>& c) noexcept {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  void attach(std::shared_ptr<kmm_pool_base> p) {
    {
      std::lock_guard<std::mutex> lk(p->mutex);
      prev = nullptr;
      next = p->attached;
      if (next != nullptr) next->prev = this;
      p->attached = this;
    }
    pool_raw = p.get();
    pool = std::move(p);
  }

  // Returns cached entries and counts to the pool and lets go of it (which may destroy it).
  void detach() noexcept {
    if (pool == nullptr) return;
    {
      std::lock_guard<std::mutex> lk(pool->mutex);
      if (head != nullptr) {
        kmm_entry_base* tail = head;
        while (tail->free_next != nullptr) tail = tail->free_next;
        tail->free_next = pool->free_head;
        pool->free_head = head;
      }
      pool->detached_acquisitions += acquisitions.load(std::memory_order_relaxed);
      pool->detached_contended += contended.load(std::memory_order_relaxed);
      pool->detached_sleeps += sleeps.load(std::memory_order_relaxed);
      if (prev != nullptr)
        prev->next = next;
      else
        pool->attached = next;
      if (next != nullptr) next->prev = prev;
    }
    head = nullptr;
    count = 0;
    prev = next = nullptr;
    acquisitions.store(0, std::memory_order_relaxed);
    contended.store(0, std::memory_order_relaxed);
    sleeps.store(0, std::memory_order_relaxed);
    pool_raw = nullptr;
    pool.reset();
  }

  // Moves half the cache to the pool (cache full).
  void spill() noexcept {
    kmm_entry_base* first = head;
    kmm_entry_base* last = head;
    for (unsigned i = 1; i < batch; ++i) last = last->free_next;
    head = last->free_next;
    count -= batch;
    std::lock_guard<std::mutex> lk(pool->mutex);
    last->free_next = pool->free_head;
    pool->free_head = first;
  }

  // Takes up to `batch` entries from the pool (cache empty). False if the pool is empty too.
  bool refill() noexcept {
    std::lock_guard<std::mutex> lk(pool->mutex);
    while (count < batch && pool->free_head != nullptr) {
      kmm_entry_base* e = pool->free_head;
      pool->free_head = e->free_next;
      e->free_next = head;
      head = e;
      ++count;
    }
    return head != nullptr;
  }
};

// Per-thread caches, one slot per map recently used by this thread (a thread alternating between
// more maps than slots pays a pool-mutex round trip per switch).
struct kmm_thread_cache {
  static constexpr unsigned slot_count = 4;
  kmm_cache_slot slots[slot_count];
  unsigned next_victim = 0;

  kmm_thread_cache() = default;
  kmm_thread_cache(const kmm_thread_cache&) = delete;
  kmm_thread_cache& operator=(const kmm_thread_cache&) = delete;
  ~kmm_thread_cache();

  kmm_cache_slot& slot_for(const std::shared_ptr<kmm_pool_base>& p) {
    kmm_pool_base* raw = p.get();
    for (auto& s : slots)
      if (s.pool_raw == raw) return s;
    kmm_cache_slot& victim = slots[next_victim];
    next_victim = (next_victim + 1) % slot_count;
    victim.detach();
    victim.attach(p);
    return victim;
  }
};

// The owning object (with a destructor) is built on first use; hot paths read only the plain
// pointer, which needs no thread_local initialisation guard. Once the cache is destroyed at thread
// exit, `gone` stays set and later uses (from other thread_local destructors) get no cache.
inline thread_local kmm_thread_cache* kmm_thread_cache_ptr = nullptr;
inline thread_local bool kmm_thread_cache_gone = false;

inline kmm_thread_cache::~kmm_thread_cache() {
  for (auto& s : slots) s.detach();
  kmm_thread_cache_ptr = nullptr;
  kmm_thread_cache_gone = true;
}

inline kmm_thread_cache* kmm_make_thread_cache() {
  thread_local kmm_thread_cache cache;
  kmm_thread_cache_ptr = &cache;
  return &cache;
}

// This thread's cache, or nullptr once it has been destroyed at thread exit.
inline kmm_thread_cache* kmm_this_thread_cache() {
  kmm_thread_cache* c = kmm_thread_cache_ptr;
  if (c != nullptr) return c;
  return kmm_thread_cache_gone ? nullptr : kmm_make_thread_cache();
}

// Stand-in slot for one operation on a thread whose cache is gone: attached for the call, then
// hands everything back to the pool.
struct kmm_late_slot : kmm_cache_slot {
  kmm_late_slot() = default;
  kmm_late_slot(const kmm_late_slot&) = delete;
  kmm_late_slot& operator=(const kmm_late_slot&) = delete;
  ~kmm_late_slot() { detach(); }
};

// One live key. Fields marked "shard" are guarded by the lock bit of the shard the key hashes to.
template <class Key>
struct alignas(64) kmm_entry final : kmm_entry_base {
  kmm_entry* next = nullptr;               // shard: chain link
  std::size_t hash = 0;                    // shard (immutable while live)
  std::int32_t holders = 0;                // shard: -1 exclusive, n > 0 shared holders, 0 free
  std::uint32_t waiters = 0;               // shard: threads parked (or about to park) on this entry
  std::uint32_t exclusive_waiters = 0;     // shard: of those, the ones wanting exclusive
  std::atomic<std::uint32_t> wake_seq{0};  // bumped under shard lock and park_mutex to wake parkers
  std::optional<Key> key;                  // kept between uses so its capacity is reused
  std::mutex park_mutex;
  std::condition_variable park_exclusive;  // exclusive waiters sleep here, woken one at a time
  std::condition_variable park_shared;     // shared waiters sleep here, woken all at once
};

template <class Key>
struct kmm_pool final : kmm_pool_base {
  ~kmm_pool() override { destroy_all(free_head); }
  void destroy_entry(kmm_entry_base* e) noexcept override { delete static_cast<kmm_entry<Key>*>(e); }
};

template <class H, class E>
inline constexpr bool kmm_transparent = requires {
  typename H::is_transparent;
  typename E::is_transparent;
};

enum class kmm_mode { exclusive, shared };
enum class kmm_wait { try_once, until_deadline, forever };

}  // namespace detail

template <class Key, class Hash = std::hash<Key>, class KeyEqual = std::equal_to<Key>>
class keyed_mutex_map {
  using entry = detail::kmm_entry<Key>;
  using clock = std::chrono::steady_clock;

  template <class K>
  static constexpr bool lookup_key =
      std::is_same_v<std::remove_cvref_t<K>, Key> || detail::kmm_transparent<Hash, KeyEqual>;

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
      : hash_(std::move(hash)), eq_(std::move(eq)) {
    const std::size_t n = options.shard_count;
    if (n == 0 || (n & (n - 1)) != 0)
      throw std::invalid_argument("keyed_mutex_map: shard_count must be a power of two >= 1, got " +
                                  std::to_string(n));
    int bits = 0;
    while ((std::size_t{1} << bits) < n) ++bits;
    shard_shift_ = bits == 0 ? 0 : 64 - bits;  // n == 1: shift 0, mask 0
    shard_mask_ = n - 1;
    shards_ = std::make_unique<detail::kmm_shard[]>(n);
    shard_count_ = n;
    pool_ = std::make_shared<detail::kmm_pool<Key>>();
  }

  keyed_mutex_map(const keyed_mutex_map&) = delete;
  keyed_mutex_map& operator=(const keyed_mutex_map&) = delete;

  // Precondition: no guard of this map is alive. Entries cached by other threads go back to the
  // shared pool, which is freed when the last of them lets go.
  ~keyed_mutex_map() {
    for (std::size_t i = 0; i < shard_count_; ++i) {
      entry* e = head_of(shards_[i].word.load(std::memory_order_acquire));
      while (e != nullptr) {  // only reached if the precondition was broken; don't leak
        entry* next = e->next;
        delete e;
        e = next;
      }
    }
  }

  // ---- exclusive ------------------------------------------------------------------------------

  // Blocks until `key` is held exclusively by the returned guard.
  template <class K>
  requires lookup_key<K>
  [[nodiscard]] guard lock(const K& key) {
    return guard(this, acquire(key, detail::kmm_mode::exclusive, detail::kmm_wait::forever, {}));
  }
  // Returns an empty guard (owns_lock() == false) if the key is held.
  template <class K>
  requires lookup_key<K>
  [[nodiscard]] guard try_lock(const K& key) {
    return guard(this, acquire(key, detail::kmm_mode::exclusive, detail::kmm_wait::try_once, {}));
  }
  template <class K, class Rep, class Period>
  requires lookup_key<K>
  [[nodiscard]] guard try_lock_for(const K& key, std::chrono::duration<Rep, Period> timeout) {
    return guard(this, acquire(key, detail::kmm_mode::exclusive, detail::kmm_wait::until_deadline,
                               deadline_after(timeout)));
  }
  template <class K, class Clock, class Duration>
  requires lookup_key<K>
  [[nodiscard]] guard try_lock_until(const K& key, std::chrono::time_point<Clock, Duration> when) {
    return guard(
        this, acquire(key, detail::kmm_mode::exclusive, detail::kmm_wait::until_deadline, to_steady(when)));
  }

  // ---- shared (readers) -----------------------------------------------------------------------
  // Any number of shared holders, or one exclusive holder. Writer preference: once an exclusive
  // locker waits on a key, new shared lockers of that key wait behind it.

  template <class K>
  requires lookup_key<K>
  [[nodiscard]] shared_guard lock_shared(const K& key) {
    return shared_guard(this, acquire(key, detail::kmm_mode::shared, detail::kmm_wait::forever, {}));
  }
  template <class K>
  requires lookup_key<K>
  [[nodiscard]] shared_guard try_lock_shared(const K& key) {
    return shared_guard(this, acquire(key, detail::kmm_mode::shared, detail::kmm_wait::try_once, {}));
  }
  template <class K, class Rep, class Period>
  requires lookup_key<K>
  [[nodiscard]] shared_guard try_lock_shared_for(const K& key, std::chrono::duration<Rep, Period> timeout) {
    return shared_guard(this, acquire(key, detail::kmm_mode::shared, detail::kmm_wait::until_deadline,
                                      deadline_after(timeout)));
  }
  template <class K, class Clock, class Duration>
  requires lookup_key<K>
  [[nodiscard]] shared_guard try_lock_shared_until(const K& key,
                                                   std::chrono::time_point<Clock, Duration> when) {
    return shared_guard(
        this, acquire(key, detail::kmm_mode::shared, detail::kmm_wait::until_deadline, to_steady(when)));
  }

  // ---- several keys at once (exclusive) -------------------------------------------------------
  // Duplicates are folded; keys are taken shard by shard in ascending shard order, all keys of one
  // shard at once under its lock, so two lock_all calls can never deadlock each other. The try and
  // timed forms are all-or-nothing: on failure nothing is held. Allocates one small vector.

  template <class K>
  requires lookup_key<K>
  [[nodiscard]] multi_guard lock_all(std::span<const K> keys) {
    return acquire_all(keys, detail::kmm_wait::forever, {});
  }
  template <class K>
  requires lookup_key<K>
  [[nodiscard]] multi_guard try_lock_all(std::span<const K> keys) {
    return acquire_all(keys, detail::kmm_wait::try_once, {});
  }
  template <class K, class Rep, class Period>
  requires lookup_key<K>
  [[nodiscard]] multi_guard try_lock_all_for(std::span<const K> keys,
                                             std::chrono::duration<Rep, Period> timeout) {
    return acquire_all(keys, detail::kmm_wait::until_deadline, deadline_after(timeout));
  }
  template <class K, class Clock, class Duration>
  requires lookup_key<K>
  [[nodiscard]] multi_guard try_lock_all_until(std::span<const K> keys,
                                               std::chrono::time_point<Clock, Duration> when) {
    return acquire_all(keys, detail::kmm_wait::until_deadline, to_steady(when));
  }
  // Variadic form: lock_all(k1, k2, ...). Keys of one type are used in place; mixed types are
  // converted to their common type first (e.g. std::string_view for std::string + const char*).
  template <class K1, class K2, class... Ks>
  requires(lookup_key<std::decay_t<K1>>&& lookup_key<std::decay_t<K2>> &&
           (lookup_key<std::decay_t<Ks>> && ...)) [[nodiscard]] multi_guard
      lock_all(const K1& k1, const K2& k2, const Ks&... rest) {
    return acquire_variadic(detail::kmm_wait::forever, {}, k1, k2, rest...);
  }
  template <class K1, class K2, class... Ks>
  requires(lookup_key<std::decay_t<K1>>&& lookup_key<std::decay_t<K2>> &&
           (lookup_key<std::decay_t<Ks>> && ...)) [[nodiscard]] multi_guard
      try_lock_all(const K1& k1, const K2& k2, const Ks&... rest) {
    return acquire_variadic(detail::kmm_wait::try_once, {}, k1, k2, rest...);
  }
  // Convenience overloads for a braced list or a container.
  template <class K>
  requires lookup_key<K>
  [[nodiscard]] multi_guard lock_all(std::initializer_list<K> keys) {
    return lock_all(std::span<const K>(keys.begin(), keys.size()));
  }
  template <class K>
  requires lookup_key<K>
  [[nodiscard]] multi_guard try_lock_all(std::initializer_list<K> keys) {
    return try_lock_all(std::span<const K>(keys.begin(), keys.size()));
  }
  template <class K, class Rep, class Period>
  requires lookup_key<K>
  [[nodiscard]] multi_guard try_lock_all_for(std::initializer_list<K> keys,
                                             std::chrono::duration<Rep, Period> timeout) {
    return try_lock_all_for(std::span<const K>(keys.begin(), keys.size()), timeout);
  }
  template <class K, class Clock, class Duration>
  requires lookup_key<K>
  [[nodiscard]] multi_guard try_lock_all_until(std::initializer_list<K> keys,
                                               std::chrono::time_point<Clock, Duration> when) {
    return try_lock_all_until(std::span<const K>(keys.begin(), keys.size()), when);
  }
  template <class K>
  requires lookup_key<K>
  [[nodiscard]] multi_guard lock_all(const std::vector<K>& keys) {
    return lock_all(std::span<const K>(keys));
  }
  template <class K>
  requires lookup_key<K>
  [[nodiscard]] multi_guard try_lock_all(const std::vector<K>& keys) {
    return try_lock_all(std::span<const K>(keys));
  }
  template <class K, class Rep, class Period>
  requires lookup_key<K>
  [[nodiscard]] multi_guard try_lock_all_for(const std::vector<K>& keys,
                                             std::chrono::duration<Rep, Period> timeout) {
    return try_lock_all_for(std::span<const K>(keys), timeout);
  }
  template <class K, class Clock, class Duration>
  requires lookup_key<K>
  [[nodiscard]] multi_guard try_lock_all_until(const std::vector<K>& keys,
                                               std::chrono::time_point<Clock, Duration> when) {
    return try_lock_all_until(std::span<const K>(keys), when);
  }

  // ---- observation ----------------------------------------------------------------------------

  // Live entries (keys held or waited on). Visits every shard under its lock: O(shard_count); a
  // snapshot per shard, exact when no other thread is locking.
  std::size_t size() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      std::uintptr_t w = lock_shard(shards_[i]);
      for (entry* e = head_of(w); e != nullptr; e = e->next) ++n;
      unlock_shard(shards_[i], head_of(w));
    }
    return n;
  }

  keyed_mutex_map_counters counters() const {
    keyed_mutex_map_counters c;
    std::lock_guard<std::mutex> lk(pool_->mutex);
    c.acquisitions = pool_->detached_acquisitions;
    c.contended_acquisitions = pool_->detached_contended;
    c.sleeps = pool_->detached_sleeps;
    for (detail::kmm_cache_slot* s = pool_->attached; s != nullptr; s = s->next) {
      c.acquisitions += s->acquisitions.load(std::memory_order_relaxed);
      c.contended_acquisitions += s->contended.load(std::memory_order_relaxed);
      c.sleeps += s->sleeps.load(std::memory_order_relaxed);
    }
    return c;
  }

  std::size_t shard_count() const noexcept { return shard_count_; }

 private:
  // ---- shard word -----------------------------------------------------------------------------

  static entry* head_of(std::uintptr_t w) noexcept {
    return reinterpret_cast<entry*>(w & ~detail::kmm_flags);
  }

  // The word to publish for a chain: the fast unlock (one CAS from `e` to 0) is allowed only when
  // the chain is exactly one entry held exclusively with nobody waiting; otherwise kmm_slow is set.
  static std::uintptr_t encode(entry* head) noexcept {
    if (head == nullptr) return 0;
    const bool fast = head->next == nullptr && head->waiters == 0 && head->holders == -1;
    return reinterpret_cast<std::uintptr_t>(head) | (fast ? 0 : detail::kmm_slow);
  }

  // Takes the shard lock: spin briefly, then sleep on the word. Returns the word as it was.
  static std::uintptr_t lock_shard(detail::kmm_shard& s) noexcept {
    std::uintptr_t w = s.word.load(std::memory_order_relaxed);
    int spins = 0;
    for (;;) {
      if ((w & detail::kmm_locked) == 0) {
        if (s.word.compare_exchange_weak(w, w | detail::kmm_locked, std::memory_order_acquire,
                                         std::memory_order_relaxed))
          return w;
        continue;
      }
      if (spins < detail::kmm_shard_spins) {
        ++spins;
        detail::kmm_cpu_relax();
        w = s.word.load(std::memory_order_relaxed);
        continue;
      }
      if ((w & detail::kmm_sleepers) == 0) {
        if (!s.word.compare_exchange_weak(w, w | detail::kmm_sleepers, std::memory_order_relaxed,
                                          std::memory_order_relaxed))
          continue;
        w |= detail::kmm_sleepers;
      }
      s.word.wait(w, std::memory_order_relaxed);
      w = s.word.load(std::memory_order_relaxed);
    }
  }

  static void unlock_shard(detail::kmm_shard& s, entry* head) noexcept {
    if (s.word.exchange(encode(head), std::memory_order_release) & detail::kmm_sleepers) s.word.notify_all();
  }

  detail::kmm_shard& shard_of(std::size_t h) const noexcept {
    // Fibonacci mixing: std::hash of integers is the identity; take the well-mixed high bits.
    const std::uint64_t mixed = static_cast<std::uint64_t>(h) * 0x9E3779B97F4A7C15ull;
    const std::size_t index = static_cast<std::size_t>(mixed >> shard_shift_) & shard_mask_;
    return shards_[index];
  }
  std::size_t shard_index(std::size_t h) const noexcept {
    return static_cast<std::size_t>(&shard_of(h) - shards_.get());
  }

  // ---- entries --------------------------------------------------------------------------------

  // This thread's cache slot for our pool, or nullptr on a thread whose cache is already destroyed
  // (a thread_local destructor running late).
  detail::kmm_cache_slot* thread_slot() const {
    detail::kmm_thread_cache* c = detail::kmm_this_thread_cache();
    return c != nullptr ? &c->slot_for(pool_) : nullptr;
  }
  // As thread_slot(), but on a thread without a cache a slot in `late` that lives for the call.
  detail::kmm_cache_slot& my_slot(std::optional<detail::kmm_late_slot>& late) const {
    if (detail::kmm_cache_slot* s = thread_slot()) return *s;
    late.emplace();
    late->attach(pool_);
    return *late;
  }

  // A free entry holding `key` (may allocate when the pool is empty; may throw from Key's copy).
  template <class K>
  entry* fresh_entry(detail::kmm_cache_slot& slot, const K& key, std::size_t h) {
    if (slot.head == nullptr && !slot.refill()) {
      entry* e = new entry;
      e->free_next = slot.head;
      slot.head = e;
      ++slot.count;
    }
    entry* e = static_cast<entry*>(slot.head);
    if constexpr (std::is_same_v<Key, std::string> && std::is_convertible_v<const K&, std::string_view>) {
      // Reuse the buffer without basic_string::assign's general replace path.
      const std::string_view src = key;
      if (e->key.has_value() && src.size() <= e->key->capacity()) {
        std::string& dst = *e->key;
        if (dst.size() != src.size()) dst.resize(src.size());
        if (!src.empty()) std::memcpy(dst.data(), src.data(), src.size());
      } else if (e->key.has_value()) {
        e->key->assign(src);
      } else {
        e->key.emplace(src);
      }
    } else if constexpr (std::is_assignable_v<Key&, const K&>) {
      if (e->key.has_value())
        *e->key = key;
      else
        e->key.emplace(key);
    } else {
      e->key.emplace(key);
    }
    slot.head = e->free_next;  // taken only once the key is in place (exception safety)
    --slot.count;
    e->free_next = nullptr;
    e->hash = h;
    return e;
  }

  // Acquisitions of a multi-key call, counted only once every shard's group is taken (a failed
  // try_lock_all counts nothing, like any failed try).
  struct tally {
    std::uint64_t acquisitions = 0;
    std::uint64_t contended = 0;
  };

  static void add_counts(detail::kmm_cache_slot& slot, const tally& t) noexcept {
    slot.acquisitions.store(slot.acquisitions.load(std::memory_order_relaxed) + t.acquisitions,
                            std::memory_order_relaxed);
    if (t.contended != 0)
      slot.contended.store(slot.contended.load(std::memory_order_relaxed) + t.contended,
                           std::memory_order_relaxed);
  }

  // Back to the thread's cache. The entry is unlinked; late notifiers may still touch its
  // park mutex and condition variables, which stay valid: entries are freed only with the pool.
  static void recycle(detail::kmm_cache_slot& slot, entry* e) noexcept {
    e->next = nullptr;
    e->holders = 0;
    e->free_next = slot.head;
    slot.head = e;
    if (++slot.count > detail::kmm_cache_slot::capacity) slot.spill();
  }

  template <class K>
  entry* find(entry* head, std::size_t h, const K& key) const {
    for (entry* e = head; e != nullptr; e = e->next)
      if (e->hash == h && eq_(*e->key, key)) return e;
    return nullptr;
  }

  static entry* unlink(entry* head, entry* e) noexcept {
    if (head == e) return e->next;
    entry* p = head;
    while (p->next != e) p = p->next;
    p->next = e->next;
    return head;
  }

  // Wakes parkers of `e`. Caller holds the shard lock (so e stays live) and calls notify afterwards.
  static void bump_wake(entry* e) noexcept {
    std::lock_guard<std::mutex> lk(e->park_mutex);
    e->wake_seq.store(e->wake_seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

  // Sleeps until wake_seq moves past `seq` or the deadline passes.
  static void park(entry* e, std::uint32_t seq, detail::kmm_mode mode, detail::kmm_wait wait,
                   clock::time_point deadline) {
    std::condition_variable& cv = mode == detail::kmm_mode::exclusive ? e->park_exclusive : e->park_shared;
    std::unique_lock<std::mutex> lk(e->park_mutex);
    while (e->wake_seq.load(std::memory_order_acquire) == seq) {
      if (wait == detail::kmm_wait::forever) {
        cv.wait(lk);
      } else if (cv.wait_until(lk, deadline) == std::cv_status::timeout) {
        return;
      }
    }
  }

  static bool can_take(const entry* e, detail::kmm_mode mode) noexcept {
    return mode == detail::kmm_mode::exclusive ? e->holders == 0
                                               : e->holders >= 0 && e->exclusive_waiters == 0;
  }

  // ---- acquisition ----------------------------------------------------------------------------

  template <class K>
  entry* acquire(const K& key, detail::kmm_mode mode, detail::kmm_wait wait, clock::time_point deadline) {
    detail::kmm_cache_slot* slot = thread_slot();
    if (slot == nullptr) return acquire_late(key, mode, wait, deadline);
    return acquire_in(*slot, key, mode, wait, deadline);
  }

  // Cold path kept out of acquire's frame (the stand-in slot is 64-byte aligned).
  template <class K>
  [[gnu::noinline]] entry* acquire_late(const K& key, detail::kmm_mode mode, detail::kmm_wait wait,
                                        clock::time_point deadline) {
    detail::kmm_late_slot late;
    late.attach(pool_);
    return acquire_in(late, key, mode, wait, deadline);
  }

  template <class K>
  entry* acquire_in(detail::kmm_cache_slot& slot, const K& key, detail::kmm_mode mode, detail::kmm_wait wait,
                    clock::time_point deadline) {
    const std::size_t h = hash_(key);
    detail::kmm_shard& s = shard_of(h);
    entry* fresh = fresh_entry(slot, key, h);
    if (mode == detail::kmm_mode::exclusive) {
      // Fast path: empty shard -> publish our entry, already held, with one CAS.
      fresh->holders = -1;
      std::uintptr_t expected = 0;
      if (s.word.compare_exchange_strong(expected, reinterpret_cast<std::uintptr_t>(fresh),
                                         std::memory_order_acq_rel, std::memory_order_relaxed)) {
        slot.bump(slot.acquisitions);
        return fresh;
      }
    }
    const K* key_ptr = &key;
    entry* got = nullptr;
    return acquire_group(s, &key_ptr, &h, &fresh, &got, 1, mode, wait, deadline, slot) ? got : nullptr;
  }

  // What to do once the shard lock is released: notify parkers of `wake`, recycle `dead`.
  struct after_unlock {
    entry* wake = nullptr;
    bool wake_shared = false;  // all shared waiters, else one exclusive waiter
    entry* dead = nullptr;
  };

  // Wake-up policy (writer preference). If exclusive waiters exist, wake one of them: a hot key
  // with 16 parked writers wakes 1 thread per hand-over, not 16. Otherwise wake every shared waiter,
  // since they may enter together. Invariant: while an entry with waiters is free, a wake-up is in
  // flight to a waiter that can take it. An exclusive waiter parks only on a held entry, so one
  // that parks after a wake-up and catches it has a holder that will wake again on release; a
  // woken waiter that leaves without taking the entry passes the wake-up on (settle). Shard lock held.
  static after_unlock wake(entry* e) noexcept {
    bump_wake(e);
    return {e, e->exclusive_waiters == 0, nullptr};
  }

  // We stopped waiting on `p` (counts already dropped). Retire it if nobody holds or wants it; if it
  // is free, or we were an exclusive waiter holding back shared waiters, wake the others (we may
  // have taken the only wake-up). Shard lock held.
  static after_unlock settle(entry*& head, entry* p, detail::kmm_mode mode) noexcept {
    after_unlock r;
    if (p == nullptr) return r;
    if (p->holders == 0 && p->waiters == 0) {
      head = unlink(head, p);
      r.dead = p;
    } else if (p->waiters > 0 && (p->holders == 0 || (mode == detail::kmm_mode::exclusive && p->holders > 0 &&
                                                      p->exclusive_waiters == 0))) {
      r = wake(p);
    }
    return r;
  }

  static void notify(const after_unlock& r) noexcept {
    // Entries are freed only with the pool, so notifying an entry that was retired (or even
    // reused) meanwhile is safe: at worst a spurious wake-up, which parkers tolerate. A retired
    // entry has no waiters left from before, so nobody misses the wake-up.
    if (r.wake == nullptr) return;
    if (r.wake_shared)
      r.wake->park_shared.notify_all();
    else
      r.wake->park_exclusive.notify_one();
  }

  static void finish(const after_unlock& r, detail::kmm_cache_slot& slot) noexcept {
    notify(r);
    if (r.dead != nullptr) recycle(slot, r.dead);
  }

  // Takes every key of one shard at once (all-or-nothing). `fresh[i]` is a prepared entry for key i;
  // each is installed or recycled before returning. On success out[i] is key i's entry, counted in
  // `pending` when given, else in the slot's counters. Throws only what KeyEqual (or the standard
  // mutex/condition variable) throws; nothing is held then.
  template <class K>
  bool acquire_group(detail::kmm_shard& s, const K* const* keys, const std::size_t* hashes,
                     entry* const* fresh, entry** out, std::size_t n, detail::kmm_mode mode,
                     detail::kmm_wait wait, clock::time_point deadline, detail::kmm_cache_slot& slot,
                     tally* pending = nullptr) {
    const bool exclusive = mode == detail::kmm_mode::exclusive;
    bool contended = false;
    int spin_rounds = 0;
    entry* parked_on = nullptr;  // entry whose waiter counts include us
    auto recycle_fresh = [&] {
      for (std::size_t i = 0; i < n; ++i) recycle(slot, fresh[i]);
    };
    for (;;) {
      entry* head = head_of(lock_shard(s));
      entry* prev = std::exchange(parked_on, nullptr);
      if (prev != nullptr) {
        --prev->waiters;
        if (exclusive) --prev->exclusive_waiters;
      }
      std::size_t blocker = n;
      try {
        for (std::size_t i = 0; i < n; ++i) {
          out[i] = find(head, hashes[i], *keys[i]);
          if (blocker == n && out[i] != nullptr && !can_take(out[i], mode)) blocker = i;
        }
      } catch (...) {
        const after_unlock r = settle(head, prev, mode);
        unlock_shard(s, head);
        finish(r, slot);
        recycle_fresh();
        throw;
      }
      if (blocker == n) {
        for (std::size_t i = 0; i < n; ++i) {
          if (out[i] == nullptr) {
            out[i] = fresh[i];
            out[i]->holders = exclusive ? -1 : 1;
            out[i]->next = head;
            head = out[i];
          } else {
            out[i]->holders = exclusive ? -1 : out[i]->holders + 1;
          }
        }
        const after_unlock r = settle(head, prev, mode);
        unlock_shard(s, head);
        finish(r, slot);
        for (std::size_t i = 0; i < n; ++i)
          if (out[i] != fresh[i]) recycle(slot, fresh[i]);
        if (pending != nullptr) {
          pending->acquisitions += n;
          if (contended) pending->contended += n;
          return true;
        }
        add_counts(slot, {n, contended ? n : 0});
        return true;
      }
      contended = true;
      if (wait == detail::kmm_wait::try_once ||
          (wait == detail::kmm_wait::until_deadline && clock::now() >= deadline)) {
        const after_unlock r = settle(head, prev, mode);
        unlock_shard(s, head);
        finish(r, slot);
        recycle_fresh();
        return false;
      }
      if (prev == nullptr && spin_rounds < detail::kmm_key_spin_rounds) {
        // Short bounded spin before sleeping: the holder is usually about to let go.
        ++spin_rounds;
        unlock_shard(s, head);
        const std::uintptr_t left = s.word.load(std::memory_order_relaxed);
        for (int i = 0; i < detail::kmm_key_spins; ++i) {
          detail::kmm_cpu_relax();
          if (s.word.load(std::memory_order_relaxed) != left) break;
        }
        continue;
      }
      entry* b = out[blocker];
      const after_unlock r = settle(head, prev, mode);  // b is held or wanted: settle never retires b
      ++b->waiters;
      if (exclusive) ++b->exclusive_waiters;
      const std::uint32_t seq = b->wake_seq.load(std::memory_order_relaxed);
      unlock_shard(s, head);
      finish(r, slot);
      parked_on = b;  // our counts keep b live until we drop them under the shard lock
      slot.bump(slot.sleeps);
      try {
        park(b, seq, mode, wait, deadline);
      } catch (...) {
        head = head_of(lock_shard(s));
        --b->waiters;
        if (exclusive) --b->exclusive_waiters;
        const after_unlock r2 = settle(head, b, mode);
        unlock_shard(s, head);
        finish(r2, slot);
        recycle_fresh();
        throw;
      }
    }
  }

  // ---- release --------------------------------------------------------------------------------

  void release(entry* e, detail::kmm_mode mode) noexcept {
    detail::kmm_shard& s = shard_of(e->hash);
    detail::kmm_cache_slot* slot = nullptr;  // nullptr: entries go straight to the pool
    try {
      slot = thread_slot();
    } catch (...) {
      slot = nullptr;  // could not attach a thread cache: the entry goes straight to the pool
    }
    if (mode == detail::kmm_mode::exclusive) {
      // Fast path: we are the shard's only entry and nobody waits -> empty the shard with one CAS.
      std::uintptr_t expected = reinterpret_cast<std::uintptr_t>(e);
      if (s.word.compare_exchange_strong(expected, 0, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        give_back(slot, e);
        return;
      }
    }
    entry* head = head_of(lock_shard(s));
    if (mode == detail::kmm_mode::exclusive)
      e->holders = 0;
    else
      --e->holders;
    after_unlock r;
    if (e->holders == 0) {
      if (e->waiters == 0) {
        head = unlink(head, e);
        r.dead = e;
      } else {
        r = wake(e);
      }
    }
    unlock_shard(s, head);
    notify(r);
    if (r.dead != nullptr) give_back(slot, r.dead);
  }

  void give_back(detail::kmm_cache_slot* slot, entry* e) noexcept {
    if (slot != nullptr) {
      recycle(*slot, e);
      return;
    }
    e->next = nullptr;
    e->holders = 0;
    std::lock_guard<std::mutex> lk(pool_->mutex);
    e->free_next = pool_->free_head;
    pool_->free_head = e;
  }

  // ---- multi-key ------------------------------------------------------------------------------

  template <class... Ks>
  multi_guard acquire_variadic(detail::kmm_wait wait, clock::time_point deadline, const Ks&... keys) {
    constexpr std::size_t n = sizeof...(Ks);
    using first = std::decay_t<std::tuple_element_t<0, std::tuple<Ks...>>>;
    if constexpr ((std::is_same_v<std::decay_t<Ks>, first> && ...) &&
                  !std::is_array_v<std::remove_cvref_t<std::tuple_element_t<0, std::tuple<Ks...>>>>) {
      const std::array<const first*, n> ptrs{&keys...};
      return acquire_all_at(
          n, [&](std::size_t i) -> const first& { return *ptrs[i]; }, wait, deadline);
    } else {
      using common = std::common_type_t<std::decay_t<Ks>...>;
      const std::array<common, n> converted{common(keys)...};
      return acquire_all_at(
          n, [&](std::size_t i) -> const common& { return converted[i]; }, wait, deadline);
    }
  }

  template <class K>
  multi_guard acquire_all(std::span<const K> keys, detail::kmm_wait wait, clock::time_point deadline) {
    return acquire_all_at(
        keys.size(), [&](std::size_t i) -> const K& { return keys[i]; }, wait, deadline);
  }

  // key_at(i) -> const K& for i < count.
  template <class KeyAt>
  multi_guard acquire_all_at(std::size_t count, KeyAt key_at, detail::kmm_wait wait,
                             clock::time_point deadline) {
    using K = std::remove_cvref_t<decltype(key_at(std::size_t{0}))>;
    struct item {
      std::size_t hash;
      std::size_t shard;
      const K* key;
    };
    std::vector<item> items;
    items.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      const K& k = key_at(i);
      const std::size_t h = hash_(k);
      items.push_back(item{h, shard_index(h), &k});
    }
    // Global order: (shard, hash). Equal keys have equal hashes, so duplicates are adjacent.
    std::sort(items.begin(), items.end(), [](const item& a, const item& b) {
      return a.shard != b.shard ? a.shard < b.shard : a.hash < b.hash;
    });
    std::size_t kept = 0;
    for (std::size_t i = 0; i < items.size(); ++i) {
      bool dup = false;
      for (std::size_t j = kept; j-- > 0 && items[j].hash == items[i].hash;) {
        if (eq_(*items[j].key, *items[i].key)) {
          dup = true;
          break;
        }
      }
      if (!dup) items[kept++] = items[i];
    }
    items.resize(kept);

    multi_guard g;
    g.map_ = this;
    g.entries_.reserve(kept);
    std::vector<const K*> kp(kept);
    std::vector<std::size_t> hs(kept);
    std::vector<entry*> fr(kept);
    std::vector<entry*> out(kept);
    std::optional<detail::kmm_late_slot> late;
    detail::kmm_cache_slot& slot = my_slot(late);
    tally taken;
    // All keys of one shard are taken at once, so ties in the order never split across waits.
    for (std::size_t b = 0; b < kept;) {
      std::size_t e = b;
      while (e < kept && items[e].shard == items[b].shard) ++e;
      const std::size_t n = e - b;
      std::size_t prepared = 0;
      try {
        for (; prepared < n; ++prepared) {
          kp[prepared] = items[b + prepared].key;
          hs[prepared] = items[b + prepared].hash;
          fr[prepared] = fresh_entry(slot, *kp[prepared], hs[prepared]);
        }
      } catch (...) {
        for (std::size_t i = 0; i < prepared; ++i) recycle(slot, fr[i]);
        throw;  // g releases the shards taken so far
      }
      if (!acquire_group(shards_[items[b].shard], kp.data(), hs.data(), fr.data(), out.data(), n,
                         detail::kmm_mode::exclusive, wait, deadline, slot, &taken))
        return multi_guard{};  // g releases the shards taken so far
      for (std::size_t i = 0; i < n; ++i) g.entries_.push_back(out[i]);
      b = e;
    }
    add_counts(slot, taken);
    return g;
  }

  // Deadlines saturate (noclobber/duration.hpp): a timeout of any length or a time_point at
  // either end of its clock's range is "never" or "already past", not an overflow; NaN is never.
  template <class Rep, class Period>
  static clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) {
    return saturating_deadline<clock>(clock::now(), saturating_cast_ns(d));
  }
  template <class Clock, class Duration>
  static clock::time_point to_steady(std::chrono::time_point<Clock, Duration> when) {
    if constexpr (std::is_same_v<Clock, clock> && std::is_same_v<Duration, clock::duration>) {
      return when;
    } else {
      if (when == std::chrono::time_point<Clock, Duration>::max()) return clock::time_point::max();
      const auto now = Clock::now();
      return deadline_after(saturating_sub(saturating_cast_ns(when.time_since_epoch()),
                                           saturating_cast_ns(now.time_since_epoch())));
    }
  }

  Hash hash_;
  KeyEqual eq_;
  std::size_t shard_count_ = 0;
  int shard_shift_ = 0;
  std::size_t shard_mask_ = 0;
  std::unique_ptr<detail::kmm_shard[]> shards_;
  std::shared_ptr<detail::kmm_pool_base> pool_;  // a detail::kmm_pool<Key>
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
  basic_guard(keyed_mutex_map* map, entry* e) noexcept : map_(e != nullptr ? map : nullptr), entry_(e) {}
  static constexpr const char* name() noexcept {
    return Mode == detail::kmm_mode::exclusive ? "keyed_mutex_map::guard" : "keyed_mutex_map::shared_guard";
  }
  void reset() noexcept {
    if (entry_ != nullptr) map_->release(std::exchange(entry_, nullptr), Mode);
    map_ = nullptr;
  }

  keyed_mutex_map* map_ = nullptr;
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
  void reset() noexcept {
    while (!entries_.empty()) {
      entry* e = entries_.back();
      entries_.pop_back();
      map_->release(e, detail::kmm_mode::exclusive);
    }
    map_ = nullptr;
  }

  keyed_mutex_map* map_ = nullptr;
  std::vector<entry*> entries_;
};

}  // namespace noclobber
