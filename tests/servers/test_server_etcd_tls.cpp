// etcd adapter against an etcd that REQUIRES TLS and a client certificate
// (scripts/servers/etcd_tls.sh: https only, --client-cert-auth; NOCLOBBER_ETCD_TLS_*): the store
// and the lease backend work over TLS with the CA, certificate and key of `tls_files`; writers
// lose nothing. Refusals: we refuse etcd's certificate (a CA that did not sign it: curl 60) and
// etcd refuses a certificate from a CA it does not trust (OpenSSL's "alert bad certificate") —
// both permanent, not retried, no member switch. No client certificate at all: under TLS 1.3 etcd
// checks it after our handshake; curl sees its alert (56, permanent) or only a reset (55,
// transient/indeterminate) — the test accepts exactly those two and checks nothing was written.
// Policy (as tests/secrets): file paths may appear in messages, a key's contents never do.
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/etcd_lease.hpp>
#include <noclobber/ostream.hpp>
#include <noclobber/read_modify_write.hpp>

#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "increment_race.hpp"
#include "server_env.hpp"

namespace et = noclobber::etcd;
using noclobber::read_status;
using noclobber::write_status;

namespace {

std::string url() {
  return nc_test::server_env("NOCLOBBER_ETCD_TLS_URL");
}
et::tls_files good() {
  return {nc_test::server_env("NOCLOBBER_ETCD_TLS_CA"), nc_test::server_env("NOCLOBBER_ETCD_TLS_CERT"),
          nc_test::server_env("NOCLOBBER_ETCD_TLS_KEY")};
}

/// The base64 lines of a PEM key file: no message may contain any of them.
std::vector<std::string> key_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && !line.starts_with("-----")) out.push_back(line);
  }
  REQUIRE_FALSE(out.empty());
  return out;
}

void check_no_key(const std::string& text) {
  nc_test::check_no_secret(text, key_lines(nc_test::server_env("NOCLOBBER_ETCD_TLS_KEY")));
  nc_test::check_no_secret(text, key_lines(nc_test::server_env("NOCLOBBER_ETCD_TLS_WRONG_KEY")));
}

}  // namespace

TEST_CASE("etcd tls: https with a client certificate; racing writers lose nothing", "[server][etcd][tls]") {
  const std::string key = nc_test::unique_name("tls/counter");
  constexpr int writers = 4, increments = 15;
  std::vector<et::store> stores;
  for (int i = 0; i < writers; ++i) stores.emplace_back(url(), good());
  for (const auto& f : nc_test::race_increments(stores, key, increments)) CHECK(f == "");
  auto r = stores[0].read(key);
  REQUIRE(r.found());
  CHECK(r.value == std::to_string(writers * increments));
  CHECK(stores[0].erase_if_match(key, r.token).ok());
}

TEST_CASE("etcd tls: the lease backend over TLS", "[server][etcd][tls][lease]") {
  et::lease_backend b(url(), good(), "noclobber/tls-lease/");
  const std::string key = nc_test::unique_name("lock");
  auto a = b.try_acquire(key, std::chrono::seconds(5));
  INFO(a.error.code << " " << a.error.message);
  REQUIRE(a.status == noclobber::lease_status::acquired);
  CHECK(b.try_acquire(key, std::chrono::seconds(5)).status == noclobber::lease_status::busy);
  CHECK(b.extend(key, a.grant, std::chrono::seconds(5)) == noclobber::lease_check::held);
  CHECK(b.release(key, a.grant) == noclobber::lease_check::held);
}

TEST_CASE("etcd tls: a CA that did not sign etcd's certificate is refused, permanent, no member switch",
          "[server][etcd][tls]") {
  et::tls_files tls = good();
  tls.ca_file = nc_test::server_env("NOCLOBBER_ETCD_TLS_WRONG_CA");
  et::store s(url() + "," + url(), tls);
  auto r = s.read("k");
  INFO(r.error.code << " " << r.error.message);
  CHECK(r.status == read_status::permanent);
  CHECK(r.error.code == "curl 60");
  const auto w = noclobber::read_modify_write(
      s, std::string("k"), [](const std::optional<std::string>&) { return std::string("never"); });
  CHECK(w.reason == noclobber::stop_reason::permanent);
  CHECK(w.attempts == 1);
  CHECK(s.member_switches() == 0);
  check_no_key(r.error.message + " " + noclobber::to_text(w));

  et::lease_backend b(url(), tls);
  auto a = b.try_acquire("k", std::chrono::seconds(5));
  CHECK(a.status == noclobber::lease_status::failed);
  CHECK(a.error.code == "curl 60");
}

