// noclobber/cas_retry.hpp — the optimistic retry loop around a conditional write.
//
// Overview
// --------
// A read-modify-write that uses a conditional write (If-Match, a version column, a CAS) cannot
// lose updates, but it can lose the race: the store answers `conflict` and the caller must
// re-read, recompute and try again — after a backoff, within limits. `cas_retry` is that loop:
//
//   noclobber::retry_policy policy;                       // full jitter 10ms..1s, 5 attempts
//   auto r = noclobber::cas_retry(policy, [&](const noclobber::attempt_info& a) {
//     if (a.reread) cached = store.read(key);             // first attempt, and after a conflict
//     return store.write_if_match(key, cached.token, update(cached.value));
//   });
//   if (!r.ok()) log(to_string(r.reason), r.attempts, r.last_error.message);
//
// The attempt returns a `write_status`, or anything with a `.status` member of that type (such as
// `write_result<Token>`, whose `.error` is then reported too), or an `attempt_result<R>` of one of
// those, which may also say `noclobber::decided()`. What happens next:
//
//   applied                          stop: stop_reason::applied (ok())
//   decided()                        stop: stop_reason::decided — the attempt settled the
//                                    operation without a (further) write (nothing to do, the
//                                    caller's function said keep or abort); `last` is empty
//   conflict, absent, exists,        retry after a backoff; attempt_info::reread = true
//     transient_restart
//   transient                        retry the same request after a backoff; reread = false
//   indeterminate                    stop: stop_reason::indeterminate — the write may have landed;
//                                    the caller must resolve it (re-read) before anything else
//   permanent                        stop: stop_reason::permanent
//
// A retry is also refused — and the loop stops with the reason — when the attempt limit is reached
// (attempts_exhausted), when its backoff would end after the deadline (deadline), when the shared
// retry_budget is empty (budget_exhausted), or when the stop_token fires (cancelled; a sleeping
// retry wakes at once). Every result carries retry_stats: the reason, the attempt count, the time
// slept, the last status and the last error.
//
// Exceptions thrown by the attempt propagate unchanged, unless `retry_policy::classify_exception`
// maps them to a write_status (then they are treated as that outcome, with last_error.code
// "exception" and the exception's what() as message).
//
// The decisions live in `retry_controller` (retry_controller.hpp), an I/O-free class; the
// bookkeeping around it (classifying an exception, a decided attempt, filling the result) in
// detail::retry_loop, which cas_retry and asio/async_cas_retry.hpp share. cas_retry drives them
// with a blocking sleep, async_cas_retry with a timer.
//
// Environment: `cas_retry(policy, attempt, env)` takes the clock, the sleep and the random engine
// from `env` (retry_env.hpp): `system_retry_env` (the default) or `virtual_retry_env` (virtual
// time, recorded sleeps, a seeded engine: exact, instant tests).
//
// Cost: a first-try success with no deadline reads no clock, allocates nothing, calls no
// std::function unless on_attempt / on_success are set (two tests of an empty std::function
// when not) and draws no random number (a budget adds one atomic load). With a deadline the
// start is read once; with a backoff that reads a contention_meter (commit_rate, load_tracking)
// every attempt is timed (two clock reads) for the meter, which the attempt feeds through
// attempt_info::meter. The first attempt of a loop with none of these runs before any loop state
// is built (detail::run_cas_retry), so a first-try success costs little more than the attempt.
//
// Thread safety: cas_retry holds no lock of its own. The attempt, the hooks (on_attempt,
// on_retry, on_success, on_give_up; retry_controller.hpp gives their order) and
// classify_exception run on the calling thread, under no noclobber lock. A retry_policy may be
// shared by concurrent cas_retry calls (it is only read); its retry_budget is thread-safe. If a
// hook throws, the exception propagates; the tokens taken for the retry it announced are
// returned first.
#pragma once

#include <chrono>
#include <concepts>
#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "noclobber/outcome.hpp"
#include "noclobber/retry_controller.hpp"
#include "noclobber/retry_env.hpp"

