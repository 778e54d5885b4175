// PostgreSQL adapter against a server that checks passwords (scripts/servers/postgres.sh: members
// of nc_password_roles log in with scram-sha-256; NOCLOBBER_PG_AUTH_CONNINFO and _PASSWORD): the
// right password works (key=value and URI conninfo); a wrong or missing password is a clear error
// at connect that never shows the password; a password changed while connected stops the retry
// loop at the reconnect as permanent (not retried), leaves no lock held and shows no password.
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/keyed_mutex_map.hpp>
#include <noclobber/locked_read_modify_write.hpp>
#include <noclobber/ostream.hpp>
#include <noclobber/read_modify_write.hpp>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "server_env.hpp"

namespace pg = noclobber::postgres;
using noclobber::write_status;

namespace {

std::string admin_conninfo() {
  return nc_test::server_env("NOCLOBBER_PG_CONNINFO");
}
std::string auth_conninfo() {
  return nc_test::server_env("NOCLOBBER_PG_AUTH_CONNINFO");
}
std::string auth_password() {
  return nc_test::server_env("NOCLOBBER_PG_AUTH_PASSWORD");
}

/// The value of `key=` in a key=value conninfo.
std::string conninfo_field(const std::string& conninfo, const std::string& key) {
  const auto at = conninfo.find(key + "=");
  REQUIRE(at != std::string::npos);
  const auto from = at + key.size() + 1;
  return conninfo.substr(from, conninfo.find(' ', from) - from);
}

void exec_ok(pg::connection& c, const std::string& sql) {
  auto r = c.exec_simple(sql, true);
  INFO(sql << " -> " << r.error.code << " " << r.error.message);
  REQUIRE(r.ok());
}

/// What constructing a store throws, as text ("" when it did not throw).
std::string thrown_by_store(const std::string& conninfo, const std::string& table) {
  try {
    pg::store s(conninfo, table);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("postgres auth: the right password, as key=value and as a URI", "[server][postgres][auth]") {
  const std::string table = nc_test::unique_name("nc_auth_ok");
  pg::store s(auth_conninfo() + " password=" + auth_password(), table);
  s.ensure_table();
  REQUIRE(s.create_if_absent("k", "v").ok());
  auto who = s.conn().exec_simple("SELECT current_user", false);
  REQUIRE(who.ok());
  CHECK(std::string(PQgetvalue(who.result.get(), 0, 0)) == "nc_auth");
  const std::string uri = "postgresql://nc_auth:" + auth_password() + "@" +
                          conninfo_field(auth_conninfo(), "host") + ":" +
                          conninfo_field(auth_conninfo(), "port") + "/noclobber";
  pg::store by_uri(uri, table);
  CHECK(by_uri.read("k").value == "v");
  exec_ok(s.conn(), "DROP TABLE " + table);
}

TEST_CASE("postgres auth: a wrong or missing password is a clear error at connect, without the password",
          "[server][postgres][auth]") {
  const std::string wrong = "wrong-" + nc_test::unique_name("pw");
  const std::vector<std::string> secrets{wrong, auth_password()};
  const std::string msg = thrown_by_store(auth_conninfo() + " password=" + wrong, "nc_auth_never");
  CHECK(msg.find("password authentication failed") != std::string::npos);
  nc_test::check_no_secret(msg, secrets);
  const std::string uri = "postgresql://nc_auth:" + wrong + "@" + conninfo_field(auth_conninfo(), "host") +
                          ":" + conninfo_field(auth_conninfo(), "port") + "/noclobber";
  const std::string uri_msg = thrown_by_store(uri, "nc_auth_never");
  CHECK(uri_msg.find("password authentication failed") != std::string::npos);
  nc_test::check_no_secret(uri_msg, secrets);
  // No password at all (and none in PGPASSWORD or ~/.pgpass): libpq says one is needed.
  const std::string none_msg =
      thrown_by_store(auth_conninfo() + " passfile=/nonexistent/noclobber.pgpass", "nc_auth_never");
  CHECK(none_msg.find("password") != std::string::npos);
  CHECK_FALSE(none_msg.empty());
}

// Regression: a connection that sent its password and then failed was classed 28P01
// (permanent) because libpq says a password was used; the server checks connection limits only
// after authentication, so "too many connections" was never retried.
TEST_CASE("postgres auth: a connection limit reached after the password was accepted is transient",
          "[server][postgres][auth]") {
  const std::string role = nc_test::unique_name("nc_limited");
  const std::string password = "pw-" + nc_test::unique_name("limit");
  pg::connection admin(admin_conninfo());
  exec_ok(admin, "CREATE ROLE " + role + " LOGIN CONNECTION LIMIT 0 IN ROLE nc_password_roles PASSWORD '" +
                     password + "'");
  const std::string conninfo = "host=" + conninfo_field(auth_conninfo(), "host") +
                               " port=" + conninfo_field(auth_conninfo(), "port") +
                               " dbname=noclobber user=" + role + " password=" + password;
  std::optional<pg::connect_failure> failure;
  std::string what;
  try {
    pg::connection c(conninfo);
  } catch (const pg::connect_error& e) {
    failure = e.failure();
    what = e.what();
  }
  exec_ok(admin, "DROP ROLE " + role);
  REQUIRE(failure.has_value());
  INFO(what);
  CHECK(what.find("too many connections") != std::string::npos);
  CHECK(failure->status == write_status::transient);
  CHECK(failure->code == "08006");
  nc_test::check_no_secret(what, {password});
}

TEST_CASE("postgres auth: a password changed while connected stops the loop at the reconnect, lock released",
          "[server][postgres][auth]") {
  pg::connection admin(admin_conninfo());
  const std::string role = nc_test::unique_name("nc_rotated");
  const std::string password = "old-" + nc_test::unique_name("pw");
  const std::string new_password = "new-" + nc_test::unique_name("pw");
  exec_ok(admin, "CREATE ROLE " + role + " LOGIN PASSWORD '" + password + "' IN ROLE nc_password_roles");
  const std::string table = nc_test::unique_name("nc_rotated");
  std::string conninfo = auth_conninfo();
  conninfo.replace(conninfo.find("user=nc_auth"), 12, "user=" + role);
  {
    pg::store s(conninfo + " password=" + password, table);
    s.ensure_table();
    REQUIRE(s.create_if_absent("k", "0").ok());
    // The operator rotates the password and the server drops the session.
    exec_ok(admin, "ALTER ROLE " + role + " PASSWORD '" + new_password + "'");
    exec_ok(admin, "SELECT pg_terminate_backend(" + std::to_string(s.conn().backend_pid()) + ")");

    noclobber::keyed_mutex_map<std::string> locks;
    noclobber::retry_policy policy;
    policy.max_attempts = 1000;  // a loop that retried the refusal would run far past 2 attempts
    policy.timeout = std::chrono::seconds(20);
    std::vector<std::string> hook_lines;
    policy.on_retry = [&](const noclobber::retry_event& e) { hook_lines.push_back(e.error.message); };
    unsigned fn_calls = 0;
    const auto r = noclobber::locked_read_modify_write(
        locks, s, std::string("k"),
        [&](const std::optional<std::string>& v) {
          ++fn_calls;
          return noclobber::update<std::string>(v.value_or("") + "+");
        },
        policy);
    CHECK(r.outcome == noclobber::rmw_outcome::gave_up);
    CHECK(r.reason == noclobber::stop_reason::permanent);
    CHECK(r.attempts <= 2);  // the dropped session may cost one transient attempt first
    CHECK(fn_calls == 0);
    CHECK(r.last_error.code == "28P01");
    CHECK(r.last_error.message.find("password authentication failed") != std::string::npos);
    CHECK(bool(locks.try_lock(std::string("k"))));  // no lock left held
    const std::vector<std::string> secrets{password, new_password};
    nc_test::check_no_secret(r.last_error.code + " " + r.last_error.message, secrets);
    nc_test::check_no_secret(noclobber::to_text(r), secrets);
    for (const auto& line : hook_lines) nc_test::check_no_secret(line, secrets);
    // Later calls fail the same way, at once.
    CHECK(s.read("k").status == noclobber::read_status::permanent);
  }
  // With the password it has now, the row is as it was: nothing was written.
  pg::store again(conninfo + " password=" + new_password, table);
  CHECK(again.read("k").value == "0");
  exec_ok(again.conn(), "DROP TABLE " + table);
  exec_ok(admin, "DROP OWNED BY " + role + "; DROP ROLE " + role);
}
