// noclobber/backoff.hpp — how long to wait before retrying a conditional write.
//
// Overview
// --------
// When a conditional write loses (the version moved, the store said "busy"), retrying at once
// makes every loser collide again. Backing off spreads the retries out; jitter keeps clients that
// failed together from retrying together. `backoff_policy` is a small value type that names one of
// the classic schedules (M. Brooker, "Exponential Backoff And Jitter", 2015) and computes the delay
// before retry n:
//
//   exponential          t(n) = min(cap, base * m^(n-1))                      (no jitter)
//   full_jitter          uniform[0, t(n)]
//   equal_jitter         t(n)/2 + uniform[0, t(n) - t(n)/2]
//   decorrelated_jitter  min(cap, uniform[base, m * previous])   (previous = base before retry 1)
//   commit_rate          uniform[0, min(t(n), 1.5 * w / (1 - b)^2)]  (noclobber's own, see below)
//   load_tracking        uniform[0, clamp(5 base * e^(k * sum(l_i - 0.6)), base, cap)] (ours, below)
//   immediate            0
//
// Retry numbers start at 1 (the first retry waits at most `base`). `m` is the multiplier (2 by
// default, 3 for decorrelated jitter as in Brooker's formula).
//
//   auto policy = noclobber::backoff_policy::full_jitter(10ms, 1s);
//   std::mt19937_64 rng(42);
//   auto d = policy.delay(3, 0ns, rng);   // uniform in [0, 40ms]
//
// commit_rate is full jitter (base 30 ms, multiplier 3 by default) whose window also shrinks when the row
// is quiet. It needs a `contention_meter` fed with the version each refused attempt read: from
// successive reads the meter estimates b, the share of time the row spends committing (commits
// per second × w, where w is the observed time from a read to its refused write; an exponential
// moving average, clamped to 0.8). A busy row (b near 0.8) leaves the full-jitter window; a
// quiet one (few commits between this client's reads) cuts it to about 1.5w, so the last writers
// of a burst are not left sleeping through an idle row. Without meter data it is plain full
// jitter. Measured in docs/backoff.md (Brooker's simulation): fewer writes than full jitter and
// no slower from 10 clients up; slower at 2 and 5.
//
// load_tracking is full jitter (base 10 ms, cap 1 s) whose window, from the second retry on, is
// steered by the row's commit load as the contention_meter samples it after each refusal: the
// load l_i of a sample is (commits between this client's last two reads) * w / (time between
// those reads), capped at contention_meter::max_load. Each sample above the target 0.6 widens
// the window by e^(k * (l_i - 0.6)) (k = 3.7), each below narrows it: a crowd that keeps the row
// committing back to back spreads out, a row gone quiet is retried sooner. The window starts at
// 5 * base for the second retry and stays within [base, cap]. Without meter data it is plain full
// jitter. docs/backoff.md: never slower than full jitter at 2 to 100 clients, 0.75x its writes at
// 100 and 0.81x at 50 — and why no schedule gets to 0.7x at small crowds.
//
// Guarantees: no overflow or undefined behaviour at any retry number (1 … UINT_MAX) or duration
// (up to nanoseconds::max()); every delay lies in [0, cap]. A policy that makes no sense (base <= 0,
// cap < base, multiplier < 1 or not finite) is rejected by its factory with std::invalid_argument
// naming the bad value, so a `backoff_policy` that exists is always valid.
//
// Determinism: random draws use only the raw output of the generator you pass (never
// std::uniform_int_distribution, whose results differ between standard libraries), so a seeded
// engine gives the same delays on every platform. Tests pin exact sequences.
//
// Thread safety: a backoff_policy is an immutable value; `delay` is const and touches only the
// generator you pass (which must not be shared between threads without your own locking).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>

#include "noclobber/duration.hpp"

