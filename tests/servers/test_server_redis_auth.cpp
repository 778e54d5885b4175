// Redis adapter against a server that requires AUTH (scripts/servers/redis_auth.sh:
// NOCLOBBER_REDIS_AUTH_*): an ACL user and the legacy default-user password through
// connect_options and a redis:// URL, SELECT on connect and again after a reconnect, and the
// failures a production user meets — a wrong password at connect, no password, a password
// revoked while connected, a database out of range — each a permanent error that is not retried,
// leaves no lock held and never shows the password (messages, exceptions, operator<<).
#include <noclobber/adapters/redis.hpp>
#include <noclobber/adapters/redis/hash_store.hpp>
#include <noclobber/adapters/redis_lease.hpp>
#include <noclobber/keyed_mutex_map.hpp>
#include <noclobber/locked_read_modify_write.hpp>
#include <noclobber/ostream.hpp>
#include <noclobber/read_modify_write.hpp>

#include <chrono>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "redis_raw.hpp"
#include "server_env.hpp"

namespace rd = noclobber::redis;
using nc_test::raw;
using noclobber::write_status;

namespace {

struct auth_server {
  rd::connect_options base;  // host and port, no credentials
  std::string user, password, admin_password;
};

auth_server server() {
  auth_server s;
  auto [host, port] = rd::parse_address(nc_test::server_env("NOCLOBBER_REDIS_AUTH_ADDR"));
  s.base.host = host;
  s.base.port = port;
  s.base.timeout = std::chrono::seconds(2);
  s.user = nc_test::server_env("NOCLOBBER_REDIS_AUTH_USER");
  s.password = nc_test::server_env("NOCLOBBER_REDIS_AUTH_PASSWORD");
  s.admin_password = nc_test::server_env("NOCLOBBER_REDIS_AUTH_ADMIN_PASSWORD");
  return s;
}

rd::connect_options as_user(const auth_server& s, std::string user, std::string password, int db = 0) {
  rd::connect_options o = s.base;
  o.username = std::move(user);
  o.password = std::move(password);
  o.db = db;
  return o;
}

/// The default user (legacy AUTH), for setting up users and looking at the data.
rd::store admin(const auth_server& s, int db = 0) {
  return rd::store(as_user(s, "", s.admin_password, db));
}

std::string whoami(redisContext* c) {
  auto r = raw(c, {"ACL", "WHOAMI"});
  REQUIRE(r->type == REDIS_REPLY_STRING);
  return std::string(rd::detail::text_of(r.get()));
}

/// The `db=` field of this connection's CLIENT INFO.
std::string client_db(redisContext* c) {
  auto r = raw(c, {"CLIENT", "INFO"});
  REQUIRE(r->type == REDIS_REPLY_STRING);
  const std::string info(rd::detail::text_of(r.get()));
  const auto at = info.find(" db=");
  REQUIRE(at != std::string::npos);
  return info.substr(at + 4, info.find(' ', at + 4) - at - 4);
}

std::string client_id(redisContext* c) {
  auto r = raw(c, {"CLIENT", "ID"});
  REQUIRE(r->type == REDIS_REPLY_INTEGER);
  return std::to_string(r->integer);
}

/// Fails the test when `text` shows any of `secrets`.
void check_no_secret(const std::string& text, const std::vector<std::string>& secrets) {
  for (const auto& s : secrets) {
    INFO("text: " << text);
    CHECK(text.find(s) == std::string::npos);
  }
}

/// What a constructor throws, as text ("" when it did not throw).
template <class Make>
std::string thrown_by(Make make) {
  try {
    make();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

std::string percent_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace

TEST_CASE("redis auth: an ACL user and the default user's password, through options",
          "[server][redis][auth]") {
  const auth_server s = server();
  rd::store app(as_user(s, s.user, s.password));
  CHECK(whoami(app.native_handle()) == s.user);
  rd::store legacy(as_user(s, "", s.admin_password));
  CHECK(whoami(legacy.native_handle()) == "default");
  const std::string key = nc_test::unique_name("nc:auth");
  REQUIRE(app.create_if_absent(key, "0").ok());
  const auto got = legacy.read(key);
  REQUIRE(got.found());
  CHECK(got.value == "0");
  CHECK(legacy.write_if_match(key, got.token, "1").ok());
  CHECK(app.read(key).value == "1");
  CHECK(app.erase_if_match(key, app.read(key).token).ok());
}

TEST_CASE("redis auth: a redis:// URL carries user, password (%-escaped) and database",
          "[server][redis][auth]") {
  const auth_server s = server();
  rd::store adm = admin(s);
  // A user whose password needs escaping in a URL.
  const std::string user = nc_test::unique_name("nc_url");
  const std::string password = "p@ss:w/rd%" + nc_test::unique_name("x");
  raw(adm.native_handle(), {"ACL", "SETUSER", user, "on", ">" + password, "~*", "&*", "+@all"});
  const std::string url = "redis://" + user + ":" + percent_encode(password) + "@" + s.base.host + ":" +
                          std::to_string(s.base.port) + "/3";
  rd::store st(url);
  CHECK(whoami(st.native_handle()) == user);
  CHECK(client_db(st.native_handle()) == "3");
  const std::string key = nc_test::unique_name("nc:url");
  REQUIRE(st.create_if_absent(key, "in db 3").ok());
  CHECK(admin(s, 3).read(key).value == "in db 3");
  CHECK(admin(s, 0).read(key).absent());
  // The pool and the hash store take the same URL.
  rd::store_pool pool(url, 2);
  CHECK(client_db(pool.acquire()->native_handle()) == "3");
  raw(adm.native_handle(), {"ACL", "DELUSER", user});
  (void)admin(s, 3).erase_if_match(key, admin(s, 3).read(key).token);
}

TEST_CASE("redis auth: AUTH and SELECT run again on every reconnect", "[server][redis][auth]") {
  const auth_server s = server();
  rd::store adm = admin(s);
  rd::store st(as_user(s, s.user, s.password, 5));
  const std::string key = nc_test::unique_name("nc:reconnect");
  REQUIRE(st.create_if_absent(key, "0").ok());
  const std::string first_id = client_id(st.native_handle());
  for (int round = 1; round <= 3; ++round) {
    // The server drops the store's connection; the next call fails transiently (its answer is
    // lost before anything was written), read_modify_write retries, the store reconnects.
    auto killed = raw(adm.native_handle(), {"CLIENT", "KILL", "ID", client_id(st.native_handle())});
    REQUIRE(killed->type == REDIS_REPLY_INTEGER);
    REQUIRE(killed->integer == 1);
    const auto r = noclobber::read_modify_write(st, key, [&](const std::optional<std::string>& v) {
      return noclobber::update<std::string>(std::to_string(std::stoi(v.value()) + 1));
    });
    REQUIRE(r.outcome == noclobber::rmw_outcome::applied);
    CHECK(whoami(st.native_handle()) == s.user);
    CHECK(client_db(st.native_handle()) == "5");
    CHECK(admin(s, 5).read(key).value == std::to_string(round));
  }
  CHECK(client_id(st.native_handle()) != first_id);
  CHECK(admin(s, 0).read(key).absent());
  rd::store db5 = admin(s, 5);
  (void)db5.erase_if_match(key, db5.read(key).token);
}

TEST_CASE("redis auth: a wrong password is a clear permanent error at connect, without the password",
          "[server][redis][auth]") {
  const auth_server s = server();
  const std::string wrong = "wrong-" + nc_test::unique_name("pw");
  const std::vector<std::string> secrets{wrong, s.password, s.admin_password};
  for (const std::string& user : {s.user, std::string()}) {
    INFO("user '" << user << "'");
    const rd::connect_options o = as_user(s, user, wrong);
    const std::string store_msg = thrown_by([&] { rd::store st(o); });
    CHECK(store_msg.find("WRONGPASS") != std::string::npos);
    CHECK(store_msg.find("AUTH was refused") != std::string::npos);
    CHECK(store_msg.find("permanent") != std::string::npos);
    check_no_secret(store_msg, secrets);
    const std::string lease_msg = thrown_by([&] { rd::lease_backend b(o); });
    CHECK(lease_msg.find("WRONGPASS") != std::string::npos);
    check_no_secret(lease_msg, secrets);
    const std::string pool_msg = thrown_by([&] { rd::store_pool p(o, 2); });
    CHECK(pool_msg.find("WRONGPASS") != std::string::npos);
    check_no_secret(pool_msg, secrets);
    std::ostringstream shown;
    shown << o;
    CHECK(shown.str() == "redis://[redacted]@" + s.base.host + ":" + std::to_string(s.base.port) + "/0");
  }
  // The same through a URL: the exception names the server, not the credentials.
  const std::string url =
      "redis://" + s.user + ":" + wrong + "@" + s.base.host + ":" + std::to_string(s.base.port) + "/0";
  const std::string url_msg = thrown_by([&] { rd::store st(url); });
  CHECK(url_msg.find("WRONGPASS") != std::string::npos);
  CHECK(url_msg.find("redis://[redacted]@") != std::string::npos);
  check_no_secret(url_msg, secrets);
}

TEST_CASE("redis auth: no credentials against a server that requires them: NOAUTH, permanent, on first use",
          "[server][redis][auth]") {
  const auth_server s = server();
  rd::store st(s.base);  // connecting needs no AUTH; the first command does
  const std::string key = nc_test::unique_name("nc:noauth");
  const auto r = st.read(key);
  CHECK(r.status == noclobber::read_status::permanent);
  CHECK(r.error.message.find("NOAUTH") != std::string::npos);
  const auto w = st.create_if_absent(key, "x");
  CHECK(w.status == write_status::permanent);
  const auto rmw = noclobber::read_modify_write(
      st, key, [](const std::optional<std::string>&) { return noclobber::update<std::string>("x"); });
  CHECK(rmw.outcome == noclobber::rmw_outcome::gave_up);
  CHECK(rmw.reason == noclobber::stop_reason::permanent);
  CHECK(rmw.attempts == 1);
}

TEST_CASE("redis auth: a password revoked while connected stops the loop on the reconnect, lock released",
          "[server][redis][auth]") {
  const auth_server s = server();
  rd::store adm = admin(s);
  const std::string user = nc_test::unique_name("nc_revoked");
  const std::string password = "old-" + nc_test::unique_name("pw");
  const std::string new_password = "new-" + nc_test::unique_name("pw");
  raw(adm.native_handle(), {"ACL", "SETUSER", user, "on", ">" + password, "~*", "&*", "+@all"});
  rd::store st(as_user(s, user, password));
  const std::string key = nc_test::unique_name("nc:revoked");
  REQUIRE(st.create_if_absent(key, "0").ok());
  // The operator rotates the password and drops the user's connections.
  raw(adm.native_handle(), {"ACL", "SETUSER", user, "resetpass", ">" + new_password});
  auto killed = raw(adm.native_handle(), {"CLIENT", "KILL", "USER", user});
  REQUIRE(killed->type == REDIS_REPLY_INTEGER);
  REQUIRE(killed->integer == 1);

  noclobber::keyed_mutex_map<std::string> locks;
  noclobber::retry_policy policy;
  policy.max_attempts = 1000;  // a loop that retried the refusal would run far past 2 attempts
  policy.timeout = std::chrono::seconds(20);
  std::vector<std::string> hook_lines;
  policy.on_retry = [&](const noclobber::retry_event& e) { hook_lines.push_back(e.error.message); };
  unsigned fn_calls = 0;
  const auto r = noclobber::locked_read_modify_write(
      locks, st, key,
      [&](const std::optional<std::string>& v) {
        ++fn_calls;
        return noclobber::update<std::string>(v.value_or("") + "+");
      },
      policy);
  CHECK(r.outcome == noclobber::rmw_outcome::gave_up);
  CHECK(r.reason == noclobber::stop_reason::permanent);
  // Attempt 1 finds the connection dropped (transient), attempt 2 reconnects and is refused.
  CHECK(r.attempts == 2);
  CHECK(fn_calls == 0);
  CHECK(r.last_error.message.find("WRONGPASS") != std::string::npos);
  CHECK(r.last_error.message.find("AUTH was refused") != std::string::npos);
  CHECK(bool(locks.try_lock(key)));  // no lock left held
  const std::vector<std::string> secrets{password, new_password, s.admin_password};
  check_no_secret(r.last_error.code + " " + r.last_error.message, secrets);
  check_no_secret(noclobber::to_text(r), secrets);
  for (const auto& line : hook_lines) check_no_secret(line, secrets);
  // Every later call fails the same way, at once, without touching the data.
  CHECK(st.read(key).status == noclobber::read_status::permanent);
  CHECK(st.create_if_absent(key + ":other", "x").status == write_status::permanent);
  CHECK(admin(s).read(key).value == "0");
  raw(adm.native_handle(), {"ACL", "DELUSER", user});
  (void)adm.erase_if_match(key, adm.read(key).token);
}

TEST_CASE("redis auth: a database out of range is a permanent error at connect", "[server][redis][auth]") {
  const auth_server s = server();
  const std::string msg = thrown_by([&] { rd::store st(as_user(s, s.user, s.password, 100000)); });
  CHECK(msg.find("SELECT was refused") != std::string::npos);
  CHECK(msg.find("permanent") != std::string::npos);
  check_no_secret(msg, {s.password});
  CHECK_THROWS_AS(rd::store(as_user(s, s.user, s.password, -1)), std::invalid_argument);
}

TEST_CASE("redis auth: the lease backend and the hash store authenticate too", "[server][redis][auth]") {
  const auth_server s = server();
  rd::lease_backend leases(as_user(s, s.user, s.password, 2), nc_test::unique_name("nc:lease:") + ":");
  const std::string key = "k";
  const auto a = leases.try_acquire(key, std::chrono::seconds(5));
  REQUIRE(a.status == noclobber::lease_status::acquired);
  CHECK(leases.release(key, a.grant) == noclobber::lease_check::held);

  struct rec {
    std::string name;
  };
  rd::hash_store<rec> hs(as_user(s, s.user, s.password, 2), rd::hash_spec<rec>().field("name", &rec::name));
  const std::string hkey = nc_test::unique_name("nc:hash");
  REQUIRE(hs.create_if_absent(hkey, rec{"a"}).ok());
  auto raw_db2 = admin(s, 2);
  auto t = raw(raw_db2.native_handle(), {"HEXISTS", hkey, "name"});
  CHECK(t->integer == 1);
  raw(raw_db2.native_handle(), {"DEL", hkey});
}

TEST_CASE("redis::parse_url: fields, escapes, defaults; malformed URLs refused without their password",
          "[server][redis][auth]") {
  const auto o = rd::parse_url("redis://app:p%40ss%3Aw%2Frd@10.0.0.7:6380/4");
  CHECK(o.username == "app");
  CHECK(o.password == "p@ss:w/rd");
  CHECK(o.host == "10.0.0.7");
  CHECK(o.port == 6380);
  CHECK(o.db == 4);
  const auto legacy = rd::parse_url("redis://:secret@localhost");
  CHECK(legacy.username.empty());
  CHECK(legacy.password == "secret");
  CHECK(legacy.port == 6379);
  CHECK(legacy.db == 0);
  const auto v6 = rd::parse_url("redis://[::1]:7000/");
  CHECK(v6.host == "::1");
  CHECK(v6.port == 7000);
  CHECK(rd::options_from("127.0.0.1:7001").port == 7001);
  for (const char* bad : {"redis://u:hunter2@host:0/1", "redis://u:hunter2@host:99999",
                          "redis://u:hunter2@host/x", "redis://u:hunter2@:6379", "redis://u:hunter2%4@host",
                          "rediss://u:hunter2@host", "http://u:hunter2@host"}) {
    INFO(bad);
    try {
      (void)rd::parse_url(bad);
      FAIL("accepted");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("hunter2") == std::string::npos);
      CHECK(std::string(e.what()).find("[redacted]@") != std::string::npos);
    }
  }
}
