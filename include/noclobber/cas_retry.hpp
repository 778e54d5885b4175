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
// `write_result<Token>`, whose `.error` is then reported too). What happens next:
//
//   applied                          stop: stop_reason::applied (ok())
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
// retry wakes at once). Every result carries the reason, the attempt count, the time slept and
// the last error.
//
// Exceptions thrown by the attempt propagate unchanged, unless `retry_policy::classify_exception`
// maps them to a write_status (then they are treated as that outcome, with last_error.code
// "exception" and the exception's what() as message).
//
// The decision logic lives in `retry_controller`, an I/O-free class: feed it each outcome and it
// answers "stop (reason)" or "retry after this delay (re-read or not)". `cas_retry` drives it with
// a blocking sleep; an asynchronous driver can drive the same controller with a timer.
//
// Environment: `cas_retry(policy, attempt, env)` takes the clock, the sleep and the random engine
// from `env` (see the `retry_env` concept): `system_retry_env` (the default: steady_clock, a sleep
// a stop_token interrupts, a per-thread engine) or `virtual_retry_env` (virtual time, recorded
// sleeps, a seeded engine: exact, instant tests).
//
// Cost: a first-try success with no deadline reads no clock, allocates nothing, calls no
// std::function and draws no random number (a budget adds one atomic load). With a deadline the
// start is read once; with backoff_policy::commit_rate every attempt is timed (two clock reads)
// for its contention_meter, which the attempt feeds through attempt_info::meter.
//
// Thread safety: cas_retry holds no lock of its own. The attempt, the hooks (on_retry, on_give_up)
// and classify_exception run on the calling thread, under no noclobber lock. A retry_policy may be
// shared by concurrent cas_retry calls (it is only read); its retry_budget is thread-safe. A
// retry_controller belongs to one operation and is not thread-safe. If a hook throws, the
// exception propagates; the tokens taken for the retry it announced are returned first.
#pragma once

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "noclobber/backoff.hpp"
#include "noclobber/duration.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/retry_budget.hpp"

namespace noclobber {

/// What the attempt is told before it runs.
struct attempt_info {
  unsigned number = 1;  // 1-based
  // True on the first attempt and after conflict, absent, exists, transient_restart: the attempt
  // must re-read before writing. False after `transient`: resend the very same request.
  bool reread = true;
  // Where the attempt may report the version it read (contention_meter::note_read), for
  // backoff_policy::commit_rate. Set by cas_retry; may be null in other drivers.
  contention_meter* meter = nullptr;
};

/// Why the loop stopped.
enum class stop_reason : unsigned char {
  applied,             // the write took effect
  permanent,           // the attempt reported a permanent error
  attempts_exhausted,  // max_attempts attempts failed
  deadline,            // the timeout passed, or the next backoff would end after it
  budget_exhausted,    // the shared retry_budget had too few tokens for another retry
  cancelled,           // the stop_token fired (before an attempt or during a backoff)
  indeterminate,       // the attempt said "outcome unknown": the caller must resolve it
};

[[nodiscard]] constexpr std::string_view to_string(stop_reason r) noexcept {
  switch (r) {
    case stop_reason::applied:
      return "applied";
    case stop_reason::permanent:
      return "permanent";
    case stop_reason::attempts_exhausted:
      return "attempts_exhausted";
    case stop_reason::deadline:
      return "deadline";
    case stop_reason::budget_exhausted:
      return "budget_exhausted";
    case stop_reason::cancelled:
      return "cancelled";
    case stop_reason::indeterminate:
      return "indeterminate";
  }
  return "unknown";
}

/// Passed to retry_policy::on_retry just before a backoff.
struct retry_event {
  unsigned attempt;                // the attempt that just failed (1-based)
  write_status status;             // how it failed
  const store_error& error;        // the store's words (empty if none)
  std::chrono::nanoseconds delay;  // the backoff about to be slept
  std::chrono::nanoseconds slept;  // total slept before this backoff
  bool reread;                     // whether the next attempt must re-read
};

/// Passed to retry_policy::on_give_up when the loop stops for any reason other than applied.
struct give_up_event {
  stop_reason reason;
  unsigned attempts;
  std::chrono::nanoseconds slept;
  std::optional<write_status> last_status;  // empty when no attempt ran
  const store_error& last_error;
};

/// Everything that shapes one retry loop. Plain data; validated when a retry_controller (or
/// cas_retry) is built from it.
struct retry_policy {
  backoff_policy backoff =
      backoff_policy::full_jitter(std::chrono::milliseconds(10), std::chrono::seconds(1));
  unsigned max_attempts = 5;  // attempts in all, the first included; 0 is rejected
  // The deadline, measured from the start of the loop. max() = none (and no clock is read).
  std::chrono::nanoseconds timeout = std::chrono::nanoseconds::max();
  std::shared_ptr<retry_budget> budget;  // null: unlimited retries (within max_attempts)
  std::stop_token stop;                  // cancels the loop, waking a sleeping retry
  std::function<void(const retry_event&)> on_retry;
  std::function<void(const give_up_event&)> on_give_up;
  // Maps an exception thrown by the attempt to an outcome; nullopt (or a null function): rethrow.
  std::function<std::optional<write_status>(std::exception_ptr)> classify_exception;

