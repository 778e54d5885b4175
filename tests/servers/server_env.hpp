// Helpers shared by the server adapter tests: the server's address from the environment (a test
// FAILS when it is missing: scripts/test_servers.sh sets it), unique key names per run, a TCP
// listener that accepts and never answers (to drive timeouts), and writer subprocesses.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

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
inline std::string unique_name(const std::string& prefix) {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  return prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(rd() % 100000) + "_" +
         std::to_string(counter.fetch_add(1));
}

/// A loopback TCP port that accepts connections (the kernel's backlog) and never answers:
/// requests sent to it time out after being sent.
class silent_listener {
 public:
  silent_listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("silent_listener: cannot listen on loopback");
    }
    port_ = ntohs(a.sin_port);
  }
  silent_listener(const silent_listener&) = delete;
  silent_listener& operator=(const silent_listener&) = delete;
  ~silent_listener() { ::close(fd_); }
  [[nodiscard]] int port() const noexcept { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

/// A one-thread HTTP server on loopback that answers every request with `response` (a whole
/// HTTP/1.1 response, "Connection: close" is added) — for status codes a real server won't give.
class canned_http_server {
 public:
  explicit canned_http_server(std::string response) : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("canned_http_server: cannot listen on loopback");
    }
    port_ = ntohs(a.sin_port);
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

/// A closed loopback port: connecting is refused (nothing was sent).
inline int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

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

/// A child process running tests/servers/server_writer.cpp; its stdout is a pipe we can read.
class writer_process {
 public:
  explicit writer_process(std::vector<std::string> args) {
    out_ = spawn_with_stdout_pipe(NOCLOBBER_SERVER_WRITER, std::move(args), pid_);
  }
  writer_process(const writer_process&) = delete;
  writer_process& operator=(const writer_process&) = delete;
  ~writer_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
  }

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
};

}  // namespace nc_test
