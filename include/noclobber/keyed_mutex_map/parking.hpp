// noclobber/keyed_mutex_map/parking.hpp — how a keyed_mutex_map's waiters sleep on a busy key and
// who wakes them: the hand-over protocol between a releasing holder and the waiters of an entry.
//
// Overview
// --------
// A thread that finds its key held (and has spun a little) registers as a waiter of the entry
// under the shard lock (`waiters`, `exclusive_waiters`: they keep the entry live), notes the
// entry's wake sequence, releases the shard lock and sleeps on the entry's condition variable
// until the sequence moves (park). A release that leaves the entry free with waiters bumps the
// sequence under the shard lock (wake) and notifies after releasing it (notify). The woken waiter
// takes the shard lock again, drops its waiter counts and retries from the start.
//
// Wake-up policy (writer preference): if exclusive waiters exist, wake one of them (a hot key
// with 16 parked writers wakes 1 thread per hand-over, not 16); otherwise wake every shared
// waiter, since they may enter together. Fairness is not FIFO: a running thread may take a key
// before a woken one.
//
// Invariant: while an entry with waiters is free, a wake-up is in flight to a waiter that can take
// it. An exclusive waiter parks only on a held entry, so one that parks after a wake-up and
// catches it has a holder that will wake again on release; a woken waiter that leaves without
// taking the entry (it timed out, its group is blocked elsewhere, it threw) passes the wake-up on
// (settle).
//
// Lock order: shard lock -> entry park_mutex (held only to bump wake_seq, and by a parker while it
// checks wake_seq and sleeps). Nothing else is taken under either, and no user code runs under
// either.
//
// Thread safety: the functions marked "shard lock held" require the lock of the entry's shard;
// park and notify require that no shard lock is held.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "noclobber/keyed_mutex_map/entry_pool.hpp"
#include "noclobber/keyed_mutex_map/thread_cache.hpp"

