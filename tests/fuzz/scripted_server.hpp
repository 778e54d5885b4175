// tests/fuzz/scripted_server.hpp — a loopback HTTP server that answers each request with the next
// answer of a fuzz input's script, for the targets that drive an HTTP adapter end to end through
// libcurl (fuzz_http_answers, fuzz_s3, fuzz_lease_answers).
//
// One server thread listens on 127.0.0.1 and answers each connection's first request with the
// next answer of the script, then closes the connection (no keep-alive guesswork); with the script
// used up it closes without answering (curl: an empty reply). Each input gets its own listener,
// on the same port as the last one (loopback.hpp), so no connection left over from one input can
// take another's answers and the ephemeral port range is not used up. Nothing leaves the machine.
//
// Thread safety: the script is guarded by a mutex; construct and destroy on one thread.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fuzz_support.hpp"
#include "loopback.hpp"

namespace nc_fuzz {

class scripted_server {
 public:
  explicit scripted_server(std::deque<std::string> answers) : script_(std::move(answers)) {
    fd_ = listen_loopback("scripted_server", port_);  // same port every input (loopback.hpp)
    thread_ = std::thread([this] { serve(); });
  }
  scripted_server(const scripted_server&) = delete;
  scripted_server& operator=(const scripted_server&) = delete;
  ~scripted_server() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }

  /// The requests received so far, in order, as read (head and body; cut short where the client
  /// stopped sending).
  [[nodiscard]] std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lk(mutex_);
    return requests_;
  }

  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  static bool readable(int c, int ms) {
    pollfd p{c, POLLIN, 0};
    return ::poll(&p, 1, ms) > 0;
  }
  // Reads one request: headers, then Content-Length bytes of body (so closing sends no RST).
  static std::string read_request(int c) {
    std::string req;
    char buf[4096];
    std::size_t need = std::string::npos;
    while ((need == std::string::npos || req.size() < need) && readable(c, 1000)) {
      const ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) return req;
      req.append(buf, static_cast<std::size_t>(n));
      const auto end = req.find("\r\n\r\n");
      if (need == std::string::npos && end != std::string::npos) {
        std::size_t body = 0;
        for (std::size_t p = 0; p < end;) {
          const std::size_t eol = req.find("\r\n", p);
          std::string line = req.substr(p, eol - p);
          for (char& ch : line) ch = static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
          if (line.rfind("content-length:", 0) == 0) body = std::stoul(line.substr(15));
          p = eol + 2;
        }
        need = end + 4 + body;
      }
    }
    return req;
  }
  void serve() {
    for (;;) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string request = read_request(c);
      std::optional<std::string> answer;
      {
        std::lock_guard<std::mutex> lk(mutex_);
        requests_.push_back(std::move(request));
        if (!script_.empty()) {
          answer = std::move(script_.front());
          script_.pop_front();
        }
      }
      if (answer) {
        for (std::size_t off = 0; off < answer->size();) {
          const ssize_t n = ::send(c, answer->data() + off, answer->size() - off, MSG_NOSIGNAL);
          if (n <= 0) break;
          off += static_cast<std::size_t>(n);
        }
      }
      ::shutdown(c, SHUT_WR);
      char drain[512];
      while (readable(c, 1000) && ::read(c, drain, sizeof drain) > 0) {
      }
      ::close(c);
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::deque<std::string> script_;     // guarded by mutex_
  std::vector<std::string> requests_;  // guarded by mutex_
};

/// A header value the way a server may write it (RFC 9110 field-vchar, spaces and tabs): other
/// control characters become spaces.
inline std::string header_value(reader& in) {
  std::string v = in.short_string();
  for (char& c : v) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) c = ' ';
  }
  return v;
}

/// `name` with the letters whose bit is set in `caps` (bit i % 8 for letter i) upper-cased.
inline std::string header_name(std::string_view name, std::uint8_t caps) {
  std::string n(name);
  for (std::size_t i = 0; i < n.size(); ++i)
    if ((caps >> (i % 8)) & 1) n[i] = static_cast<char>(n[i] >= 'a' && n[i] <= 'z' ? n[i] - 'a' + 'A' : n[i]);
  return n;
}

}  // namespace nc_fuzz
