// noclobber/patch_if_unchanged.hpp — a sparse patch against an expected revision.
//
// Overview
// --------
// The cache refresh that overwrites an edit: a read path refreshed a cache stored inside a model
// by saving the whole model it had loaded earlier, silently undoing any field another request
// edited in between. The fix has two parts: write only the fields you mean to change (a sparse
// patch), and only if the model is still at the revision you derived the patch from. When it is
// not, the caller chooses: drop the patch (a cache refresh is worth nothing on a model that
// changed: the next read refreshes again) or re-read the revision and apply the same patch to the
// new one (the patch is sparse, so it still clobbers nothing).
//
//     auto loaded = store.read("qb");                               // value + token
//     auto cache = resolve(loaded.value);                            // slow
//     auto r = noclobber::patch_if_unchanged(store, "qb", loaded.token,
//         [&](model& m) { m.columns = cache.columns; m.backing_sql = cache.sql; },
//         noclobber::patch_conflict::drop);
//     // r.outcome: applied, dropped (the model changed: no harm done), absent, gave_up
//
// The patch goes to the store's own `patch_if_match` when the store has one and the patch
// converts to its `patch_type` (patchable_writer). Otherwise, for any conditional_writer, a
// patch that is a callable `void(value_type&)` is emulated: read, check the token, apply the
// patch to a copy, write_if_match.
//
// Outcomes: applied (token = the new one, when known); dropped (the revision moved and the
// caller asked to drop: decided at the refusal, without another attempt); absent (there is
// nothing to patch); gave_up (the retry loop stopped: reason, last_status, last_error;
// `indeterminate` when a patch's outcome is unknown). An indeterminate patch is resolved by
// conditional_op.hpp's rule: the same token means it did not land (sent again); a different one
// cannot be told from another writer's change — except on the emulated path, which recognises
// the value it wrote — so the result is gave_up with `indeterminate == true`.
//
// Thread safety: no lock of its own; as thread-safe as the store. The emulated path calls the
// patch on the calling thread under no noclobber lock; a store's native patch_if_match may run
// it under the store's lock (memory_store does; see its header).
#pragma once

#include <chrono>
#include <concepts>
#include <functional>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

#include "noclobber/cas_retry.hpp"
#include "noclobber/conditional_op.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_modify_write.hpp"

namespace noclobber {

/// What to do when the revision moved since the patch was derived.
enum class patch_conflict : unsigned char {
  drop,   // give the patch up: outcome dropped (a cache refresh: the next read refreshes again)
  retry,  // re-read the token and apply the same patch to the newer revision
};

enum class patch_outcome : unsigned char { applied, dropped, absent, gave_up };

[[nodiscard]] constexpr std::string_view to_string(patch_outcome o) noexcept {
  switch (o) {
    case patch_outcome::applied:
      return "applied";
    case patch_outcome::dropped:
      return "dropped";
    case patch_outcome::absent:
      return "absent";
    case patch_outcome::gave_up:
      return "gave_up";
  }
  return "unknown";
}

/// The result of patch_if_unchanged; the loop's statistics are the retry_stats base (reason:
/// decided for dropped and absent, with last_status conflict and absent).
template <class Token>
struct patch_result : retry_stats {
  using token_type = Token;

  patch_outcome outcome = patch_outcome::gave_up;
  std::optional<Token> token;  // applied: the new token, when the store returned one
  bool indeterminate = false;  // gave_up with a patch whose outcome is unknown

  [[nodiscard]] bool ok() const noexcept { return outcome == patch_outcome::applied; }
  explicit operator bool() const noexcept { return ok(); }
};

namespace detail {

// clang-format off
template <class Store, class Patch>
concept native_patch = patchable_writer<Store> && std::convertible_to<const Patch&, store_patch_t<Store>>;

template <class Store, class Patch>
concept emulated_patch = conditional_writer<Store> && std::invocable<const Patch&, store_value_t<Store>&>;
// clang-format on

/// patch_if_unchanged as a conditional_op (conditional_op.hpp). Native: patch_if_match on the
/// token. Emulated: read, check the token, apply the patch to a copy, write_if_match (its value
/// recognises the write when its outcome is unknown). A refusal on a moved token drops the
/// patch or, asked to retry, re-reads the token; an absent key ends it.
template <class Value, class Token, class Patch, bool Native>
class patch_op {
 public:
  using value_type = Value;
  using token_type = Token;
  using read_type = read_result<Value, Token>;
  using wresult = write_result<Token>;
  using result_type = patch_result<Token>;
  static constexpr unsigned requests =
      request_bit(Native ? op_request::patch_if_match : op_request::read_then_write_if_match);
  static constexpr bool recognises_values = !Native && std::equality_comparable<value_type>;

