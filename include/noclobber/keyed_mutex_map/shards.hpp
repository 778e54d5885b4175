// noclobber/keyed_mutex_map/shards.hpp — the shards and entry pool of a keyed_mutex_map, and the
// operations on entries that every locking algorithm shares: references, claims, sweeps, the
// release that serves the waiter queue, and queuing a waiter.
//
// Overview
// --------
// kmm_shards<Key> owns the shard array (keyed_mutex_map/shard.hpp) and the pool
// (keyed_mutex_map/entry_pool.hpp). The one-key algorithm (keyed_mutex_map/core.hpp) and the
// multi-key one (keyed_mutex_map/multi_key.hpp) build on it:
//
//   pin / unpin         add or drop a reference on an entry of a chain (reviving a dead one)
//   claim / sweep_dead  take a dead entry out of reach, and unlink the dead entries of a chain
//   release_locked      let go of a hold under the shard lock and wake or hand over to the queue
//                       (handoff_due: the fairness bound, keyed_mutex_map_options::handoff_after)
//   take_or_queue       take a free key, or mark it parked and queue a waiter, under the lock
//   size / counters     observation
//
// Entry states and their transitions: keyed_mutex_map/entry_state.hpp; waking and hand-overs:
// keyed_mutex_map/parking.hpp.
//
// Thread safety: every member may be called concurrently, except construction and destruction.
// Functions marked NOCLOBBER_REQUIRES(s) need the shard lock. No user code runs here.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "noclobber/keyed_mutex_map/entry_pool.hpp"
#include "noclobber/keyed_mutex_map/entry_state.hpp"
#include "noclobber/keyed_mutex_map/options.hpp"
#include "noclobber/keyed_mutex_map/parking.hpp"
#include "noclobber/keyed_mutex_map/shard.hpp"
#include "noclobber/keyed_mutex_map/thread_cache.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber::detail {

[[noreturn]] inline void kmm_throw_too_many() {
  throw std::length_error("keyed_mutex_map: more than 2^32 - 1 holders and waiters of one key");
}

template <class Key>
class kmm_shards {
 public:
  using entry = kmm_entry<Key>;

