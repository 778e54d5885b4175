// What the Boost.Asio test programs share: running an io_context on several threads, and a co_spawn
// completion that counts escaped exceptions (Catch2 assertions are not thread-safe).
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <latch>
#include <thread>
#include <vector>

namespace asio_test {

// Runs `io` on `threads` threads until it runs out of work.
inline void run_on_threads(boost::asio::io_context& io, int threads) {
  std::latch running(threads);  // all threads run the handlers together
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i)
    pool.emplace_back([&] {
      running.arrive_and_wait();
      io.run();
    });
  running.arrive_and_wait();
  io.run();
  for (auto& t : pool) t.join();
}

// Completion for co_spawn that counts escaped exceptions instead of losing them.
struct count_errors {
  std::atomic<int>* errors;
  void operator()(std::exception_ptr e) const {
    if (e) errors->fetch_add(1);
  }
};

}  // namespace asio_test
