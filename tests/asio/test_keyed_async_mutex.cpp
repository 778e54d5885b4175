// Tests of noclobber::keyed_async_mutex: exact counters under real races (one and several
// io_context threads), FIFO hand-off onto each waiter's own executor, cancellation in the middle
// of a queue, timeouts, and "entries exist only while held or awaited".
#include <noclobber/asio/keyed_async_mutex.hpp>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <exception>
#include <latch>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "asio/asio_test_support.hpp"

namespace asio = boost::asio;
using boost::system::error_code;
using noclobber::keyed_async_mutex;
using mutex_type = keyed_async_mutex<int>;
using guard_type = mutex_type::guard;
using namespace std::chrono_literals;

namespace {

using asio_test::count_errors;
using asio_test::run_on_threads;

// The read-modify-write the lock protects: read, yield to the scheduler (so that an unprotected
// version interleaves for real), write back.
asio::awaitable<void> bump_under_lock(mutex_type& m, std::vector<long>& counters, int key, int iterations) {
  for (int i = 0; i < iterations; ++i) {
    auto held = co_await m.async_lock(key, asio::use_awaitable);
    // No Catch2 assertions off the main thread: failures surface as counted exceptions.
    if (!held.owns_lock()) throw std::logic_error("granted guard does not own its key");
    long seen = counters[static_cast<std::size_t>(key)];
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    counters[static_cast<std::size_t>(key)] = seen + 1;
  }
}

asio::awaitable<void> bump_without_lock(std::vector<long>& counters, int key, int iterations) {
  for (int i = 0; i < iterations; ++i) {
    long seen = counters[static_cast<std::size_t>(key)];
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    counters[static_cast<std::size_t>(key)] = seen + 1;
  }
}

void counters_come_out_exact(int threads, int coroutines, int keys, int iterations) {
  asio::io_context io(threads);
  mutex_type m(8);
  std::vector<long> counters(static_cast<std::size_t>(keys), 0);
  std::atomic<int> errors{0};
  for (int c = 0; c < coroutines; ++c) {
    asio::co_spawn(io, bump_under_lock(m, counters, c % keys, iterations), count_errors{&errors});
  }
  run_on_threads(io, threads);
  CHECK(errors.load() == 0);
  for (int k = 0; k < keys; ++k) {
    CHECK(counters[static_cast<std::size_t>(k)] == static_cast<long>(coroutines / keys) * iterations);
  }
  CHECK(m.entry_count() == 0);
}

}  // namespace

TEST_CASE("without the lock the same workload loses updates (the test can fail)") {
  asio::io_context io;
  std::vector<long> counters(4, 0);
  for (int c = 0; c < 400; ++c) asio::co_spawn(io, bump_without_lock(counters, c % 4, 5), asio::detached);
  io.run();
  for (long v : counters) CHECK(v < 100 * 5);
}

TEST_CASE("thousands of coroutines on a few keys: exact counters, one io_context thread") {
  counters_come_out_exact(1, 4000, 4, 5);
}

TEST_CASE("thousands of coroutines on a few keys: exact counters, four io_context threads", "[concurrency]") {
  counters_come_out_exact(4, 2000, 4, 5);
}

TEST_CASE("waiters are granted in FIFO order and the entry goes away") {
  asio::io_context io;
  mutex_type m;
  guard_type holder = m.try_lock(7);
  REQUIRE(holder.owns_lock());
  CHECK_FALSE(m.try_lock(7).owns_lock());
  std::vector<int> order;
  constexpr int n = 50;
  for (int i = 0; i < n; ++i) {
    m.async_lock(7, asio::bind_executor(io, [&order, &m, i](error_code ec, guard_type g) {
                   REQUIRE_FALSE(ec);
                   REQUIRE(g.owns_lock());
                   CHECK(g.key() == 7);
                   CHECK(m.is_locked(7));
                   order.push_back(i);
                 }));
  }
  CHECK(m.waiter_count(7) == n);
  CHECK(m.entry_count() == 1);
  io.poll();  // nothing may complete while the key is held
  CHECK(order.empty());
  holder.unlock();
  CHECK(m.is_locked(7));  // handed straight to the first waiter: no window for barging
  CHECK_FALSE(m.try_lock(7).owns_lock());
  io.run();
  std::vector<int> expected(n);
  for (int i = 0; i < n; ++i) expected[static_cast<std::size_t>(i)] = i;
  CHECK(order == expected);
  CHECK(m.entry_count() == 0);
  CHECK_FALSE(m.is_locked(7));
}