namespace noclobber {

/// The schedules backoff_policy knows.
enum class backoff_kind : unsigned char {
  immediate,
  exponential,
  full_jitter,
  equal_jitter,
  decorrelated_jitter,
  commit_rate,
  load_tracking,
};

[[nodiscard]] constexpr std::string_view to_string(backoff_kind k) noexcept {
  switch (k) {
    case backoff_kind::immediate:
      return "immediate";
    case backoff_kind::exponential:
      return "exponential";
    case backoff_kind::full_jitter:
      return "full_jitter";
    case backoff_kind::equal_jitter:
      return "equal_jitter";
    case backoff_kind::decorrelated_jitter:
      return "decorrelated_jitter";
    case backoff_kind::commit_rate:
      return "commit_rate";
    case backoff_kind::load_tracking:
      return "load_tracking";
  }
  return "unknown";
}

/// True for the schedules that read a contention_meter (the driver must feed it and time attempts).
[[nodiscard]] constexpr bool reads_meter(backoff_kind k) noexcept {
  return k == backoff_kind::commit_rate || k == backoff_kind::load_tracking;
}

namespace detail {

/// 64 uniformly random bits built from raw generator output only (portable and deterministic).
/// Generators whose range is not a power of two are cut down to the largest power of two below
/// it by rejection.
template <std::uniform_random_bit_generator G>
std::uint64_t random_u64(G& g) {
  using result_t = typename G::result_type;
  constexpr std::uint64_t range = static_cast<std::uint64_t>(G::max() - G::min());
  if constexpr (range == std::numeric_limits<std::uint64_t>::max()) {
    return static_cast<std::uint64_t>(static_cast<result_t>(g() - G::min()));
  } else {
    // Largest k with 2^k - 1 <= range.
    constexpr int bits = [] {
      int b = 0;
      while (b < 63 && ((std::uint64_t{1} << (b + 1)) - 1) <= range) ++b;
      return b;
    }();
    static_assert(bits >= 1, "noclobber: the random generator must produce at least one bit");
    constexpr std::uint64_t mask = (std::uint64_t{1} << bits) - 1;
    std::uint64_t out = 0;
    int have = 0;
    while (have < 64) {
      std::uint64_t v = static_cast<std::uint64_t>(g() - G::min());
      if (v > mask) continue;  // rejection keeps the chunk uniform
      out = (have == 0) ? v : ((out << bits) | v);
      have += bits;
    }
    return out;
  }
}

/// Uniform integer in [0, n], unbiased (rejection on the 2^64 mod (n+1) low values).
template <std::uniform_random_bit_generator G>
std::uint64_t uniform_0_to(G& g, std::uint64_t n) {
  if (n == 0) return 0;
  if (n == std::numeric_limits<std::uint64_t>::max()) return random_u64(g);
  const std::uint64_t m = n + 1;
  const std::uint64_t threshold = (0 - m) % m;  // 2^64 mod m
  for (;;) {
    const std::uint64_t r = random_u64(g);
    if (r >= threshold) return r % m;
  }
}

/// min(limit, x) for a non-negative double x, as an integer count; NaN and infinity give limit.
inline std::int64_t clamp_to(double x, std::int64_t limit) noexcept {
  if (!(x < static_cast<double>(limit))) return limit;  // also catches NaN and +inf
  if (x <= 0) return 0;
  const auto v = static_cast<std::int64_t>(x);  // x < 2^63 here, so this is defined
  return v < limit ? v : limit;
}

inline std::string describe(std::chrono::nanoseconds d) {
  return std::to_string(d.count()) + "ns";
}

}  // namespace detail

/// What a retry loop has seen of a row's contention, for backoff_policy::commit_rate and
/// load_tracking. One meter per operation (per retry loop); plain state, no clock: the caller
/// passes times as durations since any fixed epoch of its own clock. Not thread-safe.
///
///   meter.observe(version_read, read_returned_at, refusal_arrived_at);   // after each refusal
///
/// Versions must be ordinal (a version column, etcd mod_revision, a counter): the meter only uses
/// differences between successive reads. A version that goes backwards counts as no commits.
class contention_meter {
 public:
  using duration = std::chrono::nanoseconds;

