// noclobber/keyed_mutex_map/core.hpp — the machinery behind keyed_mutex_map's public class:
// shards, the pool, and the acquire / release algorithms for one key and for several.
//
// Overview
// --------
// kmm_core<Key, Hash, KeyEqual> owns the shards (keyed_mutex_map/shard.hpp) and the entry pool
// (keyed_mutex_map/entry_pool.hpp) and hands out entries; keyed_mutex_map (the public class) wraps
// what it returns in guards.
//
//   one key      acquire: an exclusive lock of a key whose shard is empty publishes a fresh
//                entry, already held, with one CAS (the fast path); everything else goes through
//                acquire_waiting with a one-key set.
//   several      acquire_range / acquire_variadic: hash every key, order them by (shard, hash),
//                fold duplicates, then take them shard by shard in ascending shard order, all keys
//                of one shard at once under its lock (acquire_waiting with a group set). Two
//                multi-key calls can never deadlock each other; ties never split across waits.
//   release      an exclusive holder that is its shard's only entry with nobody waiting empties
//                the shard with one CAS; otherwise under the shard lock, waking waiters
//                (keyed_mutex_map/parking.hpp) or retiring the entry.
//
// acquire_waiting is the one place where a thread waits for keys: look up, take all or find a
// blocker, give up (try / deadline), spin a little, park on the blocker, retry. A key set is what
// it takes: kmm_core::one_key or kmm_core::group (one shard's keys of a multi-key call).
//
// Invariants: an entry is in its shard's chain iff it is held or has waiters; a thread's waiter
// counts on an entry are dropped under the shard lock before it looks again (and the entry
// settled); fresh entries a call prepared are installed or recycled before it returns or throws.
// Lock order and wake-up rules: keyed_mutex_map/parking.hpp.
//
// Thread safety: every member may be called concurrently, except construction and destruction.
// User code: Hash and Key's construction run under no lock; KeyEqual runs under a shard lock (if
// it throws, the shard is restored and nothing is held).
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "noclobber/duration.hpp"
#include "noclobber/keyed_mutex_map/entry_pool.hpp"
#include "noclobber/keyed_mutex_map/options.hpp"
#include "noclobber/keyed_mutex_map/parking.hpp"
#include "noclobber/keyed_mutex_map/shard.hpp"
#include "noclobber/keyed_mutex_map/thread_cache.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber::detail {

template <class H, class E>
inline constexpr bool kmm_transparent = requires {
  typename H::is_transparent;
  typename E::is_transparent;
};

/// Deadline `d` from now on the steady clock, saturating: any length is fine (hours::max() and
/// nanoseconds::max() mean "never"; zero and negative mean "already past"; NaN means never).
template <class Rep, class Period>
[[nodiscard]] kmm_clock::time_point kmm_deadline_after(std::chrono::duration<Rep, Period> d) {
  return saturating_deadline<kmm_clock>(kmm_clock::now(), saturating_cast_ns(d));
}

/// `when` on the steady clock, saturating: the ends of any clock's range stay ends (max(): never;
/// min(): already past), and coarse time points never overflow on their way to nanoseconds.
template <class Clock, class Duration>
[[nodiscard]] kmm_clock::time_point kmm_to_steady(std::chrono::time_point<Clock, Duration> when) {
  if (when == std::chrono::time_point<Clock, Duration>::max()) return kmm_clock::time_point::max();
  const std::chrono::nanoseconds at = saturating_cast_ns(when.time_since_epoch());
  if constexpr (std::is_same_v<Clock, kmm_clock>) {
    return saturating_deadline<kmm_clock>(kmm_clock::time_point{}, at);
  } else {
    // `now` is a real reading of Clock, never nanoseconds::min(), so negating it cannot overflow.
    const std::chrono::nanoseconds now = saturating_cast_ns(Clock::now().time_since_epoch());
    return kmm_deadline_after(saturating_add(at, -now));
  }
}

template <class Key, class Hash, class KeyEqual>
class kmm_core {
 public:
  using entry = kmm_entry<Key>;

