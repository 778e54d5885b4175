// Helpers shared by the server adapter tests: the server's address from the environment (a test
// FAILS when it is missing: scripts/test_servers.sh sets it), unique key names per run, a TCP
// listener that accepts and never answers and a closed port (tests/loopback.hpp), a canned HTTP
// server, and writer subprocesses that start together (mode `gated`).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "loopback.hpp"

extern char** environ;

namespace nc_test {

/// The variable's value; FAILs the test (with the way to set it) when it is unset or empty.
inline std::string server_env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    FAIL("environment variable "
         << name << " is not set: run the server tests through scripts/test_servers.sh BUILD_DIR");
  }
  return v;
}

/// A name no other test run uses: prefix + pid + random.
/// Checks that `text` contains none of `secrets` (a password, a token).
inline void check_no_secret(const std::string& text, const std::vector<std::string>& secrets) {
  for (const auto& s : secrets) {
    INFO("text: " << text);
    CHECK(text.find(s) == std::string::npos);
  }
}

inline std::string unique_name(const std::string& prefix) {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  return prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(rd() % 100000) + "_" +
         std::to_string(counter.fetch_add(1));
}

using nc_loopback::closed_port;
using nc_loopback::silent_listener;

/// A one-thread HTTP server on loopback that answers every request with `response` (a whole
/// HTTP/1.1 response, "Connection: close" is added) — for status codes a real server won't give.
class canned_http_server {
 public:
  explicit canned_http_server(std::string response) : response_(std::move(response)) {
    const nc_loopback::listening_socket s = nc_loopback::listen_on_loopback("canned_http_server");
    fd_ = s.fd;
    port_ = s.port;
    thread_ = std::thread([this] { serve(); });
  }
  canned_http_server(const canned_http_server&) = delete;
  canned_http_server& operator=(const canned_http_server&) = delete;
  ~canned_http_server() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }

 private:
  void serve() {
    for (;;) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string req;
      char buf[4096];
      std::size_t need = std::string::npos;
      while (need == std::string::npos || req.size() < need) {
        const ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, static_cast<std::size_t>(n));
        const auto end = req.find("\r\n\r\n");
        if (need == std::string::npos && end != std::string::npos) {
          std::size_t body = 0;
          const auto cl = req.find("Content-Length: ");
          if (cl != std::string::npos && cl < end) body = std::stoul(req.substr(cl + 16));
          need = end + 4 + body;
        }
      }
      const std::string out = response_;
      (void)!::write(c, out.data(), out.size());
      ::close(c);
    }
  }
  std::string response_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

/// Starts `binary` with `args`, its stdout a pipe: the read end (the caller closes it); `pid` set.
inline int spawn_with_stdout_pipe(const char* binary, std::vector<std::string> args, pid_t& pid) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  args.insert(args.begin(), binary);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int rc = ::posix_spawn(&pid, binary, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  if (rc != 0) ::close(fds[0]);
  REQUIRE(rc == 0);
  return fds[0];
}

/// A child process running tests/servers/server_writer.cpp; its stdout is a pipe we can read, its
/// stdin one we write (mode `gated`: it connects, prints READY and waits for go()).
class writer_process {
 public:
  explicit writer_process(std::vector<std::string> args) {
    ::signal(SIGPIPE, SIG_IGN);  // go() to a writer that already died must fail, not kill us
    int fds[2], in[2];
    REQUIRE(::pipe(fds) == 0);
    REQUIRE(::pipe(in) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    args.insert(args.begin(), NOCLOBBER_SERVER_WRITER);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, NOCLOBBER_SERVER_WRITER, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    ::close(in[0]);
    out_ = fds[0];
    in_ = in[1];
    REQUIRE(rc == 0);
  }
  writer_process(const writer_process&) = delete;
  writer_process& operator=(const writer_process&) = delete;
  ~writer_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
    ::close(in_);
  }

  /// Releases a `gated` writer (false when it is gone).
  bool go() { return ::write(in_, "go\n", 3) == 3; }