namespace noclobber {

/// The attempt's "done, stop" (see the overview). `last_status` is the status the decision rests
/// on, reported as retry_stats::last_status (applied: the reads it made succeeded).
struct decided_t {
  write_status last_status = write_status::applied;
};
[[nodiscard]] constexpr decided_t decided(write_status last_status = write_status::applied) noexcept {
  return decided_t{last_status};
}

/// What an attempt may return when it can also decide: a store outcome R (write_status, or a
/// type with a `.status` member), or decided().
template <class R>
class attempt_result {
 public:
  using outcome_type = R;

  attempt_result(R outcome) : outcome_(std::move(outcome)) {}               // NOLINT: implicit
  attempt_result(decided_t d) noexcept : decided_status_(d.last_status) {}  // NOLINT: implicit

  [[nodiscard]] bool is_decided() const noexcept { return !outcome_.has_value(); }
  [[nodiscard]] write_status decided_status() const noexcept { return decided_status_; }
  /// The store outcome; only when !is_decided().
  [[nodiscard]] R& outcome() & { return *outcome_; }
  [[nodiscard]] R&& outcome() && { return std::move(*outcome_); }

 private:
  std::optional<R> outcome_;
  write_status decided_status_ = write_status::applied;
};

/// The outcome of cas_retry. `last` is what the final attempt returned (empty when no attempt
/// ran, when it decided, or when it threw an exception that classify_exception mapped).
template <class R>
struct retry_result : retry_stats {
  std::optional<R> last;

  [[nodiscard]] bool ok() const noexcept { return reason == stop_reason::applied; }
  explicit operator bool() const noexcept { return ok(); }
};

namespace detail {

template <class A>
concept attempt_with_info = std::invocable<A&, const attempt_info&>;
template <class A>
concept attempt_without_info = !attempt_with_info<A> && std::invocable<A&>;

template <class A>
decltype(auto) run_attempt(A& attempt, const attempt_info& info) {
  if constexpr (attempt_with_info<A>) {
    return std::invoke(attempt, info);
  } else {
    return std::invoke(attempt);
  }
}

/// What the attempt returns, as written.
template <class A>
using attempt_result_t =
    std::remove_cvref_t<decltype(run_attempt(std::declval<A&>(), std::declval<const attempt_info&>()))>;

template <class T>
struct unwrap_attempt_result {
  using type = T;
  static constexpr bool can_decide = false;
};
template <class R>
struct unwrap_attempt_result<attempt_result<R>> {
  using type = R;
  static constexpr bool can_decide = true;
};
/// The store outcome an attempt result carries (R for attempt_result<R>).
template <class T>
using outcome_of_t = typename unwrap_attempt_result<T>::type;

// Lets optional<R>::emplace construct the attempt's result in place (guaranteed elision through
// a conversion function) instead of moving it from a temporary.
template <class A, class R>
struct emplace_attempt {
  A& attempt;
  const attempt_info& info;
  operator R() const { return run_attempt(attempt, info); }  // NOLINT(google-explicit-constructor)
};

template <class R>
concept write_outcome = std::same_as<R, write_status> || requires(const R& r) {
  { r.status } -> std::convertible_to<write_status>;
};

template <class R>
write_status status_of(const R& r) noexcept {
  if constexpr (std::same_as<R, write_status>) {
    return r;
  } else {
    return static_cast<write_status>(r.status);
  }
}

inline const store_error& empty_error() noexcept {
  static const store_error empty;
  return empty;
}

/// What the attempt's outcome says it settled about an unknown outcome (op_status carries it).
template <class R>
attempt_note note_of(const R& r) noexcept {
  if constexpr (requires {
                  { r.note } -> std::convertible_to<attempt_note>;
                }) {
    return r.note;
  } else {
    return attempt_note::none;
  }
}

template <class R>
const store_error& error_of(const R& r) noexcept {
  if constexpr (requires {
                  { r.error } -> std::convertible_to<const store_error&>;
                }) {
    return r.error;
  } else {
    return empty_error();
  }
}

/// The one place an attempt's exception is classified: the policy's mapping and the store_error
/// it is reported with ("exception", what()). nullopt: not classified, the caller rethrows.
inline std::optional<std::pair<write_status, store_error>> classify_attempt_exception(
    const retry_policy& policy, const std::exception_ptr& e) {
  if (!policy.classify_exception) return std::nullopt;
  const std::optional<write_status> mapped = policy.classify_exception(e);
  if (!mapped) return std::nullopt;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return std::pair<write_status, store_error>{*mapped, {"exception", ex.what()}};
  } catch (...) {
    return std::pair<write_status, store_error>{*mapped, {"exception", "unknown exception"}};
  }
}

/// What one attempt came to: a store outcome (built in place in the driver's `last`), decided(),
/// or an exception that the policy's classify_exception mapped (its status and words). Not
/// thread-safe (one per loop).
template <class R>
class attempt_record {
 public:
  explicit attempt_record(std::optional<R>& last) noexcept : last_(last) {}

