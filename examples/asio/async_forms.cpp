// example: examples/asio/async_forms.cpp
// The pieces one by one: the awaitable per-key lock (wait, time out, try), async_cas_retry with
// a deadline, and a blocking store run on a thread pool through sync_store_adapter.
#include <noclobber/asio/async_cas_retry.hpp>
#include <noclobber/asio/async_store.hpp>
#include <noclobber/asio/keyed_async_mutex.hpp>
#include <noclobber/memory_store.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdio>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;

asio::awaitable<bool> locks_demo(noclobber::keyed_async_mutex<std::string>& locks) {
  auto held = co_await locks.async_lock("report.pdf", asio::use_awaitable);  // waits, thread free
  // A second lock of the same key gives up after 20 ms and leaves nothing behind.
  auto [ec, none] = co_await locks.async_lock_for("report.pdf", 20ms, asio::as_tuple(asio::use_awaitable));
  bool timed_out = ec == asio::error::timed_out && !none.owns_lock();
  held.unlock();
  auto again = locks.try_lock("report.pdf");  // free now: taken at once, no suspension
  co_return timed_out&& again.owns_lock();
}

asio::awaitable<bool> retry_demo(
    noclobber::sync_store_adapter<noclobber::memory_store<std::string, long>>& store) {
  noclobber::retry_policy policy;  // full jitter 10 ms..1 s, 5 attempts
  policy.timeout = 2s;             // and a deadline
  noclobber::read_result<long, std::uint64_t> cached;
  auto r = co_await noclobber::async_cas_retry(
      policy,
      [&](const noclobber::attempt_info& a) -> asio::awaitable<noclobber::write_result<std::uint64_t>> {
        if (a.reread) cached = co_await store.async_read("visits");
        if (cached.absent()) co_return co_await store.async_create_if_absent("visits", 1);
        co_return co_await store.async_write_if_match("visits", cached.token, cached.value + 1);
      });
  std::printf("retry: %s after %u attempt(s)\n", std::string(to_string(r.reason)).c_str(), r.attempts);
  co_return r.ok();
}

int main() {
  asio::io_context io;
  asio::thread_pool blocking_calls(2);
  noclobber::memory_store<std::string, long> memory;
  noclobber::sync_store_adapter store(memory, blocking_calls.get_executor());  // calls run on the pool
  noclobber::keyed_async_mutex<std::string> locks;

  bool locks_ok = false, retry_ok = false;
  asio::co_spawn(io, locks_demo(locks), [&](std::exception_ptr, bool ok) { locks_ok = ok; });
  asio::co_spawn(io, retry_demo(store), [&](std::exception_ptr, bool ok) { retry_ok = ok; });
  io.run();
  blocking_calls.join();
  std::printf("locks %s, retry %s\n", locks_ok ? "ok" : "FAILED", retry_ok ? "ok" : "FAILED");
  return locks_ok && retry_ok ? 0 : 1;
}