  /// K can be looked up without conversion (Key itself, or anything when Hash and KeyEqual are
  /// transparent): the single-key functions' constraint.
  template <class K>
  static constexpr bool lookup_key =
      std::is_same_v<std::remove_cvref_t<K>, Key> || kmm_transparent<Hash, KeyEqual>;
  /// K can be hashed, compared and stored as it is.
  template <class K>
  static constexpr bool key_in_place =
      lookup_key<K>&& std::is_invocable_v<Hash&, const K&>&& std::is_constructible_v<Key, const K&>;
  /// An element type the multi-key functions take: in place, or converted to Key first.
  template <class K>
  static constexpr bool multi_key = key_in_place<K> || std::is_convertible_v<const K&, Key>;

  kmm_core(std::size_t shard_count, Hash hash, KeyEqual eq) : hash_(std::move(hash)), eq_(std::move(eq)) {
    const std::size_t n = shard_count;
    if (n == 0 || (n & (n - 1)) != 0)
      throw std::invalid_argument("keyed_mutex_map: shard_count must be a power of two >= 1, got " +
                                  std::to_string(n));
    int bits = 0;
    while ((std::size_t{1} << bits) < n) ++bits;
    shard_shift_ = bits == 0 ? 0 : 64 - bits;  // n == 1: shift 0, mask 0
    shard_mask_ = n - 1;
    shards_ = std::make_unique<kmm_shard[]>(n);
    shard_count_ = n;
    pool_ = std::make_shared<kmm_pool<Key>>();
  }
  kmm_core(const kmm_core&) = delete;
  kmm_core& operator=(const kmm_core&) = delete;

  // Precondition: nothing held. Entries cached by other threads go back to the shared pool,
  // which is freed when the last of them lets go.
  ~kmm_core() {
    for (std::size_t i = 0; i < shard_count_; ++i) {
      entry* e = kmm_head_of<entry>(shards_[i].word.load(std::memory_order_acquire));
      while (e != nullptr) {  // only reached if the precondition was broken; don't leak
        entry* next = e->next;
        delete e;
        e = next;
      }
    }
  }

  // ---- one key --------------------------------------------------------------------------------

  /// The entry of `key`, held in `mode`; nullptr when a try or timed wait gave up. (Inlined into
  /// the public functions: a call level here costs the uncontended lock ~5% in instructions.)
  template <class K>
  [[gnu::always_inline]] inline entry* acquire(const K& key, kmm_mode mode, kmm_wait wait,
                                               kmm_clock::time_point deadline) {
    kmm_cache_slot* slot = thread_slot();
    if (slot == nullptr) return acquire_late(key, mode, wait, deadline);
    return acquire_in(*slot, key, mode, wait, deadline);
  }

