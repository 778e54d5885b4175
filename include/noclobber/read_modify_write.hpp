// noclobber/read_modify_write.hpp — read, compute, write only if nothing changed, retry.
//
// Overview
// --------
// The lost update (docs/conditional_writer.md) happens when a program reads a value, computes a
// new one and writes it back blindly: a concurrent writer that read the same version is
// silently overwritten. `read_modify_write` is the fix as one call, on any store that fulfils
// the contract in conditional_writer.hpp:
//
//     auto r = noclobber::read_modify_write(store, "stack/env",
//         [&](const std::optional<env_map>& current) -> noclobber::update<env_map> {
//           env_map next = current.value_or(env_map{});
//           next["REGION"] = "eu-west-1";
//           return next;                       // or noclobber::keep, or noclobber::abort("why")
//         });
//     if (!r.ok()) report(r.reason, r.last_error);
//
// One attempt reads the value and its version token (absence is a normal answer), calls `fn`,
// and writes the result with write_if_match(token) — or create_if_absent when the key was
// absent, so two creators can't both win. The loop around the attempts is `cas_retry`:
// conflict / absent / exists / transient_restart re-read and call `fn` again; transient sends
// the same write again; permanent stops; the policy bounds attempts, time and budget.
//
// What `fn` gets and returns
//   fn(const std::optional<Value>& current) -> update<Value>   (or anything convertible to it:
//   a Value, `noclobber::keep`, `noclobber::abort(reason)`).
//   `fn` may run several times (once per re-read) and must have no effects outside its return
//   value; it never runs under a noclobber lock here (see locked_read_modify_write.hpp).
//
// Indeterminate writes (the rule is conditional_op.hpp's, shared by every operation)
//   A write reported `indeterminate` may or may not have landed. It is never treated as a
//   conflict. The algorithm re-reads at once and:
//     * if the stored value equals a value we sent with unknown outcome, the write landed:
//       the result is `applied` (token = the token just read);
//     * else if the key still has the token we conditioned on (or is still absent after a
//       create), the write did not land: the same write is sent again;
//     * else the answer is unknowable from here (ours may have landed and been overwritten):
//       the loop stops with stop_reason::indeterminate and `result.indeterminate == true`.
//   Requirement: recognising our own write compares values with `==` (Value must be
//   equality-comparable, otherwise only the token rule applies), so **every write must
//   produce a value that no other write attempts** — carry an update id in the value (a bare
//   counter is not enough: two writers that read 41 both send 42) — or else the update must be
//   idempotent, so that "an equal value is there" really means "done". A store whose tokens
//   never repeat (the contract's no-ABA rule) is required for the token rule.
//
// Exceptions
//   Whatever `fn` or the store throws propagates unchanged (unless the policy's
//   classify_exception maps it to a status). A write starts only after `fn` has returned, so an
//   exception from `fn` never leaves a partial write behind.
//
// Result: rmw_result, whose retry_stats say why the loop stopped (stop_reason::decided for keep
// and abort: fn's answer ended it, not a failure).
//
// Structure: read_modify_write is one case of the I/O-free core in conditional_op.hpp:
// detail::rmw_op says what to send (create_if_absent or write_if_match on the token read), calls
// fn, and recognises its values; detail::op_core owns when to read, the indeterminate rule and
// what cas_retry is told; detail::rmw_machine (op_machine) performs the store calls, and
// asio/async_read_modify_write.hpp awaits the same calls, so both forms share one
// implementation. rmw_op allocates only to remember values whose write was indeterminate.
//
// Thread safety: read_modify_write holds no lock of its own and keeps its state on the stack;
// call it from any number of threads at once if the store allows concurrent use.
#pragma once

#include <chrono>
#include <concepts>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "noclobber/cas_retry.hpp"
#include "noclobber/conditional_op.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber {

/// `fn`'s answer "leave the stored value as it is": nothing is written.
struct keep_t {
  explicit constexpr keep_t() = default;
};
inline constexpr keep_t keep{};

/// `fn`'s answer "stop, don't write, and report this reason".
struct abort_t {
  std::string reason;
};
/// Builds `fn`'s "abort with a reason" answer: `return noclobber::abort("quota exceeded");`
[[nodiscard]] inline abort_t abort(std::string reason) {
  return abort_t{std::move(reason)};
}

