// noclobber/race_harness/nemesis.hpp — faults applied on a seeded schedule while writers run.
//
// Overview
// --------
// Lost and doubled updates in production come with faults: a server restart, a leader election,
// a promoted replica, a client cut off. The nemesis (Jepsen's word) applies such faults to a
// running system, one at a time, on a schedule drawn from a seed, and always heals them:
//
//   std::vector<std::shared_ptr<noclobber::fault_action>> actions = {kill_leader, pause_leader};
//   noclobber::nemesis_options opt;          // 3 faults, time clock: ~0.5 s in, ~1 s each
//   opt.seed = 7;
//   noclobber::nemesis n(actions, opt);
//   n.start();                               // its own thread applies the schedule
//   auto report = noclobber::run_race(...);  // writers call n.on_operation() per op (for the
//   n.stop();                                //   operations clock); stop() heals everything
//   std::cout << n.to_text();                // timeline + replay line
//
// A `fault_action` is one kind of fault: inject() starts it (on a target it picks with the
// random number the schedule hands it) and heal() ends it. The std-only core here knows nothing
// about processes or networks: `function_fault` wraps two callables, and the POSIX actions
// (kill / restart / pause a process, cut a network namespace off, run a command) live in
// noclobber/race_harness/posix/*.hpp.
//
// The schedule: `faults` steps, one after the other, never overlapping. Step i waits `gap`
// after the previous heal (or the start), then injects action a_i, holds it for `hold` (counted
// from when inject() returned), heals it.
// Gaps, holds, actions and the random numbers are drawn from `seed`: each gap and hold uniformly
// from [x/2, 3x/2] of the option's value, each action uniformly from the list. On the time clock
// gaps and holds are milliseconds; on the operations clock they count on_operation() calls (the
// fault then starts after that many operations), with `max_hold` bounding every fault in time
// all the same (operations may stop while a fault lasts). The replay line ("nemesis clock=time
// seed=7 faults=3 gap=500 hold=1000") rebuilds the same schedule: the same faults on the same
// targets at the same points — the interleaving of the writers around them is not replayed (as in
// the harness's stress mode).
//
// Healing is a promise: stop() (also from the destructor, also after an exception in the test)
// ends the running fault, then calls heal() once more on every action that was ever injected, so
// heal() must be idempotent. A heal or inject that throws is recorded in the timeline and the
// schedule goes on. What a process crash cannot heal (the test killed with SIGKILL) is for the
// outside cleanup: see scripts/clusters/ and docs/faults.md.
//
// Thread safety: start(), stop(), wait(), timeline() and to_text() may be called from any thread;
// on_operation() from any number of writer threads at once (lock-free unless the operations clock
// waits for it). Actions' inject() and heal() run on the nemesis thread — or, for the final heals,
// on the thread calling stop() — never two at once and never under the nemesis's mutex.
#pragma once

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "noclobber/thread_annotations.hpp"

namespace noclobber {

/// One kind of fault: inject() starts it, heal() ends it.
class fault_action {
 public:
  virtual ~fault_action() = default;
  /// A short name for the timeline ("kill-leader").
  [[nodiscard]] virtual std::string name() const = 0;
  /// Starts the fault. `random` comes from the schedule's seed: pick the target with it, so a
  /// replay hits the same one. Returns what was done, for the timeline ("SIGKILL etcd member 2").
  /// Throws to report that the fault could not be applied.
  virtual std::string inject(std::uint64_t random) = 0;
  /// Ends the fault the last inject() started; returns what was done. Idempotent: it is called
  /// again at stop(), also when nothing is active.
  virtual std::string heal() = 0;
};

/// A fault_action from two callables: inject(random) -> description, heal() -> description.
class function_fault final : public fault_action {
 public:
  function_fault(std::string name, std::function<std::string(std::uint64_t)> inject,
                 std::function<std::string()> heal)
      : name_(std::move(name)), inject_(std::move(inject)), heal_(std::move(heal)) {
    if (name_.empty() || !inject_ || !heal_) {
      throw std::invalid_argument("noclobber::function_fault: needs a name, an inject and a heal function");
    }
  }
  [[nodiscard]] std::string name() const override { return name_; }
  std::string inject(std::uint64_t random) override { return inject_(random); }
  std::string heal() override { return heal_(); }

