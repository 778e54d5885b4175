// noclobber/locked_read_modify_write.hpp — a per-key lock in front of the conditional-write
// loop: the two layers of the fix for the SQLite file kept as one object-store object
// (docs/scenarios.md).
//
// Overview
// --------
// read_modify_write alone is correct against every writer, in any process. But writers in the
// same process that target the same key still race each other through the store: all but one
// get `conflict`, re-read and retry, burning round-trips and retry budget. A per-key lock in
// front (a keyed_mutex_map) makes them queue instead, so in one process each update costs one
// read and one write; the conditional write underneath still guards against writers elsewhere.
//
//     noclobber::keyed_mutex_map<std::string> locks;          // one per process, shared
//     auto r = noclobber::locked_read_modify_write(locks, store, "loc/42.db",
//         [&](const std::optional<blob>& db) -> noclobber::update<blob> { return add_row(db, row); });
//
// `locks` is any object whose `lock(key)` returns an RAII guard (the key_lock_map concept of
// noclobber/key_lock.hpp: keyed_mutex_map, or your own); it is locked with the store key itself.
// A lock map that cannot lock the store's key type fails the build with one static_assert that
// names both types. The guard is released when the call returns or throws.
//
// Thread safety: call from any number of threads. What runs under the per-key lock: the whole
// read_modify_write — every store call, every backoff sleep, `fn` (each time it is called),
// and the policy's hooks. `fn` must therefore not lock the same key through `locks` again
// (that deadlocks) and should be quick. Whatever `fn` throws, the guard is released and nothing
// is written.
#pragma once

#include <type_traits>
#include <utility>

#include "noclobber/cas_retry.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/key_lock.hpp"
#include "noclobber/read_modify_write.hpp"

namespace noclobber {

namespace detail {

/// `locks.lock(key)`, after the one static_assert that names both types when it cannot work
/// (noclobber/key_lock.hpp); nothing else is instantiated then, so that is the only error.
template <class Locks, class Key>
auto lock_store_key(Locks& locks, const Key& key) {
  if constexpr (check_key_lock_map<Locks, Key>::value) {
    return locks.lock(key);
  } else {
    return nullptr;  // not reached at run time: the static_assert has failed the build
  }
}

}  // namespace detail

/// read_modify_write with `locks.lock(key)` held throughout (see the overview).
template <class Locks, class Store, class Fn, retry_env Env>
[[nodiscard]] store_rmw_result_t<Store> locked_read_modify_write(Locks& locks, Store& store,
                                                                 const store_key_t<Store>& key, Fn&& fn,
                                                                 const retry_policy& policy, Env& env) {
  [[maybe_unused]] auto guard = detail::lock_store_key(locks, key);
  return read_modify_write(store, key, std::forward<Fn>(fn), policy, env);
}

template <class Locks, class Store, class Fn>
[[nodiscard]] store_rmw_result_t<Store> locked_read_modify_write(Locks& locks, Store& store,
                                                                 const store_key_t<Store>& key, Fn&& fn,
                                                                 const retry_policy& policy) {
  [[maybe_unused]] auto guard = detail::lock_store_key(locks, key);
  return read_modify_write(store, key, std::forward<Fn>(fn), policy);
}

template <class Locks, class Store, class Fn>
[[nodiscard]] store_rmw_result_t<Store> locked_read_modify_write(Locks& locks, Store& store,
                                                                 const store_key_t<Store>& key, Fn&& fn) {
  [[maybe_unused]] auto guard = detail::lock_store_key(locks, key);
  return read_modify_write(store, key, std::forward<Fn>(fn));
}

}  // namespace noclobber
