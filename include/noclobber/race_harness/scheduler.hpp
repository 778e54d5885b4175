// noclobber/race_harness/scheduler.hpp — how the race harness interleaves its writers: the
// forced window's barrier and the explore mode's PCT scheduler.
//
// Overview
// --------
//   timed_barrier   forced mode: every writer waits after each read until every writer still
//                   running has read too (one round per read; a writer whose ops are done
//                   leaves), so that they all write what they read. A barrier with a timeout: a
//                   store or strategy that holds a lock across read and write never lets the
//                   others arrive, the wait times out and the barrier stays open ("broken"), and
//                   the report says "writers serialised" instead of hanging.
//   pct_scheduler   explore mode: PCT (Burckhardt et al. 2010). Exactly one writer runs between
//                   scheduling points (each store call); the highest-priority writer waiting at a
//                   point goes next; at d − 1 seeded change points the running writer's priority
//                   drops. A writer that reaches no point within stall_timeout (blocked on a lock
//                   the harness cannot see) is passed over until it does. Drawn from a seed, or
//                   written out (race_harness/schedule.hpp): explicit priorities and change points
//                   anchored to a writer's store call; a seeded run reports where its change
//                   points fell, so that it can be written out and replayed the same.
//
// Timeouts saturate (noclobber/duration.hpp): milliseconds::max() waits without limit.
//
// Thread safety: both are shared by all writer threads of one run; every member locks the
// object's own mutex (annotated, checked by -Wthread-safety). No user code runs under it.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "noclobber/duration.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber::detail {

/// `timeout` from now on the steady clock, saturating (max(): never).
inline std::chrono::steady_clock::time_point race_deadline_after(std::chrono::milliseconds timeout) {
  return saturating_deadline<std::chrono::steady_clock>(std::chrono::steady_clock::now(),
                                                        saturating_cast_ns(timeout));
}

/// A reusable barrier with a timeout, one generation per round of reads: a round completes
/// when every writer still running has arrived. A writer that is done leaves it (drop), so the
/// others never wait for it. Once a wait times out the barrier stays open ("broken") for good.
class timed_barrier {
 public:
  explicit timed_barrier(unsigned expected) : expected_(expected) {}

  /// Waits until every writer still running has arrived in this round. False when it timed out
  /// (now or earlier): the barrier is then open for everyone.
  bool arrive_and_wait(std::chrono::milliseconds timeout) {
    const auto deadline = race_deadline_after(timeout);
    annotated_wait_lock lock(mutex_);
    if (broken_) return false;
    ++held_;
    const std::uint64_t round = round_;
    if (++arrived_ >= expected_) {
      complete_round();
      return true;
    }
    while (round_ == round && !broken_) {
      if (lock.wait_until(cv_, deadline) == std::cv_status::timeout && round_ == round) {
        broken_ = true;
        cv_.notify_all();
      }
    }
    return round_ != round;
  }
  /// A writer that will read no more (all its ops done) leaves; a round it was holding up completes.
  void drop() {
    annotated_lock lock(mutex_);
    if (expected_ > 0) --expected_;
    if (!broken_ && arrived_ > 0 && arrived_ >= expected_) complete_round();
  }
  bool broken() const {
    annotated_lock lock(mutex_);
    return broken_;
  }
  /// Rounds completed (every writer still running stood in the window at once).
  std::uint64_t rounds() const {
    annotated_lock lock(mutex_);
    return round_;
  }
  /// Arrivals that waited in a round (reads held), before the barrier broke.
  std::uint64_t held() const {
    annotated_lock lock(mutex_);
    return held_;
  }

 private:
  void complete_round() NOCLOBBER_REQUIRES(mutex_) {
    arrived_ = 0;
    ++round_;
    cv_.notify_all();
  }

  mutable annotated_mutex mutex_;
  std::condition_variable cv_;
  unsigned expected_ NOCLOBBER_GUARDED_BY(mutex_);
  unsigned arrived_ NOCLOBBER_GUARDED_BY(mutex_) = 0;
  std::uint64_t round_ NOCLOBBER_GUARDED_BY(mutex_) = 0;
  std::uint64_t held_ NOCLOBBER_GUARDED_BY(mutex_) = 0;
  bool broken_ NOCLOBBER_GUARDED_BY(mutex_) = false;
};

/// PCT scheduler: exactly one writer runs between scheduling points; the highest-priority writer
/// waiting at a point goes next. Initial priorities are a seeded permutation of depth … depth+n−1;
/// at the i-th change point (a step number, i from 1) the writer at that point drops to priority d − i.
/// A chosen writer that reaches no point within stall_timeout (blocked on a lock the harness cannot
/// see) is passed over until it does; such stalls make a run non-deterministic and are counted.
class pct_scheduler {
 public:
  static constexpr unsigned none = ~0u;

  /// A change point anchored to a writer's store call: writer (0-based index), op, call in op.
  struct change {
    unsigned writer = none;
    std::uint32_t op = 0;
    std::uint32_t call = 0;
  };

  pct_scheduler(unsigned writers, unsigned depth, std::uint64_t expected_steps, std::uint64_t seed,
                std::chrono::milliseconds stall_timeout)
      : stall_timeout_(stall_timeout) {
    annotated_lock lock(mutex_);  // nobody else sees the scheduler yet; the lock satisfies the analysis
    priority_.resize(writers);
    waiting_.assign(writers, 0);
    done_.assign(writers, 0);
    stalled_.assign(writers, 0);
    std::mt19937_64 rng(seed);
    for (unsigned i = 0; i < writers; ++i) priority_[i] = static_cast<int>(depth + i);
    std::shuffle(priority_.begin(), priority_.end(), rng);
    std::uniform_int_distribution<std::uint64_t> step(1, std::max<std::uint64_t>(expected_steps, 1));
    for (unsigned i = 1; i < depth; ++i) change_points_.push_back(step(rng));
    fired_.resize(change_points_.size());
  }

