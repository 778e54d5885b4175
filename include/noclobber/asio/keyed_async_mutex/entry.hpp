// noclobber/asio/keyed_async_mutex/entry.hpp — the per-key state of a keyed_async_mutex: who holds
// the key (one exclusive holder or any number of shared holders), the FIFO queue of waiting
// operations, who is granted the key when it frees up, and the shard map whose nodes are reused.
//
// Overview
// --------
// A key's entry exists exactly while the key is held or awaited. Grants are FIFO with no barging:
// a newcomer takes the key at once only when nobody is queued (async_lock_entry::free_for); when
// a holder lets go, the front of the queue is granted: one exclusive waiter, or every shared
// waiter up to the first exclusive one (grant_front). A waiter that leaves the queue (cancelled,
// timed out) may let shared waiters behind it in (grant_front again).
//
// async_lock_shard keeps the map of live entries and the map nodes of entries that went away
// (extracted node handles), and reuses them for new keys: once as many keys have been live at
// once as will ever be, taking and releasing keys allocates nothing (try_lock included).
//
// Thread safety: every field here is guarded by its shard's mutex (annotated_mutex; clang's
// -Wthread-safety checks the shard's fields). No user code runs here except Hash, KeyEqual and
// Key's copy construction or assignment, all under the shard mutex (if they throw, nothing
// changed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/system/error_code.hpp>

#include "noclobber/thread_annotations.hpp"

namespace noclobber::detail {

enum class async_lock_mode : unsigned char { exclusive, shared };

// One queued operation. Fields marked (S) are guarded by the shard mutex of the key's shard.
struct async_lock_waiter {
  enum class state : unsigned char { queued, granted, withdrawn };

  async_lock_waiter* prev = nullptr;  // (S)
  async_lock_waiter* next = nullptr;  // (S)
  state st = state::queued;           // (S) leaves `queued` exactly once
  async_lock_mode mode = async_lock_mode::exclusive;
  void* node = nullptr;   // the key's map node: valid while queued or granted-but-not-released
  void* shard = nullptr;  // the key's shard: valid as long as the mutex
  async_lock_waiter* granted_next = nullptr;  // (S) the list grant_front returns
  // Posts the completion to the waiter's executor. Called after st left `queued`, with no lock.
  void (*post_completion)(async_lock_waiter*, boost::system::error_code) = nullptr;
};

// The per-key state. An entry is in its shard's map exactly while held or awaited.
struct async_lock_entry {
  bool exclusive = false;             // (S) held exclusively
  std::size_t shared = 0;             // (S) shared holders
  async_lock_waiter* head = nullptr;  // (S) oldest waiter
  async_lock_waiter* tail = nullptr;  // (S)
  std::size_t waiters = 0;            // (S)

  [[nodiscard]] bool held() const noexcept { return exclusive || shared > 0; }

  /// Whether a newcomer may take the key in `mode` now: nobody is queued (no barging) and the
  /// key is free, or held shared and the newcomer wants it shared too.
  [[nodiscard]] bool free_for(async_lock_mode mode) const noexcept {
    if (head != nullptr || exclusive) return false;
    return mode == async_lock_mode::shared || shared == 0;
  }
  void take(async_lock_mode mode) noexcept {
    if (mode == async_lock_mode::exclusive)
      exclusive = true;
    else
      ++shared;
  }
  void let_go(async_lock_mode mode) noexcept {
    if (mode == async_lock_mode::exclusive)
      exclusive = false;
    else
      --shared;
  }

  void push_back(async_lock_waiter* w) noexcept {
    w->prev = tail;
    w->next = nullptr;
    (tail ? tail->next : head) = w;
    tail = w;
    ++waiters;
  }
  void remove(async_lock_waiter* w) noexcept {
    (w->prev ? w->prev->next : head) = w->next;
    (w->next ? w->next->prev : tail) = w->prev;
    w->prev = w->next = nullptr;
    --waiters;
  }

  /// Grants the key to the front of the queue, as far as the holders now allow: one exclusive
  /// waiter when the key is free, or every shared waiter up to the first exclusive one when it is
  /// not held exclusively. Granted waiters leave the queue with st = granted and are returned in
  /// queue order (linked by granted_next) for the caller to complete once the mutex is let go.
  [[nodiscard]] async_lock_waiter* grant_front() noexcept {
    async_lock_waiter* first = nullptr;
    async_lock_waiter** link = &first;
    while (head != nullptr) {
      async_lock_waiter* w = head;
      if (w->mode == async_lock_mode::exclusive ? held() : exclusive) break;
      remove(w);
      take(w->mode);
      w->st = async_lock_waiter::state::granted;
      w->granted_next = nullptr;
      *link = w;
      link = &w->granted_next;
      if (w->mode == async_lock_mode::exclusive) break;
    }
    return first;
  }
};

/// Completes every waiter of a grant_front list. No shard mutex held.
inline void async_lock_complete_granted(async_lock_waiter* w) {
  while (w != nullptr) {
    async_lock_waiter* next = w->granted_next;  // read first: posting may let the op run and go
    w->post_completion(w, {});
    w = next;
  }
}

[[nodiscard]] inline std::size_t keyed_async_mutex_mix_hash(std::size_t h) noexcept {
  // std::hash of an integer is the identity; spread it before taking a shard.
  std::uint64_t x = static_cast<std::uint64_t>(h);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return static_cast<std::size_t>(x);
}

/// One shard: its mutex, the map of live entries, and map nodes kept for reuse.
template <class Key, class Hash, class KeyEqual>
struct alignas(64) async_lock_shard {
  using map_type = std::unordered_map<Key, async_lock_entry, Hash, KeyEqual>;
  using node_type = typename map_type::value_type;

  mutable annotated_mutex mutex;
  map_type map NOCLOBBER_GUARDED_BY(mutex);
  std::vector<typename map_type::node_type> spare NOCLOBBER_GUARDED_BY(mutex);  // reusable map nodes

  /// The entry of `key`, inserted (empty) if absent: `inserted` says which. Reuses a spare node
  /// when there is one, so it allocates only while the shard grows to its high-water mark. May
  /// throw what Hash, KeyEqual, Key's copy or operator new throw; nothing changes then.
  std::pair<node_type*, bool> find_or_insert(const Key& key) NOCLOBBER_REQUIRES(mutex) {
    auto it = map.find(key);
    if (it != map.end()) return {&*it, false};
    if constexpr (std::is_copy_assignable_v<Key>) {
      if (!spare.empty()) {
        typename map_type::node_type nh = std::move(spare.back());
        spare.pop_back();
        try {
          nh.key() = key;
          nh.mapped() = async_lock_entry{};
          auto r = map.insert(std::move(nh));  // may rehash (allocate) while the shard grows
          return {&*r.position, true};
        } catch (...) {
          if (!nh.empty()) spare.push_back(std::move(nh));  // within capacity: cannot throw
          throw;
        }
      }
    }
    auto r = map.try_emplace(key);
    return {&*r.first, true};
  }

  /// Removes `node`'s entry (neither held nor awaited any more), keeping its map node for reuse.
  void erase(node_type* node) noexcept NOCLOBBER_REQUIRES(mutex) {
    auto nh = map.extract(node->first);
    try {
      spare.push_back(std::move(nh));
    } catch (...) {
      // could not grow the spare list: the node is freed instead
    }
  }
};

}  // namespace noclobber::detail