  /// Throws std::invalid_argument naming the bad field.
  void validate() const {
    if (max_attempts == 0) {
      throw std::invalid_argument("noclobber::retry_policy: max_attempts must be >= 1, got 0");
    }
    if (timeout < std::chrono::nanoseconds::zero()) {
      throw std::invalid_argument("noclobber::retry_policy: timeout must be >= 0, got " +
                                  detail::describe(timeout));
    }
  }
};

/// The controller's answer to an outcome.
struct retry_decision {
  bool retry = false;                         // false: stop
  stop_reason reason = stop_reason::applied;  // why it stopped (when !retry)
  std::chrono::nanoseconds delay{0};          // backoff before the next attempt (when retry)
  bool reread = true;                         // the next attempt must re-read (when retry)

  explicit operator bool() const noexcept { return retry; }
  [[nodiscard]] static retry_decision stop(stop_reason r) noexcept { return {false, r, {}, false}; }
};

/// The retry loop's decision logic without any I/O, clock or sleep: the driver (cas_retry, or an
/// asynchronous form using a timer) runs attempts, measures time and sleeps; the controller keeps
/// the counters, draws the backoff, takes budget tokens and calls the policy's hooks.
///
/// Driver protocol:
///   retry_controller c(policy);                  // validates the policy
///   if (c.cancelled_before_start()) -> stopped: cancelled, 0 attempts
///   loop:
///     attempt_info info = c.next_attempt();     // optionally: info.meter = &c.meter();
///     write_status s = run the attempt(info);
///     if s is applied: c.on_applied() -> stopped: applied   (or feed it to on_outcome)
///     if c.uses_meter(): c.meter().on_refused(read_at, refused_at)   (times since the start)
///     retry_decision d = c.on_outcome(s, error, elapsed_since_start, rng);
///        (elapsed is only read when c.needs_clock(); pass 0 otherwise)
///     if (!d) -> stopped: d.reason (c.attempts(), c.slept())
///     sleep d.delay; if the sleep was cut short by the stop token:
///        c.on_slept(actual); d = c.on_interrupted(error) -> stopped: cancelled
///     else c.on_slept(actual)
///
/// Hooks: on_retry runs inside on_outcome (after the budget tokens are taken, before the driver
/// sleeps); on_give_up runs inside on_outcome / on_interrupted / cancelled_before_start for every
/// stop other than applied. The policy must outlive the controller (it is held by reference).
/// Not thread-safe: one controller per operation.
class retry_controller {
 public:
  using duration = std::chrono::nanoseconds;

  explicit retry_controller(const retry_policy& policy) : policy_(&policy) { policy.validate(); }

  /// True when the driver must pass the real elapsed time (a deadline is set).
  [[nodiscard]] bool needs_clock() const noexcept { return policy_->timeout != duration::max(); }

  /// Checks the stop token before the first attempt; on true, the loop is over (cancelled) and
  /// on_give_up has run.
  [[nodiscard]] bool cancelled_before_start() {
    if (!policy_->stop.stop_requested()) return false;
    give_up(stop_reason::cancelled, no_error());
    return true;
  }

  /// The attempt about to run.
  [[nodiscard]] attempt_info next_attempt() const noexcept { return {attempts_ + 1, reread_}; }

