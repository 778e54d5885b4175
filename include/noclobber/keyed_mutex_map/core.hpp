// noclobber/keyed_mutex_map/core.hpp — the machinery behind keyed_mutex_map's public class:
// shards, the pool, and the acquire / release algorithms for one key.
//
// Overview
// --------
// kmm_core<Key, Hash, KeyEqual> adds the key's Hash and KeyEqual to the shards and pool of
// kmm_shards (keyed_mutex_map/shards.hpp) and hands out entries; keyed_mutex_map (the public
// class) wraps what it returns in guards. The multi-key functions are in keyed_mutex_map/multi_key.hpp.
//
//   hot path    the key's entry heads its shard's chain (the usual case for a key seen before,
//               live or dead; entry_state.hpp): take a reference and the hold with one CAS on the
//               entry's state word, compare the key, done; let go with one CAS. No shard lock, no
//               write to the shard word, no key copy.
//   fast path   an empty shard gets a fresh entry, already held, with one CAS on the shard word;
//               a shard whose only entry is dead (another key's) gets it replaced the same way.
//   slow path   anything else: under the shard lock, unlink dead entries, then find the key's
//               entry or install a fresh one. The lock-free lookup walks at most
//               kmm_walk_limit entries of the chain before it takes this path.
//   waiting     a key held by someone else: spin briefly on the state word, then park in the
//               shard's queue (keyed_mutex_map/parking.hpp) until woken or handed the key.
//   release     one CAS on the state word; if that frees a key with parked waiters and nobody
//               woken, under the shard lock wake the first waiter or hand the key to it. The
//               last reference leaves the entry dead in its chain, for the next lock to revive.
//
// Invariants: a chain holds at most one unclaimed entry per key (entries are created only on an
// empty shard or by replacing the shard's only entry, each with one CAS on the shard word, or
// under the shard lock after a full look); a claimed entry is unlinked by its claimer; the key
// and hash of an entry in a chain are fixed; fresh entries a call prepared are installed or
// recycled before it returns or throws; a waiter's reference keeps its entry from being claimed
// while it waits. Wake-up rules: keyed_mutex_map/parking.hpp.
//
// Thread safety: every member may be called concurrently, except construction and destruction.
// User code: Hash and Key's construction run under no lock; KeyEqual runs under no lock (the
// lock-free lookup, holding a reference to the entry) or under a shard lock (if it throws,
// nothing is held and every reference taken is dropped).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "noclobber/duration.hpp"
#include "noclobber/keyed_mutex_map/entry_pool.hpp"
#include "noclobber/keyed_mutex_map/entry_state.hpp"
#include "noclobber/keyed_mutex_map/options.hpp"
#include "noclobber/keyed_mutex_map/parking.hpp"
#include "noclobber/keyed_mutex_map/shard.hpp"
#include "noclobber/keyed_mutex_map/shards.hpp"
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

// Test seam: a test program that defines NOCLOBBER_KMM_TEST_WINDOW(point) before its first include
// can stop a thread inside a lock-free window (tests/test_keyed_mutex_map_windows.cpp). Expands to
// nothing otherwise.
#ifndef NOCLOBBER_KMM_TEST_WINDOW
#define NOCLOBBER_KMM_TEST_WINDOW(point) static_cast<void>(0)
#endif

inline constexpr int kmm_walk_limit = 8;  // entries a lock-free lookup looks at before taking the lock

template <class Key, class Hash, class KeyEqual>
class kmm_core : public kmm_shards<Key> {
  using base = kmm_shards<Key>;

 protected:
  using base::claim;
  using base::finish;
  using base::give_back;
  using base::pass_on_locked;
  using base::pin;
  using base::release_locked;
  using base::shard_of;
  using base::sweep_dead;
  using base::take_or_queue;
  using base::take_referenced;
  using base::thread_slot;
  using base::unlink_claimed;
  using base::unpin;
  using typename base::after_unlock;
  using typename base::pinned;

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

  kmm_core(const keyed_mutex_map_options& options, Hash hash, KeyEqual eq)
      : base(options), hash_(std::move(hash)), eq_(std::move(eq)) {}

  // ---- one key --------------------------------------------------------------------------------

