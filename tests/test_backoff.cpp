#include <catch2/catch.hpp>

#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "noclobber/backoff.hpp"

using namespace std::chrono_literals;
using noclobber::backoff_kind;
using noclobber::backoff_policy;
using ns = std::chrono::nanoseconds;

namespace {

// A generator that returns a scripted list of 64-bit values, so expected delays can be worked
// out by hand: uniform[0, n] keeps a draw r when r >= 2^64 mod (n+1) and answers r mod (n+1).
struct scripted_rng {
  using result_type = std::uint64_t;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<std::uint64_t>::max(); }
  std::vector<std::uint64_t> values;
  std::size_t next = 0;
  result_type operator()() {
    REQUIRE(next < values.size());
    return values[next++];
  }
};

// A draw that uniform[0, n] maps to x: a multiple of n+1 near 2^63 (far above the rejection
// threshold, which is below n+1), plus x.
std::uint64_t draw_for(std::int64_t n, std::int64_t x) {
  const std::uint64_t m = static_cast<std::uint64_t>(n) + 1;
  const std::uint64_t big = std::uint64_t{1} << 63;
  return big - big % m + static_cast<std::uint64_t>(x);
}

template <class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "<no exception>";
}

}  // namespace

TEST_CASE("factories reject policies that make no sense, naming the bad value", "[backoff]") {
  CHECK_THAT(message_of([] { (void)backoff_policy::exponential(-5ns, 1s); }),
             Catch::Contains("base must be positive") && Catch::Contains("-5ns"));
  CHECK_THAT(message_of([] { (void)backoff_policy::full_jitter(0ns, 1s); }),
             Catch::Contains("full_jitter") && Catch::Contains("got 0ns"));
  CHECK_THAT(message_of([] { (void)backoff_policy::equal_jitter(2s, 1s); }),
             Catch::Contains("cap must be >= base") && Catch::Contains("1000000000ns") &&
                 Catch::Contains("2000000000ns"));
  CHECK_THAT(message_of([] { (void)backoff_policy::decorrelated_jitter(10ms, -1s); }),
             Catch::Contains("decorrelated_jitter") && Catch::Contains("cap"));
  CHECK_THAT(message_of([] { (void)backoff_policy::exponential(1ms, 1s, 0.5); }),
             Catch::Contains("multiplier") && Catch::Contains("0.5"));
  CHECK_THAT(message_of([] { (void)backoff_policy::full_jitter(1ms, 1s, std::nan("")); }),
             Catch::Contains("multiplier"));
  CHECK_THAT(message_of([] { (void)backoff_policy::full_jitter(1ms, 1s, HUGE_VAL); }),
             Catch::Contains("multiplier") && Catch::Contains("inf"));

  const auto p = backoff_policy::full_jitter(1ms, 1s);
  std::mt19937_64 rng(1);
  CHECK_THAT(message_of([&] { (void)p.delay(0, 0ns, rng); }), Catch::Contains("retry must be >= 1, got 0"));
  CHECK_THAT(message_of([&] { (void)p.delay(1, -3ns, rng); }),
             Catch::Contains("previous must be >= 0, got -3ns"));

  // Edge values that do make sense are accepted.
  CHECK_NOTHROW(backoff_policy::exponential(1ns, 1ns, 1.0));
  CHECK_NOTHROW(backoff_policy::decorrelated_jitter(ns::max(), ns::max(), 1e300));
}

TEST_CASE("exponential: exact ceiling sequence, capped", "[backoff]") {
  const auto p = backoff_policy::exponential(10ms, 1s);
  CHECK(p.kind() == backoff_kind::exponential);
  std::mt19937_64 rng(7);
  const std::vector<ns> expected{10ms, 20ms, 40ms, 80ms, 160ms, 320ms, 640ms, 1s, 1s, 1s};
  std::vector<ns> got;
  for (unsigned n = 1; n <= 10; ++n) got.push_back(p.delay(n, 0ns, rng));
  CHECK(got == expected);

  const auto p3 = backoff_policy::exponential(1ms, 100ms, 3.0);
  CHECK(p3.delay(1, 0ns, rng) == 1ms);
  CHECK(p3.delay(2, 0ns, rng) == 3ms);
  CHECK(p3.delay(4, 0ns, rng) == 27ms);
  CHECK(p3.delay(5, 0ns, rng) == 81ms);
  CHECK(p3.delay(6, 0ns, rng) == 100ms);

  CHECK(backoff_policy::immediate().delay(1, 0ns, rng) == 0ns);
  CHECK(backoff_policy::immediate().delay(UINT_MAX, 5s, rng) == 0ns);
}

