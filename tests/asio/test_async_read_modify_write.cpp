// Tests of async_cas_retry, the async store contract (sync_store_adapter over memory_store) and
// async_read_modify_write / async_locked_read_modify_write: the same decisions and results as
// the synchronous forms, backoff on a timer that stop tokens and Asio cancellation wake, and exact
// counters under real races.
#include <noclobber/asio/async_cas_retry.hpp>
#include <noclobber/asio/async_read_modify_write.hpp>
#include <noclobber/asio/async_store.hpp>
#include <noclobber/memory_store.hpp>
#include <noclobber/read_modify_write.hpp>

#include <atomic>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <exception>
#include <latch>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using noclobber::attempt_info;
using noclobber::stop_reason;
using noclobber::write_status;

namespace {

using store_type = noclobber::memory_store<std::string, long>;
using adapter_type = noclobber::sync_store_adapter<store_type>;
static_assert(noclobber::async_conditional_writer<adapter_type>);
static_assert(noclobber::async_erasable_writer<adapter_type>);
static_assert(!noclobber::async_conditional_writer<store_type>);

// Runs one coroutine to completion on a fresh single-threaded io_context, rethrowing what it throws.
template <class T>
T run_one(asio::awaitable<T> a) {
  asio::io_context io;
  std::optional<T> out;
  std::exception_ptr failure;
  asio::co_spawn(io, std::move(a), [&](std::exception_ptr e, T v) {
    failure = e;
    if (!e) out.emplace(std::move(v));
  });
  io.run();
  if (failure) std::rethrow_exception(failure);
  return std::move(*out);
}

noclobber::retry_policy immediate_policy(unsigned attempts) {
  noclobber::retry_policy p;
  p.backoff = noclobber::backoff_policy::immediate();
  p.max_attempts = attempts;
  return p;
}

}  // namespace

TEST_CASE("async_cas_retry makes the same decisions as cas_retry") {
  const std::vector<std::vector<write_status>> scripts = {
      {write_status::applied},
      {write_status::conflict, write_status::transient, write_status::applied},
      {write_status::conflict, write_status::conflict, write_status::conflict, write_status::conflict},
      {write_status::transient_restart, write_status::permanent},
      {write_status::absent, write_status::indeterminate},
      {write_status::exists, write_status::transient, write_status::transient, write_status::applied},
  };
  for (const auto& script : scripts) {
    auto policy = immediate_policy(3);
    std::vector<bool> sync_rereads, async_rereads;
    std::vector<unsigned> sync_hooks, async_hooks;
    std::size_t i = 0;
    policy.on_retry = [&](const noclobber::retry_event& e) { sync_hooks.push_back(e.attempt); };
    auto sync = noclobber::cas_retry(policy, [&](const attempt_info& a) {
      sync_rereads.push_back(a.reread);
      return script[i++];
    });
    i = 0;
    policy.on_retry = [&](const noclobber::retry_event& e) { async_hooks.push_back(e.attempt); };
    auto async = run_one(
        noclobber::async_cas_retry(policy, [&](const attempt_info& a) -> asio::awaitable<write_status> {
          async_rereads.push_back(a.reread);
          co_return script[i++];
        }));
    CHECK(async.reason == sync.reason);
    CHECK(async.attempts == sync.attempts);
    CHECK(async.last == sync.last);
    CHECK(async_rereads == sync_rereads);
    CHECK(async_hooks == sync_hooks);
  }
}

TEST_CASE("async_cas_retry: an attempt that decides stops the loop as cas_retry does") {
  int n = 0;
  auto attempt = [&](const attempt_info&) -> asio::awaitable<noclobber::attempt_result<write_status>> {
    if (++n == 1) co_return write_status::conflict;
    co_return noclobber::decided();
  };
  auto async = run_one(noclobber::async_cas_retry(immediate_policy(5), attempt));
  n = 0;
  auto sync = noclobber::cas_retry(immediate_policy(5),
                                   [&](const attempt_info&) -> noclobber::attempt_result<write_status> {
                                     if (++n == 1) return write_status::conflict;
                                     return noclobber::decided();
                                   });
  CHECK(async.reason == stop_reason::decided);
  CHECK(async.reason == sync.reason);
  CHECK(async.attempts == 2);
  CHECK(async.attempts == sync.attempts);
  CHECK(async.last_status == write_status::applied);
  CHECK_FALSE(async.last);
}