  /// The entry of `key`, held in `mode`; nullptr when a try, a deadline or a stop request gave up.
  /// (Inlined into the public functions: a call level here costs the uncontended lock ~5%.)
  template <class K>
  [[gnu::always_inline]] inline entry* acquire(const K& key, kmm_mode mode, const kmm_wait_spec& wait) {
    kmm_cache_slot* slot = thread_slot();
    if (slot == nullptr) return acquire_late(key, mode, wait);
    return acquire_in(*slot, key, mode, wait);
  }

  /// Lets go of a hold of `mode` on `e` (and the reference that came with it): one CAS, unless it
  /// must wake a parked waiter. The last reference leaves the entry dead in its chain.
  void release(entry* e, kmm_mode mode) noexcept {
    std::uint64_t st = e->state.load(std::memory_order_relaxed);
    std::uint64_t after = 0;
    do {
      after = st - kmm_ref_one - kmm_hold_of(mode);
      if (kmm_release_must_wake(after))
        return release_waking(shard_of(e->hash.load(std::memory_order_relaxed)), e, mode);
    } while (
        !e->state.compare_exchange_weak(st, after, std::memory_order_release, std::memory_order_relaxed));
  }

 protected:
  Hash hash_;
  KeyEqual eq_;

 private:
  // ---- one key --------------------------------------------------------------------------------

  // Cold path kept out of acquire's frame (the stand-in slot is 64-byte aligned).
  template <class K>
  [[gnu::noinline]] entry* acquire_late(const K& key, kmm_mode mode, const kmm_wait_spec& wait) {
    kmm_late_slot late;
    late.attach(this->pool_);
    return acquire_in(late, key, mode, wait);
  }

  template <class K>
  entry* acquire_in(kmm_cache_slot& slot, const K& key, kmm_mode mode, const kmm_wait_spec& wait) {
    if (wait.stop != nullptr && wait.stop->stop_requested()) return nullptr;
    const std::size_t h = hash_(key);
    kmm_shard& s = shard_of(h);
    std::uintptr_t w = s.word.load(std::memory_order_acquire);
    entry* fresh = nullptr;
    if (entry* head = kmm_head_of<entry>(w);
        head != nullptr && head->hash.load(std::memory_order_relaxed) == h) {
      // Hot path, the usual case of a key seen before: its entry heads the chain, live or dead.
      const pinned p = pin(head, mode, true);
      if (p.held) {
        bool same = false;
        try {
          same = eq_(*head->key, key);  // the key is fixed while we reference the entry
        } catch (...) {
          release(head, mode);
          throw;
        }
        if (same) {
          kmm_cache_slot::bump(slot.acquisitions);
          return head;
        }
      }
      if (p.e != nullptr) drop(p, mode);  // held by someone, or another key: the general way
    } else if (w == 0) {
      // Fast path: empty shard -> publish our entry, already held, with one CAS.
      fresh = kmm_take_entry<Key>(slot, key, h);
      fresh->state.store(kmm_pending, std::memory_order_relaxed);
      if (s.word.compare_exchange_strong(w, reinterpret_cast<std::uintptr_t>(fresh),
                                         std::memory_order_acq_rel, std::memory_order_acquire)) {
        fresh->state.store(kmm_ref_one | kmm_hold_of(mode), std::memory_order_release);
        kmm_cache_slot::bump(slot.acquisitions);
        return fresh;
      }
      fresh->state.store(kmm_claimed, std::memory_order_relaxed);  // never published
    }
    return acquire_live(slot, s, w, key, h, mode, wait, fresh);
  }

