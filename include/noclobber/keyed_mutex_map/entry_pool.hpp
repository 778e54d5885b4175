// noclobber/keyed_mutex_map/entry_pool.hpp — the entries of a keyed_mutex_map (one per live key)
// and the pool that recycles them.
//
// Overview
// --------
// An entry is the lock of one key while that key is held, waited for or looked at (live), and
// stays in the chain of the shard its key hashes to (noclobber/keyed_mutex_map/shard.hpp) when
// that ends (dead), to be revived by the next lock of its key; its state word
// (noclobber/keyed_mutex_map/entry_state.hpp) holds the lock and the references. A dead entry
// that is claimed and unlinked (swept or replaced) goes to a free list: first that thread's cache
// (noclobber/keyed_mutex_map/thread_cache.hpp), in batches the map's shared pool. Entries are never freed
// while the pool lives, so a thread still holding a stale pointer (a lock-free walker, a late reader of a
// chain link) reads a valid entry and checks its state before trusting anything else in it.
//
// The pool outlives the map when a thread cache still holds some of its entries: it is held by
// shared_ptr (the map's and every attached cache slot's), and freed by whichever lets go last.
//
// Entry fields: `state`, `next` and `hash` are atomics (read by lock-free walkers); `next` is
// written only under the shard lock (or before the entry is published), `hash` and `key` only
// while the entry is free (no references, in no chain); `last_handoff` only under the shard lock. The pool's
// fields are guarded by its annotated mutex and checked by -Wthread-safety.
//
// Thread safety: kmm_pool_base's members lock its mutex themselves or require it (annotated).
// No user code runs here except Key's constructor and assignment (kmm_assign_key), called with
// no lock held.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "noclobber/keyed_mutex_map/entry_state.hpp"
#include "noclobber/keyed_mutex_map/shard.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber::detail {

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

  /// Puts the chain first … last (linked by free_next) on the free list.
  void push_free(kmm_entry_base* first, kmm_entry_base* last) noexcept NOCLOBBER_EXCLUDES(mutex) {
    annotated_lock lk(mutex);
    last->free_next = free_head;
    free_head = first;
  }

  annotated_mutex mutex;
  kmm_entry_base* free_head NOCLOBBER_GUARDED_BY(mutex) = nullptr;
  // Counts of slots detached so far (their live counts are summed from `attached`).
  std::uint64_t detached_acquisitions NOCLOBBER_GUARDED_BY(mutex) = 0;
  std::uint64_t detached_contended NOCLOBBER_GUARDED_BY(mutex) = 0;
  std::uint64_t detached_sleeps NOCLOBBER_GUARDED_BY(mutex) = 0;
  std::uint64_t detached_handoffs NOCLOBBER_GUARDED_BY(mutex) = 0;
  std::uint64_t detached_wakeups NOCLOBBER_GUARDED_BY(mutex) = 0;
  std::uint64_t detached_shared_wakeups NOCLOBBER_GUARDED_BY(mutex) = 0;
  // The thread cache slots attached now (kmm_cache_slot::attach / detach).
  std::vector<kmm_cache_slot*> attached NOCLOBBER_GUARDED_BY(mutex);
};

// The lock of one key: see the overview for which field is written when.
template <class Key>
struct alignas(64) kmm_entry final : kmm_entry_base {
  std::atomic<std::uint64_t> state{kmm_claimed};  // entry_state.hpp; claimed while free
  std::atomic<kmm_entry*> next{nullptr};          // chain link
  std::atomic<std::size_t> hash{0};               // fixed while in a chain
  std::optional<Key> key;                         // fixed while in a chain; capacity kept between uses
  // When a release last handed this key over (core.hpp, handoff_due). Guarded by the shard lock
  // while the entry is in a chain; reset when it is freed.
  std::chrono::steady_clock::time_point last_handoff{};  // {}: none yet
};

/// The shard word to publish for a chain once the shard lock is let go: its head (0 when empty).
template <class Key>
[[nodiscard]] inline std::uintptr_t kmm_word_for(const kmm_entry<Key>* head) noexcept {
  return reinterpret_cast<std::uintptr_t>(head);
}

/// Takes the shard lock and returns the chain head.
template <class Key>
[[nodiscard]] inline kmm_entry<Key>* kmm_lock_chain(kmm_shard& s) noexcept NOCLOBBER_ACQUIRE(s) {
  return kmm_head_of<kmm_entry<Key>>(s.lock());
}

/// The state of `e`, an entry of a chain whose lock we hold, once it is not pending: a lock-free
/// installer that linked it stores its first state right after its CAS (entry_state.hpp), so
/// this waits at most for that store. Acquire ordering.
template <class Key>
[[nodiscard]] inline std::uint64_t kmm_settled_state(const kmm_entry<Key>* e) noexcept {
  std::uint64_t st = e->state.load(std::memory_order_acquire);
  while ((st & kmm_pending) != 0) {
    kmm_cpu_relax();
    st = e->state.load(std::memory_order_acquire);
  }
  return st;
}

/// Publishes `head` (kmm_word_for) and lets go of the shard lock.
template <class Key>
inline void kmm_unlock_chain(kmm_shard& s, kmm_entry<Key>* head) noexcept NOCLOBBER_RELEASE(s) {
  s.unlock(kmm_word_for(head));
}

/// The chain without `e` (which is in it). Shard lock held.
template <class Key>
[[nodiscard]] inline kmm_entry<Key>* kmm_unlink([[maybe_unused]] kmm_shard& s, kmm_entry<Key>* head,
                                                kmm_entry<Key>* e) noexcept NOCLOBBER_REQUIRES(s) {
  kmm_entry<Key>* const after = e->next.load(std::memory_order_relaxed);
  if (head == e) return after;
  kmm_entry<Key>* p = head;
  while (p->next.load(std::memory_order_relaxed) != e) p = p->next.load(std::memory_order_relaxed);
  p->next.store(after, std::memory_order_release);
  return head;
}

template <class Key>
struct kmm_pool final : kmm_pool_base {
  ~kmm_pool() override {
    kmm_entry_base* head = nullptr;
    {
      annotated_lock lk(mutex);  // the last owner is letting go: uncontended
      head = std::exchange(free_head, nullptr);
    }
    destroy_all(head);
  }
  void destroy_entry(kmm_entry_base* e) noexcept override { delete static_cast<kmm_entry<Key>*>(e); }
};

/// Stores `key` in a free entry, reusing the previous key's storage where it can. May throw
/// whatever Key's construction or assignment throws; the entry stays usable then.
template <class Key, class K>
void kmm_assign_key(kmm_entry<Key>& e, const K& key) {
  if constexpr (std::is_same_v<Key, std::string> && std::is_convertible_v<const K&, std::string_view>) {
    // Reuse the buffer without basic_string::assign's general replace path.
    const std::string_view src = key;
    if (e.key.has_value() && src.size() <= e.key->capacity()) {
      std::string& dst = *e.key;
      if (dst.size() != src.size()) dst.resize(src.size());
      if (!src.empty()) std::memcpy(dst.data(), src.data(), src.size());
    } else if (e.key.has_value()) {
      e.key->assign(src);
    } else {
      e.key.emplace(src);
    }
  } else if constexpr (std::is_assignable_v<Key&, const K&>) {
    if (e.key.has_value())
      *e.key = key;
    else
      e.key.emplace(key);
  } else {
    e.key.emplace(key);
  }
}

}  // namespace noclobber::detail
