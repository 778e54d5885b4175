// The latency fault (issue 19): this kernel has no `tc netem`, so latency goes through a TCP proxy
// the test runs. `latency_proxy` listens on 127.0.0.1 (a port the kernel picks), forwards every
// connection it accepts to one target address, and holds each chunk it forwards, both ways,
// until `delay()` has passed since the chunk arrived: a delay line, as on a slow link — it keeps
// reading while chunks are held, so a stream (etcd's raft messages) arrives late, not in bursts.
// A chunk keeps the delay it arrived under, and a connection's bytes stay in order, so while the
// delay is constant the bytes of all connections reach the server in the order they were sent;
// when the delay drops (a heal), a new chunk on another connection may overtake an older one
// still held: a request a client gave up on (its timeout) can land after the client's next
// request (on a new connection), which is what the unknown-outcome rule must survive.
//
//   latency_proxy proxy("127.0.0.1", server_port);   // listening once constructed
//   store s("127.0.0.1", proxy.port());
//   auto fault = proxy.fault("latency-1500ms", std::chrono::milliseconds(1500));  // for a nemesis
//   latency_cell(fc, proxy, std::chrono::milliseconds(1500), 60);  // or a whole fault_case's cell
//   latency_fault("slow-leader", {&p1, &p2, &p3}, pick_leader, delay);  // one of several, picked
//
// Each connection: two pump threads (client → server, server → client), each with its own queue
// of held chunks. When either side closes (after what was held for it is sent) or fails, both
// sockets are shut down and both pumps end. The destructor stops everything: the
// listener, every connection, every held chunk (dropped), and joins all threads.
//
// Thread safety: every public member from any thread. conns_mu_ guards the connection list; each
// pump's queue is its own thread's. No user callback runs inside.
#pragma once

#include <noclobber/race_harness/nemesis.hpp>
#include <noclobber/thread_annotations.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "faults/fault_run.hpp"

namespace nc_faults {

class latency_proxy {
 public:
  /// Listens at once; std::runtime_error when it cannot.
  latency_proxy(std::string target_host, int target_port)
      : host_(std::move(target_host)), target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0)
      throw std::runtime_error(std::string("latency_proxy: socket: ") + std::strerror(errno));
    sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 128) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      const std::string why = std::strerror(errno);
      ::close(listen_fd_);
      throw std::runtime_error("latency_proxy: cannot listen on 127.0.0.1: " + why);
    }
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  latency_proxy(const latency_proxy&) = delete;
  latency_proxy& operator=(const latency_proxy&) = delete;
  ~latency_proxy() { stop(); }

  [[nodiscard]] int port() const noexcept { return port_; }
  void set_delay(std::chrono::milliseconds d) noexcept { delay_ms_.store(d.count()); }
  [[nodiscard]] std::chrono::milliseconds delay() const noexcept {
    return std::chrono::milliseconds(delay_ms_.load());
  }
  /// Chunks forwarded (or dropped at stop) after being held for a delay > 0.
  [[nodiscard]] std::uint64_t delayed_chunks() const noexcept { return delayed_.load(); }
  /// Connections accepted so far.
  [[nodiscard]] std::uint64_t connections() const noexcept { return accepted_.load(); }
  /// Chunks held right now (received, not yet forwarded).
  [[nodiscard]] std::uint64_t held() const noexcept { return held_.load(); }

  /// Waits until no chunk is held (every request a client sent has reached the server, also the
  /// ones their clients gave up on), polling every 10 ms; false when `limit` passed first.
  bool wait_until_idle(std::chrono::milliseconds limit) const {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (held_.load() != 0) {
      if (std::chrono::steady_clock::now() >= end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }

  /// A nemesis action: inject sets `d`, heal sets the delay back to 0 (latency_fault on this
  /// proxy alone).
  std::shared_ptr<noclobber::fault_action> fault(std::string name, std::chrono::milliseconds d);

  /// Stops accepting, shuts every connection down, joins every thread. Idempotent.
  void stop() {
    if (stopping_.exchange(true)) return;
    if (acceptor_.joinable()) acceptor_.join();  // polls stopping_ every 50 ms
    ::close(listen_fd_);
    std::list<connection> conns;
    {
      noclobber::annotated_lock lock(conns_mu_);
      for (connection& c : conns_) shut(c);
      conns.splice(conns.end(), conns_);
    }
    for (connection& c : conns) {
      if (c.up.joinable()) c.up.join();
      if (c.down.joinable()) c.down.join();
      ::close(c.client);
      ::close(c.server);
    }
  }

 private:
  struct connection {
    int client = -1, server = -1;
    std::thread up, down;
  };

  static sockaddr_in loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
  }
  static void shut(const connection& c) noexcept {
    ::shutdown(c.client, SHUT_RDWR);
    ::shutdown(c.server, SHUT_RDWR);
  }

  void accept_loop() {
    while (!stopping_.load()) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      const int server = connect_target();
      if (server < 0) {
        ::close(client);
        continue;
      }
      accepted_.fetch_add(1);
      noclobber::annotated_lock lock(conns_mu_);
      connection& c = conns_.emplace_back();
      c.client = client;
      c.server = server;
      c.up = std::thread([this, client, server] { pump(client, server); });
      c.down = std::thread([this, client, server] { pump(server, client); });
    }
  }

  int connect_target() const {
    sockaddr_in a = loopback(target_port_);
    if (::inet_pton(AF_INET, host_.c_str(), &a.sin_addr) != 1) return -1;
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    const int one = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
  }

  // Forwards `from` → `to` as a delay line: it keeps reading while chunks are held (a chunk that
  // arrives while others wait is held only its own delay, as on a slow link, not behind them) and
  // sends each, in arrival order, once its arrival + the delay then has passed. At EOF it sends
  // what it holds, then (and at an error or stop, dropping what it holds) shuts both sockets down,
  // which ends the other direction's pump too. Polls stopping_ every 50 ms at most.
  void pump(int from, int to) {
    using clock = std::chrono::steady_clock;
    struct chunk {
      clock::time_point due;
      std::vector<char> bytes;
    };
    std::deque<chunk> queue;
    std::vector<char> buf(64 * 1024);
    bool eof = false, failed = false;
    while (!failed && !stopping_.load() && !(eof && queue.empty())) {
      while (!queue.empty() && queue.front().due <= clock::now()) {
        if (!send_all(to, queue.front().bytes.data(), queue.front().bytes.size())) {
          failed = true;
          break;
        }
        queue.pop_front();
        held_.fetch_sub(1);
      }
      if (failed || (eof && queue.empty())) break;
      auto wait = std::chrono::milliseconds(50);
      if (!queue.empty())
        wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(queue.front().due - clock::now()));
      pollfd p{eof ? -1 : from, POLLIN, 0};  // a negative fd: poll only waits
      if (::poll(&p, 1, static_cast<int>(std::max<long long>(0, wait.count()))) <= 0 || eof) continue;
      const ssize_t n = ::recv(from, buf.data(), buf.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) failed = true;
      if (n == 0) eof = true;
      if (n <= 0) continue;
      const std::chrono::milliseconds d = delay();
      if (d.count() > 0) delayed_.fetch_add(1);
      held_.fetch_add(1);
      queue.push_back({clock::now() + d, std::vector<char>(buf.data(), buf.data() + n)});
    }
    held_.fetch_sub(queue.size());  // dropped
    ::shutdown(from, SHUT_RDWR);
    ::shutdown(to, SHUT_RDWR);
  }

  static bool send_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
      const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  }

  std::string host_;
  int target_port_ = 0;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<long long> delay_ms_{0};
  std::atomic<std::uint64_t> delayed_{0};
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> held_{0};
  std::atomic<bool> stopping_{false};
  noclobber::annotated_mutex conns_mu_;
  std::list<connection> conns_ NOCLOBBER_GUARDED_BY(conns_mu_);
  std::thread acceptor_;
};

