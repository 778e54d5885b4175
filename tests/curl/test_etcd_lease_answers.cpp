// The etcd lease backend (noclobber/adapters/etcd_lease.hpp) against a scripted loopback server:
// what it makes of lease grants etcd would never send. No etcd needed; the tests against a real
// cluster are in tests/servers/test_server_etcd_lease.cpp.
#include <noclobber/adapters/etcd_lease.hpp>
#include <noclobber/lease_lock.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "fake_s3_server.hpp"

using nc_s3_test::action;
using nc_s3_test::request;

namespace {

action json_answer(std::string body) {
  return {action::answer, 200, "OK", {"Content-Type: application/json"}, body};
}

}  // namespace

// Found with the lease fuzz target (tests/fuzz/fuzz_lease_answers.cpp, hand-built seed inputs:
// regression-ttl-* in its corpus): the granted TTL went unchecked into
// std::chrono::seconds and on into milliseconds and the guard's steady_clock deadline, so a grant
// of 9223372036854775807 s overflowed seconds -> ms and one of 12884901885 s overflowed the
// deadline's ms -> ns (undefined behaviour, caught by UBSan); a TTL of 0 was taken as a grant.
// etcd grants 1 to 9,000,000,000 s: anything else is a failed try, and nothing more is sent.
TEST_CASE("etcd lease_backend: a granted TTL outside etcd's range is no grant", "[etcd_lease]") {
  const std::string ttl =
      GENERATE(as<std::string>{}, "0", "-5", "9000000001", "12884901885", "9223372036854775807");
  CAPTURE(ttl);
  nc_s3_test::fake_s3_server server([&](const request& r, std::size_t) {
    if (r.target == "/v3/lease/grant") return json_answer(R"({"ID":"7587","TTL":")" + ttl + R"("})");
    return json_answer(R"({"header":{"revision":"42"},"succeeded":true})");
  });
  noclobber::etcd::lease_backend backend(server.endpoint(), "lk/");
  const noclobber::lease_attempt a = backend.try_acquire("k", std::chrono::seconds(5));
  CHECK(a.status == noclobber::lease_status::failed);
  CHECK(a.error.code == "json");
  CHECK(a.error.message.find(ttl) != std::string::npos);
  CHECK(server.requests().size() == 1);  // no txn under a lease that is no grant

  noclobber::lease_lock_map<noclobber::etcd::lease_backend> map(backend, std::chrono::seconds(5));
  CHECK_THROWS_AS(map.try_lock("k"), noclobber::lease_error);
}

