// noclobber/read_if_changed.hpp — an optional store capability: a conditional read that answers
// "unchanged" instead of the value when the caller's token is still current.
//
// Overview
// --------
// HTTP calls it a conditional GET (`If-None-Match: <etag>` -> 304 Not Modified): the client
// keeps a copy with its token, asks "has it changed since this token?", and downloads the value
// only when it has. A store offers it with one more operation next to those of
// conditional_writer.hpp:
//
//   read_if_changed(s, key, token) -> read_if_changed_result<value_type, token_type>
//     unchanged == true    the key still has `token`: the caller's copy is current (no value sent)
//     unchanged == false   `fresh` is what read(key) answers now: found (a newer value and
//                          token), absent, transient or permanent
//
// An answer of `unchanged` must mean exactly what a read returning the same token would mean; a
// store that cannot tell must not offer the operation. Stores reach it through
// `revalidation_traits<Store>`, which forwards to a member `read_if_changed(key, token)` by
// default; specialise it for a store type you cannot edit. cached_store.hpp uses it to serve
// reads from a local copy while the copy is current.
//
// Thread safety: plain values and stateless traits; nothing here locks or calls user code.
#pragma once

#include <concepts>
#include <type_traits>
#include <utility>

#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber {

/// What a conditional read answered: `unchanged`, or a fresh read.
template <class Value, class Token>
struct read_if_changed_result {
  using value_type = Value;
  using token_type = Token;

  bool unchanged = false;           ///< the token given is still current; `fresh` is empty
  read_result<Value, Token> fresh;  ///< when !unchanged: the read, as read(key) would answer it

  [[nodiscard]] static read_if_changed_result make_unchanged() { return {true, {}}; }
  [[nodiscard]] static read_if_changed_result make_fresh(read_result<Value, Token> r) {
    return {false, std::move(r)};
  }
};

/// Customisation point for the capability; forwards to a member `read_if_changed(key, token)`.
template <class Store>
struct revalidation_traits {
  template <std::same_as<Store> S, class K, class T>
  static auto read_if_changed(S& s, const K& key, const T& token) -> decltype(s.read_if_changed(key, token)) {
    return s.read_if_changed(key, token);
  }
};

template <class Store>
using store_read_if_changed_result_t = read_if_changed_result<store_value_t<Store>, store_token_t<Store>>;

/// The store can answer "unchanged since this token" without sending the value.
template <class Store>
concept revalidating_store = readable_store<Store> &&
    requires(Store& s, const store_key_t<Store>& k, const store_token_t<Store>& t) {
  // clang-format off
  { revalidation_traits<Store>::read_if_changed(s, k, t) } -> std::same_as<store_read_if_changed_result_t<Store>>;
  // clang-format on
};

}  // namespace noclobber