namespace noclobber::detail {

enum class kmm_mode { exclusive, shared };
enum class kmm_wait { try_once, until_deadline, forever };

using kmm_clock = std::chrono::steady_clock;

/// Whether a lock of `mode` can be taken on `e` now. Shard lock held.
template <class Key>
[[nodiscard]] inline bool kmm_can_take(const kmm_entry<Key>* e, kmm_mode mode) noexcept {
  return mode == kmm_mode::exclusive ? e->holders == 0 : e->holders >= 0 && e->exclusive_waiters == 0;
}

/// Takes a lock of `mode` on `e`, which kmm_can_take allowed. Shard lock held.
template <class Key>
inline void kmm_take(kmm_entry<Key>* e, kmm_mode mode) noexcept {
  e->holders = mode == kmm_mode::exclusive ? -1 : e->holders + 1;
}

/// The chain without `e` (which is in it). Shard lock held.
template <class Key>
[[nodiscard]] inline kmm_entry<Key>* kmm_unlink(kmm_entry<Key>* head, kmm_entry<Key>* e) noexcept {
  if (head == e) return e->next;
  kmm_entry<Key>* p = head;
  while (p->next != e) p = p->next;
  p->next = e->next;
  return head;
}

/// What to do once the shard lock is released: notify parkers of `wake`, recycle `dead`.
template <class Key>
struct kmm_after_unlock {
  kmm_entry<Key>* wake = nullptr;
  bool wake_shared = false;  // all shared waiters, else one exclusive waiter
  kmm_entry<Key>* dead = nullptr;
};

/// Starts a wake-up of `e`'s parkers (see the policy above); the caller notifies after releasing
/// the shard lock. Shard lock held (so `e` stays live).
template <class Key>
[[nodiscard]] kmm_after_unlock<Key> kmm_wake(kmm_entry<Key>* e) noexcept {
  {
    std::lock_guard<std::mutex> lk(e->park_mutex);
    e->wake_seq.store(e->wake_seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  return {e, e->exclusive_waiters == 0, nullptr};
}

/// We stopped waiting on `p` (counts already dropped). Retire it if nobody holds or wants it; if it
/// is free, or we were an exclusive waiter holding back shared waiters, wake the others (we may
/// have taken the only wake-up). Shard lock held.
template <class Key>
[[nodiscard]] kmm_after_unlock<Key> kmm_settle(kmm_entry<Key>*& head, kmm_entry<Key>* p,
                                               kmm_mode mode) noexcept {
  kmm_after_unlock<Key> r;
  if (p == nullptr) return r;
  if (p->holders == 0 && p->waiters == 0) {
    head = kmm_unlink(head, p);
    r.dead = p;
  } else if (p->waiters > 0 && (p->holders == 0 || (mode == kmm_mode::exclusive && p->holders > 0 &&
                                                    p->exclusive_waiters == 0))) {
    r = kmm_wake(p);
  }
  return r;
}

/// Registers as a waiter of `e` (keeps it live). Shard lock held.
template <class Key>
inline void kmm_add_waiter(kmm_entry<Key>* e, kmm_mode mode) noexcept {
  ++e->waiters;
  if (mode == kmm_mode::exclusive) ++e->exclusive_waiters;
}

/// Drops the counts of kmm_add_waiter. Shard lock held; then settle `e`.
template <class Key>
inline void kmm_drop_waiter(kmm_entry<Key>* e, kmm_mode mode) noexcept {
  --e->waiters;
  if (mode == kmm_mode::exclusive) --e->exclusive_waiters;
}

/// Sleeps until e's wake_seq moves past `seq` or the deadline passes. No shard lock held.
template <class Key>
void kmm_park(kmm_entry<Key>* e, std::uint32_t seq, kmm_mode mode, kmm_wait wait,
              kmm_clock::time_point deadline) {
  std::condition_variable& cv = mode == kmm_mode::exclusive ? e->park_exclusive : e->park_shared;
  std::unique_lock<std::mutex> lk(e->park_mutex);
  while (e->wake_seq.load(std::memory_order_acquire) == seq) {
    if (wait == kmm_wait::forever || deadline == kmm_clock::time_point::max()) {
      cv.wait(lk);
    } else if (cv.wait_until(lk, deadline) == std::cv_status::timeout) {
      return;
    }
  }
}

/// Notifies what a kmm_wake started. No shard lock held.
template <class Key>
void kmm_notify(const kmm_after_unlock<Key>& r) noexcept {
  // Entries are freed only with the pool, so notifying an entry that was retired (or even
  // reused) meanwhile is safe: at worst a spurious wake-up, which parkers tolerate. A retired
  // entry has no waiters left from before, so nobody misses the wake-up.
  if (r.wake == nullptr) return;
  if (r.wake_shared)
    r.wake->park_shared.notify_all();
  else
    r.wake->park_exclusive.notify_one();
}

/// Counts the wake-up kmm_notify sent (if any) in `slot`, or in the pool's detached counts when
/// there is no slot. No shard lock held.
template <class Key>
void kmm_count_wakeup(const kmm_after_unlock<Key>& r, kmm_cache_slot* slot, kmm_pool_base& pool) noexcept {
  if (r.wake == nullptr) return;
  if (slot != nullptr) {
    kmm_cache_slot::bump(slot->wakeups);
    if (r.wake_shared) kmm_cache_slot::bump(slot->shared_wakeups);
    return;
  }
  annotated_lock lk(pool.mutex);
  ++pool.detached_wakeups;
  if (r.wake_shared) ++pool.detached_shared_wakeups;
}

/// kmm_notify, then recycle a retired entry. `slot` is attached. No shard lock held.
template <class Key>
void kmm_finish(const kmm_after_unlock<Key>& r, kmm_cache_slot& slot) noexcept {
  kmm_notify(r);
  kmm_count_wakeup(r, &slot, *slot.pool_raw);
  if (r.dead != nullptr) kmm_recycle(slot, r.dead);
}

}  // namespace noclobber::detail