TEST_CASE("an uncontended lock completes through post, not inline") {
  asio::io_context io;
  mutex_type m;
  bool done = false;
  m.async_lock(1, asio::bind_executor(io, [&](error_code ec, guard_type g) {
                 CHECK_FALSE(ec);
                 CHECK(g.owns_lock());
                 done = true;
               }));
  CHECK_FALSE(done);
  CHECK(m.is_locked(1));
  io.run();
  CHECK(done);
  CHECK(m.entry_count() == 0);
}

TEST_CASE("each waiter resumes on its own executor", "[concurrency]") {
  asio::io_context a, b;
  auto work_a = asio::make_work_guard(a);
  auto work_b = asio::make_work_guard(b);
  std::thread ta([&] { a.run(); });
  std::thread tb([&] { b.run(); });
  mutex_type m;
  guard_type holder = m.try_lock(3);
  std::atomic<int> on_own_executor{0}, done{0};
  constexpr int n = 200;
  for (int i = 0; i < n; ++i) {
    asio::io_context& own = (i % 2) ? a : b;
    m.async_lock(3, asio::bind_executor(own, [&, i](error_code ec, guard_type g) {
                   asio::io_context& mine = (i % 2) ? a : b;
                   if (!ec && g.owns_lock() && mine.get_executor().running_in_this_thread()) {
                     on_own_executor.fetch_add(1);
                   }
                   done.fetch_add(1);
                 }));
  }
  holder.unlock();
  while (done.load() < n) std::this_thread::yield();
  work_a.reset();
  work_b.reset();
  ta.join();
  tb.join();
  CHECK(on_own_executor.load() == n);
  CHECK(m.entry_count() == 0);
}

TEST_CASE("cancelling waiters in the middle of the queue") {
  asio::io_context io;
  mutex_type m;
  guard_type holder = m.try_lock(5);
  constexpr int n = 10;
  std::vector<asio::cancellation_signal> signals(n);
  std::vector<int> granted, aborted;
  for (int i = 0; i < n; ++i) {
    m.async_lock(5, asio::bind_cancellation_slot(signals[static_cast<std::size_t>(i)].slot(),
                                                 asio::bind_executor(io, [&, i](error_code ec, guard_type g) {
                                                   if (ec == asio::error::operation_aborted) {
                                                     CHECK_FALSE(g.owns_lock());
                                                     aborted.push_back(i);
                                                   } else {
                                                     CHECK_FALSE(ec);
                                                     CHECK(g.owns_lock());
                                                     granted.push_back(i);
                                                   }
                                                 })));
  }
  for (int i : {3, 4, 7}) signals[static_cast<std::size_t>(i)].emit(asio::cancellation_type::terminal);
  CHECK(m.waiter_count(5) == n - 3);  // left the queue at once
  io.poll();
  CHECK(aborted == std::vector<int>{3, 4, 7});
  CHECK(granted.empty());
  // A second emit on a finished waiter is harmless (its slot was cleared).
  signals[3].emit(asio::cancellation_type::terminal);
  holder.unlock();
  io.run();
  CHECK(granted == std::vector<int>{0, 1, 2, 5, 6, 8, 9});
  CHECK(m.entry_count() == 0);
}

TEST_CASE("cancelling the only waiter leaves only the holder's entry, then nothing") {
  asio::io_context io;
  mutex_type m;
  guard_type holder = m.try_lock(9);
  asio::cancellation_signal sig;
  error_code got;
  m.async_lock(9, asio::bind_cancellation_slot(
                      sig.slot(), asio::bind_executor(io, [&](error_code ec, guard_type) { got = ec; })));
  sig.emit(asio::cancellation_type::partial);
  io.run();
  CHECK(got == asio::error::operation_aborted);
  CHECK(m.entry_count() == 1);
  CHECK(m.waiter_count(9) == 0);
  holder.unlock();
  CHECK(m.entry_count() == 0);
}

TEST_CASE("cancellation after the grant completes normally, holding the key") {
  asio::io_context io;
  mutex_type m;
  guard_type holder = m.try_lock(2);
  asio::cancellation_signal sig;
  error_code got = asio::error::fault;
  bool owned = false;
  m.async_lock(
      2, asio::bind_cancellation_slot(sig.slot(), asio::bind_executor(io, [&](error_code ec, guard_type g) {
                                        got = ec;
                                        owned = g.owns_lock();
                                      })));
  holder.unlock();                              // granted; completion posted
  sig.emit(asio::cancellation_type::terminal);  // too late: ignored
  io.run();
  CHECK_FALSE(got);
  CHECK(owned);
  CHECK(m.entry_count() == 0);
}

