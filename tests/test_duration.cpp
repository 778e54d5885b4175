#include <catch2/catch.hpp>

#include <chrono>
#include <limits>
#include <ratio>

#include "noclobber/duration.hpp"

using namespace std::chrono;
using noclobber::saturating_cast_ns;

// Compile-time: the conversions are constexpr and exact where std::chrono is exact.
static_assert(saturating_cast_ns(seconds(3)) == nanoseconds(3'000'000'000));
static_assert(saturating_cast_ns(duration<long long, std::pico>(1999)) == nanoseconds(1));
static_assert(saturating_cast_ns(duration<long long, std::ratio<1, 3>>(4)) == nanoseconds(1'333'333'333));

TEST_CASE("saturating_cast_ns clamps what std::chrono would overflow") {
  // duration_cast<nanoseconds>(hours::max()) overflows (a negative value in practice).
  CHECK(saturating_cast_ns(hours::max()) == nanoseconds::max());
  CHECK(saturating_cast_ns(hours::min()) == nanoseconds::min());
  CHECK(saturating_cast_ns(seconds::max()) == nanoseconds::max());
  CHECK(saturating_cast_ns(milliseconds::max()) == nanoseconds::max());
  CHECK(saturating_cast_ns(microseconds::min()) == nanoseconds::min());
  CHECK(saturating_cast_ns(nanoseconds::max()) == nanoseconds::max());
  // Just inside and just outside the range, in whole seconds.
  const auto limit_s = nanoseconds::max().count() / 1'000'000'000;
  CHECK(saturating_cast_ns(seconds(limit_s)) == nanoseconds(limit_s * 1'000'000'000));
  CHECK(saturating_cast_ns(seconds(limit_s + 1)) == nanoseconds::max());
  CHECK(saturating_cast_ns(seconds(-3)) == nanoseconds(-3'000'000'000));
}

TEST_CASE("saturating_cast_ns takes floating-point durations; NaN and infinities clamp") {
  CHECK(saturating_cast_ns(duration<double, std::milli>(1.5)) == nanoseconds(1'500'000));
  CHECK(saturating_cast_ns(duration<double>(1e300)) == nanoseconds::max());
  CHECK(saturating_cast_ns(duration<double>(-1e300)) == nanoseconds::min());
  CHECK(saturating_cast_ns(duration<double>(std::numeric_limits<double>::infinity())) == nanoseconds::max());
  CHECK(saturating_cast_ns(duration<double>(std::numeric_limits<double>::quiet_NaN())) == nanoseconds::max());
}

TEST_CASE("saturating_add and saturating_deadline stop at the ends of the range") {
  CHECK(noclobber::saturating_add(nanoseconds::max(), nanoseconds(1)) == nanoseconds::max());
  CHECK(noclobber::saturating_add(nanoseconds::min(), nanoseconds(-1)) == nanoseconds::min());
  CHECK(noclobber::saturating_add(nanoseconds(5), nanoseconds(-7)) == nanoseconds(-2));

  const auto now = steady_clock::now();
  CHECK(noclobber::saturating_deadline<steady_clock>(now, nanoseconds::max()) ==
        steady_clock::time_point::max());
  CHECK(noclobber::saturating_deadline<steady_clock>(now, seconds(1)) == now + seconds(1));
  const system_clock::time_point early(system_clock::duration::min() / 2);
  CHECK(noclobber::saturating_deadline<system_clock>(early, nanoseconds::min()) ==
        system_clock::time_point::min());
}

TEST_CASE("saturating_ns: any duration converts in, nanoseconds convert out") {
  noclobber::saturating_ns none = hours::max();
  CHECK(none.is_max());
  const nanoseconds back = none;
  CHECK(back == nanoseconds::max());
  noclobber::saturating_ns two = seconds(2);
  CHECK(two.count() == 2'000'000'000);
  CHECK(two < none);
  CHECK(two == noclobber::saturating_ns(milliseconds(2000)));
}
