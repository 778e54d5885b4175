#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
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

// Regression tests for what tests/fuzz/fuzz_duration found (references in __int128).

// A narrow Rep whose period is finer than a nanosecond: the ratio's den (1e18 for atto) used to be
// cast to Rep (int8: 0, a division by zero that did not compile; int16 and femto: 16960).
static_assert(saturating_cast_ns(duration<std::int8_t, std::atto>(100)) == nanoseconds(0));

TEST_CASE("saturating_cast_ns: unsigned and narrow representations") {
  // Unsigned counts past 2^63 were converted to int64 first and wrapped (UINT64_MAX ns -> -1 ns).
  CHECK(saturating_cast_ns(duration<std::uint64_t, std::nano>(~std::uint64_t{0})) == nanoseconds::max());
  CHECK(saturating_cast_ns(duration<std::uint64_t, std::milli>(~std::uint64_t{0})) == nanoseconds::max());
  CHECK(saturating_cast_ns(duration<std::uint64_t, std::pico>(~std::uint64_t{0})) ==
        nanoseconds(18'446'744'073'709'551));
  CHECK(saturating_cast_ns(duration<std::uint64_t>(5)) == nanoseconds(5'000'000'000));
  CHECK(saturating_cast_ns(duration<std::uint32_t, std::ratio<3600>>(~std::uint32_t{0})) ==
        nanoseconds::max());
  // Sub-nanosecond periods with a Rep too narrow for the ratio's den (int8 and pico: den 1000
  // became -24, so 100 ps came out as -4 ns).
  CHECK(saturating_cast_ns(duration<std::int8_t, std::pico>(100)) == nanoseconds(0));
  CHECK(saturating_cast_ns(duration<std::int8_t, std::pico>(-128)) == nanoseconds(0));
  CHECK(saturating_cast_ns(duration<std::int16_t, std::femto>(30000)) == nanoseconds(0));
  CHECK(saturating_cast_ns(duration<std::int16_t, std::pico>(-32768)) == nanoseconds(-32));
  // The ends of the range, exactly.
  CHECK(saturating_cast_ns(duration<std::int64_t, std::pico>(std::numeric_limits<std::int64_t>::min())) ==
        nanoseconds(-9'223'372'036'854'775));
  CHECK(saturating_cast_ns(nanoseconds::min()) == nanoseconds::min());
  CHECK(saturating_cast_ns(duration<std::int64_t, std::ratio<1, 3>>(-4)) == nanoseconds(-1'333'333'333));
}

namespace {
// A clock counting microseconds, for times beyond the range of nanoseconds.
struct micro_clock {
  using duration = std::chrono::microseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<micro_clock>;  // all saturating_deadline reads
};
}  // namespace

TEST_CASE("saturating_deadline: max() is never, and coarse clocks far from their epoch stay exact") {
  // d = max() gave now + max() instead of time_point::max() when now was before the epoch.
  const steady_clock::time_point before_epoch(nanoseconds(-5));
  CHECK(noclobber::saturating_deadline<steady_clock>(before_epoch, nanoseconds::max()) ==
        steady_clock::time_point::max());
  const micro_clock::time_point early(microseconds(-128));
  CHECK(noclobber::saturating_deadline<micro_clock>(early, nanoseconds::max()) ==
        micro_clock::time_point::max());
  // A microsecond clock's `now` past 2^63 ns was clamped to nanoseconds::max() first, so the
  // deadline came out 9e18 µs early.
  const micro_clock::time_point far(microseconds(std::int64_t{1} << 62));
  CHECK(noclobber::saturating_deadline<micro_clock>(far, seconds(1)) == far + seconds(1));
  CHECK(noclobber::saturating_deadline<micro_clock>(far, nanoseconds(-128)) == far);  // rounds up to a tick
  CHECK(noclobber::saturating_deadline<micro_clock>(far, nanoseconds(1)) == far + microseconds(1));
  const micro_clock::time_point top(microseconds::max() - microseconds(1));
  CHECK(noclobber::saturating_deadline<micro_clock>(top, seconds(1)) == micro_clock::time_point::max());
  const micro_clock::time_point bottom(microseconds::min() + microseconds(1));
  CHECK(noclobber::saturating_deadline<micro_clock>(bottom, -seconds(1)) == micro_clock::time_point::min());
}

TEST_CASE("saturating_sub stops at the ends of the range") {
  CHECK(noclobber::saturating_sub(nanoseconds::max(), nanoseconds::min()) == nanoseconds::max());
  CHECK(noclobber::saturating_sub(nanoseconds::min(), nanoseconds::max()) == nanoseconds::min());
  CHECK(noclobber::saturating_sub(nanoseconds::min(), nanoseconds(1)) == nanoseconds::min());
  CHECK(noclobber::saturating_sub(nanoseconds(-1), nanoseconds::min()) == nanoseconds::max());
  CHECK(noclobber::saturating_sub(nanoseconds(5), nanoseconds(7)) == nanoseconds(-2));
  CHECK(noclobber::saturating_sub(nanoseconds(0), nanoseconds::min() + nanoseconds(1)) == nanoseconds::max());
}
