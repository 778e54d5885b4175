// tests/fuzz/pg_server.hpp — a loopback PostgreSQL server (wire protocol 3) whose answers a fuzz
// target or a test scripts, for driving the PostgreSQL adapters end to end through libpq
// (fuzz_postgres_lease_answers, tests/postgres).
//
// One server thread listens on 127.0.0.1 (loopback.hpp: the same port for every input) and serves
// one connection at a time. Each connection is accepted the way a trusting server accepts it (an
// SSL or GSS encryption request is refused with 'N'; then AuthenticationOk, server_version 15,
// BackendKeyData with the connection's pid, ReadyForQuery). Then each command — a simple query
// ('Q') or an extended one (Parse, Bind, Describe, Execute up to its Sync) — is handed to the
// script's `respond`, which says what to send (pg_wire::* builds it) and whether to close the
// connection then, or to close it without answering. Terminate, EOF or `idle_ms` of silence ends the
// connection. Nothing leaves the machine.
//
// Connection n (1-based) has pid `first_pid + n - 1`: a reconnect is a new backend.
//
// Thread safety: `respond` runs on the server thread under the server's mutex; the caller reads
// what it shares with it through `locked`, which takes the same mutex. Construct and destroy on
// one thread.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "loopback.hpp"

namespace nc_fuzz {

/// Backend messages of protocol 3.
namespace pg_wire {

inline std::string i32(std::int32_t v) {
  const auto u = static_cast<std::uint32_t>(v);
  return {static_cast<char>(u >> 24), static_cast<char>(u >> 16), static_cast<char>(u >> 8),
          static_cast<char>(u)};
}
inline std::string i16(std::int16_t v) {
  const auto u = static_cast<std::uint16_t>(v);
  return {static_cast<char>(u >> 8), static_cast<char>(u)};
}
/// An int8 in binary format (network byte order).
inline std::string be64(std::int64_t v) {
  const auto u = static_cast<std::uint64_t>(v);
  return i32(static_cast<std::int32_t>(u >> 32)) + i32(static_cast<std::int32_t>(u & 0xffffffffu));
}
inline std::string message(char type, std::string_view body) {
  return type + i32(static_cast<std::int32_t>(body.size() + 4)) + std::string(body);
}

struct column {
  std::uint32_t type = 25;  // int8 20, int4 23, int2 21, bool 16, text 25
  std::int16_t format = 1;  // 0 text, 1 binary
};
using row = std::vector<std::optional<std::string>>;  // nullopt: NULL

inline std::string row_description(const std::vector<column>& cols) {
  std::string b = i16(static_cast<std::int16_t>(cols.size()));
  for (const column& c : cols) {
    const std::int16_t len = c.type == 20 ? 8 : c.type == 23 ? 4 : c.type == 21 ? 2 : c.type == 16 ? 1 : -1;
    b += std::string("c\0", 2) + i32(0) + i16(0) + i32(static_cast<std::int32_t>(c.type)) + i16(len) +
         i32(-1) + i16(c.format);
  }
  return message('T', b);
}
inline std::string data_row(const row& values) {
  std::string b = i16(static_cast<std::int16_t>(values.size()));
  for (const auto& v : values) b += v ? i32(static_cast<std::int32_t>(v->size())) + *v : i32(-1);
  return message('D', b);
}
inline std::string command_complete(std::string_view tag) {
  return message('C', std::string(tag) + '\0');
}
inline std::string ready() {
  return message('Z', "I");
}
inline std::string error(std::string_view sqlstate, std::string_view text) {
  return message('E', std::string("SERROR\0VERROR\0C", 15) + std::string(sqlstate) + '\0' + 'M' +
                          std::string(text) + '\0' + '\0');
}

}  // namespace pg_wire

/// What the server does with one command.
struct pg_answer {
  std::optional<std::string> wire;  // the bytes to send; none: close without answering
  bool close_after = false;         // close the connection once they are sent
};

/// What a command was: a simple query, or an extended one with its parameters (text or binary
/// as sent; nullopt: NULL).
struct pg_command {
  bool extended = false;
  std::string sql;
  std::vector<std::optional<std::string>> params;
  int connection = 0;  // 1-based
};

class pg_server {
 public:
  struct script {
    std::function<pg_answer(const pg_command&)> respond;
    std::function<int()> idle_ms = [] { return 5000; };
  };

  explicit pg_server(script s, std::int32_t first_pid = 4242) : script_(std::move(s)), first_pid_(first_pid) {
    fd_ = listen_loopback("pg_server", port_);
    thread_ = std::thread([this] { serve(); });
  }
  pg_server(const pg_server&) = delete;
  pg_server& operator=(const pg_server&) = delete;
  ~pg_server() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }

  /// A conninfo for libpq: this server, no encryption, short connect timeout.
  [[nodiscard]] std::string conninfo() const {
    return "host=127.0.0.1 port=" + std::to_string(port_) +
           " user=fuzz dbname=fuzz sslmode=disable gssencmode=disable connect_timeout=5";
  }
  /// The backend pid of connection n (1-based).
  [[nodiscard]] std::int32_t pid_of(int connection) const noexcept { return first_pid_ + connection - 1; }

