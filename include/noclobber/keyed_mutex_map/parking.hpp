// noclobber/keyed_mutex_map/parking.hpp — how a keyed_mutex_map's waiters sleep on a busy key and
// who wakes them: the shard's queue of parked threads, wake-ups, hand-overs and the sleep itself.
//
// Overview
// --------
// A thread that finds its key held spins briefly, then parks: under the shard lock it marks the
// entry's state word (parked, and xparked if it wants the key exclusively; entry_state.hpp),
// appends a node that lives on its own stack to the shard's queue, lets go of the lock and sleeps
// on the node's condition variable (so timed waits and stop requests work). A parking lot keyed
// by entry, one per shard, as in WebKit's WTF::ParkingLot and folly's.
//
// A release that frees a key with parked waiters (and none woken yet) takes the shard lock and
// serves the first waiter of that key in the queue, and if it wants the key shared, every shared
// waiter behind it up to the next exclusive one. It either
//   wakes them (verdict `woken`, sets the entry's woken bit): they run to take the key and may
//     lose it to a running thread that takes it first ("barging": throughput on a hot key, no
//     convoy of context switches), or
//   hands the key over (verdict `handed`): the key passes to them without ever being free, so
//     nobody can take it first. The release does this when the first waiter has waited (since it
//     first parked) longer than the map's handoff_after bound (keyed_mutex_map_options), at most
//     once per handoff_after per key: a hand-over leaves the key idle while its taker wakes up.
// A woken waiter that does not get the key parks again at the front of the queue, keeping the time
// it first parked, so once a waiter has waited past the bound, a release within the next bound
// period hands the key to it. That bounds how long barging can keep a waiter out (see
// keyed_mutex_map.md, "Fairness").
//
// Wake-up policy (writer preference): new shared lockers wait while an exclusive waiter is
// queued; waiters woken from the queue stood before it and may enter. A release wakes one
// exclusive waiter, not all (a hot key with 16 parked writers wakes 1 thread per release).
//
// Invariant: see entry_state.hpp ("no lost wake-up"). A woken waiter that leaves without the key
// (timed out, stopped, its multi-key group is blocked elsewhere) passes the wake-up on
// (kmm_wake_if_free).
//
// Lock order: shard lock -> nothing. A node's mutex is taken only without the shard lock (by the
// sleeper, the thread that signals it after letting go of the shard lock, and a stop callback).
// No user code runs under either.
//
// Thread safety: functions marked NOCLOBBER_REQUIRES(s) need the shard lock; kmm_signal and
// kmm_park need that no shard lock is held.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stop_token>

#include "noclobber/keyed_mutex_map/entry_pool.hpp"
#include "noclobber/keyed_mutex_map/entry_state.hpp"
#include "noclobber/keyed_mutex_map/shard.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber::detail {

enum class kmm_wait { try_once, until_deadline, forever };

using kmm_clock = std::chrono::steady_clock;

/// How long a lock call may wait: once, until a deadline, or without limit; and optionally until
/// a stop is requested.
struct kmm_wait_spec {
  kmm_wait kind = kmm_wait::forever;
  kmm_clock::time_point deadline{};
  const std::stop_token* stop = nullptr;

  [[nodiscard]] bool stop_requested() const noexcept { return stop != nullptr && stop->stop_requested(); }
  /// True when no (more) waiting is allowed: a try, a deadline that has passed, or a stop request.
  [[nodiscard]] bool gives_up() const noexcept {
    if (kind == kmm_wait::try_once || stop_requested()) return true;
    return kind == kmm_wait::until_deadline && deadline != kmm_clock::time_point::max() &&
           kmm_clock::now() >= deadline;
  }
};

enum class kmm_verdict : unsigned char { none, woken, handed };

/// A parked thread. Lives on the waiting thread's stack for the whole lock call. Fields marked
/// (S) are guarded by the lock of the shard whose queue the node is in.
struct kmm_waiter {
  explicit kmm_waiter(kmm_mode m) noexcept : mode(m) {}
  kmm_waiter(const kmm_waiter&) = delete;
  kmm_waiter& operator=(const kmm_waiter&) = delete;

  kmm_waiter* prev = nullptr;               // (S) queue links
  kmm_waiter* next = nullptr;               // (S)
  const void* entry = nullptr;              // (S) the entry waited for
  kmm_mode mode;                            // what the waiter wants
  bool queued = false;                      // (S)
  bool parked_before = false;               // owner only: parked at least once in this call
  kmm_verdict verdict = kmm_verdict::none;  // (S) set by the waker before it signals
  kmm_waiter* signal_next = nullptr;        // the waker's list of nodes to signal after unlocking
  bool opens_batch = false;                 // (S) the first node of a batch a waker took
  bool batch_shared = false;                // (S) ... and that batch is of shared waiters
  kmm_clock::time_point since{};            // owner only: when it first parked in this call