TEST_CASE("timeouts") {
  asio::io_context io;
  mutex_type m;

  SECTION("a busy key times out and leaves no waiter behind") {
    guard_type holder = m.try_lock(1);
    error_code got;
    m.async_lock_for(1, 5ms, asio::bind_executor(io, [&](error_code ec, guard_type g) {
                       got = ec;
                       CHECK_FALSE(g.owns_lock());
                     }));
    io.run();
    CHECK(got == asio::error::timed_out);
    CHECK(m.waiter_count(1) == 0);
    CHECK(m.entry_count() == 1);
    holder.unlock();
    CHECK(m.entry_count() == 0);
  }
  SECTION("a zero timeout on a free key succeeds, on a busy key fails") {
    error_code first = asio::error::fault, second;
    guard_type kept;
    m.async_lock_for(4, 0ms, asio::bind_executor(io, [&](error_code ec, guard_type g) {
                       first = ec;
                       kept = std::move(g);
                     }));
    io.run();
    CHECK_FALSE(first);
    CHECK(kept.owns_lock());
    io.restart();
    m.async_lock_for(4, 0ms, asio::bind_executor(io, [&](error_code ec, guard_type) { second = ec; }));
    io.run();
    CHECK(second == asio::error::timed_out);
    kept.unlock();
    CHECK(m.entry_count() == 0);
  }
  SECTION("a grant before the deadline wins and disarms the timer") {
    guard_type holder = m.try_lock(1);
    error_code got = asio::error::fault;
    // An hour: if the timer were not cancelled on grant, run() would not return.
    m.async_lock_for(1, 1h, asio::bind_executor(io, [&](error_code ec, guard_type g) {
                       got = ec;
                       CHECK(g.owns_lock());
                     }));
    asio::post(io, [&] { holder.unlock(); });
    io.run();
    CHECK_FALSE(got);
    CHECK(m.entry_count() == 0);
  }
  SECTION("hours::max() / seconds::max() as the timeout: no deadline, never a negative one") {
    // hours::max() converted by std::chrono overflows to a negative timeout (rejected, or an
    // instant timed_out); saturated, it is time_point::max(): the waiter is granted on release.
    for (noclobber::saturating_ns forever : {noclobber::saturating_ns(std::chrono::hours::max()),
                                             noclobber::saturating_ns(std::chrono::seconds::max())}) {
      io.restart();
      guard_type holder = m.try_lock(1);
      error_code got = asio::error::fault;
      m.async_lock_for(1, forever, asio::bind_executor(io, [&](error_code ec, guard_type g) {
                         got = ec;
                         CHECK(g.owns_lock());
                       }));
      asio::post(io, [&] { holder.unlock(); });
      io.run();
      CHECK_FALSE(got);
      CHECK(m.entry_count() == 0);
    }
  }
  SECTION("with use_awaitable the timeout surfaces as an error or exception") {
    guard_type holder = m.try_lock(1);
    error_code via_tuple;
    bool threw = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto [ec, g] = co_await m.async_lock_for(1, 1ms, asio::as_tuple(asio::use_awaitable));
          via_tuple = ec;
          try {
            co_await m.async_lock_until(1, mutex_type::clock_type::now(), asio::use_awaitable);
          } catch (const boost::system::system_error& e) {
            threw = e.code() == asio::error::timed_out;
          }
        },
        asio::detached);
    io.run();
    CHECK(via_tuple == asio::error::timed_out);
    CHECK(threw);
    holder.unlock();
    CHECK(m.entry_count() == 0);
  }
}

TEST_CASE("co_await m.lock(key): free keys without suspending, busy keys in FIFO order") {
  asio::io_context io;
  mutex_type m;
  std::vector<int> order;
  guard_type holder = m.try_lock(1);
  for (int i = 0; i < 5; ++i) {
    asio::co_spawn(
        io,
        [&, i]() -> asio::awaitable<void> {
          auto g = co_await m.lock(1);
          order.push_back(i);
          co_await asio::post(co_await asio::this_coro::executor,
                              asio::use_awaitable);  // hold across a suspension
        },
        asio::detached);
  }
  io.poll();  // all five queue behind the holder
  CHECK(m.waiter_count(1) == 5);
  CHECK(order.empty());
  holder.unlock();
  io.restart();
  io.run();
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
  bool free_taken = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto g = co_await m.lock(2);
        free_taken = g.owns_lock() && m.is_locked(2);
      },
      asio::detached);
  io.restart();
  io.run();
  CHECK(free_taken);
  CHECK(m.entry_count() == 0);
}

TEST_CASE("bad input is rejected at the boundary") {
  CHECK_THROWS_AS(mutex_type(0), std::invalid_argument);
  asio::io_context io;
  mutex_type m;
  CHECK_THROWS_AS(m.async_lock_for(1, -1ms, [](error_code, guard_type) {}), std::invalid_argument);
  CHECK(m.entry_count() == 0);
}

