// noclobber/adapters/postgres/connect_failure.hpp — what a failed libpq connect means to a retry
// loop: refused for good (credentials, pg_hba.conf, TLS) or worth another try (server down).
//
// libpq does not hand over the SQLSTATE of a connection failure, so a failed PGconn is read by
// what libpq knows and by its message:
//
//   28P01 permanent  the server needed a password and none was given
//                    (PQconnectionNeedsPassword), or refused the one we sent ("password
//                    authentication failed …"). Having sent a password proves nothing: the
//                    server checks the connection limits after authentication
//   28000 permanent  pg_hba.conf refused the connection: "no pg_hba.conf entry …",
//                    "pg_hba.conf rejects connection …" (e.g. a `hostnossl … reject` line
//                    against sslmode=disable), or the server refused our client certificate
//                    (OpenSSL's "alert bad certificate", "alert certificate required", …)
//   tls   permanent  we refused the server: its certificate is not signed by sslrootcert
//                    ("certificate verify failed"), names another host (verify-full:
//                    "does not match host name"), or it has no TLS ("server does not support
//                    SSL, but SSL was required")
//   08006 transient  anything else (no server, a restart, a reset, too many connections, a
//                    role's CONNECTION LIMIT)
//
// The messages: the server's words come in the server's lc_messages, libpq's in the client's
// LC_MESSAGES (when libpq was built with NLS and a translation is installed); OpenSSL's reason
// strings ("certificate verify failed", "alert …") are never translated. A refusal worded in a
// language other than English is therefore classified 08006, transient: a retry loop then runs
// until its attempt or time budget, never forever — run servers with lc_messages=C (or English)
// to keep these refusals permanent.
//
// Thread safety: pure functions of one PGconn, which the caller uses from one thread at a time.
#pragma once

#include <libpq-fe.h>

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "noclobber/outcome.hpp"

namespace noclobber::postgres {

/// A failed connect: `code` (28P01, 28000, tls, 08006; see the overview) and what it means.
struct connect_failure {
  std::string code;
  write_status status = write_status::transient;
};

/// The meaning of a connect that failed with `message` (libpq's PQerrorMessage; redacted or not,
/// the words matched here hold no secret). `conn`: the failed connection, or null.
[[nodiscard]] inline connect_failure classify_connect_failure(const PGconn* conn, std::string_view message) {
  auto has = [&](std::string_view words) { return message.find(words) != std::string_view::npos; };
  if ((conn != nullptr && PQconnectionNeedsPassword(conn)) || has("password authentication failed"))
    return {"28P01", write_status::permanent};
  if (has("no pg_hba.conf entry") || has("pg_hba.conf rejects connection"))
    return {"28000", write_status::permanent};
  for (std::string_view alert : {"alert bad certificate", "alert certificate required", "alert unknown ca",
                                 "alert certificate unknown", "alert certificate revoked",
                                 "alert certificate expired", "alert access denied"}) {
    if (has(alert)) return {"28000", write_status::permanent};
  }
  if (has("certificate verify failed") || has("does not match host name") ||
      has("server does not support SSL"))
    return {"tls", write_status::permanent};
  return {"08006", write_status::transient};
}

/// Thrown by postgres::connection when it cannot connect: the message (no secret in it) and
/// its classification.
class connect_error : public std::runtime_error {
 public:
  connect_error(const std::string& what, connect_failure failure)
      : std::runtime_error(what), failure_(std::move(failure)) {}
  [[nodiscard]] const connect_failure& failure() const noexcept { return failure_; }

 private:
  connect_failure failure_;
};

}  // namespace noclobber::postgres
