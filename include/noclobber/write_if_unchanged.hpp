// noclobber/write_if_unchanged.hpp — compare-and-set by value, for flags and markers.
//
// Overview
// --------
// The dirty flag cleared after a long wait: a worker snapshots a flag (`dirty_since`) when it
// claims a job, works for 30 s, then clears the flag unconditionally — destroying a newer value a
// user wrote in the meantime, after which a reconciler overwrites the user's edit. The fix is to
// clear the flag only if it still holds the value seen at claim time. These helpers do that on
// any store that fulfils conditional_writer.hpp, with the version-token check underneath, so a
// value that was changed and changed back in between is also handled correctly (the token moved:
// re-read, re-compare).
//
//     // claim time
//     auto seen = store.read(ino).value.dirty_since;                  // e.g. 1715760000123
//     ...                                                              // push, wait up to 30 s
//     auto r = noclobber::update_field_if_unchanged(store, ino, &inode::dirty_since,
//                                                  seen, std::optional<std::int64_t>{});
//     // r.outcome == applied: cleared; == unchanged: a newer write is there, left alone.
//
//   write_if_unchanged(store, key, expected, desired)        whole value: expected -> desired
//                                                            (expected nullopt: only if absent)
//   update_field_if_unchanged(store, key, field, expected, desired)
//                                                            one field (a member pointer or a
//                                                            projection returning a reference)
//   erase_if_unchanged(store, key, expected)                 erase if the value is still expected
//
// Results are rmw_result (read_modify_write.hpp). For these helpers `unchanged` means "the key
// no longer held `expected` (or is absent), so nothing was written"; `value` then holds what
// is there now. Conflicts, transient errors and indeterminate writes are handled as in
// read_modify_write, through cas_retry and the given policy.
//
// Requirements: the compared value or field type is equality-comparable. Recognising an
// indeterminate write relies on the value being unique to this write (read_modify_write.hpp);
// for these idempotent compare-and-set helpers "desired is there" is the goal anyway.
//
// Thread safety: no lock of its own; as thread-safe as the store. Comparisons and copies of
// Value run on the calling thread under no noclobber lock.
#pragma once

#include <concepts>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "noclobber/cas_retry.hpp"
#include "noclobber/conditional_op.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_modify_write.hpp"

namespace noclobber {

/// Writes `desired` only if the key still holds `expected` (nullopt: only if the key is absent).
template <class Store>
[[nodiscard]] store_rmw_result_t<Store> write_if_unchanged(
    Store& store, const store_key_t<Store>& key, const std::optional<store_value_t<Store>>& expected,
    const store_value_t<Store>& desired, const retry_policy& policy = detail::default_retry_policy()) {
  using value_type = store_value_t<Store>;
  static_assert(
      std::equality_comparable<value_type>,
      "noclobber: write_if_unchanged compares values with ==: value_type must be equality-comparable");
  return read_modify_write(
      store, key,
      [&](const std::optional<value_type>& current) -> update<value_type> {
        if (current != expected) return keep;
        return desired;
      },
      policy);
}

/// Sets the field `field` (a member pointer, or a callable returning a reference into the value)
/// to `desired` only if it still equals `expected`. Absent key: unchanged.
template <class Store, class Field, class FieldValue>
[[nodiscard]] store_rmw_result_t<Store> update_field_if_unchanged(
    Store& store, const store_key_t<Store>& key, Field field, const FieldValue& expected,
    const FieldValue& desired, const retry_policy& policy = detail::default_retry_policy()) {
  using value_type = store_value_t<Store>;
  static_assert(
      std::is_lvalue_reference_v<std::invoke_result_t<Field&, value_type&>>,
      "noclobber: update_field_if_unchanged needs a member pointer (&record::field) or a callable that "
      "returns a reference to the field inside the value");
  static_assert(
      std::equality_comparable_with<std::invoke_result_t<Field&, const value_type&>, const FieldValue&>,
      "noclobber: update_field_if_unchanged compares the field with `expected` using ==");
  return read_modify_write(
      store, key,
      [&](const std::optional<value_type>& current) -> update<value_type> {
        if (!current || !(std::invoke(field, *current) == expected)) return keep;
        value_type next = *current;
        std::invoke(field, next) = desired;
        return next;
      },
      policy);
}

namespace detail {

/// erase_if_unchanged as a conditional_op (conditional_op.hpp): read, compare with `expected`
/// (another value, or no key: decided, unchanged), send erase_if_match on the token read. An
/// erase whose outcome was unknown is recognised by the key being gone.
template <class Value, class Token>
class erase_op {
 public:
  using value_type = Value;
  using token_type = Token;
  using read_type = read_result<Value, Token>;
  using wresult = write_result<Token>;
  using result_type = rmw_result<Value, Token>;
  static constexpr unsigned requests = request_bit(op_request::erase_if_match);