  /// Runs the attempt through `make` (converts to R, or to attempt_result<R>) and records what it
  /// came to. R is built in place. Exceptions propagate (pass them to on_exception).
  template <class Make>
  void run(Make&& make) {
    if constexpr (std::is_convertible_v<Make, R>) {
      thrown_.reset();
      last_.emplace(std::forward<Make>(make));
      status_ = status_of(*last_);
      note_ = note_of(*last_);
      decided_ = false;
    } else {
      accept(static_cast<attempt_result<R>>(std::forward<Make>(make)));
    }
  }

  /// Records an attempt's result that is already built (the coroutine form).
  void accept(R&& r) {
    thrown_.reset();
    last_.emplace(std::move(r));
    status_ = status_of(*last_);
    note_ = note_of(*last_);
    decided_ = false;
  }
  void accept(attempt_result<R>&& a) {
    thrown_.reset();
    decided_ = a.is_decided();
    if (decided_) {
      last_.reset();
      status_ = a.decided_status();
      note_ = attempt_note::none;
    } else {
      last_.emplace(std::move(a).outcome());
      status_ = status_of(*last_);
      note_ = note_of(*last_);
    }
  }

  /// The attempt threw `e`: classified, it is an outcome like any other; otherwise rethrown.
  void on_exception(const retry_policy& policy, const std::exception_ptr& e) {
    auto classified = classify_attempt_exception(policy, e);
    if (!classified) std::rethrow_exception(e);
    last_.reset();
    decided_ = false;
    note_ = attempt_note::none;
    status_ = classified->first;
    thrown_.emplace(std::move(classified->second));
  }

  [[nodiscard]] bool applied() const noexcept { return status_ == write_status::applied && !decided_; }
  [[nodiscard]] bool decided() const noexcept { return decided_; }
  [[nodiscard]] write_status status() const noexcept { return status_; }
  /// What the attempt settled about an unknown outcome (retry_controller::note).
  [[nodiscard]] attempt_note note() const noexcept { return note_; }

  /// The store's words for the attempt's failure.
  [[nodiscard]] const store_error& error() const noexcept {
    return thrown_ ? *thrown_ : (last_ ? error_of(*last_) : empty_error());
  }

 private:
  std::optional<R>& last_;
  write_status status_ = write_status::permanent;
  attempt_note note_ = attempt_note::none;
  bool decided_ = false;
  std::optional<store_error> thrown_;  // engaged only when a classified exception replaced the result
};

/// Applied or decided: counts the attempt `rec` recorded on `ctl` and copies the counters into
/// `out` (final). false: neither; nothing counted. The fast path: no clock; the hooks
/// (on_attempt, on_success) only when set.
template <class R>
[[nodiscard]] bool settle(retry_controller& ctl, const attempt_record<R>& rec, retry_stats& out) {
  if (rec.note() != attempt_note::none) [[unlikely]]
    ctl.note(rec.note());
  if (rec.applied()) [[likely]] {
    ctl.on_applied();
  } else if (rec.decided()) {
    ctl.on_decided(rec.status());
  } else {
    return false;
  }
  static_cast<retry_counts&>(out) = ctl.counts();
  return true;
}

/// The bookkeeping every cas_retry form shares around retry_controller: what each attempt came to
/// (attempt_record) and, at the stop, `out` filled once (the controller's counters and the last
/// error). `out` and `last` belong to the driver: cas_retry's retry_result, or an operation's own
/// result (conditional_op.hpp), so that nothing is copied on the way. The driver runs the
/// attempt, keeps time and sleeps. Not thread-safe (one per loop).
template <class R>
class retry_loop {
 public:
  using duration = std::chrono::nanoseconds;

