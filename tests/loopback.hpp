// Loopback sockets for the tests' scripted servers and transport-failure cases: a socket listening
// on a free 127.0.0.1 port, a port that accepts and never answers (a request sent there times out
// after it left), and a closed port (connecting is refused: nothing was sent).
//
// Thread safety: plain values and RAII owners; use each object from one thread.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

namespace nc_loopback {

struct listening_socket {
  int fd = -1;
  int port = 0;
};

/// A socket listening on 127.0.0.1 at a free port (backlog 16); the caller closes `fd`. Throws
/// std::runtime_error naming `who` when it cannot.
inline listening_socket listen_on_loopback(const char* who) {
  listening_socket s;
  s.fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (s.fd < 0 || ::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s.fd, 16) != 0 ||
      ::getsockname(s.fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (s.fd >= 0) ::close(s.fd);
    throw std::runtime_error(std::string(who) + ": cannot listen on loopback");
  }
  s.port = ntohs(a.sin_port);
  return s;
}

/// A loopback TCP port that accepts connections (the kernel's backlog) and never answers:
/// requests sent to it time out after being sent.
class silent_listener {
 public:
  silent_listener() : s_(listen_on_loopback("silent_listener")) {}
  silent_listener(const silent_listener&) = delete;
  silent_listener& operator=(const silent_listener&) = delete;
  ~silent_listener() { ::close(s_.fd); }
  [[nodiscard]] int port() const noexcept { return s_.port; }

 private:
  listening_socket s_;
};

/// A closed loopback port: connecting is refused (nothing was sent).
inline int closed_port() {
  const listening_socket s = listen_on_loopback("closed_port");
  ::close(s.fd);
  return s.port;
}

}  // namespace nc_loopback