  explicit erase_op(const value_type& expected) : expected_(expected) {}

  [[nodiscard]] bool ready() const noexcept { return token_.has_value(); }
  [[nodiscard]] op_request request() const noexcept { return op_request::erase_if_match; }
  [[nodiscard]] const token_type& token() const noexcept { return *token_; }

  [[nodiscard]] op_step on_read(read_type&& read) {
    if (read.absent() || !(read.value == expected_)) {
      if (read.found()) seen_.emplace(std::move(read.value));
      return op_step::decide();  // nothing to erase: unchanged
    }
    token_.emplace(std::move(read.token));
    return op_step::send();
  }
  [[nodiscard]] op_step on_refused(const wresult&) const noexcept { return op_step::send(); }
  void on_unknown() noexcept {}
  [[nodiscard]] bool recognise(const read_type& read) const noexcept { return read.absent(); }
  void on_applied(wresult&) noexcept { erased_ = true; }
  void on_landed(read_type&&) noexcept { erased_ = true; }

  /// Fills `out` (whose retry_stats the loop filled) from what happened.
  void finish(result_type& out, bool unknown_outcome) {
    if (erased_) {
      out.outcome = rmw_outcome::applied;
    } else if (out.reason == stop_reason::decided) {
      out.outcome = rmw_outcome::unchanged;
      out.value = std::move(seen_);
    } else {
      out.outcome = rmw_outcome::gave_up;
      out.indeterminate = unknown_outcome;
    }
  }

 private:
  const value_type& expected_;
  std::optional<token_type> token_;  // the token of the expected value, once read
  std::optional<value_type> seen_;   // the value found instead of expected
  bool erased_ = false;
};

}  // namespace detail

/// Erases the key only if its value still equals `expected`. Needs erase_if_match
/// (erasable_writer). An erase reported indeterminate is resolved by conditional_op.hpp's rule:
/// the key gone means done (the goal state); the same token means it did not land (sent again);
/// anything else stops with outcome gave_up and `indeterminate == true`.
template <class Store>
[[nodiscard]] store_rmw_result_t<Store> erase_if_unchanged(
    Store& store, const store_key_t<Store>& key, const store_value_t<Store>& expected,
    const retry_policy& policy = detail::default_retry_policy()) {
  using S = std::remove_cvref_t<Store>;
  static_assert(
      erasable_writer<S>,
      "noclobber: erase_if_unchanged needs the store's `erase_if_match(const key_type&, const token_type&)` "
      "returning write_result<token_type>");
  static_assert(
      std::equality_comparable<store_value_t<S>>,
      "noclobber: erase_if_unchanged compares values with ==: value_type must be equality-comparable");
  detail::op_machine<Store, detail::erase_op<store_value_t<S>, store_token_t<S>>> machine(store, key,
                                                                                          expected);
  system_retry_env env;
  return machine.run(policy, env);
}

}  // namespace noclobber
