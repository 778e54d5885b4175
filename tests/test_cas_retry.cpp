#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <deque>
#include <exception>
#include <latch>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "noclobber/cas_retry.hpp"

using namespace std::chrono_literals;
using noclobber::attempt_info;
using noclobber::backoff_policy;
using noclobber::cas_retry;
using noclobber::retry_budget;
using noclobber::retry_policy;
using noclobber::stop_reason;
using noclobber::virtual_retry_env;
using noclobber::write_result;
using noclobber::write_status;
using ns = std::chrono::nanoseconds;

namespace {

// An attempt that plays back a script of outcomes and records what it was told.
struct scripted_attempt {
  std::deque<write_result<long>> script;
  std::vector<attempt_info> seen{};
  write_result<long> operator()(const attempt_info& info) {
    seen.push_back(info);
    REQUIRE(!script.empty());
    auto r = script.front();
    script.pop_front();
    return r;
  }
};

write_result<long> fail(write_status s, std::string code = {}) {
  return write_result<long>::make_failed(s, {std::move(code), "msg"});
}

retry_policy exponential_policy(unsigned attempts = 5) {
  retry_policy p;
  p.backoff = backoff_policy::exponential(10ms, 1s);
  p.max_attempts = attempts;
  return p;
}

// Runs cas_retry over attempts that each take a 10 ms read and a 10 ms write in virtual time,
// report the version they read through attempt_info::meter while others commit
// `commits_per_cycle` times per attempt, and are refused until the sixth: the five backoffs granted.
std::vector<ns> delays_on_a_versioned_row(retry_policy p, std::uint64_t seed,
                                          std::uint64_t commits_per_cycle) {
  p.max_attempts = 6;
  virtual_retry_env env(seed);
  std::vector<ns> granted;
  p.on_retry = [&](const noclobber::retry_event& e) { granted.push_back(e.delay); };
  std::uint64_t version = 100;
  int calls = 0;
  auto r = cas_retry(
      p,
      [&](const attempt_info& a) {
        REQUIRE(a.meter != nullptr);
        ++calls;
        env.advance(10ms);  // the read's round trip
        a.meter->note_read(version);
        version += commits_per_cycle;
        env.advance(10ms);  // the write's round trip
        return calls < 6 ? write_status::conflict : write_status::applied;
      },
      env);
  CHECK(r.ok());
  REQUIRE(granted.size() == 5);
  return granted;
}

}  // namespace

TEST_CASE("first-try success: one attempt, no sleep, no hooks", "[cas_retry]") {
  retry_policy p;
  int hooks = 0;
  p.on_retry = [&](const noclobber::retry_event&) { ++hooks; };
  p.on_give_up = [&](const noclobber::give_up_event&) { ++hooks; };
  virtual_retry_env env(1);
  scripted_attempt a{{write_result<long>::make_applied(42)}};
  auto r = cas_retry(p, a, env);
  CHECK(r.ok());
  CHECK(r.reason == stop_reason::applied);
  CHECK(r.attempts == 1);
  CHECK(r.slept == 0ns);
  REQUIRE(r.last);
  CHECK(*r.last->token == 42);
  CHECK(r.last_error.empty());
  CHECK(env.sleeps().empty());
  CHECK(hooks == 0);
  REQUIRE(a.seen.size() == 1);
  CHECK(a.seen[0].number == 1);
  CHECK(a.seen[0].reread);
}

TEST_CASE("conflicts are retried after exactly the policy's delays, re-reading each time", "[cas_retry]") {
  SECTION("exponential: 10, 20, 40 ms") {
    auto p = exponential_policy();
    virtual_retry_env env(1);
    scripted_attempt a{{fail(write_status::conflict), fail(write_status::absent), fail(write_status::exists),
                        write_result<long>::make_applied(7)}};
    auto r = cas_retry(p, a, env);
    CHECK(r.ok());
    CHECK(r.attempts == 4);
    CHECK(env.sleeps() == std::vector<ns>{10ms, 20ms, 40ms});
    CHECK(r.slept == 70ms);
    REQUIRE(a.seen.size() == 4);
    for (unsigned i = 0; i < 4; ++i) {
      CHECK(a.seen[i].number == i + 1);
      CHECK(a.seen[i].reread);
    }
  }
  SECTION("jittered kinds: the same delays the policy draws from an identically seeded engine") {
    for (const auto& b : {backoff_policy::full_jitter(10ms, 1s), backoff_policy::equal_jitter(10ms, 1s),
                          backoff_policy::decorrelated_jitter(10ms, 1s)}) {
      retry_policy p;
      p.backoff = b;
      p.max_attempts = 6;
      virtual_retry_env env(99);
      scripted_attempt a;
      for (int i = 0; i < 5; ++i) a.script.push_back(fail(write_status::conflict));
      a.script.push_back(write_result<long>::make_applied(1));
      auto r = cas_retry(p, a, env);
      CHECK(r.ok());
      std::mt19937_64 rng(99);
      std::vector<ns> expected;
      ns prev{0};
      for (unsigned n = 1; n <= 5; ++n) expected.push_back(prev = b.delay(n, prev, rng));
      CHECK(env.sleeps() == expected);
      ns total{0};
      for (ns d : expected) total += d;
      CHECK(r.slept == total);
    }
  }
}

