// No secret leaves an adapter: each adapter is configured with known secrets and made to fail in
// every way it can without a real server (a host that does not resolve, a refused connection, a
// malformed configuration, a wrong server that echoes the request back with an error status);
// every store_error, exception message, race report and log line (the retry hooks' events, as a
// user's logger would print them) is then searched for the secrets.
//
// Redis is absent: its adapter takes no password (no AUTH), so it holds no secret to leak.
// The authentication failures against real servers are in tests/servers.
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/etcd_lease.hpp>
#include <noclobber/adapters/http_etag.hpp>
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/adapters/postgres_lease.hpp>
#include <noclobber/adapters/s3.hpp>
#include <noclobber/adapters/webdav_lock.hpp>
#include <noclobber/race_harness.hpp>
#include <noclobber/read_modify_write.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "curl/fake_s3_server.hpp"
#include "loopback.hpp"

namespace pg = noclobber::postgres;
using nc_loopback::closed_port;

namespace {

const std::string pg_password = "Pg-s3cr3t-7d1e";
const std::string s3_secret = "wJal-S3-secret-9f2c";
const std::string s3_token = "FQo-session-token-5b8a";
const std::string url_user = "app";
const std::string url_password = "url-pa55-3c9d";

/// Everything an adapter said, with where it came from.
struct transcript {
  std::vector<std::pair<std::string, std::string>> texts;

  void add(std::string where, std::string text) { texts.emplace_back(std::move(where), std::move(text)); }
  void add(std::string where, const noclobber::store_error& e) {
    REQUIRE_FALSE(e.empty());  // the failure path ran and said something
    add(std::move(where), e.code + " " + e.message);
  }
  /// The message of what `f` throws (it must throw).
  void add_thrown(std::string where, const std::function<void()>& f) {
    try {
      f();
    } catch (const std::exception& e) {
      add(std::move(where), e.what());
      return;
    }
    FAIL(where << ": did not throw");
  }
  /// The retry hooks' events as a logger would print them.
  [[nodiscard]] noclobber::retry_policy logging_policy() {
    noclobber::retry_policy p;
    p.max_attempts = 2;
    p.backoff = noclobber::backoff_policy::immediate();
    p.on_retry = [this](const noclobber::retry_event& e) {
      add("log: on_retry",
          "attempt " + std::to_string(e.attempt) + ": " + e.error.code + " " + e.error.message);
    };
    p.on_give_up = [this](const noclobber::give_up_event& e) {
      add("log: on_give_up", "gave up after " + std::to_string(e.attempts) + ": " + e.last_error.code + " " +
                                 e.last_error.message);
    };
    return p;
  }
};

/// No text of `t` contains any of `secrets`.
void require_no_secret(const transcript& t, const std::vector<std::string>& secrets) {
  REQUIRE_FALSE(t.texts.empty());
  for (const auto& [where, text] : t.texts) {
    INFO(where << ": " << text);
    CHECK_FALSE(text.empty());
    for (const std::string& s : secrets) CHECK(text.find(s) == std::string::npos);
  }
}

/// What a message about a user:password@ URL must not contain: the password, the userinfo, and
/// the Basic credentials (base64 of "user:password") a server may echo.
std::vector<std::string> url_secrets() {
  return {url_password, url_user + ":" + url_password,
          noclobber::detail::base64_encode(url_user + ":" + url_password)};
}

std::string url_with_password(int port, const std::string& path = "") {
  return "http://" + url_user + ":" + url_password + "@127.0.0.1:" + std::to_string(port) + path;
}

/// A wrong server: every request is answered `status` with the request itself (its headers,
/// Authorization included) echoed in the body, first thing.
nc_s3_test::action echo(const nc_s3_test::request& r, int status) {
  std::string body;
  for (const auto& [name, value] : r.headers) body = name + ": " + value + "\n" + body;
  if (auto it = r.headers.find("authorization"); it != r.headers.end())
    body = "authorization: " + it->second + "\n" + body;
  return {nc_s3_test::action::answer, status, "Echo", {"Content-Type: text/plain"}, body};
}

/// The string store calls of any adapter, each failure recorded.
template <class Store>
void fail_every_call(transcript& t, const std::string& who, Store& s) {
  const auto r = s.read("k");
  CHECK(r.failed());
  t.add(who + " read", r.error);
  typename Store::token_type token{};
  if constexpr (std::is_same_v<typename Store::token_type, std::string>) {
    token = "\"0123456789abcdef\"";  // a strong ETag
  } else {
    token = 1;
  }
  const auto w = s.write_if_match("k", token, "v");
  CHECK_FALSE(w.ok());
  t.add(who + " write_if_match", w.error);
  const auto c = s.create_if_absent("k", "v");
  CHECK_FALSE(c.ok());
  t.add(who + " create_if_absent", c.error);
  auto policy = t.logging_policy();
  const auto rmw = noclobber::read_modify_write(
      s, "k", [](const std::optional<std::string>& v) { return v.value_or("") + "x"; }, policy);
  CHECK_FALSE(rmw.ok());
  t.add(who + " read_modify_write", rmw.last_error);
}

}  // namespace

