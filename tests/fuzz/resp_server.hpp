// tests/fuzz/resp_server.hpp — a loopback Redis (RESP) server whose answers a fuzz target scripts,
// for the targets that drive a Redis adapter end to end through hiredis (fuzz_redis_answers,
// fuzz_redis_lease_answers).
//
// One server thread listens on 127.0.0.1 (loopback.hpp: the same port for every input) and serves
// one connection at a time: it reads each command the client sends (an array of bulk strings, as
// hiredis writes them) and asks the target's `respond` what to do with it: send bytes and read the
// next command, send bytes and close, or close without answering. A client that sends anything
// else, or stays silent for `idle_ms()` milliseconds, is disconnected. Nothing leaves the machine.
//
// Thread safety: `respond`, `closed` and `idle_ms` run on the server thread under the server's
// mutex; the target reads the state they share with it through `locked`, which takes the same
// mutex. Construct and destroy on one thread.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "loopback.hpp"

namespace nc_fuzz {

/// What the server does with one command.
struct resp_answer {
  std::optional<std::string> wire;  // the bytes to send; none: close without answering
  bool close_after = false;         // close the connection once they are sent
};

class resp_server {
 public:
  struct script {
    std::function<resp_answer(const std::vector<std::string>& command)> respond;
    std::function<void()> closed = [] {};                // a connection ended
    std::function<int()> idle_ms = [] { return 5000; };  // how long to wait for the next command
  };

  explicit resp_server(script s) : script_(std::move(s)) {
    fd_ = listen_loopback("resp_server", port_);
    thread_ = std::thread([this] { serve(); });
  }
  resp_server(const resp_server&) = delete;
  resp_server& operator=(const resp_server&) = delete;
  ~resp_server() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }

  [[nodiscard]] int port() const noexcept { return port_; }

  /// Runs `f` under the mutex that `respond`, `closed` and `idle_ms` run under.
  template <class F>
  decltype(auto) locked(F&& f) {
    std::lock_guard<std::mutex> lk(mutex_);
    return std::forward<F>(f)();
  }

 private:
  /// One command from `buf` (an array of bulk strings); false while incomplete. hiredis writes
  /// well-formed commands, so anything else sets `bad` (the connection is then ended).
  static bool take_command(std::string& buf, std::vector<std::string>& cmd, bool& bad) {
    cmd.clear();
    std::size_t p = 0;
    auto line = [&](std::string& out) {
      const std::size_t e = buf.find("\r\n", p);
      if (e == std::string::npos) return false;
      out = buf.substr(p, e - p);
      p = e + 2;
      return true;
    };
    std::string head;
    if (!line(head)) return false;
    if (head.size() < 2 || head[0] != '*') return bad = true, false;
    const long n = std::stol(head.substr(1));
    for (long i = 0; i < n; ++i) {
      std::string len;
      if (!line(len)) return false;
      if (len.size() < 2 || len[0] != '$') return bad = true, false;
      const std::size_t l = std::stoul(len.substr(1));
      if (buf.size() < p + l + 2) return false;
      cmd.push_back(buf.substr(p, l));
      p += l + 2;
    }
    buf.erase(0, p);
    return true;
  }

  void serve_connection(int c) {
    std::string buf;
    char chunk[4096];
    for (;;) {
      std::vector<std::string> cmd;
      bool bad = false;
      while (!take_command(buf, cmd, bad)) {
        pollfd p{c, POLLIN, 0};
        if (bad || ::poll(&p, 1, locked([this] { return script_.idle_ms(); })) <= 0) return;
        const ssize_t n = ::read(c, chunk, sizeof chunk);
        if (n <= 0) return;
        buf.append(chunk, static_cast<std::size_t>(n));
      }
      const resp_answer a = locked([&] { return script_.respond(cmd); });
      if (!a.wire) return;
      for (std::size_t off = 0; off < a.wire->size();) {
        const ssize_t n = ::send(c, a.wire->data() + off, a.wire->size() - off, MSG_NOSIGNAL);
        if (n <= 0) return;
        off += static_cast<std::size_t>(n);
      }
      if (a.close_after) return;
    }
  }

  void serve() {
    for (;;) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      // One reply per send: without this, Nagle's algorithm holds the second reply of a pipeline
      // until the client's delayed ACK (40 ms a run).
      const int one = 1;
      ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      serve_connection(c);
      ::close(c);
      locked([this] { script_.closed(); });
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  script script_;  // its functions run under mutex_
};

}  // namespace nc_fuzz