TEST_CASE("async_cas_retry stop reasons") {
  SECTION("attempts_exhausted, with the store's words") {
    auto r = run_one(noclobber::async_cas_retry(immediate_policy(4), [] {
      return noclobber::write_result<long>::make_failed(write_status::conflict,
                                                        {"412", "precondition failed"});
    }));
    CHECK(r.reason == stop_reason::attempts_exhausted);
    CHECK(r.attempts == 4);
    CHECK(r.last_error.code == "412");
  }
  SECTION("deadline: a backoff that would end after it is refused") {
    noclobber::retry_policy p;
    p.backoff = noclobber::backoff_policy::exponential(50ms, 1s);
    p.max_attempts = 100;
    p.timeout = 20ms;
    auto r = run_one(noclobber::async_cas_retry(p, [] { return write_status::conflict; }));
    CHECK(r.reason == stop_reason::deadline);
    CHECK(r.attempts == 1);
  }
  SECTION("budget_exhausted") {
    noclobber::retry_policy p = immediate_policy(100);
    p.budget = std::make_shared<noclobber::retry_budget>(noclobber::retry_budget::config{10, 5, 10, 1});
    auto r = run_one(noclobber::async_cas_retry(p, [] { return write_status::conflict; }));
    CHECK(r.reason == stop_reason::budget_exhausted);
    CHECK(r.attempts == 3);  // two retries of 5 tokens each, then the bucket is empty
  }
  SECTION("cancelled before the start by the stop token") {
    std::stop_source src;
    src.request_stop();
    noclobber::retry_policy p = immediate_policy(3);
    p.stop = src.get_token();
    int calls = 0;
    auto r = run_one(noclobber::async_cas_retry(p, [&] {
      ++calls;
      return write_status::applied;
    }));
    CHECK(r.reason == stop_reason::cancelled);
    CHECK(calls == 0);
  }
  SECTION("classify_exception turns a throw into an outcome; unmapped throws propagate") {
    noclobber::retry_policy p = immediate_policy(2);
    p.classify_exception = [](std::exception_ptr e) -> std::optional<write_status> {
      try {
        std::rethrow_exception(e);
      } catch (const std::runtime_error&) {
        return write_status::transient;
      } catch (...) {
        return std::nullopt;
      }
    };
    auto r = run_one(noclobber::async_cas_retry(p, []() -> asio::awaitable<write_status> {
      throw std::runtime_error("connection reset");
      co_return write_status::applied;
    }));
    CHECK(r.reason == stop_reason::attempts_exhausted);
    CHECK(r.last_error.code == "exception");
    CHECK(r.last_error.message == "connection reset");
    CHECK_THROWS_AS(
        run_one(noclobber::async_cas_retry(p, []() -> write_status { throw std::logic_error("bug"); })),
        std::logic_error);
  }
  SECTION("an invalid policy is rejected") {
    CHECK_THROWS_AS(
        run_one(noclobber::async_cas_retry(immediate_policy(0), [] { return write_status::applied; })),
        std::invalid_argument);
  }
}

TEST_CASE("a stop request from another thread wakes an hour-long backoff at once", "[concurrency]") {
  std::stop_source src;
  noclobber::retry_policy p;
  p.backoff = noclobber::backoff_policy::exponential(1h, 2h);
  p.stop = src.get_token();
  std::atomic<int> attempts{0};
  std::jthread stopper([&] {
    while (attempts.load() == 0) std::this_thread::yield();
    std::this_thread::sleep_for(1ms);  // let the backoff start (either order is correct)
    src.request_stop();
  });
  // If the timer were not cancelled, this would run for an hour (the ctest timeout fails it).
  auto r = run_one(noclobber::async_cas_retry(p, [&] {
    attempts.fetch_add(1);
    return write_status::conflict;
  }));
  CHECK(r.reason == stop_reason::cancelled);
  CHECK(r.attempts == 1);
}

TEST_CASE("Asio cancellation of the coroutine wakes a backoff and stops the loop") {
  using namespace asio::experimental::awaitable_operators;
  noclobber::retry_policy p;
  p.backoff = noclobber::backoff_policy::exponential(1h, 2h);
  bool gave_up_cancelled = false;
  p.on_give_up = [&](const noclobber::give_up_event& e) {
    gave_up_cancelled = e.reason == stop_reason::cancelled;
  };
  auto r = run_one([&]() -> asio::awaitable<std::size_t> {
    asio::steady_timer t(co_await asio::this_coro::executor, 5ms);
    auto v = co_await (noclobber::async_cas_retry(p, [] { return write_status::conflict; }) ||
                       t.async_wait(asio::use_awaitable));
    if (v.index() == 0) CHECK(std::get<0>(v).reason == stop_reason::cancelled);
    co_return v.index();
  }());
  CHECK(r == 1);  // the timer won; the retry loop was cancelled, not left sleeping
  CHECK(gave_up_cancelled);
}

