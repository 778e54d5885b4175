// The S3 adapter (noclobber/adapters/s3.hpp) against scripted loopback servers: what it sends,
// how it reads every answer, Retry-After, the enforcement probe's verdicts, libcurl's silent
// re-send of a write (issue 19's bug), and no secret in any message. The real servers are in
// tests/servers/test_server_s3*.cpp.
#include <noclobber/adapters/s3.hpp>
#include <noclobber/cached_store.hpp>
#include <noclobber/read_modify_write.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <vector>

#include "fake_s3_server.hpp"
#include "loopback.hpp"
#include "mini_s3.hpp"

namespace s3 = noclobber::s3;
using nc_s3_test::action;
using nc_s3_test::fake_s3_server;
using nc_s3_test::request;
using noclobber::read_status;
using noclobber::write_status;

namespace {

s3::options opts(const std::string& endpoint, s3::enforcement check = s3::enforcement::trust) {
  s3::options o;
  o.endpoint = endpoint;
  o.bucket = "bucket";
  o.creds = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
  o.check = check;
  o.timeout = std::chrono::seconds(5);
  return o;
}

using nc_loopback::closed_port;

const std::string etag_a = "\"0123456789abcdef0123456789abcdef\"";

}  // namespace

TEST_CASE("s3 options: bad input is refused at construction, naming the field", "[s3]") {
  auto o = opts("http://127.0.0.1:9");
  SECTION("endpoint") {
    for (const char* bad : {"127.0.0.1:9", "ftp://h", "http://", "http://h/path", "http://h?x=1"}) {
      o.endpoint = bad;
      CHECK_THROWS_AS(s3::store(o), std::invalid_argument);
    }
  }
  SECTION("credentials in the endpoint are refused without being repeated") {
    o.endpoint = "http://AKID:topsecret@127.0.0.1:9";
    try {
      s3::store s(o);
      FAIL("accepted");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("topsecret") == std::string::npos);
      CHECK(std::string(e.what()).find("credentials") != std::string::npos);
    }
  }
  SECTION("bucket, region, credentials, limits") {
    for (const char* bad : {"ab", "Bucket", "-bucket", "bucket-", "buck_et"}) {
      o.bucket = bad;
      CHECK_THROWS_AS(s3::store(o), std::invalid_argument);
    }
    o = opts("http://127.0.0.1:9");
    o.region = "US East";
    CHECK_THROWS_AS(s3::store(o), std::invalid_argument);
    o = opts("http://127.0.0.1:9");
    o.creds.secret_access_key.clear();
    CHECK_THROWS_AS(s3::store(o), std::invalid_argument);
    o = opts("http://127.0.0.1:9");
    o.timeout = std::chrono::milliseconds(0);
    CHECK_THROWS_AS(s3::store(o), std::invalid_argument);
  }
}

TEST_CASE("s3 keys: percent-encoded for SigV4, and ones a URL would change are refused", "[s3]") {
  using s3::detail::encode_key;
  CHECK(encode_key("a/b-c_d.e~f") == "a/b-c_d.e~f");
  CHECK(encode_key("with space/ü+%?#&=") == "with%20space/%C3%BC%2B%25%3F%23%26%3D");
  const std::vector<std::string> bads = {
      "", "/lead", "trail/", "a//b", "a/./b", "a/../b", ".", std::string("a\nb"), std::string(1025, 'k')};
  for (const std::string& bad : bads) {
    CHECK_THROWS_AS(encode_key(bad), std::invalid_argument);
  }
}