 private:
  std::string name_;
  std::function<std::string(std::uint64_t)> inject_;
  std::function<std::string()> heal_;
};

/// What the schedule counts gaps and holds in.
enum class nemesis_clock : unsigned char {
  time,        ///< milliseconds
  operations,  ///< on_operation() calls
};

/// The schedule's parameters; the replay line carries all of them.
struct nemesis_options {
  nemesis_clock clock = nemesis_clock::time;
  std::uint64_t seed = 1;
  unsigned faults = 3;  ///< steps in the schedule, 1 … 10000
  /// Mean gap before each fault (after the start or the previous heal) and mean hold; each drawn
  /// from [x/2, 3x/2]. Milliseconds on the time clock, operations on the operations clock.
  std::uint64_t gap = 500;
  std::uint64_t hold = 1000;
  /// Any fault is healed after this long, whatever the clock says.
  std::chrono::milliseconds max_hold{10000};

  /// Throws std::invalid_argument naming the bad field.
  void validate() const {
    if (faults == 0 || faults > 10000) {
      throw std::invalid_argument("noclobber::nemesis_options: faults = " + std::to_string(faults) +
                                  " (expected 1 … 10000)");
    }
    if (hold == 0) throw std::invalid_argument("noclobber::nemesis_options: hold = 0 (expected ≥ 1)");
    if (max_hold.count() <= 0) {
      throw std::invalid_argument(
          "noclobber::nemesis_options: max_hold = " + std::to_string(max_hold.count()) + "ms (expected > 0)");
    }
  }

  /// "nemesis clock=time seed=7 faults=3 gap=500 hold=1000 max_hold=10000".
  [[nodiscard]] std::string replay_line() const {
    return "nemesis clock=" + std::string(clock == nemesis_clock::time ? "time" : "operations") +
           " seed=" + std::to_string(seed) + " faults=" + std::to_string(faults) +
           " gap=" + std::to_string(gap) + " hold=" + std::to_string(hold) +
           " max_hold=" + std::to_string(max_hold.count());
  }

