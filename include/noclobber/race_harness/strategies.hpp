// noclobber/race_harness/strategies.hpp — the strategies the race harness compares.
//
// Overview
// --------
// A harness strategy performs one read-modify-write of a key through the harness's store view.
// These three wrap the library's own algorithms (no second retry loop lives here):
//
//   naive_strategy        naive_read_modify_write: read, compute, overwrite — the bug, kept as
//                         the negative control (needs the store's overwrite()).
//   cas_strategy          read_modify_write: write if unchanged, create if absent, retry.
//   locked_cas_strategy   locked_read_modify_write: a per-key lock from a keyed_mutex_map in
//                         front of the same loop (the two layers of the fix for the SQLite file
//                         kept as one object-store object, docs/scenarios.md, for writers in one
//                         process). It holds a lock across read and write, so forced mode reports
//                         it as "writers serialised".
//
// Your own strategy is any callable `(race_store<S>&, const Key&, race_modify<V>&)`.
//
// `harness_retry_policy()` is the policy these use by default: many attempts with short jittered
// sleeps, so that heavy contention ends in retries, not in give-ups.
//
// Thread safety: each strategy object is called concurrently from all writer threads; they hold
// only immutable state (and, for the locked one, a reference to a thread-safe keyed_mutex_map).
// The value function runs under the key's lock in locked_cas_strategy, under no lock otherwise.
#pragma once

#include <chrono>
#include <memory>
#include <utility>

#include "noclobber/backoff.hpp"
#include "noclobber/cas_retry.hpp"
#include "noclobber/keyed_mutex_map.hpp"
#include "noclobber/locked_read_modify_write.hpp"
#include "noclobber/naive_read_modify_write.hpp"
#include "noclobber/read_modify_write.hpp"

namespace noclobber {

/// 1000 attempts, full jitter from 50 µs up to 2 ms.
[[nodiscard]] inline retry_policy harness_retry_policy() {
  retry_policy p;
  p.backoff = backoff_policy::full_jitter(std::chrono::microseconds(50), std::chrono::milliseconds(2));
  p.max_attempts = 1000;
  return p;
}

/// The bug: read, compute, overwrite.
struct naive_strategy {
  template <class Store, class Key, class Fn>
  void operator()(Store& store, const Key& key, Fn& fn) const {
    (void)naive_read_modify_write(store, key, fn);
  }
};

/// Optimistic: write if unchanged, retry on conflict.
struct cas_strategy {
  retry_policy policy = harness_retry_policy();

  template <class Store, class Key, class Fn>
  void operator()(Store& store, const Key& key, Fn& fn) const {
    (void)read_modify_write(store, key, fn, policy);
  }
};

/// A per-key lock in front of the optimistic loop. The keyed_mutex_map is shared by all writers.
template <class Key>
struct locked_cas_strategy {
  std::shared_ptr<keyed_mutex_map<Key>> locks = std::make_shared<keyed_mutex_map<Key>>();
  retry_policy policy = harness_retry_policy();

  template <class Store, class Fn>
  void operator()(Store& store, const Key& key, Fn& fn) const {
    (void)locked_read_modify_write(*locks, store, key, fn, policy);
  }
};

}  // namespace noclobber