  /// Records the version an attempt read, before its outcome is known (the attempt calls this;
  /// the driver, which owns the clock, then calls on_refused).
  void note_read(std::uint64_t version) noexcept {
    pending_version_ = version;
    has_pending_ = true;
  }

  /// The attempt that called note_read was refused: its read returned at `read_at` and the
  /// refusal arrived at `refused_at`. Does nothing when no version was noted.
  void on_refused(duration read_at, duration refused_at) noexcept {
    if (!has_pending_) return;
    has_pending_ = false;
    observe(pending_version_, read_at, refused_at);
  }

  /// note_read + on_refused in one call.
  void observe(std::uint64_t version_read, duration read_at, duration refused_at) noexcept {
    window_ = refused_at > read_at ? saturating_sub(refused_at, read_at) : duration::zero();
    if (samples_ > 0 && read_at > previous_read_at_) {
      const double commits =
          version_read > previous_version_ ? static_cast<double>(version_read - previous_version_) : 0.0;
      const double elapsed = static_cast<double>(saturating_sub(read_at, previous_read_at_).count());
      double b = commits * static_cast<double>(window_.count()) / elapsed;
      add_load_sample(b);
      if (!(b < max_busy)) b = max_busy;  // also catches NaN
      busy_ = busy_ < 0 ? b : 0.5 * busy_ + 0.5 * b;
    }
    previous_version_ = version_read;
    previous_read_at_ = read_at;
    ++samples_;
  }

  /// Estimated share of time the row spends committing, in [0, 0.8]; negative until two
  /// refusals have been observed.
  [[nodiscard]] double busy() const noexcept { return busy_; }
  /// The last observed time from a read returning to its refusal arriving.
  [[nodiscard]] duration window() const noexcept { return window_; }
  [[nodiscard]] unsigned samples() const noexcept { return samples_; }
  /// The load samples so far (one per refusal from the second on, each the raw busy sample —
  /// commits between the last two reads * window / time between them — capped at max_load) and
  /// their sum. load_tracking's window follows the sum.
  [[nodiscard]] unsigned load_samples() const noexcept { return load_samples_; }
  [[nodiscard]] double load_sum() const noexcept { return load_sum_; }

  static constexpr double max_busy = 0.8;
  static constexpr double max_load = 1.0;

 private:
  std::uint64_t pending_version_ = 0;
  std::uint64_t previous_version_ = 0;
  duration previous_read_at_{0};
  duration window_{0};
  double busy_ = -1.0;
  double load_sum_ = 0.0;
  unsigned samples_ = 0;
  unsigned load_samples_ = 0;
  bool has_pending_ = false;

  void add_load_sample(double b) noexcept {
    load_sum_ += b < max_load ? b : max_load;  // NaN (never produced) would count as max_load
    ++load_samples_;
  }
};

/// An immutable, validated backoff schedule. Cheap to copy (32 bytes). The factories take any
/// std::chrono duration for base and cap without overflow (saturating_ns): a cap of hours::max()
/// means "no cap" (nanoseconds::max()), never a negative value.
class backoff_policy {
 public:
  using duration = std::chrono::nanoseconds;

  /// No delay at all. (Retrying a contended row immediately is the "no backoff" baseline.)
  [[nodiscard]] static backoff_policy immediate() noexcept { return backoff_policy(); }

