// example: examples/asio/async_lock_forms.cpp
// The shared and multi-key forms of keyed_async_mutex: readers of a key share it while a writer
// waits for them; a transfer locks both accounts at once, in an order that cannot deadlock.
#include <noclobber/asio/keyed_async_mutex.hpp>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace asio = boost::asio;

int main() {
  asio::io_context io;
  noclobber::keyed_async_mutex<std::string> locks;
  std::map<std::string, long> balance{{"alice", 100}, {"bob", 100}};
  std::string price_list = "v1";
  int readers_inside = 0, most_readers_at_once = 0;

  for (int i = 0; i < 50; ++i) {
    // Transfers lock both accounts; half name them in the other order, and none deadlocks.
    asio::co_spawn(
        io,
        [&, i]() -> asio::awaitable<void> {
          std::vector<std::string> accounts{"alice", "bob"};
          if (i % 2) std::swap(accounts[0], accounts[1]);
          auto both = co_await locks.lock_all(accounts);
          const long a = balance["alice"];
          co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);  // a store call
          balance["alice"] = a - 1;
          balance["bob"] += 1;
        },
        asio::detached);
    // Readers of the price list share its key, across their own store calls.
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto reading = co_await locks.lock_shared("price-list");
          most_readers_at_once = std::max(most_readers_at_once, ++readers_inside);
          co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
          --readers_inside;
        },
        asio::detached);
  }
  // One writer: it waits until the readers that came first are done, then has the key alone.
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto writing = co_await locks.lock("price-list");
        if (readers_inside == 0) price_list = "v2";
      },
      asio::detached);
  io.run();

  std::printf("alice %ld, bob %ld, price list %s, up to %d readers at once, live entries %zu\n",
              balance["alice"], balance["bob"], price_list.c_str(), most_readers_at_once,
              locks.entry_count());
  const bool ok =
      balance["alice"] == 50 && balance["bob"] == 150 && price_list == "v2" && most_readers_at_once > 1;
  return ok && locks.entry_count() == 0 ? 0 : 1;
}
