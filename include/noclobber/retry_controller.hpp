// noclobber/retry_controller.hpp — the retry loop's decisions and statistics, without any I/O.
//
// Overview
// --------
// cas_retry (cas_retry.hpp) and its coroutine form (asio/async_cas_retry.hpp) run attempts, read
// the clock and sleep; everything they decide is decided here, once:
//
//   retry_policy      what shapes a loop: backoff, attempt limit, timeout, shared retry_budget,
//                     stop token, hooks, exception classification. Plain data.
//   retry_controller  fed each attempt's outcome, it answers "stop (reason)" or "retry after this
//                     delay (re-read or not)", keeps the counters, draws the backoff, takes and
//                     refunds budget tokens and calls the policy's hooks.
//   retry_stats       what the loop did — the per-call statistics: attempts, conflicts,
//                     transient errors, unknown (indeterminate) outcomes resolved, why it
//                     stopped, time slept, the last status (retry_counts: the controller is the
//                     one place they are counted, in record()) and the store's last words. Every result type
//                     (retry_result, rmw_result, patch_result, ledger_result) carries them as its base; the
//                     loop that drives the controller fills them once (detail::retry_loop, cas_retry.hpp).
//
//   retry_controller c(policy);
//   if (c.cancelled_before_start()) ...                       // stopped: cancelled
//   for (;;) {
//     attempt_info info = c.next_attempt();
//     write_status s = run(info);
//     retry_decision d = c.on_outcome(s, error, elapsed, rng);
//     if (!d) break;                                          // c.counts().reason says why
//     sleep(d.delay); c.on_slept(actual);                     // cut short: c.on_interrupted(error)
//   }
//
// An attempt may also end the loop by deciding the operation without a further write (the
// caller's function said keep or abort, a compare found another value, a patch was dropped):
// `on_decided(last_status)` stops with stop_reason::decided. Like a success it refunds the
// retry budget; its hooks are on_attempt and on_success.
//
// Hooks, in the order they fire for one loop (each only when set; an unset hook costs one test
// of an empty std::function):
//   on_attempt   after every attempt, with its status (and whether it decided, and whether it
//                settled an earlier unknown outcome)
//   on_retry     after a failed attempt's on_attempt, just before the backoff
//   on_success   once, last, when the loop stops applied or decided
//   on_give_up   once, last, for any other stop (also when cancelled before any attempt)
// So a loop that hits two conflicts and then applies calls on_attempt, on_retry, on_attempt,
// on_retry, on_attempt, on_success; every loop ends in exactly one of on_success / on_give_up.
//
// Thread safety: a retry_policy may be shared by concurrent loops (it is only read; its
// retry_budget is thread-safe); its hooks are then called from those loops' threads at once and
// must be thread-safe themselves. A retry_controller belongs to one loop and is not thread-safe.
// The hooks run inside on_outcome / on_applied / on_decided / on_interrupted /
// cancelled_before_start, on the driver's thread, under no noclobber lock, after the counters
// they report are updated. If a hook throws, the exception propagates; the tokens taken for the
// retry it announced are returned first.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string_view>
#include <utility>

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
  // backoff_policy::commit_rate and load_tracking. Set by cas_retry; may be null in other drivers.
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
  decided,             // the attempt settled the operation without a (further) write: keep,
                       // abort, a value that no longer matches, a dropped patch
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
    case stop_reason::decided:
      return "decided";
  }
  return "unknown";
}

/// What an attempt's reads settled about a request of ours whose outcome was unknown (answered
/// indeterminate). Reported by the attempt (detail::op_core, through its op_status) so that the
/// controller can count it; drivers pass it to retry_controller::note before the outcome.
enum class attempt_note : unsigned char {
  none,             // nothing was settled
  resolved,         // an unknown outcome was settled; the status is the store's own answer
  resolved_resend,  // settled as "did not land": the status (transient) only asks to send the
                    // same request again; it is not a store error
};

/// A retry loop's counters: the per-call statistics every result carries (through retry_stats).
/// Counted by retry_controller only, in retry_controller::record.
struct retry_counts {
  /// Attempts made (each one a write, preceded by a read when one was needed).
  unsigned attempts = 0;
  /// Attempts refused because the key moved under us: conflict, absent, exists.
  unsigned conflicts = 0;
  /// Attempts that failed transiently (transient, transient_restart; a failed read included).
  unsigned transient_errors = 0;
  /// Requests answered indeterminate (outcome unknown) that a later read settled: the request
  /// landed, or the key was untouched and it was sent again. An unknown outcome that could not be
  /// settled stops the loop instead (stop_reason::indeterminate).
  unsigned indeterminate_resolved = 0;
  /// Why the loop stopped.
  stop_reason reason = stop_reason::permanent;
  /// Total time slept in backoff.
  std::chrono::nanoseconds slept{0};
  /// Status of the last attempt (a failed read mapped with as_write_status; for `decided`, the
  /// status the decision rests on); permanent when no attempt ran.
  write_status last_status = write_status::permanent;
};

