// The TLS refusal classes of the shared libcurl layer (adapters/detail/curl_easy.hpp), without a
// server: a refusal no retry changes is permanent for reads and writes, sent or not; a bare
// reset stays what it was (transient, indeterminate for a sent write); tls_files that cannot go
// together are refused at construction. The real refusals are in tests/servers/test_server_etcd_tls.cpp.
#include <noclobber/adapters/detail/curl_easy.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

namespace curl = noclobber::detail::curl;
using noclobber::write_status;

namespace {
curl::response failed(CURLcode code, std::string error, bool sent) {
  curl::response r;
  r.code = code;
  r.error = std::move(error);
  r.sent = sent;
  return r;
}
}  // namespace

TEST_CASE("curl tls: refusals are permanent, a bare reset is not", "[curl][tls]") {
  for (const bool may_write : {false, true}) {
    CHECK(curl::classify_transport(failed(CURLE_PEER_FAILED_VERIFICATION, "SSL certificate problem", false),
                                   may_write) == write_status::permanent);
    CHECK(curl::classify_transport(failed(CURLE_SSL_CERTPROBLEM, "unable to set private key file", false),
                                   may_write) == write_status::permanent);
    CHECK(curl::classify_transport(failed(CURLE_SSL_CACERT_BADFILE, "error setting certificate file", false),
                                   may_write) == write_status::permanent);
    CHECK(curl::classify_transport(
              failed(CURLE_RECV_ERROR,
                     "OpenSSL SSL_read: error:0A000412:SSL routines::sslv3 alert bad certificate", true),
              may_write) == write_status::permanent);
    CHECK(curl::classify_transport(
              failed(CURLE_SSL_CONNECT_ERROR,
                     "error:0A00045C:SSL routines::tlsv13 alert certificate required", false),
              may_write) == write_status::permanent);
  }
  // The same codes without a certificate alert: a network failure, as before.
  CHECK(curl::classify_transport(failed(CURLE_RECV_ERROR, "Connection reset by peer", true), true) ==
        write_status::indeterminate);
  CHECK(curl::classify_transport(failed(CURLE_SSL_CONNECT_ERROR, "Connection reset by peer", false), true) ==
        write_status::transient);
  CHECK(curl::classify_transport(failed(CURLE_SEND_ERROR, "Connection reset by peer", true), true) ==
        write_status::indeterminate);
  CHECK(curl::classify_transport(failed(CURLE_SEND_ERROR, "Connection reset by peer", true), false) ==
        write_status::transient);
  CHECK_FALSE(curl::tls_refused(failed(CURLE_COULDNT_CONNECT, "alert bad certificate", false)));
}

TEST_CASE("curl tls: a key without a certificate is refused at construction", "[curl][tls]") {
  noclobber::tls_files tls;
  tls.key_file = "/some/client.key";
  CHECK_THROWS_AS(curl::easy(std::chrono::seconds(1), tls), std::invalid_argument);
  tls.cert_file = "/some/client.crt";
  CHECK_NOTHROW(curl::easy(std::chrono::seconds(1), tls));
  CHECK(noclobber::tls_files{}.empty());
  CHECK_FALSE(tls.empty());
}