  /// Applies a replay line (the leading "nemesis" word is optional). Throws std::invalid_argument
  /// naming a token it does not understand.
  void apply_replay(std::string_view line) {
    std::size_t pos = 0;
    while (pos < line.size()) {
      while (pos < line.size() && line[pos] == ' ') ++pos;
      const std::size_t end = std::min(line.find(' ', pos), line.size());
      const std::string_view token = line.substr(pos, end - pos);
      pos = end;
      if (token.empty() || token == "nemesis") continue;
      const auto eq = token.find('=');
      if (eq == std::string_view::npos) {
        throw std::invalid_argument("noclobber: nemesis replay token '" + std::string(token) +
                                    "' is not key=value");
      }
      const std::string_view name = token.substr(0, eq);
      const std::string value(token.substr(eq + 1));
      if (name == "clock") {
        if (value == "time") {
          clock = nemesis_clock::time;
        } else if (value == "operations") {
          clock = nemesis_clock::operations;
        } else {
          throw std::invalid_argument("noclobber: nemesis clock '" + value +
                                      "' (expected time or operations)");
        }
        continue;
      }
      // Decimal digits only (no sign: stoull wrapped "-1"; no space), within the field's type:
      // a value is set as written or refused, never wrapped or clamped.
      auto number = [&](std::uint64_t max) -> std::uint64_t {
        std::uint64_t n = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (value.empty() || ec != std::errc{} || end != value.data() + value.size() || n > max) {
          throw std::invalid_argument("noclobber: nemesis replay value '" + value + "' for '" +
                                      std::string(name) + "' is not a number from 0 to " +
                                      std::to_string(max));
        }
        return n;
      };
      constexpr std::uint64_t any = std::numeric_limits<std::uint64_t>::max();
      if (name == "seed") {
        seed = number(any);
      } else if (name == "faults") {
        faults = static_cast<unsigned>(number(std::numeric_limits<unsigned>::max()));
      } else if (name == "gap") {
        gap = number(any);
      } else if (name == "hold") {
        hold = number(any);
      } else if (name == "max_hold") {  // 2^40 ms (~35 years): now() + max_hold cannot overflow
        max_hold = std::chrono::milliseconds(static_cast<std::int64_t>(number(std::uint64_t{1} << 40)));
      } else {
        throw std::invalid_argument("noclobber: unknown nemesis replay key '" + std::string(name) + "'");
      }
    }
  }
};

/// One step of a schedule: after `gap` (ms or operations) inject action `action` with `random`,
/// hold it for `hold`, heal it.
struct fault_step {
  unsigned index = 0;
  std::size_t action = 0;
  std::uint64_t gap = 0;
  std::uint64_t hold = 0;
  std::uint64_t random = 0;
};

/// The schedule `options` describes for `actions` fault kinds (a pure function of its arguments).
[[nodiscard]] inline std::vector<fault_step> make_fault_schedule(const nemesis_options& options,
                                                                 std::size_t actions) {
  options.validate();
  if (actions == 0) throw std::invalid_argument("noclobber::make_fault_schedule: no fault actions");
  std::mt19937_64 rng(options.seed);
  auto around = [&rng](std::uint64_t mean) {
    if (mean < 2) return mean;
    return std::uniform_int_distribution<std::uint64_t>(mean / 2, mean + mean / 2)(rng);
  };
  std::vector<fault_step> steps;
  steps.reserve(options.faults);
  for (unsigned i = 0; i < options.faults; ++i) {
    fault_step s;
    s.index = i;
    s.action = static_cast<std::size_t>(std::uniform_int_distribution<std::uint64_t>(0, actions - 1)(rng));
    s.gap = around(options.gap);
    s.hold = std::max<std::uint64_t>(1, around(options.hold));
    s.random = rng();
    steps.push_back(s);
  }
  return steps;
}

/// What happened to one step. Times are since start(): `inject_began_at` when inject() was
/// called, `injected_at` when it returned (the fault in place), `healed_at` when heal() returned
/// (zero until then).
struct fault_event {
  unsigned step = 0;
  std::string action;
  std::string injected;  ///< inject()'s description, or empty when it threw
  std::string healed;    ///< heal()'s description
  std::string error;     ///< what inject() or heal() threw, if anything
  std::chrono::nanoseconds inject_began_at{0};
  std::chrono::nanoseconds injected_at{0};
  std::chrono::nanoseconds healed_at{0};
  std::uint64_t operations_at_inject_began = 0;
  std::uint64_t operations_at_inject = 0;
  std::uint64_t operations_at_heal = 0;
  bool held_to_max = false;  ///< healed by max_hold, not by the operations clock

  [[nodiscard]] bool healed_yet() const noexcept { return healed_at.count() > 0; }
};

/// Applies a fault schedule on its own thread; see the overview.
class nemesis {
 public:
  nemesis(std::vector<std::shared_ptr<fault_action>> actions, nemesis_options options = {})
      : actions_(std::move(actions)), options_(options) {
    for (const auto& a : actions_) {
      if (!a) throw std::invalid_argument("noclobber::nemesis: a null fault action");
    }
    steps_ = make_fault_schedule(options_, actions_.size());
    injected_ever_.assign(actions_.size(), 0);
  }
  nemesis(const nemesis&) = delete;
  nemesis& operator=(const nemesis&) = delete;
  ~nemesis() {
    try {
      stop();
    } catch (...) {  // NOLINT: a destructor must not throw; stop() records heal errors itself
    }
  }

  /// Starts the schedule on a new thread. Throws std::logic_error when called twice.
  void start() {
    {
      annotated_lock lock(mutex_);
      if (started_) throw std::logic_error("noclobber::nemesis: start() called twice");
      started_ = true;
    }
    started_at_ = std::chrono::steady_clock::now();
    operations_at_start_ = operations();
    thread_ = std::thread([this] { run(); });
  }

  /// Counts one operation (the operations clock); cheap enough to call after every op.
  void on_operation() noexcept {
    const std::uint64_t n = operations_.fetch_add(1) + 1;
    if (n >= wake_at_.load()) {
      annotated_lock lock(mutex_);
      cv_.notify_all();
    }
  }
  [[nodiscard]] std::uint64_t operations() const noexcept {
    return operations_.load(std::memory_order_relaxed);
  }

