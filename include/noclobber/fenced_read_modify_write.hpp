// noclobber/fenced_read_modify_write.hpp — a lease lock in front of the conditional-write loop,
// across processes: the two layers of the fix as one call.
//
// Overview
// --------
// locked_read_modify_write queues the writers of one process behind a keyed_mutex_map. Across
// processes the queue is a lease lock (noclobber/lease_lock.hpp), and a lease can run out under
// a holder that is paused (GC, swap, SIGSTOP): when it resumes it still believes it holds the
// key. So the write behind the lock stays conditional — it checks the version token it read —
// and the paused holder's late write is refused (`conflict`), re-read and retried instead of
// landing on top of the next holder's update:
//
//     noclobber::lease_lock_map<noclobber::redis::lease_backend> leases(backend, 2s);
//     auto r = noclobber::fenced_read_modify_write(leases, store, "loc/42.db",
//         [&](const std::optional<blob>& db) -> noclobber::update<blob> { return add_row(db, row); });
//     r.fence;        // the fencing token of the grant the call ran under
//     r.lease_lost;   // the lease ran out or was taken during the call: only the CAS guarded it
//
// Layers, outside in: `locks.lock(key)` (waits, paced by the lock's backoff); read_modify_write
// (read, fn, write_if_match, retried by `policy` on conflict); release. Writers of every process
// queue on the lease, so when no holder pauses each update costs one read and one conditional
// write; when one does, the conditional write is what keeps the update (Kleppmann, "How to do
// distributed locking", 2016). After a loss the loop goes on without the lease (it is still
// correct: every write is conditional) and `lease_lost` says so.
//
// `locks` is anything whose `lock(key)` returns a guard with `token()`, `lost()` and `unlock()`
// answering lease_check (lease_lock_map does). The lease key is the store key.
//
// Thread safety: call from any number of threads (as far as `locks` and `store` allow: a store
// that is one connection needs one per thread). What runs while the lease is held: the whole
// read_modify_write — every store call, every backoff sleep, `fn` each time it is called, and
// the policy's hooks. No in-process lock is held by this function itself; the lock map's own
// mutex is held only around its server calls. Whatever `fn` throws, the lease is released and
// nothing is written.
#pragma once

#include <type_traits>
#include <utility>

#include "noclobber/lease_lock.hpp"
#include "noclobber/read_modify_write.hpp"

namespace noclobber {

/// read_modify_write's result, plus what the lease did.
template <class Value, class Token>
struct fenced_rmw_result : rmw_result<Value, Token> {
  /// The fencing token of the grant the call ran under.
  fencing_token fence = 0;
  /// The lease was found lost (expired locally, or the server had another owner at release).
  bool lease_lost = false;
};

template <class Store>
using store_fenced_rmw_result_t = fenced_rmw_result<store_value_t<Store>, store_token_t<Store>>;

/// What fenced_read_modify_write needs of the lock map.
template <class Locks, class Key>
concept lease_lock_source = requires(Locks& locks, const Key& key) {
  { locks.lock(key).token() } -> std::convertible_to<fencing_token>;
  { locks.lock(key).lost() } -> std::convertible_to<bool>;
  { locks.lock(key).unlock() } -> std::same_as<lease_check>;
};

namespace detail {
template <class Locks, class Store, class Run>
store_fenced_rmw_result_t<Store> fenced_run(Locks& locks, const store_key_t<Store>& key, Run&& run) {
  static_assert(
      lease_lock_source<Locks, store_key_t<Store>>,
      "noclobber::fenced_read_modify_write: `locks.lock(key)` must return a lease guard "
      "(token(), lost(), unlock() -> lease_check), e.g. a lease_lock_map over the store's key type");
  auto guard = locks.lock(key);
  store_fenced_rmw_result_t<Store> out;
  out.fence = guard.token();
  static_cast<store_rmw_result_t<Store>&>(out) = run();  // on a throw the guard releases
  out.lease_lost = guard.lost();
  if (guard.unlock() == lease_check::lost) out.lease_lost = true;
  return out;
}
}  // namespace detail

/// read_modify_write with the key's lease held throughout (see the overview).
template <class Locks, class Store, class Fn, retry_env Env>
[[nodiscard]] store_fenced_rmw_result_t<Store> fenced_read_modify_write(Locks& locks, Store& store,
                                                                        const store_key_t<Store>& key,
                                                                        Fn&& fn, const retry_policy& policy,
                                                                        Env& env) {
  return detail::fenced_run<Locks, Store>(
      locks, key, [&] { return read_modify_write(store, key, std::forward<Fn>(fn), policy, env); });
}

template <class Locks, class Store, class Fn>
[[nodiscard]] store_fenced_rmw_result_t<Store> fenced_read_modify_write(Locks& locks, Store& store,
                                                                        const store_key_t<Store>& key,
                                                                        Fn&& fn, const retry_policy& policy) {
  return detail::fenced_run<Locks, Store>(
      locks, key, [&] { return read_modify_write(store, key, std::forward<Fn>(fn), policy); });
}

template <class Locks, class Store, class Fn>
[[nodiscard]] store_fenced_rmw_result_t<Store> fenced_read_modify_write(Locks& locks, Store& store,
                                                                        const store_key_t<Store>& key,
                                                                        Fn&& fn) {
  return detail::fenced_run<Locks, Store>(
      locks, key, [&] { return read_modify_write(store, key, std::forward<Fn>(fn)); });
}

}  // namespace noclobber
