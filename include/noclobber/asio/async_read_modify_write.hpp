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
// read_modify_write.hpp for the full statement; tests check both forms give identical results
// on the same fault-injected runs.
//
// `async_locked_read_modify_write` adds seed 000's first layer: a keyed_async_mutex in front, so
// that coroutines of one process updating the same key queue (without blocking threads) instead
// of racing each other through the store.
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

#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "noclobber/asio/async_cas_retry.hpp"
#include "noclobber/asio/async_store.hpp"
#include "noclobber/asio/keyed_async_mutex.hpp"
#include "noclobber/cas_retry.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_modify_write.hpp"

namespace noclobber {

namespace detail {

/// The state of one async_read_modify_write across its attempts; the same decisions as the
/// synchronous rmw_machine, with each store call awaited. Not thread-safe (one per call).
template <class Store, class Fn>
class async_rmw_machine {
 public:
  using traits = async_store_traits<Store>;
  using value_type = store_value_t<Store>;
  using token_type = store_token_t<Store>;
  using key_type = store_key_t<Store>;
  using wresult = write_result<token_type>;
  using result_type = rmw_result<value_type, token_type>;
  static constexpr bool recognises_values = std::equality_comparable<value_type>;

  async_rmw_machine(Store& store, const key_type& key, Fn& fn) : store_(store), key_(key), fn_(fn) {}

  boost::asio::awaitable<wresult> attempt(attempt_info info) {
    if (info.reread || !pending_ || resolving_) {
      auto read = co_await traits::read(store_, key_);
      if (read.failed()) co_return wresult::failed(as_write_status(read.status), std::move(read.error));
      if (read.found() && recognise(read.value))
        co_return landed(std::move(read.value), std::move(read.token));
      if (resolving_) {
        resolving_ = false;
        if (!untouched(read)) {
          co_return wresult::failed(
              write_status::indeterminate,
              {"indeterminate", "a write's outcome is unknown and the key has changed since"});
        }
      }
      compute(std::move(read));
      if (decided_) co_return wresult::applied();  // keep / abort: stop the loop, nothing written
    }
    wresult w;
    if (conditioned_on_absent_) {
      w = co_await traits::create_if_absent(store_, key_, *pending_);
    } else {
      w = co_await traits::write_if_match(store_, key_, token_, *pending_);
    }
    if (w.status != write_status::indeterminate) co_return w;

    // The write may or may not have landed: remember what we sent and re-read at once.
    if constexpr (recognises_values) unknown_.push_back(*pending_);
    resolving_ = true;
    auto read = co_await traits::read(store_, key_);
    if (read.failed()) {
      // Still unknown: ask for another attempt, which re-reads first (resolving_ stays set).
      co_return wresult::failed(write_status::transient, std::move(w.error));
    }
    if (read.found() && recognise(read.value)) co_return landed(std::move(read.value), std::move(read.token));
    resolving_ = false;
    if (untouched(read)) {
      // It did not land and nothing changed: the same request can be sent again.
      co_return wresult::failed(write_status::transient, std::move(w.error));
    }
    co_return w;
  }

  result_type finish(retry_result<wresult>&& r) {
    result_type out;
    out.attempts = r.attempts;
    out.reason = r.reason;
    out.slept = r.slept;
    out.last_error = std::move(r.last_error);
    out.last_status = r.last ? r.last->status : write_status::permanent;
    if (decided_ == update_kind::keep || decided_ == update_kind::abort) {
      out.outcome = decided_ == update_kind::keep ? rmw_outcome::unchanged : rmw_outcome::aborted;
      out.value = std::move(current_);
      if (read_found_) out.token = token_;
      out.abort_reason = std::move(abort_reason_);
      out.last_status = write_status::applied;
      return out;
    }
    if (r.reason == stop_reason::applied) {
      out.outcome = rmw_outcome::applied;
      out.last_status = write_status::applied;
      if (landed_value_) {
        out.value = std::move(landed_value_);
        out.token = std::move(landed_token_);
      } else {
        out.value = std::move(pending_);
        if (r.last && r.last->token) out.token = std::move(r.last->token);
      }
      out.created = conditioned_on_absent_ && !landed_value_;
      return out;
    }
    out.outcome = rmw_outcome::gave_up;
    out.indeterminate = resolving_ || r.reason == stop_reason::indeterminate;
    return out;
  }

 private:
  bool untouched(const store_read_result_t<Store>& read) const {
    return conditioned_on_absent_ ? read.absent() : (read.found() && read.token == token_);
  }

  bool recognise(const value_type& v) const {
    if constexpr (recognises_values) {
      for (const value_type& sent : unknown_) {
        if (v == sent) return true;
      }
    }
    return false;
  }

  wresult landed(value_type v, token_type t) {
    resolving_ = false;
    landed_value_.emplace(std::move(v));
    landed_token_.emplace(std::move(t));
    return wresult::applied();
  }

  void compute(store_read_result_t<Store>&& read) {
    pending_.reset();  // an exception from fn must not leave a stale write to resend
    read_found_ = read.found();
    conditioned_on_absent_ = !read_found_;
    token_ = std::move(read.token);
    if (read_found_) {
      current_.emplace(std::move(read.value));
    } else {
      current_.reset();
    }
    update<value_type> u = std::invoke(fn_, std::as_const(current_));
    switch (u.kind()) {
      case update_kind::write:
        pending_.emplace(std::move(u).value());
        break;
      case update_kind::keep:
        decided_ = update_kind::keep;
        break;
      case update_kind::abort:
        decided_ = update_kind::abort;
        abort_reason_ = u.reason();
        break;
    }
  }

  Store& store_;
  const key_type& key_;
  Fn& fn_;
  std::optional<value_type> current_;  // what fn saw last
  std::optional<value_type> pending_;  // the value to write (kept for transient resends)
  token_type token_{};                 // the token pending_ is conditioned on
  bool read_found_ = false;
  bool conditioned_on_absent_ = false;
  bool resolving_ = false;
  std::optional<update_kind> decided_;  // keep or abort, once fn said so
  std::string abort_reason_;
  std::vector<value_type> unknown_;  // values sent whose outcome we never learned
  std::optional<value_type> landed_value_;
  std::optional<token_type> landed_token_;
};

}  // namespace detail

/// Read, let `fn` compute, write if unchanged (create if absent), retry through
/// async_cas_retry. See the overview and read_modify_write.hpp.
template <async_conditional_writer Store, class Fn>
[[nodiscard]] boost::asio::awaitable<store_rmw_result_t<Store>> async_read_modify_write(
    Store& store, store_key_t<Store> key, Fn fn,
    const retry_policy& policy = detail::default_retry_policy()) {
  static_assert(detail::check_rmw_function<Fn, store_value_t<Store>>());
  detail::async_rmw_machine<Store, Fn> machine(store, key, fn);
  auto r = co_await async_cas_retry(policy,
                                    [&machine](const attempt_info& info) { return machine.attempt(info); });
  co_return machine.finish(std::move(r));
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