  /// Feeds the outcome of the attempt that just ran. `error` is the store's words for a failure
  /// (only read on the failure path); `elapsed` the time since the loop started (only read when
  /// needs_clock()). `rng` is only drawn from when a jittered retry is granted.
  template <std::uniform_random_bit_generator G>
  retry_decision on_outcome(write_status s, const store_error& error, duration elapsed, G& rng) {
    if (s == write_status::applied) [[likely]] {
      on_applied();
      return retry_decision::stop(stop_reason::applied);
    }
    ++attempts_;
    last_status_ = s;
    return on_failure(s, error, elapsed, rng);
  }

  /// The same as on_outcome(write_status::applied, ...), for drivers that test for success
  /// themselves: counts the attempt and refunds the budget. The loop is over.
  void on_applied() noexcept {
    ++attempts_;
    last_status_ = write_status::applied;
    if (policy_->budget) policy_->budget->on_success(last_taken_);
  }

  /// Adds a finished (or interrupted) backoff to the total slept.
  void on_slept(duration actual) noexcept {
    if (actual > duration::zero()) slept_ = saturating_add(slept_, actual);
  }

  /// The backoff was cut short by the stop token: the loop stops as cancelled. The tokens taken
  /// for the retry that will not happen are returned.
  retry_decision on_interrupted(const store_error& last_error) {
    if (policy_->budget) policy_->budget->refund(last_taken_);
    last_taken_ = 0;
    give_up(stop_reason::cancelled, last_error);
    return retry_decision::stop(stop_reason::cancelled);
  }

  [[nodiscard]] unsigned attempts() const noexcept { return attempts_; }
  [[nodiscard]] duration slept() const noexcept { return slept_; }
  [[nodiscard]] std::optional<write_status> last_status() const noexcept {
    return attempts_ == 0 ? std::nullopt : std::optional<write_status>(last_status_);
  }
  [[nodiscard]] const retry_policy& policy() const noexcept { return *policy_; }
  /// What this loop has seen of the row's contention; feed it before on_outcome when the policy
  /// is backoff_policy::commit_rate (cas_retry does, from the attempt's note_read).
  [[nodiscard]] contention_meter& meter() noexcept { return meter_; }
  /// True when the backoff uses the meter, so the driver should time its attempts.
  [[nodiscard]] bool uses_meter() const noexcept {
    return policy_->backoff.kind() == backoff_kind::commit_rate;
  }

 private:
  static const store_error& no_error() noexcept {
    static const store_error empty;
    return empty;
  }

  static duration saturating_add(duration a, duration b) noexcept {
    return (b > duration::max() - a) ? duration::max() : a + b;
  }

  retry_decision give_up(stop_reason r, const store_error& error) {
    if (policy_->on_give_up) policy_->on_give_up(give_up_event{r, attempts_, slept_, last_status(), error});
    return retry_decision::stop(r);
  }

  template <std::uniform_random_bit_generator G>
  retry_decision on_failure(write_status s, const store_error& error, duration elapsed, G& rng) {
    if (s == write_status::permanent) return give_up(stop_reason::permanent, error);
    if (s == write_status::indeterminate) return give_up(stop_reason::indeterminate, error);
    if (attempts_ >= policy_->max_attempts) return give_up(stop_reason::attempts_exhausted, error);
    if (policy_->stop.stop_requested()) return give_up(stop_reason::cancelled, error);

    const duration delay = policy_->backoff.delay(attempts_, previous_delay_, meter_, rng);
    if (needs_clock()) {
      const duration timeout = policy_->timeout;
      if (elapsed >= timeout || delay > timeout - elapsed) return give_up(stop_reason::deadline, error);
    }
    last_taken_ = 0;
    if (policy_->budget && !policy_->budget->try_acquire(s, last_taken_)) {
      return give_up(stop_reason::budget_exhausted, error);
    }
    previous_delay_ = delay;
    reread_ = needs_reread(s);
    if (policy_->on_retry) {
      try {
        policy_->on_retry(retry_event{attempts_, s, error, delay, slept_, reread_});
      } catch (...) {
        if (policy_->budget) policy_->budget->refund(last_taken_);
        last_taken_ = 0;
        throw;
      }
    }
    return {true, stop_reason::applied, delay, reread_};
  }