TEST_CASE("Asio cancellation that arrives during an attempt ends the loop as cancelled") {
  asio::io_context io;
  asio::cancellation_signal signal;
  noclobber::retry_policy p = immediate_policy(10);
  p.budget = std::make_shared<noclobber::retry_budget>();
  const unsigned full = p.budget->available();
  std::optional<stop_reason> gave_up;
  p.on_give_up = [&](const noclobber::give_up_event& e) { gave_up = e.reason; };
  std::optional<noclobber::retry_result<write_status>> result;
  std::exception_ptr failure;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        result = co_await noclobber::async_cas_retry(p, [&] {
          signal.emit(asio::cancellation_type::terminal);  // mid-attempt
          return write_status::conflict;
        });
      },
      asio::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr e) { failure = e; }));
  try {
    io.run();
  } catch (const boost::system::system_error& e) {
    // Asio 1.81's co_spawn rethrows a pending cancellation when a cancelled coroutine finishes
    // normally; what matters here is how the retry loop itself ended.
    CHECK(e.code() == asio::error::operation_aborted);
  }
  REQUIRE_FALSE(failure);  // the loop did not throw
  REQUIRE(result);
  CHECK(result->reason == stop_reason::cancelled);
  CHECK(result->attempts == 1);
  CHECK(gave_up == stop_reason::cancelled);
  CHECK(p.budget->available() == full);  // the tokens taken for the retry that never ran came back
}

TEST_CASE("sync_store_adapter: the reference memory_store through the async contract", "[concurrency]") {
  store_type store;
  SECTION("inline") {
    adapter_type a(store);
    run_one([&]() -> asio::awaitable<int> {
      // (No co_await inside CHECK: Catch2 wraps the expression in try/catch.)
      auto created = co_await a.async_create_if_absent("k", 1);
      auto created_again = co_await a.async_create_if_absent("k", 2);
      auto r = co_await a.async_read("k");
      auto stale = co_await a.async_write_if_match("k", r.token + 1000, 5);
      auto w = co_await a.async_write_if_match("k", r.token, 5);
      auto stale_erase = co_await a.async_erase_if_match("k", r.token);
      auto erased = co_await a.async_erase_if_match("k", w.token.value_or(0));
      auto gone = co_await a.async_read("k");
      CHECK(created.ok());
      CHECK(created_again.status == write_status::exists);
      CHECK(r.found());
      CHECK(r.value == 1);
      CHECK(stale.status == write_status::conflict);
      CHECK(w.ok());
      CHECK(stale_erase.status == write_status::conflict);
      CHECK(erased.ok());
      CHECK(gone.absent());
      co_return 0;
    }());
  }
  SECTION("offloaded to a blocking executor, resuming at home") {
    asio::thread_pool pool(2);
    adapter_type a(store, pool.get_executor());
    asio::io_context io;
    bool resumed_home = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await a.async_create_if_absent("k", 1);
          auto r = co_await a.async_read("k");
          resumed_home = io.get_executor().running_in_this_thread() && r.value == 1;
        },
        asio::detached);
    io.run();
    CHECK(resumed_home);
    pool.join();
  }
}

TEST_CASE("async_read_modify_write gives the synchronous form's results on the same faulty runs") {
  // Same seed, same sequence of calls: the fault-injecting store misbehaves identically for both
  // forms, so every field of the result and the final state must agree.
  for (std::uint64_t seed = 1; seed <= 60; ++seed) {
    noclobber::fault_config faults;
    faults.seed = seed;
    faults.transient = 0.1;
    faults.transient_restart = 0.05;
    faults.indeterminate_applied = 0.1;
    faults.indeterminate_lost = 0.1;
    faults.permanent = 0.02;
    faults.outside_writer = 0.15;
    faults.read_transient = 0.1;
    store_type sync_store(faults), async_store_backing(faults);
    adapter_type async_store(async_store_backing);
    auto policy = immediate_policy(6);
    long next_id = 0;
    auto fn = [&next_id](const std::optional<long>& v) -> noclobber::update<long> {
      if (v && *v % 7 == 6) return noclobber::keep;
      if (v && *v % 11 == 10) return noclobber::abort("eleven");
      return v.value_or(0) * 1000 + (++next_id);  // every write a value no other write makes
    };
    for (int step = 0; step < 8; ++step) {
      std::string key = "k" + std::to_string(step % 3);
      const long before = next_id;
      auto s = noclobber::read_modify_write(sync_store, key, fn, policy);
      next_id = before;
      auto a = run_one(noclobber::async_read_modify_write(async_store, key, fn, policy));
      INFO("seed " << seed << " step " << step);
      CHECK(a.outcome == s.outcome);
      CHECK(a.value == s.value);
      CHECK(a.token == s.token);
      CHECK(a.created == s.created);
      CHECK(a.indeterminate == s.indeterminate);
      CHECK(a.attempts == s.attempts);
      CHECK(a.reason == s.reason);
      CHECK(a.last_status == s.last_status);
      CHECK(a.last_error == s.last_error);
      CHECK(a.abort_reason == s.abort_reason);
    }
    CHECK(async_store_backing.snapshot() == sync_store.snapshot());
  }
}