  /// The key's shard was not empty (word `w`): the hot path (the key's entry, live or dead, one
  /// CAS), else the replacement of a shard's only, dead entry (one CAS), else the slow path. Out
  /// of acquire_in's frame, which stays small for the fast path.
  template <class K>
  [[gnu::noinline]] entry* acquire_live(kmm_cache_slot& slot, kmm_shard& s, std::uintptr_t w, const K& key,
                                        std::size_t h, kmm_mode mode, const kmm_wait_spec& wait,
                                        entry* fresh) {
    pinned p;
    try {
      p = find_unlocked(w, h, key, mode);
    } catch (...) {
      if (fresh != nullptr) kmm_recycle(slot, fresh);
      throw;
    }
    if (p.e != nullptr && fresh != nullptr) kmm_recycle(slot, std::exchange(fresh, nullptr));
    if (p.held) {  // the hot path
      kmm_cache_slot::bump(slot.acquisitions);
      return p.e;
    }
    if (p.e == nullptr) {
      if (fresh == nullptr) fresh = kmm_take_entry<Key>(slot, key, h);  // Key built under no lock
      if (replace_dead_head(slot, s, w, fresh, mode)) {
        kmm_cache_slot::bump(slot.acquisitions);
        return fresh;
      }
    }
    return acquire_slow(slot, s, key, h, mode, wait, p.e, fresh);
  }

