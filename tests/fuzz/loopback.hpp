// tests/fuzz/loopback.hpp — the listening socket of the fuzz targets' scripted loopback servers
// (scripted_server.hpp for HTTP, resp_server.hpp for Redis, pg_server.hpp for PostgreSQL).
//
// Every input's listener takes the same port (SO_REUSEADDR: the connections of earlier inputs
// linger in TIME_WAIT on it): a fresh port per input would use up the ephemeral range within
// minutes. The old listener is closed first, so its backlog goes with it. Nothing leaves the
// machine (127.0.0.1 only).
//
// Thread safety: call from the fuzzing thread only (the remembered port is a plain static).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace nc_fuzz {

namespace detail {
inline int listen_on(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (fd >= 0 && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
      ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(fd, 16) == 0)
    return fd;
  if (fd >= 0) ::close(fd);
  return -1;
}
}  // namespace detail

/// A listening socket on 127.0.0.1, on the port the last call used when it is free; its port in
/// `port_out`. std::runtime_error naming `who` when none can be had.
inline int listen_loopback(const char* who, int& port_out) {
  static int port = 0;
  int fd = detail::listen_on(port);
  if (fd < 0 && port != 0) fd = detail::listen_on(port = 0);  // the port was taken meanwhile
  if (fd < 0) throw std::runtime_error(std::string(who) + ": cannot listen on loopback");
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = port_out = ntohs(a.sin_port);
  return fd;
}

}  // namespace nc_fuzz
