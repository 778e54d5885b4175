// example: examples/asio/async_quickstart.cpp
// 1,000 coroutines add 1 to one of 4 counters; none blocks a thread and no update is lost.
#include <noclobber/asio/async_read_modify_write.hpp>
#include <noclobber/memory_store.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <string>

namespace asio = boost::asio;

int main() {
  noclobber::memory_store<std::string, long> counters;  // any conditional_writer will do
  noclobber::sync_store_adapter store(counters);        // reached through the async contract
  noclobber::keyed_async_mutex<std::string> locks;      // coroutines of one key queue here

  asio::io_context io;
  for (int i = 0; i < 1000; ++i) {
    asio::co_spawn(
        io,
        [&, key = "counter-" + std::to_string(i % 4)]() -> asio::awaitable<void> {
          auto r = co_await noclobber::async_locked_read_modify_write(
              locks, store, key, [](const std::optional<long>& n) { return n.value_or(0) + 1; });
          if (!r.ok()) std::printf("%s: %s\n", key.c_str(), std::string(to_string(r.reason)).c_str());
        },
        asio::detached);
  }
  io.run();

  long total = 0;
  for (auto& [key, value] : counters.snapshot()) total += value;
  std::printf("total %ld (expected 1000)\n", total);
  return total == 1000 ? 0 : 1;
}
