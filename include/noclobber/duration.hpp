// noclobber/duration.hpp — durations that never overflow on their way into noclobber.
//
// Overview
// --------
// `std::chrono` converts `hours::max()` to nanoseconds by multiplying, which overflows (undefined
// behaviour, in practice a negative value). Every timeout, cap and lease in noclobber is stored
// in nanoseconds, so it takes its argument through the saturating conversions here instead: a
// duration past the range of nanoseconds becomes `nanoseconds::max()` (which every option that
// documents it reads as "none" / "no limit") or `nanoseconds::min()`.
//
//   noclobber::retry_policy p;
//   p.timeout = std::chrono::hours::max();        // no deadline, not a negative one
//   noclobber::saturating_cast_ns(std::chrono::seconds::max()) == std::chrono::nanoseconds::max()
//
// `saturating_ns` is the field type for such options: any std::chrono::duration converts to it
// implicitly, and it converts back to std::chrono::nanoseconds. Floating-point durations are
// accepted too; NaN becomes max().
//
// Thread safety: plain values and pure functions.
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <limits>
#include <ratio>
#include <type_traits>

namespace noclobber {

/// `d` in nanoseconds, clamped to [nanoseconds::min(), nanoseconds::max()] instead of overflowing.
/// Sub-nanosecond parts are truncated toward zero, as duration_cast does.
template <class Rep, class Period>
[[nodiscard]] constexpr std::chrono::nanoseconds saturating_cast_ns(
    std::chrono::duration<Rep, Period> d) noexcept {
  using ns = std::chrono::nanoseconds;
  using ratio = std::ratio_divide<Period, std::nano>;  // nanoseconds per tick of d
  if constexpr (std::is_floating_point_v<Rep> || sizeof(Rep) > sizeof(std::intmax_t)) {
    // Floating point, and integers wider than 64 bits (exact up to 2^64 ticks): in long double.
    const long double v = static_cast<long double>(d.count()) * static_cast<long double>(ratio::num) /
                          static_cast<long double>(ratio::den);
    if (!(v < static_cast<long double>(ns::max().count()))) return ns::max();  // also NaN, +inf
    if (!(v > static_cast<long double>(ns::min().count()))) return ns::min();
    return ns(static_cast<std::int64_t>(v));
  } else {
    // Integers up to 64 bits, signed or not: the magnitude in 64 unsigned bits, whole ticks
    // first (exact), then the remainder; limits computed in ticks, so nothing overflows.
    // (Converting to a signed 64-bit count first would wrap unsigned counts past 2^63, and
    // dividing in Rep would truncate a den that Rep cannot hold.)
    using wide = std::common_type_t<Rep, std::intmax_t>;
    using mag_t = std::make_unsigned_t<wide>;
    constexpr mag_t num = static_cast<mag_t>(ratio::num);
    constexpr mag_t den = static_cast<mag_t>(ratio::den);
    static_assert(den - 1 <= std::numeric_limits<mag_t>::max() / num,
                  "noclobber::saturating_cast_ns: this period's ratio to a nanosecond is too fine-grained");
    const wide count = static_cast<wide>(d.count());
    bool negative = false;
    if constexpr (std::is_signed_v<wide>) negative = count < 0;
    const mag_t mag = negative ? mag_t(0) - static_cast<mag_t>(count) : static_cast<mag_t>(count);
    // The largest magnitude nanoseconds can hold in this direction: 2^63 - 1, or 2^63 below zero.
    const mag_t limit = static_cast<mag_t>(ns::max().count()) + (negative ? 1 : 0);
    const mag_t whole = mag / den;
    if (whole > limit / num) return negative ? ns::min() : ns::max();
    const mag_t base = whole * num;
    const mag_t rest = (mag % den) * num / den;  // < num, and (den - 1) * num fits (checked above)
    if (rest > limit - base) return negative ? ns::min() : ns::max();
    const mag_t total = base + rest;
    if (!negative) return ns(static_cast<std::int64_t>(total));
    return total == 0 ? ns(0) : ns(-static_cast<std::int64_t>(total - 1) - 1);  // total <= 2^63
  }
}

/// a + b in nanoseconds, clamped to the representable range.
[[nodiscard]] constexpr std::chrono::nanoseconds saturating_add(std::chrono::nanoseconds a,
                                                                std::chrono::nanoseconds b) noexcept {
  using ns = std::chrono::nanoseconds;
  if (b > ns::zero() && a > ns::max() - b) return ns::max();
  if (b < ns::zero() && a < ns::min() - b) return ns::min();
  return a + b;
}

/// a - b in nanoseconds, clamped to the representable range.
[[nodiscard]] constexpr std::chrono::nanoseconds saturating_sub(std::chrono::nanoseconds a,
                                                                std::chrono::nanoseconds b) noexcept {
  using ns = std::chrono::nanoseconds;
  if (b < ns::zero() && a > ns::max() + b) return ns::max();
  if (b > ns::zero() && a < ns::min() + b) return ns::min();
  return a - b;
}

/// `now + d` on `Clock`, rounded up to the clock's tick and clamped to its time_point range
/// (d = nanoseconds::max() gives time_point::max(): "never").
template <class Clock>
[[nodiscard]] constexpr typename Clock::time_point saturating_deadline(typename Clock::time_point now,
                                                                       std::chrono::nanoseconds d) noexcept {
  using tp = typename Clock::time_point;
  using cd = typename Clock::duration;
  using rep = typename cd::rep;
  using tick = std::ratio_divide<typename cd::period, std::nano>;  // nanoseconds per tick
  if (d == std::chrono::nanoseconds::max()) return tp::max();      // "never", whatever `now` is
  if constexpr (tick::den == 1 && std::is_integral_v<rep> && std::is_signed_v<rep> &&
                sizeof(rep) <= sizeof(std::intmax_t)) {
    // Whole nanoseconds per tick (every usual clock): add in the clock's own ticks, so a `now`
    // beyond the range of nanoseconds (a coarse clock far from its epoch) stays exact.
    constexpr std::intmax_t ns_per_tick = tick::num;
    std::intmax_t step = d.count() / ns_per_tick;
    if (step * ns_per_tick < d.count()) ++step;  // round up
    const std::intmax_t t = now.time_since_epoch().count();
    const std::intmax_t hi = tp::max().time_since_epoch().count();
    const std::intmax_t lo = tp::min().time_since_epoch().count();
    if (step > 0 && t > hi - step) return tp::max();
    if (step < 0 && t < lo - step) return tp::min();
    return tp(cd(static_cast<rep>(t + step)));
  } else {
    const auto target = saturating_add(saturating_cast_ns(now.time_since_epoch()), d);
    if (target >= saturating_cast_ns(tp::max().time_since_epoch())) return tp::max();
    if (target <= saturating_cast_ns(tp::min().time_since_epoch())) return tp::min();
    return tp(std::chrono::ceil<cd>(target));
  }
}

/// A nanosecond count any std::chrono::duration converts to without overflow (see the overview):
/// the type of noclobber's timeout, cap and lease options.
class saturating_ns {
 public:
  constexpr saturating_ns() noexcept = default;
  template <class Rep, class Period>
  constexpr saturating_ns(std::chrono::duration<Rep, Period> d) noexcept  // NOLINT: implicit by design
      : ns_(saturating_cast_ns(d)) {}

  constexpr operator std::chrono::nanoseconds() const noexcept { return ns_; }  // NOLINT: implicit
  [[nodiscard]] constexpr std::chrono::nanoseconds get() const noexcept { return ns_; }
  [[nodiscard]] constexpr std::int64_t count() const noexcept { return ns_.count(); }
  /// True for nanoseconds::max(), the value options read as "none" / "no limit".
  [[nodiscard]] constexpr bool is_max() const noexcept { return ns_ == std::chrono::nanoseconds::max(); }

  friend constexpr bool operator==(saturating_ns, saturating_ns) noexcept = default;
  friend constexpr auto operator<=>(saturating_ns, saturating_ns) noexcept = default;

 private:
  std::chrono::nanoseconds ns_{0};
};

}  // namespace noclobber