  /// A written-out schedule: `priorities` per writer index (all distinct, each above
  /// `anchored.size()`), and change points at writers' calls; the i-th drops to size − i.
  pct_scheduler(std::vector<int> priorities, std::vector<change> anchored,
                std::chrono::milliseconds stall_timeout)
      : stall_timeout_(stall_timeout) {
    annotated_lock lock(mutex_);  // nobody else sees the scheduler yet; the lock satisfies the analysis
    const std::size_t writers = priorities.size();
    priority_ = std::move(priorities);
    waiting_.assign(writers, 0);
    done_.assign(writers, 0);
    stalled_.assign(writers, 0);
    anchored_ = std::move(anchored);
    fired_.resize(anchored_.size());
  }

  /// Called by writer w (0-based) before each store call (call `call` of op `op`) and once at
  /// its start (a point where no change point fires).
  void point(unsigned w, std::uint32_t op = 0, std::uint32_t call = 0) {
    annotated_wait_lock lock(mutex_);
    if (started_) {
      // Steps count from the first scheduled move, so arrival order never matters.
      ++steps_;
      for (std::size_t i = 0; i < change_points_.size(); ++i) {
        if (change_points_[i] == steps_) {
          priority_[w] = static_cast<int>(change_points_.size() - i);
          fired_[i] = change{w, op, call};
        }
      }
      for (std::size_t i = 0; i < anchored_.size(); ++i) {
        const change& c = anchored_[i];
        if (c.writer == w && c.op == op && c.call == call) {
          priority_[w] = static_cast<int>(anchored_.size() - i);
          fired_[i] = c;
        }
      }
    }
    waiting_[w] = 1;
    stalled_[w] = 0;
    if (!started_) {
      if (++arrived_ == priority_.size()) {
        started_ = true;
        initial_priority_ = priority_;
        pick_next();
      }
    } else if (current_ == w || current_ == none) {
      pick_next();
    }
    cv_.notify_all();
    while (current_ != w) {
      const std::uint64_t seen = steps_;
      const bool timed_out =
          lock.wait_until(cv_, race_deadline_after(stall_timeout_)) == std::cv_status::timeout;
      if (timed_out && started_ && steps_ == seen && current_ != w && current_ != none &&
          !waiting_[current_] && !done_[current_]) {
        stalled_[current_] = 1;
        ++stalls_;
        pick_next();
        cv_.notify_all();
      }
    }
    waiting_[w] = 0;
  }

  void finish(unsigned w) {
    annotated_lock lock(mutex_);
    done_[w] = 1;
    if (started_) ++steps_;
    if (current_ == w || current_ == none) pick_next();
    cv_.notify_all();
  }

  std::size_t stalls() const {
    annotated_lock lock(mutex_);
    return stalls_;
  }
  /// Scheduled moves so far (the length of the run's trace).
  std::uint64_t steps() const {
    annotated_lock lock(mutex_);
    return steps_;
  }
  /// The initial priority of each writer index (after the run: as changed by change points).
  std::vector<int> initial_priorities() const {
    annotated_lock lock(mutex_);
    return initial_priority_.empty() ? priority_ : initial_priority_;
  }
  /// The change points that fired, in order, with the calls they fell on.
  std::vector<change> fired() const {
    annotated_lock lock(mutex_);
    std::vector<change> out;
    for (const change& c : fired_)
      if (c.writer != none) out.push_back(c);
    return out;
  }

 private:
  void pick_next() NOCLOBBER_REQUIRES(mutex_) {
    unsigned best = none;
    for (unsigned i = 0; i < priority_.size(); ++i) {
      if (waiting_[i] && !done_[i] && !stalled_[i] && (best == none || priority_[i] > priority_[best]))
        best = i;
    }
    current_ = best;
  }

  mutable annotated_mutex mutex_;
  std::condition_variable cv_;
  std::vector<int> priority_ NOCLOBBER_GUARDED_BY(mutex_);
  std::vector<char> waiting_ NOCLOBBER_GUARDED_BY(mutex_);
  std::vector<char> done_ NOCLOBBER_GUARDED_BY(mutex_);
  std::vector<char> stalled_ NOCLOBBER_GUARDED_BY(mutex_);
  std::vector<int> initial_priority_ NOCLOBBER_GUARDED_BY(mutex_);
  std::vector<std::uint64_t> change_points_ NOCLOBBER_GUARDED_BY(mutex_);  // seeded: global steps
  std::vector<change> anchored_ NOCLOBBER_GUARDED_BY(mutex_);              // written out: at calls
  std::vector<change> fired_ NOCLOBBER_GUARDED_BY(mutex_);                 // per change point
  std::uint64_t steps_ NOCLOBBER_GUARDED_BY(mutex_) = 0;
  unsigned current_ NOCLOBBER_GUARDED_BY(mutex_) = none;
  std::size_t arrived_ NOCLOBBER_GUARDED_BY(mutex_) = 0;
  bool started_ NOCLOBBER_GUARDED_BY(mutex_) = false;
  std::size_t stalls_ NOCLOBBER_GUARDED_BY(mutex_) = 0;
  const std::chrono::milliseconds stall_timeout_;
};

}  // namespace noclobber::detail