  retry_loop(const retry_policy& policy, retry_stats& out, std::optional<R>& last)
      : ctl_(policy), out_(out), rec_(last) {}
  /// Takes over a first attempt that ran before the loop existed (its outcome in `first`), for a
  /// policy already validated (retry_controller::plain_first_attempt).
  retry_loop(const retry_policy& policy, retry_stats& out, attempt_record<R>&& first)
      : ctl_(policy, retry_controller::validated), out_(out), rec_(std::move(first)) {}

  [[nodiscard]] retry_controller& controller() noexcept { return ctl_; }

  /// True when the stop token fired before the first attempt: `out` is final (cancelled).
  [[nodiscard]] bool cancelled_before_start() {
    if (!ctl_.cancelled_before_start()) return false;
    stop();
    return true;
  }

  /// See attempt_record.
  template <class Make>
  void run(Make&& make) {
    rec_.run(std::forward<Make>(make));
  }
  void accept(R&& r) { rec_.accept(std::move(r)); }
  void accept(attempt_result<R>&& a) { rec_.accept(std::move(a)); }
  void on_exception(const std::exception_ptr& e) { rec_.on_exception(ctl_.policy(), e); }

  /// Applied or decided: the loop is over (`out` is final).
  [[nodiscard]] bool settled() { return settle(ctl_, rec_, out_); }

  /// The store's words for the attempt's failure.
  [[nodiscard]] const store_error& error() const noexcept { return rec_.error(); }

  /// Feeds the failed attempt to the controller. Stop: `out` is final.
  template <class G>
  [[nodiscard]] retry_decision decide(duration elapsed, G& rng) {
    ctl_.note(rec_.note());
    retry_decision d = ctl_.on_outcome(rec_.status(), error(), elapsed, rng);
    if (!d) stop();
    return d;
  }

  void on_slept(duration actual) noexcept { ctl_.on_slept(actual); }

  /// The backoff was cut short by cancellation: the loop stops (cancelled); `out` is final.
  void interrupted() {
    (void)ctl_.on_interrupted(error());
    stop();
  }

 private:
  void stop() {
    static_cast<retry_counts&>(out_) = ctl_.counts();
    out_.last_error = error();
  }

