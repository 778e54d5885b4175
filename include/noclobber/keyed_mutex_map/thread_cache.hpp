// noclobber/keyed_mutex_map/thread_cache.hpp — per-thread caches of free entries and counters, so
// that locking and unlocking in steady state touches no shared free list and allocates nothing.
//
// Overview
// --------
// Each thread has a few cache slots, one per map it used recently (kmm_thread_cache::slot_count).
// A slot holds up to `capacity` free entries of its map's pool
// (noclobber/keyed_mutex_map/entry_pool.hpp) and the thread's counters for that map:
//
//   take an entry     from the slot; when empty, refill `batch` from the pool; when the pool is
//                     empty too, allocate one (the pool keeps it until the map and every cache
//                     holding its entries are gone)
//   recycle an entry  to the slot; when full, spill `batch` to the pool
//   counters          written only by the owning thread (relaxed), summed by the map's counters()
//                     over the pool's `attached` slots plus what detached slots left behind
//
// A slot attaches to a pool on first use and detaches when the thread exits or the slot is reused
// for another map: it hands its entries and counts back to the pool, and lets go of the pool (the
// last to let go frees it). A thread_local destructor that runs after the thread's cache is gone
// gets no cache: it uses a stand-in slot for one operation (kmm_late_slot).
//
// Lock order: a slot takes only its pool's mutex, and nothing under it.
//
// Thread safety: a slot belongs to one thread; only its atomic counters are read by others (under
// the pool mutex, in the map's counters()). No user code runs here except Key's constructor and
// assignment in kmm_take_entry, with no lock held.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "noclobber/keyed_mutex_map/entry_pool.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber::detail {

struct kmm_cache_slot;

// The slot this thread used last and its pool: the hot paths find their slot with one compare.
// Valid while that slot stays attached to that pool (the slot keeps the pool alive, so its address
// cannot be reused meanwhile); cleared when the slot detaches.
inline thread_local const kmm_pool_base* kmm_last_pool = nullptr;
inline thread_local kmm_cache_slot* kmm_last_slot = nullptr;

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
  std::atomic<std::uint64_t> handoffs{0};
  std::atomic<std::uint64_t> wakeups{0};
  std::atomic<std::uint64_t> shared_wakeups{0};
  std::shared_ptr<kmm_pool_base> pool;

  [[gnu::always_inline]] static inline void bump(std::atomic<std::uint64_t>& c,
                                                 std::uint64_t n = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  // Throws std::bad_alloc if the pool cannot record the slot; the slot stays detached then.
  void attach(std::shared_ptr<kmm_pool_base> p) {
    {
      annotated_lock lk(p->mutex);
      p->attached.push_back(this);
    }
    pool_raw = p.get();
    pool = std::move(p);
  }

  // Returns cached entries and counts to the pool and lets go of it (which may destroy it).
  void detach() noexcept {
    if (pool_raw == nullptr) return;
    if (kmm_last_slot == this) {
      kmm_last_pool = nullptr;
      kmm_last_slot = nullptr;
    }
    {
      annotated_lock lk(pool_raw->mutex);
      if (head != nullptr) {
        kmm_entry_base* tail = head;
        while (tail->free_next != nullptr) tail = tail->free_next;
        tail->free_next = pool_raw->free_head;
        pool_raw->free_head = head;
      }
      pool_raw->detached_acquisitions += acquisitions.load(std::memory_order_relaxed);
      pool_raw->detached_contended += contended.load(std::memory_order_relaxed);
      pool_raw->detached_sleeps += sleeps.load(std::memory_order_relaxed);
      pool_raw->detached_handoffs += handoffs.load(std::memory_order_relaxed);
      pool_raw->detached_wakeups += wakeups.load(std::memory_order_relaxed);
      pool_raw->detached_shared_wakeups += shared_wakeups.load(std::memory_order_relaxed);
      auto& slots = pool_raw->attached;
      const auto it = std::find(slots.begin(), slots.end(), this);
      if (it != slots.end()) {
        *it = slots.back();
        slots.pop_back();
      }
    }
    head = nullptr;
    count = 0;
    acquisitions.store(0, std::memory_order_relaxed);
    contended.store(0, std::memory_order_relaxed);
    sleeps.store(0, std::memory_order_relaxed);
    handoffs.store(0, std::memory_order_relaxed);
    wakeups.store(0, std::memory_order_relaxed);
    shared_wakeups.store(0, std::memory_order_relaxed);
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
    pool_raw->push_free(first, last);
  }

  // Takes up to `batch` entries from the pool (cache empty). False if the pool is empty too.
  bool refill() noexcept {
    annotated_lock lk(pool_raw->mutex);
    while (count < batch && pool_raw->free_head != nullptr) {
      kmm_entry_base* e = pool_raw->free_head;
      pool_raw->free_head = e->free_next;
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

  // The slot for pool `p` (attaching a slot to it if none is), remembered as this thread's last.
  kmm_cache_slot& slot_for(const std::shared_ptr<kmm_pool_base>& p) {
    kmm_cache_slot& s = find_or_attach(p);
    kmm_last_pool = p.get();
    kmm_last_slot = &s;
    return s;
  }

 private:
  kmm_cache_slot& find_or_attach(const std::shared_ptr<kmm_pool_base>& p) {
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

/// A free entry holding `key` and its hash, from `slot` (refilled from the pool, or allocated,
/// when empty). Throws what Key's construction or assignment or operator new throws; the slot is
/// unchanged then.
template <class Key, class K>
[[nodiscard]] kmm_entry<Key>* kmm_take_entry(kmm_cache_slot& slot, const K& key, std::size_t hash) {
  if (slot.head == nullptr && !slot.refill()) {
    auto* fresh = new kmm_entry<Key>;
    fresh->free_next = slot.head;
    slot.head = fresh;
    ++slot.count;
  }
  auto* e = static_cast<kmm_entry<Key>*>(slot.head);
  kmm_assign_key(*e, key);
  slot.head = e->free_next;  // taken only once the key is in place (exception safety)
  --slot.count;
  e->free_next = nullptr;
  e->hash.store(hash, std::memory_order_relaxed);
  return e;
}

/// Marks an unlinked entry free: claimed (a stale walker must not reference it) and without a
/// chain link. The entry is unlinked; stale walkers may still read it, which stays valid: entries
/// are freed only with the pool.
template <class Key>
inline void kmm_reset_free(kmm_entry<Key>* e) noexcept {
  e->state.store(kmm_claimed, std::memory_order_relaxed);
  e->next.store(nullptr, std::memory_order_relaxed);
  e->last_handoff = {};
}

/// Back to the thread's cache (see kmm_reset_free).
template <class Key>
void kmm_recycle(kmm_cache_slot& slot, kmm_entry<Key>* e) noexcept {
  kmm_reset_free(e);
  e->free_next = slot.head;
  slot.head = e;
  if (++slot.count > kmm_cache_slot::capacity) slot.spill();
}

/// As kmm_recycle, or straight to `pool` when there is no slot (no thread cache could be had).
template <class Key>
[[gnu::always_inline]] inline void kmm_give_back(kmm_cache_slot* slot, kmm_pool_base& pool,
                                                 kmm_entry<Key>* e) noexcept {
  if (slot != nullptr) {
    kmm_recycle(*slot, e);
    return;
  }
  kmm_reset_free(e);
  pool.push_free(e, e);
}

}  // namespace noclobber::detail