TEST_CASE("jitter kinds follow Brooker's formulas exactly (scripted draws)", "[backoff]") {
  SECTION("full jitter: uniform[0, min(cap, base*2^(n-1))]") {
    const auto p = backoff_policy::full_jitter(10ms, 1s);
    // ceilings 10ms, 20ms, 40ms, then 1s at n = 12
    scripted_rng rng{{draw_for(10'000'000, 1234), draw_for(20'000'000, 0), draw_for(40'000'000, 40'000'000),
                      draw_for(1'000'000'000, 999'999'999)}};
    CHECK(p.delay(1, 0ns, rng) == 1234ns);
    CHECK(p.delay(2, 0ns, rng) == 0ns);
    CHECK(p.delay(3, 0ns, rng) == 40ms);
    CHECK(p.delay(12, 0ns, rng) == 999'999'999ns);
  }
  SECTION("a draw below 2^64 mod (n+1) is rejected, the next one used") {
    const auto p = backoff_policy::full_jitter(10ms, 1s);
    // 2^64 mod 10'000'001 is not 0, so the draw 0 lies below the threshold.
    REQUIRE((0 - std::uint64_t{10'000'001}) % 10'000'001 != 0);
    scripted_rng rng{{0, draw_for(10'000'000, 77)}};
    CHECK(p.delay(1, 0ns, rng) == 77ns);
    CHECK(rng.next == 2);
  }
  SECTION("equal jitter: t/2 + uniform[0, t - t/2]") {
    const auto p = backoff_policy::equal_jitter(10ms, 1s);
    scripted_rng rng{{draw_for(5'000'000, 0), draw_for(10'000'000, 10'000'000), draw_for(500'000'000, 3)}};
    CHECK(p.delay(1, 0ns, rng) == 5ms);
    CHECK(p.delay(2, 0ns, rng) == 20ms);
    CHECK(p.delay(30, 0ns, rng) == 500'000'003ns);
  }
  SECTION("equal jitter with an odd ceiling never exceeds it") {
    const auto p = backoff_policy::equal_jitter(3ns, 3ns);
    scripted_rng rng{{draw_for(2, 2)}};
    CHECK(p.delay(1, 0ns, rng) == 3ns);  // 1 + 2
  }
  SECTION("decorrelated jitter: min(cap, uniform[base, 3*previous])") {
    const auto p = backoff_policy::decorrelated_jitter(10ms, 100ms);
    // previous 0 counts as base: uniform[10ms, 30ms]
    scripted_rng rng{
        {draw_for(20'000'000, 5), draw_for(80'000'000, 80'000'000), draw_for(290'000'000, 200'000'000)}};
    CHECK(p.delay(1, 0ns, rng) == 10'000'005ns);
    CHECK(p.delay(2, 30ms, rng) == 90ms);    // uniform[10ms, 90ms], top
    CHECK(p.delay(3, 100ms, rng) == 100ms);  // 210ms drawn, capped
  }
}

TEST_CASE("a fixed seed gives a fixed sequence (pinned, portable)", "[backoff]") {
  // These numbers come from std::mt19937_64 (fully specified by the standard) and noclobber's own
  // uniform draw; they must not change across compilers or standard libraries.
  auto run = [](const backoff_policy& p) {
    std::mt19937_64 rng(42);
    std::vector<std::int64_t> out;
    ns prev{0};
    for (unsigned n = 1; n <= 6; ++n) {
      prev = p.delay(n, prev, rng);
      out.push_back(prev.count());
    }
    return out;
  };
  const auto full = run(backoff_policy::full_jitter(10ms, 1s));
  const auto equal = run(backoff_policy::equal_jitter(10ms, 1s));
  const auto decorrelated = run(backoff_policy::decorrelated_jitter(10ms, 1s));
  CHECK(full == std::vector<std::int64_t>{2174482, 1095419, 1999510, 22814565, 8618448, 232309469});
  CHECK(equal == std::vector<std::int64_t>{6507161, 18754955, 36274914, 40474253, 108798817, 249640543});
  CHECK(decorrelated ==
        std::vector<std::int64_t>{20112619, 21868950, 45251618, 44179912, 33280857, 20037840});
}

TEST_CASE("over many seeds every delay lies inside its formula's range, never above the cap", "[backoff]") {
  const ns base = 10ms, cap = 1s;
  const auto full = backoff_policy::full_jitter(base, cap);
  const auto equal = backoff_policy::equal_jitter(base, cap);
  const auto decorrelated = backoff_policy::decorrelated_jitter(base, cap);
  const auto expo = backoff_policy::exponential(base, cap);
  std::set<std::int64_t> distinct_first;
  double sum_first = 0;
  int draws_first = 0;
  for (std::uint64_t seed = 0; seed < 300; ++seed) {
    std::mt19937_64 rng(seed);
    ns prev{0};
    for (unsigned n = 1; n <= 40; ++n) {
      const ns t = expo.delay(n, 0ns, rng);
      const ns f = full.delay(n, 0ns, rng);
      REQUIRE(f >= 0ns);
      REQUIRE(f <= t);
      const ns e = equal.delay(n, 0ns, rng);
      REQUIRE(e >= t / 2);
      REQUIRE(e <= t);
      const ns d = decorrelated.delay(n, prev, rng);
      REQUIRE(d >= base);
      REQUIRE(d <= cap);
      REQUIRE(d <= std::max(prev, base) * 3);
      prev = d;
      if (n == 1) {
        distinct_first.insert(f.count());
        sum_first += static_cast<double>(f.count());
        ++draws_first;
      }
    }
  }
  // Jitter that really jitters: 300 first retries give (almost) 300 different delays, and their
  // mean is near base/2. (Fixed seeds: this cannot flake.)
  CHECK(distinct_first.size() >= 295);
  const double mean_ms = sum_first / draws_first / 1e6;
  CHECK(mean_ms > 4.0);
  CHECK(mean_ms < 6.0);
}

TEST_CASE("no overflow or UB at any retry number or duration", "[backoff]") {
  const std::vector<unsigned> retries{1, 2, 63, 64, 65, 1024, 1025, 10'000, UINT_MAX - 1, UINT_MAX};
  const std::vector<std::pair<ns, ns>> ranges{
      {1ns, 1s}, {1ns, ns::max()}, {ns::max() / 2, ns::max()}, {ns::max(), ns::max()}, {10ms, 1s}};
  const std::vector<double> multipliers{1.0, 2.0, 3.0, 1e300};
  std::mt19937_64 rng(3);
  for (const auto& [base, cap] : ranges) {
    for (double m : multipliers) {
      const std::vector<backoff_policy> policies{
          backoff_policy::exponential(base, cap, m), backoff_policy::full_jitter(base, cap, m),
          backoff_policy::equal_jitter(base, cap, m), backoff_policy::decorrelated_jitter(base, cap, m)};
      for (const auto& p : policies) {
        ns prev{0};
        for (unsigned n : retries) {
          const ns d = p.delay(n, prev, rng);
          INFO(to_string(p.kind()) << " base " << base.count() << " cap " << cap.count() << " m " << m
                                   << " n " << n);
          REQUIRE(d >= 0ns);
          REQUIRE(d <= cap);
          if (p.kind() == backoff_kind::exponential && n >= 1025 && m >= 2.0) REQUIRE(d == cap);
          prev = d;
        }
        // previous at its maximum must not overflow multiplier * previous either.
        REQUIRE(p.delay(7, ns::max(), rng) <= cap);
      }
    }
  }
  // The ceiling keeps growing monotonically up to the cap and stays there.
  const auto p = backoff_policy::exponential(1ns, ns::max());
  ns last{0};
  for (unsigned n = 1; n <= 200; ++n) {
    const ns c = p.ceiling(n);
    REQUIRE(c >= last);
    last = c;
  }
  CHECK(last == ns::max());
  CHECK(p.ceiling(63) == ns(std::int64_t{1} << 62));
  CHECK(p.ceiling(64) == ns::max());  // 2^63 does not fit: the cap
}

TEST_CASE("the ceiling never drops below base, even for bases a double cannot hold", "[backoff]") {
  // Found by tests/fuzz/fuzz_backoff: base 2^62 + 1 ns became 2^62 as a double, so with
  // multiplier 1 retry 2 waited less than retry 1 (t(n) = min(cap, base * m^(n-1)) >= base).
  const ns base((std::int64_t{1} << 62) + 1);
  const auto p = backoff_policy::exponential(base, ns::max(), 1.0);
  std::mt19937_64 rng(1);
  for (unsigned n = 1; n <= 5; ++n) {
    CHECK(p.ceiling(n) == base);
    CHECK(p.delay(n, 0ns, rng) == base);
  }
  const auto q = backoff_policy::equal_jitter(base, ns::max(), 1.5);
  CHECK(q.ceiling(2) >= base);
}

TEST_CASE("generators of any width give in-range, deterministic delays", "[backoff]") {
  const auto p = backoff_policy::full_jitter(1ms, 10s);
  auto check_gen = [&](auto make) {
    auto a = make();
    auto b = make();
    for (unsigned n = 1; n <= 30; ++n) {
      const ns x = p.delay(n, 0ns, a);
      REQUIRE(x >= 0ns);
      REQUIRE(x <= p.ceiling(n));
      REQUIRE(x == p.delay(n, 0ns, b));  // same seed, same delay
    }
  };
  check_gen([] { return std::mt19937(5); });        // 32 bits
  check_gen([] { return std::minstd_rand(5); });    // range 2^31 - 2: not a power of two
  check_gen([] { return std::ranlux24_base(5); });  // 24 bits
  check_gen([] { return std::mt19937_64(5); });
}

TEST_CASE("contention_meter estimates how busy the row is from successive reads", "[backoff][commit_rate]") {
  noclobber::contention_meter m;
  CHECK(m.busy() < 0);
  m.observe(10, 0ms, 10ms);  // one refusal: no rate yet
  CHECK(m.busy() < 0);
  CHECK(m.window() == 10ms);
  CHECK(m.samples() == 1);
  m.observe(14, 40ms, 50ms);  // 4 commits in 40 ms, window 10 ms: 1.0, clamped to 0.8
  CHECK(m.busy() == Approx(0.8));
  m.observe(14, 100ms, 110ms);  // no commits since: 0, averaged with 0.8
  CHECK(m.busy() == Approx(0.4));
  m.observe(3, 200ms, 210ms);  // a version that went backwards counts as no commits
  CHECK(m.busy() == Approx(0.2));

  // note_read + on_refused is the same as observe; on_refused without a noted read is a no-op.
  noclobber::contention_meter a, b;
  a.observe(1, 0ms, 5ms);
  a.observe(3, 20ms, 30ms);
  b.on_refused(0ms, 5ms);
  CHECK(b.samples() == 0);
  b.note_read(1);
  b.on_refused(0ms, 5ms);
  b.note_read(3);
  b.on_refused(20ms, 30ms);
  b.on_refused(40ms, 50ms);  // nothing pending
  CHECK(b.samples() == 2);
  CHECK(a.busy() == Approx(b.busy()));
  CHECK(a.window() == b.window());

  // Extreme inputs stay finite and clamped.
  noclobber::contention_meter x;
  x.observe(0, 0ns, 0ns);
  x.observe(std::numeric_limits<std::uint64_t>::max(), 1ns, ns::max());
  CHECK(x.busy() == Approx(noclobber::contention_meter::max_busy));
}

TEST_CASE("contention_meter: times spanning the whole duration range do not overflow",
          "[backoff][commit_rate]") {
  // Found by tests/fuzz/fuzz_backoff: refused_at - read_at and read_at - previous read overflowed
  // (undefined behaviour; in practice a negative window) when the times lay more than
  // nanoseconds::max() apart.
  noclobber::contention_meter m;
  m.observe(1, ns::min(), ns::max());
  CHECK(m.window() == ns::max());
  m.observe(2, ns::max() - ns(1), ns::max());
  CHECK(m.window() == ns(1));
  CHECK(m.busy() >= 0.0);  // elapsed since the previous read: max() - 1 - min(), clamped
  CHECK(m.busy() <= noclobber::contention_meter::max_busy);
  noclobber::contention_meter n;
  n.observe(5, ns(-3), ns(4));
  CHECK(n.window() == ns(7));
}

TEST_CASE("commit_rate: full jitter until the meter knows, then a window sized by it",
          "[backoff][commit_rate]") {
  const auto p = backoff_policy::commit_rate();
  CHECK(p.kind() == backoff_kind::commit_rate);
  CHECK(p.base() == 30ms);
  CHECK(p.cap() == 1s);
  CHECK(p.multiplier() == 3.0);
  CHECK_THAT(message_of([] { (void)backoff_policy::commit_rate(0ms); }), Catch::Contains("commit_rate"));

  // Without meter data: exactly full jitter with the same base, cap and multiplier.
  const auto fj = backoff_policy::full_jitter(30ms, 1s, 3.0);
  noclobber::contention_meter empty;
  std::mt19937_64 r1(5), r2(5);
  for (unsigned n = 1; n <= 12; ++n) REQUIRE(p.delay(n, 0ns, empty, r1) == fj.delay(n, 0ns, r2));

  // busy 0.4, window 10 ms: the window is 1.5 * 10 ms / 0.6^2 = 41'666'666 ns, below the
  // full-jitter ceiling of retry 3 (270 ms) but not below that of retry 1 (30 ms).
  noclobber::contention_meter m;
  m.observe(10, 0ms, 10ms);
  m.observe(14, 40ms, 50ms);
  m.observe(14, 100ms, 110ms);
  REQUIRE(m.busy() == Approx(0.4));
  scripted_rng rng{
      {draw_for(41'666'666, 41'666'666), draw_for(30'000'000, 30'000'000), draw_for(41'666'666, 9)}};
  CHECK(p.delay(3, 0ns, m, rng) == 41'666'666ns);
  CHECK(p.delay(1, 0ns, m, rng) == 30ms);
  CHECK(p.delay(UINT_MAX, 0ns, m, rng) == 9ns);

  // Other kinds ignore the meter.
  std::mt19937_64 r3(9), r4(9);
  const auto e = backoff_policy::equal_jitter(10ms, 1s);
  CHECK(e.delay(4, 0ns, m, r3) == e.delay(4, 0ns, r4));

  // Over many seeds and extreme meters: within [0, min(ceiling, cap)].
  noclobber::contention_meter busy;
  busy.observe(0, 0ns, 0ns);
  busy.observe(1'000'000, 1ms, ns::max());
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    std::mt19937_64 g(seed);
    for (unsigned n : {1u, 2u, 10u, 10'000u, UINT_MAX}) {
      const ns d1 = p.delay(n, 0ns, m, g);
      const ns d2 = p.delay(n, 0ns, busy, g);
      REQUIRE(d1 >= 0ns);
      REQUIRE(d1 <= std::min(p.ceiling(n), ns(41'666'666)));
      REQUIRE(d2 >= 0ns);
      REQUIRE(d2 <= p.ceiling(n));
    }
  }
}

TEST_CASE("contention_meter keeps one load sample per refusal after the first, capped at max_load",
          "[backoff][load_tracking]") {
  noclobber::contention_meter m;
  CHECK(m.load_samples() == 0);
  CHECK(m.load_sum() == 0.0);
  m.observe(10, 0ms, 10ms);  // the first refusal: nothing to compare with
  CHECK(m.load_samples() == 0);
  m.observe(14, 40ms, 50ms);  // 4 commits in 40 ms, window 10 ms: 1.0
  CHECK(m.load_samples() == 1);
  CHECK(m.load_sum() == Approx(1.0));
  m.observe(30, 80ms, 90ms);  // 16 commits in 40 ms: 4.0, capped at max_load
  CHECK(m.load_samples() == 2);
  CHECK(m.load_sum() == Approx(1.0 + noclobber::contention_meter::max_load));
  m.observe(31, 120ms, 125ms);  // 1 commit in 40 ms, window 5 ms: 0.125
  CHECK(m.load_sum() == Approx(2.125));
  m.observe(3, 160ms, 170ms);  // a version that went backwards counts as no commits
  CHECK(m.load_samples() == 4);
  CHECK(m.load_sum() == Approx(2.125));
  m.observe(50, 160ms, 180ms);  // no time between the reads: no sample
  CHECK(m.load_samples() == 4);
  // The busy estimate is unchanged by the load samples (it still clamps at max_busy).
  CHECK(m.busy() <= noclobber::contention_meter::max_busy);

  // Extreme inputs: a sample is never above max_load, the sum stays finite.
  noclobber::contention_meter x;
  x.observe(0, 0ns, 0ns);
  x.observe(std::numeric_limits<std::uint64_t>::max(), 1ns, ns::max());
  CHECK(x.load_samples() == 1);
  CHECK(x.load_sum() == noclobber::contention_meter::max_load);
}

TEST_CASE("load_tracking: full jitter until the meter has a load sample, then a window steered by the load",
          "[backoff][load_tracking]") {
  const auto p = backoff_policy::load_tracking();
  CHECK(p.kind() == backoff_kind::load_tracking);
  CHECK(noclobber::to_string(p.kind()) == "load_tracking");
  CHECK(p.base() == 10ms);
  CHECK(p.cap() == 1s);
  CHECK(noclobber::reads_meter(backoff_kind::load_tracking));
  CHECK(noclobber::reads_meter(backoff_kind::commit_rate));
  CHECK_FALSE(noclobber::reads_meter(backoff_kind::full_jitter));
  CHECK_FALSE(noclobber::reads_meter(backoff_kind::decorrelated_jitter));
  CHECK_THAT(message_of([] { (void)backoff_policy::load_tracking(0ms); }), Catch::Contains("load_tracking"));
  CHECK_THAT(message_of([] { (void)backoff_policy::load_tracking(10ms, 5ms); }),
             Catch::Contains("cap must be >= base"));

  // Without a load sample (no meter data, or one refusal only): exactly full jitter 10 ms .. 1 s.
  const auto fj = backoff_policy::full_jitter(10ms, 1s);
  noclobber::contention_meter one;
  one.observe(10, 0ms, 10ms);
  std::mt19937_64 r1(5), r2(5), r3(5);
  for (unsigned n = 1; n <= 12; ++n) {
    const ns expected = fj.delay(n, 0ns, r2);
    REQUIRE(p.delay(n, 0ns, r1) == expected);
    REQUIRE(p.delay(n, 0ns, one, r3) == expected);
  }

  // One sample of load 1.0: 5 * 10 ms * e^(3.7 * (1.0 - 0.6)) = 219.647 ms. A second sample of
  // load 0: 50 ms * e^(3.7 * (1.0 - 1.2)) = 23.856 ms. Retry 1 stays full jitter's first step.
  noclobber::contention_meter m;
  m.observe(10, 0ms, 10ms);
  m.observe(14, 40ms, 50ms);
  CHECK(static_cast<double>(p.load_window(m).count()) == Approx(219.647284e6).epsilon(1e-6));
  scripted_rng rng{{draw_for(p.load_window(m).count(), p.load_window(m).count()), draw_for(10'000'000, 7)}};
  CHECK(p.delay(3, 0ns, m, rng) == p.load_window(m));
  CHECK(p.delay(1, 0ns, m, rng) == 7ns);
  m.observe(14, 100ms, 110ms);
  CHECK(static_cast<double>(p.load_window(m).count()) == Approx(23.855696e6).epsilon(1e-6));

  // A busy row runs up to the cap, a quiet one down to the base; never outside [base, cap].
  noclobber::contention_meter busy, quiet;
  busy.observe(0, 0ms, 10ms);
  quiet.observe(0, 0ms, 10ms);
  for (int i = 1; i <= 200; ++i) {
    busy.observe(static_cast<std::uint64_t>(i) * 100, ns(std::chrono::milliseconds(20 * i)),
                 ns(std::chrono::milliseconds(20 * i + 10)));
    quiet.observe(0, ns(std::chrono::milliseconds(20 * i)), ns(std::chrono::milliseconds(20 * i + 10)));
  }
  CHECK(p.load_window(busy) == 1s);
  CHECK(p.load_window(quiet) == 10ms);
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    std::mt19937_64 g(seed);
    for (unsigned n : {2u, 3u, 10u, UINT_MAX}) {
      REQUIRE(p.delay(n, 0ns, busy, g) <= 1s);
      REQUIRE(p.delay(n, 0ns, quiet, g) <= 10ms);
      REQUIRE(p.delay(n, 0ns, m, g) <= p.load_window(m));
      REQUIRE(p.delay(n, 0ns, m, g) >= 0ns);
    }
  }

  // Other kinds' load_window is their base; other kinds ignore the load samples.
  CHECK(fj.load_window(busy) == 10ms);
  std::mt19937_64 r4(9), r5(9);
  CHECK(fj.delay(4, 0ns, busy, r4) == fj.delay(4, 0ns, r5));

  // Any base and cap: no overflow (the exponent saturates to the cap, underflows to the base).
  const auto wide = backoff_policy::load_tracking(1ns, ns::max());
  CHECK(wide.load_window(busy) == ns::max());
  CHECK(wide.load_window(quiet) == 1ns);
  const auto hours = backoff_policy::load_tracking(std::chrono::hours(1), std::chrono::hours::max());
  CHECK(hours.cap() == ns::max());
  CHECK(hours.load_window(quiet) == std::chrono::hours(1));
}
