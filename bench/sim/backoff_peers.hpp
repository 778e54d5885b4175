// bench/sim/backoff_peers.hpp — the retry governors other stacks use, as client strategies of the
// backoff simulation (backoff_sim.hpp), written from their published specs and sources:
//
//   aws_adaptive     AWS SDK "adaptive" retry mode: the standard mode's jittered exponential
//                    backoff and retry quota, plus a client-side token bucket that gates every
//                    request and whose fill rate follows CUBIC (beta 0.7, C 0.4). Source:
//                    botocore/retries/{adaptive,throttling,bucket,standard,quota}.py; the SDKs'
//                    shared spec "Retry behavior" (AWS SDKs and Tools Reference Guide).
//   grpc_throttling  gRPC retry throttling (proposal A6 "gRPC Retry Design", retryThrottling):
//                    a token count starting at maxTokens, -1 per failed attempt, +tokenRatio
//                    per success; a retry is allowed only while tokens > maxTokens / 2. Backoff
//                    random(0, min(initialBackoff * multiplier^(n-1), maxBackoff)); at most 5
//                    attempts per call.
//   finagle_budget   Finagle's RetryBudget (com.twitter.finagle.service.RetryBudget, the 20 %
//                    budget Envoy also offers as retry_budget.budget_percent): every request
//                    deposits, a retry withdraws 1 / percentCanRetry deposits, deposits expire
//                    after ttl, and a reserve of minRetriesPerSec * ttl retries is always there.
//                    Defaults ttl 10 s, 10 retries/s, 20 %. Backoff: full jitter 10 ms .. 1 s.
//
// How they are run. Each simulated client is its own process (as for every strategy without a
// lock), so each has its own SDK client, channel or budget, in the state those libraries start
// with. The experiment's rule holds for every row: a client keeps going until its update lands.
// A conflict is fed to the AWS limiter as a throttling error (otherwise adaptive mode is standard
// mode and its limiter never engages). When a governor refuses a retry (gRPC throttled or out of
// attempts, Finagle budget empty, AWS quota empty) the call fails; the caller then makes a new
// call after the delay the retry would have had, counting on (the kindest outer loop: a refusal
// costs no extra write). Refusals are counted (`refused`).
//
// Not thread-safe: one object per simulated client.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <utility>

#include "noclobber/backoff.hpp"
#include "sim/backoff_sim.hpp"

namespace noclobber::sim {

namespace peers {

inline double seconds(ns t) {
  return static_cast<double>(t.count()) / 1e9;
}
inline ns from_seconds(double s) {
  return ns(static_cast<std::int64_t>(std::llround(s * 1e9)));
}
/// random.random(): uniform in [0, 1), from raw generator output (53 bits).
inline double unit(std::mt19937_64& rng) {
  return static_cast<double>(noclobber::detail::random_u64(rng) >> 11) * 0x1.0p-53;
}

// ---- AWS SDK adaptive retry mode ---------------------------------------------------------------

/// botocore.retries.throttling.CubicCalculator.
class cubic_calculator {
 public:
  static constexpr double scale_constant = 0.4;  // C
  static constexpr double beta = 0.7;

  cubic_calculator(double starting_max_rate, double start_time)
      : w_max_(starting_max_rate), k_(zero_point()), last_fail_(start_time) {}

  [[nodiscard]] double success_received(double t) const {
    return scale_constant * std::pow(t - last_fail_ - k_, 3.0) + w_max_;
  }
  /// The rate the client was sending at when throttled becomes W_max; the new rate is beta * it.
  double error_received(double current_rate, double t) {
    w_max_ = current_rate;
    k_ = zero_point();
    last_fail_ = t;
    return current_rate * beta;
  }

 private:
  [[nodiscard]] double zero_point() const { return std::cbrt(w_max_ * (1 - beta) / scale_constant); }

  double w_max_;
  double k_;
  double last_fail_;
};

/// botocore.retries.bucket.TokenBucket: fill rate >= 0.5/s, capacity max(1, rate), starts empty.
class token_bucket {
 public:
  static constexpr double min_rate = 0.5;

