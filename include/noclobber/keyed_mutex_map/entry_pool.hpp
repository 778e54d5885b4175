// noclobber/keyed_mutex_map/entry_pool.hpp — the entries of a keyed_mutex_map (one per live key)
// and the pool that recycles them.
//
// Overview
// --------
// An entry is the lock of one key while that key is held or waited on. It sits in the chain of
// the shard its key hashes to (noclobber/keyed_mutex_map/shard.hpp); when its last holder leaves
// and nobody waits, it is unlinked ("retired") and goes back to a free list: first the retiring
// thread's cache (noclobber/keyed_mutex_map/thread_cache.hpp), in batches the map's shared pool.
// Entries are never freed while the pool lives, so a late notifier may still touch a retired
// entry's park mutex and condition variables (at worst a spurious wake-up).
//
// The pool outlives the map when a thread cache still holds some of its entries: it is held by
// shared_ptr (the map's and every attached cache slot's), and freed by whichever lets go last.
//
// Entry fields marked "shard" are guarded by the lock bit of the shard the key hashes to (a spin
// word, which Clang's thread-safety analysis cannot name); the pool's fields are guarded by its
// annotated mutex and checked by -Wthread-safety.
//
// Thread safety: kmm_pool_base's members lock its mutex themselves or require it (annotated).
// No user code runs here except Key's constructor and assignment (kmm_assign_key), called with
// no lock held.
#pragma once

#include <atomic>
#include <condition_variable>
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
  std::uint64_t detached_wakeups NOCLOBBER_GUARDED_BY(mutex) = 0;
  std::uint64_t detached_shared_wakeups NOCLOBBER_GUARDED_BY(mutex) = 0;
  // The thread cache slots attached now (kmm_cache_slot::attach / detach).
  std::vector<kmm_cache_slot*> attached NOCLOBBER_GUARDED_BY(mutex);
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
  std::mutex park_mutex;                   // guards no field: orders wake_seq bumps with parkers
  std::condition_variable park_exclusive;  // exclusive waiters sleep here, woken one at a time
  std::condition_variable park_shared;     // shared waiters sleep here, woken all at once
};

/// The shard word to publish for a chain (see shard.hpp): the fast unlock (one CAS from `head`
/// to 0) is allowed only when the chain is exactly one entry held exclusively with nobody
/// waiting; otherwise kmm_slow is set. Shard lock held.
template <class Key>
[[nodiscard]] inline std::uintptr_t kmm_word_for(const kmm_entry<Key>* head) noexcept {
  if (head == nullptr) return 0;
  const bool fast = head->next == nullptr && head->waiters == 0 && head->holders == -1;
  return reinterpret_cast<std::uintptr_t>(head) | (fast ? 0 : kmm_slow);
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
