// A scripted HTTP/1.1 server on loopback for the S3 adapter's tests: keep-alive connections,
// and for each request whatever the script says — an answer, or reading the whole request and
// then resetting the connection (what made libcurl re-send a write by itself, issue 19). Every
// request it read is recorded (method, target, headers, body, the connection it came on).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "loopback.hpp"

namespace nc_s3_test {

struct request {
  std::string method, target, body;
  std::map<std::string, std::string> headers;  // names in lower case
  int connection = 0;                          // 1 for the first accepted connection, ...
  std::chrono::steady_clock::time_point at;    // when its last byte was read
  [[nodiscard]] std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

/// What to do with one request.
struct action {
  enum kind_t { answer, reset } kind = answer;
  int status = 200;
  std::string reason = "OK";
  std::vector<std::string> headers;  // whole lines, without CRLF
  std::string body;

  static action ok(std::string etag = "\"0123456789abcdef0123456789abcdef\"") {
    return {answer, 200, "OK", {"ETag: " + etag}, ""};
  }
  static action status_with(int status, std::string reason, std::string code,
                            std::vector<std::string> headers = {}, std::string message = "") {
    return {answer, status, std::move(reason), std::move(headers),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>" + code + "</Code><Message>" + message +
                "</Message><RequestId>req-1</RequestId></Error>"};
  }
  static action reset_after_reading() { return {reset, 0, "", {}, ""}; }
};

class fake_s3_server {
 public:
  using script = std::function<action(const request&, std::size_t index)>;

  /// `continue_100`: answer `Expect: 100-continue` with an interim 100 (otherwise libcurl sends
  /// the body when its wait runs out, and the request can be re-sent: no answer byte came back).
  explicit fake_s3_server(script s, bool continue_100 = false)
      : script_(std::move(s)), continue_100_(continue_100) {
    const nc_loopback::listening_socket l = nc_loopback::listen_on_loopback("fake_s3_server");
    fd_ = l.fd;
    port_ = l.port;
    thread_ = std::thread([this] { accept_loop(); });
  }
  fake_s3_server(const fake_s3_server&) = delete;
  fake_s3_server& operator=(const fake_s3_server&) = delete;
  ~fake_s3_server() {
    stopping_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    std::vector<std::thread> handlers;
    {
      std::lock_guard lock(mutex_);
      for (int c : open_) ::shutdown(c, SHUT_RDWR);  // wakes handlers blocked in read()
      handlers.swap(handlers_);
    }
    for (auto& t : handlers) t.join();
  }

  [[nodiscard]] std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  [[nodiscard]] std::vector<request> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  void accept_loop() {
    int n = 0;
    for (;;) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::lock_guard lock(mutex_);
      open_.push_back(c);
      handlers_.emplace_back([this, c, id = ++n] { serve(c, id); });
    }
  }

  // Reads one request; false at EOF.
  bool read_request(int c, std::string& pending, request& out) const {
    char buf[8192];
    std::size_t end = std::string::npos;
    while ((end = pending.find("\r\n\r\n")) == std::string::npos) {
      const ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) return false;
      pending.append(buf, static_cast<std::size_t>(n));
    }
    const std::string head = pending.substr(0, end);
    std::size_t line_end = head.find("\r\n");
    const std::string first = head.substr(0, line_end);
    const auto sp1 = first.find(' '), sp2 = first.rfind(' ');
    out.method = first.substr(0, sp1);
    out.target = first.substr(sp1 + 1, sp2 - sp1 - 1);
    while (line_end != std::string::npos && line_end < head.size()) {
      const std::size_t next = head.find("\r\n", line_end + 2);
      const std::string line =
          head.substr(line_end + 2, next == std::string::npos ? std::string::npos : next - line_end - 2);
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        out.headers[name] = value;
      }
      line_end = next;
    }
    std::size_t length = 0;
    if (auto it = out.headers.find("content-length"); it != out.headers.end())
      length = std::stoul(it->second);
    pending.erase(0, end + 4);
    if (continue_100_ && out.headers.count("expect")) {
      const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
      (void)!::write(c, cont.data(), cont.size());
    }
    while (pending.size() < length) {
      const ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) return false;
      pending.append(buf, static_cast<std::size_t>(n));
    }
    out.body = pending.substr(0, length);
    pending.erase(0, length);
    out.at = std::chrono::steady_clock::now();
    return true;
  }

  void serve(int c, int id) {
    std::string pending;
    for (;;) {
      request r;
      r.connection = id;
      if (stopping_ || !read_request(c, pending, r)) break;
      std::size_t index = 0;
      {
        std::lock_guard lock(mutex_);
        index = requests_.size();
        requests_.push_back(r);
      }
      const action a = script_(r, index);
      if (a.kind == action::reset) {
        linger l{1, 0};  // RST, not FIN
        ::setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        break;
      }
      std::string out = "HTTP/1.1 " + std::to_string(a.status) + " " + a.reason + "\r\n";
      for (const auto& h : a.headers) out += h + "\r\n";
      if (a.status != 304) out += "Content-Length: " + std::to_string(a.body.size()) + "\r\n";
      out += "\r\n";
      if (r.method != "HEAD" && a.status != 304) out += a.body;
      if (::write(c, out.data(), out.size()) < 0) break;
    }
    std::lock_guard lock(mutex_);
    std::erase(open_, c);
    ::close(c);
  }

  script script_;
  bool continue_100_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  mutable std::mutex mutex_;
  std::vector<std::thread> handlers_;
  std::vector<int> open_;  // connections being served
  std::vector<request> requests_;
};

}  // namespace nc_s3_test
