// example: examples/adapters/postgres_tls.cpp
// PostgreSQL over TLS: libpq does TLS from the conninfo (sslmode=verify-full checks the server's
// certificate against sslrootcert and its host name). A server that refuses the connection for
// good — pg_hba.conf (no TLS), a certificate we do not trust, a wrong password — throws
// connect_error classified `permanent`, never retried; no message shows the password. Needs
// NOCLOBBER_PG_TLS_CONNINFO ("host=… sslmode=verify-full sslrootcert=ca.crt …") and
// NOCLOBBER_PG_TLS_PASSWORD (scripts/servers/postgres_tls.sh starts such a server).
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/read_modify_write.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace pg = noclobber::postgres;

int main() {
  const char* tls_conninfo = std::getenv("NOCLOBBER_PG_TLS_CONNINFO");
  const char* password = std::getenv("NOCLOBBER_PG_TLS_PASSWORD");
  if (!tls_conninfo || !password) return std::puts("set NOCLOBBER_PG_TLS_CONNINFO and _PASSWORD"), 1;
  const std::string conninfo = std::string(tls_conninfo) + " password=" + password;

  pg::store store(conninfo, "example_tls_counters");  // TLS handshake, then scram-sha-256
  store.ensure_table();
  std::printf("TLS in use: %s\n", PQsslInUse(store.conn().native_handle()) ? "yes" : "no");
  auto r = noclobber::read_modify_write(store, "visits", [](const std::optional<std::string>& cur) {
    return std::to_string(cur ? std::stoll(*cur) + 1 : 1);
  });
  if (!r.ok()) return std::printf("gave up: %s\n", r.last_error.message.c_str()), 1;
  std::printf("visits = %s\n", r.value->c_str());

  // The same server without TLS: its pg_hba.conf says `hostnossl … reject`.
  try {
    pg::connection plain(conninfo + " sslmode=disable");  // the last sslmode= wins
    return std::puts("a connection without TLS was accepted"), 1;
  } catch (const pg::connect_error& e) {
    std::printf("without TLS: %s [%s, %s]\n", e.what(), e.failure().code.c_str(),
                e.failure().status == noclobber::write_status::permanent ? "permanent" : "transient");
    if (e.failure().status != noclobber::write_status::permanent) return 1;
    if (std::string(e.what()).find(password) != std::string::npos) return 1;
  }
  return 0;
}