/// Picks, at inject time, the proxy a latency fault slows (an index into its proxies), from the
/// schedule's random number; it may throw (the fault is then recorded as failed).
using proxy_pick = std::function<std::size_t(std::uint64_t random)>;

/// A nemesis action on one of `proxies`: inject sets `d` on the one `pick` names then, heal sets
/// every proxy's delay back to 0. The proxies must outlive the action's last heal.
inline std::shared_ptr<noclobber::fault_action> latency_fault(std::string name,
                                                              std::vector<latency_proxy*> proxies,
                                                              proxy_pick pick, std::chrono::milliseconds d) {
  return std::make_shared<noclobber::function_fault>(
      std::move(name),
      [proxies, pick = std::move(pick), d](std::uint64_t random) {
        latency_proxy& p = *proxies.at(pick(random));
        p.set_delay(d);
        return "latency " + std::to_string(d.count()) +
               " ms on every chunk through 127.0.0.1:" + std::to_string(p.port());
      },
      [proxies] {
        for (latency_proxy* p : proxies) p->set_delay(std::chrono::milliseconds(0));
        return std::string("latency 0 ms");
      });
}

inline std::shared_ptr<noclobber::fault_action> latency_proxy::fault(std::string name,
                                                                     std::chrono::milliseconds d) {
  return latency_fault(
      std::move(name), {this}, [](std::uint64_t) { return std::size_t{0}; }, d);
}

/// Makes `fc` a latency cell: `faults` faults (the environment's count when set), each holding
/// every chunk through the proxy `pick` names `delay` (fault_case's sizes from the environment,
/// else `ops_per_writer` × 16). While every request waits in a proxy the operations clock stops,
/// so `max_hold` (3 s) heals it. The final reads come only once every chunk any proxy held has
/// been forwarded (a request a client gave up on has reached the server, so a late write is in
/// the final state), and then after fc's own settle, if it has one.
template <class Store>
void latency_cell(fault_case<Store>& fc, const std::string& fault_name, std::vector<latency_proxy*> proxies,
                  proxy_pick pick, std::chrono::milliseconds delay, unsigned ops_per_writer,
                  unsigned faults) {
  fc.fault_name = fault_name;
  size_from_env(fc, ops_per_writer, faults, std::chrono::seconds(3));
  fc.actions = {latency_fault(fc.fault_name, proxies, std::move(pick), delay)};
  fc.settle = [proxies, then = std::move(fc.settle)] {
    for (const latency_proxy* p : proxies) {
      if (!p->wait_until_idle(std::chrono::seconds(10)))
        throw std::runtime_error("a latency proxy still holds chunks 10 s after the heal");
    }
    if (then) then();
  };
}

/// The latency cell of a store whose clients all connect through `proxy`: one fault,
/// "latency-<ms>ms".
template <class Store>
void latency_cell(fault_case<Store>& fc, latency_proxy& proxy, std::chrono::milliseconds delay,
                  unsigned ops_per_writer) {
  latency_cell(
      fc, "latency-" + std::to_string(delay.count()) + "ms", {&proxy},
      [](std::uint64_t) { return std::size_t{0}; }, delay, ops_per_writer, 1);
}

}  // namespace nc_faults