/// What `fn` decided.
enum class update_kind : unsigned char { write, keep, abort };

/// What `fn` returns: a new value to write, keep, or abort. Implicitly built from a Value (or
/// anything Value is constructible from), from `noclobber::keep` and from `noclobber::abort(..)`.
template <class Value>
class update {
 public:
  using value_type = Value;

  update(const Value& v) : kind_(update_kind::write), value_(v) {}        // NOLINT: implicit
  update(Value&& v) : kind_(update_kind::write), value_(std::move(v)) {}  // NOLINT: implicit
  // clang-format off
  template <class U>
    requires std::constructible_from<Value, U> &&
             (!std::same_as<std::remove_cvref_t<U>, Value>) && (!std::same_as<std::remove_cvref_t<U>, update>) &&
             (!std::same_as<std::remove_cvref_t<U>, keep_t>) && (!std::same_as<std::remove_cvref_t<U>, abort_t>)
  update(U&& u) : kind_(update_kind::write), value_(std::in_place, std::forward<U>(u)) {}  // NOLINT: implicit
  // clang-format on
  update(keep_t) : kind_(update_kind::keep) {}                                    // NOLINT: implicit
  update(abort_t a) : kind_(update_kind::abort), reason_(std::move(a.reason)) {}  // NOLINT: implicit

  [[nodiscard]] static update set(Value v) { return update(std::move(v)); }
  [[nodiscard]] static update keep() { return update(keep_t{}); }
  [[nodiscard]] static update abort(std::string reason) { return update(abort_t{std::move(reason)}); }

  [[nodiscard]] update_kind kind() const noexcept { return kind_; }
  [[nodiscard]] bool is_write() const noexcept { return kind_ == update_kind::write; }
  [[nodiscard]] bool is_keep() const noexcept { return kind_ == update_kind::keep; }
  [[nodiscard]] bool is_abort() const noexcept { return kind_ == update_kind::abort; }
  /// The value to write; only for is_write().
  [[nodiscard]] Value& value() & { return *value_; }
  [[nodiscard]] const Value& value() const& { return *value_; }
  [[nodiscard]] Value&& value() && { return std::move(*value_); }
  /// The abort reason; empty unless is_abort().
  [[nodiscard]] const std::string& reason() const noexcept { return reason_ ? *reason_ : no_reason(); }

 private:
  update_kind kind_;
  std::optional<Value> value_;
  // Engaged only for abort: a write or keep (the hot path) constructs and destroys no string.
  std::optional<std::string> reason_;

  static const std::string& no_reason() noexcept {
    static const std::string empty;
    return empty;
  }
};

/// How a read-modify-write ended.
enum class rmw_outcome : unsigned char {
  applied,    // our value is stored (written, or recognised after an indeterminate write)
  unchanged,  // fn answered keep: nothing written
  aborted,    // fn answered abort(reason): nothing written
  gave_up,    // the retry loop stopped first (see reason, last_status, last_error, indeterminate)
};

[[nodiscard]] constexpr std::string_view to_string(rmw_outcome o) noexcept {
  switch (o) {
    case rmw_outcome::applied:
      return "applied";
    case rmw_outcome::unchanged:
      return "unchanged";
    case rmw_outcome::aborted:
      return "aborted";
    case rmw_outcome::gave_up:
      return "gave_up";
  }
  return "unknown";
}

/// The result of read_modify_write and of the algorithms built on it. The loop's statistics
/// (attempts, reason, slept, last_status, last_error) are the retry_stats base: `reason` is
/// stop_reason::decided for unchanged and aborted (fn's answer ended the loop, not a failure),
/// and last_status is then `applied` (the read succeeded).
template <class Value, class Token>
struct rmw_result : retry_stats {
  using value_type = Value;
  using token_type = Token;