  /// t(n) = min(cap, base * multiplier^(n-1)), no jitter.
  [[nodiscard]] static backoff_policy exponential(saturating_ns base, saturating_ns cap,
                                                  double multiplier = 2.0) {
    return make(backoff_kind::exponential, base, cap, multiplier);
  }
  /// uniform[0, t(n)]: Brooker's recommended default.
  [[nodiscard]] static backoff_policy full_jitter(saturating_ns base, saturating_ns cap,
                                                  double multiplier = 2.0) {
    return make(backoff_kind::full_jitter, base, cap, multiplier);
  }
  /// t(n)/2 + uniform[0, t(n)/2]: never shorter than half the exponential delay.
  [[nodiscard]] static backoff_policy equal_jitter(saturating_ns base, saturating_ns cap,
                                                   double multiplier = 2.0) {
    return make(backoff_kind::equal_jitter, base, cap, multiplier);
  }
  /// min(cap, uniform[base, multiplier * previous]): grows from the previous delay, not the count.
  [[nodiscard]] static backoff_policy decorrelated_jitter(saturating_ns base, saturating_ns cap,
                                                          double multiplier = 3.0) {
    return make(backoff_kind::decorrelated_jitter, base, cap, multiplier);
  }
  /// Full jitter whose window also shrinks to about 1.5w / (1 - busy)^2 when the contention_meter
  /// shows a quiet row (see the overview). Defaults tuned in Brooker's simulation.
  [[nodiscard]] static backoff_policy commit_rate(saturating_ns base = std::chrono::milliseconds(30),
                                                  saturating_ns cap = std::chrono::seconds(1),
                                                  double multiplier = 3.0) {
    return make(backoff_kind::commit_rate, base, cap, multiplier);
  }
  /// Full jitter (multiplier 2) whose window from the second retry on follows the row's commit
  /// load as the contention_meter samples it (see the overview); plain full jitter without meter
  /// data. Defaults tuned in Brooker's simulation (docs/backoff.md).
  [[nodiscard]] static backoff_policy load_tracking(saturating_ns base = std::chrono::milliseconds(10),
                                                    saturating_ns cap = std::chrono::seconds(1)) {
    return make(backoff_kind::load_tracking, base, cap, 2.0);
  }

  /// load_tracking's constants: the second retry's window is load_second_window * base before the
  /// load adjusts it; each load sample l multiplies the window by e^(load_gain * (l - load_target)).
  static constexpr double load_second_window = 5.0;
  static constexpr double load_gain = 3.7;
  static constexpr double load_target = 0.6;

  /// The delay before retry `retry` (1 = the first retry). `previous` is the delay returned for
  /// the retry before (0 before the first); only decorrelated jitter uses it, and treats anything
  /// below `base` as `base`. Throws std::invalid_argument when retry == 0 or previous < 0.
  template <std::uniform_random_bit_generator G>
  [[nodiscard]] duration delay(unsigned retry, duration previous, G& rng) const {
    if (retry == 0)
      throw std::invalid_argument("noclobber::backoff_policy::delay: retry must be >= 1, got 0");
    if (previous < duration::zero()) {
      throw std::invalid_argument("noclobber::backoff_policy::delay: previous must be >= 0, got " +
                                  detail::describe(previous));
    }
    switch (kind_) {
      case backoff_kind::immediate:
        return duration::zero();
      case backoff_kind::exponential:
        return ceiling(retry);
      case backoff_kind::full_jitter:
      case backoff_kind::commit_rate:
      case backoff_kind::load_tracking: {
        const duration t = ceiling(retry);
        return duration(
            static_cast<std::int64_t>(detail::uniform_0_to(rng, static_cast<std::uint64_t>(t.count()))));
      }
      case backoff_kind::equal_jitter: {
        const std::int64_t t = ceiling(retry).count();
        const std::int64_t half = t / 2;
        return duration(half + static_cast<std::int64_t>(
                                   detail::uniform_0_to(rng, static_cast<std::uint64_t>(t - half))));
      }
      case backoff_kind::decorrelated_jitter: {
        const std::int64_t prev = previous < base_ ? base_.count() : previous.count();
        const std::int64_t hi = detail::clamp_to(static_cast<double>(prev) * multiplier_,
                                                 std::numeric_limits<std::int64_t>::max());
        const std::int64_t lo = base_.count();
        const std::int64_t span = hi > lo ? hi - lo : 0;
        const std::int64_t v =
            lo + static_cast<std::int64_t>(detail::uniform_0_to(rng, static_cast<std::uint64_t>(span)));
        return duration(v < cap_.count() ? v : cap_.count());
      }
    }
    return duration::zero();
  }