TEST_CASE("transient resends the same request; transient_restart re-reads", "[cas_retry]") {
  auto p = exponential_policy();
  virtual_retry_env env(1);
  scripted_attempt a{{fail(write_status::transient), fail(write_status::transient_restart),
                      fail(write_status::transient), write_result<long>::make_applied(3)}};
  auto r = cas_retry(p, a, env);
  CHECK(r.ok());
  REQUIRE(a.seen.size() == 4);
  CHECK(a.seen[0].reread);
  CHECK_FALSE(a.seen[1].reread);  // after transient
  CHECK(a.seen[2].reread);        // after transient_restart
  CHECK_FALSE(a.seen[3].reread);
}

TEST_CASE("each stop reason, with attempts, time slept and the last error", "[cas_retry]") {
  virtual_retry_env env(1);
  SECTION("permanent stops at once") {
    auto p = exponential_policy();
    scripted_attempt a{{fail(write_status::conflict, "412"), fail(write_status::permanent, "413")}};
    auto r = cas_retry(p, a, env);
    CHECK(r.reason == stop_reason::permanent);
    CHECK(r.attempts == 2);
    CHECK(r.slept == 10ms);
    CHECK(r.last_error.code == "413");
    CHECK(r.last_error.message == "msg");
  }
  SECTION("indeterminate is handed back to the caller, never retried blindly") {
    auto p = exponential_policy();
    scripted_attempt a{{fail(write_status::indeterminate, "timeout")}};
    auto r = cas_retry(p, a, env);
    CHECK(r.reason == stop_reason::indeterminate);
    CHECK(r.attempts == 1);
    CHECK(r.last_error.code == "timeout");
  }
  SECTION("attempts_exhausted after max_attempts (default 5, as in the object_store_file fix)") {
    retry_policy p;
    p.backoff = backoff_policy::exponential(10ms, 1s);
    CHECK(p.max_attempts == 5);
    scripted_attempt a;
    for (int i = 0; i < 5; ++i) a.script.push_back(fail(write_status::conflict, "412"));
    auto r = cas_retry(p, a, env);
    CHECK(r.reason == stop_reason::attempts_exhausted);
    CHECK(r.attempts == 5);
    CHECK(r.slept == 150ms);  // 10 + 20 + 40 + 80
    CHECK(env.sleeps().size() == 4);
    CHECK(r.last_error.code == "412");
    CHECK(r.last->status == write_status::conflict);
  }
  SECTION("deadline: no backoff that would end after it is started") {
    auto p = exponential_policy(100);
    p.timeout = 25ms;
    scripted_attempt a;
    for (int i = 0; i < 10; ++i) a.script.push_back(fail(write_status::conflict));
    auto r = cas_retry(p, a, env);
    // attempt 1 at 0 -> sleep 10ms -> attempt 2 at 10ms -> next backoff 20ms would end at 30ms > 25ms
    CHECK(r.reason == stop_reason::deadline);
    CHECK(r.attempts == 2);
    CHECK(r.slept == 10ms);
  }
  SECTION("deadline: slow attempts use it up too") {
    auto p = exponential_policy(100);
    p.timeout = 1s;
    int calls = 0;
    auto r = cas_retry(
        p,
        [&] {
          ++calls;
          env.advance(600ms);  // each attempt takes 600 ms of virtual time
          return write_status::conflict;
        },
        env);
    CHECK(r.reason == stop_reason::deadline);
    CHECK(r.attempts == 2);  // 0..600, sleep 10, 610..1210 > 1s
    CHECK(calls == 2);
  }
  SECTION("timeout 0: one attempt, then the deadline") {
    auto p = exponential_policy();
    p.timeout = 0ns;
    auto r = cas_retry(
        p, [] { return write_status::conflict; }, env);
    CHECK(r.reason == stop_reason::deadline);
    CHECK(r.attempts == 1);
  }
  SECTION("budget_exhausted when the shared bucket runs dry") {
    auto p = exponential_policy(100);
    p.budget = std::make_shared<retry_budget>(retry_budget::config{12, 5, 10, 1});
    auto r = cas_retry(
        p, [] { return write_status::conflict; }, env);
    CHECK(r.reason == stop_reason::budget_exhausted);
    CHECK(r.attempts == 3);  // 12 -> 7 -> 2: two retries granted
    CHECK(p.budget->available() == 2);
  }
  SECTION("a transient retry costs more than a conflict retry") {
    auto p = exponential_policy(100);
    p.budget = std::make_shared<retry_budget>(retry_budget::config{25, 5, 10, 1});
    auto r = cas_retry(
        p, [] { return write_status::transient; }, env);
    CHECK(r.reason == stop_reason::budget_exhausted);
    CHECK(r.attempts == 3);  // 25 -> 15 -> 5
    CHECK(p.budget->available() == 5);
  }
}