  const retry_policy* policy_;
  unsigned attempts_ = 0;
  unsigned last_taken_ = 0;  // budget tokens taken for the retry now in flight
  bool reread_ = true;
  write_status last_status_ = write_status::permanent;
  duration slept_{0};
  duration previous_delay_{0};
  contention_meter meter_;
};

/// The outcome of cas_retry. `last` is what the final attempt returned (empty when no attempt
/// ran, or when the final attempt threw an exception that classify_exception mapped).
template <class R>
struct retry_result {
  std::optional<R> last;
  stop_reason reason = stop_reason::cancelled;
  unsigned attempts = 0;
  std::chrono::nanoseconds slept{0};  // total time spent in backoff sleeps
  store_error last_error;             // empty when applied

  [[nodiscard]] bool ok() const noexcept { return reason == stop_reason::applied; }
  explicit operator bool() const noexcept { return ok(); }
};

/// What cas_retry needs from its environment.
///   now()                      a time_point of some clock (differences convert to nanoseconds)
///   sleep_for(d, stop_token)   sleeps d; returns false if the stop token cut it short
///   rng()                      a uniform_random_bit_generator, by reference
template <class E>
concept retry_env = requires(E& e, std::chrono::nanoseconds d, const std::stop_token& st) {
  { e.now() - e.now() } -> std::convertible_to<std::chrono::nanoseconds>;
  { e.sleep_for(d, st) } -> std::same_as<bool>;
  requires std::is_lvalue_reference_v<decltype(e.rng())>;
  requires std::uniform_random_bit_generator<std::remove_reference_t<decltype(e.rng())>>;
};

/// The real environment: steady_clock, a sleep that the stop token wakes at once, and one
/// std::mt19937_64 per thread seeded from std::random_device.
struct system_retry_env {
  [[nodiscard]] std::chrono::steady_clock::time_point now() const noexcept {
    return std::chrono::steady_clock::now();
  }

  bool sleep_for(std::chrono::nanoseconds d, const std::stop_token& stop) const {
    if (stop.stop_requested()) return false;
    if (d <= std::chrono::nanoseconds::zero()) return true;
    if (!stop.stop_possible()) {
      std::this_thread::sleep_for(d);
      return true;
    }
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock<std::mutex> lock(m);
    // Returns when the stop token fires or the delay has passed; nothing else notifies cv.
    cv.wait_for(lock, stop, d, [] { return false; });
    return !stop.stop_requested();
  }

  [[nodiscard]] static std::mt19937_64& rng() {
    thread_local std::mt19937_64 engine = [] {
      std::random_device rd;
      const std::uint64_t seed =
          (std::uint64_t{rd()} << 32) ^ std::uint64_t{rd()} ^
          static_cast<std::uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id())) ^
          static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
      return std::mt19937_64(seed);
    }();
    return engine;
  }
};

/// Virtual time for tests and simulations: now() starts at the steady_clock epoch and moves only
/// by sleep_for and advance; every requested sleep is recorded; the engine is seeded.
/// `on_sleep`, if set, runs at the start of each sleep (a test can request stop there: the
/// sleep then returns false without advancing the clock). Not thread-safe.
class virtual_retry_env {
 public:
  explicit virtual_retry_env(std::uint64_t seed = 0) : rng_(seed) {}

  [[nodiscard]] std::chrono::steady_clock::time_point now() const noexcept { return now_; }

  bool sleep_for(std::chrono::nanoseconds d, const std::stop_token& stop) {
    sleeps_.push_back(d);
    if (on_sleep) on_sleep(d);
    if (stop.stop_requested()) return false;
    advance(d);
    return true;
  }

  /// Moves virtual time by d, stopping at the ends of time_point's range (sleeps of up to
  /// nanoseconds::max() each must not overflow it).
  void advance(std::chrono::nanoseconds d) noexcept {
    now_ = saturating_deadline<std::chrono::steady_clock>(now_, d);
  }
  [[nodiscard]] std::mt19937_64& rng() noexcept { return rng_; }
  [[nodiscard]] const std::vector<std::chrono::nanoseconds>& sleeps() const noexcept { return sleeps_; }

  std::function<void(std::chrono::nanoseconds)> on_sleep;

 private:
  std::chrono::steady_clock::time_point now_{};
  std::mt19937_64 rng_;
  std::vector<std::chrono::nanoseconds> sleeps_;
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

template <class A>
using attempt_result_t =
    std::remove_cvref_t<decltype(run_attempt(std::declval<A&>(), std::declval<const attempt_info&>()))>;

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

inline store_error describe_exception(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return {"exception", ex.what()};
  } catch (...) {
    return {"exception", "unknown exception"};
  }
}

}  // namespace detail