  void release(entry* e, kmm_mode mode) noexcept {
    kmm_shard& s = shard_of(e->hash);
    kmm_cache_slot* slot = nullptr;  // nullptr: entries go straight to the pool
    try {
      slot = thread_slot();
    } catch (...) {
      slot = nullptr;  // could not attach a thread cache: the entry goes straight to the pool
    }
    if (mode == kmm_mode::exclusive) {
      // Fast path: we are the shard's only entry and nobody waits -> empty the shard with one CAS.
      std::uintptr_t expected = reinterpret_cast<std::uintptr_t>(e);
      if (s.word.compare_exchange_strong(expected, 0, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        kmm_give_back(slot, *pool_, e);
        return;
      }
    }
    entry* head = kmm_head_of<entry>(s.lock());
    if (mode == kmm_mode::exclusive)
      e->holders = 0;
    else
      --e->holders;
    kmm_after_unlock<Key> r;
    if (e->holders == 0) {
      if (e->waiters == 0) {
        head = kmm_unlink(head, e);
        r.dead = e;
      } else {
        r = kmm_wake(e);
      }
    }
    s.unlock(kmm_word_for(head));
    kmm_notify(r);
    kmm_count_wakeup(r, slot, *pool_);
    if (r.dead != nullptr) kmm_give_back(slot, *pool_, r.dead);
  }

  // ---- several keys (exclusive) ---------------------------------------------------------------
  // Each appends the entries it takes to `held` (in lock order) and returns false when a try or
  // timed wait gave up. Whether it returns false or throws, `held` keeps what was taken so far,
  // for the caller to release.

  /// The keys of an input range; elements used in place (key_in_place) or converted to Key.
  template <class R>
  bool acquire_range(R&& keys, kmm_wait wait, kmm_clock::time_point deadline, std::vector<entry*>& held) {
    using ref = std::ranges::range_reference_t<R>;
    using V = std::remove_cvref_t<ref>;
    if constexpr (key_in_place<V> && std::ranges::forward_range<R> && std::is_lvalue_reference_v<ref>) {
      std::vector<key_ref<V>> refs;
      if constexpr (std::ranges::sized_range<R>)
        refs.reserve(static_cast<std::size_t>(std::ranges::size(keys)));
      for (const V& k : keys) refs.push_back(ref_to(k));
      return acquire_refs(refs, wait, deadline, held);
    } else {
      // Elements that do not stay put (an input range, prvalues) or that need converting: copy.
      using stored = std::conditional_t<key_in_place<V>, V, Key>;
      std::vector<stored> copies;
      for (auto&& k : keys) copies.emplace_back(std::forward<decltype(k)>(k));
      return acquire_range(copies, wait, deadline, held);
    }
  }

  /// lock_all(k1, k2, ...): keys of one type are used in place; mixed types are converted to
  /// their common type first (e.g. std::string_view for std::string + const char*).
  template <class... Ks>
  bool acquire_variadic(kmm_wait wait, kmm_clock::time_point deadline, std::vector<entry*>& held,
                        const Ks&... keys) {
    using first_arg = std::remove_cvref_t<std::tuple_element_t<0, std::tuple<Ks...>>>;
    using first = std::decay_t<first_arg>;
    if constexpr ((std::is_same_v<std::decay_t<Ks>, first> && ...) && !std::is_array_v<first_arg>) {
      std::vector<key_ref<first>> refs{ref_to(keys)...};
      return acquire_refs(refs, wait, deadline, held);
    } else {
      using common = std::common_type_t<std::decay_t<Ks>...>;
      const std::array<common, sizeof...(Ks)> converted{common(keys)...};
      return acquire_range(converted, wait, deadline, held);
    }
  }

  // ---- observation ----------------------------------------------------------------------------

  std::size_t size() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      entry* head = kmm_head_of<entry>(shards_[i].lock());
      for (entry* e = head; e != nullptr; e = e->next) ++n;
      unlock(shards_[i], head);
    }
    return n;
  }

  keyed_mutex_map_counters counters() const {
    keyed_mutex_map_counters c;
    kmm_pool_base& pool = *pool_;
    annotated_lock lk(pool.mutex);
    c.acquisitions = pool.detached_acquisitions;
    c.contended_acquisitions = pool.detached_contended;
    c.sleeps = pool.detached_sleeps;
    c.wakeups = pool.detached_wakeups;
    c.shared_wakeups = pool.detached_shared_wakeups;
    for (const kmm_cache_slot* s : pool.attached) {
      c.acquisitions += s->acquisitions.load(std::memory_order_relaxed);
      c.contended_acquisitions += s->contended.load(std::memory_order_relaxed);
      c.sleeps += s->sleeps.load(std::memory_order_relaxed);
      c.wakeups += s->wakeups.load(std::memory_order_relaxed);
      c.shared_wakeups += s->shared_wakeups.load(std::memory_order_relaxed);
    }
    return c;
  }

  std::size_t shard_count() const noexcept { return shard_count_; }

 private:
  // ---- shards and thread caches ---------------------------------------------------------------

  kmm_shard& shard_of(std::size_t h) const noexcept {
    // Fibonacci mixing: std::hash of integers is the identity; take the well-mixed high bits.
    const std::uint64_t mixed = static_cast<std::uint64_t>(h) * 0x9E3779B97F4A7C15ull;
    return shards_[static_cast<std::size_t>(mixed >> shard_shift_) & shard_mask_];
  }
  std::size_t shard_index(std::size_t h) const noexcept {
    return static_cast<std::size_t>(&shard_of(h) - shards_.get());
  }
  static void unlock(kmm_shard& s, entry* head) noexcept { s.unlock(kmm_word_for(head)); }

  // This thread's cache slot for our pool, or nullptr on a thread whose cache is already destroyed
  // (a thread_local destructor running late).
  kmm_cache_slot* thread_slot() const {
    kmm_thread_cache* c = kmm_this_thread_cache();
    return c != nullptr ? &c->slot_for(pool_) : nullptr;
  }
  // As thread_slot(), but on a thread without a cache a slot in `late` that lives for the call.
  kmm_cache_slot& my_slot(std::optional<kmm_late_slot>& late) const {
    if (kmm_cache_slot* s = thread_slot()) return *s;
    late.emplace();
    late->attach(pool_);
    return *late;
  }

  template <class K>
  entry* find(entry* head, std::size_t h, const K& key) const {
    for (entry* e = head; e != nullptr; e = e->next)
      if (e->hash == h && eq_(*e->key, key)) return e;
    return nullptr;
  }

  // ---- one key --------------------------------------------------------------------------------

  // Cold path kept out of acquire's frame (the stand-in slot is 64-byte aligned).
  template <class K>
  [[gnu::noinline]] entry* acquire_late(const K& key, kmm_mode mode, kmm_wait wait,
                                        kmm_clock::time_point deadline) {
    kmm_late_slot late;
    late.attach(pool_);
    return acquire_in(late, key, mode, wait, deadline);
  }

  template <class K>
  entry* acquire_in(kmm_cache_slot& slot, const K& key, kmm_mode mode, kmm_wait wait,
                    kmm_clock::time_point deadline) {
    const std::size_t h = hash_(key);
    kmm_shard& s = shard_of(h);
    entry* fresh = kmm_take_entry<Key>(slot, key, h);
    if (mode == kmm_mode::exclusive) {
      // Fast path: empty shard -> publish our entry, already held, with one CAS.
      fresh->holders = -1;
      std::uintptr_t expected = 0;
      if (s.word.compare_exchange_strong(expected, reinterpret_cast<std::uintptr_t>(fresh),
                                         std::memory_order_acq_rel, std::memory_order_relaxed)) {
        kmm_cache_slot::bump(slot.acquisitions);
        return fresh;
      }
    }
    one_key<K> keys{key, h, fresh};
    return acquire_waiting(s, keys, mode, wait, deadline, slot) ? keys.got : nullptr;
  }

  // ---- key sets for acquire_waiting -----------------------------------------------------------
  // A key set looks its keys up in the shard's chain (find_blocker: nullptr when all can be taken
  // now, else an entry that blocks; may throw what KeyEqual throws), takes them all (take_all:
  // installs its fresh entries for keys not in the chain), and recycles the fresh entries it did
  // not install: after taking (recycle_unused) or when giving up (recycle_all).

  template <class K>
  struct one_key {
    const K& key;
    std::size_t hash;
    entry* fresh;
    entry* got = nullptr;

    static constexpr std::size_t size() noexcept { return 1; }
    entry* find_blocker(const kmm_core& core, entry* head, kmm_mode mode) {
      got = core.find(head, hash, key);
      return got != nullptr && !kmm_can_take(got, mode) ? got : nullptr;
    }
    void take_all(entry*& head, kmm_mode mode) noexcept {
      if (got != nullptr) return kmm_take(got, mode);
      got = fresh;
      got->holders = mode == kmm_mode::exclusive ? -1 : 1;
      got->next = std::exchange(head, got);
    }
    void recycle_unused(kmm_cache_slot& slot) noexcept {
      if (got != fresh) kmm_recycle(slot, fresh);
    }
    void recycle_all(kmm_cache_slot& slot) noexcept { kmm_recycle(slot, fresh); }
  };

  /// A key with its hash and shard, for the multi-key functions. `key` points into the caller's
  /// keys, which outlive the call.
  template <class K>
  struct key_ref {
    std::size_t hash;
    std::size_t shard;
    const K* key;
  };
  template <class K>
  key_ref<K> ref_to(const K& k) {
    const std::size_t h = hash_(k);
    return {h, shard_index(h), &k};
  }

  /// The keys refs[0 … n) of one shard (exclusive); fresh[i] is a prepared entry for key i and
  /// out[i] receives key i's entry.
  template <class K>
  struct group {
    const key_ref<K>* refs;
    entry* const* fresh;
    entry** out;
    std::size_t n;

    std::size_t size() const noexcept { return n; }
    entry* find_blocker(const kmm_core& core, entry* head, kmm_mode mode) {
      entry* blocker = nullptr;
      for (std::size_t i = 0; i < n; ++i) {
        out[i] = core.find(head, refs[i].hash, *refs[i].key);
        if (blocker == nullptr && out[i] != nullptr && !kmm_can_take(out[i], mode)) blocker = out[i];
      }
      return blocker;
    }
    void take_all(entry*& head, kmm_mode mode) noexcept {
      for (std::size_t i = 0; i < n; ++i) {
        if (out[i] != nullptr) {
          kmm_take(out[i], mode);
          continue;
        }
        out[i] = fresh[i];
        out[i]->holders = mode == kmm_mode::exclusive ? -1 : 1;
        out[i]->next = std::exchange(head, out[i]);
      }
    }
    void recycle_unused(kmm_cache_slot& slot) noexcept {
      for (std::size_t i = 0; i < n; ++i)
        if (out[i] != fresh[i]) kmm_recycle(slot, fresh[i]);
    }
    void recycle_all(kmm_cache_slot& slot) noexcept {
      for (std::size_t i = 0; i < n; ++i) kmm_recycle(slot, fresh[i]);
    }
  };

  // ---- waiting for a key set ------------------------------------------------------------------

  /// Acquisitions of a multi-key call, added to the slot's counters only once every shard's keys
  /// are taken (a failed try_lock_all counts nothing, like any failed try).
  struct tally {
    std::uint64_t acquisitions = 0;
    std::uint64_t contended = 0;
  };

  /// Settles the entry we stopped waiting on, releases the shard lock, then notifies / recycles.
  static void unlock_settled(kmm_shard& s, entry* head, entry* prev, kmm_mode mode,
                             kmm_cache_slot& slot) noexcept {
    const kmm_after_unlock<Key> r = kmm_settle(head, prev, mode);
    unlock(s, head);
    kmm_finish(r, slot);
  }

  /// Takes every key of `keys` (all in shard `s`) at once, all-or-nothing, waiting as `wait` says.
  /// False when a try or timed wait gave up. Whatever happens, the set's fresh entries are
  /// installed or recycled. The keys taken are counted in `pending` when given, else in the slot.
  /// Throws only what KeyEqual (or the standard mutex / condition variable) throws; nothing is
  /// held then.
  template <class KeySet>
  bool acquire_waiting(kmm_shard& s, KeySet& keys, kmm_mode mode, kmm_wait wait,
                       kmm_clock::time_point deadline, kmm_cache_slot& slot, tally* pending = nullptr) {
    bool contended = false;
    int spin_rounds = 0;
    entry* parked_on = nullptr;  // entry whose waiter counts include us
    for (;;) {
      entry* head = kmm_head_of<entry>(s.lock());
      entry* prev = std::exchange(parked_on, nullptr);
      if (prev != nullptr) kmm_drop_waiter(prev, mode);
      entry* blocker = nullptr;
      try {
        blocker = keys.find_blocker(*this, head, mode);
      } catch (...) {
        unlock_settled(s, head, prev, mode, slot);
        keys.recycle_all(slot);
        throw;
      }
      if (blocker == nullptr) {  // take them all
        keys.take_all(head, mode);
        unlock_settled(s, head, prev, mode, slot);
        keys.recycle_unused(slot);
        if (pending != nullptr) {
          pending->acquisitions += keys.size();
          if (contended) pending->contended += keys.size();
          return true;
        }
        kmm_cache_slot::bump(slot.acquisitions, keys.size());
        if (contended) kmm_cache_slot::bump(slot.contended, keys.size());
        return true;
      }
      contended = true;
      if (wait == kmm_wait::try_once || (wait == kmm_wait::until_deadline && kmm_clock::now() >= deadline)) {
        unlock_settled(s, head, prev, mode, slot);
        keys.recycle_all(slot);
        return false;
      }
      if (prev == nullptr && spin_rounds < kmm_key_spin_rounds) {
        // Short bounded spin before sleeping: the holder is usually about to let go.
        ++spin_rounds;
        unlock(s, head);
        s.spin_while_unchanged(s.word.load(std::memory_order_relaxed));
        continue;
      }
      // Park on the blocker. It is held or wanted, so settling `prev` never retires it.
      const kmm_after_unlock<Key> r = kmm_settle(head, prev, mode);
      kmm_add_waiter(blocker, mode);
      const std::uint32_t seq = blocker->wake_seq.load(std::memory_order_relaxed);
      unlock(s, head);
      kmm_finish(r, slot);
      parked_on = blocker;  // our counts keep it live until we drop them under the shard lock
      kmm_cache_slot::bump(slot.sleeps);
      try {
        kmm_park(blocker, seq, mode, wait, deadline);
      } catch (...) {
        head = kmm_head_of<entry>(s.lock());
        kmm_drop_waiter(blocker, mode);
        unlock_settled(s, head, blocker, mode, slot);
        keys.recycle_all(slot);
        throw;
      }
    }
  }

  // ---- several keys ---------------------------------------------------------------------------

  /// Global lock order: (shard, hash). Equal keys have equal hashes, so after sorting duplicates
  /// are adjacent within a run of equal hashes, and folding them compares only within such runs.
  template <class K>
  void order_and_fold(std::vector<key_ref<K>>& refs) const {
    std::sort(refs.begin(), refs.end(), [](const key_ref<K>& a, const key_ref<K>& b) {
      return a.shard != b.shard ? a.shard < b.shard : a.hash < b.hash;
    });
    std::size_t kept = 0;
    for (std::size_t i = 0; i < refs.size(); ++i) {
      bool dup = false;
      for (std::size_t j = kept; j-- > 0 && refs[j].hash == refs[i].hash;) {
        if (eq_(*refs[j].key, *refs[i].key)) {
          dup = true;
          break;
        }
      }
      if (!dup) refs[kept++] = refs[i];
    }
    refs.resize(kept);
  }

  /// Orders and folds `refs`, then takes them shard by shard (see the contract above).
  template <class K>
  bool acquire_refs(std::vector<key_ref<K>>& refs, kmm_wait wait, kmm_clock::time_point deadline,
                    std::vector<entry*>& held) {
    order_and_fold(refs);
    held.reserve(held.size() + refs.size());  // appending below must not throw with keys held
    std::vector<entry*> fresh(refs.size());
    std::vector<entry*> out(refs.size());
    std::optional<kmm_late_slot> late;
    kmm_cache_slot& slot = my_slot(late);
    tally taken;
    for (std::size_t b = 0; b < refs.size();) {
      std::size_t e = b;
      while (e < refs.size() && refs[e].shard == refs[b].shard) ++e;
      const std::size_t n = e - b;
      std::size_t prepared = 0;
      try {
        for (; prepared < n; ++prepared)
          fresh[prepared] = kmm_take_entry<Key>(slot, *refs[b + prepared].key, refs[b + prepared].hash);
      } catch (...) {
        for (std::size_t i = 0; i < prepared; ++i) kmm_recycle(slot, fresh[i]);
        throw;  // the caller releases the shards taken so far
      }
      group<K> keys{refs.data() + b, fresh.data(), out.data(), n};
      if (!acquire_waiting(shards_[refs[b].shard], keys, kmm_mode::exclusive, wait, deadline, slot, &taken))
        return false;
      held.insert(held.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
      b = e;
    }
    kmm_cache_slot::bump(slot.acquisitions, taken.acquisitions);
    if (taken.contended != 0) kmm_cache_slot::bump(slot.contended, taken.contended);
    return true;
  }

  Hash hash_;
  KeyEqual eq_;
  std::size_t shard_count_ = 0;
  int shard_shift_ = 0;
  std::size_t shard_mask_ = 0;
  std::unique_ptr<kmm_shard[]> shards_;
  std::shared_ptr<kmm_pool_base> pool_;  // a kmm_pool<Key>
};

}  // namespace noclobber::detail
