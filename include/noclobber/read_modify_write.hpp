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
// Indeterminate writes
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
// Structure: detail::rmw_core makes every decision above without doing I/O; detail::rmw_machine
// performs the store calls it asks for, and asio/async_read_modify_write.hpp awaits the same
// calls, so both forms share one implementation. rmw_core allocates only to remember values
// whose write was indeterminate.
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
  template <class U>
  requires(std::constructible_from<Value, U> && !std::same_as<std::remove_cvref_t<U>, Value> &&
           !std::same_as<std::remove_cvref_t<U>, update> && !std::same_as<std::remove_cvref_t<U>, keep_t> &&
           !std::same_as<std::remove_cvref_t<U>, abort_t>) update(U&& u)
      : kind_(update_kind::write), value_(std::in_place, std::forward<U>(u)) {}   // NOLINT: implicit
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

/// The result of read_modify_write and of the algorithms built on it.
template <class Value, class Token>
struct rmw_result {
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
  /// Attempts made (each one a write, preceded by a read when one was needed).
  unsigned attempts = 0;
  /// Why the retry loop stopped. For unchanged and aborted it is stop_reason::applied: fn's
  /// answer ended the loop, not a failure.
  stop_reason reason = stop_reason::permanent;
  /// Status of the last store call the loop acted on (a failed read is mapped with
  /// as_write_status), and the store's words for it.
  write_status last_status = write_status::permanent;
  store_error last_error;
  /// fn's reason when aborted.
  std::string abort_reason;
  /// Total time slept in backoff.
  std::chrono::nanoseconds slept{0};

  /// applied or unchanged.
  [[nodiscard]] bool ok() const noexcept {
    return outcome == rmw_outcome::applied || outcome == rmw_outcome::unchanged;
  }
  explicit operator bool() const noexcept { return ok(); }
};

template <class Store>
using store_rmw_result_t = rmw_result<store_value_t<Store>, store_token_t<Store>>;

/// `fn` can be called with the current value (or absence) and answers an update.
template <class Fn, class Value>
concept rmw_function = std::invocable < Fn&,
        const std::optional<Value>
& > &&std::convertible_to<std::invoke_result_t<Fn&, const std::optional<Value>&>, update<Value>>;

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

/// The decisions of one read_modify_write, free of I/O: when an attempt reads, calling `fn`,
/// keep / abort, which write to send (create_if_absent or write_if_match on the token read),
/// the indeterminate rule, and the rmw_result bookkeeping. A driver performs the store calls and
/// hands each answer back; every driver runs the same sequence per attempt:
///
///   if (starts_with_read(info)) { if (auto a = on_read(read())) return *a; }
///   w = creates() ? create_if_absent(value()) : write_if_match(token(), value());
///   if (!on_write(w)) return w;
///   return on_resolving_read(read(), w);
///
/// rmw_machine (below) drives it with direct calls, async_rmw_machine
/// (asio/async_read_modify_write.hpp) with co_await. Not thread-safe (one per call).
template <class Value, class Token, class Fn>
class rmw_core {
 public:
  using value_type = Value;
  using token_type = Token;
  using read_type = read_result<Value, Token>;
  using wresult = write_result<Token>;
  using result_type = rmw_result<Value, Token>;
  static constexpr bool recognises_values = std::equality_comparable<value_type>;

  explicit rmw_core(Fn& fn) : fn_(fn) {}

  /// Whether this attempt starts with a read; otherwise it resends the pending write.
  [[nodiscard]] bool starts_with_read(const attempt_info& info) const noexcept {
    return info.reread || !pending_ || resolving_;
  }

  /// Takes the attempt's read and calls fn on it when it is needed. Returns the attempt's
  /// answer when the attempt ends here (failed read, a write of ours recognised, unknowable
  /// indeterminate write, keep / abort); nullopt: send the write next.
  [[nodiscard]] std::optional<wresult> on_read(read_type&& read) {
    if (read.failed()) return wresult::make_failed(as_write_status(read.status), std::move(read.error));
    if (read.found() && recognise(read.value)) return landed(std::move(read.value), std::move(read.token));
    if (resolving_) {
      resolving_ = false;
      if (!untouched(read)) {
        return wresult::make_failed(
            write_status::indeterminate,
            {"indeterminate", "a write's outcome is unknown and the key has changed since"});
      }
    }
    compute(std::move(read));
    if (decided_) return wresult::make_applied();  // keep / abort: stop the loop, nothing written
    return std::nullopt;
  }