TEST_CASE("s3 requests: signed, UNSIGNED-PAYLOAD, session token, path and virtual-host addressing", "[s3]") {
  fake_s3_server server([](const request&, std::size_t) { return action::ok(); });
  SECTION("path style") {
    auto o = opts(server.endpoint());
    o.creds.session_token = "session-token-value";
    o.region = "eu-west-3";
    s3::store s(o);
    REQUIRE(s.create_if_absent("dir/a b", "body").ok());
    const request r = server.requests().at(0);
    CHECK(r.method == "PUT");
    CHECK(r.target == "/bucket/dir/a%20b");
    CHECK(r.body == "body");
    CHECK(r.header("if-none-match") == "*");
    CHECK(r.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD");
    CHECK(r.header("x-amz-security-token") == "session-token-value");
    const std::string auth = r.header("authorization");
    CHECK(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
    CHECK(auth.find("/eu-west-3/s3/aws4_request") != std::string::npos);
    CHECK(auth.find("x-amz-content-sha256") != std::string::npos);  // signed
    CHECK(auth.find(o.creds.secret_access_key) == std::string::npos);
  }
  SECTION("virtual-host style: the bucket in the host name") {
    auto o = opts("http://localhost:" + server.endpoint().substr(server.endpoint().rfind(':') + 1));
    o.style = s3::addressing::virtual_host;
    s3::store s(o);
    REQUIRE(s.overwrite("k", "v").ok());
    const request r = server.requests().at(0);
    CHECK(r.target == "/k");
    CHECK(r.header("host").starts_with("bucket.localhost:"));
  }
  SECTION("If-Match as the server sent the ETag, or without quotes when told") {
    auto o = opts(server.endpoint());
    s3::store quoted(o);
    REQUIRE(quoted.write_if_match("k", etag_a, "v").ok());
    o.if_match_form = s3::etag_form::unquoted;
    s3::store bare(o);
    REQUIRE(bare.write_if_match("k", etag_a, "v").ok());
    CHECK(server.requests().at(0).header("if-match") == etag_a);
    CHECK(server.requests().at(1).header("if-match") == etag_a.substr(1, 32));
  }
}

TEST_CASE("s3 requests: a 3 MiB body arrives whole, after a 100 Continue", "[s3]") {
  fake_s3_server server([](const request&, std::size_t) { return action::ok(); }, true);
  s3::store s(opts(server.endpoint()));
  std::string big(3 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  REQUIRE(s.overwrite("big", big).ok());
  CHECK(server.requests().at(0).body == big);
  CHECK(server.requests().at(0).header("expect") == "100-continue");
}

TEST_CASE("s3 answers: every status a write can get", "[s3]") {
  std::atomic<int> status{200};
  std::string code;
  fake_s3_server server([&](const request&, std::size_t) {
    if (status == 200) return action::ok();
    return action::status_with(status, "Status", code);
  });
  s3::store s(opts(server.endpoint()));
  auto update = [&] { return s.write_if_match("k", etag_a, "v").status; };
  auto create = [&] { return s.create_if_absent("k", "v").status; };
  auto erase = [&] { return s.erase_if_match("k", etag_a).status; };

  auto w = s.write_if_match("k", etag_a, "v");
  CHECK(w.ok());
  CHECK(w.token == etag_a);  // the new ETag from the PUT's answer
  status = 412;
  code = "PreconditionFailed";
  CHECK(update() == write_status::conflict);
  CHECK(create() == write_status::exists);
  CHECK(erase() == write_status::conflict);
  status = 404;
  code = "NoSuchKey";
  CHECK(update() == write_status::absent);
  CHECK(erase() == write_status::absent);
  code = "NoSuchBucket";
  CHECK(update() == write_status::permanent);
  status = 409;
  code = "ConditionalRequestConflict";
  CHECK(update() == write_status::transient_restart);
  CHECK(create() == write_status::transient_restart);
  code = "BucketNotEmpty";
  CHECK(update() == write_status::permanent);
  code = "SlowDown";
  for (int s503 : {503, 429, 408}) {
    status = s503;
    CHECK(update() == write_status::transient);  // refused, not applied
  }
  code = "InternalError";
  for (int s5xx : {500, 502, 504}) {
    status = s5xx;
    CHECK(update() == write_status::indeterminate);  // may have been applied
  }
  for (int s4xx : {400, 403, 405}) {
    status = s4xx;
    code = "AccessDenied";
    auto r = s.write_if_match("k", etag_a, "v");
    CHECK(r.status == write_status::permanent);
    CHECK(r.error.code == "AccessDenied");
    CHECK(r.error.message.find("HTTP " + std::to_string(s4xx)) != std::string::npos);
    CHECK(r.error.message.find("req-1") != std::string::npos);  // the request id
  }
  CHECK_THROWS_AS(s.write_if_match("k", "not-quoted", "v"), std::invalid_argument);
}

// radosgw 16.2 answers a badly signed PUT before reading its body and keeps the connection; the
// body then came in front of the next request ("xPUT": 405). After a refused PUT the store opens
// a new connection; after a 412 (the refusal on the hot path) and after reads it keeps it.
TEST_CASE("s3 connections: a PUT refused other than by 412 is not followed on its connection", "[s3]") {
  std::atomic<int> put_status{403};
  fake_s3_server server([&](const request& r, std::size_t) {
    if (r.method == "PUT" && put_status != 200)
      return action::status_with(put_status, "Refused", put_status == 412 ? "PreconditionFailed" : "Denied");
    return action{action::answer, 200, "OK", {"ETag: " + etag_a}, "value"};
  });
  s3::store s(opts(server.endpoint()));
  auto connection_of_last = [&] { return server.requests().back().connection; };
  REQUIRE(s.read("k").found());
  const int first = connection_of_last();
  REQUIRE(s.read("k").found());
  CHECK(connection_of_last() == first);  // reads keep it
  put_status = 412;
  CHECK(s.write_if_match("k", etag_a, "v").status == write_status::conflict);
  REQUIRE(s.read("k").found());
  CHECK(connection_of_last() == first);  // so does a 412
  for (int refused : {403, 400, 405, 500, 503}) {
    put_status = refused;
    const int before = connection_of_last();
    CHECK(s.write_if_match("k", etag_a, "v").status != write_status::applied);
    CHECK(connection_of_last() == before);  // the refused PUT went on the connection it had...
    REQUIRE(s.read("k").found());
    CHECK(connection_of_last() != before);  // ...and the next request on a new one
  }
  put_status = 200;
  const int before = connection_of_last();
  CHECK(s.write_if_match("k", etag_a, "v").ok());
  CHECK(s.read("k").found());
  CHECK(connection_of_last() == before);  // an applied PUT keeps it
}

TEST_CASE("s3 answers: reads", "[s3]") {
  std::atomic<int> status{200};
  std::string etag = etag_a, code;
  fake_s3_server server([&](const request& r, std::size_t) {
    if (status == 200) return action{action::answer, 200, "OK", {"ETag: " + etag}, "value"};
    if (status == 304 && !r.header("if-none-match").empty())
      return action{action::answer, 304, "Not Modified", {}, ""};
    return action::status_with(status, "Status", code);
  });
  s3::store s(opts(server.endpoint()));
  auto r = s.read("k");
  REQUIRE(r.found());
  CHECK(r.value == "value");
  CHECK(r.token == etag_a);
  CHECK(s.read_if_changed("k", etag_a).fresh.found());
  CHECK(server.requests().back().header("if-none-match") == etag_a);
  status = 304;
  CHECK(s.read_if_changed("k", etag_a).unchanged);
  status = 200;
  etag = "W/\"weak\"";
  CHECK(s.read("k").status == read_status::permanent);
  status = 404;
  code = "NoSuchKey";
  CHECK(s.read("k").absent());
  CHECK(s.read_if_changed("k", etag_a).fresh.absent());
  code = "NoSuchBucket";
  CHECK(s.read("k").status == read_status::permanent);
  for (int again : {500, 503, 429}) {
    status = again;
    CHECK(s.read("k").status == read_status::transient);
  }
  status = 403;
  code = "AccessDenied";
  CHECK(s.read("k").status == read_status::permanent);
}

TEST_CASE("s3 transport: refused connection, timeout after sending", "[s3]") {
  SECTION("nothing listens: nothing was sent, transient") {
    s3::store s(opts("http://127.0.0.1:" + std::to_string(closed_port())));
    CHECK(s.write_if_match("k", etag_a, "v").status == write_status::transient);
    CHECK(s.read("k").status == read_status::transient);
  }
  SECTION("no answer within the timeout: a write is indeterminate, a read transient") {
    nc_loopback::silent_listener silent;
    auto o = opts("http://127.0.0.1:" + std::to_string(silent.port()));
    o.timeout = std::chrono::milliseconds(200);
    s3::store s(o);
    CHECK(s.write_if_match("k", etag_a, "v").status == write_status::indeterminate);
    CHECK(s.create_if_absent("k", "v").status == write_status::indeterminate);
    CHECK(s.read("k").status == read_status::transient);
  }
}

// Issue 19's bug: libcurl re-sends a request by itself when a reused connection dies before any
// answer. Here the server reads the whole write, then resets the connection; a re-sent copy would
// be answered 412 (as if the first copy had landed) — which must not become a conflict.
TEST_CASE("s3 writes are never re-sent silently: a reset after the write was read is indeterminate", "[s3]") {
  std::atomic<int> writes_seen{0};
  fake_s3_server server([&](const request& r, std::size_t) {
    if (r.method == "GET") return action::ok();  // leaves the connection open for reuse
    if (writes_seen.fetch_add(1) == 0) return action::reset_after_reading();
    return action::status_with(412, "Precondition Failed", "PreconditionFailed");
  });
  s3::store s(opts(server.endpoint()));
  REQUIRE(s.read("k").found());
  // curl_easy.hpp's send_guard refuses libcurl's second copy for both (no second request line
  // reaches the server); the write is indeterminate, and the message says why.
  SECTION("PUT") {
    auto w = s.write_if_match("k", etag_a, "v");
    CHECK(w.status == write_status::indeterminate);
    CHECK(w.error.message.find("re-send refused") != std::string::npos);
    CHECK(writes_seen == 1);
  }
  SECTION("DELETE") {
    auto w = s.erase_if_match("k", etag_a);
    CHECK(w.status == write_status::indeterminate);
    CHECK(w.error.message.find("re-send refused") != std::string::npos);
    CHECK(writes_seen == 1);
  }
  SECTION("a GET may be re-sent: it changes nothing") {
    std::atomic<int> gets{0};
    fake_s3_server flaky([&](const request& r, std::size_t) {
      if (r.method == "GET" && gets.fetch_add(1) == 1) return action::reset_after_reading();
      return action::ok();
    });
    s3::store g(opts(flaky.endpoint()));
    REQUIRE(g.read("k").found());
    CHECK(g.read("k").found());  // the second GET's connection died; libcurl's re-send answered
    CHECK(gets == 3);
  }
}

TEST_CASE("s3 Retry-After: the next request waits; longer than the cap is permanent", "[s3]") {
  std::atomic<int> calls{0};
  std::string retry_after = "1";
  fake_s3_server server([&](const request&, std::size_t) {
    if (calls.fetch_add(1) == 0) {
      return action::status_with(503, "Slow Down", "SlowDown", {"Retry-After: " + retry_after},
                                 "Please reduce");
    }
    return action::ok();
  });
  SECTION("honoured") {
    s3::store s(opts(server.endpoint()));
    auto w = s.write_if_match("k", etag_a, "v");
    CHECK(w.status == write_status::transient);
    CHECK(w.error.code == "SlowDown");
    CHECK(w.error.message.find("Retry-After: 1") != std::string::npos);
    CHECK(s.held_back_until() > std::chrono::steady_clock::now());
    REQUIRE(s.write_if_match("k", etag_a, "v").ok());
    const auto reqs = server.requests();
    REQUIRE(reqs.size() == 2);
    CHECK(reqs[1].at - reqs[0].at >= std::chrono::seconds(1));  // not sent before the server's time
  }
  SECTION("longer than options::max_retry_after: permanent, no waiting") {
    retry_after = "3600";
    s3::store s(opts(server.endpoint()));
    auto w = s.write_if_match("k", etag_a, "v");
    CHECK(w.status == write_status::permanent);
    CHECK(w.error.message.find("Retry-After: 3600") != std::string::npos);
    CHECK(s.held_back_until() < std::chrono::steady_clock::now());
  }
}

TEST_CASE("s3 Retry-After values: seconds and HTTP dates", "[s3]") {
  using s3::detail::parse_retry_after;
  const std::time_t now = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
  CHECK(parse_retry_after("0", now) == std::chrono::seconds(0));
  CHECK(parse_retry_after("120", now) == std::chrono::seconds(120));
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now) == std::chrono::seconds(30));
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now) == std::chrono::seconds(0));
  CHECK_FALSE(parse_retry_after("", now));
  CHECK_FALSE(parse_retry_after("soon", now));
  CHECK_FALSE(parse_retry_after("-5", now));
}