TEST_CASE("secrets: a PostgreSQL password is in no connection error", "[secrets]") {
  transcript t;
  const std::string closed = std::to_string(closed_port());
  const std::vector<std::string> conninfos = {
      "host=127.0.0.1 port=" + closed + " user=app dbname=app connect_timeout=5 password=" + pg_password,
      "host=127.0.0.1 port=" + closed + " password='" + pg_password + "' user=app",
      "postgresql://app:" + pg_password + "@127.0.0.1:" + closed + "/app?connect_timeout=5",
      "postgresql://app@127.0.0.1:" + closed + "/app?password=" + pg_password,
      "host=no-such-host.invalid user=app connect_timeout=5 password=" + pg_password,
  };
  for (std::size_t i = 0; i < conninfos.size(); ++i) {
    const std::string& ci = conninfos[i];
    const std::string n = " (conninfo #" + std::to_string(i + 1) + ")";
    t.add_thrown("connection" + n, [&] { pg::connection c(ci); });
    t.add_thrown("store" + n, [&] { pg::store s(ci, "nc_secrets"); });
    t.add_thrown("advisory_lease_backend" + n, [&] { pg::advisory_lease_backend b(ci); });
  }
  // The message still says where it tried to go.
  CHECK(t.texts.front().second.find("host=127.0.0.1") != std::string::npos);
  CHECK(t.texts.front().second.find("cannot connect") != std::string::npos);

  // A malformed conninfo: libpq's own words would quote it ("missing "=" after …").
  for (const std::string& bad :
       {"host=127.0.0.1 password=" + pg_password + " " + pg_password + "-tail",
        "host=127.0.0.1 password='" + pg_password, "password=" + pg_password + " =x"}) {
    t.add_thrown("connection(malformed)", [&] { pg::connection c(bad); });
  }
  require_no_secret(t, {pg_password});
}

TEST_CASE("secrets: the conninfo shown in messages keeps everything but the secrets", "[secrets]") {
  CHECK(pg::detail::describe_conninfo("host=h port=5 user=u password=p dbname=d") ==
        "user=u dbname=d host=h port=5");
  CHECK(pg::detail::describe_conninfo("postgresql://u:p@h:5/d") == "user=u dbname=d host=h port=5");
  CHECK(pg::detail::conninfo_secrets("host=h password='a b' sslpassword=c") ==
        std::vector<std::string>{"a b", "c"});
  CHECK(pg::detail::conninfo_secrets("postgresql://u:p%20q@h/d") == std::vector<std::string>{"p q"});
  CHECK(pg::detail::describe_conninfo("host=h password='unterminated") == "a conninfo libpq cannot parse");
}