  /// The write to send: create_if_absent(key, value()) when creates(), else
  /// write_if_match(key, token(), value()). Only after starts_with_read / on_read asked for it.
  [[nodiscard]] bool creates() const noexcept { return conditioned_on_absent_; }
  [[nodiscard]] const token_type& token() const noexcept { return token_; }
  [[nodiscard]] const value_type& value() const noexcept { return *pending_; }

  /// Takes the write's answer. false: `w` is the attempt's answer. true: the write may or may
  /// not have landed; read again at once and pass that read and `w` to on_resolving_read.
  [[nodiscard]] bool on_write(const wresult& w) {
    if (w.status != write_status::indeterminate) return false;
    if constexpr (recognises_values) unknown_.push_back(*pending_);
    resolving_ = true;
    return true;
  }

  /// The attempt's answer after the indeterminate write `w` and the read that followed it.
  [[nodiscard]] wresult on_resolving_read(read_type&& read, wresult&& w) {
    if (read.failed()) {
      // Still unknown: ask for another attempt, which re-reads first (resolving_ stays set).
      return wresult::make_failed(write_status::transient, std::move(w.error));
    }
    if (read.found() && recognise(read.value)) return landed(std::move(read.value), std::move(read.token));
    resolving_ = false;
    if (untouched(read)) {
      // It did not land and nothing changed: the same request can be sent again.
      return wresult::make_failed(write_status::transient, std::move(w.error));
    }
    return std::move(w);
  }

  /// The result, from the retry loop's.
  [[nodiscard]] result_type finish(retry_result<wresult>&& r) {
    result_type out;
    out.attempts = r.attempts;
    out.reason = r.reason;
    out.slept = r.slept;
    if (!r.last_error.empty()) out.last_error = std::move(r.last_error);  // usually empty: skip the move
    if (decided_ == update_kind::keep || decided_ == update_kind::abort) {
      out.outcome = decided_ == update_kind::keep ? rmw_outcome::unchanged : rmw_outcome::aborted;
      if (current_) out.value.emplace(std::move(*current_));
      if (read_found_) out.token = token_;
      if (abort_reason_) out.abort_reason = std::move(*abort_reason_);
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
    out.last_status = r.last ? r.last->status : write_status::permanent;
    out.indeterminate = resolving_ || r.reason == stop_reason::indeterminate;
    return out;
  }

 private:
  // The key is as we left it: still absent after a create, or still at the token we sent on.
  bool untouched(const read_type& read) const {
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
    return wresult::make_applied();
  }

  void compute(read_type&& read) {
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
        abort_reason_.emplace(u.reason());
        break;
    }
  }

  Fn& fn_;
  std::optional<value_type> current_;  // what fn saw last
  std::optional<value_type> pending_;  // the value to write (kept for transient resends)
  token_type token_{};                 // the token pending_ is conditioned on
  bool read_found_ = false;
  bool conditioned_on_absent_ = false;
  bool resolving_ = false;                   // a write's outcome is unknown; the next read decides
  std::optional<update_kind> decided_;       // keep or abort, once fn said so
  std::optional<std::string> abort_reason_;  // fn's reason, once it answered abort
  std::vector<value_type> unknown_;          // values sent whose outcome we never learned
  std::optional<value_type> landed_value_;
  std::optional<token_type> landed_token_;
};

/// One read_modify_write on a synchronous store: rmw_core's sequence with direct store calls.
template <class Store, class Fn>
class rmw_machine {
 public:
  using traits = store_traits<Store>;
  using key_type = store_key_t<Store>;
  using core_type = rmw_core<store_value_t<Store>, store_token_t<Store>, Fn>;
  using wresult = typename core_type::wresult;
  using result_type = typename core_type::result_type;

  rmw_machine(Store& store, const key_type& key, Fn& fn) : store_(store), key_(key), core_(fn) {}

  wresult operator()(const attempt_info& info) {
    if (core_.starts_with_read(info)) {
      if (auto answer = core_.on_read(traits::read(store_, key_))) return std::move(*answer);
    }
    return write();
  }

  result_type finish(retry_result<wresult>&& r) { return core_.finish(std::move(r)); }

 private:
  // The attempt's write. One named result on every path, so it is built in the caller's
  // return slot (NRVO) instead of being moved out: a write_result carries two strings.
  wresult write() {
    wresult w = core_.creates() ? traits::create_if_absent(store_, key_, core_.value())
                                : traits::write_if_match(store_, key_, core_.token(), core_.value());
    if (core_.on_write(w)) w = core_.on_resolving_read(traits::read(store_, key_), std::move(w));
    return w;
  }

  Store& store_;
  const key_type& key_;
  core_type core_;
};

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
  auto r = cas_retry(
      policy, [&machine](const attempt_info& info) { return machine(info); }, env);
  return machine.finish(std::move(r));
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
