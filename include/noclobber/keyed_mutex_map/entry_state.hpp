// noclobber/keyed_mutex_map/entry_state.hpp — the state word of a keyed_mutex_map entry: the lock
// of one key (exclusive bit, shared count), the references that keep the entry live, and the bits
// that tell a releasing holder whether to wake anyone.
//
// Overview
// --------
// Every entry (noclobber/keyed_mutex_map/entry_pool.hpp) carries one 64-bit atomic word:
//
//   bits 32..63  refs     references: one per holder (exclusive, or each shared holder), one per
//                         thread that waits for the key or is looking at the entry
//   bits  8..31  shared   shared holders
//   bit   5      pending  being published by a lock-free CAS on the shard word: nobody may reference
//                         it until its installer stores its first state (right after the CAS), so
//                         an entry whose CAS failed is never seen live outside a chain
//   bit   4      claimed  logically gone: being unlinked by the thread that set the bit, or free
//                         (in a cache or the pool). Nobody may reference a claimed entry.
//   bit   3      woken    a waiter was woken and is on its way to take the key: releases wake
//                         nobody else until it has taken the key, parked again or passed it on
//   bit   2      xparked  the shard's queue holds an exclusive waiter of this key (new shared
//                         lockers wait behind it: writer preference)
//   bit   1      parked   the shard's queue holds a waiter of this key
//   bit   0      held     held exclusively
//
// An entry in its shard's chain is live (refs > 0) or dead (refs == 0, not claimed). A dead entry
// stays in the chain with its key: the next lock of that key revives it with the same single CAS
// (refs 0 -> 1, plus the hold) that takes a live one, so a hot key whose holders come and go
// never goes back through the shard word. Dead entries leave the chain only by being claimed
// (CAS refs 0 -> claimed, which fails if the entry was revived first): swept under the shard lock
// by a slow-path locker, or replaced lock-free by a locker of another key when a dead entry is
// its shard's only one. So a shard keeps at most the entries that were live in it at once, and
// usually one: like the pool, memory bounded by the high-water mark, never by the keys seen.
//
// Taking the lock of an entry is one CAS that adds a reference and the hold together; letting go
// is one CAS that removes both. parked and xparked change only under the shard lock (with the
// queue they mirror); so does setting woken. A release that frees the key while parked is set and
// woken is not goes through the shard lock and wakes (or hands the key to) the first waiter.
//
// Invariant (no lost wake-up): outside the shard lock, whenever parked is set and the first waiter
// in the queue could take the key, woken is set, so some thread is awake that will take the key,
// park again (clearing woken while the key is held, so that holder's release wakes again) or pass
// the wake-up on.
//
// Thread safety: every function here is a pure computation on a word value.
#pragma once

#include <cstdint>

namespace noclobber::detail {

enum class kmm_mode { exclusive, shared };

inline constexpr std::uint64_t kmm_held = 1;
inline constexpr std::uint64_t kmm_parked = 2;
inline constexpr std::uint64_t kmm_xparked = 4;
inline constexpr std::uint64_t kmm_woken = 8;
inline constexpr std::uint64_t kmm_claimed = 16;
inline constexpr std::uint64_t kmm_pending = 32;
inline constexpr std::uint64_t kmm_queue_bits = kmm_parked | kmm_xparked;

inline constexpr int kmm_shared_shift = 8;
inline constexpr std::uint64_t kmm_shared_one = std::uint64_t{1} << kmm_shared_shift;
inline constexpr std::uint64_t kmm_shared_max = (std::uint64_t{1} << 24) - 1;
inline constexpr int kmm_ref_shift = 32;
inline constexpr std::uint64_t kmm_ref_one = std::uint64_t{1} << kmm_ref_shift;
inline constexpr std::uint64_t kmm_ref_max = (std::uint64_t{1} << 32) - 1;

[[nodiscard]] constexpr std::uint64_t kmm_refs(std::uint64_t s) noexcept {
  return s >> kmm_ref_shift;
}
[[nodiscard]] constexpr std::uint64_t kmm_shared_holders(std::uint64_t s) noexcept {
  return (s >> kmm_shared_shift) & kmm_shared_max;
}

/// The bits one hold of `mode` adds to the word.
[[nodiscard]] constexpr std::uint64_t kmm_hold_of(kmm_mode mode) noexcept {
  return mode == kmm_mode::exclusive ? kmm_held : kmm_shared_one;
}

/// Whether a lock of `mode` can be taken now. `woken`: the taker was woken from the queue, where it
/// stood before any exclusive waiter still queued, so writer preference does not hold it back.
[[nodiscard]] constexpr bool kmm_can_take(std::uint64_t s, kmm_mode mode, bool woken) noexcept {
  if ((s & kmm_held) != 0) return false;
  if (mode == kmm_mode::exclusive) return kmm_shared_holders(s) == 0;
  return kmm_shared_holders(s) < kmm_shared_max && (woken || (s & kmm_xparked) == 0);
}

/// Whether a release that leaves the word `after` must wake (or hand over to) the queue: the key
/// is free of holders, someone is parked, and nobody woken is already on the way.
[[nodiscard]] constexpr bool kmm_release_must_wake(std::uint64_t after) noexcept {
  return (after & (kmm_held | kmm_parked | kmm_woken)) == kmm_parked && kmm_shared_holders(after) == 0;
}

}  // namespace noclobber::detail
