// Shared by the Redis server tests: a canned RESP server on loopback, for answers a real Redis
// gives only behind a proxy or an ACL, or never.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace nc_test {

/// A one-connection-at-a-time RESP server on loopback that answers the commands it reads with
/// `replies` in order (raw RESP), then closes; `commands()` lists the names it read. For answers a
/// real Redis gives only behind a proxy or an ACL, or never.
class canned_redis_server {
 public:
  explicit canned_redis_server(std::vector<std::string> replies) : replies_(std::move(replies)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("canned_redis_server: cannot listen on loopback");
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  canned_redis_server(const canned_redis_server&) = delete;
  canned_redis_server& operator=(const canned_redis_server&) = delete;
  ~canned_redis_server() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  [[nodiscard]] int port() const noexcept { return port_; }
  [[nodiscard]] std::vector<std::string> commands() {
    std::lock_guard<std::mutex> lk(mutex_);
    return commands_;
  }

 private:
  // The name of the first whole command in `buf` (hiredis sends arrays of bulk strings), erased.
  static bool take_command(std::string& buf, std::string& name) {
    std::size_t p = buf.find("\r\n");
    if (p == std::string::npos) return false;
    const long n = std::stol(buf.substr(1, p - 1));
    p += 2;
    for (long i = 0; i < n; ++i) {
      const std::size_t e = buf.find("\r\n", p);
      if (e == std::string::npos) return false;
      const std::size_t l = std::stoul(buf.substr(p + 1, e - p - 1));
      if (buf.size() < e + 2 + l + 2) return false;
      if (i == 0) name = buf.substr(e + 2, l);
      p = e + 2 + l + 2;
    }
    buf.erase(0, p);
    return true;
  }
  void serve() {
    std::size_t next = 0;
    for (;;) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string buf;
      char chunk[4096];
      for (bool open = true; open;) {
        std::string name;
        while (open && !take_command(buf, name)) {
          const ssize_t n = ::read(c, chunk, sizeof chunk);
          if (n <= 0) open = false;
          if (n > 0) buf.append(chunk, static_cast<std::size_t>(n));
        }
        if (!open || next == replies_.size()) break;
        {
          std::lock_guard<std::mutex> lk(mutex_);
          commands_.push_back(name);
        }
        const std::string& r = replies_[next++];
        (void)!::send(c, r.data(), r.size(), MSG_NOSIGNAL);
      }
      ::close(c);
    }
  }
  std::vector<std::string> replies_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<std::string> commands_;  // guarded by mutex_
};

/// A RESP bulk string.
inline std::string resp_bulk(const std::string& s) {
  return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
}

}  // namespace nc_test