  /// Blocks until the schedule has run to its end (every step injected and healed) or stop().
  void wait() {
    annotated_lock lock(mutex_);
    std::unique_lock<std::mutex> wait_lock(mutex_.native(), std::adopt_lock);  // `lock` holds it
    while (started_ && !finished_ && !stopping_) cv_.wait(wait_lock);
    wait_lock.release();  // `lock` unlocks
  }

  /// Ends the schedule: heals the running fault, then heals every action ever injected once
  /// more, and joins the thread. Idempotent; safe before start().
  void stop() {
    {
      annotated_lock lock(mutex_);
      stopping_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
    std::vector<std::size_t> to_heal;
    {
      annotated_lock lock(mutex_);
      if (final_heal_done_) return;
      final_heal_done_ = true;
      for (std::size_t a = 0; a < actions_.size(); ++a) {
        if (injected_ever_[a]) to_heal.push_back(a);
      }
    }
    for (std::size_t a : to_heal) {
      std::string error;
      try {
        (void)actions_[a]->heal();
      } catch (const std::exception& e) {
        error = e.what();
      } catch (...) {
        error = "unknown exception";
      }
      if (!error.empty()) {
        annotated_lock lock(mutex_);
        final_heal_errors_.push_back(actions_[a]->name() + ": " + error);
      }
    }
  }

  [[nodiscard]] const nemesis_options& options() const noexcept { return options_; }
  [[nodiscard]] const std::vector<fault_step>& schedule() const noexcept { return steps_; }
  [[nodiscard]] std::string replay_line() const { return options_.replay_line(); }

  /// The steps run so far, in order.
  [[nodiscard]] std::vector<fault_event> timeline() const {
    annotated_lock lock(mutex_);
    return events_;
  }
  /// Heals at stop() that threw ("action: message").
  [[nodiscard]] std::vector<std::string> final_heal_errors() const {
    annotated_lock lock(mutex_);
    return final_heal_errors_;
  }

  /// The timeline, one line per step, and the replay line.
  [[nodiscard]] std::string to_text() const {
    auto ms = [](std::chrono::nanoseconds d) {
      return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + "ms";
    };
    std::string out;
    for (const fault_event& e : timeline()) {
      out += "  fault " + std::to_string(e.step) + " " + e.action + " from " + ms(e.inject_began_at) +
             " in place at " + ms(e.injected_at) + " (op " + std::to_string(e.operations_at_inject) +
             "): " + (e.injected.empty() ? "-" : e.injected);
      out += e.healed_yet()
                 ? "; healed at " + ms(e.healed_at) + " (op " + std::to_string(e.operations_at_heal) +
                       "): " + e.healed + (e.held_to_max ? " [max_hold]" : "")
                 : std::string("; not healed by the schedule");
      if (!e.error.empty()) out += "; error: " + e.error;
      out += '\n';
    }
    for (const std::string& e : final_heal_errors()) out += "  final heal failed: " + e + '\n';
    out += "  replay: " + replay_line() + '\n';
    return out;
  }

 private:
  std::chrono::nanoseconds since_start() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                                started_at_);
  }

  // Waits until `amount` has passed on the schedule's clock since `from_time` / `from_ops`, or
  // stop(); `limit` bounds the wait in time. Returns false when stopped; sets `timed_out` when the
  // operations clock hit `limit`.
  bool wait_clock(std::uint64_t amount, std::chrono::steady_clock::time_point from_time,
                  std::uint64_t from_ops, std::optional<std::chrono::milliseconds> limit, bool& timed_out) {
    timed_out = false;
    const bool by_time = options_.clock == nemesis_clock::time;
    const auto deadline = by_time ? from_time + std::chrono::milliseconds(static_cast<std::int64_t>(amount))
                          : limit ? from_time + *limit
                                  : std::chrono::steady_clock::time_point::max();
    annotated_lock lock(mutex_);
    std::unique_lock<std::mutex> wait_lock(mutex_.native(), std::adopt_lock);  // `lock` holds it
    // Operations clock: publish the target before reading the count; on_operation() bumps the
    // count before reading the target (both seq_cst), so one of the two sees the other.
    const std::uint64_t target = by_time ? 0 : from_ops + amount;
    if (!by_time) wake_at_.store(target);
    while (!stopping_ && (by_time || operations_.load() < target)) {
      if (deadline == std::chrono::steady_clock::time_point::max()) {
        cv_.wait(wait_lock);
      } else if (cv_.wait_until(wait_lock, deadline) == std::cv_status::timeout &&
                 std::chrono::steady_clock::now() >= deadline) {
        timed_out = !by_time;
        break;
      }
    }
    if (!by_time) wake_at_.store(~std::uint64_t{0});
    const bool stopped = stopping_;
    wait_lock.release();  // `lock` unlocks
    return !stopped;
  }

