// noclobber/keyed_mutex_map/core.hpp — the machinery behind keyed_mutex_map's public class:
// shards, the pool, and the acquire / release algorithms for one key.
//
// Overview
// --------
// kmm_core<Key, Hash, KeyEqual> owns the shards (keyed_mutex_map/shard.hpp) and the entry pool
// (keyed_mutex_map/entry_pool.hpp) and hands out entries; keyed_mutex_map (the public class) wraps
// what it returns in guards. The multi-key functions are in keyed_mutex_map/multi_key.hpp.
//
//   fast path   a lock of a key whose shard is empty publishes a fresh entry, already held, with
//               one CAS on the shard word; its holder lets go with one CAS back to 0.
//   hot path    a key whose entry is live (held, waited for): walk the chain without the lock
//               and take a reference and the hold with one CAS on the entry's state word
//               (entry_state.hpp); let go with one CAS. No shard lock, no key copy.
//   slow path   anything else: under the shard lock, find the entry or install a fresh one.
//   waiting     a key held by someone else: spin briefly on the state word, then park in the
//               shard's queue (keyed_mutex_map/parking.hpp) until woken or handed the key.
//   release     one CAS on the state word; if that frees a key with parked waiters and nobody
//               woken, under the shard lock wake the first waiter or hand the key to it; if it
//               drops the last reference, unlink the entry under the shard lock ("retire").
//
// Invariants: an entry is in its shard's chain iff its state has references; its key and hash
// are fixed while it does; only the thread whose CAS drops the last reference unlinks it; fresh
// entries a call prepared are installed or recycled before it returns or throws; a waiter's
// reference keeps its entry live while it waits. Wake-up rules: keyed_mutex_map/parking.hpp.
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

inline constexpr int kmm_walk_limit = 8;  // entries a lock-free lookup looks at before taking the lock