  /// Blocks until the child printed `line` (a whole line); false on EOF first.
  bool wait_for_line(const std::string& line) {
    std::string cur;
    char c;
    while (::read(out_, &c, 1) == 1) {
      if (c == '\n') {
        if (cur == line) return true;
        cur.clear();
      } else {
        cur += c;
      }
    }
    return false;
  }
  void kill_now() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  /// Waits at most `limit` for exit: the exit status (or 128 + signal), or -1 when the child was
  /// still running then (it is killed: a stuck writer fails the test instead of hanging it).
  int wait_for(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    int st = 0;
    while (::waitpid(pid_, &st, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        kill_now();
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  /// Waits for exit; returns the exit status (or 128 + signal).
  int wait() {
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int in_ = -1;
};

/// A start barrier across processes: waits until every `gated` writer has connected (printed
/// READY), then releases them all, so they really write at the same time.
inline void start_together(std::vector<std::unique_ptr<writer_process>>& writers) {
  for (auto& w : writers) REQUIRE(w->wait_for_line("READY"));
  for (auto& w : writers) REQUIRE(w->go());
}

/// A conditional PUT (`precondition` is "If-Match: <etag>" or "If-None-Match: *") held open after
/// the server has checked it. The request goes out with `Expect: 100-continue` and no body; httpd
/// answers "100 Continue" only when the handler starts reading the body, and mod_dav reads it
/// after it has evaluated the precondition. So once the constructor returns, the check has passed
/// and the write is still to come: finish(body) sends the body and returns the final status.
/// This forces the window between the check and the write; nothing here depends on timing.
class stalled_put {
 public:
  stalled_put(const std::string& base_url, const std::string& key, const std::string& precondition,
              std::size_t body_size)
      : body_size_(body_size) {
    // base_url: "http://127.0.0.1:PORT/prefix/" (the servers run on loopback).
    const std::string scheme = "http://";
    const auto host_end = base_url.find(':', scheme.size());
    const auto path_begin = base_url.find('/', scheme.size());
    if (base_url.rfind(scheme, 0) != 0 || host_end == std::string::npos || path_begin == std::string::npos)
      throw std::invalid_argument("stalled_put: expected http://IPv4:PORT/path/, got " + base_url);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(base_url.substr(host_end + 1))));
    if (::inet_pton(AF_INET, base_url.substr(scheme.size(), host_end - scheme.size()).c_str(), &a.sin_addr) !=
        1)
      throw std::invalid_argument("stalled_put: the host must be an IPv4 address: " + base_url);
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("stalled_put: cannot connect to " + base_url);
    send_all("PUT " + base_url.substr(path_begin) + key + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + precondition +
             "\r\nContent-Length: " + std::to_string(body_size) + "\r\nExpect: 100-continue\r\n\r\n");
    interim_ = status(read_head());
  }
  stalled_put(const stalled_put&) = delete;
  stalled_put& operator=(const stalled_put&) = delete;
  ~stalled_put() { ::close(fd_); }

  /// The server's first answer: 100 when the precondition passed and it waits for the body.
  [[nodiscard]] int interim_status() const noexcept { return interim_; }

  /// Sends the body; the final status code.
  int finish(const std::string& body) {
    if (body.size() != body_size_)
      throw std::invalid_argument("stalled_put: body size differs from the announced one");
    send_all(body);
    return status(read_head());
  }

 private:
  void send_all(const std::string& s) {
    for (std::size_t sent = 0; sent < s.size();) {
      const ssize_t n = ::send(fd_, s.data() + sent, s.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("stalled_put: send failed");
      sent += static_cast<std::size_t>(n);
    }
  }
  std::string read_head() {  // one response head (status line and headers); a body is not read
    std::string head;
    char c;
    while (head.size() < 4 || head.compare(head.size() - 4, 4, "\r\n\r\n") != 0) {
      if (::recv(fd_, &c, 1, 0) != 1) throw std::runtime_error("stalled_put: connection closed; got " + head);
      head += c;
    }
    return head;
  }
  static int status(const std::string& head) {  // "HTTP/1.1 204 No Content\r\n..."
    const auto sp = head.find(' ');
    return sp == std::string::npos ? -1 : std::atoi(head.c_str() + sp + 1);
  }

  std::size_t body_size_;
  int fd_ = -1;
  int interim_ = -1;
};

}  // namespace nc_test