TEST_CASE("the budget refunds: last retry's tokens on success, 1 on a first-try success", "[cas_retry]") {
  auto p = exponential_policy();
  p.budget = std::make_shared<retry_budget>(retry_budget::config{100, 5, 10, 1});
  virtual_retry_env env(1);
  scripted_attempt a{
      {fail(write_status::conflict), fail(write_status::transient), write_result<long>::make_applied(1)}};
  auto r = cas_retry(p, a, env);
  CHECK(r.ok());
  CHECK(p.budget->available() == 100 - 5 - 10 + 10);
  auto r2 = cas_retry(
      p, [] { return write_status::applied; }, env);
  CHECK(r2.ok());
  CHECK(p.budget->available() == 96);
  for (int i = 0; i < 10; ++i)
    (void)cas_retry(
        p, [] { return write_status::applied; }, env);
  CHECK(p.budget->available() == 100);  // never above capacity
}

TEST_CASE("cancellation: before the start and during a virtual sleep", "[cas_retry]") {
  virtual_retry_env env(1);
  std::stop_source src;
  auto p = exponential_policy();
  p.stop = src.get_token();
  int give_ups = 0;
  stop_reason seen = stop_reason::applied;
  p.on_give_up = [&](const noclobber::give_up_event& e) {
    ++give_ups;
    seen = e.reason;
  };
  SECTION("already cancelled: no attempt at all") {
    src.request_stop();
    int calls = 0;
    auto r = cas_retry(
        p, [&] { return ++calls, write_status::applied; }, env);
    CHECK(r.reason == stop_reason::cancelled);
    CHECK(r.attempts == 0);
    CHECK_FALSE(r.last);
    CHECK(calls == 0);
    CHECK(give_ups == 1);
  }
  SECTION("stop requested while sleeping: wakes, returns the tokens, reports cancelled") {
    p.budget = std::make_shared<retry_budget>();
    env.on_sleep = [&](ns) { src.request_stop(); };
    auto r = cas_retry(
        p, [] { return write_status::conflict; }, env);
    CHECK(r.reason == stop_reason::cancelled);
    CHECK(r.attempts == 1);
    CHECK(r.slept == 0ns);
    CHECK(p.budget->available() == 500);
    CHECK(give_ups == 1);
    CHECK(seen == stop_reason::cancelled);
  }
  SECTION("stop requested by the attempt: no further sleep") {
    auto r = cas_retry(
        p, [&] { return src.request_stop(), write_status::conflict; }, env);
    CHECK(r.reason == stop_reason::cancelled);
    CHECK(r.attempts == 1);
    CHECK(env.sleeps().empty());
  }
}

TEST_CASE("cancellation wakes a real sleep promptly", "[cas_retry][concurrency]") {
  // The backoff is an hour: if the stop token did not wake the sleep, this test would hang.
  std::stop_source src;
  retry_policy p;
  p.backoff = backoff_policy::exponential(1h, 2h);
  p.stop = src.get_token();
  std::atomic<bool> attempted{false};
  std::thread canceller([&] {
    while (!attempted.load()) std::this_thread::yield();
    std::this_thread::sleep_for(20ms);  // let cas_retry enter its sleep (either way it must return)
    src.request_stop();
  });
  auto r = cas_retry(p, [&] {
    attempted = true;
    return write_status::conflict;
  });
  canceller.join();
  CHECK(r.reason == stop_reason::cancelled);
  CHECK(r.attempts == 1);
  CHECK(r.slept < 1h);
}

