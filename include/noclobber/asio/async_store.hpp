// noclobber/asio/async_store.hpp — the store contract with operations that return awaitables.
//
// Overview
// --------
// conditional_writer.hpp defines the store contract with blocking calls. A store reached over
// the network from an Asio server (an HTTP client, a Redis or PostgreSQL driver on Asio) should
// not block: its adapter offers the same four operations as coroutines, reached through
// `async_store_traits<Store>`:
//
//   co_await async_read(key)                          -> read_result<value_type, token_type>
//   co_await async_write_if_match(key, token, value)  -> write_result<token_type>
//   co_await async_create_if_absent(key, value)       -> write_result<token_type>
//   co_await async_erase_if_match(key, token)         -> write_result<token_type>  (optional)
//
// Each returns `boost::asio::awaitable<...>` (default executor). The key, value and token types
// come from `store_traits<Store>` exactly as for a synchronous store (member `key_type`,
// `value_type`, `token_type`, or a specialisation), and the outcome rules are the contract's own:
// write_if_match applies only on a matching token, create_if_absent only on an absent key, no
// ABA, `indeterminate` when unsure. By default the traits forward to members of those names;
// specialise `async_store_traits` for a type you cannot edit.
//
// `sync_store_adapter<Store>` makes any synchronous conditional_writer (the reference
// memory_store, a SQLite adapter...) usable through this contract. It holds a reference to the
// store, and either
//   * calls the store inline on the awaiting coroutine's thread (no executor given): right for
//     stores whose calls never block for long, such as memory_store without injected latency; or
//   * runs each call on `blocking_executor` (a thread_pool, say) and resumes the coroutine on its
//     own executor afterwards: right for stores whose calls block (file I/O, SQLite, a
//     memory_store with latency injected), so that io_context threads never block.
//
// Thread safety: the traits are stateless; the adapter adds no state beyond its reference and
// executor, so it is as thread-safe as the wrapped store (memory_store: fully). The store's
// operations are user code and run under no noclobber lock.
#pragma once

#include <concepts>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber {

/// Customisation point for asynchronous stores: forwards to members by default; each function
/// exists only when the member does, so concept checks stay SFINAE-friendly.
template <class Store>
struct async_store_traits {
  template <std::same_as<Store> S, class K>
  static auto read(S& s, const K& key) -> decltype(s.async_read(key)) {
    return s.async_read(key);
  }
  template <std::same_as<Store> S, class K, class T, class V>
  static auto write_if_match(S& s, const K& key, const T& token, const V& value)
      -> decltype(s.async_write_if_match(key, token, value)) {
    return s.async_write_if_match(key, token, value);
  }
  template <std::same_as<Store> S, class K, class V>
  static auto create_if_absent(S& s, const K& key, const V& value)
      -> decltype(s.async_create_if_absent(key, value)) {
    return s.async_create_if_absent(key, value);
  }
  template <std::same_as<Store> S, class K, class T>
  static auto erase_if_match(S& s, const K& key, const T& token)
      -> decltype(s.async_erase_if_match(key, token)) {
    return s.async_erase_if_match(key, token);
  }
};

/// async_read(key) -> awaitable<read_result<value, token>>
template <class Store>
concept async_readable_store = store_types<Store> && requires(Store& s, const store_key_t<Store>& k) {
  {
    async_store_traits<Store>::read(s, k)
    } -> std::same_as<boost::asio::awaitable<store_read_result_t<Store>>>;
};

/// The asynchronous core contract: read with a token, write if unchanged, create if absent.
template <class Store>
concept async_conditional_writer = async_readable_store<Store> &&
    requires(Store& s, const store_key_t<Store>& k, const store_token_t<Store>& t,
             const store_value_t<Store>& v) {
  {
    async_store_traits<Store>::write_if_match(s, k, t, v)
    } -> std::same_as<boost::asio::awaitable<store_write_result_t<Store>>>;
  {
    async_store_traits<Store>::create_if_absent(s, k, v)
    } -> std::same_as<boost::asio::awaitable<store_write_result_t<Store>>>;
};

/// Optional: erase only if unchanged.
template <class Store>
concept async_erasable_writer = async_conditional_writer<Store> &&
    requires(Store& s, const store_key_t<Store>& k, const store_token_t<Store>& t) {
  {
    async_store_traits<Store>::erase_if_match(s, k, t)
    } -> std::same_as<boost::asio::awaitable<store_write_result_t<Store>>>;
};

/// Makes a synchronous conditional_writer usable as an async_conditional_writer (see the
/// overview). Non-owning: the store must outlive the adapter and every pending operation.
template <conditional_writer Store>
class sync_store_adapter {
  using traits = store_traits<Store>;

 public:
  using store_type = Store;
  using key_type = store_key_t<Store>;
  using value_type = store_value_t<Store>;
  using token_type = store_token_t<Store>;
  using read_result_type = store_read_result_t<Store>;
  using write_result_type = store_write_result_t<Store>;

  /// Calls the store inline on the awaiting coroutine's thread.
  explicit sync_store_adapter(Store& store) noexcept : store_(&store) {}
  /// Runs every call on `blocking_executor`, then resumes on the coroutine's own executor.
  sync_store_adapter(Store& store, boost::asio::any_io_executor blocking_executor) noexcept
      : store_(&store), blocking_(std::move(blocking_executor)) {}

  [[nodiscard]] Store& store() const noexcept { return *store_; }

  boost::asio::awaitable<read_result_type> async_read(key_type key) {
    co_return co_await run([this, &key] { return traits::read(*store_, key); });
  }
  boost::asio::awaitable<write_result_type> async_write_if_match(key_type key, token_type token,
                                                                 value_type value) {
    co_return co_await run(
        [this, &key, &token, &value] { return traits::write_if_match(*store_, key, token, value); });
  }
  boost::asio::awaitable<write_result_type> async_create_if_absent(key_type key, value_type value) {
    co_return co_await run([this, &key, &value] { return traits::create_if_absent(*store_, key, value); });
  }
  boost::asio::awaitable<write_result_type> async_erase_if_match(key_type key, token_type token) requires
      erasable_writer<Store> {
    co_return co_await run([this, &key, &token] { return traits::erase_if_match(*store_, key, token); });
  }

 private:
  // Parameters are taken by value above: a coroutine must not keep references to the caller's
  // temporaries across a suspension.
  template <class Call>
  boost::asio::awaitable<std::invoke_result_t<Call&>> run(Call call) {
    if (!blocking_) co_return call();
    auto home = co_await boost::asio::this_coro::executor;
    co_await boost::asio::post(boost::asio::bind_executor(*blocking_, boost::asio::use_awaitable));
    // Resume at home even when the call throws.
    std::optional<std::invoke_result_t<Call&>> result;
    std::exception_ptr failure;
    try {
      result.emplace(call());
    } catch (...) {
      failure = std::current_exception();
    }
    co_await boost::asio::post(home, boost::asio::use_awaitable);
    if (failure) std::rethrow_exception(failure);
    co_return std::move(*result);
  }

  Store* store_;
  std::optional<boost::asio::any_io_executor> blocking_;
};

}  // namespace noclobber
