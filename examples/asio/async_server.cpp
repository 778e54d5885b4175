// example: examples/asio/async_server.cpp
// A TCP server whose requests do read-modify-writes, served by coroutines on 4 threads.
// Protocol: "deposit <account> <amount>\n" -> "<account> <new balance>\n".
#include <noclobber/asio/async_read_modify_write.hpp>
#include <noclobber/memory_store.hpp>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <istream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;

noclobber::memory_store<std::string, long> balances;  // the shared store
noclobber::sync_store_adapter store(balances);        // ...through the async contract
noclobber::keyed_async_mutex<std::string> accounts;   // requests for one account queue here

asio::awaitable<void> serve(tcp::socket socket) {
  asio::streambuf buffer;
  for (;;) {
    auto [ec, n] = co_await asio::async_read_until(socket, buffer, '\n', asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;  // the client hung up
    std::string line;
    std::getline(std::istream(&buffer), line);
    std::istringstream request(line);
    std::string verb, account;
    long amount = 0;
    request >> verb >> account >> amount;

    // Queued per account (FIFO, no thread blocked); the conditional write underneath still
    // protects against writers in other processes.
    auto r = co_await noclobber::async_locked_read_modify_write(
        accounts, store, account, [amount](const std::optional<long>& b) { return b.value_or(0) + amount; });
    std::string reply = r.ok() ? account + " " + std::to_string(*r.value) + "\n"
                               : "error " + std::string(to_string(r.reason)) + "\n";
    co_await asio::async_write(socket, asio::buffer(reply), asio::use_awaitable);
  }
}

asio::awaitable<void> listen(tcp::acceptor& acceptor) {
  for (;;) {
    tcp::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
    asio::co_spawn(socket.get_executor(), serve(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> client(tcp::endpoint server, std::string account, int deposits) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect(server, asio::use_awaitable);
  asio::streambuf buffer;
  for (int i = 0; i < deposits; ++i) {
    std::string request = "deposit " + account + " 1\n";
    co_await asio::async_write(socket, asio::buffer(request), asio::use_awaitable);
    co_await asio::async_read_until(socket, buffer, '\n', asio::use_awaitable);
    buffer.consume(buffer.size());
  }
}

int main() {
  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::address_v4::loopback(), 0});
  asio::co_spawn(io, listen(acceptor), asio::detached);

  constexpr int clients = 40, deposits = 25;
  std::atomic<int> finished{0};
  for (int c = 0; c < clients; ++c) {
    asio::co_spawn(io, client(acceptor.local_endpoint(), "acct-" + std::to_string(c % 4), deposits),
                   [&](std::exception_ptr e) {
                     if (e) std::rethrow_exception(e);
                     if (++finished == clients) io.stop();  // all answered: shut the server down
                   });
  }
  std::vector<std::jthread> threads;
  for (int t = 0; t < 3; ++t) threads.emplace_back([&io] { io.run(); });
  io.run();
  threads.clear();

  bool exact = true;
  for (int a = 0; a < 4; ++a) {
    auto balance = balances.peek("acct-" + std::to_string(a));
    std::printf("acct-%d: %ld (expected %d)\n", a, balance ? balance->first : 0L, clients / 4 * deposits);
    exact = exact && balance && balance->first == clients / 4 * deposits;
  }
  return exact ? 0 : 1;
}