/// What a retry loop did: its counters and the store's words for the failure that stopped it
/// (empty when applied or decided). The base of every result type.
struct retry_stats : retry_counts {
  store_error last_error;
};

/// Passed to retry_policy::on_attempt after every attempt.
struct attempt_event {
  unsigned attempt;             // the attempt that just ended (1-based)
  write_status status;          // how it ended (decided: the status the decision rests on)
  const store_error& error;     // the store's words (empty if none)
  bool decided;                 // it settled the operation without a (further) write
  bool resolved_indeterminate;  // it settled an earlier request's unknown outcome
};

/// Passed to retry_policy::on_success when the loop stops applied or decided.
struct success_event {
  const retry_counts& counts;  // final: counts.reason is applied or decided
};

/// Passed to retry_policy::on_retry just before a backoff.
struct retry_event {
  unsigned attempt;                // the attempt that just failed (1-based)
  write_status status;             // how it failed
  const store_error& error;        // the store's words (empty if none)
  std::chrono::nanoseconds delay;  // the backoff about to be slept
  std::chrono::nanoseconds slept;  // total slept before this backoff
  bool reread;                     // whether the next attempt must re-read
};

/// Passed to retry_policy::on_give_up when the loop stops for any reason other than applied or
/// decided.
struct give_up_event {
  stop_reason reason;
  unsigned attempts;
  std::chrono::nanoseconds slept;
  std::optional<write_status> last_status;  // empty when no attempt ran
  const store_error& last_error;
  const retry_counts& counts;  // final: every counter of the loop
};

/// Everything that shapes one retry loop. Plain data; validated when a retry_controller (or
/// cas_retry) is built from it.
struct retry_policy {
  backoff_policy backoff =
      backoff_policy::full_jitter(std::chrono::milliseconds(10), std::chrono::seconds(1));
  unsigned max_attempts = 5;  // attempts in all, the first included; 0 is rejected
  // The deadline, measured from the start of the loop. max() = none (and no clock is read); any
  // duration converts without overflow, so hours::max() also means none.
  saturating_ns timeout = std::chrono::nanoseconds::max();
  std::shared_ptr<retry_budget> budget;  // null: unlimited retries (within max_attempts)
  std::stop_token stop;                  // cancels the loop, waking a sleeping retry
  // Hooks (see the overview for their order; each may be null). noclobber/metrics.hpp fills them
  // from a metrics sink.
  std::function<void(const attempt_event&)> on_attempt;
  std::function<void(const retry_event&)> on_retry;
  std::function<void(const give_up_event&)> on_give_up;
  std::function<void(const success_event&)> on_success;
  // Maps an exception thrown by the attempt to an outcome; nullopt (or a null function): rethrow.
  std::function<std::optional<write_status>(std::exception_ptr)> classify_exception;

