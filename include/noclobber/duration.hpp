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
  if constexpr (std::is_floating_point_v<Rep>) {
    const long double v = static_cast<long double>(d.count()) * static_cast<long double>(ratio::num) /
                          static_cast<long double>(ratio::den);
    if (!(v < static_cast<long double>(ns::max().count()))) return ns::max();  // also NaN, +inf
    if (!(v > static_cast<long double>(ns::min().count()))) return ns::min();
    return ns(static_cast<std::int64_t>(v));
  } else if constexpr (ratio::num == 1) {
    // At most one nanosecond per tick: dividing cannot overflow (unless Rep is wider than 64 bits).
    const auto q = d.count() / static_cast<Rep>(ratio::den);
    if constexpr (sizeof(Rep) > sizeof(std::int64_t)) {
      if (q > static_cast<Rep>(ns::max().count())) return ns::max();
      if (q < static_cast<Rep>(ns::min().count())) return ns::min();
    }
    return ns(static_cast<std::int64_t>(q));
  } else {
    static_assert(ratio::den == 1 || ratio::num > 1, "unreachable");
    // Whole ticks first (exact), then the remainder; limits computed in ticks, so no overflow.
    constexpr std::intmax_t num = ratio::num;
    constexpr std::intmax_t den = ratio::den;
    const std::intmax_t ticks = static_cast<std::intmax_t>(d.count());
    const std::intmax_t whole = ticks / den;  // ticks of `num` nanoseconds
    if (whole > ns::max().count() / num) return ns::max();
    if (whole < ns::min().count() / num) return ns::min();
    const std::intmax_t rest = (ticks % den) * num / den;  // |ticks % den| < den: no overflow for
                                                           // the ratios std::chrono defines
    const std::intmax_t base = whole * num;
    if (rest > 0 && base > ns::max().count() - rest) return ns::max();
    if (rest < 0 && base < ns::min().count() - rest) return ns::min();
    return ns(static_cast<std::int64_t>(base + rest));
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

/// `now + d` on `Clock`, clamped to the clock's time_point range (d = nanoseconds::max() gives
/// time_point::max(): "never").
template <class Clock>
[[nodiscard]] constexpr typename Clock::time_point saturating_deadline(typename Clock::time_point now,
                                                                       std::chrono::nanoseconds d) noexcept {
  using tp = typename Clock::time_point;
  using cd = typename Clock::duration;
  const auto target = saturating_add(saturating_cast_ns(now.time_since_epoch()), d);
  if (target >= saturating_cast_ns(tp::max().time_since_epoch())) return tp::max();
  if (target <= saturating_cast_ns(tp::min().time_since_epoch())) return tp::min();
  return tp(std::chrono::ceil<cd>(target));
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
