// Fuzz target: backoff and retry policies from arbitrary bytes.
//
// The first byte picks one of five programs:
//   0 backoff_policy of every kind from arbitrary base / cap / multiplier, delays for arbitrary
//     retry numbers, previous delays and random draws: invalid policies and arguments are refused
//     with std::invalid_argument; every delay lies in [0, cap] and within its kind's window.
//   1 contention_meter fed arbitrary versions and times; commit_rate and load_tracking delays
//     from it (load_tracking's window against a long double reference).
//   2 retry_controller driven by hand (retry_policy with any max_attempts, timeout and budget):
//     each decision checked against the documented rules, budget tokens against a model; an
//     attempt may also decide (on_decided: stops as decided, refunds like a success, no hook).
//   3 cas_retry on virtual_retry_env with arbitrary outcome sequences, decided() attempts,
//     exceptions, cancellation and time spent inside attempts: attempts never exceed
//     max_attempts, the sum of sleeps never overflows and equals the result's `slept`, a granted
//     retry never ends past the deadline, a decided attempt ends the loop as decided.
//   4 retry_budget alone against a model.
//
// Library API under test (public headers only): noclobber/backoff.hpp, noclobber/cas_retry.hpp
// (with retry_controller.hpp and retry_env.hpp), noclobber/retry_budget.hpp.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "noclobber/backoff.hpp"
#include "noclobber/cas_retry.hpp"
#include "noclobber/duration.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/retry_budget.hpp"