  annotated_mutex mutex;
  std::condition_variable cv;
  bool signaled NOCLOBBER_GUARDED_BY(mutex) = false;        // a waker is done with the node
  bool stop_requested NOCLOBBER_GUARDED_BY(mutex) = false;  // set by the stop callback
};

// ---- the shard's queue (shard lock held) -----------------------------------------------------

inline void kmm_enqueue(kmm_shard& s, kmm_waiter& n, bool at_front) noexcept NOCLOBBER_REQUIRES(s) {
  n.queued = true;
  n.verdict = kmm_verdict::none;
  if (at_front) {
    n.prev = nullptr;
    n.next = s.queue_head;
    (s.queue_head != nullptr ? s.queue_head->prev : s.queue_tail) = &n;
    s.queue_head = &n;
  } else {
    n.next = nullptr;
    n.prev = s.queue_tail;
    (s.queue_tail != nullptr ? s.queue_tail->next : s.queue_head) = &n;
    s.queue_tail = &n;
  }
}

inline void kmm_dequeue(kmm_shard& s, kmm_waiter& n) noexcept NOCLOBBER_REQUIRES(s) {
  (n.prev != nullptr ? n.prev->next : s.queue_head) = n.next;
  (n.next != nullptr ? n.next->prev : s.queue_tail) = n.prev;
  n.prev = n.next = nullptr;
  n.queued = false;
}

/// The first waiter of `e` in the queue, or nullptr.
[[nodiscard]] inline kmm_waiter* kmm_front(kmm_shard& s, const void* e) noexcept NOCLOBBER_REQUIRES(s) {
  for (kmm_waiter* n = s.queue_head; n != nullptr; n = n->next)
    if (n->entry == e) return n;
  return nullptr;
}

/// Who the next release of `e` serves: the first waiter of `e`, and if it wants the key shared,
/// every shared waiter of `e` behind it up to the next exclusive one.
struct kmm_batch {
  kmm_waiter* first = nullptr;
  std::uint64_t shared = 0;       // shared waiters in the batch (0: one exclusive waiter)
  std::uint64_t queue_after = 0;  // parked / xparked for the waiters of `e` left behind
};

[[nodiscard]] inline kmm_batch kmm_plan_batch(kmm_shard& s, const void* e) noexcept NOCLOBBER_REQUIRES(s) {
  kmm_batch b;
  bool in_batch = true;
  for (kmm_waiter* n = s.queue_head; n != nullptr; n = n->next) {
    if (n->entry != e) continue;
    if (b.first == nullptr) {
      b.first = n;
      if (n->mode == kmm_mode::shared) b.shared = 1;
      in_batch = n->mode == kmm_mode::shared;
      continue;
    }
    if (in_batch && n->mode == kmm_mode::shared) {
      ++b.shared;
      continue;
    }
    in_batch = false;
    b.queue_after |= kmm_parked | (n->mode == kmm_mode::exclusive ? kmm_xparked : 0);
  }
  return b;
}

/// Dequeues the batch `b` planned for `e` with `verdict`; returns the nodes to signal (after the
/// shard lock is let go), linked by signal_next, in front of `list`.
[[nodiscard]] inline kmm_waiter* kmm_take_batch(kmm_shard& s, const void* e, const kmm_batch& b,
                                                kmm_verdict verdict, kmm_waiter* list) noexcept
    NOCLOBBER_REQUIRES(s) {
  std::uint64_t left = b.shared == 0 ? 1 : b.shared;
  kmm_waiter* n = b.first;
  while (left > 0 && n != nullptr) {
    kmm_waiter* const after = n->next;
    if (n->entry == e) {
      kmm_dequeue(s, *n);
      n->verdict = verdict;
      n->opens_batch = n == b.first;  // one wake-up per batch (keyed_mutex_map_counters::wakeups)
      n->batch_shared = b.shared != 0;
      n->signal_next = list;
      list = n;
      --left;
    }
    n = after;
  }
  return list;
}

/// parked / xparked for the waiters of `e` in the queue now.
[[nodiscard]] inline std::uint64_t kmm_queue_bits_of(kmm_shard& s, const void* e) noexcept
    NOCLOBBER_REQUIRES(s) {
  std::uint64_t bits = 0;
  for (kmm_waiter* n = s.queue_head; n != nullptr; n = n->next)
    if (n->entry == e) bits |= kmm_parked | (n->mode == kmm_mode::exclusive ? kmm_xparked : 0);
  return bits;
}