TEST_CASE("secrets: an etcd URL password is in no error or log line", "[secrets]") {
  transcript t;
  SECTION("refused connection and bad host") {
    for (const std::string& url :
         {url_with_password(closed_port()),
          "http://" + url_user + ":" + url_password + "@no-such-host.invalid:2379"}) {
      noclobber::etcd::store s(url, std::chrono::seconds(5));
      fail_every_call(t, "etcd", s);
      noclobber::etcd::lease_backend lease(url, "locks/", std::chrono::seconds(5));
      const auto a = lease.try_acquire("k", std::chrono::seconds(5));
      t.add("etcd lease try_acquire", a.error);
    }
  }
  SECTION("a wrong server that echoes the request") {
    nc_s3_test::fake_s3_server server([](const nc_s3_test::request& r, std::size_t) { return echo(r, 401); });
    const std::string url =
        url_with_password(std::stoi(server.endpoint().substr(server.endpoint().rfind(':') + 1)));
    noclobber::etcd::store s(url, std::chrono::seconds(5));
    fail_every_call(t, "etcd echo", s);
    noclobber::etcd::lease_backend lease(url, "locks/", std::chrono::seconds(5));
    t.add("etcd lease echo", lease.try_acquire("k", std::chrono::seconds(5)).error);
    // The server did get the credentials (so the echo carried them), and the message shows where
    // they were taken out.
    REQUIRE_FALSE(server.requests().empty());
    CHECK(server.requests().front().header("authorization") == "Basic " + url_secrets()[2]);
    CHECK(t.texts.front().second.find("[redacted]") != std::string::npos);
  }
  SECTION("an endpoint that is not a URL") {
    const std::string bad = "htp://" + url_user + ":" + url_password + "@127.0.0.1:2379";
    t.add_thrown("etcd::store(bad)", [&] { noclobber::etcd::store s(bad); });
    t.add_thrown("etcd::lease_backend(bad)", [&] { noclobber::etcd::lease_backend b(bad); });
  }
  require_no_secret(t, url_secrets());
}

TEST_CASE("secrets: an HTTP URL password is in no error of the ETag and WebDAV adapters", "[secrets]") {
  transcript t;
  SECTION("refused connection") {
    const std::string base = url_with_password(closed_port(), "/kv/");
    noclobber::http_etag::store e(base);
    fail_every_call(t, "http_etag refused", e);
    noclobber::webdav_lock::store w(base);
    fail_every_call(t, "webdav_lock refused", w);
  }
  SECTION("a wrong server that echoes the request") {
    nc_s3_test::fake_s3_server server([](const nc_s3_test::request& r, std::size_t) { return echo(r, 403); });
    const std::string base =
        url_with_password(std::stoi(server.endpoint().substr(server.endpoint().rfind(':') + 1)), "/kv/");
    noclobber::http_etag::store e(base);
    fail_every_call(t, "http_etag echo", e);
    noclobber::webdav_lock::store w(base);
    fail_every_call(t, "webdav_lock echo", w);
    REQUIRE_FALSE(server.requests().empty());
    CHECK(server.requests().front().header("authorization") == "Basic " + url_secrets()[2]);
  }
  SECTION("a base URL that is not a URL") {
    const std::string bad = "htp://" + url_user + ":" + url_password + "@127.0.0.1/kv/";
    t.add_thrown("http_etag::store(bad)", [&] { noclobber::http_etag::store s(bad); });
    t.add_thrown("webdav_lock::store(bad)", [&] { noclobber::webdav_lock::store s(bad); });
  }
  require_no_secret(t, url_secrets());
}

TEST_CASE("secrets: an S3 secret key and session token are in no error even when echoed", "[secrets]") {
  transcript t;
  auto options = [](const std::string& endpoint) {
    noclobber::s3::options o;
    o.endpoint = endpoint;
    o.bucket = "bucket";
    o.creds = {"AKIDEXAMPLE", s3_secret, s3_token};
    o.check = noclobber::s3::enforcement::trust;
    o.timeout = std::chrono::seconds(5);
    return o;
  };
  SECTION("refused connection and bad host") {
    for (const std::string& endpoint : {"http://127.0.0.1:" + std::to_string(closed_port()),
                                        std::string("http://no-such-host.invalid:9000")}) {
      noclobber::s3::store s(options(endpoint));
      fail_every_call(t, "s3 " + endpoint, s);
    }
  }
  SECTION("a wrong server that echoes the request (the session token is a header)") {
    nc_s3_test::fake_s3_server server([](const nc_s3_test::request& r, std::size_t) { return echo(r, 403); });
    noclobber::s3::store s(options(server.endpoint()));
    fail_every_call(t, "s3 echo", s);
    REQUIRE_FALSE(server.requests().empty());
    CHECK(server.requests().front().header("x-amz-security-token") == s3_token);
  }
  SECTION("credentials in the endpoint") {
    auto o = options("http://AKIDEXAMPLE:" + s3_secret + "@127.0.0.1:9000");
    t.add_thrown("s3::store(endpoint with credentials)", [&] { noclobber::s3::store s(o); });
  }
  require_no_secret(t, {s3_secret, s3_token});
}