  /// If the shard's only entry (word `w`, lock free) is dead, claims it and puts `fresh`, held in
  /// `mode`, in its place with one CAS on the shard word; the dead one is recycled. False if the
  /// entry is live, or the chain changed meanwhile (a claimed entry is then unlinked under the lock).
  bool replace_dead_head(kmm_cache_slot& slot, kmm_shard& s, std::uintptr_t w, entry* fresh, kmm_mode mode) {
    NOCLOBBER_KMM_TEST_WINDOW(replace_dead_head);  // `w` may be stale from here on
    entry* head = kmm_head_of<entry>(w);
    if (head == nullptr || (w & kmm_flags) != 0 || head->next.load(std::memory_order_acquire) != nullptr ||
        !claim(head))
      return false;
    fresh->state.store(kmm_pending, std::memory_order_relaxed);
    fresh->next.store(nullptr, std::memory_order_relaxed);
    if (s.word.compare_exchange_strong(w, reinterpret_cast<std::uintptr_t>(fresh), std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
      fresh->state.store(kmm_ref_one | kmm_hold_of(mode), std::memory_order_release);
      kmm_recycle(slot, head);
      return true;
    }
    fresh->state.store(kmm_claimed, std::memory_order_relaxed);  // never published
    NOCLOBBER_KMM_TEST_WINDOW(replace_dead_head_lost);
    unlink_claimed(head);  // from the chain of the shard its hash names: maybe not `s`
    return false;
  }

  /// Lock-free lookup from the shard word `w`: a reference to the entry of `key`, live or dead (and
  /// its hold if it was free), or nothing (no such entry, or a claimed one: then the caller takes
  /// the lock). Looks at most kmm_walk_limit entries; a stale link may end
  /// the walk early, which only sends the caller to the lock.
  template <class K>
  pinned find_unlocked(std::uintptr_t w, std::size_t h, const K& key, kmm_mode mode) {
    entry* e = kmm_head_of<entry>(w);
    for (int i = 0; e != nullptr && i < kmm_walk_limit; ++i) {
      entry* const next = e->next.load(std::memory_order_acquire);
      if (e->hash.load(std::memory_order_relaxed) == h) {
        const pinned p = pin(e, mode, true);
        if (p.e == nullptr) return {};
        bool same = false;
        try {
          same = eq_(*e->key, key);  // the key is fixed while we reference the entry
        } catch (...) {
          drop(p, mode);
          throw;
        }
        if (same) return p;
        drop(p, mode);  // another key with this hash, or a stale link into another chain
      }
      e = next;
    }
    return {};
  }

  void drop(const pinned& p, kmm_mode mode) noexcept {
    if (p.held)
      release(p.e, mode);
    else
      unpin(p.e);
  }

  template <class K>
  entry* acquire_slow(kmm_cache_slot& slot, kmm_shard& s, const K& key, std::size_t h, kmm_mode mode,
                      const kmm_wait_spec& wait, entry* e, entry* fresh) {
    if (e == nullptr) {
      if (fresh == nullptr) fresh = kmm_take_entry<Key>(slot, key, h);  // Key built under no lock
      pinned p;
      try {
        p = find_or_install(s, h, key, mode, fresh);
      } catch (...) {
        kmm_recycle(slot, fresh);
        throw;
      }
      if (p.e != fresh) kmm_recycle(slot, fresh);
      if (p.held) {
        kmm_cache_slot::bump(slot.acquisitions);
        return p.e;
      }
      e = p.e;
    } else if (fresh != nullptr) {
      kmm_recycle(slot, fresh);
    }
    // We reference e; someone else holds it.
    if (wait.kind == kmm_wait::try_once) {
      unpin(e);
      return nullptr;
    }
    if (!wait_for(slot, s, e, mode, wait)) return nullptr;
    kmm_cache_slot::bump(slot.acquisitions);
    kmm_cache_slot::bump(slot.contended);
    return e;
  }

  /// Under the shard lock: unlinks the chain's dead entries (sweep_dead), then a reference to the
  /// live entry of `key` (with its hold if free), or `fresh` installed, held. May throw what
  /// KeyEqual throws; nothing is referenced then.
  template <class K>
  pinned find_or_install(kmm_shard& s, std::size_t h, const K& key, kmm_mode mode, entry* fresh) {
    after_unlock a;
    entry* head = kmm_lock_chain<Key>(s);
    sweep_dead(s, head, a);
    pinned found;
    try {
      for (entry* e = head; e != nullptr && found.e == nullptr; e = e->next.load(std::memory_order_relaxed)) {
        if (e->hash.load(std::memory_order_relaxed) != h) continue;
        // Claimed: logically gone (acquire: a fresh entry's hold starts after its last release).
        if ((kmm_settled_state(e) & kmm_claimed) != 0) continue;
        if (eq_(*e->key, key)) found = pin(e, mode, true);  // fails only if claimed meanwhile
      }
    } catch (...) {
      kmm_unlock_chain(s, head);
      finish(a);
      throw;
    }
    if (found.e == nullptr) {
      fresh->state.store(kmm_ref_one | kmm_hold_of(mode), std::memory_order_release);
      fresh->next.store(head, std::memory_order_relaxed);
      head = fresh;
      found = {fresh, true};
    }
    kmm_unlock_chain(s, head);
    finish(a);
    return found;
  }

  /// Waits for `e` (which we reference) until we hold it in `mode` (true) or the wait gives up
  /// (false; our reference is dropped). Spins briefly, then parks; a woken waiter that loses the
  /// key to a running thread parks again at the front.
  bool wait_for(kmm_cache_slot& slot, kmm_shard& s, entry* e, kmm_mode mode, const kmm_wait_spec& wait) {
    kmm_waiter node(mode);
    bool woken = false;  // we hold the wake-up of e (its woken bit is ours to end)
    for (;;) {
      if (spin_take(e, mode, woken)) return true;
      if (wait.gives_up()) break;
      kmm_rearm(node);
      entry* head = kmm_lock_chain<Key>(s);
      const bool took = take_or_queue(s, e, node, woken);
      kmm_unlock_chain(s, head);
      if (took) return true;
      woken = false;
      kmm_cache_slot::bump(slot.sleeps);
      kmm_wakeups passed;
      const kmm_park_result r = kmm_park(s, e, node, wait, passed);
      this->count_wakeups(&slot, passed);
      if (r == kmm_park_result::handed) {
        kmm_cache_slot::bump(slot.handoffs);
        return true;
      }
      if (r == kmm_park_result::gave_up) break;
      woken = true;
    }
    if (woken) {
      after_unlock a;
      entry* head = kmm_lock_chain<Key>(s);
      pass_on_locked(s, e, a);
      kmm_unlock_chain(s, head);
      finish(a);
    }
    unpin(e);
    return false;
  }

  /// Spins briefly on e's state word, taking the key if it becomes free to us.
  static bool spin_take(entry* e, kmm_mode mode, bool woken) noexcept {
    std::uint64_t st = e->state.load(std::memory_order_relaxed);
    for (int i = 0; i < kmm_key_spins; ++i) {
      if (take_referenced(e, mode, woken, st)) return true;
      kmm_cpu_relax();
      st = e->state.load(std::memory_order_relaxed);
    }
    return false;
  }

  void release_waking(kmm_shard& s, entry* e, kmm_mode mode) noexcept {
    after_unlock a;
    entry* head = kmm_lock_chain<Key>(s);
    release_locked(s, e, mode, a);
    kmm_unlock_chain(s, head);
    finish(a);
  }
};

}  // namespace noclobber::detail