  rmw_outcome outcome = rmw_outcome::gave_up;
  /// applied: the value now stored; unchanged / aborted: the value fn saw (nullopt = absent);
  /// gave_up: nullopt.
  std::optional<Value> value;
  /// applied: the new token when the store returned one (or the token read when an
  /// indeterminate write was recognised); unchanged / aborted: the token read; else nullopt.
  std::optional<Token> token;
  /// applied through create_if_absent (the key did not exist).
  bool created = false;
  /// gave_up with a write whose outcome is unknown: our update may or may not be stored.
  bool indeterminate = false;
  /// fn's reason when aborted.
  std::string abort_reason;

  /// applied or unchanged.
  [[nodiscard]] bool ok() const noexcept {
    return outcome == rmw_outcome::applied || outcome == rmw_outcome::unchanged;
  }
  explicit operator bool() const noexcept { return ok(); }
};

template <class Store>
using store_rmw_result_t = rmw_result<store_value_t<Store>, store_token_t<Store>>;

/// `fn` can be called with the current value (or absence) and answers an update.
// clang-format off
template <class Fn, class Value>
concept rmw_function =
    std::invocable<Fn&, const std::optional<Value>&> &&
    std::convertible_to<std::invoke_result_t<Fn&, const std::optional<Value>&>, update<Value>>;
// clang-format on

namespace detail {

template <class Fn, class Value>
constexpr bool check_rmw_function() {
  static_assert(std::invocable<Fn&, const std::optional<Value>&>,
                "noclobber: fn must be callable as fn(const std::optional<value_type>& current): it gets the "
                "stored value, or nullopt when the key is absent");
  if constexpr (std::invocable<Fn&, const std::optional<Value>&>) {
    static_assert(
        std::convertible_to<std::invoke_result_t<Fn&, const std::optional<Value>&>, update<Value>>,
        "noclobber: fn must return the new value, noclobber::keep or noclobber::abort(reason) "
        "(declare the lambda's return type as noclobber::update<value_type> when it returns several "
        "of these)");
  }
  return true;
}

/// read_modify_write as a conditional_op (conditional_op.hpp): read, call fn, send
/// write_if_match on the token read (create_if_absent when the key was absent); keep / abort
/// decide; a value we sent with unknown outcome is recognised by equality. The unknown-outcome
/// rule itself is op_core's. rmw_op allocates only to remember such values.
template <class Value, class Token, class Fn>
class rmw_op {
 public:
  using value_type = Value;
  using token_type = Token;
  using read_type = read_result<Value, Token>;
  using wresult = write_result<Token>;
  using result_type = rmw_result<Value, Token>;
  static constexpr unsigned requests =
      request_bit(op_request::write_if_match) | request_bit(op_request::create_if_absent);
  static constexpr bool recognises_values = std::equality_comparable<value_type>;

  explicit rmw_op(Fn& fn) : fn_(fn) {}

  [[nodiscard]] bool ready() const noexcept { return pending_.has_value(); }
  [[nodiscard]] op_request request() const noexcept {
    return read_found_ ? op_request::write_if_match : op_request::create_if_absent;
  }
  [[nodiscard]] const token_type& token() const noexcept { return token_; }
  [[nodiscard]] const value_type& value() const noexcept { return *pending_; }

  /// Calls fn on what was read: a value to write (send), or keep / abort (decided).
  [[nodiscard]] op_step on_read(read_type&& read) {
    pending_.reset();  // an exception from fn must not leave a stale write to resend
    read_found_ = read.found();
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
        return op_step::send();
      case update_kind::keep:
        decided_ = update_kind::keep;
        break;
      case update_kind::abort:
        decided_ = update_kind::abort;
        rare().abort_reason = u.reason();
        break;
    }
    return op_step::decide();  // nothing written; the read succeeded
  }

  /// conflict, absent, exists...: the loop re-reads and calls fn again.
  [[nodiscard]] op_step on_refused(const wresult&) const noexcept { return op_step::send(); }

  void on_unknown() {
    if constexpr (recognises_values) rare().unknown.push_back(*pending_);
  }
  [[nodiscard]] bool recognise(const read_type& read) const {
    if constexpr (recognises_values) {
      if (!read.found() || !rare_) return false;
      for (const value_type& sent : rare_->unknown) {
        if (read.value == sent) return true;
      }
    }
    return false;
  }

