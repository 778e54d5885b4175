// noclobber/retry_budget.hpp — a retry quota shared by many callers, so retries cannot storm.
//
// Overview
// --------
// Per-call attempt limits do not stop a retry storm: when a store is overloaded every caller
// retries up to its limit and multiplies the load. A retry budget is a token bucket shared by all
// callers of one store (AWS SDK "standard" retry mode): each retry must first take tokens out of
// the bucket, and successes put tokens back. When the store is healthy the bucket stays full;
// when most calls fail it drains and callers stop retrying (stop_reason::budget_exhausted) until
// successes refill it.
//
// Defaults match the AWS SDK standard mode: 500 tokens, 5 per retry after a conflict,
// 10 per retry after a transient error (AWS: "timeout"), and on success either the tokens taken
// for that call's last retry come back, or — for a first-try success — 1 token.
//
//   auto budget = std::make_shared<noclobber::retry_budget>();   // share it across threads
//   noclobber::retry_policy p;  p.budget = budget;
//
// Thread safety: every member is safe to call concurrently. The bucket is one atomic counter
// updated by compare-and-swap (lock-free; no user code runs inside). A full bucket makes the
// first-try-success refund a single atomic load.
#pragma once

#include <atomic>
#include <stdexcept>
#include <string>

#include "noclobber/outcome.hpp"

namespace noclobber {

class retry_budget {
 public:
  struct config {
    unsigned capacity = 500;       // tokens when full (and at start)
    unsigned retry_cost = 5;       // taken before retrying after conflict / absent / exists
    unsigned transient_cost = 10;  // taken before retrying after transient / transient_restart
    unsigned success_refund = 1;   // given back by a success that needed no retry
  };

  retry_budget() : retry_budget(config{}) {}

  /// Throws std::invalid_argument when capacity is 0 or a cost exceeds the capacity.
  explicit retry_budget(config c) : cfg_(c), tokens_(c.capacity) {
    if (c.capacity == 0) throw std::invalid_argument("noclobber::retry_budget: capacity must be > 0, got 0");
    if (c.retry_cost > c.capacity) {
      throw std::invalid_argument("noclobber::retry_budget: retry_cost " + std::to_string(c.retry_cost) +
                                  " exceeds capacity " + std::to_string(c.capacity));
    }
    if (c.transient_cost > c.capacity) {
      throw std::invalid_argument("noclobber::retry_budget: transient_cost " +
                                  std::to_string(c.transient_cost) + " exceeds capacity " +
                                  std::to_string(c.capacity));
    }
  }

  retry_budget(const retry_budget&) = delete;
  retry_budget& operator=(const retry_budget&) = delete;

  /// Tokens a retry after `failure` costs.
  [[nodiscard]] unsigned cost_of(write_status failure) const noexcept {
    return (failure == write_status::transient || failure == write_status::transient_restart)
               ? cfg_.transient_cost
               : cfg_.retry_cost;
  }

  /// Takes the cost of one retry after `failure`: true and `taken` = the cost when the bucket
  /// held enough; false and `taken` = 0 (nothing taken) when it did not.
  [[nodiscard]] bool try_acquire(write_status failure, unsigned& taken) noexcept {
    const unsigned cost = cost_of(failure);
    unsigned cur = tokens_.load(std::memory_order_relaxed);
    for (;;) {
      if (cur < cost) {
        taken = 0;
        return false;
      }
      if (tokens_.compare_exchange_weak(cur, cur - cost, std::memory_order_relaxed)) {
        taken = cost;
        return true;
      }
    }
  }

  /// Records a success. `taken_for_last_retry` is what try_acquire took before the attempt that
  /// succeeded (0 for a first-try success, which refunds `success_refund` instead).
  void on_success(unsigned taken_for_last_retry) noexcept {
    refund(taken_for_last_retry != 0 ? taken_for_last_retry : cfg_.success_refund);
  }

  /// Puts `n` tokens back, never above capacity.
  void refund(unsigned n) noexcept {
    if (n == 0) return;
    unsigned cur = tokens_.load(std::memory_order_relaxed);
    while (cur < cfg_.capacity) {
      const unsigned room = cfg_.capacity - cur;
      const unsigned next = cur + (n < room ? n : room);
      if (tokens_.compare_exchange_weak(cur, next, std::memory_order_relaxed)) return;
    }
  }

  /// Tokens in the bucket now (a snapshot).
  [[nodiscard]] unsigned available() const noexcept { return tokens_.load(std::memory_order_relaxed); }
  [[nodiscard]] const config& settings() const noexcept { return cfg_; }

 private:
  const config cfg_;
  std::atomic<unsigned> tokens_;  // invariant: 0 <= tokens_ <= cfg_.capacity
};

}  // namespace noclobber