  explicit token_bucket(double max_rate) { set_max_rate(max_rate, std::nullopt); }

  [[nodiscard]] double max_rate() const { return fill_rate_; }

  /// Refills at the old rate up to `t`, then switches rate (the setter of max_rate).
  void set_max_rate(double value, std::optional<double> t) {
    if (t) refill(*t);
    fill_rate_ = std::max(value, min_rate);
    max_capacity_ = value >= 1 ? value : 1;
    capacity_ = std::min(capacity_, max_capacity_);
  }

  /// Blocks until a token is there (acquire(1, block=True)) and takes it: returns the wait.
  double acquire(double t) {
    refill(t);
    if (capacity_ >= 1) {
      capacity_ -= 1;
      return 0;
    }
    const double wait = (1 - capacity_) / fill_rate_;
    refill(t + wait);
    capacity_ = std::max(0.0, capacity_ - 1);
    return wait;
  }

 private:
  void refill(double t) {
    if (!last_) {
      last_ = t;
      return;
    }
    capacity_ = std::min(max_capacity_, capacity_ + (t - *last_) * fill_rate_);
    last_ = t;
  }

  double fill_rate_ = 1;
  double max_capacity_ = 1;
  double capacity_ = 0;
  std::optional<double> last_;
};

/// botocore.retries.adaptive.RateClocker: responses per second, smoothed 0.8 over 0.5 s buckets.
class rate_clocker {
 public:
  static constexpr double smoothing = 0.8;
  static constexpr double bucket_range = 0.5;

  explicit rate_clocker(double start) : last_bucket_(std::floor(start)) {}

  double record(double t) {
    const double bucket = std::floor(t / bucket_range) * bucket_range;
    count_ += 1;
    if (bucket > last_bucket_) {
      const double current = count_ / (bucket - last_bucket_);
      measured_ = current * smoothing + measured_ * (1 - smoothing);
      count_ = 0;
      last_bucket_ = bucket;
    }
    return measured_;
  }

 private:
  double measured_ = 0;
  double last_bucket_;
  double count_ = 0;
};

}  // namespace peers

/// AWS SDK adaptive retry mode for one client (see the file comment). Simulated time 0 is a
/// whole second of the client's clock (the RateClocker's first bucket starts there).
class aws_adaptive_client : public client_strategy {
 public:
  // botocore standard mode: retry quota 500, 5 per retry; backoff rand * min(scale * 2^(n-1), 20 s)
  // with scale 1 s for a throttling error (STANDARD_RETRY_MODE_VERSION 2.1; 2.0 uses 1 s always).
  static constexpr double max_rate_adjust_scale = 2.0;
  static constexpr double backoff_scale_s = 1.0;
  static constexpr double max_backoff_s = 20.0;
  static constexpr unsigned quota_capacity = 500;
  static constexpr unsigned retry_cost = 5;

  ns on_conflict(const observation& o, std::mt19937_64& rng) override {
    const double t = peers::seconds(o.now);
    // needs-retry: the limiter sees a throttling response.
    const double measured = clocker_.record(t);
    const double rate_to_use = enabled_ ? std::min(measured, bucket_.max_rate()) : measured;
    const double new_rate = cubic_.error_received(rate_to_use, t);
    enabled_ = true;
    bucket_.set_max_rate(std::min(new_rate, max_rate_adjust_scale * measured), t);
    // The standard retry: quota, then backoff.
    if (quota_ >= retry_cost) {
      quota_ -= retry_cost;
    } else {
      ++refused_;  // the call fails; the caller calls again after the same delay
    }
    const double exponent = std::min(static_cast<double>(o.failures) - 1, 62.0);
    const double backoff = peers::unit(rng) * std::min(backoff_scale_s * std::exp2(exponent), max_backoff_s);
    // before-send: the next request takes a token from the bucket, waiting if it must.
    const double wait = bucket_.acquire(t + backoff);
    return peers::from_seconds(backoff + wait);
  }

  [[nodiscard]] unsigned refused() const { return refused_; }

