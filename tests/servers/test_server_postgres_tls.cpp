// PostgreSQL adapter against a server that REQUIRES TLS (scripts/servers/postgres_tls.sh:
// `hostssl … scram-sha-256`, `hostnossl … reject`; NOCLOBBER_PG_TLS_CONNINFO has
// sslmode=verify-full and the CA that signed the server's certificate): writers over TLS lose no
// update; a connect without TLS, with the wrong root CA, or with a wrong password is refused and
// classified permanent (connect_failure.hpp) — also when it happens at a reconnect inside a retry
// loop — and no message shows the password.
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/adapters/postgres_lease.hpp>
#include <noclobber/ostream.hpp>
#include <noclobber/read_modify_write.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "increment_race.hpp"
#include "server_env.hpp"

namespace pg = noclobber::postgres;
using noclobber::write_status;

namespace {

std::string conninfo() {
  return nc_test::server_env("NOCLOBBER_PG_TLS_CONNINFO");
}
std::string password() {
  return nc_test::server_env("NOCLOBBER_PG_TLS_PASSWORD");
}
std::string with_password() {
  return conninfo() + " password=" + password();
}
/// The conninfo with `key=value` replaced (the key must be there).
std::string replace_option(std::string c, const std::string& key, const std::string& value) {
  const auto at = c.find(key + "=");
  REQUIRE(at != std::string::npos);
  const auto end = c.find(' ', at);
  return c.replace(at, end == std::string::npos ? std::string::npos : end - at, key + "=" + value);
}

void exec_ok(pg::connection& c, const std::string& sql) {
  auto r = c.exec_simple(sql, true);
  INFO(sql << " -> " << r.error.code << " " << r.error.message);
  REQUIRE(r.ok());
}

/// What connecting throws (its text and classification); FAILs when it connects.
pg::connect_error refused(const std::string& c) {
  try {
    pg::connection conn(c);
  } catch (const pg::connect_error& e) {
    return e;
  }
  FAIL("connected: " << pg::detail::describe_conninfo(c));
  return pg::connect_error("", {});
}

}  // namespace

TEST_CASE("postgres tls: verify-full connects over TLS, and racing writers lose nothing",
          "[server][postgres][tls]") {
  const std::string table = nc_test::unique_name("nc_tls");
  pg::store s(with_password(), table);
  s.ensure_table();
  auto ssl = s.conn().exec_simple("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", false);
  REQUIRE(ssl.ok());
  REQUIRE(ssl.rows() == 1);
  CHECK(std::string(PQgetvalue(ssl.result.get(), 0, 0)) == "t");
  CHECK(PQsslInUse(s.conn().native_handle()) == 1);

  constexpr int writers = 6, increments = 20;
  std::vector<pg::store> stores;
  for (int i = 0; i < writers; ++i) stores.emplace_back(with_password(), table);  // every handshake first
  for (const auto& f : nc_test::race_increments(stores, "counter", increments)) CHECK(f == "");
  CHECK(s.read("counter").value == std::to_string(writers * increments));
  exec_ok(s.conn(), "DROP TABLE " + table);
}

TEST_CASE("postgres tls: the lease backend runs over TLS", "[server][postgres][tls][lease]") {
  pg::advisory_lease_backend b(with_password());
  CHECK(PQsslInUse(b.session().native_handle()) == 1);
  const std::string key = nc_test::unique_name("tls_lock");
  auto a = b.try_acquire(key, std::chrono::seconds(5));
  REQUIRE(a.status == noclobber::lease_status::acquired);
  CHECK(b.release(key, a.grant) == noclobber::lease_check::held);
}

TEST_CASE("postgres tls: sslmode=disable is refused by pg_hba.conf, permanent", "[server][postgres][tls]") {
  const pg::connect_error e = refused(replace_option(with_password(), "sslmode", "disable"));
  INFO(e.what());
  CHECK(std::string(e.what()).find("pg_hba.conf rejects connection") != std::string::npos);
  CHECK(e.failure().code == "28000");
  CHECK(e.failure().status == write_status::permanent);
  nc_test::check_no_secret(e.what(), {password()});
}

TEST_CASE("postgres tls: a root CA that did not sign the server's certificate is refused, permanent",
          "[server][postgres][tls]") {
  const pg::connect_error e = refused(
      replace_option(with_password(), "sslrootcert", nc_test::server_env("NOCLOBBER_PG_TLS_WRONG_CA")));
  INFO(e.what());
  CHECK(std::string(e.what()).find("certificate verify failed") != std::string::npos);
  CHECK(e.failure().code == "tls");
  CHECK(e.failure().status == write_status::permanent);
  nc_test::check_no_secret(e.what(), {password()});
}

TEST_CASE("postgres tls: a wrong password is refused, permanent, and shown nowhere",
          "[server][postgres][tls]") {
  const std::string wrong = "wrong-" + nc_test::unique_name("pw");
  const pg::connect_error e = refused(conninfo() + " password=" + wrong);
  INFO(e.what());
  CHECK(std::string(e.what()).find("password authentication failed") != std::string::npos);
  CHECK(e.failure().code == "28P01");
  CHECK(e.failure().status == write_status::permanent);
  nc_test::check_no_secret(e.what(), {wrong, password()});
}

TEST_CASE("postgres tls: a reconnect that meets an untrusted certificate stops the loop, permanent",
          "[server][postgres][tls]") {
  // sslrootcert names a copy of the CA; after the first connect the copy becomes the wrong CA,
  // so the reconnect (PQreset) refuses the server's certificate.
  const std::filesystem::path ca =
      std::filesystem::temp_directory_path() / (nc_test::unique_name("nc_tls_ca") + ".crt");
  const auto from = conninfo().find("sslrootcert=") + 12;
  const std::string ca_file = conninfo().substr(from, conninfo().find(' ', from) - from);
  std::filesystem::copy_file(ca_file, ca);
  const std::string table = nc_test::unique_name("nc_tls_reset");
  {
    pg::store s(replace_option(with_password(), "sslrootcert", ca.string()), table);
    s.ensure_table();
    REQUIRE(s.create_if_absent("k", "0").ok());
    std::filesystem::copy_file(nc_test::server_env("NOCLOBBER_PG_TLS_WRONG_CA"), ca,
                               std::filesystem::copy_options::overwrite_existing);
    pg::connection other(with_password());
    exec_ok(other, "SELECT pg_terminate_backend(" + std::to_string(s.conn().backend_pid()) + ")");

    noclobber::retry_policy policy;
    policy.max_attempts = 1000;  // a loop that retried the refusal would run far past 2 attempts
    policy.timeout = std::chrono::seconds(20);
    unsigned fn_calls = 0;
    const auto r = noclobber::read_modify_write(
        s, std::string("k"),
        [&](const std::optional<std::string>& v) {
          ++fn_calls;
          return v.value_or("") + "+";
        },
        policy);
    INFO(noclobber::to_text(r));
    CHECK(r.reason == noclobber::stop_reason::permanent);
    CHECK(r.attempts <= 2);  // the dropped session may cost one transient attempt first
    CHECK(fn_calls == 0);
    CHECK(r.last_error.code == "tls");
    CHECK(r.last_error.message.find("certificate verify failed") != std::string::npos);
    nc_test::check_no_secret(noclobber::to_text(r), {password()});
  }
  std::filesystem::remove(ca);
  pg::store again(with_password(), table);
  CHECK(again.read("k").value == "0");
  exec_ok(again.conn(), "DROP TABLE " + table);
}
