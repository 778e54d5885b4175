// etcd adapter against an etcd with v3 auth enabled (scripts/servers/etcd_auth.sh:
// NOCLOBBER_ETCD_AUTH_*; tokens live 2 s): a token from /v3/auth/authenticate on every request,
// a new one when it expires, and the failures — a wrong password, no credentials, a password
// changed while the store holds a token — each a permanent error that is not retried, leaves no
// lock held and never shows the password or a token.
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/keyed_mutex_map.hpp>
#include <noclobber/locked_read_modify_write.hpp>
#include <noclobber/ostream.hpp>
#include <noclobber/read_modify_write.hpp>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server_env.hpp"

namespace et = noclobber::etcd;

namespace {

std::string url() {
  return nc_test::server_env("NOCLOBBER_ETCD_AUTH_URL");
}
et::credentials app() {
  return {nc_test::server_env("NOCLOBBER_ETCD_AUTH_USER"),
          nc_test::server_env("NOCLOBBER_ETCD_AUTH_PASSWORD")};
}

/// etcdctl as root, `input` on its stdin; the test fails when it does.
void etcdctl_as_root(const std::string& args, const std::string& input = "") {
  const std::string cmd = "echo '" + input + "' | ETCDCTL_API=3 etcdctl --endpoints=" + url() +
                          " --user root:" + nc_test::server_env("NOCLOBBER_ETCD_AUTH_ROOT_PASSWORD") + " " +
                          args + " >/dev/null 2>&1";
  INFO("etcdctl " << args);
  REQUIRE(std::system(cmd.c_str()) == 0);
}

}  // namespace

TEST_CASE("etcd auth: one token for many requests, a new one when it expires", "[server][etcd][auth]") {
  et::store s(url(), app());
  const std::string key = nc_test::unique_name("nc/auth");
  REQUIRE(s.create_if_absent(key, "0").ok());
  auto got = s.read(key);
  REQUIRE(got.found());
  REQUIRE(s.write_if_match(key, got.token, "1").ok());
  CHECK(s.authentications() == 1);
  // The server's tokens live 2 s: this one expires, the next request is refused (401, gRPC 16),
  // the store gets a new token and sends the request again.
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  got = s.read(key);
  REQUIRE(got.found());
  CHECK(got.value == "1");
  CHECK(s.authentications() == 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  CHECK(s.write_if_match(key, got.token, "2").ok());  // a write is sent again too: it had not run
  CHECK(s.authentications() == 3);
  CHECK(s.read(key).value == "2");
  CHECK(s.erase_if_match(key, s.read(key).token).ok());
}

TEST_CASE("etcd auth: a wrong password is a clear permanent error, not retried, without the password",
          "[server][etcd][auth]") {
  const std::string wrong = "wrong-" + nc_test::unique_name("pw");
  et::store s(url(), et::credentials{app().user, wrong});
  const std::string key = nc_test::unique_name("nc/wrongpw");
  const auto r = s.read(key);
  CHECK(r.status == noclobber::read_status::permanent);
  CHECK(r.error.message.find("authenticate failed") != std::string::npos);
  CHECK(r.error.message.find("authentication failed") != std::string::npos);
  nc_test::check_no_secret(r.error.code + " " + r.error.message, {wrong, app().password});

  noclobber::keyed_mutex_map<std::string> locks;
  noclobber::retry_policy policy;
  policy.max_attempts = 1000;
  policy.timeout = std::chrono::seconds(20);
  unsigned fn_calls = 0;
  const auto rmw = noclobber::locked_read_modify_write(
      locks, s, key,
      [&](const std::optional<std::string>&) {
        ++fn_calls;
        return noclobber::update<std::string>("x");
      },
      policy);
  CHECK(rmw.outcome == noclobber::rmw_outcome::gave_up);
  CHECK(rmw.reason == noclobber::stop_reason::permanent);
  CHECK(rmw.attempts == 1);
  CHECK(fn_calls == 0);
  CHECK(bool(locks.try_lock(key)));
  nc_test::check_no_secret(noclobber::to_text(rmw), {wrong});
  CHECK_THROWS_AS(et::store(url(), et::credentials{"", "x"}), std::invalid_argument);
}

TEST_CASE("etcd auth: no credentials against a server that requires them is permanent",
          "[server][etcd][auth]") {
  et::store s(url());
  const auto r = s.read(nc_test::unique_name("nc/noauth"));
  CHECK(r.status == noclobber::read_status::permanent);
  CHECK(r.error.message.find("user name is empty") != std::string::npos);
}

TEST_CASE("etcd auth: a password changed while the store holds a token stops at the re-authenticate",
          "[server][etcd][auth]") {
  const std::string user = nc_test::unique_name("nc_rotated");
  const std::string password = "old-" + nc_test::unique_name("pw");
  etcdctl_as_root("user add " + user + ":" + password);
  etcdctl_as_root("user grant-role " + user + " noclobber_rw");
  et::store s(url(), et::credentials{user, password});
  const std::string key = nc_test::unique_name("nc/rotated");
  REQUIRE(s.create_if_absent(key, "0").ok());
  etcdctl_as_root("user passwd " + user + " --interactive=false", "new-" + password);
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));  // the old token expires
  const auto r = s.read(key);
  CHECK(r.status == noclobber::read_status::permanent);
  CHECK(r.error.message.find("authenticate failed") != std::string::npos);
  nc_test::check_no_secret(r.error.code + " " + r.error.message, {password});
  etcdctl_as_root("user delete " + user);
  et::store cleanup(url(), app());
  CHECK(cleanup.erase_if_match(key, cleanup.read(key).token).ok());
}