 private:
  peers::cubic_calculator cubic_{0, 0};
  peers::token_bucket bucket_{1};
  peers::rate_clocker clocker_{0};
  bool enabled_ = false;
  unsigned quota_ = quota_capacity;
  unsigned refused_ = 0;
};

/// gRPC retry throttling for one client's channel (see the file comment).
class grpc_throttling_client : public client_strategy {
 public:
  struct config {
    double max_tokens = 10;  // the A6 proposal's example retryThrottling
    double token_ratio = 0.1;
    double initial_backoff_s = 0.010;
    double max_backoff_s = 1.0;
    double multiplier = 2.0;
    unsigned max_attempts = 5;  // gRPC caps maxAttempts at 5
  };

  grpc_throttling_client() : grpc_throttling_client(config{}) {}
  explicit grpc_throttling_client(config c) : cfg_(c), tokens_(c.max_tokens) {}

  ns on_conflict(const observation& o, std::mt19937_64& rng) override {
    tokens_ = std::max(0.0, tokens_ - 1);  // a failed attempt
    ++attempt_in_call_;
    const bool throttled = !(tokens_ > cfg_.max_tokens / 2);
    if (throttled || attempt_in_call_ >= cfg_.max_attempts) {
      ++refused_;  // the call fails; the caller makes a new call after the same delay
      attempt_in_call_ = 0;
    }
    const double exponent = std::min(static_cast<double>(o.failures) - 1, 62.0);
    const double window =
        std::min(cfg_.initial_backoff_s * std::pow(cfg_.multiplier, exponent), cfg_.max_backoff_s);
    return peers::from_seconds(peers::unit(rng) * window);
  }

  [[nodiscard]] unsigned refused() const { return refused_; }
  [[nodiscard]] double tokens() const { return tokens_; }

 private:
  config cfg_;
  double tokens_;
  unsigned attempt_in_call_ = 0;
  unsigned refused_ = 0;
};

/// Finagle's RetryBudget for one client, with full-jitter backoff (see the file comment).
class finagle_budget_client : public client_strategy {
 public:
  struct config {
    double ttl_s = 10;
    double min_retries_per_s = 10;
    double percent_can_retry = 0.2;
  };

  finagle_budget_client() : finagle_budget_client(config{}) {}
  explicit finagle_budget_client(config c)
      : cfg_(c),
        deposit_(scale),
        withdrawal_(static_cast<std::int64_t>(scale / c.percent_can_retry)),
        reserve_(static_cast<std::int64_t>(c.min_retries_per_s * c.ttl_s) * withdrawal_) {}

  ns on_conflict(const observation& o, std::mt19937_64& rng) override {
    if (o.failures == 1) put(0, deposit_);  // the call's request (sent at time 0)
    const double t = peers::seconds(o.now);
    if (balance(t) >= withdrawal_) {
      put(t, -withdrawal_);
    } else {
      ++refused_;  // the call fails; the caller makes a new call (a new request) after the delay
      put(t, deposit_);
    }
    const double exponent = std::min(static_cast<double>(o.failures) - 1, 62.0);
    const double window = std::min(0.010 * std::exp2(exponent), 1.0);
    return peers::from_seconds(peers::unit(rng) * window);
  }

  [[nodiscard]] unsigned refused() const { return refused_; }
  /// Retries the budget would grant now (RetryBudget.balance).
  [[nodiscard]] std::int64_t retries_available(double t) { return balance(t) / withdrawal_; }

 private:
  static constexpr double scale = 1000.0;  // TokenRetryBudget.ScaleFactor

  // com.twitter.util.TokenBucket.newLeakyBucket(ttl, reserve): puts expire after ttl.
  std::int64_t balance(double t) {
    while (!window_.empty() && window_.front().first <= t - cfg_.ttl_s) window_.pop_front();
    std::int64_t sum = reserve_;
    for (const auto& [at, amount] : window_) sum += amount;
    return sum;
  }
  void put(double t, std::int64_t amount) { window_.emplace_back(t, amount); }

  config cfg_;
  std::int64_t deposit_;
  std::int64_t withdrawal_;
  std::int64_t reserve_;
  std::deque<std::pair<double, std::int64_t>> window_;
  unsigned refused_ = 0;
};

}  // namespace noclobber::sim
