// Tests of keyed_async_mutex's shared and multi-key forms: readers share and writers exclude with
// FIFO grants (shared waiters at the front enter together, a shared newcomer waits behind a queued
// writer), multi-key sets all-or-nothing and deadlock-free, cancellation and timeouts that release
// what was taken, and real races on four io_context threads with exact plain counters.
#include <noclobber/asio/keyed_async_mutex.hpp>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <exception>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "asio/asio_test_support.hpp"

namespace asio = boost::asio;
using boost::system::error_code;
using mutex_type = noclobber::keyed_async_mutex<int>;
using guard_type = mutex_type::guard;
using shared_type = mutex_type::shared_guard;
using multi_type = mutex_type::multi_guard;
using namespace std::chrono_literals;

using asio_test::count_errors;
using asio_test::run_on_threads;

// ---- shared ---------------------------------------------------------------------------------------

TEST_CASE("shared: readers share, writers exclude, try forms never wait") {
  mutex_type m;
  shared_type r1 = m.try_lock_shared(1);
  shared_type r2 = m.try_lock_shared(1);
  REQUIRE(r1.owns_lock());
  REQUIRE(r2.owns_lock());
  CHECK(m.shared_count(1) == 2);
  CHECK(m.is_locked(1));
  CHECK_FALSE(m.try_lock(1).owns_lock());
  r1.unlock();
  CHECK_FALSE(m.try_lock(1).owns_lock());
  r2.unlock();
  CHECK(m.entry_count() == 0);
  guard_type w = m.try_lock(1);
  REQUIRE(w.owns_lock());
  CHECK_FALSE(m.try_lock_shared(1).owns_lock());
  CHECK(m.shared_count(1) == 0);
  w.unlock();
  CHECK(m.entry_count() == 0);
}

TEST_CASE("shared: grants stay FIFO; shared waiters at the front enter together") {
  asio::io_context io;
  mutex_type m;
  guard_type writer = m.try_lock(7);
  std::vector<std::string> events;
  std::vector<shared_type> readers;
  guard_type second_writer;
  auto reader = [&](std::string name) {
    return asio::bind_executor(io, [&, name](error_code ec, shared_type g) {
      REQUIRE_FALSE(ec);
      events.push_back(name);
      readers.push_back(std::move(g));
    });
  };
  m.async_lock_shared(7, reader("r1"));
  m.async_lock_shared(7, reader("r2"));
  m.async_lock(7, asio::bind_executor(io, [&](error_code ec, guard_type g) {
                 REQUIRE_FALSE(ec);
                 events.push_back("w2");
                 second_writer = std::move(g);
               }));
  m.async_lock_shared(7, reader("r3"));  // behind the queued writer
  CHECK(m.waiter_count(7) == 4);
  writer.unlock();  // r1 and r2 granted together; w2 and r3 stay queued
  CHECK(m.shared_count(7) == 2);
  CHECK(m.waiter_count(7) == 2);
  // A shared newcomer does not pass the queued writer.
  CHECK_FALSE(m.try_lock_shared(7).owns_lock());
  io.poll();  // (queued waiters keep the context busy: poll, not run)
  CHECK(events == std::vector<std::string>{"r1", "r2"});
  readers.clear();  // the last reader hands the key to w2
  io.restart();
  io.poll();
  CHECK(events == std::vector<std::string>{"r1", "r2", "w2"});
  second_writer.unlock();  // then r3
  io.restart();
  io.run();
  CHECK(events == std::vector<std::string>{"r1", "r2", "w2", "r3"});
  readers.clear();
  CHECK(m.entry_count() == 0);
}

TEST_CASE("shared: a queued writer that gives up lets the readers behind it in") {
  asio::io_context io;
  mutex_type m;
  shared_type holder = m.try_lock_shared(3);
  asio::cancellation_signal cancel_writer;
  error_code writer_ec;
  m.async_lock(3, asio::bind_cancellation_slot(
                      cancel_writer.slot(),
                      asio::bind_executor(io, [&](error_code ec, guard_type) { writer_ec = ec; })));
  bool reader_in = false;
  shared_type late;
  m.async_lock_shared(3, asio::bind_executor(io, [&](error_code ec, shared_type g) {
                        reader_in = !ec && g.owns_lock();
                        late = std::move(g);
                      }));
  io.poll();
  CHECK_FALSE(reader_in);  // waits behind the writer
  cancel_writer.emit(asio::cancellation_type::terminal);
  CHECK(m.shared_count(3) == 2);  // the reader joined the holder at once
  io.restart();
  io.run();
  CHECK(writer_ec == asio::error::operation_aborted);
  CHECK(reader_in);
  holder.unlock();
  late.unlock();
  CHECK(m.entry_count() == 0);
}