TEST_CASE("hooks see every retry and the give-up, with the store's words", "[cas_retry]") {
  auto p = exponential_policy(3);
  std::vector<noclobber::retry_event> retries;
  std::vector<std::string> codes;
  std::vector<noclobber::give_up_event> give_ups;
  std::string give_up_code;
  p.on_retry = [&](const noclobber::retry_event& e) {
    retries.push_back(e);
    codes.push_back(e.error.code);
  };
  p.on_give_up = [&](const noclobber::give_up_event& e) {
    give_ups.push_back(e);
    give_up_code = e.last_error.code;
  };
  virtual_retry_env env(1);
  scripted_attempt a{{fail(write_status::conflict, "412"), fail(write_status::transient, "503"),
                      fail(write_status::conflict, "412b")}};
  auto r = cas_retry(p, a, env);
  CHECK(r.reason == stop_reason::attempts_exhausted);
  REQUIRE(retries.size() == 2);
  CHECK(retries[0].attempt == 1);
  CHECK(retries[0].status == write_status::conflict);
  CHECK(retries[0].delay == 10ms);
  CHECK(retries[0].slept == 0ns);
  CHECK(retries[0].reread);
  CHECK(retries[1].attempt == 2);
  CHECK(retries[1].status == write_status::transient);
  CHECK(retries[1].delay == 20ms);
  CHECK(retries[1].slept == 10ms);
  CHECK_FALSE(retries[1].reread);
  CHECK(codes == std::vector<std::string>{"412", "503"});
  REQUIRE(give_ups.size() == 1);
  CHECK(give_ups[0].reason == stop_reason::attempts_exhausted);
  CHECK(give_ups[0].attempts == 3);
  CHECK(give_ups[0].slept == 30ms);
  CHECK(give_ups[0].last_status == write_status::conflict);
  CHECK(give_up_code == "412b");
}

TEST_CASE("exceptions propagate unchanged unless classified", "[cas_retry]") {
  struct store_down : std::runtime_error {
    using std::runtime_error::runtime_error;
    int id = 17;
  };
  virtual_retry_env env(1);
  SECTION("no classifier: the very exception comes out, after one attempt") {
    auto p = exponential_policy();
    int calls = 0;
    try {
      (void)cas_retry(
          p, [&]() -> write_status { ++calls, throw store_down("down"); }, env);
      FAIL("no exception");
    } catch (const store_down& e) {
      CHECK(e.id == 17);
      CHECK(std::string(e.what()) == "down");
    }
    CHECK(calls == 1);
    CHECK(env.sleeps().empty());
  }
  SECTION("classified as transient: retried; the final stop names the exception") {
    auto p = exponential_policy(3);
    p.classify_exception = [](std::exception_ptr e) -> std::optional<write_status> {
      try {
        std::rethrow_exception(e);
      } catch (const store_down&) {
        return write_status::transient;
      } catch (...) {
        return std::nullopt;
      }
    };
    int calls = 0;
    auto r = cas_retry(
        p, [&]() -> write_result<long> { ++calls, throw store_down("connection reset"); }, env);
    CHECK(r.reason == stop_reason::attempts_exhausted);
    CHECK(calls == 3);
    CHECK_FALSE(r.last);
    CHECK(r.last_error.code == "exception");
    CHECK(r.last_error.message == "connection reset");

    // A classifier that declines: the original exception, unchanged.
    CHECK_THROWS_AS(cas_retry(
                        p, []() -> write_status { throw std::logic_error("bug"); }, env),
                    std::logic_error);
  }
  SECTION("a throwing hook propagates and gives its tokens back") {
    auto p = exponential_policy();
    p.budget = std::make_shared<retry_budget>();
    p.on_retry = [](const noclobber::retry_event&) { throw std::runtime_error("hook"); };
    CHECK_THROWS_WITH(cas_retry(
                          p, [] { return write_status::conflict; }, env),
                      "hook");
    CHECK(p.budget->available() == 500);
  }
}