  /// Runs `f` under the mutex that `respond` runs under.
  template <class F>
  decltype(auto) locked(F&& f) {
    std::lock_guard<std::mutex> lk(mutex_);
    return std::forward<F>(f)();
  }

 private:
  // Reads exactly n bytes into out; false on EOF, error or idle timeout.
  bool read_exact(int c, std::size_t n, std::string& out) {
    out.clear();
    char chunk[4096];
    while (out.size() < n) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, locked([this] { return script_.idle_ms(); })) <= 0) return false;
      const std::size_t want = n - out.size() < sizeof chunk ? n - out.size() : sizeof chunk;
      const ssize_t got = ::read(c, chunk, want);
      if (got <= 0) return false;
      out.append(chunk, static_cast<std::size_t>(got));
    }
    return true;
  }
  static std::uint32_t be32(std::string_view s, std::size_t at) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
    return v;
  }
  static bool send_all(int c, std::string_view bytes) {
    for (std::size_t off = 0; off < bytes.size();) {
      const ssize_t n = ::send(c, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  // A length-prefixed message body after a 4-byte length; false when it is not one.
  bool read_body(int c, std::string& body) {
    std::string len;
    if (!read_exact(c, 4, len)) return false;
    const std::uint32_t n = be32(len, 0);
    if (n < 4 || n > (1u << 20)) return false;
    return read_exact(c, n - 4, body);
  }
  // The startup exchange: refuse encryption requests, accept the StartupMessage.
  bool startup(int c, int connection) {
    for (int tries = 0; tries < 3; ++tries) {
      std::string body;
      if (!read_body(c, body) || body.size() < 4) return false;
      const std::uint32_t code = be32(body, 0);
      if (code == 80877103 || code == 80877104) {  // SSLRequest, GSSENCRequest
        if (!send_all(c, "N")) return false;
        continue;
      }
      if (code != 196608) return false;  // protocol 3.0
      using namespace pg_wire;
      return send_all(c, message('R', i32(0)) +
                             message('S', std::string("server_version\0"
                                                      "15.0\0",
                                                      20)) +
                             message('S', std::string("integer_datetimes\0on\0", 21)) +
                             message('K', i32(pid_of(connection)) + i32(7)) + ready());
    }
    return false;
  }
  static std::string cstring(std::string_view body, std::size_t& at) {
    const std::size_t end = body.find('\0', at);
    if (end == std::string_view::npos) {
      at = body.size();
      return {};
    }
    std::string s(body.substr(at, end - at));
    at = end + 1;
    return s;
  }
  static std::vector<std::optional<std::string>> bind_params(std::string_view b) {
    std::vector<std::optional<std::string>> out;
    std::size_t at = 0;
    (void)cstring(b, at);  // portal
    (void)cstring(b, at);  // statement
    auto u16 = [&]() -> std::uint16_t {
      if (at + 2 > b.size()) return at = b.size(), 0;
      const auto v = static_cast<std::uint16_t>((static_cast<unsigned char>(b[at]) << 8) |
                                                static_cast<unsigned char>(b[at + 1]));
      at += 2;
      return v;
    };
    const std::uint16_t nformats = u16();
    for (std::uint16_t i = 0; i < nformats; ++i) (void)u16();
    const std::uint16_t n = u16();
    for (std::uint16_t i = 0; i < n && at + 4 <= b.size(); ++i) {
      const auto len = static_cast<std::int32_t>(be32(b, at));
      at += 4;
      if (len < 0) {
        out.emplace_back(std::nullopt);
      } else {
        const std::size_t l =
            static_cast<std::size_t>(len) < b.size() - at ? static_cast<std::size_t>(len) : b.size() - at;
        out.emplace_back(std::string(b.substr(at, l)));
        at += l;
      }
    }
    return out;
  }

  void serve_connection(int c, int connection) {
    if (!startup(c, connection)) return;
    pg_command cmd;
    cmd.connection = connection;
    for (;;) {
      std::string type;
      std::string body;
      if (!read_exact(c, 1, type) || !read_body(c, body)) return;
      std::size_t at = 0;
      switch (type[0]) {
        case 'X':
          return;
        case 'P':
          (void)cstring(body, at);  // statement name
          cmd.extended = true;
          cmd.sql = cstring(body, at);
          continue;
        case 'B':
          cmd.params = bind_params(body);
          continue;
        case 'Q':
          cmd.extended = false;
          cmd.sql = cstring(body, at);
          cmd.params.clear();
          break;
        case 'S':
          break;
        default:  // Describe, Execute, Flush
          continue;
      }
      const pg_answer answer = locked([&] { return script_.respond(cmd); });
      cmd = pg_command{};
      cmd.connection = connection;
      if (!answer.wire || !send_all(c, *answer.wire) || answer.close_after) return;
    }
  }

  void serve() {
    for (int connection = 1;; ++connection) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      const int one = 1;
      ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      serve_connection(c, connection);
      ::close(c);
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  script script_;  // respond and idle_ms run under mutex_
  std::int32_t first_pid_;
};

}  // namespace nc_fuzz