  void on_applied(wresult& w) noexcept(std::is_nothrow_move_constructible_v<token_type>) {
    if (w.token) applied_token_.emplace(std::move(*w.token));
  }
  void on_landed(read_type&& read) {
    rare().landed.emplace(std::move(read.value));
    applied_token_.emplace(std::move(read.token));
  }

  /// Fills `out` (whose retry_stats the loop filled) from what happened.
  void finish(result_type& out, bool unknown_outcome) {
    if (decided_ != update_kind::write) {
      out.outcome = decided_ == update_kind::keep ? rmw_outcome::unchanged : rmw_outcome::aborted;
      if (current_) out.value.emplace(std::move(*current_));
      if (read_found_) out.token = token_;
      if (rare_) out.abort_reason = std::move(rare_->abort_reason);
      return;
    }
    if (out.reason == stop_reason::applied) {
      out.outcome = rmw_outcome::applied;
      const bool landed = rare_ && rare_->landed;
      if (landed) {
        out.value = std::move(rare_->landed);
      } else {
        out.value = std::move(pending_);
      }
      out.token = std::move(applied_token_);
      out.created = !read_found_ && !landed;
      return;
    }
    out.outcome = rmw_outcome::gave_up;
    out.indeterminate = unknown_outcome;
  }

 private:
  struct rare_state;
  rare_state& rare() {
    if (!rare_) rare_.emplace();
    return *rare_;
  }

  Fn& fn_;
  std::optional<value_type> current_;         // what fn saw last
  std::optional<value_type> pending_;         // the value to write (kept for transient resends)
  token_type token_{};                        // the token pending_ is conditioned on
  bool read_found_ = false;                   // false: pending_ is a create
  update_kind decided_ = update_kind::write;  // keep or abort, once fn said so (write: not yet)
  // What only an abort or an unknown outcome needs, built the first time one happens: a plain
  // success constructs and destroys none of it.
  struct rare_state {
    std::string abort_reason;          // fn's reason, once it answered abort
    std::vector<value_type> unknown;   // values sent whose outcome we never learned
    std::optional<value_type> landed;  // a value of ours recognised in a read
  };
  std::optional<rare_state> rare_;
  std::optional<token_type> applied_token_;  // the token of our applied (or recognised) write
};

template <class Store, class Fn>
using rmw_op_for = rmw_op<store_value_t<Store>, store_token_t<Store>, Fn>;

/// One read_modify_write on a synchronous store: op_core's sequence with direct store calls.
template <class Store, class Fn>
using rmw_machine = op_machine<Store, rmw_op_for<Store, Fn>>;

inline const retry_policy& default_retry_policy() {
  static const retry_policy policy{};
  return policy;
}

}  // namespace detail

/// Read, let `fn` compute, write if unchanged (create if absent), retry through cas_retry.
/// See the overview for what fn gets and returns and how indeterminate writes are resolved.
/// `env` supplies cas_retry's clock, sleep and random engine (system_retry_env,
/// virtual_retry_env, or your own retry_env).
template <class Store, class Fn, retry_env Env>
[[nodiscard]] store_rmw_result_t<Store> read_modify_write(Store& store, const store_key_t<Store>& key,
                                                          Fn&& fn, const retry_policy& policy, Env& env) {
  static_assert(check_conditional_writer<Store>());
  static_assert(detail::check_rmw_function<std::remove_reference_t<Fn>, store_value_t<Store>>());
  detail::rmw_machine<Store, std::remove_reference_t<Fn>> machine(store, key, fn);
  return machine.run(policy, env);
}

template <class Store, class Fn>
[[nodiscard]] store_rmw_result_t<Store> read_modify_write(Store& store, const store_key_t<Store>& key,
                                                          Fn&& fn, const retry_policy& policy) {
  system_retry_env env;
  return read_modify_write(store, key, std::forward<Fn>(fn), policy, env);
}

template <class Store, class Fn>
[[nodiscard]] store_rmw_result_t<Store> read_modify_write(Store& store, const store_key_t<Store>& key,
                                                          Fn&& fn) {
  return read_modify_write(store, key, std::forward<Fn>(fn), detail::default_retry_policy());
}

}  // namespace noclobber