TEST_CASE("shared: timed and coroutine forms") {
  asio::io_context io;
  mutex_type m;
  guard_type writer = m.try_lock(4);
  error_code timed;
  bool coroutine_ok = false;
  m.async_lock_shared_for(4, 2ms, asio::bind_executor(io, [&](error_code ec, shared_type g) {
                            timed = ec;
                            CHECK_FALSE(g.owns_lock());
                          }));
  io.run();
  CHECK(timed == asio::error::timed_out);
  CHECK_THROWS_AS(m.async_lock_shared_for(4, -1ms, [](error_code, shared_type) {}), std::invalid_argument);
  writer.unlock();
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto a = co_await m.lock_shared(4);
        auto b = co_await m.lock_shared(4);
        coroutine_ok = a.owns_lock() && b.owns_lock() && m.shared_count(4) == 2;
      },
      asio::detached);
  io.restart();
  io.run();
  CHECK(coroutine_ok);
  CHECK(m.entry_count() == 0);
}

// ---- several keys ---------------------------------------------------------------------------------

TEST_CASE("multi-key: folded, all-or-nothing try form, completes via post") {
  asio::io_context io;
  mutex_type m(4);
  multi_type all = m.try_lock_all({1, 2, 1, 3});
  REQUIRE(all.owns_lock());
  CHECK(all.size() == 3);
  CHECK(m.entry_count() == 3);
  CHECK_FALSE(m.try_lock(2).owns_lock());
  all.unlock();
  CHECK(m.entry_count() == 0);
  guard_type two = m.try_lock(2);
  CHECK_FALSE(m.try_lock_all(std::vector<int>{1, 2, 3, 4}).owns_lock());
  CHECK(m.entry_count() == 1);  // nothing of 1, 3, 4 left held
  two.unlock();
  bool done = false;
  m.async_lock_all(std::vector<int>{5, 6}, asio::bind_executor(io, [&](error_code ec, multi_type g) {
                     CHECK_FALSE(ec);
                     CHECK(g.size() == 2);
                     done = true;
                   }));
  CHECK_FALSE(done);  // not inline, although both keys were free
  CHECK(m.is_locked(5));
  io.run();
  CHECK(done);
  CHECK(m.entry_count() == 0);
  multi_type none = m.try_lock_all(std::vector<int>{});
  CHECK(none.owns_lock());
  CHECK(none.size() == 0);
}

TEST_CASE("multi-key: waits for busy keys, holds none of a busy shard's keys meanwhile") {
  asio::io_context io;
  mutex_type m(1);  // one shard: every key is in one group
  guard_type b = m.try_lock(2);
  bool done = false;
  multi_type got;
  m.async_lock_all({1, 2, 3}, asio::bind_executor(io, [&](error_code ec, multi_type g) {
                     CHECK_FALSE(ec);
                     got = std::move(g);
                     done = true;
                   }));
  io.poll();
  CHECK_FALSE(done);
  CHECK_FALSE(m.is_locked(1));  // all-or-nothing within the group: 1 and 3 stay free
  CHECK_FALSE(m.is_locked(3));
  guard_type one = m.try_lock(1);  // so a single-key locker can still take them
  REQUIRE(one.owns_lock());
  b.unlock();  // 2 is granted to the waiter, which then finds 1 busy: lets 2 go, waits for 1
  io.restart();
  io.poll();
  CHECK_FALSE(done);
  CHECK_FALSE(m.is_locked(2));
  one.unlock();
  io.restart();
  io.run();
  CHECK(done);
  CHECK(got.size() == 3);
  got.unlock();
  CHECK(m.entry_count() == 0);
}