/// Runs `attempt` until it reports applied or the policy says stop; see the overview. `env`
/// supplies the clock, the sleep and the random engine. Throws std::invalid_argument for an
/// invalid policy; rethrows what the attempt throws unless classify_exception maps it.
template <class Attempt, retry_env Env>
requires(detail::attempt_with_info<std::remove_reference_t<Attempt>> ||
         detail::attempt_without_info<std::remove_reference_t<Attempt>>) &&
    detail::write_outcome<detail::attempt_result_t<std::remove_reference_t<Attempt>>> auto cas_retry(
        const retry_policy& policy, Attempt&& attempt, Env& env)
        -> retry_result<detail::attempt_result_t<std::remove_reference_t<Attempt>>> {
  using R = detail::attempt_result_t<std::remove_reference_t<Attempt>>;
  using duration = std::chrono::nanoseconds;
  retry_controller ctl(policy);
  retry_result<R> out;
  if (ctl.cancelled_before_start()) {
    out.reason = stop_reason::cancelled;
    return out;
  }
  using time_point = decltype(env.now());
  const bool timed_attempts = ctl.uses_meter();  // commit_rate: time each attempt for the meter
  const time_point start = (ctl.needs_clock() || timed_attempts) ? env.now() : time_point{};

  for (;;) {
    attempt_info info = ctl.next_attempt();
    info.meter = &ctl.meter();
    const time_point attempt_start = timed_attempts ? env.now() : time_point{};
    write_status status;
    std::optional<store_error> thrown;  // engaged only when a classified exception replaced the result
    try {
      out.last.emplace(detail::emplace_attempt<std::remove_reference_t<Attempt>, R>{attempt, info});
      status = detail::status_of(*out.last);
    } catch (...) {
      if (!policy.classify_exception) throw;
      std::exception_ptr e = std::current_exception();
      std::optional<write_status> mapped = policy.classify_exception(e);
      if (!mapped) std::rethrow_exception(e);
      out.last.reset();
      status = *mapped;
      thrown = detail::describe_exception(e);
    }
    if (status == write_status::applied) [[likely]] {  // fast path: no clock, no rng, no hook
      ctl.on_applied();
      out.reason = stop_reason::applied;
      out.attempts = ctl.attempts();
      out.slept = ctl.slept();
      return out;
    }
    const store_error& error =
        thrown ? *thrown : (out.last ? detail::error_of(*out.last) : detail::empty_error());
    duration elapsed = duration::zero();
    if (ctl.needs_clock() || timed_attempts)
      elapsed = std::chrono::duration_cast<duration>(env.now() - start);
    if (timed_attempts) {  // the read returned about halfway through the attempt
      const duration began = std::chrono::duration_cast<duration>(attempt_start - start);
      ctl.meter().on_refused(began + (elapsed - began) / 2, elapsed);
    }
    retry_decision d = ctl.on_outcome(status, error, elapsed, env.rng());
    if (!d) {
      out.reason = d.reason;
      out.attempts = ctl.attempts();
      out.slept = ctl.slept();
      out.last_error = error;
      return out;
    }
    const time_point before = env.now();
    const bool woke_normally = env.sleep_for(d.delay, policy.stop);
    ctl.on_slept(std::chrono::duration_cast<duration>(env.now() - before));
    if (!woke_normally) {
      d = ctl.on_interrupted(error);
      out.reason = stop_reason::cancelled;
      out.attempts = ctl.attempts();
      out.slept = ctl.slept();
      out.last_error = error;
      return out;
    }
  }
}

/// cas_retry in real time (system_retry_env).
template <class Attempt>
requires(detail::attempt_with_info<std::remove_reference_t<Attempt>> ||
         detail::attempt_without_info<std::remove_reference_t<Attempt>>) &&
    detail::write_outcome<detail::attempt_result_t<std::remove_reference_t<Attempt>>> auto cas_retry(
        const retry_policy& policy, Attempt&& attempt) {
  system_retry_env env;
  return cas_retry(policy, std::forward<Attempt>(attempt), env);
}

}  // namespace noclobber