[[noreturn]] inline void kmm_throw_too_many() {
  throw std::length_error("keyed_mutex_map: more than 2^32 - 1 holders and waiters of one key");
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

  kmm_core(const keyed_mutex_map_options& options, Hash hash, KeyEqual eq)
      : hash_(std::move(hash)), eq_(std::move(eq)) {
    const std::size_t n = options.shard_count;
    if (n == 0 || (n & (n - 1)) != 0)
      throw std::invalid_argument("keyed_mutex_map: shard_count must be a power of two >= 1, got " +
                                  std::to_string(n));
    if (options.handoff_after < std::chrono::nanoseconds::zero())
      throw std::invalid_argument("keyed_mutex_map: handoff_after must not be negative, got " +
                                  std::to_string(options.handoff_after.count()) + " ns");
    handoff_after_ = options.handoff_after;
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
        entry* next = e->next.load(std::memory_order_relaxed);
        delete e;
        e = next;
      }
    }
  }

  // ---- one key --------------------------------------------------------------------------------

  /// The entry of `key`, held in `mode`; nullptr when a try, a deadline or a stop request gave up.
  /// (Inlined into the public functions: a call level here costs the uncontended lock ~5%.)
  template <class K>
  [[gnu::always_inline]] inline entry* acquire(const K& key, kmm_mode mode, const kmm_wait_spec& wait) {
    kmm_cache_slot* slot = thread_slot();
    if (slot == nullptr) return acquire_late(key, mode, wait);
    return acquire_in(*slot, key, mode, wait);
  }

  /// Lets go of a hold of `mode` on `e` (and the reference that came with it).
  void release(entry* e, kmm_mode mode) noexcept {
    kmm_shard& s = shard_of(e->hash.load(std::memory_order_relaxed));
    // Fast mode: the shard word is still exactly our entry, so we are its only reference. (Looked
    // at first: on a hot key a failing CAS would pull the shard's line away from its user.)
    std::uintptr_t expected = reinterpret_cast<std::uintptr_t>(e);
    if (s.word.load(std::memory_order_relaxed) == expected &&
        s.word.compare_exchange_strong(expected, 0, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      give_back(e);
      return;
    }
    std::uint64_t st = e->state.load(std::memory_order_relaxed);
    std::uint64_t after = 0;
    do {
      after = st - kmm_ref_one - kmm_hold_of(mode);
      if (kmm_release_must_wake(after)) return release_waking(s, e, mode);
    } while (
        !e->state.compare_exchange_weak(st, after, std::memory_order_acq_rel, std::memory_order_relaxed));
    if (kmm_refs(after) == 0) retire(s, e);
  }

  // ---- observation ----------------------------------------------------------------------------

  std::size_t size() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      kmm_shard& s = shards_[i];
      entry* head = kmm_lock_chain<Key>(s);
      for (entry* e = head; e != nullptr; e = e->next.load(std::memory_order_relaxed))
        if (kmm_refs(e->state.load(std::memory_order_relaxed)) != 0) ++n;
      kmm_unlock_chain(s, head);
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
    c.handoffs = pool.detached_handoffs;
    for (const kmm_cache_slot* s : pool.attached) {
      c.acquisitions += s->acquisitions.load(std::memory_order_relaxed);
      c.contended_acquisitions += s->contended.load(std::memory_order_relaxed);
      c.sleeps += s->sleeps.load(std::memory_order_relaxed);
      c.handoffs += s->handoffs.load(std::memory_order_relaxed);
    }
    return c;
  }

  std::size_t shard_count() const noexcept { return shard_count_; }

 protected:
  // ---- shards, thread caches, references (shared with multi_key.hpp) --------------------------

  /// A reference to an entry, and whether it came with a hold.
  struct pinned {
    entry* e = nullptr;
    bool held = false;
  };

  /// What to do once a shard lock is let go: signal parked waiters, recycle retired entries.
  struct after_unlock {
    kmm_waiter* signal = nullptr;
    entry* dead = nullptr;  // linked by free_next
    void add_dead(entry* e) noexcept {
      e->free_next = dead;
      dead = e;
    }
  };

  kmm_shard& shard_of(std::size_t h) const noexcept {
    // Fibonacci mixing: std::hash of integers is the identity; take the well-mixed high bits.
    const std::uint64_t mixed = static_cast<std::uint64_t>(h) * 0x9E3779B97F4A7C15ull;
    return shards_[static_cast<std::size_t>(mixed >> shard_shift_) & shard_mask_];
  }
  std::size_t shard_index(std::size_t h) const noexcept {
    return static_cast<std::size_t>(&shard_of(h) - shards_.get());
  }

  // This thread's cache slot for our pool, or nullptr on a thread whose cache is already destroyed
  // (a thread_local destructor running late).
  kmm_cache_slot* thread_slot() const {
    if (kmm_last_pool == pool_.get()) return kmm_last_slot;
    return thread_slot_lookup();
  }
  [[gnu::noinline]] kmm_cache_slot* thread_slot_lookup() const {
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
  // The slot for entries a release frees, or nullptr (then they go straight to the pool).
  kmm_cache_slot* release_slot() const noexcept {
    try {
      return thread_slot();
    } catch (...) {
      return nullptr;  // could not attach a thread cache
    }
  }

  void give_back(entry* e) const noexcept { kmm_give_back(release_slot(), *pool_, e); }

  /// Recycles what `a` collected and signals its waiters. No shard lock held.
  void finish(after_unlock& a) const noexcept {
    kmm_signal(a.signal);
    while (a.dead != nullptr) {
      entry* e = a.dead;
      a.dead = static_cast<entry*>(e->free_next);
      give_back(e);
    }
  }

  /// Adds a reference to a live entry, and the hold of `mode` too when `take` and the key is free
  /// to a newcomer. Fails (e == nullptr) on a dying entry or one still owned through the shard word.
  /// Acquire ordering also when it fails: a caller that then installs a fresh entry for the key
  /// starts its hold after the last holder's release of the dying one.
  [[gnu::always_inline]] static inline pinned pin(entry* e, kmm_mode mode, bool take) {
    std::uint64_t st = e->state.load(std::memory_order_acquire);
    for (;;) {
      if (kmm_refs(st) == 0 || (st & kmm_fast) != 0) return {};
      if (kmm_refs(st) == kmm_ref_max) kmm_throw_too_many();
      const bool now = take && kmm_can_take(st, mode, false);
      const std::uint64_t next = st + kmm_ref_one + (now ? kmm_hold_of(mode) : 0);
      if (e->state.compare_exchange_weak(st, next, std::memory_order_acquire, std::memory_order_acquire))
        return {e, now};
    }
  }

  /// Drops a reference that came with no hold; the last one retires the entry.
  void unpin(entry* e) noexcept {
    const std::uint64_t before = e->state.fetch_sub(kmm_ref_one, std::memory_order_acq_rel);
    if (kmm_refs(before) == 1) retire(shard_of(e->hash.load(std::memory_order_relaxed)), e);
  }

  /// As unpin, under the shard lock: a retired entry is unlinked here and recycled by `a`.
  void unpin_locked(kmm_shard& s, entry*& head, entry* e, after_unlock& a) noexcept NOCLOBBER_REQUIRES(s) {
    const std::uint64_t before = e->state.fetch_sub(kmm_ref_one, std::memory_order_acq_rel);
    if (kmm_refs(before) != 1) return;
    head = kmm_unlink(s, head, e);
    a.add_dead(e);
  }

  /// Unlinks `e`, whose last reference we dropped, and recycles it.
  void retire(kmm_shard& s, entry* e) noexcept {
    entry* head = kmm_lock_chain<Key>(s);
    head = kmm_unlink(s, head, e);
    kmm_unlock_chain(s, head);
    give_back(e);
  }

  /// Lets go of a hold of `mode` on `e` and its reference under the shard lock: if that frees the
  /// key for parked waiters and nobody is woken, wake the first waiter's batch or, once it has
  /// waited past handoff_after, hand the key to it (parking.hpp). Waiters to signal and a retired
  /// entry go into `a`.
  void release_locked(kmm_shard& s, entry*& head, entry* e, kmm_mode mode, after_unlock& a) noexcept
      NOCLOBBER_REQUIRES(s) {
    std::uint64_t st = e->state.load(std::memory_order_relaxed);
    std::optional<kmm_batch> batch;  // the queue does not change while we hold the shard lock
    for (;;) {
      const std::uint64_t after = st - kmm_ref_one - kmm_hold_of(mode);
      if (!kmm_release_must_wake(after)) {
        if (!e->state.compare_exchange_weak(st, after, std::memory_order_acq_rel, std::memory_order_relaxed))
          continue;
        if (kmm_refs(after) == 0) {
          head = kmm_unlink(s, head, e);
          a.add_dead(e);
        }
        return;
      }
      if (!batch) batch = kmm_plan_batch(s, e);
      const bool hand = handoff_due(*batch->first);
      std::uint64_t next = (after & ~kmm_queue_bits) | batch->queue_after;
      if (hand)
        next += batch->shared == 0 ? kmm_held : batch->shared * kmm_shared_one;
      else
        next |= kmm_woken;
      if (!e->state.compare_exchange_weak(st, next, std::memory_order_acq_rel, std::memory_order_relaxed))
        continue;
      a.signal = kmm_take_batch(s, e, *batch, hand ? kmm_verdict::handed : kmm_verdict::woken, a.signal);
      return;
    }
  }

  /// Whether a release hands the key to `first` instead of waking it.
  bool handoff_due(const kmm_waiter& first) const noexcept {
    if (handoff_after_ == std::chrono::nanoseconds::zero()) return true;
    if (handoff_after_ == std::chrono::nanoseconds::max()) return false;
    return kmm_clock::now() - first.since >= handoff_after_;
  }

  /// Takes the hold of `mode` on `e`, which we reference, if it is free to us now (`woken`: we were
  /// woken from its queue; taking ends that wake-up). One CAS, retried while the key stays free.
  static bool take_referenced(entry* e, kmm_mode mode, bool woken, std::uint64_t& st) noexcept {
    const std::uint64_t clear = woken ? kmm_woken : 0;
    while (kmm_can_take(st, mode, woken)) {
      if (e->state.compare_exchange_weak(st, (st + kmm_hold_of(mode)) & ~clear, std::memory_order_acquire,
                                         std::memory_order_relaxed))
        return true;
    }
    return false;
  }

  /// Under the shard lock: takes `e` (referenced by us) if free, else marks it parked for `node`
  /// and queues the node (at the front if it parked before in this call). Ends a wake-up we held.
  /// Returns true if it took the key.
  bool take_or_queue(kmm_shard& s, entry* e, kmm_waiter& node, bool woken) noexcept NOCLOBBER_REQUIRES(s) {
    const std::uint64_t bits = kmm_parked | (node.mode == kmm_mode::exclusive ? kmm_xparked : 0);
    const std::uint64_t clear = woken ? kmm_woken : 0;
    std::uint64_t st = e->state.load(std::memory_order_relaxed);
    for (;;) {
      if (take_referenced(e, node.mode, woken, st)) return true;
      if (e->state.compare_exchange_weak(st, (st | bits) & ~clear, std::memory_order_acq_rel,
                                         std::memory_order_relaxed))
        break;
    }
    if (!node.parked_before) node.since = kmm_clock::now();
    node.entry = e;
    kmm_enqueue(s, node, node.parked_before);
    node.parked_before = true;
    return false;
  }

  /// Ends a wake-up we held on `e` without taking it: clears woken and wakes the next waiter if
  /// the key is free for it. Shard lock held.
  static void pass_on_locked(kmm_shard& s, entry* e, after_unlock& a) noexcept NOCLOBBER_REQUIRES(s) {
    e->state.fetch_and(~kmm_woken, std::memory_order_acq_rel);
    a.signal = kmm_wake_if_free(s, e, a.signal);
  }

  kmm_shard& shard_at(std::size_t i) const noexcept { return shards_[i]; }

  Hash hash_;
  KeyEqual eq_;

 private:
  // ---- one key --------------------------------------------------------------------------------

  // Cold path kept out of acquire's frame (the stand-in slot is 64-byte aligned).
  template <class K>
  [[gnu::noinline]] entry* acquire_late(const K& key, kmm_mode mode, const kmm_wait_spec& wait) {
    kmm_late_slot late;
    late.attach(pool_);
    return acquire_in(late, key, mode, wait);
  }

  template <class K>
  entry* acquire_in(kmm_cache_slot& slot, const K& key, kmm_mode mode, const kmm_wait_spec& wait) {
    if (wait.stop != nullptr && wait.stop->stop_requested()) return nullptr;
    const std::size_t h = hash_(key);
    kmm_shard& s = shard_of(h);
    std::uintptr_t w = s.word.load(std::memory_order_acquire);
    entry* fresh = nullptr;
    if (w == 0) {
      // Fast path: empty shard -> publish our entry, already held, with one CAS.
      fresh = kmm_take_entry<Key>(slot, key, h);
      fresh->state.store(kmm_fast | kmm_ref_one | kmm_hold_of(mode), std::memory_order_relaxed);
      if (s.word.compare_exchange_strong(w, reinterpret_cast<std::uintptr_t>(fresh),
                                         std::memory_order_acq_rel, std::memory_order_acquire)) {
        kmm_cache_slot::bump(slot.acquisitions);
        return fresh;
      }
    }
    return acquire_live(slot, s, w, key, h, mode, wait, fresh);
  }

  /// The key's shard was not empty (word `w`): the hot path (a live entry, one CAS), else the
  /// slow path. Out of acquire_in's frame, which stays small for the fast path.
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
    if (p.held) {  // the hot path
      if (fresh != nullptr) kmm_recycle(slot, fresh);
      kmm_cache_slot::bump(slot.acquisitions);
      return p.e;
    }
    return acquire_slow(slot, s, key, h, mode, wait, p.e, fresh);
  }

  /// Lock-free lookup from the shard word `w`: a reference to the live entry of `key` (and its
  /// hold if it was free), or nothing (no such entry, or one we may not reference without the lock:
  /// then the caller takes the lock). Looks at most kmm_walk_limit entries; a stale link may end
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

  /// Under the shard lock: a reference to the live entry of `key` (with its hold if free), or
  /// `fresh` installed, held. May throw what KeyEqual throws; nothing is referenced then.
  template <class K>
  pinned find_or_install(kmm_shard& s, std::size_t h, const K& key, kmm_mode mode, entry* fresh) {
    entry* head = kmm_lock_chain<Key>(s);
    try {
      for (entry* e = head; e != nullptr; e = e->next.load(std::memory_order_relaxed)) {
        if (e->hash.load(std::memory_order_relaxed) != h) continue;
        // Dying: its last holder let go (acquire: a fresh entry's hold starts after that).
        if (kmm_refs(e->state.load(std::memory_order_acquire)) == 0) continue;
        if (!eq_(*e->key, key)) continue;
        const pinned p = pin(e, mode, true);  // may fail if it is dying meanwhile
        if (p.e != nullptr) {
          kmm_unlock_chain(s, head);
          return p;
        }
      }
    } catch (...) {
      kmm_unlock_chain(s, head);
      throw;
    }
    fresh->state.store(kmm_ref_one | kmm_hold_of(mode), std::memory_order_release);
    fresh->next.store(head, std::memory_order_relaxed);
    kmm_unlock_chain(s, fresh);
    return {fresh, true};
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
      const kmm_park_result r = kmm_park(s, e, node, wait);
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
    release_locked(s, head, e, mode, a);
    kmm_unlock_chain(s, head);
    finish(a);
  }

  std::chrono::nanoseconds handoff_after_{};
  std::size_t shard_count_ = 0;
  int shard_shift_ = 0;
  std::size_t shard_mask_ = 0;
  std::unique_ptr<kmm_shard[]> shards_;
  std::shared_ptr<kmm_pool_base> pool_;  // a kmm_pool<Key>
};

}  // namespace noclobber::detail