TEST_CASE("multi-key: cancellation and timeouts release what was taken") {
  asio::io_context io;
  mutex_type m(64);
  // Keys in different shards: the operation holds the earlier groups while it waits for a later one.
  guard_type busy = m.try_lock(1000);
  asio::cancellation_signal sig;
  error_code cancelled, timed;
  m.async_lock_all(
      std::vector<int>{1, 2, 3, 1000, 4, 5},
      asio::bind_cancellation_slot(sig.slot(), asio::bind_executor(io, [&](error_code ec, multi_type g) {
                                     cancelled = ec;
                                     CHECK_FALSE(g.owns_lock());
                                   })));
  io.poll();
  sig.emit(asio::cancellation_type::total);
  io.restart();
  io.run();
  CHECK(cancelled == asio::error::operation_aborted);
  CHECK(m.entry_count() == 1);  // only the holder's key
  m.async_lock_all_for(std::vector<int>{7, 1000, 8}, 3ms,
                       asio::bind_executor(io, [&](error_code ec, multi_type g) {
                         timed = ec;
                         CHECK_FALSE(g.owns_lock());
                       }));
  io.restart();
  io.run();
  CHECK(timed == asio::error::timed_out);
  CHECK(m.entry_count() == 1);
  CHECK_THROWS_AS(m.async_lock_all_for(std::vector<int>{1}, -1ms, [](error_code, multi_type) {}),
                  std::invalid_argument);
  busy.unlock();
  CHECK(m.entry_count() == 0);
}

TEST_CASE("race: shared, exclusive and multi-key coroutines on four threads: exact, no deadlock",
          "[concurrency]") {
  // Random sets of keys, taken with every form, on 4 io_context threads; every exclusive hold
  // bumps plain counters across a suspension, every shared hold checks they do not move.
  const std::size_t shards = GENERATE(std::size_t{1}, std::size_t{8});
  asio::io_context io(4);
  mutex_type m(shards);
  constexpr int keys = 5, coroutines = 120, iterations = 40;
  std::vector<long> counters(keys, 0);
  std::vector<std::atomic<long>> bumps(keys);
  std::atomic<long> torn{0}, timeouts{0};
  std::atomic<int> errors{0};
  for (int c = 0; c < coroutines; ++c) {
    asio::co_spawn(
        asio::make_strand(io),
        [&, c]() -> asio::awaitable<void> {
          std::minstd_rand rng(static_cast<unsigned>(c) + 1);
          auto ex = co_await asio::this_coro::executor;
          for (int i = 0; i < iterations; ++i) {
            const int k = static_cast<int>(rng() % keys);
            switch (rng() % 4) {
              case 0: {
                auto g = co_await m.lock_shared(k);
                const long seen = counters[static_cast<std::size_t>(k)];
                co_await asio::post(ex, asio::use_awaitable);
                if (counters[static_cast<std::size_t>(k)] != seen) torn.fetch_add(1);
                break;
              }
              case 1: {
                std::vector<int> set;
                for (int j = 0; j < 3; ++j) set.push_back(static_cast<int>(rng() % keys));
                auto [ec, g] = co_await m.async_lock_all_for(set, std::chrono::microseconds(rng() % 2000),
                                                             asio::as_tuple(asio::use_awaitable));
                if (ec) {
                  timeouts.fetch_add(1);
                  break;
                }
                for (std::size_t j = 0; j < g.size(); ++j) {
                  const auto key = static_cast<std::size_t>(g.key(j));
                  const long seen = counters[key];
                  co_await asio::post(ex, asio::use_awaitable);
                  counters[key] = seen + 1;
                  bumps[key].fetch_add(1);
                }
                break;
              }
              default: {
                std::vector<int> set{k, static_cast<int>(rng() % keys)};
                auto g = co_await m.lock_all(set);
                for (std::size_t j = 0; j < g.size(); ++j) {
                  const auto key = static_cast<std::size_t>(g.key(j));
                  const long seen = counters[key];
                  co_await asio::post(ex, asio::use_awaitable);
                  counters[key] = seen + 1;
                  bumps[key].fetch_add(1);
                }
              }
            }
          }
        },
        count_errors{&errors});
  }
  run_on_threads(io, 4);
  CHECK(errors.load() == 0);
  CHECK(torn.load() == 0);
  for (int k = 0; k < keys; ++k)
    CHECK(counters[static_cast<std::size_t>(k)] == bumps[static_cast<std::size_t>(k)].load());
  CHECK(m.entry_count() == 0);
}