  /// Throws std::invalid_argument naming the bad field.
  void validate() const {
    if (max_attempts == 0) {
      throw std::invalid_argument("noclobber::retry_policy: max_attempts must be >= 1, got 0");
    }
    if (timeout.get() < std::chrono::nanoseconds::zero()) {
      throw std::invalid_argument("noclobber::retry_policy: timeout must be >= 0, got " +
                                  detail::describe(timeout.get()));
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

/// The retry loop's decision logic without any I/O, clock or sleep (see the overview).
///
/// Driver protocol:
///   retry_controller c(policy);                  // validates the policy
///   if (c.cancelled_before_start()) -> stopped: cancelled, 0 attempts
///   loop:
///     attempt_info info = c.next_attempt();     // optionally: info.meter = &c.meter();
///     run the attempt(info); if it settled an unknown outcome: c.note(attempt_note::...)
///       applied: c.on_applied() -> stopped: applied   (or feed it to on_outcome)
///       decided: c.on_decided(last_status) -> stopped: decided
///     if c.uses_meter(): c.meter().on_refused(read_at, refused_at)   (times since the start)
///     retry_decision d = c.on_outcome(s, error, elapsed_since_start, rng);
///        (elapsed is only read when c.needs_clock(); pass 0 otherwise)
///     if (!d) -> stopped: d.reason (c.counts())
///     sleep d.delay; if the sleep was cut short by the stop token:
///        c.on_slept(actual); d = c.on_interrupted(error) -> stopped: cancelled
///     else c.on_slept(actual)
///
/// The policy must outlive the controller (it is held by reference). Not thread-safe.
class retry_controller {
 public:
  using duration = std::chrono::nanoseconds;

  explicit retry_controller(const retry_policy& policy) : policy_(&policy) { policy.validate(); }

  /// The tag of the constructor for a policy already validated (by plain_first_attempt).
  struct validated_t {
    explicit validated_t() = default;
  };
  static constexpr validated_t validated{};
  retry_controller(const retry_policy& policy, validated_t) noexcept : policy_(&policy) {}

  /// True when `policy` is valid and its loop's first attempt needs nothing from the driver but
  /// to run: no deadline (no clock), a backoff that reads no meter, no stop requested. Such a
  /// first attempt may run before the controller exists (cas_retry's fast path); the controller
  /// built afterwards with `validated` counts it as usual.
  [[nodiscard]] static bool plain_first_attempt(const retry_policy& policy) noexcept {
    return policy.max_attempts != 0 && policy.timeout.is_max() && !reads_meter(policy.backoff.kind()) &&
           !policy.stop.stop_requested();
  }

  /// True when the driver must pass the real elapsed time (a deadline is set).
  [[nodiscard]] bool needs_clock() const noexcept { return !policy_->timeout.is_max(); }

  /// Checks the stop token before the first attempt; on true, the loop is over (cancelled) and
  /// on_give_up has run.
  [[nodiscard]] bool cancelled_before_start() {
    if (!policy_->stop.stop_requested()) return false;
    give_up(stop_reason::cancelled, no_error());
    return true;
  }

  /// The attempt about to run.
  [[nodiscard]] attempt_info next_attempt() const noexcept { return {counts_.attempts + 1, reread_}; }

  /// Feeds the outcome of the attempt that just ran. `error` is the store's words for a failure
  /// (only read on the failure path); `elapsed` the time since the loop started (only read when
  /// needs_clock()). `rng` is only drawn from when a jittered retry is granted.
  template <std::uniform_random_bit_generator G>
  retry_decision on_outcome(write_status s, const store_error& error, duration elapsed, G& rng) {
    if (s == write_status::applied) [[likely]] {
      on_applied();
      return retry_decision::stop(stop_reason::applied);
    }
    attempted(s, error, false, record(s));
    return on_failure(s, error, elapsed, rng);
  }

  /// The same as on_outcome(write_status::applied, ...), for drivers that test for success
  /// themselves: counts the attempt, refunds the budget, calls on_attempt and on_success. The
  /// loop is over.
  void on_applied() { finish(write_status::applied, stop_reason::applied); }

  /// The attempt settled the operation without a (further) write: counts it, refunds the budget
  /// like a success, calls on_attempt and on_success. `last_status` is what the decision rests
  /// on. The loop is over.
  void on_decided(write_status last_status) { finish(last_status, stop_reason::decided); }

  /// What the attempt about to be fed (on_outcome, on_applied, on_decided) settled about an
  /// unknown outcome; counted with that attempt.
  void note(attempt_note n) noexcept { note_ = n; }

  /// Adds a finished (or interrupted) backoff to the total slept.
  void on_slept(duration actual) noexcept {
    if (actual > duration::zero()) counts_.slept = saturating_add(counts_.slept, actual);
  }

  /// The backoff was cut short by the stop token: the loop stops as cancelled. The tokens taken
  /// for the retry that will not happen are returned.
  retry_decision on_interrupted(const store_error& last_error) {
    if (policy_->budget) policy_->budget->refund(last_taken_);
    last_taken_ = 0;
    return give_up(stop_reason::cancelled, last_error);
  }

  [[nodiscard]] unsigned attempts() const noexcept { return counts_.attempts; }
  [[nodiscard]] duration slept() const noexcept { return counts_.slept; }
  [[nodiscard]] std::optional<write_status> last_status() const noexcept {
    return counts_.attempts == 0 ? std::nullopt : std::optional<write_status>(counts_.last_status);
  }
  /// Everything counted so far; `reason` is final once the loop stopped.
  [[nodiscard]] const retry_counts& counts() const noexcept { return counts_; }
  [[nodiscard]] const retry_policy& policy() const noexcept { return *policy_; }
  /// What this loop has seen of the row's contention; feed it before on_outcome when the policy
  /// reads one (commit_rate, load_tracking; cas_retry does, from the attempt's note_read).
  [[nodiscard]] contention_meter& meter() noexcept { return meter_; }
  /// True when the backoff uses the meter, so the driver should time its attempts.
  [[nodiscard]] bool uses_meter() const noexcept { return reads_meter(policy_->backoff.kind()); }

 private:
  static const store_error& no_error() noexcept {
    static const store_error empty;
    return empty;
  }

  // The one place an attempt is counted: every per-call statistic but `slept` (on_slept) and
  // `reason` (the stop) is counted here. Returns whether the attempt settled an unknown outcome.
  bool record(write_status s) noexcept {
    ++counts_.attempts;
    counts_.last_status = s;
    if (note_ != attempt_note::none) [[unlikely]]
      return record_note(s);
    count_status(s);
    return false;
  }

  void count_status(write_status s) noexcept {
    switch (s) {
      case write_status::conflict:
      case write_status::absent:
      case write_status::exists:
        ++counts_.conflicts;
        break;
      case write_status::transient:
      case write_status::transient_restart:
        ++counts_.transient_errors;
        break;
      default:
        break;
    }
  }

  // The attempt settled an unknown outcome (note()): counted, and a resend's status is no error.
  bool record_note(write_status s) noexcept {
    const attempt_note n = note_;
    note_ = attempt_note::none;
    ++counts_.indeterminate_resolved;
    if (n != attempt_note::resolved_resend) count_status(s);
    return true;
  }

  void attempted(write_status s, const store_error& error, bool decided, bool resolved) {
    if (policy_->on_attempt) {
      policy_->on_attempt(attempt_event{counts_.attempts, s, error, decided, resolved});
    }
  }

  void finish(write_status last, stop_reason reason) {
    const bool resolved = record(last);
    counts_.reason = reason;
    if (policy_->budget) policy_->budget->on_success(last_taken_);
    if (policy_->on_attempt || policy_->on_success) [[unlikely]]
      finish_hooks(*policy_, counts_, last, resolved);
  }

  // Out of line, and given a copy of the final counts rather than the controller, so that a
  // success without hooks stays small: the controller's address never escapes on that path, and
  // the compiler keeps its state in registers.
  [[gnu::noinline]] static void finish_hooks(const retry_policy& policy, const retry_counts counts,
                                             write_status last, bool resolved) {
    if (policy.on_attempt) {
      policy.on_attempt(
          attempt_event{counts.attempts, last, no_error(), counts.reason == stop_reason::decided, resolved});
    }
    if (policy.on_success) policy.on_success(success_event{counts});
  }

  retry_decision give_up(stop_reason r, const store_error& error) {
    counts_.reason = r;
    if (policy_->on_give_up) {
      policy_->on_give_up(give_up_event{r, counts_.attempts, counts_.slept, last_status(), error, counts_});
    }
    return retry_decision::stop(r);
  }

  template <std::uniform_random_bit_generator G>
  retry_decision on_failure(write_status s, const store_error& error, duration elapsed, G& rng) {
    if (s == write_status::permanent) return give_up(stop_reason::permanent, error);
    if (s == write_status::indeterminate) return give_up(stop_reason::indeterminate, error);
    if (counts_.attempts >= policy_->max_attempts) return give_up(stop_reason::attempts_exhausted, error);
    if (policy_->stop.stop_requested()) return give_up(stop_reason::cancelled, error);

    const duration delay = policy_->backoff.delay(counts_.attempts, previous_delay_, meter_, rng);
    if (needs_clock()) {
      const duration timeout = policy_->timeout.get();
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
        policy_->on_retry(retry_event{counts_.attempts, s, error, delay, counts_.slept, reread_});
      } catch (...) {
        if (policy_->budget) policy_->budget->refund(last_taken_);
        last_taken_ = 0;
        throw;
      }
    }
    return {true, stop_reason::applied, delay, reread_};
  }

  const retry_policy* policy_;
  retry_counts counts_;
  unsigned last_taken_ = 0;                 // budget tokens taken for the retry now in flight
  attempt_note note_ = attempt_note::none;  // what the attempt being fed settled (note())
  bool reread_ = true;
  duration previous_delay_{0};
  contention_meter meter_;
};

}  // namespace noclobber
