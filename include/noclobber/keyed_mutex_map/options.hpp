// noclobber/keyed_mutex_map/options.hpp — the plain value types of keyed_mutex_map: its
// constructor options, its counters, and a transparent hash for string keys.
//
// Overview
// --------
//   keyed_mutex_map_options   shard_count (a power of two; 64 bytes each), handoff_after (the
//                             fairness bound)
//   keyed_mutex_map_counters  what keyed_mutex_map::counters() returns
//   string_hash               lets keyed_mutex_map<std::string, string_hash, std::equal_to<>> be
//                             locked with a std::string_view or a const char* without building a
//                             std::string
//
// Included by noclobber/keyed_mutex_map.hpp; include that.
// Thread safety: plain values and a stateless function object.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace noclobber {

// Transparent hash for string keys: keyed_mutex_map<std::string, string_hash, std::equal_to<>> can be
// locked with a std::string_view or a const char* without building a std::string.
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  std::size_t operator()(const std::string& s) const noexcept { return (*this)(std::string_view(s)); }
  std::size_t operator()(const char* s) const noexcept { return (*this)(std::string_view(s)); }
};

// Snapshot of a map's counters. Each thread counts in its own cache line (relaxed), the snapshot
// sums them; exact once the counting threads are quiescent.
struct keyed_mutex_map_counters {
  std::uint64_t acquisitions = 0;            // successful lock acquisitions (a lock_all of n keys: n)
  std::uint64_t contended_acquisitions = 0;  // of those, the ones that found the key held first
  std::uint64_t sleeps = 0;                  // times a waiter went to sleep on a held key (each costs
                                             // a wake-up); about one per contended acquisition when
                                             // waiters hold the key long, since a release wakes one
  std::uint64_t handoffs = 0;                // acquisitions handed over by a release to a waiter that
                                             // had waited past handoff_after (see the options)
  std::uint64_t wakeups = 0;                 // times a release (or a waiter passing a wake-up on)
                                             // woke the parked waiters of a key: one exclusive
                                             // waiter, or else every shared waiter
  std::uint64_t shared_wakeups = 0;          // of those, the ones that woke every shared waiter
};

// Constructor options.
struct keyed_mutex_map_options {
  // Number of shards, a power of two >= 1. Each shard is one 64-byte cache line. More shards mean
  // fewer unrelated keys sharing a line (better scaling across cores) at 64 bytes each.
  std::size_t shard_count = 4096;

  // Fairness bound. A release normally wakes the first parked waiter and lets it race running
  // threads for the key (barging: a hot key changes hands without a context switch each time).
  // Once the first parked waiter has waited this long since it first parked, the next release
  // that wakes anyone hands the key straight to it instead, so nobody can take it first. A key is
  // handed over at most once per handoff_after (each hand-over keeps the key idle while its taker
  // wakes up), so a parked waiter with n waiters parked before it is served within about
  // (n + 1) x handoff_after plus the holds in between. zero(): always hand over (strict FIFO among
  // parked waiters); nanoseconds::max(): never (unbounded barging, like std::mutex).
  std::chrono::nanoseconds handoff_after = std::chrono::milliseconds(1);
};

}  // namespace noclobber