  // One step: inject, hold, heal. The action runs with no lock held.
  void run_step(const fault_step& s) {
    fault_action& action = *actions_[s.action];
    fault_event e;
    e.step = s.index;
    e.action = action.name();
    e.inject_began_at = since_start();
    e.operations_at_inject_began = operations();
    {
      annotated_lock lock(mutex_);
      injected_ever_[s.action] = 1;  // before inject: a half-applied fault is healed too
    }
    try {
      e.injected = action.inject(s.random);
    } catch (const std::exception& ex) {
      e.error = std::string("inject: ") + ex.what();
    } catch (...) {
      e.error = "inject: unknown exception";
    }
    // The hold counts from the moment the fault is in place (inject may take a while).
    e.injected_at = since_start();
    e.operations_at_inject = operations();
    const auto hold_from = std::chrono::steady_clock::now();
    bool timed_out = false;
    (void)wait_clock(s.hold, hold_from, operations(), options_.max_hold, timed_out);
    e.held_to_max = timed_out;
    try {
      e.healed = action.heal();
    } catch (const std::exception& ex) {
      e.error += (e.error.empty() ? "" : "; ") + std::string("heal: ") + ex.what();
    } catch (...) {
      e.error += (e.error.empty() ? "" : "; ") + std::string("heal: unknown exception");
    }
    e.healed_at = since_start();
    e.operations_at_heal = operations();
    annotated_lock lock(mutex_);
    events_.push_back(std::move(e));
  }

  // Gaps count from the start, then from each heal.
  void run() {
    auto gap_from = started_at_;
    std::uint64_t gap_from_ops = operations_at_start_;
    for (const fault_step& s : steps_) {
      bool timed_out = false;
      if (!wait_clock(s.gap, gap_from, gap_from_ops, std::nullopt, timed_out)) break;
      run_step(s);
      gap_from = std::chrono::steady_clock::now();
      gap_from_ops = operations();
      annotated_lock lock(mutex_);
      if (stopping_) break;
    }
    annotated_lock lock(mutex_);
    finished_ = true;
    cv_.notify_all();
  }

  std::vector<std::shared_ptr<fault_action>> actions_;
  nemesis_options options_;
  std::vector<fault_step> steps_;
  std::chrono::steady_clock::time_point started_at_{};  // written before the thread starts
  std::uint64_t operations_at_start_ = 0;               // likewise
  std::atomic<std::uint64_t> operations_{0};
  std::atomic<std::uint64_t> wake_at_{~std::uint64_t{0}};  // on_operation notifies from here on
  std::thread thread_;

  mutable annotated_mutex mutex_;
  std::condition_variable cv_;  // waits on mutex_.native()
  bool started_ NOCLOBBER_GUARDED_BY(mutex_) = false;
  bool stopping_ NOCLOBBER_GUARDED_BY(mutex_) = false;
  bool finished_ NOCLOBBER_GUARDED_BY(mutex_) = false;
  bool final_heal_done_ NOCLOBBER_GUARDED_BY(mutex_) = false;
  std::vector<char> injected_ever_ NOCLOBBER_GUARDED_BY(mutex_);
  std::vector<fault_event> events_ NOCLOBBER_GUARDED_BY(mutex_);
  std::vector<std::string> final_heal_errors_ NOCLOBBER_GUARDED_BY(mutex_);
};

}  // namespace noclobber