namespace {

using namespace std::chrono;
using noclobber::backoff_kind;
using noclobber::backoff_policy;
using noclobber::write_status;
using ns = nanoseconds;
using i128 = __int128;

constexpr std::int64_t ns_max = std::numeric_limits<std::int64_t>::max();

using nc_fuzz::num;

/// A uniform_random_bit_generator whose draws come from the input (so the fuzzer steers the
/// jitter), then from a counter once the input is used up (rejection loops must end).
class input_rng {
 public:
  using result_type = std::uint64_t;
  explicit input_rng(nc_fuzz::reader& in) : in_(in) {}
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<result_type>::max(); }
  result_type operator()() {
    if (in_.left() >= 8) return in_.u64();
    state_ += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  nc_fuzz::reader& in_;
  std::uint64_t state_ = 0;
};

backoff_kind kind_from(std::uint8_t b) {
  return static_cast<backoff_kind>(b % 7);
}

double multiplier_from(nc_fuzz::reader& in) {
  switch (in.u8() % 8) {
    case 0:
      return 1.0;
    case 1:
      return 2.0;
    case 2:
      return 3.0;
    case 3:
      return 1.0 + static_cast<double>(in.u16()) / 4096.0;
    case 4:
      return std::numeric_limits<double>::infinity();
    case 5:
      return std::numeric_limits<double>::quiet_NaN();
    case 6:
      return static_cast<double>(in.u8()) / 128.0;  // below 1 most of the time
    default:
      return in.f64();
  }
}

/// The documented validity rule for a factory's arguments.
bool valid_args(ns base, ns cap, double m) {
  return base > ns::zero() && cap >= base && std::isfinite(m) && m >= 1.0;
}

backoff_policy make_policy(backoff_kind k, ns base, ns cap, double m) {
  switch (k) {
    case backoff_kind::immediate:
      return backoff_policy::immediate();
    case backoff_kind::exponential:
      return backoff_policy::exponential(base, cap, m);
    case backoff_kind::full_jitter:
      return backoff_policy::full_jitter(base, cap, m);
    case backoff_kind::equal_jitter:
      return backoff_policy::equal_jitter(base, cap, m);
    case backoff_kind::decorrelated_jitter:
      return backoff_policy::decorrelated_jitter(base, cap, m);
    case backoff_kind::commit_rate:
      return backoff_policy::commit_rate(base, cap, m);
    case backoff_kind::load_tracking:
      return backoff_policy::load_tracking(base, cap);  // multiplier 2
  }
  return backoff_policy::immediate();
}

/// A policy from the input; nullopt when the factory (correctly) refused the arguments.
std::optional<backoff_policy> policy_from(nc_fuzz::reader& in) {
  const backoff_kind k = kind_from(in.u8());
  const ns base(in.edgy_i64());
  const ns cap(in.edgy_i64());
  const double m = multiplier_from(in);
  const bool valid =
      k == backoff_kind::immediate || valid_args(base, cap, k == backoff_kind::load_tracking ? 2.0 : m);
  try {
    backoff_policy p = make_policy(k, base, cap, m);
    NC_FUZZ_CHECK(valid, "factory accepted base " + num(base.count()) + " cap " + num(cap.count()) +
                             " multiplier " + std::to_string(m));
    NC_FUZZ_CHECK(p.kind() == k, "kind");
    return p;
  } catch (const std::invalid_argument&) {
    NC_FUZZ_CHECK(!valid, "factory refused valid base " + num(base.count()) + " cap " + num(cap.count()) +
                              " multiplier " + std::to_string(m));
    return std::nullopt;
  }
}

/// min(cap, base * m^(n-1)) in long double: the reference for backoff_policy::ceiling.
long double ceiling_ref(const backoff_policy& p, unsigned retry) {
  if (p.kind() == backoff_kind::immediate) return 0;
  if (retry <= 1) return static_cast<long double>(p.base().count());
  const long double grown =
      static_cast<long double>(p.base().count()) *
      std::pow(static_cast<long double>(p.multiplier()), static_cast<long double>(retry - 1));
  const long double cap = static_cast<long double>(p.cap().count());
  return grown < cap ? grown : cap;
}

void check_ceiling(const backoff_policy& p, unsigned retry) {
  const ns c = p.ceiling(retry);
  if (p.kind() == backoff_kind::immediate) {
    NC_FUZZ_CHECK(c == ns::zero(), "immediate ceiling " + num(c.count()));
    return;
  }
  NC_FUZZ_CHECK(c >= p.base() || retry <= 1, "ceiling below base");
  NC_FUZZ_CHECK(c <= p.cap(), "ceiling " + num(c.count()) + " above cap " + num(p.cap().count()));
  if (retry <= 1) NC_FUZZ_CHECK(c == p.base(), "ceiling(1) != base");
  const long double ref = ceiling_ref(p, retry);
  const long double got = static_cast<long double>(c.count());
  // double pow against long double pow: a relative error of a few ulps per factor.
  const long double tolerance = 1 + ref * 1e-9L;
  NC_FUZZ_CHECK(std::fabs(got - ref) <= tolerance, "ceiling(" + std::to_string(retry) +
                                                       ") = " + num(c.count()) + ", reference " +
                                                       std::to_string(static_cast<double>(ref)));
  // Monotone in the retry number.
  if (retry < std::numeric_limits<unsigned>::max())
    NC_FUZZ_CHECK(p.ceiling(retry + 1) >= c, "ceiling not monotone at " + std::to_string(retry));
}

/// Checks one delay against its kind's window (`meter`: the one it was drawn with, if any).
void check_delay(const backoff_policy& p, unsigned retry, ns previous, ns d,
                 const noclobber::contention_meter* meter = nullptr) {
  NC_FUZZ_CHECK(d >= ns::zero(), "negative delay " + num(d.count()));
  NC_FUZZ_CHECK(d <= p.cap() || p.kind() == backoff_kind::immediate,
                "delay " + num(d.count()) + " above cap " + num(p.cap().count()));
  const ns c = p.ceiling(retry);
  switch (p.kind()) {
    case backoff_kind::immediate:
      NC_FUZZ_CHECK(d == ns::zero(), "immediate delay");
      break;
    case backoff_kind::exponential:
      NC_FUZZ_CHECK(d == c, "exponential delay != ceiling");
      break;
    case backoff_kind::full_jitter:
    case backoff_kind::commit_rate:
      NC_FUZZ_CHECK(d <= c, "jittered delay above its ceiling");
      break;
    case backoff_kind::load_tracking:
      if (meter != nullptr && meter->load_samples() > 0 && retry > 1) {
        // uniform[0, w], w = clamp(5 base e^(3.7 (sum - 0.6 n)), base, cap)
        const ns w = p.load_window(*meter);
        NC_FUZZ_CHECK(w >= p.base() && w <= p.cap(), "load window outside [base, cap]");
        NC_FUZZ_CHECK(d <= w, "load_tracking delay above its window");
        const long double excess = static_cast<long double>(meter->load_sum()) -
                                   static_cast<long double>(meter->load_samples()) * 0.6L;
        const long double ref = 5.0L * static_cast<long double>(p.base().count()) * std::exp(3.7L * excess);
        const long double clamped =
            ref < static_cast<long double>(p.base().count())  ? static_cast<long double>(p.base().count())
            : ref > static_cast<long double>(p.cap().count()) ? static_cast<long double>(p.cap().count())
                                                              : ref;
        NC_FUZZ_CHECK(
            std::fabs(static_cast<long double>(w.count()) - clamped) <= 1 + clamped * 1e-9L,
            "load window " + num(w.count()) + ", reference " + std::to_string(static_cast<double>(clamped)));
      } else {
        NC_FUZZ_CHECK(d <= c, "load_tracking delay above its ceiling (no load samples)");
      }
      break;
    case backoff_kind::equal_jitter:
      NC_FUZZ_CHECK(d <= c && d >= c / 2, "equal jitter outside [t/2, t]");
      break;
    case backoff_kind::decorrelated_jitter: {
      NC_FUZZ_CHECK(d >= p.base(), "decorrelated jitter below base");
      // uniform[base, m * max(previous, base)], then capped.
      const long double hi =
          static_cast<long double>(previous < p.base() ? p.base().count() : previous.count()) *
          static_cast<long double>(p.multiplier());
      NC_FUZZ_CHECK(static_cast<long double>(d.count()) <= hi * (1 + 1e-15L) + 1,
                    "decorrelated jitter above m * previous");
      break;
    }
  }
}

unsigned retry_from(nc_fuzz::reader& in, unsigned sequential) {
  switch (in.u8() % 4) {
    case 0:
      return std::numeric_limits<unsigned>::max() - in.u8();
    case 1:
      return std::max(1u, in.u32());  // retry 0 is refused (checked in fuzz_policy)
    default:
      return sequential;
  }
}

template <class G>
void delays_with(const backoff_policy& p, nc_fuzz::reader& in, G& rng) {
  ns previous = ns::zero();
  const unsigned n = in.u8() % 24;
  for (unsigned i = 1; i <= n; ++i) {
    const unsigned retry = retry_from(in, i);
    check_ceiling(p, retry);
    const ns d = p.delay(retry, previous, rng);
    check_delay(p, retry, previous, d);
    previous = (in.u8() % 8 == 0) ? ns(in.edgy_i64() & ns_max) : d;  // any non-negative previous
  }
}

void fuzz_policy(nc_fuzz::reader& in) {
  const std::optional<backoff_policy> p = policy_from(in);
  if (!p) return;
  // Bad arguments to delay are refused, never UB.
  {
    std::mt19937_64 g(1);
    bool threw = false;
    try {
      (void)p->delay(0, ns::zero(), g);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    NC_FUZZ_CHECK(threw, "delay(retry 0) accepted");
    threw = false;
    const ns negative(-1 - (in.edgy_i64() & ns_max));
    try {
      (void)p->delay(1, negative, g);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    NC_FUZZ_CHECK(threw, "delay(previous < 0) accepted");
  }
  // Determinism: the same seed gives the same delays.
  {
    const std::uint64_t seed = in.u64();
    std::mt19937_64 a(seed), b(seed);
    for (unsigned r = 1; r < 8; ++r)
      NC_FUZZ_CHECK(p->delay(r, ns::zero(), a) == p->delay(r, ns::zero(), b), "seed");
  }
  switch (in.u8() % 4) {
    case 0: {
      input_rng g(in);
      delays_with(*p, in, g);
      break;
    }
    case 1: {
      std::minstd_rand g(in.u32());  // range not a power of two: the rejection path
      delays_with(*p, in, g);
      break;
    }
    case 2: {
      std::independent_bits_engine<std::mt19937, 3, std::uint32_t> g(in.u32());  // 3 bits per draw
      delays_with(*p, in, g);
      break;
    }
    default: {
      std::mt19937_64 g(in.u64());
      delays_with(*p, in, g);
    }
  }
}

void fuzz_meter(nc_fuzz::reader& in) {
  noclobber::contention_meter meter;
  const std::optional<backoff_policy> p = policy_from(in);
  input_rng g(in);
  const unsigned n = in.u8() % 32;
  for (unsigned i = 0; i < n; ++i) {
    switch (in.u8() % 3) {
      case 0:
        meter.observe(in.u64(), ns(in.edgy_i64()), ns(in.edgy_i64()));
        break;
      case 1:
        meter.note_read(in.u64());
        break;
      default:
        meter.on_refused(ns(in.edgy_i64()), ns(in.edgy_i64()));
    }
    const double b = meter.busy();
    NC_FUZZ_CHECK(b == -1.0 || (b >= 0.0 && b <= noclobber::contention_meter::max_busy),
                  "busy " + std::to_string(b));
    NC_FUZZ_CHECK(meter.window() >= ns::zero(), "negative window");
    NC_FUZZ_CHECK(meter.load_samples() < meter.samples() || meter.samples() == 0, "load samples");
    NC_FUZZ_CHECK(meter.load_sum() >= 0.0 && meter.load_sum() <= static_cast<double>(meter.load_samples()) *
                                                                     noclobber::contention_meter::max_load,
                  "load sum " + std::to_string(meter.load_sum()));
    if (p) {
      const unsigned retry = 1 + in.u8() % 40;
      const ns previous(in.u8() % 2 ? ns_max / (1 + in.u8()) : 0);
      const ns d = p->delay(retry, previous, meter, g);
      check_delay(*p, retry, previous, d, &meter);
    }
  }
}

// ---- retry_controller by hand ----------------------------------------------------------------

write_status status_from(std::uint8_t b) {
  return static_cast<write_status>(b % 8);
}

bool retryable(write_status s) {
  return s == write_status::conflict || s == write_status::absent || s == write_status::exists ||
         s == write_status::transient || s == write_status::transient_restart;
}

struct budget_model {
  noclobber::retry_budget::config cfg;
  unsigned tokens = 0;
  unsigned cost(write_status s) const {
    return (s == write_status::transient || s == write_status::transient_restart) ? cfg.transient_cost
                                                                                  : cfg.retry_cost;
  }
  void refund(unsigned n) {
    tokens = static_cast<unsigned>(std::min<std::uint64_t>(cfg.capacity, std::uint64_t{tokens} + n));
  }
};

/// A budget from the input (or none); invalid configurations must be refused.
std::shared_ptr<noclobber::retry_budget> budget_from(nc_fuzz::reader& in,
                                                     std::optional<budget_model>& model) {
  if (in.u8() % 2 == 0) return nullptr;
  noclobber::retry_budget::config c;
  if (in.flag()) {
    c.capacity = in.u8() % 2 ? in.u32() : in.u8();
    c.retry_cost = in.u8() % 2 ? in.u32() : in.u8() % 16;
    c.transient_cost = in.u8() % 2 ? in.u32() : in.u8() % 16;
    c.success_refund = in.u8() % 2 ? in.u32() : in.u8() % 16;
  }
  const bool valid = c.capacity > 0 && c.retry_cost <= c.capacity && c.transient_cost <= c.capacity;
  try {
    auto b = std::make_shared<noclobber::retry_budget>(c);
    NC_FUZZ_CHECK(valid, "retry_budget accepted an invalid config");
    model = budget_model{c, c.capacity};
    return b;
  } catch (const std::invalid_argument&) {
    NC_FUZZ_CHECK(!valid, "retry_budget refused a valid config");
    return nullptr;
  }
}

ns timeout_from(nc_fuzz::reader& in) {
  switch (in.u8() % 6) {
    case 0:
      return ns::max();
    case 1:
      // A coarse duration near its own limits, through the saturating conversion a caller uses.
      return noclobber::saturating_cast_ns(hours(in.edgy_i64()));
    case 2:
      return noclobber::saturating_cast_ns(duration<double>(in.f64()));
    case 3:
      return ns(in.u16()) * 1000;
    default:
      return ns(in.edgy_i64());
  }
}

struct policy_case {
  noclobber::retry_policy policy;
  std::optional<budget_model> model;
  std::stop_source stop;  // policy.stop is its token
  bool valid = false;
};

void policy_case_from(nc_fuzz::reader& in, policy_case& pc) {
  std::optional<backoff_policy> b = policy_from(in);
  if (b) pc.policy.backoff = *b;
  switch (in.u8() % 4) {
    case 0:
      pc.policy.max_attempts = in.u32();
      break;
    case 1:
      pc.policy.max_attempts = std::numeric_limits<unsigned>::max();
      break;
    default:
      pc.policy.max_attempts = in.u8() % 12;
  }
  pc.policy.timeout = timeout_from(in);
  pc.policy.budget = budget_from(in, pc.model);
  pc.policy.stop = pc.stop.get_token();
  pc.valid = pc.policy.max_attempts > 0 && pc.policy.timeout >= ns::zero();
}

void fuzz_controller(nc_fuzz::reader& in) {
  policy_case pc;
  policy_case_from(in, pc);
  std::stop_source& stop = pc.stop;
  unsigned retries_announced = 0, give_ups = 0;
  bool throw_in_hook = false;
  pc.policy.on_retry = [&](const noclobber::retry_event&) {
    ++retries_announced;
    if (throw_in_hook) throw std::runtime_error("hook");
  };
  pc.policy.on_give_up = [&](const noclobber::give_up_event&) { ++give_ups; };

  std::optional<noclobber::retry_controller> c;
  try {
    c.emplace(pc.policy);
    NC_FUZZ_CHECK(pc.valid, "retry_controller accepted max_attempts " +
                                std::to_string(pc.policy.max_attempts) + " timeout " +
                                num(pc.policy.timeout.count()));
  } catch (const std::invalid_argument&) {
    NC_FUZZ_CHECK(!pc.valid, "retry_controller refused a valid policy");
    return;
  }
  input_rng g(in);
  const noclobber::store_error err{"E", "fuzz"};
  i128 elapsed = 0;
  i128 slept = 0;
  unsigned last_taken = 0;
  const bool clock = pc.policy.timeout != ns::max();
  NC_FUZZ_CHECK(c->needs_clock() == clock, "needs_clock");
  if (in.u8() % 16 == 0) stop.request_stop();
  if (c->cancelled_before_start()) {
    NC_FUZZ_CHECK(stop.stop_requested() && give_ups == 1 && c->attempts() == 0, "cancelled before start");
    return;
  }
  for (;;) {
    const unsigned attempts_before = c->attempts();
    NC_FUZZ_CHECK(c->next_attempt().number == attempts_before + 1, "attempt number");
    const std::uint8_t status_byte = in.u8();
    const write_status s = status_from(status_byte);
    if (in.u8() % 32 == 0) stop.request_stop();
    throw_in_hook = in.u8() % 32 == 0;
    const unsigned tokens_before = pc.model ? pc.model->tokens : 0;
    if (pc.policy.budget) NC_FUZZ_CHECK(pc.policy.budget->available() == tokens_before, "budget model");
    const ns el(static_cast<std::int64_t>(elapsed));
    const unsigned give_ups_before = give_ups;
    if ((status_byte & 0xf8) == 0xf8) {  // the attempt decided (keep, abort, a dropped patch...)
      c->on_decided(s);
      NC_FUZZ_CHECK(c->counts().reason == noclobber::stop_reason::decided &&
                        c->attempts() == attempts_before + 1 && c->last_status() == s &&
                        give_ups == give_ups_before && retries_announced == attempts_before,
                    "decided");
      if (pc.model) pc.model->refund(last_taken != 0 ? last_taken : pc.model->cfg.success_refund);
      if (pc.policy.budget)
        NC_FUZZ_CHECK(pc.policy.budget->available() == pc.model->tokens, "refund when decided");
      return;
    }
    noclobber::retry_decision d;
    try {
      d = c->on_outcome(s, err, el, g);
    } catch (const std::runtime_error&) {
      // The hook threw: the tokens taken for the retry it announced are back.
      NC_FUZZ_CHECK(throw_in_hook, "unexpected exception");
      if (pc.policy.budget)
        NC_FUZZ_CHECK(pc.policy.budget->available() == tokens_before,
                      "tokens not refunded after a throwing hook");
      return;
    }
    NC_FUZZ_CHECK(c->attempts() == attempts_before + 1, "attempts not counted");
    NC_FUZZ_CHECK(c->attempts() <= pc.policy.max_attempts, "attempts above max_attempts");
    NC_FUZZ_CHECK(c->last_status() == s, "last_status");
    if (s == write_status::applied) {
      NC_FUZZ_CHECK(!d && d.reason == noclobber::stop_reason::applied && give_ups == give_ups_before,
                    "applied");
      if (pc.model) pc.model->refund(last_taken != 0 ? last_taken : pc.model->cfg.success_refund);
      if (pc.policy.budget)
        NC_FUZZ_CHECK(pc.policy.budget->available() == pc.model->tokens, "refund on success");
      return;
    }
    if (!d) {
      NC_FUZZ_CHECK(give_ups == give_ups_before + 1, "on_give_up not called exactly once");
      using noclobber::stop_reason;
      switch (d.reason) {
        case stop_reason::permanent:
          NC_FUZZ_CHECK(s == write_status::permanent, "permanent");
          break;
        case stop_reason::indeterminate:
          NC_FUZZ_CHECK(s == write_status::indeterminate, "indeterminate");
          break;
        case stop_reason::attempts_exhausted:
          NC_FUZZ_CHECK(retryable(s) && c->attempts() == pc.policy.max_attempts, "attempts_exhausted");
          break;
        case stop_reason::cancelled:
          NC_FUZZ_CHECK(retryable(s) && stop.stop_requested(), "cancelled");
          break;
        case stop_reason::deadline:
          NC_FUZZ_CHECK(retryable(s) && clock, "deadline without a timeout");
          break;
        case stop_reason::budget_exhausted:
          NC_FUZZ_CHECK(retryable(s) && pc.model && pc.model->tokens < pc.model->cost(s), "budget_exhausted");
          break;
        case stop_reason::applied:
          NC_FUZZ_CHECK(false, "stopped as applied on a failure");
          break;
        case stop_reason::decided:
          NC_FUZZ_CHECK(false, "stopped as decided on an outcome");
      }
      if (pc.policy.budget) NC_FUZZ_CHECK(pc.policy.budget->available() == tokens_before, "stop took tokens");
      // A retry must have been granted when nothing forbade it.
      const bool room = !clock || (elapsed + pc.policy.backoff.cap().count() <= pc.policy.timeout.count() &&
                                   elapsed < pc.policy.timeout.count());
      const bool tokens_ok = !pc.model || pc.model->tokens >= pc.model->cost(s);
      if (retryable(s) && c->attempts() < pc.policy.max_attempts && !stop.stop_requested() && room &&
          tokens_ok)
        NC_FUZZ_CHECK(false, "refused a retry nothing forbade: " + std::string(to_string(d.reason)));
      return;
    }
    // Granted.
    NC_FUZZ_CHECK(retryable(s), "retry after " + std::string(to_string(s)));
    NC_FUZZ_CHECK(d.reread == noclobber::needs_reread(s), "reread");
    NC_FUZZ_CHECK(c->next_attempt().reread == d.reread, "next attempt's reread");
    NC_FUZZ_CHECK(d.delay >= ns::zero() && (d.delay <= pc.policy.backoff.cap() ||
                                            pc.policy.backoff.kind() == backoff_kind::immediate),
                  "delay outside [0, cap]");
    if (clock)
      NC_FUZZ_CHECK(elapsed + d.delay.count() <= pc.policy.timeout.count(), "retry ends past the deadline");
    NC_FUZZ_CHECK(retries_announced == c->attempts(), "on_retry count");
    if (pc.model) {
      last_taken = pc.model->cost(s);
      pc.model->tokens -= last_taken;
      NC_FUZZ_CHECK(pc.policy.budget->available() == pc.model->tokens, "tokens taken for a retry");
    }
    // The driver sleeps (any actual time, even negative or huge) or is interrupted.
    const ns actual(in.u8() % 4 == 0 ? in.edgy_i64() : d.delay.count());
    c->on_slept(actual);
    if (actual > ns::zero()) slept += actual.count();
    const i128 expect_slept = slept > ns_max ? ns_max : slept;
    NC_FUZZ_CHECK(c->slept().count() == expect_slept,
                  "slept " + num(c->slept().count()) + " expected " + num(expect_slept));
    if (in.u8() % 16 == 0) {
      const unsigned gu = give_ups;
      const noclobber::retry_decision i = c->on_interrupted(err);
      NC_FUZZ_CHECK(!i && i.reason == noclobber::stop_reason::cancelled && give_ups == gu + 1, "interrupted");
      if (pc.model) {
        pc.model->refund(last_taken);
        NC_FUZZ_CHECK(pc.policy.budget->available() == pc.model->tokens, "interrupted retry's tokens");
      }
      return;
    }
    elapsed += std::max<std::int64_t>(0, actual.count());
    elapsed += in.u8() % 2 ? in.edgy_i64() & ns_max : in.u16();
    if (elapsed > ns_max) elapsed = ns_max;
  }
}

// ---- cas_retry on virtual time ---------------------------------------------------------------

struct thrown_status {
  write_status s;
};

void fuzz_cas_retry(nc_fuzz::reader& in) {
  policy_case pc;
  policy_case_from(in, pc);
  std::stop_source& stop = pc.stop;
  const bool classify = in.flag();
  if (classify) {
    pc.policy.classify_exception = [](std::exception_ptr e) -> std::optional<write_status> {
      try {
        std::rethrow_exception(e);
      } catch (const thrown_status& t) {
        return t.s;
      } catch (...) {
        return std::nullopt;
      }
    };
  }
  noclobber::virtual_retry_env env(in.u64());
  const std::uint8_t stop_at_sleep = in.u8();
  env.on_sleep = [&](ns) {
    if (env.sleeps().size() == stop_at_sleep) stop.request_stop();
  };
  const std::string program = in.bytes(64);
  std::size_t step = 0;
  unsigned calls = 0;
  std::vector<i128> attempt_starts;  // virtual time since the start at each attempt
  const auto t0 = env.now();
  std::optional<write_status> decided_with;  // what the deciding attempt said
  auto attempt =
      [&](const noclobber::attempt_info& info) -> noclobber::attempt_result<noclobber::write_result<int>> {
    ++calls;
    NC_FUZZ_CHECK(info.number == calls, "attempt number");
    NC_FUZZ_CHECK(info.meter != nullptr, "meter");
    attempt_starts.push_back(static_cast<i128>((env.now() - t0).count()));
    const std::uint8_t op = step < program.size() ? static_cast<std::uint8_t>(program[step++]) : 0;
    info.meter->note_read(op);
    if (op & 0x80) env.advance(ns(std::int64_t{op & 0x0f} << (op & 0x30)));  // time spent in the attempt
    const write_status s = status_from(op);
    if ((op & 0x40) != 0) {
      if (s == write_status::applied) {  // decides, resting on some status
        decided_with = status_from(op >> 3);
        return noclobber::decided(*decided_with);
      }
      if (op & 0x08) throw thrown_status{s};
      throw std::logic_error("not classified");
    }
    if (s == write_status::applied) return noclobber::write_result<int>::make_applied(7);
    return noclobber::write_result<int>::make_failed(s, {"code", "msg"});
  };
  noclobber::retry_result<noclobber::write_result<int>> r;
  try {
    r = noclobber::cas_retry(pc.policy, attempt, env);
    NC_FUZZ_CHECK(pc.valid, "cas_retry accepted an invalid policy");
  } catch (const std::invalid_argument&) {
    NC_FUZZ_CHECK(!pc.valid, "cas_retry refused a valid policy");
    return;
  } catch (const std::logic_error&) {
    NC_FUZZ_CHECK(calls > 0, "logic_error before any attempt");  // an unclassified exception propagates
    return;
  } catch (const thrown_status&) {
    NC_FUZZ_CHECK(!classify, "classified exception propagated");
    return;
  }
  NC_FUZZ_CHECK(r.attempts == calls,
                "attempts " + std::to_string(r.attempts) + " != calls " + std::to_string(calls));
  NC_FUZZ_CHECK(r.attempts <= pc.policy.max_attempts, "attempts above max_attempts");
  // Every sleep within [0, cap]; their sum (saturated) is what the result reports, minus a sleep
  // the stop token cut short (virtual time does not move then).
  i128 sum = 0;
  const auto& sleeps = env.sleeps();
  for (std::size_t i = 0; i < sleeps.size(); ++i) {
    NC_FUZZ_CHECK(sleeps[i] >= ns::zero() && (sleeps[i] <= pc.policy.backoff.cap() ||
                                              pc.policy.backoff.kind() == backoff_kind::immediate),
                  "sleep outside [0, cap]");
    const bool interrupted =
        r.reason == noclobber::stop_reason::cancelled && i + 1 == sleeps.size() && stop.stop_requested();
    if (!interrupted) sum += sleeps[i].count();
  }
  const i128 expect = sum > ns_max ? ns_max : sum;
  if (env.now() == std::chrono::steady_clock::time_point::max()) {
    // Virtual time saturated: slept is what the clock could still show.
    NC_FUZZ_CHECK(r.slept.count() <= expect,
                  "slept " + num(r.slept.count()) + " > sum of sleeps " + num(sum));
  } else {
    NC_FUZZ_CHECK(r.slept.count() == expect,
                  "slept " + num(r.slept.count()) + " != sum of sleeps " + num(sum));
  }
  NC_FUZZ_CHECK(sleeps.size() + 1 >= r.attempts, "fewer sleeps than retries");
  // A retry is granted only when its backoff ends by the deadline: every attempt after the
  // first starts by then, counting the time spent inside the attempts before it.
  if (pc.policy.timeout != ns::max()) {
    for (std::size_t i = 1; i < attempt_starts.size(); ++i)
      NC_FUZZ_CHECK(attempt_starts[i] <= pc.policy.timeout.count(), "attempt started past the deadline");
  }
  if (r.ok()) NC_FUZZ_CHECK(r.last_error.empty() && r.last && r.last->ok(), "applied result");
  NC_FUZZ_CHECK((r.reason == noclobber::stop_reason::decided) == decided_with.has_value(), "decided reason");
  if (decided_with) {
    NC_FUZZ_CHECK(
        !r.ok() && !r.last && r.last_error.empty() && r.last_status == *decided_with && r.attempts == calls,
        "decided result");
  }
}

// ---- retry_budget against a model ------------------------------------------------------------

void fuzz_budget(nc_fuzz::reader& in) {
  std::optional<budget_model> model;
  std::shared_ptr<noclobber::retry_budget> b = budget_from(in, model);
  if (!b) return;
  while (!in.empty()) {
    const std::uint8_t op = in.u8();
    const write_status s = status_from(op >> 3);
    switch (op % 3) {
      case 0: {
        unsigned taken = 12345;
        const bool ok = b->try_acquire(s, taken);
        const unsigned cost = model->cost(s);
        NC_FUZZ_CHECK(b->cost_of(s) == cost, "cost_of");
        NC_FUZZ_CHECK(ok == (model->tokens >= cost), "try_acquire");
        NC_FUZZ_CHECK(taken == (ok ? cost : 0), "taken");
        if (ok) model->tokens -= cost;
        break;
      }
      case 1: {
        const unsigned n = in.flag() ? in.u32() : in.u8();
        b->on_success(n);
        model->refund(n != 0 ? n : model->cfg.success_refund);
        break;
      }
      default: {
        const unsigned n = in.flag() ? in.u32() : in.u8();
        b->refund(n);
        model->refund(n);
      }
    }
    NC_FUZZ_CHECK(b->available() == model->tokens && model->tokens <= model->cfg.capacity, "budget model");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nc_fuzz::reader in(data, size);
  switch (in.u8() % 5) {
    case 0:
      fuzz_policy(in);
      break;
    case 1:
      fuzz_meter(in);
      break;
    case 2:
      fuzz_controller(in);
      break;
    case 3:
      fuzz_cas_retry(in);
      break;
    default:
      fuzz_budget(in);
  }
  return 0;
}
