// noclobber/locked_read_modify_write.hpp — seed 000's two layers: a per-key lock in front of
// the conditional-write loop.
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
// `locks` is any object whose `lock(key)` returns an RAII guard (keyed_mutex_map, or your own);
// it is locked with the store key itself. The guard is released when the call returns or
// throws.
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
#include "noclobber/keyed_mutex_map.hpp"
#include "noclobber/read_modify_write.hpp"

namespace noclobber {

/// Something that hands out a per-key RAII lock: `locks.lock(key)`.
template <class Locks, class Key>
concept key_lock_map = requires(Locks& locks, const Key& key) {
  locks.lock(key);
};

/// read_modify_write with `locks.lock(key)` held throughout (see the overview).
template <class Locks, class Store, class Fn, retry_env Env>
requires key_lock_map<Locks, store_key_t<Store>>
[[nodiscard]] store_rmw_result_t<Store> locked_read_modify_write(Locks& locks, Store& store,
                                                                 const store_key_t<Store>& key, Fn&& fn,
                                                                 const retry_policy& policy, Env& env) {
  [[maybe_unused]] auto guard = locks.lock(key);
  return read_modify_write(store, key, std::forward<Fn>(fn), policy, env);
}

template <class Locks, class Store, class Fn>
requires key_lock_map<Locks, store_key_t<Store>>
[[nodiscard]] store_rmw_result_t<Store> locked_read_modify_write(Locks& locks, Store& store,
                                                                 const store_key_t<Store>& key, Fn&& fn,
                                                                 const retry_policy& policy) {
  [[maybe_unused]] auto guard = locks.lock(key);
  return read_modify_write(store, key, std::forward<Fn>(fn), policy);
}

template <class Locks, class Store, class Fn>
requires key_lock_map<Locks, store_key_t<Store>>
[[nodiscard]] store_rmw_result_t<Store> locked_read_modify_write(Locks& locks, Store& store,
                                                                 const store_key_t<Store>& key, Fn&& fn) {
  [[maybe_unused]] auto guard = locks.lock(key);
  return read_modify_write(store, key, std::forward<Fn>(fn));
}

}  // namespace noclobber