TEST_CASE("a throwing handler or coroutine leaves no key held") {
  asio::io_context io;
  mutex_type m;
  guard_type holder = m.try_lock(6);
  m.async_lock(6, asio::bind_executor(
                      io, [](error_code, guard_type) { throw std::runtime_error("user callback failed"); }));
  holder.unlock();
  CHECK_THROWS_AS(io.run(), std::runtime_error);
  CHECK(m.entry_count() == 0);

  io.restart();
  std::atomic<int> errors{0};
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto g = co_await m.async_lock(6, asio::use_awaitable);
        throw std::runtime_error("coroutine failed while holding the key");
      },
      count_errors{&errors});
  io.run();
  CHECK(errors.load() == 1);
  CHECK(m.entry_count() == 0);
}

TEST_CASE("a granted completion destroyed un-run (context shut down) releases the key") {
  mutex_type m;
  bool ran = false;
  {
    asio::io_context doomed;
    guard_type holder = m.try_lock(8);
    m.async_lock(8, asio::bind_executor(doomed, [&](error_code, guard_type) { ran = true; }));
    holder.unlock();  // granted: completion posted to `doomed`, which never runs
    CHECK(m.is_locked(8));
  }
  CHECK_FALSE(ran);
  CHECK(m.entry_count() == 0);
}

TEST_CASE("racing grants, timeouts and cancellations on four threads: counts exact, no entry left",
          "[concurrency]") {
  using namespace asio::experimental::awaitable_operators;
  asio::io_context io(4);
  mutex_type m(4);
  constexpr int keys = 3, coroutines = 300, iterations = 40;
  std::vector<long> counters(keys, 0);
  std::vector<std::atomic<long>> successes(keys);
  std::atomic<long> timeouts{0}, cancelled{0};
  std::atomic<int> errors{0};
  // Timeouts and cancellations are forced, not hoped for: the test holds every key when the
  // coroutines start, so timed waits time out and timers win their races; it lets go only once
  // both have happened (the seeded choices include both before any coroutine blocks for good).
  std::vector<guard_type> held;
  for (int k = 0; k < keys; ++k) held.push_back(m.try_lock(k));
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer poll(co_await asio::this_coro::executor);
        const auto give_up = std::chrono::steady_clock::now() + 60s;
        while ((timeouts.load() == 0 || cancelled.load() == 0) &&
               std::chrono::steady_clock::now() < give_up) {
          poll.expires_after(1ms);
          co_await poll.async_wait(asio::use_awaitable);
        }
        held.clear();
      },
      count_errors{&errors});
  for (int c = 0; c < coroutines; ++c) {
    auto strand = asio::make_strand(io);
    asio::co_spawn(
        strand,
        [&, c]() -> asio::awaitable<void> {
          std::minstd_rand rng(static_cast<unsigned>(c) + 1);
          auto ex = co_await asio::this_coro::executor;
          for (int i = 0; i < iterations; ++i) {
            int key = static_cast<int>(rng() % keys);
            guard_type g;
            switch (rng() % 3) {
              case 0:
                g = co_await m.async_lock(key, asio::use_awaitable);
                break;
              case 1: {
                auto [ec, got] = co_await m.async_lock_for(key, std::chrono::microseconds(rng() % 300),
                                                           asio::as_tuple(asio::use_awaitable));
                if (ec == asio::error::timed_out) timeouts.fetch_add(1);
                g = std::move(got);
                break;
              }
              default: {
                asio::steady_timer t(ex, std::chrono::microseconds(rng() % 300));
                auto r =
                    co_await (m.async_lock(key, asio::use_awaitable) || t.async_wait(asio::use_awaitable));
                if (r.index() == 0) {
                  g = std::move(std::get<0>(r));
                } else {
                  cancelled.fetch_add(1);
                }
              }
            }
            if (!g.owns_lock()) continue;
            long seen = counters[static_cast<std::size_t>(key)];
            co_await asio::post(ex, asio::use_awaitable);
            counters[static_cast<std::size_t>(key)] = seen + 1;
            successes[static_cast<std::size_t>(key)].fetch_add(1);
          }
        },
        count_errors{&errors});
  }
  run_on_threads(io, 4);
  CHECK(errors.load() == 0);
  long total = 0;
  for (int k = 0; k < keys; ++k) {
    CHECK(counters[static_cast<std::size_t>(k)] == successes[static_cast<std::size_t>(k)].load());
    total += counters[static_cast<std::size_t>(k)];
  }
  CHECK(total + timeouts.load() + cancelled.load() == static_cast<long>(coroutines) * iterations);
  CHECK(timeouts.load() > 0);
  CHECK(cancelled.load() > 0);
  CHECK(m.entry_count() == 0);
}
