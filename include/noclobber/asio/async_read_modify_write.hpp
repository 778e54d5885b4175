// noclobber/asio/async_read_modify_write.hpp — read_modify_write as a coroutine.
//
// Overview
// --------
// `async_read_modify_write` is read_modify_write.hpp's algorithm for an asynchronous store
// (async_store.hpp): read the value and its token, let `fn` compute, write with
// write_if_match(token) — or create_if_absent when the key was absent — and retry through
// `async_cas_retry`, whose backoff waits on a timer instead of blocking a thread.
//
//   noclobber::memory_store<std::string, long> store;
//   noclobber::sync_store_adapter async_store(store);
//   auto r = co_await noclobber::async_read_modify_write(async_store, "hits",
//       [](const std::optional<long>& n) { return n.value_or(0) + 1; });
//   if (!r.ok()) report(r.reason, r.last_error);
//
// It speaks the synchronous form's types and semantics exactly: `fn(const std::optional<Value>&)`
// answers an `update<Value>` (a value, noclobber::keep, noclobber::abort(reason)); the result is
// `rmw_result<Value, Token>`; conflicts re-read and call fn again, `transient` resends the same
// write, an `indeterminate` write is resolved by re-reading (recognised by value equality or by
// an unchanged token, else the loop stops with `indeterminate`); the policy's attempt limit,
// deadline, budget, stop token and hooks apply through the shared retry_controller. See
// read_modify_write.hpp for the full statement. It is the same code, not a copy: every decision
// (when to read, calling fn, which write, the indeterminate rule, the result) is made by
// detail::op_core (conditional_op.hpp) and read_modify_write's detail::rmw_op; this header only
// awaits the store calls they ask for (detail::async_op_machine, which drives any operation
// whose requests the async store contract has). Tests check both forms give identical results
// on the same fault-injected runs.
//
// `async_locked_read_modify_write` adds the first of the two layers the SQLite file kept as one
// object-store object needs: a keyed_async_mutex in front, so that coroutines of one process
// updating the same key queue (without blocking threads) instead of racing each other through
// the store.
//
// Lifetimes: the key and fn are copied into the coroutine; the store, the mutex and the policy
// are held by reference and must outlive the awaitable's completion.
//
// Thread safety: no lock of its own. `fn`, the store's operations and the policy's hooks run on
// the awaiting coroutine's executor (or the adapter's blocking executor), under no noclobber lock
// — except in async_locked_read_modify_write, where all of them run while the key's
// keyed_async_mutex entry is held (but no thread mutex is held): `fn` must not lock the same key
// again. Whatever `fn` or the store throws propagates after the key is released, and a write
// starts only after fn returned, so nothing partial is written.
#pragma once

#include <optional>
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "noclobber/asio/async_cas_retry.hpp"
#include "noclobber/asio/async_store.hpp"
#include "noclobber/asio/keyed_async_mutex.hpp"
#include "noclobber/cas_retry.hpp"
#include "noclobber/conditional_op.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_modify_write.hpp"

namespace noclobber {

namespace detail {

/// One conditional operation on an asynchronous store: op_core's sequence (conditional_op.hpp)
/// with each store call awaited. All decisions live in op_core and the operation, shared with
/// the synchronous op_machine. The operation may ask for write_if_match, create_if_absent and
/// erase_if_match (the async store contract has no patch).
template <class Store, conditional_op Op>
class async_op_machine {
 public:
  using traits = async_store_traits<Store>;
  using key_type = store_key_t<Store>;
  using core_type = op_core<Op>;
  using read_type = typename core_type::read_type;
  using wresult = typename core_type::wresult;
  using answer_type = typename core_type::answer_type;
  using result_type = typename core_type::result_type;
  static_assert((Op::requests & (request_bit(op_request::patch_if_match) |
                                 request_bit(op_request::read_then_write_if_match))) == 0,
                "noclobber: the asynchronous store contract has no patch_if_match");

  template <class... Args>
  async_op_machine(Store& store, const key_type& key, Args&&... op_args)
      : store_(store), key_(key), core_(std::forward<Args>(op_args)...) {}

  boost::asio::awaitable<answer_type> attempt(attempt_info info) {
    // Named locals around each co_await (see backoff_wait in async_cas_retry.hpp).
    if (core_.starts_with_read(info)) {
      read_type first = co_await traits::read(store_, key_);
      if (core_.on_read(std::move(first))) co_return core_.answer();
    }
    const Op& op = core_.op();
    wresult w;  // permanent unless the switch sends one of the operation's requests
    switch (core_.request()) {
      case op_request::write_if_match:
        if constexpr ((Op::requests & request_bit(op_request::write_if_match)) != 0) {
          w = co_await traits::write_if_match(store_, key_, op.token(), op.value());
        }
        break;
      case op_request::create_if_absent:
        if constexpr ((Op::requests & request_bit(op_request::create_if_absent)) != 0) {
          w = co_await traits::create_if_absent(store_, key_, op.value());
        }
        break;
      case op_request::erase_if_match:
        if constexpr ((Op::requests & request_bit(op_request::erase_if_match)) != 0) {
          w = co_await traits::erase_if_match(store_, key_, op.token());
        }
        break;
      case op_request::patch_if_match:
      case op_request::read_then_write_if_match:
        break;
    }
    if (core_.on_sent(std::move(w))) {
      read_type after = co_await traits::read(store_, key_);
      core_.on_resolving_read(std::move(after));
    }
    co_return core_.answer();
  }

  /// The whole operation: async_cas_retry's loop over this machine's attempts, its statistics
  /// written straight into the result.
  boost::asio::awaitable<result_type> run(const retry_policy& policy) {
    result_type out;
    std::optional<op_status> last;
    co_await async_run_cas_retry(
        policy, [this](const attempt_info& info) { return attempt(info); }, out, last);
    core_.finish(out);
    co_return out;
  }

 private:
  Store& store_;
  const key_type& key_;
  core_type core_;
};

template <class Store, class Fn>
using async_rmw_machine = async_op_machine<Store, rmw_op_for<Store, Fn>>;

}  // namespace detail

/// Read, let `fn` compute, write if unchanged (create if absent), retry through
/// async_cas_retry. See the overview and read_modify_write.hpp.
template <async_conditional_writer Store, class Fn>
[[nodiscard]] boost::asio::awaitable<store_rmw_result_t<Store>> async_read_modify_write(
    Store& store, store_key_t<Store> key, Fn fn,
    const retry_policy& policy = detail::default_retry_policy()) {
  static_assert(detail::check_rmw_function<Fn, store_value_t<Store>>());
  detail::async_rmw_machine<Store, Fn> machine(store, key, fn);
  store_rmw_result_t<Store> result = co_await machine.run(policy);
  co_return result;
}

/// async_read_modify_write with `locks.async_lock(key)` held throughout: coroutines of this
/// process queue per key (FIFO, without blocking threads); the conditional write still guards
/// against writers elsewhere. fn, the store calls, backoffs and hooks all run while the key is
/// held.
template <async_conditional_writer Store, class Fn, class Hash, class KeyEqual>
[[nodiscard]] boost::asio::awaitable<store_rmw_result_t<Store>> async_locked_read_modify_write(
    keyed_async_mutex<store_key_t<Store>, Hash, KeyEqual>& locks, Store& store, store_key_t<Store> key, Fn fn,
    const retry_policy& policy = detail::default_retry_policy()) {
  auto held = co_await locks.async_lock(key, boost::asio::use_awaitable);
  co_return co_await async_read_modify_write(store, std::move(key), std::move(fn), policy);
}

}  // namespace noclobber