// Found with the S3 fuzz target (tests/fuzz/fuzz_s3.cpp, a hand-made input from its dictionary;
// regression-retry-after-year-overflow in its corpus): the date was read with sscanf("%d"), so a year of
// -2147483648 overflowed `tm_year -= 1900` (undefined behaviour, caught by UBSan), and anything
// sscanf could match was taken for a date: hours 99, 31 February, "GMTX". Only an IMF-fixdate
// with every field in range is a date now.
TEST_CASE("s3 Retry-After: only a well-formed IMF-fixdate is a date", "[s3]") {
  using s3::detail::parse_retry_after;
  const std::time_t now = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
  CHECK_FALSE(parse_retry_after("Sun, 06 Nov -2147483648 08:49:37 GMT", now));
  CHECK_FALSE(parse_retry_after("Sun, 06 Nov 1994 99:99:99 GMT", now));
  CHECK_FALSE(parse_retry_after("Sun, 31 Feb 1994 08:49:37 GMT", now));
  CHECK_FALSE(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMTX", now));
  CHECK_FALSE(parse_retry_after("Sun, 6 Nov 1994 8:49:37 GMT", now));
  CHECK_FALSE(parse_retry_after("Xyz, 06 Nov 1994 08:49:37 GMT", now));
  CHECK(parse_retry_after("Thu, 29 Feb 1996 00:00:00 GMT", now) == std::chrono::seconds(41'440'223));
  CHECK(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now) ==
        std::chrono::seconds(253'402'300'799 - now));
  CHECK(parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now) == std::chrono::seconds(0));
}

TEST_CASE("s3 probe: the verdict for each kind of server", "[s3]") {
  nc_s3_test::mini_s3 backend;
  fake_s3_server server([&](const request& r, std::size_t) { return backend(r); });
  s3::store s(opts(server.endpoint(), s3::enforcement::probe));
  SECTION("enforces everything: writes go ahead") {
    CHECK_FALSE(s.enforcement());
    REQUIRE(s.create_if_absent("k", "v1").ok());
    auto r = s.enforcement();
    REQUIRE(r);
    CHECK(r->writes_enforced());
    CHECK(r->erase_if_match);
    CHECK(r->if_match_form == s3::etag_form::quoted);
    auto cur = s.read("k");
    CHECK(s.write_if_match("k", cur.token, "v2").ok());
    CHECK(s.erase_if_match("k", etag_a).status == write_status::conflict);
  }
  SECTION("ignores If-None-Match: *: conditional writes refused, nothing sent") {
    backend.enforce.create_if_absent = false;
    auto w = s.create_if_absent("k", "v1");
    CHECK(w.status == write_status::permanent);
    CHECK(w.error.code == "PreconditionNotEnforced");
    CHECK(w.error.message.find("If-None-Match: *") != std::string::npos);
    CHECK(s.write_if_match("k", etag_a, "v").status == write_status::permanent);
    CHECK(s.overwrite("k", "blind").ok());  // the unconditional write is not probed
  }
  SECTION("ignores If-Match") {
    backend.enforce.if_match = false;
    auto w = s.write_if_match("k", etag_a, "v");
    CHECK(w.error.code == "PreconditionNotEnforced");
    CHECK(w.error.message.find("If-Match") != std::string::npos);
  }
  SECTION("matches If-Match only without quotes (radosgw 16.2): found, and used") {
    backend.enforce.if_match_unquoted = true;
    REQUIRE(s.create_if_absent("k", "v1").ok());
    CHECK(s.enforcement()->if_match_form == s3::etag_form::unquoted);
    auto cur = s.read("k");
    CHECK(s.write_if_match("k", cur.token, "v2").ok());
    CHECK(s.write_if_match("k", cur.token, "v3").status == write_status::conflict);
  }
  SECTION("ignores If-Match on DELETE: only erase_if_match is refused") {
    backend.enforce.delete_if_match = false;
    REQUIRE(s.create_if_absent("k", "v1").ok());
    auto e = s.erase_if_match("k", s.read("k").token);
    CHECK(e.status == write_status::permanent);
    CHECK(e.error.message.find("DELETE") != std::string::npos);
    CHECK(s.read("k").found());  // nothing was sent
  }
  SECTION("the scratch object is gone afterwards") {
    REQUIRE(s.create_if_absent("k", "v1").ok());
    std::lock_guard lock(backend.mutex);
    CHECK(backend.objects.size() == 1);
  }
  SECTION("one probe per bucket and process, shared by every store") {
    REQUIRE(s.create_if_absent("k", "v1").ok());
    const auto before = server.requests().size();
    s3::store other(opts(server.endpoint(), s3::enforcement::probe));
    REQUIRE(other.write_if_match("k", other.read("k").token, "v2").ok());
    CHECK(server.requests().size() == before + 2);  // its read and its write, no probe
  }
}

TEST_CASE("s3 probe without answers: transient, and the next write probes again", "[s3]") {
  nc_s3_test::mini_s3 backend;
  std::atomic<bool> down{true};
  fake_s3_server server([&](const request& r, std::size_t) {
    if (down) return action::status_with(503, "Service Unavailable", "ServiceUnavailable");
    return backend(r);
  });
  s3::store s(opts(server.endpoint(), s3::enforcement::probe));
  auto w = s.create_if_absent("k", "v");
  CHECK(w.status == write_status::transient);
  CHECK(w.error.code == "ProbeIncomplete");
  CHECK_FALSE(s.enforcement());
  down = false;
  CHECK(s.create_if_absent("k", "v").ok());
  CHECK(s.enforcement()->writes_enforced());
}

// A definite refusal of the probe's first PUT (a read-only key, a wrong secret) is not a missing
// answer: the write is permanent with the server's own code, not a ProbeIncomplete to retry.
TEST_CASE("s3 probe refused by the server: permanent with the server's code, and not kept", "[s3]") {
  nc_s3_test::mini_s3 backend;
  std::atomic<bool> read_only{true};
  fake_s3_server server([&](const request& r, std::size_t) {
    if (read_only && r.method == "PUT") return action::status_with(403, "Forbidden", "AccessDenied");
    return backend(r);
  });
  s3::store s(opts(server.endpoint(), s3::enforcement::probe));
  auto w = s.create_if_absent("k", "v");
  CHECK(w.status == write_status::permanent);
  CHECK(w.error.code == "AccessDenied");
  CHECK(w.error.message.find("probe") != std::string::npos);
  CHECK(w.error.message.find("HTTP 403") != std::string::npos);
  CHECK(s.write_if_match("k", etag_a, "v").status == write_status::permanent);
  CHECK_FALSE(s.enforcement());  // not kept: the key may be given write access
  auto p = s.probe();
  CHECK_FALSE(p.writes_enforced());
  REQUIRE(p.refused);
  CHECK(p.refused->code == "AccessDenied");
  read_only = false;
  CHECK(s.create_if_absent("k", "v").ok());
  CHECK(s.enforcement()->writes_enforced());
}

// Known secrets, every error path provoked, every message searched.
TEST_CASE("s3: no secret key or session token in any message, whatever the server echoes", "[s3]") {
  const std::string secret = "SECRET-sentinel-wJalrXUtnFEMI", token = "TOKEN-sentinel-FQoGZXIvYXdzE";
  // The server echoes the request's headers (Authorization, x-amz-security-token) and the secret.
  std::atomic<int> status{403};
  fake_s3_server server([&](const request& r, std::size_t) {
    std::string echo = "auth=" + r.header("authorization") + " token=" + r.header("x-amz-security-token") +
                       " guessed=" + secret;
    if (status == 200) return action{action::answer, 200, "OK", {"ETag: " + token}, "x"};  // a bad ETag
    return action::status_with(status, "Status", "SignatureDoesNotMatch" + token, {"Retry-After: 99999"},
                               echo);
  });
  std::vector<std::string> seen;
  auto keep = [&](const noclobber::store_error& e) {
    seen.push_back(e.code);
    seen.push_back(e.message);
  };
  auto o = opts(server.endpoint(), s3::enforcement::probe);
  o.creds = {"AKIDEXAMPLE", secret, token};
  {
    s3::store s(o);
    for (int st : {403, 400, 404, 409, 412, 500, 503, 429, 200}) {
      status = st;
      keep(s.read("k").error);
      keep(s.read_if_changed("k", etag_a).fresh.error);
      keep(s.write_if_match("k", etag_a, "v").error);
      keep(s.create_if_absent("k", "v").error);
      keep(s.erase_if_match("k", etag_a).error);
      keep(s.overwrite("k", "v").error);
      seen.push_back(s.probe().steps);
    }
    auto trusting = o;
    trusting.check = s3::enforcement::trust;
    s3::store t(trusting);
    status = 503;
    keep(t.write_if_match("k", etag_a, "v").error);
  }
  for (auto endpoint :
       {"http://127.0.0.1:" + std::to_string(closed_port()), "http://AKIDEXAMPLE:" + secret + "@h"}) {
    o.endpoint = endpoint;
    try {
      s3::store s(o);
      keep(s.write_if_match("k", etag_a, "v").error);
      keep(s.read("k").error);
    } catch (const std::exception& e) {
      seen.push_back(e.what());
    }
  }
  o.endpoint = server.endpoint();
  o.creds.secret_access_key = secret + "\n";
  try {
    s3::store s(o);
  } catch (const std::exception& e) {
    seen.push_back(e.what());
  }
  REQUIRE(seen.size() > 100);
  std::size_t echoed = 0;
  for (const std::string& text : seen) {
    INFO(text);
    CHECK(text.find(secret) == std::string::npos);
    CHECK(text.find(token) == std::string::npos);
    if (text.find("[redacted]") != std::string::npos) ++echoed;
  }
  CHECK(echoed > 0);  // the server did echo them: the redaction was exercised
}

TEST_CASE("s3 with cached_store: a 304 serves the copy, a 412 evicts it", "[s3][cached_store]") {
  nc_s3_test::mini_s3 backend;
  fake_s3_server server([&](const request& r, std::size_t) { return backend(r); }, true);
  s3::store s(opts(server.endpoint(), s3::enforcement::probe));
  noclobber::store_cache<std::string, std::string, std::string> cache;
  noclobber::cached_store<s3::store> view(s, cache);
  const std::string db(1 << 20, 'd');
  REQUIRE(
      noclobber::read_modify_write(view, "db", [&](const std::optional<std::string>&) { return db; }).ok());
  for (int i = 0; i < 3; ++i) {
    auto r = noclobber::read_modify_write(view, "db",
                                          [](const std::optional<std::string>& cur) { return *cur + "+"; });
    REQUIRE(r.ok());
  }
  CHECK(cache.stats().revalidated == 3);  // every update found its copy current: no download
  CHECK(cache.stats().misses == 1);
  s3::store other(opts(server.endpoint(), s3::enforcement::probe));
  auto cur = other.read("db");
  REQUIRE(other.write_if_match("db", cur.token, cur.value + "!").ok());
  auto r =
      noclobber::read_modify_write(view, "db", [](const std::optional<std::string>& c) { return *c + "+"; });
  REQUIRE(r.ok());
  CHECK(r.value->ends_with("+++!+"));
  CHECK(cache.stats().refreshed == 1);  // the changed object was downloaded once
}