TEST_CASE("keep, abort and a throwing fn") {
  store_type store;
  adapter_type a(store);
  (void)store.create_if_absent("k", 41);
  auto kept = run_one(
      noclobber::async_read_modify_write(a, "k", [](const std::optional<long>&) { return noclobber::keep; }));
  CHECK(kept.outcome == noclobber::rmw_outcome::unchanged);
  CHECK(kept.value == 41);
  auto aborted = run_one(noclobber::async_read_modify_write(
      a, "k", [](const std::optional<long>&) -> noclobber::update<long> { return noclobber::abort("no"); }));
  CHECK(aborted.outcome == noclobber::rmw_outcome::aborted);
  CHECK(aborted.abort_reason == "no");

  noclobber::keyed_async_mutex<std::string> locks;
  CHECK_THROWS_AS(
      run_one(noclobber::async_locked_read_modify_write(
          locks, a, "k",
          [](const std::optional<long>&) -> noclobber::update<long> { throw std::runtime_error("fn"); })),
      std::runtime_error);
  CHECK(locks.entry_count() == 0);
  CHECK(store.peek("k")->first == 41);
}

namespace {

struct race_totals {
  std::atomic<long> applied{0}, attempts{0}, failed{0};
  std::atomic<int> started{0};  // coroutines that have begun their read-modify-write
};

asio::awaitable<void> increment(adapter_type& store, noclobber::keyed_async_mutex<std::string>* locks,
                                std::string key, const noclobber::retry_policy& policy, race_totals& totals) {
  auto add_one = [](const std::optional<long>& v) { return v.value_or(0) + 1; };
  noclobber::store_rmw_result_t<adapter_type> r;
  totals.started.fetch_add(1);  // its first read is posted to the store's pool right after this
  if (locks) {
    r = co_await noclobber::async_locked_read_modify_write(*locks, store, key, add_one, policy);
  } else {
    r = co_await noclobber::async_read_modify_write(store, key, add_one, policy);
  }
  (r.ok() ? totals.applied : totals.failed).fetch_add(1);
  totals.attempts.fetch_add(r.attempts);
}

void race(bool locked, int io_threads, int coroutines, int keys) {
  store_type backing;
  asio::thread_pool pool(2);  // the store's calls run here: reads and writes interleave for real
  adapter_type store(backing, pool.get_executor());
  noclobber::keyed_async_mutex<std::string> locks;
  noclobber::retry_policy policy;
  policy.backoff = noclobber::backoff_policy::full_jitter(10us, 1ms);
  policy.max_attempts = 1000;
  race_totals totals;
  if (!locked) {
    // Conflicts are forced, not hoped for: the store's pool (2 threads) is held until every
    // coroutine has begun, so its first read is queued ahead of any write (at most one per io
    // thread may still be on its way): each key's ~50 coroutines read the same version first.
    for (int t = 0; t < 2; ++t) {
      asio::post(pool, [&totals, coroutines] {
        while (totals.started.load() < coroutines) std::this_thread::sleep_for(50us);
      });
    }
  }
  asio::io_context io(io_threads);
  for (int c = 0; c < coroutines; ++c) {
    asio::co_spawn(
        io, increment(store, locked ? &locks : nullptr, "key" + std::to_string(c % keys), policy, totals),
        asio::detached);
  }
  std::latch running(io_threads);  // all io threads run the handlers together
  std::vector<std::jthread> threads;
  for (int t = 1; t < io_threads; ++t)
    threads.emplace_back([&] {
      running.arrive_and_wait();
      io.run();
    });
  running.arrive_and_wait();
  io.run();
  threads.clear();
  pool.join();
  CHECK(totals.failed.load() == 0);
  CHECK(totals.applied.load() == coroutines);
  for (int k = 0; k < keys; ++k) CHECK(backing.peek("key" + std::to_string(k))->first == coroutines / keys);
  if (locked) {
    CHECK(totals.attempts.load() == coroutines);  // queued per key: never a conflict in-process
    CHECK(locks.entry_count() == 0);
  } else {
    CHECK(totals.attempts.load() > coroutines);  // they did race through the store (forced above)
  }
}

}  // namespace

TEST_CASE("concurrent async read-modify-writes lose nothing (one io thread, store on a pool)",
          "[concurrency]") {
  race(false, 1, 400, 8);
  race(true, 1, 2000, 4);
}

TEST_CASE("concurrent async read-modify-writes lose nothing (four io threads, store on a pool)",
          "[concurrency]") {
  race(false, 4, 400, 8);
  race(true, 4, 2000, 4);
}
