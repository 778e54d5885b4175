// etcd adapter against an etcd with v3 auth enabled (scripts/servers/etcd_auth.sh:
// NOCLOBBER_ETCD_AUTH_*; tokens live 2 s): a token from /v3/auth/authenticate on every request,
// a new one when it expires, and the failures — a wrong password, no credentials, a password
// changed while the store holds a token — each a permanent error that is not retried, leaves no
// lock held and never shows the password or a token. The lease backend with the same
// credentials: acquired, busy, renewed and released across expired tokens; a wrong password fails.
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/etcd_lease.hpp>
#include <noclobber/keyed_mutex_map.hpp>
#include <noclobber/lease_lock.hpp>
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
using lease_locks = noclobber::lease_lock_map<et::lease_backend>;

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

// The lease backend takes the same credentials through the same session (adapters/etcd/session.hpp).
TEST_CASE("etcd auth: a lease with credentials is acquired, busy, renewed after its token expired, released",
          "[server][etcd][auth][lease]") {
  const std::string key = nc_test::unique_name("authlease");
  et::lease_backend ba(url(), app(), "nc/authlease/"), bb(url(), app(), "nc/authlease/");
  lease_locks a(ba, std::chrono::seconds(10)), b(bb, std::chrono::seconds(10));
  et::store kv(url(), app());
  auto g = a.try_lock(key);
  REQUIRE(g.owns_lock());
  CHECK(g.token() > 0);
  const auto held = kv.read(ba.lock_key(key));
  REQUIRE(held.found());
  CHECK(held.value == g.grant().owner);  // the lease ID, put under the lease
  CHECK_FALSE(b.try_lock(key));          // busy for a second client with its own token
  CHECK(g.renew() == noclobber::lease_check::held);
  CHECK(ba.authentications() == 1);
  CHECK(bb.authentications() == 1);
  // Tokens live 2 s, the lease 10 s. etcd refuses the expired token (401, gRPC 16) of a grant, a
  // txn or a revoke: the backend gets a new one and sends the request again. (etcd 3.4 did not
  // always check the keep-alive's token; the no-server test in tests/curl/ covers that re-send.)
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  CHECK(g.renew() == noclobber::lease_check::held);
  CHECK_FALSE(b.try_lock(key));      // still busy: b's grant was refused for its token, then sent again
  CHECK(bb.authentications() == 2);  // without the re-send: lease_error
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  CHECK(g.renew() == noclobber::lease_check::held);
  const noclobber::fencing_token first = g.token();
  CHECK(g.unlock() == noclobber::lease_check::held);  // the revoke
  CHECK(kv.read(ba.lock_key(key)).absent());          // the key went with the lease
  auto gb = b.try_lock(key);
  REQUIRE(gb.owns_lock());
  CHECK(bb.authentications() == 3);
  CHECK(gb.token() > first);
  CHECK(gb.unlock() == noclobber::lease_check::held);
}

TEST_CASE("etcd auth: a lease with a wrong password fails at once, not retried, without the password",
          "[server][etcd][auth][lease]") {
  const std::string wrong = "wrong-" + nc_test::unique_name("pw");
  const std::string key = nc_test::unique_name("wrongpwlease");
  et::lease_backend bad(url(), et::credentials{app().user, wrong}, "nc/authlease/");
  const auto a = bad.try_acquire(key, std::chrono::seconds(5));
  CHECK(a.status == noclobber::lease_status::failed);
  CHECK(a.error.message.find("authenticate failed") != std::string::npos);
  CHECK(a.error.message.find("authentication failed") != std::string::npos);
  CHECK(bad.authentications() == 1);  // the refused authenticate is not sent again
  nc_test::check_no_secret(a.error.code + " " + a.error.message, {wrong, app().password});
  const noclobber::lease_grant made_up{1, "7587", std::chrono::seconds(5)};
  CHECK(bad.extend(key, made_up, std::chrono::seconds(5)) == noclobber::lease_check::unknown);
  CHECK(bad.release(key, made_up) == noclobber::lease_check::unknown);
  CHECK(bad.authentications() == 3);

  lease_locks locks(bad, std::chrono::seconds(5));
  try {
    (void)locks.try_lock(key);
    FAIL("try_lock with a wrong password did not throw");
  } catch (const noclobber::lease_error& e) {
    CHECK(std::string(e.what()).find("authenticate failed") != std::string::npos);
    nc_test::check_no_secret(e.what(), {wrong, app().password});
  }
  et::store kv(url(), app());
  CHECK(kv.read(bad.lock_key(key)).absent());  // nothing was granted or put
  CHECK_THROWS_AS(et::lease_backend(url(), et::credentials{"", "x"}), std::invalid_argument);
}