  /// The same, using what `meter` has seen; only commit_rate and load_tracking read it, the other
  /// kinds ignore it.
  template <std::uniform_random_bit_generator G>
  [[nodiscard]] duration delay(unsigned retry, duration previous, const contention_meter& meter,
                               G& rng) const {
    if (kind_ == backoff_kind::load_tracking && meter.load_samples() > 0 && retry > 1 &&
        previous >= duration::zero()) {
      return duration(static_cast<std::int64_t>(
          detail::uniform_0_to(rng, static_cast<std::uint64_t>(load_window(meter).count()))));
    }
    if (kind_ != backoff_kind::commit_rate || meter.busy() < 0 || retry == 0 || previous < duration::zero()) {
      return delay(retry, previous, rng);  // (which also rejects bad arguments)
    }
    const double quiet = 1.0 - meter.busy();  // in [0.2, 1]
    const std::int64_t sized =
        detail::clamp_to(1.5 * static_cast<double>(meter.window().count()) / (quiet * quiet),
                         std::numeric_limits<std::int64_t>::max());
    const std::int64_t t = std::min(ceiling(retry).count(), sized);
    return duration(static_cast<std::int64_t>(detail::uniform_0_to(rng, static_cast<std::uint64_t>(t))));
  }

  /// load_tracking's window for what `meter` has seen: clamp(load_second_window * base *
  /// e^(load_gain * (load_sum - load_samples * load_target)), base, cap). base for other kinds.
  [[nodiscard]] duration load_window(const contention_meter& meter) const noexcept {
    if (kind_ != backoff_kind::load_tracking) return base_;
    const double excess = meter.load_sum() - static_cast<double>(meter.load_samples()) * load_target;
    // exp overflows to +inf and underflows to 0; clamp_to maps +inf (and NaN) to cap.
    const double window =
        load_second_window * static_cast<double>(base_.count()) * std::exp(load_gain * excess);
    return std::max(base_, duration(detail::clamp_to(window, cap_.count())));
  }

  /// The un-jittered ceiling min(cap, base * multiplier^(retry-1)); 0 for immediate.
  [[nodiscard]] duration ceiling(unsigned retry) const noexcept {
    if (kind_ == backoff_kind::immediate) return duration::zero();
    if (retry <= 1) return base_;
    // pow overflows to +inf for large exponents; clamp_to maps that (and anything >= cap) to cap.
    // A base above 2^53 ns rounds down as a double: never answer less than base (t(1)).
    const double grown =
        static_cast<double>(base_.count()) * std::pow(multiplier_, static_cast<double>(retry - 1));
    return std::max(base_, duration(detail::clamp_to(grown, cap_.count())));
  }

  [[nodiscard]] backoff_kind kind() const noexcept { return kind_; }
  [[nodiscard]] duration base() const noexcept { return base_; }
  [[nodiscard]] duration cap() const noexcept { return cap_; }
  [[nodiscard]] double multiplier() const noexcept { return multiplier_; }

  friend bool operator==(const backoff_policy&, const backoff_policy&) = default;

 private:
  backoff_policy() noexcept = default;

  [[noreturn]] static void reject(backoff_kind kind, const std::string& what) {
    throw std::invalid_argument("noclobber::backoff_policy::" + std::string(to_string(kind)) + ": " + what);
  }

  static backoff_policy make(backoff_kind kind, duration base, duration cap, double multiplier) {
    // Messages are built only on failure: a valid policy costs no allocation.
    if (base <= duration::zero()) reject(kind, "base must be positive, got " + detail::describe(base));
    if (cap < base) {
      reject(kind,
             "cap must be >= base, got cap " + detail::describe(cap) + " < base " + detail::describe(base));
    }
    if (!std::isfinite(multiplier) || multiplier < 1.0) {
      reject(kind, "multiplier must be finite and >= 1, got " + std::to_string(multiplier));
    }
    backoff_policy p;
    p.kind_ = kind;
    p.base_ = base;
    p.cap_ = cap;
    p.multiplier_ = multiplier;
    return p;
  }

  backoff_kind kind_ = backoff_kind::immediate;
  duration base_{0};
  duration cap_{0};
  double multiplier_ = 1.0;
};

}  // namespace noclobber