TEST_CASE("etcd tls: a client certificate from a CA etcd does not trust is refused", "[server][etcd][tls]") {
  et::tls_files tls = good();
  tls.cert_file = nc_test::server_env("NOCLOBBER_ETCD_TLS_WRONG_CERT");
  tls.key_file = nc_test::server_env("NOCLOBBER_ETCD_TLS_WRONG_KEY");
  const std::string key = nc_test::unique_name("tls/refused");
  et::store s(url(), tls);
  auto w = s.create_if_absent(key, "never");
  INFO(w.error.code << " " << w.error.message);
  CHECK_FALSE(w.ok());
  // etcd's alert (permanent), or under TLS 1.3 only the reset it leaves (see the overview).
  const bool alert = w.error.message.find("alert bad certificate") != std::string::npos;
  CHECK((alert ? w.status == write_status::permanent : w.error.code == "curl 55"));
  check_no_key(w.error.message);
  et::store ok(url(), good());
  CHECK(ok.read(key).status == read_status::absent);  // nothing was written
}

TEST_CASE("etcd tls: no client certificate is refused; nothing is written", "[server][etcd][tls]") {
  et::tls_files tls;
  tls.ca_file = nc_test::server_env("NOCLOBBER_ETCD_TLS_CA");
  const std::string key = nc_test::unique_name("tls/nocert");
  et::store s(url(), tls);
  unsigned alerts = 0, resets = 0;
  for (int i = 0; i < 5; ++i) {  // which of the two comes is a race inside TLS 1.3; both must be handled
    auto w = s.create_if_absent(key, "never");
    INFO(w.error.code << " " << w.error.message);
    REQUIRE_FALSE(w.ok());
    if (w.error.message.find("alert certificate required") != std::string::npos ||
        w.error.message.find("alert bad certificate") != std::string::npos) {
      CHECK(w.status == write_status::permanent);
      ++alerts;
    } else {
      CHECK(w.error.code == "curl 55");  // a reset, after the request was handed to TLS
      CHECK(w.status == write_status::indeterminate);
      ++resets;
    }
  }
  CHECK(alerts + resets == 5);
  WARN("no client certificate: " << alerts << " alerts (permanent), " << resets << " resets (curl 55)");
  et::store ok(url(), good());
  CHECK(ok.read(key).status == read_status::absent);
}

TEST_CASE("etcd tls: unusable files are refused with their path, never their contents",
          "[server][etcd][tls]") {
  SECTION("a CA file that does not exist: permanent, the path named") {
    et::tls_files tls = good();
    tls.ca_file = "/nonexistent/noclobber-ca.crt";
    et::store s(url(), tls);
    auto r = s.read("k");
    INFO(r.error.code << " " << r.error.message);
    CHECK(r.status == read_status::permanent);
    CHECK(r.error.code == "curl 77");
    CHECK(r.error.message.find("/nonexistent/noclobber-ca.crt") != std::string::npos);
  }
  SECTION("a key file that is not the certificate's key: permanent, no key in the message") {
    et::tls_files tls = good();
    tls.key_file = nc_test::server_env("NOCLOBBER_ETCD_TLS_WRONG_KEY");
    et::store s(url(), tls);
    auto r = s.read("k");
    INFO(r.error.code << " " << r.error.message);
    CHECK(r.status == read_status::permanent);
    CHECK(r.error.code == "curl 58");
    check_no_key(r.error.message);
  }
  SECTION("a key without a certificate: invalid_argument at construction") {
    et::tls_files tls;
    tls.key_file = nc_test::server_env("NOCLOBBER_ETCD_TLS_KEY");
    CHECK_THROWS_AS(et::store(url(), tls), std::invalid_argument);
    CHECK_THROWS_AS(et::lease_backend(url(), tls), std::invalid_argument);
  }
}