TEST_CASE("bad policies are rejected at the boundary", "[cas_retry]") {
  virtual_retry_env env(1);
  retry_policy p;
  p.max_attempts = 0;
  CHECK_THROWS_WITH(cas_retry(
                        p, [] { return write_status::applied; }, env),
                    Catch::Contains("max_attempts must be >= 1, got 0"));
  p.max_attempts = 1;
  p.timeout = -1ms;
  CHECK_THROWS_WITH(cas_retry(
                        p, [] { return write_status::applied; }, env),
                    Catch::Contains("timeout must be >= 0, got -1000000ns"));
  CHECK_THROWS_WITH(retry_budget(retry_budget::config{0, 5, 10, 1}), Catch::Contains("capacity must be > 0"));
  CHECK_THROWS_WITH(retry_budget(retry_budget::config{8, 5, 10, 1}),
                    Catch::Contains("transient_cost 10 exceeds capacity 8"));
}

TEST_CASE("retry_controller drives a loop without cas_retry (as an async form does)", "[cas_retry]") {
  retry_policy p = exponential_policy(4);
  p.timeout = 1s;
  noclobber::retry_controller c(p);
  std::mt19937_64 rng(1);
  const noclobber::store_error err{"412", "precondition failed"};
  REQUIRE(c.needs_clock());
  REQUIRE_FALSE(c.cancelled_before_start());
  CHECK(c.next_attempt().number == 1);
  auto d = c.on_outcome(write_status::conflict, err, 5ms, rng);
  REQUIRE(d);
  CHECK(d.delay == 10ms);
  CHECK(d.reread);
  c.on_slept(10ms);
  CHECK(c.next_attempt().number == 2);
  d = c.on_outcome(write_status::transient, err, 20ms, rng);
  REQUIRE(d);
  CHECK(d.delay == 20ms);
  CHECK_FALSE(d.reread);
  CHECK_FALSE(c.next_attempt().reread);
  c.on_slept(20ms);
  d = c.on_outcome(write_status::applied, {}, 45ms, rng);
  CHECK_FALSE(d);
  CHECK(d.reason == stop_reason::applied);
  CHECK(c.attempts() == 3);
  CHECK(c.slept() == 30ms);
  CHECK(c.last_status() == write_status::applied);
}

TEST_CASE("attempt shapes: no arguments, plain write_status, a custom result type", "[cas_retry]") {
  virtual_retry_env env(1);
  auto p = exponential_policy();
  int n = 0;
  auto r1 = cas_retry(
      p, [&] { return ++n < 2 ? write_status::conflict : write_status::applied; }, env);
  static_assert(std::is_same_v<decltype(r1), noclobber::retry_result<write_status>>);
  CHECK(r1.ok());
  CHECK(*r1.last == write_status::applied);
  struct my_result {
    write_status status;
    int payload;
  };
  auto r2 = cas_retry(
      p,
      [](const attempt_info& i) {
        return my_result{write_status::permanent, int(i.number)};
      },
      env);
  CHECK(r2.reason == stop_reason::permanent);
  CHECK(r2.last->payload == 1);
  CHECK(r2.last_error.empty());
  // The real-time overload with an attempt that succeeds at once never sleeps.
  auto r3 = cas_retry(p, [] { return write_status::applied; });
  CHECK(r3.ok());
}