  explicit kmm_shards(const keyed_mutex_map_options& options) {
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
  kmm_shards(const kmm_shards&) = delete;
  kmm_shards& operator=(const kmm_shards&) = delete;

  // Precondition: nothing held. Entries cached by other threads go back to the shared pool,
  // which is freed when the last of them lets go.
  ~kmm_shards() {
    for (std::size_t i = 0; i < shard_count_; ++i) {
      entry* e = kmm_head_of<entry>(shards_[i].word.load(std::memory_order_acquire));
      while (e != nullptr) {  // dead entries (and live ones if the precondition was broken)
        entry* next = e->next.load(std::memory_order_relaxed);
        delete e;
        e = next;
      }
    }
  }

  // ---- observation ----------------------------------------------------------------------------

  std::size_t size() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      kmm_shard& s = shards_[i];
      entry* head = kmm_lock_chain<Key>(s);
      for (entry* e = head; e != nullptr; e = e->next.load(std::memory_order_relaxed)) {
        const std::uint64_t st = e->state.load(std::memory_order_relaxed);
        if (kmm_refs(st) != 0 && (st & kmm_claimed) == 0) ++n;
      }
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
    c.wakeups = pool.detached_wakeups;
    c.shared_wakeups = pool.detached_shared_wakeups;
    for (const kmm_cache_slot* s : pool.attached) {
      c.acquisitions += s->acquisitions.load(std::memory_order_relaxed);
      c.contended_acquisitions += s->contended.load(std::memory_order_relaxed);
      c.sleeps += s->sleeps.load(std::memory_order_relaxed);
      c.handoffs += s->handoffs.load(std::memory_order_relaxed);
      c.wakeups += s->wakeups.load(std::memory_order_relaxed);
      c.shared_wakeups += s->shared_wakeups.load(std::memory_order_relaxed);
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

  /// Counts wake-ups sent in `slot`, or in the pool's detached counts when there is no slot.
  void count_wakeups(kmm_cache_slot* slot, const kmm_wakeups& sent) const noexcept {
    if (sent.all == 0) return;
    if (slot != nullptr) {
      kmm_cache_slot::bump(slot->wakeups, sent.all);
      if (sent.shared != 0) kmm_cache_slot::bump(slot->shared_wakeups, sent.shared);
      return;
    }
    annotated_lock lk(pool_->mutex);
    pool_->detached_wakeups += sent.all;
    pool_->detached_shared_wakeups += sent.shared;
  }

  /// Recycles what `a` collected and signals its waiters. No shard lock held.
  void finish(after_unlock& a) const noexcept {
    const kmm_wakeups sent = kmm_signal(a.signal);
    if (sent.all != 0) count_wakeups(release_slot(), sent);
    while (a.dead != nullptr) {
      entry* e = a.dead;
      a.dead = static_cast<entry*>(e->free_next);
      give_back(e);
    }
  }

  /// Adds a reference to an entry in a chain, live or dead (reviving it), and the hold of `mode`
  /// too when `take` and the key is free to a newcomer. Fails (e == nullptr) on a claimed or
  /// pending entry.
  /// Acquire ordering also when it fails: a caller that then installs a fresh entry for the key
  /// starts its hold after the last holder's release of the claimed one.
  [[gnu::always_inline]] static inline pinned pin(entry* e, kmm_mode mode, bool take) {
    std::uint64_t st = e->state.load(std::memory_order_acquire);
    for (;;) {
      if ((st & (kmm_claimed | kmm_pending)) != 0) return {};
      if (kmm_refs(st) == kmm_ref_max) kmm_throw_too_many();
      const bool now = take && kmm_can_take(st, mode, false);
      const std::uint64_t next = st + kmm_ref_one + (now ? kmm_hold_of(mode) : 0);
      if (e->state.compare_exchange_weak(st, next, std::memory_order_acquire, std::memory_order_acquire))
        return {e, now};
    }
  }

  /// Drops a reference that came with no hold (the last one leaves the entry dead in its chain).
  static void unpin(entry* e) noexcept { e->state.fetch_sub(kmm_ref_one, std::memory_order_release); }

  /// Claims a dead entry (refs 0 -> claimed): from then on nobody can revive it and the caller
  /// must unlink it. Fails if it is referenced (or revived meanwhile) or already claimed.
  static bool claim(entry* e) noexcept {
    std::uint64_t expected = e->state.load(std::memory_order_relaxed);
    if (kmm_refs(expected) != 0 || (expected & (kmm_claimed | kmm_pending)) != 0) return false;
    return e->state.compare_exchange_strong(expected, kmm_claimed, std::memory_order_acquire,
                                            std::memory_order_relaxed);
  }

  /// Unlinks every dead entry of the chain (claiming each first), for `a` to recycle: a slow-path
  /// locker keeps its shard's chain short. Shard lock held.
  static void sweep_dead(kmm_shard& s, entry*& head, after_unlock& a) noexcept NOCLOBBER_REQUIRES(s) {
    for (entry* e = head; e != nullptr;) {
      entry* const next = e->next.load(std::memory_order_relaxed);
      if (claim(e)) {
        head = kmm_unlink(s, head, e);
        a.add_dead(e);
      }
      e = next;
    }
  }

  /// Unlinks `e`, which we claimed, and recycles it. A dead entry is always in the chain of the
  /// shard its hash names (which is not the caller's when it reached `e` through a stale link).
  void unlink_claimed(entry* e) noexcept {
    kmm_shard& s = shard_of(e->hash.load(std::memory_order_relaxed));
    entry* head = kmm_lock_chain<Key>(s);
    head = kmm_unlink(s, head, e);
    kmm_unlock_chain(s, head);
    give_back(e);
  }

  /// Lets go of a hold of `mode` on `e` and its reference under the shard lock: if that frees the
  /// key for parked waiters and nobody is woken, wake the first waiter's batch or, once it has
  /// waited past handoff_after, hand the key to it (parking.hpp). Waiters to signal and a retired
  /// entry go into `a`.
  void release_locked(kmm_shard& s, entry* e, kmm_mode mode, after_unlock& a) noexcept NOCLOBBER_REQUIRES(s) {
    std::uint64_t st = e->state.load(std::memory_order_relaxed);
    std::optional<kmm_batch> batch;  // the queue does not change while we hold the shard lock
    for (;;) {
      const std::uint64_t after = st - kmm_ref_one - kmm_hold_of(mode);
      if (!kmm_release_must_wake(after)) {
        if (!e->state.compare_exchange_weak(st, after, std::memory_order_release, std::memory_order_relaxed))
          continue;
        return;
      }
      if (!batch) batch = kmm_plan_batch(s, e);
      const bool hand = handoff_due(s, e, *batch->first);
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

  /// Whether a release of `e` hands the key to its first waiter instead of waking it: the waiter
  /// has waited handoff_after since it first parked, and the last hand-over of `e` is at least
  /// that long ago (so hand-overs, each of which keeps the key idle while its taker wakes up,
  /// stay rare while barging keeps a hot key busy). Records the hand-over. Shard lock held.
  bool handoff_due([[maybe_unused]] kmm_shard& s, entry* e, const kmm_waiter& first) const noexcept
      NOCLOBBER_REQUIRES(s) {
    if (handoff_after_ == std::chrono::nanoseconds::zero()) return true;
    if (handoff_after_ == std::chrono::nanoseconds::max()) return false;
    const kmm_clock::time_point now = kmm_clock::now();
    if (now - first.since < handoff_after_) return false;
    if (e->last_handoff != kmm_clock::time_point{} && now - e->last_handoff < handoff_after_) return false;
    e->last_handoff = now;
    return true;
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

  std::chrono::nanoseconds handoff_after_{};
  std::size_t shard_count_ = 0;
  int shard_shift_ = 0;
  std::size_t shard_mask_ = 0;
  std::unique_ptr<kmm_shard[]> shards_;
  std::shared_ptr<kmm_pool_base> pool_;  // a kmm_pool<Key>
};

}  // namespace noclobber::detail
