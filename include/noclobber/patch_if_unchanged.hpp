// noclobber/patch_if_unchanged.hpp — a sparse patch against an expected revision.
//
// Overview
// --------
// Seed 003's bug: a read path refreshed a cache stored inside a model by saving the whole
// model it had loaded earlier, silently undoing any field another request edited in between.
// The fix has two parts: write only the fields you mean to change (a sparse patch), and only
// if the model is still at the revision you derived the patch from. When it is not, the caller
// chooses: drop the patch (a cache refresh is worth nothing on a model that changed: the next
// read refreshes again) or re-read the revision and apply the same patch to the new one (the
// patch is sparse, so it still clobbers nothing).
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
// caller asked to drop); absent (there is nothing to patch); gave_up (the retry loop stopped:
// reason, last_status, last_error; `indeterminate` when a patch's outcome is unknown).
// An indeterminate patch is resolved by re-reading: the same token means it did not land
// (sent again); a different one cannot be told from another writer's change (the emulated
// path also compares values), so the result is gave_up with `indeterminate == true`.
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
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_modify_write.hpp"

namespace noclobber {

/// What to do when the revision moved since the patch was derived.
enum class patch_conflict : unsigned char {
  drop,   // give the patch up: outcome dropped (seed 003's cache refresh)
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

template <class Token>
struct patch_result {
  using token_type = Token;

  patch_outcome outcome = patch_outcome::gave_up;
  std::optional<Token> token;  // applied: the new token, when the store returned one
  bool indeterminate = false;  // gave_up with a patch whose outcome is unknown
  unsigned attempts = 0;
  stop_reason reason = stop_reason::permanent;  // why cas_retry stopped (applied for dropped / absent)
  write_status last_status = write_status::permanent;
  store_error last_error;
  std::chrono::nanoseconds slept{0};

  [[nodiscard]] bool ok() const noexcept { return outcome == patch_outcome::applied; }
  explicit operator bool() const noexcept { return ok(); }
};

namespace detail {

template <class Store, class Patch>
concept native_patch = patchable_writer<Store> && std::convertible_to<const Patch&, store_patch_t<Store>>;

template <class Store, class Patch>
concept emulated_patch = conditional_writer<Store> && std::invocable < const Patch&,
        store_value_t<Store>
& > ;

}  // namespace detail

/// Applies `patch` to `key` only if its token is still `expected`; see the overview.
template <class Store, class Patch>
[[nodiscard]] patch_result<store_token_t<Store>> patch_if_unchanged(
    Store& store, const store_key_t<Store>& key, const store_token_t<Store>& expected, const Patch& patch,
    patch_conflict on_conflict = patch_conflict::drop,
    const retry_policy& policy = detail::default_retry_policy()) {
  using S = std::remove_cvref_t<Store>;
  using traits = store_traits<S>;
  using value_type = store_value_t<S>;
  using token_type = store_token_t<S>;
  using wresult = write_result<token_type>;
  static_assert(
      detail::native_patch<S, Patch> || detail::emulated_patch<S, Patch>,
      "noclobber: patch_if_unchanged needs either a store with patch_if_match whose patch_type the patch "
      "converts to, or a patch callable as patch(value_type&) on a conditional_writer store");
  constexpr bool native = detail::native_patch<S, Patch>;

  enum class ending { none, applied, dropped, absent };
  ending end = ending::none;
  token_type token = expected;
  bool first = true;
  bool resolving = false;
  std::optional<value_type> sent;  // emulated path: the value we wrote, for recognising it
  write_status previous = write_status::applied;

  auto stop_with = [&](ending e) {
    end = e;
    return wresult::make_applied();  // ends cas_retry; `end` says how
  };

  auto attempt = [&](const attempt_info& info) -> wresult {
    if (resolving || (info.reread && !first)) {
      if (!resolving && on_conflict == patch_conflict::drop && previous == write_status::conflict) {
        return stop_with(ending::dropped);
      }
      auto r = traits::read(store, key);
      if (r.failed()) return wresult::make_failed(as_write_status(r.status), std::move(r.error));
      if (resolving) {
        resolving = false;
        if constexpr (std::equality_comparable<value_type>) {
          if (sent && r.found() && r.value == *sent) {
            end = ending::applied;
            return wresult::make_applied(std::move(r.token));
          }
        }
        if (!(r.found() && r.token == token)) {
          return wresult::make_failed(
              write_status::indeterminate,
              {"indeterminate", "a patch's outcome is unknown and the key has changed since"});
        }
        // untouched: send the same patch again below
      } else {
        if (r.absent()) return stop_with(ending::absent);
        if (!(r.token == token)) {
          if (on_conflict == patch_conflict::drop) return stop_with(ending::dropped);
          token = std::move(r.token);
        }
      }
    }
    first = false;
    wresult w;
    if constexpr (native) {
      w = traits::patch_if_match(store, key, token, patch);
    } else {
      auto r = traits::read(store, key);
      if (r.failed()) return wresult::make_failed(as_write_status(r.status), std::move(r.error));
      if (r.absent()) return stop_with(ending::absent);
      if (!(r.token == token)) {
        w = wresult::make_conflict();
      } else {
        value_type next = std::move(r.value);
        std::invoke(patch, next);
        w = traits::write_if_match(store, key, token, next);
        if constexpr (std::equality_comparable<value_type>) {
          if (w.status == write_status::indeterminate) sent.emplace(std::move(next));
        }
      }
    }
    previous = w.status;
    switch (w.status) {
      case write_status::applied:
        end = ending::applied;
        return w;
      case write_status::absent:
        return stop_with(ending::absent);
      case write_status::indeterminate:
        resolving = true;
        return wresult::make_failed(write_status::transient, std::move(w.error));  // next attempt re-reads
      default:
        return w;
    }
  };

  auto r = cas_retry(policy, attempt);
  patch_result<token_type> out;
  out.attempts = r.attempts;
  out.reason = r.reason;
  out.slept = r.slept;
  out.last_error = std::move(r.last_error);
  out.last_status = r.last ? r.last->status : write_status::permanent;
  switch (end) {
    case ending::applied:
      out.outcome = patch_outcome::applied;
      if (r.last) out.token = std::move(r.last->token);
      break;
    case ending::dropped:
      out.outcome = patch_outcome::dropped;
      out.last_status = write_status::conflict;
      break;
    case ending::absent:
      out.outcome = patch_outcome::absent;
      out.last_status = write_status::absent;
      break;
    case ending::none:
      out.outcome = patch_outcome::gave_up;
      out.indeterminate = resolving || r.reason == stop_reason::indeterminate;
      break;
  }
  return out;
}

}  // namespace noclobber