TEST_CASE("one budget drained by many threads grants exactly capacity / cost retries",
          "[cas_retry][race][concurrency]") {
  constexpr unsigned capacity = 2000, cost = 5, threads = 8;
  auto budget = std::make_shared<retry_budget>(retry_budget::config{capacity, cost, cost, 1});
  retry_policy p;
  p.backoff = backoff_policy::immediate();
  p.max_attempts = UINT_MAX;
  p.budget = budget;
  std::atomic<unsigned> retries{0};
  std::atomic<unsigned> exhausted{0};
  p.on_retry = [&](const noclobber::retry_event&) { retries.fetch_add(1, std::memory_order_relaxed); };
  std::latch start(threads);  // every thread exists before any draws
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      start.arrive_and_wait();
      // Each thread runs loops until the shared bucket refuses it.
      for (;;) {
        auto r = cas_retry(p, [] { return write_status::conflict; });
        if (r.reason == stop_reason::budget_exhausted) {
          exhausted.fetch_add(1);
          break;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(retries.load() == capacity / cost);
  CHECK(exhausted.load() == threads);
  CHECK(budget->available() == 0);
}

TEST_CASE("retry_budget under concurrent acquire and refund stays within [0, capacity]",
          "[retry_budget][race][concurrency]") {
  retry_budget budget(retry_budget::config{100, 7, 7, 1});
  std::atomic<bool> over{false};
  std::latch start(8);
  std::vector<std::thread> pool;
  for (int t = 0; t < 8; ++t) {
    pool.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < 20000; ++i) {
        unsigned taken = 0;
        if (budget.try_acquire(write_status::conflict, taken)) {
          if (taken != 7) over = true;
          budget.refund(taken);
        }
        if (budget.available() > 100) over = true;
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK_FALSE(over.load());
  CHECK(budget.available() == 100);  // every token taken was given back
}

TEST_CASE("commit_rate through cas_retry: the attempt reports versions, the meter times them",
          "[cas_retry][commit_rate]") {
  retry_policy p;
  p.backoff = backoff_policy::commit_rate(10ms, 1s, 2.0);
  // One commit by someone else per attempt: a quiet row.
  const std::vector<ns> granted = delays_on_a_versioned_row(p, 3, 1);
  // Retry 1 has no rate yet: full jitter over [0, 10ms]. From retry 2 the meter sees one commit
  // per cycle and a 10 ms read-to-refusal window, so the window stays near 1.5 * 10 ms / (1-b)^2
  // with b well below the 0.8 clamp: never the 40 ms, 80 ms ... of plain full jitter.
  CHECK(granted[0] <= 10ms);
  for (std::size_t i = 1; i < granted.size(); ++i) {
    INFO("retry " << i + 1 << " delay " << granted[i].count());
    CHECK(granted[i] <= 60ms);
  }

  // A controller fed directly (as the simulation and async drivers do).
  noclobber::retry_controller c(p);
  std::mt19937_64 rng(1);
  c.meter().observe(1, 0ms, 10ms);
  (void)c.on_outcome(write_status::conflict, {}, 0ns, rng);
  c.meter().observe(1, 30ms, 40ms);  // no commits: an idle row
  CHECK(c.meter().busy() == Approx(0.0));
  const auto d = c.on_outcome(write_status::conflict, {}, 0ns, rng);
  REQUIRE(d);
  CHECK(d.delay <= 15ms);  // 1.5 * 10 ms / 1^2, not full jitter's 20 ms
}

TEST_CASE("virtual_retry_env: sleeps of nanoseconds::max() saturate virtual time", "[cas_retry]") {
  // Found by tests/fuzz/fuzz_backoff: a policy whose cap is nanoseconds::max() made the second
  // sleep overflow the virtual clock (undefined behaviour; in practice time ran backwards).
  using tp = std::chrono::steady_clock::time_point;
  virtual_retry_env env(1);
  env.advance(ns::max());
  env.advance(ns::max());
  CHECK(env.now() == tp::max());
  env.advance(-ns::max());
  CHECK(env.now() == tp(ns(0)));
  env.advance(ns::min());
  env.advance(ns::min());
  CHECK(env.now() == tp::min());

  retry_policy p;
  p.backoff = backoff_policy::exponential(ns::max(), ns::max());
  p.max_attempts = 4;
  virtual_retry_env v(1);
  auto r = cas_retry(
      p, [] { return write_status::conflict; }, v);
  CHECK(r.reason == stop_reason::attempts_exhausted);
  CHECK(r.attempts == 4);
  REQUIRE(v.sleeps().size() == 3);
  CHECK(v.now() == tp::max());
  CHECK(r.slept == ns::max());
}

TEST_CASE("decided: an attempt settles the loop without a write; reason says so", "[cas_retry][decided]") {
  // Before attempt_result, an attempt that had nothing to write returned `applied` to stop the
  // loop, and the result said stop_reason::applied. Now the reason is decided.
  virtual_retry_env env(1);
  retry_policy p = exponential_policy();
  auto budget = std::make_shared<retry_budget>(retry_budget::config{20, 5, 10, 1});
  p.budget = budget;
  int give_ups = 0;
  p.on_give_up = [&](const noclobber::give_up_event&) { ++give_ups; };
  int n = 0;
  auto r = cas_retry(
      p,
      [&](const attempt_info&) -> noclobber::attempt_result<write_result<long>> {
        if (++n == 1) return fail(write_status::conflict);
        return noclobber::decided(write_status::conflict);  // e.g. a patch dropped on conflict
      },
      env);
  static_assert(std::is_same_v<decltype(r), noclobber::retry_result<write_result<long>>>);
  CHECK(r.reason == stop_reason::decided);
  CHECK_FALSE(r.ok());
  CHECK_FALSE(r.last);
  CHECK(r.attempts == 2);
  CHECK(r.last_status == write_status::conflict);
  CHECK(r.last_error.empty());
  CHECK(give_ups == 0);              // deciding is not giving up
  CHECK(budget->available() == 20);  // the retry's tokens came back, as after a success
  CHECK(env.sleeps() == std::vector<ns>{10ms});
  CHECK(noclobber::to_string(stop_reason::decided) == "decided");

  // An attempt_result that carries a store outcome behaves as the outcome itself.
  auto applied = cas_retry(
      p, [](const attempt_info&) -> noclobber::attempt_result<write_status> { return write_status::applied; },
      env);
  CHECK(applied.ok());
  CHECK(*applied.last == write_status::applied);
  static_assert(std::is_base_of_v<noclobber::retry_stats, noclobber::retry_result<write_status>>);
}

TEST_CASE("classify_attempt_exception: the policy's mapping and the words it is reported with",
          "[cas_retry][exceptions]") {
  retry_policy p;
  auto boom = std::make_exception_ptr(std::runtime_error("connection reset"));
  CHECK_FALSE(noclobber::detail::classify_attempt_exception(p, boom));  // no mapping: rethrow
  p.classify_exception = [&boom](std::exception_ptr e) -> std::optional<write_status> {
    if (e == boom) return write_status::transient;  // this one is worth a retry; others rethrow
    return std::nullopt;
  };
  auto mapped = noclobber::detail::classify_attempt_exception(p, boom);
  REQUIRE(mapped);
  CHECK(mapped->first == write_status::transient);
  CHECK(mapped->second == noclobber::store_error{"exception", "connection reset"});
  CHECK_FALSE(noclobber::detail::classify_attempt_exception(p, std::make_exception_ptr(42)));
}

TEST_CASE("the first attempt runs ahead of the loop state when it can; the loop is the same either way",
          "[cas_retry][first_attempt]") {
  // A plain policy (no deadline, no meter, not cancelled) runs attempt 1 before any loop state
  // exists; a deadline sends the whole loop through the general path. Both must count, sleep,
  // call hooks, classify exceptions and decide alike.
  retry_policy plain = exponential_policy(6);
  retry_policy timed = exponential_policy(6);
  timed.timeout = std::chrono::hours(1);
  REQUIRE(noclobber::retry_controller::plain_first_attempt(plain));
  REQUIRE_FALSE(noclobber::retry_controller::plain_first_attempt(timed));
  retry_policy cancelled = plain;
  std::stop_source source;
  source.request_stop();
  cancelled.stop = source.get_token();
  CHECK_FALSE(noclobber::retry_controller::plain_first_attempt(cancelled));
  retry_policy metered = plain;
  metered.backoff = backoff_policy::load_tracking();
  CHECK_FALSE(noclobber::retry_controller::plain_first_attempt(metered));
  retry_policy invalid = plain;
  invalid.max_attempts = 0;
  CHECK_FALSE(noclobber::retry_controller::plain_first_attempt(invalid));
  CHECK_THROWS_AS(cas_retry(invalid, [] { return write_status::applied; }), std::invalid_argument);

  struct run_record {
    noclobber::retry_result<write_result<long>> result;
    std::vector<ns> sleeps;
    std::vector<std::string> hooks;
    std::vector<attempt_info> seen;
    unsigned budget_left;
  };
  auto run = [](retry_policy p, std::deque<write_result<long>> script, bool throw_first) {
    auto budget = std::make_shared<retry_budget>(retry_budget::config{100, 5, 10, 1});
    p.budget = budget;
    run_record rec{};
    p.on_retry = [&](const noclobber::retry_event& e) {
      rec.hooks.push_back("retry " + std::to_string(e.attempt) + " " + std::string(to_string(e.status)) +
                          " " + e.error.code);
    };
    p.on_give_up = [&](const noclobber::give_up_event& e) {
      rec.hooks.push_back("give_up " + std::string(to_string(e.reason)));
    };
    p.classify_exception = [](std::exception_ptr) {
      return std::optional<write_status>(write_status::transient);
    };
    virtual_retry_env env(7);
    scripted_attempt a{std::move(script)};
    int calls = 0;
    rec.result = cas_retry(
        p,
        [&](const attempt_info& info) {
          REQUIRE(info.meter != nullptr);  // every attempt may feed a meter, whatever the policy
          info.meter->note_read(41);
          if (++calls == 1 && throw_first) {
            a.seen.push_back(info);
            throw std::runtime_error("store went away");
          }
          return a(info);
        },
        env);
    rec.sleeps = env.sleeps();
    rec.seen = a.seen;
    rec.budget_left = budget->available();
    return rec;
  };
  const std::deque<write_result<long>> scripts[] = {
      {write_result<long>::make_applied(1)},
      {fail(write_status::conflict, "412"), fail(write_status::transient, "503"),
       write_result<long>::make_applied(3)},
      {fail(write_status::permanent, "400")},
      {fail(write_status::conflict), fail(write_status::conflict), fail(write_status::conflict),
       fail(write_status::conflict), fail(write_status::conflict), fail(write_status::conflict)},
      {fail(write_status::indeterminate, "timeout")},
  };
  for (const auto& script : scripts) {
    for (bool throw_first : {false, true}) {
      auto script_for_run = script;
      if (throw_first && script_for_run.size() == 6) script_for_run.pop_back();  // the throw is attempt 1
      const run_record a = run(plain, script_for_run, throw_first);
      const run_record b = run(timed, script_for_run, throw_first);
      INFO("script of " << script.size() << (throw_first ? ", first attempt throws" : ""));
      CHECK(a.result.reason == b.result.reason);
      CHECK(a.result.attempts == b.result.attempts);
      CHECK(a.result.slept == b.result.slept);
      CHECK(a.result.last_status == b.result.last_status);
      CHECK(a.result.last_error == b.result.last_error);
      CHECK(a.result.last.has_value() == b.result.last.has_value());
      CHECK(a.sleeps == b.sleeps);
      CHECK(a.hooks == b.hooks);
      CHECK(a.budget_left == b.budget_left);
      REQUIRE(a.seen.size() == b.seen.size());
      for (std::size_t i = 0; i < a.seen.size(); ++i) {
        CHECK(a.seen[i].number == b.seen[i].number);
        CHECK(a.seen[i].reread == b.seen[i].reread);
      }
    }
  }
  // Spot checks of what both produced.
  const run_record ok = run(plain, scripts[1], false);
  CHECK(ok.result.ok());
  CHECK(ok.result.attempts == 3);
  CHECK(ok.sleeps == std::vector<ns>{10ms, 20ms});
  CHECK(ok.hooks == std::vector<std::string>{"retry 1 conflict 412", "retry 2 transient 503"});
  CHECK_FALSE(ok.seen[2].reread);  // after transient: resend without reading
  const run_record thrown = run(plain, scripts[0], true);
  CHECK(thrown.result.ok());
  CHECK(thrown.result.attempts == 2);
  CHECK(thrown.hooks == std::vector<std::string>{"retry 1 transient exception"});
  CHECK(run(plain, scripts[0], false).budget_left == 100);  // a first-try success refunds (full: stays)
}

TEST_CASE("load_tracking through cas_retry: the attempt reports versions, the row's load steers the window",
          "[cas_retry][load_tracking]") {
  // A row that commits 10 times per cycle keeps every load sample at the cap: the window grows
  // from 5 * 10 ms by e^(3.7 * 0.4) per sample, to the 1 s cap. A row nobody else writes keeps
  // the window at the 10 ms base. Full jitter would grant 10, 20, 40, 80, 160 ms ceilings.
  retry_policy p;
  p.backoff = backoff_policy::load_tracking();
  auto granted_with = [&](std::uint64_t commits_per_cycle) {
    return delays_on_a_versioned_row(p, 11, commits_per_cycle);
  };
  const auto busy = granted_with(10);
  const auto quiet = granted_with(0);
  CHECK(busy[0] <= 10ms);  // retry 1: full jitter's first step
  CHECK(quiet[0] <= 10ms);
  ns busy_total{0};
  for (std::size_t i = 1; i < busy.size(); ++i) busy_total += busy[i];
  CHECK(busy_total > 300ms);  // well past full jitter's 20 + 40 + 80 + 160 ms (windows 220 ms .. 1 s)
  for (std::size_t i = 1; i < quiet.size(); ++i) CHECK(quiet[i] <= 10ms);
  for (ns d : busy) CHECK(d <= 1s);
}