TEST_CASE("etcd lease_backend: the largest TTL etcd grants makes a finite local deadline", "[etcd_lease]") {
  nc_s3_test::fake_s3_server server([&](const request& r, std::size_t) {
    if (r.target == "/v3/lease/grant") return json_answer(R"({"ID":"7587","TTL":"9000000000"})");
    if (r.target == "/v3/kv/txn") return json_answer(R"({"header":{"revision":"42"},"succeeded":true})");
    return json_answer(R"({"header":{"revision":"43"}})");
  });
  noclobber::etcd::lease_backend backend(server.endpoint(), "lk/");
  noclobber::lease_lock_map<noclobber::etcd::lease_backend> map(backend, std::chrono::seconds(5));
  const auto before = std::chrono::steady_clock::now();
  auto g = map.try_lock("k");
  REQUIRE(g.owns_lock());
  CHECK(g.token() == 42);
  CHECK(g.grant().owner == "7587");
  CHECK(g.grant().ttl == std::chrono::seconds(9'000'000'000));
  CHECK(g.expires_at() >= before + std::chrono::seconds(9'000'000'000));
  CHECK(g.unlock() == noclobber::lease_check::held);
}

// The lease backend's auth goes through detail::etcd::session (adapters/etcd/session.hpp), like
// the store's: one authenticate, the token on every request, one new token when a request is
// refused for it (401, gRPC 16), and neither the password nor a token in an error a server echoes.
namespace {

action token_refused(const request& r) {
  return {action::answer,
          401,
          "Unauthorized",
          {"Content-Type: application/json"},
          R"({"error":"etcdserver: invalid auth token )" + r.header("authorization") +
              R"( for s3cret-pw","code":16})"};
}

}  // namespace

TEST_CASE("etcd lease_backend: credentials, a refused token renewed once", "[etcd_lease]") {
  int tokens = 0;
  bool refuse_next_keepalive = true;
  nc_s3_test::fake_s3_server server([&](const request& r, std::size_t) {
    if (r.target == "/v3/auth/authenticate")
      return json_answer(R"({"header":{},"token":"tok)" + std::to_string(++tokens) + R"("})");
    if (r.header("authorization") != "tok" + std::to_string(tokens)) return token_refused(r);
    if (r.target == "/v3/lease/grant") return json_answer(R"({"ID":"7587","TTL":"5"})");
    if (r.target == "/v3/kv/txn") return json_answer(R"({"header":{"revision":"42"},"succeeded":true})");
    if (r.target == "/v3/lease/keepalive" && refuse_next_keepalive) {
      refuse_next_keepalive = false;
      return token_refused(r);
    }
    if (r.target == "/v3/lease/keepalive") return json_answer(R"({"result":{"ID":"7587","TTL":"5"}})");
    return json_answer(R"({"header":{"revision":"43"}})");
  });
  noclobber::etcd::lease_backend backend(server.endpoint(), noclobber::etcd::credentials{"app", "s3cret-pw"},
                                         "lk/");
  const noclobber::lease_attempt a = backend.try_acquire("k", std::chrono::seconds(5));
  REQUIRE(a.status == noclobber::lease_status::acquired);
  CHECK(a.grant.token == 42);
  CHECK(backend.authentications() == 1);
  REQUIRE(server.requests().size() == 3);
  CHECK(server.requests()[0].target == "/v3/auth/authenticate");
  CHECK(server.requests()[0].body == R"({"name":"app","password":"s3cret-pw"})");
  CHECK(server.requests()[0].header("authorization").empty());
  CHECK(server.requests()[2].header("authorization") == "tok1");
  CHECK(backend.extend("k", a.grant, std::chrono::seconds(5)) == noclobber::lease_check::held);
  CHECK(backend.authentications() == 2);  // the refused keep-alive, a new token, sent once more
  CHECK(backend.extend("k", a.grant, std::chrono::seconds(5)) == noclobber::lease_check::held);
  CHECK(backend.release("k", a.grant) == noclobber::lease_check::held);
  CHECK(backend.authentications() == 2);
  CHECK(server.requests().size() == 8);
  CHECK_THROWS_AS(noclobber::etcd::lease_backend(server.endpoint(), noclobber::etcd::credentials{"", "x"}),
                  std::invalid_argument);
}

TEST_CASE("etcd lease_backend: a token refused twice is answered, the token and password redacted",
          "[etcd_lease]") {
  int tokens = 0;
  nc_s3_test::fake_s3_server server([&](const request& r, std::size_t) {
    if (r.target == "/v3/auth/authenticate")
      return json_answer(R"({"header":{},"token":"tok)" + std::to_string(++tokens) + R"("})");
    return token_refused(r);  // every token (a clock skew, a revoked user)
  });
  noclobber::etcd::lease_backend backend(server.endpoint(), noclobber::etcd::credentials{"app", "s3cret-pw"},
                                         "lk/");
  const noclobber::lease_attempt a = backend.try_acquire("k", std::chrono::seconds(5));
  CHECK(a.status == noclobber::lease_status::failed);
  CHECK(a.error.code == "http 401 grpc 16");
  CHECK(backend.authentications() == 2);  // once more, not in a loop
  CHECK(server.requests().size() == 4);
  const std::string text = a.error.code + " " + a.error.message;
  CAPTURE(text);
  CHECK(text.find("[redacted]") != std::string::npos);
  CHECK(text.find("tok1") == std::string::npos);
  CHECK(text.find("tok2") == std::string::npos);
  CHECK(text.find("s3cret-pw") == std::string::npos);
}