/// If `e` is free for its first waiter and nobody woken is on the way, wakes that waiter's batch
/// (sets woken). Returns the nodes to signal, in front of `list`.
template <class Key>
[[nodiscard]] kmm_waiter* kmm_wake_if_free(kmm_shard& s, kmm_entry<Key>* e, kmm_waiter* list) noexcept
    NOCLOBBER_REQUIRES(s) {
  std::uint64_t st = e->state.load(std::memory_order_relaxed);
  if ((st & (kmm_parked | kmm_woken)) != kmm_parked) return list;
  const kmm_batch b = kmm_plan_batch(s, e);
  if (b.first == nullptr) return list;
  do {
    if (!kmm_can_take(st, b.first->mode, true)) return list;
  } while (!e->state.compare_exchange_weak(st, (st & ~kmm_queue_bits) | b.queue_after | kmm_woken,
                                           std::memory_order_acq_rel, std::memory_order_relaxed));
  return kmm_take_batch(s, e, b, kmm_verdict::woken, list);
}

/// Wake-ups sent: batches of waiters signaled, and of those the batches of shared waiters.
struct kmm_wakeups {
  std::uint64_t all = 0;
  std::uint64_t shared = 0;
};

/// Signals every node of `list` (linked by signal_next); returns the wake-ups that makes. No shard
/// lock held. A node may be destroyed by its owner as soon as it is signaled, so its fields are
/// read first.
[[nodiscard]] inline kmm_wakeups kmm_signal(kmm_waiter* list) noexcept {
  kmm_wakeups sent;
  while (list != nullptr) {
    kmm_waiter* const n = list;
    list = n->signal_next;
    if (n->opens_batch) {
      ++sent.all;
      if (n->batch_shared) ++sent.shared;
    }
    annotated_lock lk(n->mutex);
    n->signaled = true;
    n->cv.notify_one();  // under the mutex: once it is let go the owner may destroy the node
  }
  return sent;
}

/// Sleeps until the node is signaled (true) or the wait gives up: deadline or stop (false).
inline bool kmm_sleep(kmm_waiter& n, const kmm_wait_spec& wait) {
  struct on_stop {
    kmm_waiter* n;
    void operator()() const noexcept {
      annotated_lock lk(n->mutex);
      n->stop_requested = true;
      n->cv.notify_one();
    }
  };
  // Destroyed after the lock below is let go: its destructor waits for a running callback.
  std::optional<std::stop_callback<on_stop>> callback;
  if (wait.stop != nullptr) callback.emplace(*wait.stop, on_stop{&n});
  const bool timed = wait.kind == kmm_wait::until_deadline && wait.deadline != kmm_clock::time_point::max();
  annotated_wait_lock lk(n.mutex);
  while (!n.signaled) {
    if (n.stop_requested) return false;
    if (!timed) {
      lk.wait(n.cv);
    } else if (lk.wait_until(n.cv, wait.deadline) == std::cv_status::timeout) {
      return n.signaled;
    }
  }
  return true;
}

/// Waits (without limit) for the waker that dequeued the node to signal it.
inline void kmm_await_signal(kmm_waiter& n) {
  annotated_wait_lock lk(n.mutex);
  while (!n.signaled) lk.wait(n.cv);
}

/// Resets the node's signal before it is queued again. No shard lock needed: nobody else touches
/// a node that is not queued.
inline void kmm_rearm(kmm_waiter& n) {
  annotated_lock lk(n.mutex);
  n.signaled = false;
  n.stop_requested = false;
}

enum class kmm_park_result { handed, woken, gave_up };

/// Sleeps on a queued node. On a deadline or stop request the node leaves the queue (passing on a
/// wake-up an exclusive waiter was holding back) and the result is gave_up; unless a waker
/// dequeued it first, in which case its verdict stands (handed: the key is ours). Wake-ups this
/// thread passed on are added to `sent`.
template <class Key>
kmm_park_result kmm_park(kmm_shard& s, kmm_entry<Key>* e, kmm_waiter& n, const kmm_wait_spec& wait,
                         kmm_wakeups& sent) {
  if (!kmm_sleep(n, wait)) {
    kmm_entry<Key>* head = kmm_lock_chain<Key>(s);
    if (n.queued) {
      kmm_dequeue(s, n);
      const std::uint64_t bits = kmm_queue_bits_of(s, e);
      std::uint64_t st = e->state.load(std::memory_order_relaxed);
      while (!e->state.compare_exchange_weak(st, (st & ~kmm_queue_bits) | bits, std::memory_order_acq_rel,
                                             std::memory_order_relaxed)) {
      }
      kmm_waiter* const list = kmm_wake_if_free(s, e, nullptr);
      kmm_unlock_chain(s, head);
      const kmm_wakeups passed = kmm_signal(list);
      sent.all += passed.all;
      sent.shared += passed.shared;
      return kmm_park_result::gave_up;
    }
    kmm_unlock_chain(s, head);
    kmm_await_signal(n);  // the waker that dequeued us signals right after its unlock
  }
  return n.verdict == kmm_verdict::handed ? kmm_park_result::handed : kmm_park_result::woken;
}

}  // namespace noclobber::detail