TEST_CASE("secrets: redact leaves no part of secrets that overlap, in any order", "[secrets]") {
  using noclobber::detail::redact;
  const std::string token = "FQo-" + s3_secret + "-5b8a";  // the secret key inside the token
  const std::string text = "token=" + token + " key=" + s3_secret + ".";
  CHECK(redact(text, {s3_secret, token}) == "token=[redacted] key=[redacted].");
  CHECK(redact(text, {token, s3_secret}) == "token=[redacted] key=[redacted].");
  // Overlapping without either containing the other, and touching: one mark each run.
  CHECK(redact("xxABCDyy", {"ABC", "BCD"}) == "xx[redacted]yy");
  CHECK(redact("xxABCDyy", {"AB", "CD"}) == "xx[redacted]yy");
  CHECK(redact("aaaa", {"aa"}) == "[redacted]");
  CHECK(redact("no secret here", {"", "zzz"}) == "no secret here");
}

TEST_CASE("secrets: an S3 session token that contains the secret key is in no error", "[secrets]") {
  transcript t;
  const std::string token = "FQo-" + s3_secret + "-5b8a";
  // A server that names the token it refuses in its S3 error's Message (what the store reports).
  nc_s3_test::fake_s3_server server([](const nc_s3_test::request& r, std::size_t) {
    const std::string body = "<Error><Code>InvalidToken</Code><Message>the token " +
                             r.header("x-amz-security-token") + " is not valid</Message></Error>";
    return nc_s3_test::action{
        nc_s3_test::action::answer, 403, "Forbidden", {"Content-Type: application/xml"}, body};
  });
  noclobber::s3::options o;
  o.endpoint = server.endpoint();
  o.bucket = "bucket";
  o.creds = {"AKIDEXAMPLE", s3_secret, token};
  o.check = noclobber::s3::enforcement::trust;
  o.timeout = std::chrono::seconds(5);
  noclobber::s3::store s(o);
  fail_every_call(t, "s3 echo", s);
  REQUIRE_FALSE(server.requests().empty());
  CHECK(server.requests().front().header("x-amz-security-token") == token);
  for (const auto& [where, text] : t.texts) {
    INFO(where << ": " << text);
    CHECK_FALSE(text.empty());
    CHECK(text.find("the token [redacted] is not valid") != std::string::npos);  // the echo came back
  }
  require_no_secret(t, {s3_secret, token, "FQo-", "-5b8a"});
}

TEST_CASE("secrets: a race report over a failing adapter holds no secret", "[secrets]") {
  transcript t;
  const std::string url = url_with_password(closed_port());
  noclobber::race_options_for<noclobber::etcd::store> o;
  o.writers = 2;
  o.barrier_timeout = std::chrono::milliseconds(200);
  // A strategy that throws the store's words when it gives up, as a user's might.
  auto throwing_cas = [](auto& s, const std::string& key, auto& fn) {
    noclobber::retry_policy p;
    p.max_attempts = 2;
    p.backoff = noclobber::backoff_policy::immediate();
    const auto r = noclobber::read_modify_write(s, key, fn, p);
    if (!r.ok()) throw std::runtime_error("gave up: " + r.last_error.code + " " + r.last_error.message);
  };
  const auto report =
      noclobber::run_race_per_writer([&](unsigned) { return noclobber::etcd::store(url); }, throwing_cas, o);
  CHECK(report.op_errors > 0);
  t.add("race report text", report.to_text());
  t.add("race report json", report.to_json());
  t.add("race report first_error", report.first_error);
  require_no_secret(t, url_secrets());
}