  patch_op(const token_type& expected, const Patch& patch, patch_conflict on_conflict)
      : token_(expected), patch_(patch), on_conflict_(on_conflict) {}

  [[nodiscard]] bool ready() const noexcept { return true; }  // the first attempt sends at once
  [[nodiscard]] op_request request() const noexcept {
    return Native ? op_request::patch_if_match : op_request::read_then_write_if_match;
  }
  [[nodiscard]] const token_type& token() const noexcept { return token_; }
  [[nodiscard]] const Patch& patch() const noexcept { return patch_; }
  [[nodiscard]] const value_type& value() const noexcept { return *next_; }

  /// A re-read (after a refusal that asked for one): follow the token, or drop.
  [[nodiscard]] op_step on_read(read_type&& read) {
    if (read.absent()) return op_step::decide(write_status::absent);
    if (!(read.token == token_)) {
      if (on_conflict_ == patch_conflict::drop) return op_step::decide(write_status::conflict);
      token_ = std::move(read.token);
    }
    return op_step::send();
  }

  /// Emulated: the conditional a native patch_if_match checks, then the patched copy to write.
  [[nodiscard]] std::optional<wresult> on_send_read(read_type&& read) {
    if (read.absent()) return wresult::make_absent();
    if (!(read.token == token_)) return wresult::make_conflict();
    next_.emplace(std::move(read.value));
    std::invoke(patch_, *next_);
    return std::nullopt;
  }

  [[nodiscard]] op_step on_refused(const wresult& w) const noexcept {
    if (w.status == write_status::absent) return op_step::decide(write_status::absent);
    if (w.status == write_status::conflict && on_conflict_ == patch_conflict::drop) {
      return op_step::decide(write_status::conflict);
    }
    return op_step::send();
  }

  void on_unknown() {
    if constexpr (recognises_values) sent_ = next_;
  }
  [[nodiscard]] bool recognise(const read_type& read) const {
    if constexpr (recognises_values) return sent_ && read.found() && read.value == *sent_;
    return false;
  }
  void on_applied(wresult& w) { new_token_ = std::move(w.token); }
  void on_landed(read_type&& read) { new_token_.emplace(std::move(read.token)); }

  /// Fills `out` (whose retry_stats the loop filled) from what happened.
  void finish(result_type& out, bool unknown_outcome) {
    if (out.reason == stop_reason::applied) {
      out.outcome = patch_outcome::applied;
      out.token = std::move(new_token_);
    } else if (out.reason == stop_reason::decided) {
      out.outcome = out.last_status == write_status::absent ? patch_outcome::absent : patch_outcome::dropped;
    } else {
      out.outcome = patch_outcome::gave_up;
      out.indeterminate = unknown_outcome;
    }
  }

 private:
  token_type token_;  // the revision the patch applies to
  const Patch& patch_;
  patch_conflict on_conflict_;
  std::optional<value_type> next_;  // emulated: the patched copy being written
  std::optional<value_type> sent_;  // emulated: a patched copy whose write's outcome is unknown
  std::optional<token_type> new_token_;
};

}  // namespace detail

/// Applies `patch` to `key` only if its token is still `expected`; see the overview.
template <class Store, class Patch>
[[nodiscard]] patch_result<store_token_t<Store>> patch_if_unchanged(
    Store& store, const store_key_t<Store>& key, const store_token_t<Store>& expected, const Patch& patch,
    patch_conflict on_conflict = patch_conflict::drop,
    const retry_policy& policy = detail::default_retry_policy()) {
  using S = std::remove_cvref_t<Store>;
  static_assert(
      detail::native_patch<S, Patch> || detail::emulated_patch<S, Patch>,
      "noclobber: patch_if_unchanged needs either a store with patch_if_match whose patch_type the patch "
      "converts to, or a patch callable as patch(value_type&) on a conditional_writer store");
  using op = detail::patch_op<store_value_t<S>, store_token_t<S>, Patch, detail::native_patch<S, Patch>>;
  detail::op_machine<Store, op> machine(store, key, expected, patch, on_conflict);
  system_retry_env env;
  return machine.run(policy, env);
}

}  // namespace noclobber