  retry_controller ctl_;
  retry_stats& out_;
  attempt_record<R> rec_;
};

// clang-format off
template <class A>
concept retry_attempt = (attempt_with_info<A> || attempt_without_info<A>) &&
                        write_outcome<outcome_of_t<attempt_result_t<A>>>;
// clang-format on

template <class A>
using attempt_outcome_t = outcome_of_t<attempt_result_t<A>>;

/// cas_retry's loop from its first attempt on, or, when `first_ran`, from the decision on a first
/// attempt that `loop` has already recorded (which requires a plain first attempt: no clock, no
/// meter). Out of line: the first attempt's success path stays small (see run_cas_retry).
template <class A, retry_env Env, class R>
[[gnu::noinline]] void cas_retry_loop(retry_loop<R>& loop, A& attempt, Env& env, bool first_ran) {
  using duration = std::chrono::nanoseconds;
  retry_controller& ctl = loop.controller();
  const retry_policy& policy = ctl.policy();
  using time_point = decltype(env.now());
  const bool timed_attempts = ctl.uses_meter();  // time each attempt for the meter
  const time_point start = (ctl.needs_clock() || timed_attempts) ? env.now() : time_point{};

  for (bool ran = first_ran;; ran = false) {
    time_point attempt_start{};
    if (!ran) {
      attempt_info info = ctl.next_attempt();
      info.meter = &ctl.meter();
      if (timed_attempts) attempt_start = env.now();
      try {
        loop.run(emplace_attempt<A, attempt_result_t<A>>{attempt, info});
      } catch (...) {
        loop.on_exception(std::current_exception());
      }
      if (loop.settled()) [[likely]]
        return;  // applied or decided
    }
    duration elapsed = duration::zero();
    if (ctl.needs_clock() || timed_attempts)
      elapsed = std::chrono::duration_cast<duration>(env.now() - start);
    if (timed_attempts) {  // the read returned about halfway through the attempt
      const duration began = std::chrono::duration_cast<duration>(attempt_start - start);
      ctl.meter().on_refused(began + (elapsed - began) / 2, elapsed);
    }
    const retry_decision d = loop.decide(elapsed, env.rng());
    if (!d) return;
    const time_point before = env.now();
    const bool woke_normally = env.sleep_for(d.delay, policy.stop);
    loop.on_slept(std::chrono::duration_cast<duration>(env.now() - before));
    if (!woke_normally) {
      loop.interrupted();
      return;
    }
  }
}

/// cas_retry's loop, filling the driver's `out` and `last` (see retry_loop). When the first
/// attempt needs nothing from the driver (retry_controller::plain_first_attempt) it runs here,
/// before any loop state exists, and a success or decision settles at once; everything else
/// continues in cas_retry_loop. Both count through retry_controller.
template <class A, retry_env Env>
void run_cas_retry(const retry_policy& policy, A& attempt, Env& env, retry_stats& out,
                   std::optional<attempt_outcome_t<A>>& last) {
  using R = attempt_outcome_t<A>;
  if (!retry_controller::plain_first_attempt(policy)) [[unlikely]] {
    retry_loop<R> loop(policy, out, last);
    if (!loop.cancelled_before_start()) cas_retry_loop(loop, attempt, env, false);
    return;
  }
  attempt_record<R> first(last);
  contention_meter unused_meter;  // the policy reads no meter; the attempt may still feed one
  const attempt_info info{1, true, &unused_meter};
  try {
    first.run(emplace_attempt<A, attempt_result_t<A>>{attempt, info});
  } catch (...) {
    first.on_exception(policy, std::current_exception());
  }
  if (first.applied() || first.decided()) [[likely]] {
    retry_controller ctl(policy, retry_controller::validated);
    (void)settle(ctl, first, out);
    return;
  }
  retry_loop<R> loop(policy, out, std::move(first));
  cas_retry_loop(loop, attempt, env, true);
}

}  // namespace detail

/// Runs `attempt` until it reports applied or decided, or the policy says stop; see the overview.
/// `env` supplies the clock, the sleep and the random engine. Throws std::invalid_argument for an
/// invalid policy; rethrows what the attempt throws unless classify_exception maps it.
// clang-format off
template <class Attempt, retry_env Env>
  requires detail::retry_attempt<std::remove_reference_t<Attempt>>
auto cas_retry(const retry_policy& policy, Attempt&& attempt, Env& env)
    -> retry_result<detail::attempt_outcome_t<std::remove_reference_t<Attempt>>> {
  // clang-format on
  retry_result<detail::attempt_outcome_t<std::remove_reference_t<Attempt>>> out;
  detail::run_cas_retry(policy, attempt, env, out, out.last);
  return out;
}

/// cas_retry in real time (system_retry_env).
// clang-format off
template <class Attempt>
  requires detail::retry_attempt<std::remove_reference_t<Attempt>>
auto cas_retry(const retry_policy& policy, Attempt&& attempt) {
  // clang-format on
  system_retry_env env;
  return cas_retry(policy, std::forward<Attempt>(attempt), env);
}

}  // namespace noclobber
