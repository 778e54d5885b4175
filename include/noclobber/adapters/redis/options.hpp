// noclobber/adapters/redis/options.hpp — where and as whom a Redis store connects: host, port,
// credentials (AUTH), database (SELECT) and timeout, from fields or a redis:// URL.
//
// Overview
// --------
//   connect_options o;                      // 127.0.0.1:6379, no AUTH, database 0, 5 s timeout
//   o.username = "app"; o.password = pw;    // Redis 6+ ACL user: AUTH app pw
//   o.password = pw;                        // no username: legacy AUTH pw (the default user)
//   o.db = 2;                               // SELECT 2
//   auto p = parse_url("redis://app:pw@127.0.0.1:6380/2");   // the same from a URL
//
// Every connect and every reconnect of a store (adapters/redis/connection.hpp) sends AUTH (when a
// password is set) and SELECT (when db is not 0) before anything else, so a reconnect never runs
// a command as the wrong user or in the wrong database. A refused AUTH or SELECT (WRONGPASS,
// NOAUTH, a database out of range) is classified like any error reply (detail::error_status):
// permanent, so no retry loop waits for a password to become right.
//
// URL: redis://[[username][:password]@]host[:port][/db]; %XX escapes are decoded in the username
// and password; rediss:// (TLS) is refused: hiredis 0.14, the Debian 12 client library, has no
// TLS (docs/adapters/redis.md). Secrets: the password never appears in an exception message,
// a store_error or `operator<<` (which prints the URL with "[redacted]@"): adapters/detail/redact.hpp.
//
// Thread safety: plain data and pure functions. No user code is called.
#pragma once

#include <chrono>
#include <cstddef>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>

#include "noclobber/adapters/detail/redact.hpp"

namespace noclobber::redis {

/// Where and as whom to connect; see the overview.
struct connect_options {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string username;  // empty: legacy `AUTH password` (the default user)
  std::string password;  // empty: no AUTH
  int db = 0;            // SELECT db after AUTH when not 0
  std::chrono::milliseconds timeout = std::chrono::seconds(5);  // connect and every reply
};

/// "redis://[redacted]@host:port/db" (no credentials): what messages and operator<< show.
[[nodiscard]] inline std::string describe(const connect_options& o) {
  const bool auth = !o.password.empty() || !o.username.empty();
  return std::string("redis://") + (auth ? std::string(noclobber::detail::redacted_mark) + "@" : "") +
         o.host + ":" + std::to_string(o.port) + "/" + std::to_string(o.db);
}

inline std::ostream& operator<<(std::ostream& os, const connect_options& o) {
  return os << describe(o);
}

namespace detail {

/// `s` with %XX escapes decoded; false when an escape is malformed.
inline bool percent_decode(std::string_view s, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return false;
    int v = 0;
    for (std::size_t k = 1; k <= 2; ++k) {
      const char c = s[i + k];
      v = v * 16 + (c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -256);
    }
    if (v < 0) return false;
    out += static_cast<char>(v);
    i += 2;
  }
  return true;
}

/// A non-negative decimal of at most `max`; -1 when `s` is not one.
inline long parse_bounded(std::string_view s, long max) noexcept {
  if (s.empty() || s.size() > 10) return -1;
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v <= max ? v : -1;
}

}  // namespace detail

/// Parses redis://[[user][:password]@]host[:port][/db] (see the overview). std::invalid_argument,
/// with the URL's credentials redacted, when it is malformed or asks for TLS (rediss://).
[[nodiscard]] inline connect_options parse_url(std::string_view url) {
  const auto bad = [&](std::string_view why) {
    return std::invalid_argument("noclobber::redis: bad URL '" +
                                 noclobber::detail::redact_url(std::string(url)) + "': " + std::string(why));
  };
  if (url.starts_with("rediss://")) {
    throw bad("rediss:// (TLS) is not supported: hiredis 0.14 (Debian 12) has no TLS");
  }
  if (!url.starts_with("redis://")) throw bad("want redis://[user:password@]host[:port][/db]");
  connect_options o;
  std::string_view rest = url.substr(8);
  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    const std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) {
      const long n = detail::parse_bounded(db, 1L << 30);
      if (n < 0) throw bad("the database after '/' must be a non-negative number");
      o.db = static_cast<int>(n);
    }
  }
  const std::size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    const std::size_t colon = userinfo.find(':');
    if (!detail::percent_decode(userinfo.substr(0, colon), o.username) ||
        (colon != std::string_view::npos &&
         !detail::percent_decode(userinfo.substr(colon + 1), o.password))) {
      throw bad("malformed %-escape in the credentials");
    }
    authority = authority.substr(at + 1);
  }
  const std::size_t colon = authority.rfind(':');
  const std::size_t bracket = authority.rfind(']');  // [IPv6]:port
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    const long port = detail::parse_bounded(authority.substr(colon + 1), 65535);
    if (port <= 0) throw bad("the port must be 1-65535");
    o.port = static_cast<int>(port);
    authority = authority.substr(0, colon);
  }
  if (authority.size() >= 2 && authority.front() == '[' && authority.back() == ']') {
    authority = authority.substr(1, authority.size() - 2);
  }
  if (authority.empty()) throw bad("no host");
  o.host = std::string(authority);
  return o;
}

}  // namespace noclobber::redis
