// Fuzz target: noclobber/duration.hpp against references computed in __int128 (integer
// representations) and long double (floating-point ones).
//
//   saturating_cast_ns   for 14 periods (pico … years, giga, and odd ratios) and 8 representations
//                        (signed, unsigned, 8 to 64 bits, float, double, long double): the exact
//                        value truncated toward zero, clamped to [nanoseconds::min(), max()]
//   saturating_add/sub   the exact sum / difference, clamped
//   saturating_deadline  for clocks counting in ns, us and s: now + d rounded up to the clock's
//                        tick, clamped to its time_point range; d = max() gives time_point::max()
//   saturating_ns        converts in like saturating_cast_ns, out unchanged, compares like counts
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ratio>
#include <string>
#include <type_traits>
#include <typeinfo>

#include "fuzz_support.hpp"
#include "noclobber/duration.hpp"

namespace {

using i128 = __int128;
using ns = std::chrono::nanoseconds;
constexpr i128 ns_max = std::numeric_limits<std::int64_t>::max();
constexpr i128 ns_min = std::numeric_limits<std::int64_t>::min();

using nc_fuzz::num;

i128 clamp_ns(i128 v) {
  return v > ns_max ? ns_max : v < ns_min ? ns_min : v;
}

template <class Rep>
Rep rep_from(nc_fuzz::reader& in) {
  if constexpr (std::is_floating_point_v<Rep>) {
    switch (in.u8() % 4) {
      case 0:
        return static_cast<Rep>(in.edgy_i64());
      case 1:
        return static_cast<Rep>(in.edgy_i64()) / static_cast<Rep>(1 + in.u16());
      default: {
        const double d = in.f64();
        return static_cast<Rep>(d);  // inf, NaN, subnormals, huge values included
      }
    }
  } else {
    const std::int64_t e = in.edgy_i64();
    switch (in.u8() % 4) {
      case 0:
        return std::numeric_limits<Rep>::max() - static_cast<Rep>(in.u8() % 4);
      case 1:
        return std::numeric_limits<Rep>::min() + static_cast<Rep>(in.u8() % 4);
      default: {
        Rep r;
        using U = std::make_unsigned_t<Rep>;
        const U u = static_cast<U>(static_cast<std::uint64_t>(e));
        std::memcpy(&r, &u, sizeof r);
        return r;
      }
    }
  }
}

template <class Rep, class Period>
void check_cast(nc_fuzz::reader& in) {
  using d_t = std::chrono::duration<Rep, Period>;
  using ratio = std::ratio_divide<Period, std::nano>;  // nanoseconds per tick
  const Rep count = rep_from<Rep>(in);
  const ns got = noclobber::saturating_cast_ns(d_t(count));
  const noclobber::saturating_ns wrapped = d_t(count);  // the implicit conversion, same answer
  NC_FUZZ_CHECK(wrapped.get() == got && wrapped.count() == got.count(),
                "saturating_ns differs from the cast");
  NC_FUZZ_CHECK(wrapped.is_max() == (got == ns::max()), "is_max");
  const std::string what = std::string(typeid(Rep).name()) + " count " +
                           (std::is_floating_point_v<Rep> ? std::to_string(static_cast<long double>(count))
                                                          : num(static_cast<i128>(count))) +
                           " × " + num(ratio::num) + "/" + num(ratio::den) + " ns -> " + num(got.count());
  if constexpr (std::is_floating_point_v<Rep>) {
    const long double v = static_cast<long double>(count) * static_cast<long double>(ratio::num) /
                          static_cast<long double>(ratio::den);
    if (std::isnan(v)) {
      NC_FUZZ_CHECK(got == ns::max(), "NaN must give max(): " + what);
      return;
    }
    if (v >= 9.3e18L) {
      NC_FUZZ_CHECK(got == ns::max(), "above the range must give max(): " + what);
      return;
    }
    if (v <= -9.3e18L) {
      NC_FUZZ_CHECK(got == ns::min(), "below the range must give min(): " + what);
      return;
    }
    const long double truncated = std::trunc(v);
    const long double tolerance = 1 + std::fabs(v) * 0x1p-62L;
    const long double clamped =
        truncated > static_cast<long double>(ns_max)   ? static_cast<long double>(ns_max)
        : truncated < static_cast<long double>(ns_min) ? static_cast<long double>(ns_min)
                                                       : truncated;
    NC_FUZZ_CHECK(std::fabs(static_cast<long double>(got.count()) - clamped) <= tolerance, what);
    // Truncation toward zero: never further from zero than the exact value.
    if (v >= 0) NC_FUZZ_CHECK(got.count() >= 0, "sign: " + what);
    if (v <= 0) NC_FUZZ_CHECK(got.count() <= 0, "sign: " + what);
  } else {
    // Exact: count × num / den, truncated toward zero (C++ integer division), then clamped.
    const i128 exact =
        static_cast<i128>(count) * static_cast<i128>(ratio::num) / static_cast<i128>(ratio::den);
    NC_FUZZ_CHECK(static_cast<i128>(got.count()) == clamp_ns(exact),
                  what + ", expected " + num(clamp_ns(exact)));
  }
}

template <class Rep>
void cast_with_rep(nc_fuzz::reader& in) {
  switch (in.u8() % 17) {
    case 0:
      return check_cast<Rep, std::nano>(in);
    case 1:
      return check_cast<Rep, std::pico>(in);
    case 2:
      return check_cast<Rep, std::atto>(in);
    case 3:
      return check_cast<Rep, std::micro>(in);
    case 4:
      return check_cast<Rep, std::milli>(in);
    case 5:
      return check_cast<Rep, std::ratio<1>>(in);
    case 6:
      return check_cast<Rep, std::ratio<60>>(in);
    case 7:
      return check_cast<Rep, std::ratio<3600>>(in);
    case 8:
      return check_cast<Rep, std::ratio<86400>>(in);
    case 9:
      return check_cast<Rep, std::ratio<31556952>>(in);  // std::chrono::years
    case 10:
      return check_cast<Rep, std::giga>(in);
    case 11:
      return check_cast<Rep, std::ratio<1, 3>>(in);
    case 12:
      return check_cast<Rep, std::ratio<7, 3>>(in);
    case 13:
      return check_cast<Rep, std::ratio<1000, 7>>(in);
    case 14:
      return check_cast<Rep, std::ratio<1, 1'000'000'007>>(in);  // den larger than a nanosecond's
    case 15:
      return check_cast<Rep, std::ratio<10, 1'000'000'007>>(in);  // not a std period: ~10 ns, odd den
    default:
      return check_cast<Rep, std::ratio<2629746>>(in);  // std::chrono::months
  }
}

void fuzz_cast(nc_fuzz::reader& in) {
  switch (in.u8() % 9) {
    case 0:
      return cast_with_rep<std::int64_t>(in);
    case 1:
      return cast_with_rep<std::int32_t>(in);
    case 2:
      return cast_with_rep<std::int8_t>(in);
    case 3:
      return cast_with_rep<std::uint64_t>(in);
    case 4:
      return cast_with_rep<std::uint32_t>(in);
    case 5:
      return cast_with_rep<float>(in);
    case 6:
      return cast_with_rep<double>(in);
    case 7:
      return cast_with_rep<long double>(in);
    default:
      return cast_with_rep<std::uint16_t>(in);
  }
}

void fuzz_add(nc_fuzz::reader& in) {
  const ns a(in.edgy_i64()), b(in.edgy_i64());
  const ns got = noclobber::saturating_add(a, b);
  const i128 expect = clamp_ns(static_cast<i128>(a.count()) + b.count());
  NC_FUZZ_CHECK(got.count() == expect, num(a.count()) + " + " + num(b.count()) + " = " + num(got.count()));
  const ns diff = noclobber::saturating_sub(a, b);
  const i128 expect_diff = clamp_ns(static_cast<i128>(a.count()) - b.count());
  NC_FUZZ_CHECK(diff.count() == expect_diff,
                num(a.count()) + " - " + num(b.count()) + " = " + num(diff.count()));
  const noclobber::saturating_ns x = a, y = b;
  NC_FUZZ_CHECK((x < y) == (a < b) && (x == y) == (a == b), "saturating_ns comparisons");
  const ns back = x;
  NC_FUZZ_CHECK(back == a, "saturating_ns round trip");
}

/// A clock counting in Duration from an arbitrary epoch (only its types matter here).
template <class Duration>
struct test_clock {
  using duration = Duration;
  using rep = typename Duration::rep;
  using period = typename Duration::period;
  using time_point = std::chrono::time_point<test_clock>;
  static constexpr bool is_steady = true;
  static time_point now() noexcept { return time_point(); }
};

template <class Clock>
void check_deadline(nc_fuzz::reader& in) {
  using tp = typename Clock::time_point;
  using cd = typename Clock::duration;
  using ratio = std::ratio_divide<typename cd::period, std::nano>;
  static_assert(ratio::den == 1, "clocks here tick in whole nanoseconds");
  const tp now{cd(in.edgy_i64())};
  const ns d = in.u8() % 16 == 0 ? ns::max() : ns(in.edgy_i64());
  const tp got = noclobber::saturating_deadline<Clock>(now, d);
  const std::string what = "now " + num(now.time_since_epoch().count()) + " ticks of " + num(ratio::num) +
                           " ns, d " + num(d.count()) + " -> " + num(got.time_since_epoch().count());
  if (d == ns::max()) {
    NC_FUZZ_CHECK(got == tp::max(), "d = max() must give time_point::max(): " + what);
    return;
  }
  // Exact: the target in nanoseconds, then rounded up to a tick, clamped to the clock's range.
  const i128 tick = ratio::num;
  const i128 target = static_cast<i128>(now.time_since_epoch().count()) * tick + d.count();
  const i128 max_ns = static_cast<i128>(tp::max().time_since_epoch().count()) * tick;
  const i128 min_ns = static_cast<i128>(tp::min().time_since_epoch().count()) * tick;
  i128 expect_ticks;
  if (target >= max_ns) {
    expect_ticks = tp::max().time_since_epoch().count();
  } else if (target <= min_ns) {
    expect_ticks = tp::min().time_since_epoch().count();
  } else {
    expect_ticks = target / tick;
    if (expect_ticks * tick < target) ++expect_ticks;  // ceil
  }
  NC_FUZZ_CHECK(static_cast<i128>(got.time_since_epoch().count()) == expect_ticks,
                what + ", expected " + num(expect_ticks));
}

void fuzz_deadline(nc_fuzz::reader& in) {
  switch (in.u8() % 5) {
    case 0:
      return check_deadline<std::chrono::steady_clock>(in);
    case 1:
      return check_deadline<std::chrono::system_clock>(in);
    case 2:
      return check_deadline<test_clock<std::chrono::microseconds>>(in);
    case 3:
      return check_deadline<test_clock<std::chrono::seconds>>(in);
    default:
      return check_deadline<test_clock<std::chrono::duration<std::int32_t, std::milli>>>(in);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nc_fuzz::reader in(data, size);
  while (!in.empty()) {
    switch (in.u8() % 3) {
      case 0:
        fuzz_cast(in);
        break;
      case 1:
        fuzz_add(in);
        break;
      default:
        fuzz_deadline(in);
    }
  }
  return 0;
}
