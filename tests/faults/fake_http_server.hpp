// A small HTTP/1.1 server on loopback for the fault tests: keep-alive connections, every request
// read whole (headers and Content-Length body), and a handler that decides per request to answer
// or to reset the connection without an answer (after having read — and possibly applied — the
// whole request). It can also stop listening for a while after a reset, so that a client's
// re-send finds the port closed (a killed server).
//
// Thread safety: the handler runs on the server's one thread; `requests()` and the counters are
// safe to read from the test's thread.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace nc_faults {

struct http_request {
  std::string method, path, headers, body;
  int index_on_connection = 0;  // 0: the connection's first request; >0: a reused connection

  /// The value of header `name` (case-insensitive, no colon), or "".
  [[nodiscard]] std::string header(const std::string& name) const {
    std::size_t pos = 0;
    while (pos < headers.size()) {
      const std::size_t eol = headers.find("\r\n", pos);
      const std::string line = headers.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
      pos = eol == std::string::npos ? headers.size() : eol + 2;
      if (line.size() <= name.size() || line[name.size()] != ':') continue;
      bool same = true;
      for (std::size_t i = 0; i < name.size() && same; ++i) {
        same = std::tolower(static_cast<unsigned char>(line[i])) ==
               std::tolower(static_cast<unsigned char>(name[i]));
      }
      if (!same) continue;
      std::size_t v = name.size() + 1;
      while (v < line.size() && line[v] == ' ') ++v;
      return line.substr(v);
    }
    return {};
  }
};

/// The handler's answer: a whole HTTP response (status line, headers, body; Content-Length is
/// added), or `reset` — close the connection with an RST and no answer.
struct http_answer {
  bool reset = false;
  std::string status = "200 OK";
  std::string headers;  // extra header lines, each ending in \r\n
  std::string body;

  static http_answer reset_connection() { return {true, {}, {}, {}}; }
};

class fake_http_server {
 public:
  using handler_type = std::function<http_answer(const http_request&)>;

  explicit fake_http_server(handler_type handler) : handler_(std::move(handler)) {
    listen_on(0);
    thread_ = std::thread([this] { serve(); });
  }
  fake_http_server(const fake_http_server&) = delete;
  fake_http_server& operator=(const fake_http_server&) = delete;
  ~fake_http_server() {
    stop_.store(true);
    thread_.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    for (const conn& c : conns_) ::close(c.fd);
  }

  [[nodiscard]] int port() const noexcept { return port_; }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }
  [[nodiscard]] std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  /// After the next reset the port refuses connections for `d` (0: it keeps listening).
  void refuse_after_reset(std::chrono::milliseconds d) { refuse_for_ms_.store(d.count()); }

  /// Blocks until the port accepts connections again (at most ~5 s).
  void wait_listening() const {
    for (int i = 0; i < 5000 && !listening_.load(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  /// Every request received whole, in order (copies included).
  [[nodiscard]] std::vector<http_request> requests() const {
    std::lock_guard<std::mutex> g(mu_);
    return log_;
  }
  /// Connections refused while the port was closed are not counted; these were accepted.
  [[nodiscard]] int connections() const noexcept { return connections_.load(); }

 private:
  struct conn {
    int fd;
    std::string in;
    int served = 0;
  };

  void listen_on(int port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    socklen_t len = sizeof a;
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("fake_http_server: cannot listen on loopback port " + std::to_string(port));
    }
    port_ = ntohs(a.sin_port);
    listening_.store(true);
  }

  // Parses one whole request from the front of `in`; false when more bytes are needed.
  static bool take_request(std::string& in, http_request& out) {
    const std::size_t end = in.find("\r\n\r\n");
    if (end == std::string::npos) return false;
    const std::size_t line_end = in.find("\r\n");
    const std::string line = in.substr(0, line_end);
    const std::size_t sp1 = line.find(' ');
    const std::size_t sp2 = line.find(' ', sp1 + 1);
    out.method = line.substr(0, sp1);
    out.path = line.substr(sp1 + 1, sp2 - sp1 - 1);
    out.headers = in.substr(line_end + 2, end - line_end);
    const std::string cl = out.header("Content-Length");
    const std::size_t body = cl.empty() ? 0 : std::stoul(cl);
    if (in.size() < end + 4 + body) return false;
    out.body = in.substr(end + 4, body);
    in.erase(0, end + 4 + body);
    return true;
  }

  static void reset(int fd) {
    const linger l{1, 0};  // close() sends RST instead of FIN
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd);
  }

  // Serves every whole request buffered on `c`; false when the connection is gone.
  bool serve_buffered(conn& c) {
    http_request req;
    while (take_request(c.in, req)) {
      req.index_on_connection = c.served++;
      {
        std::lock_guard<std::mutex> g(mu_);
        log_.push_back(req);
      }
      const http_answer a = handler_(req);
      if (a.reset) {
        // The port closes before the reset, so the client's re-send (and wait_listening) finds it closed.
        const long refuse = refuse_for_ms_.exchange(0);
        if (refuse > 0) {
          listening_.store(false);
          ::close(listen_fd_);
          listen_fd_ = -1;
          reopen_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(refuse);
        }
        reset(c.fd);
        return false;
      }
      const std::string out = "HTTP/1.1 " + a.status + "\r\n" + a.headers +
                              "Content-Length: " + std::to_string(a.body.size()) + "\r\n\r\n" +
                              (req.method == "HEAD" ? std::string() : a.body);
      if (::send(c.fd, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) {
        ::close(c.fd);
        return false;
      }
    }
    return true;
  }

  void serve() {
    while (!stop_.load()) {
      if (listen_fd_ < 0 && std::chrono::steady_clock::now() >= reopen_at_) listen_on(port_);
      std::vector<pollfd> fds;
      if (listen_fd_ >= 0) fds.push_back({listen_fd_, POLLIN, 0});
      for (const conn& c : conns_) fds.push_back({c.fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 10) <= 0) continue;
      std::size_t i = 0;
      if (listen_fd_ >= 0) {
        if (fds[0].revents & POLLIN) {
          const int fd = ::accept(listen_fd_, nullptr, nullptr);
          if (fd >= 0) {
            conns_.push_back({fd, {}, 0});
            connections_.fetch_add(1);
          }
        }
        i = 1;
      }
      std::vector<conn> alive;
      for (std::size_t k = 0; k < conns_.size(); ++k) {
        conn& c = conns_[k];
        const bool polled = i + k < fds.size() && fds[i + k].fd == c.fd;
        if (!polled || !(fds[i + k].revents & (POLLIN | POLLHUP | POLLERR))) {
          alive.push_back(std::move(c));
          continue;
        }
        char buf[8192];
        const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n <= 0) {
          ::close(c.fd);
          continue;
        }
        c.in.append(buf, static_cast<std::size_t>(n));
        if (serve_buffered(c)) alive.push_back(std::move(c));
      }
      conns_ = std::move(alive);
    }
  }

  handler_type handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::vector<conn> conns_;  // only the server thread touches these
  std::chrono::steady_clock::time_point reopen_at_{};
  std::atomic<long> refuse_for_ms_{0};
  std::atomic<int> connections_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> listening_{false};
  mutable std::mutex mu_;
  std::vector<http_request> log_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace nc_faults
