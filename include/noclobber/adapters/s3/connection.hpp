// noclobber/adapters/s3/connection.hpp — one keep-alive libcurl connection that sends signed S3
// object requests (SigV4 by libcurl: CURLOPT_AWS_SIGV4 "aws:amz:REGION:s3") and collects what the
// adapter reads from the answer: status, body, ETag, Retry-After, request id.
//
// Overview
// --------
//   GET     the object (body kept whole, reserved from Content-Length)
//   PUT     an upload (CURLOPT_UPLOAD, the body read from memory)
//   DELETE  body-less
// libcurl never re-sends a PUT or a DELETE by itself: curl_easy.hpp's send_guard refuses the
// re-send and records whether the request left (what classify_transport reads).
// Every request carries `x-amz-content-sha256: UNSIGNED-PAYLOAD` (libcurl's SigV4 signs that
// value and sends no such header itself; S3 requires one), `x-amz-security-token` with temporary
// credentials. libcurl's own `Expect: 100-continue` stays (an empty `Expect:` to suppress it
// would be signed but not sent, and the signature would not match): below 1 MiB libcurl does not
// wait for the 100; from 1 MiB on it does, so a server can refuse a failed precondition before the
// body is sent. The credentials go to libcurl as user name and
// password (never in a URL) and leave this object only inside the Authorization header libcurl
// computes.
//
// Retry-After: `hold_back_until(t)` makes the next request wait until `t` (the store sets it from
// a 429/503 answer), so a retry loop that comes back sooner still honours the server's figure.
//
// A PUT answered with anything but 2xx or 412 closes the connection: a server may refuse a PUT
// before reading its body and keep the connection open (radosgw 16.2 does on a bad signature),
// and the unread body then precedes the next request on it (radosgw parsed "xPUT" and answered
// 405). A 412 is the one refusal on the hot path, and radosgw leaves the connection clean after
// it (thousands of 412s in the race harness, each followed by a clean request on the same
// connection), so it keeps the connection.
//
// Thread safety: one thread at a time (one libcurl handle). No user code is called.
#pragma once

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "noclobber/adapters/detail/curl_easy.hpp"
#include "noclobber/adapters/s3/options.hpp"

// CURLOPT_AWS_SIGV4 (7.75), curl_easy_header (7.83, no longer experimental in 7.84),
// CURLOPT_PROTOCOLS_STR (7.85).
#if LIBCURL_VERSION_NUM < 0x075500
#error "noclobber/adapters/s3.hpp needs libcurl >= 7.85 (Debian 12 has 7.88)"
#endif

namespace noclobber::s3::detail {

/// What came back for one request: curl_easy.hpp's response (code, status, etag, error, sent,
/// resend_refused; `body` is the object for a GET, otherwise the first 64 KiB: an error document),
/// and the two headers S3 adds.
struct answer : noclobber::detail::curl::response {
  std::string retry_after;  ///< verbatim
  std::string request_id;   ///< x-amz-request-id
};

class connection {
 public:
  using clock = std::chrono::steady_clock;

  explicit connection(options o) : opt_(std::move(o)), endpoint_(validate(opt_)) {
    noclobber::detail::curl::global_init();
    h_.reset(curl_easy_init());
    if (!h_) throw std::runtime_error(std::string(who) + ": curl_easy_init failed");
    sigv4_ = "aws:amz:" + opt_.region + ":s3";
    if (!opt_.creds.session_token.empty())
      token_header_ = "x-amz-security-token: " + opt_.creds.session_token;
  }

  [[nodiscard]] const options& opts() const noexcept { return opt_; }
  [[nodiscard]] std::string url(const std::string& key) const { return object_url(endpoint_, opt_, key); }
  /// The bucket's URL, ending in '/' (names the bucket in the probe registry and in messages).
  [[nodiscard]] std::string bucket_url() const {
    if (opt_.style == addressing::virtual_host)
      return endpoint_.scheme + "://" + opt_.bucket + "." + endpoint_.authority + "/";
    return endpoint_.scheme + "://" + endpoint_.authority + "/" + opt_.bucket + "/";
  }

  /// The next request waits until `t` (Retry-After).
  void hold_back_until(clock::time_point t) noexcept {
    if (t > not_before_) not_before_ = t;
  }
  [[nodiscard]] clock::time_point held_back_until() const noexcept { return not_before_; }

  /// One request for `key`. `method`: "GET", "PUT" (sends `body`) or "DELETE". `headers`: whole
  /// header lines; empty ones are skipped.
  answer perform(std::string_view method, const std::string& key, std::string_view body = {},
                 std::initializer_list<std::string_view> headers = {}) {
    const std::string target = url(key);  // validates the key before anything is sent
    wait_out_hold_back();
    answer out;
    if (!h_) h_.reset(curl_easy_init());  // drop_connection() could not make one
    if (!h_) {
      out.code = CURLE_FAILED_INIT;  // nothing was sent: transient
      out.error = "curl_easy_init failed";
      return out;
    }
    CURL* h = h_.get();
    curl_easy_reset(h);  // keeps the connection cache: the next request reuses the connection
    curl_slist* list = curl_slist_append(nullptr, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> guard(list, &curl_slist_free_all);
    if (!token_header_.empty()) list = curl_slist_append(list, token_header_.c_str());
    for (std::string_view hd : headers) {
      if (!hd.empty()) list = curl_slist_append(list, std::string(hd).c_str());
    }
    char errbuf[CURL_ERROR_SIZE] = {};
    const long timeout_ms = static_cast<long>(opt_.timeout.count());
    curl_easy_setopt(h, CURLOPT_URL, target.c_str());
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4_.c_str());
    curl_easy_setopt(h, CURLOPT_USERNAME, opt_.creds.access_key_id.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, opt_.creds.secret_access_key.c_str());
    body_sink sink{&out.body, method == "GET" ? std::string::npos : max_error_body, h, true};
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &connection::on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);

    noclobber::detail::curl::send_guard once(method);
    once.attach(h);
    upload_source upload{body, 0};
    if (method == "PUT") {
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body.size()));
      curl_easy_setopt(h, CURLOPT_READFUNCTION, &connection::on_read);
      curl_easy_setopt(h, CURLOPT_READDATA, &upload);
      curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, &connection::on_seek);
      curl_easy_setopt(h, CURLOPT_SEEKDATA, &upload);
      // libcurl sends `Expect: 100-continue` with every upload; below 1 MiB it does not wait for
      // the 100 (a round trip), from 1 MiB on a failed precondition can be refused before the body.
      if (body.size() < expect_wait_from) curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
    } else if (method != "GET") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, std::string(method).c_str());
    }
    out.code = curl_easy_perform(h);
    once.finish(out, errbuf);
    if (out.code != CURLE_OK) return out;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out.status);
    out.etag = header(h, "ETag");
    out.retry_after = header(h, "Retry-After");
    out.request_id = header(h, "x-amz-request-id");
    if (method == "PUT" && (out.status < 200 || out.status > 299) && out.status != 412) drop_connection();
    return out;
  }

 private:
  static constexpr std::size_t max_error_body = 64 * 1024;
  static constexpr std::size_t expect_wait_from = 1024 * 1024;

  struct body_sink {
    std::string* out;
    std::size_t limit;
    CURL* h;
    bool first;
  };

  static std::size_t on_body(char* p, std::size_t size, std::size_t n, void* user) {
    auto* s = static_cast<body_sink*>(user);
    const std::size_t bytes = size * n;
    if (s->first) {
      s->first = false;
      curl_off_t length = -1;
      if (curl_easy_getinfo(s->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK && length > 0 &&
          static_cast<std::size_t>(length) <= s->limit) {
        s->out->reserve(static_cast<std::size_t>(length));
      }
    }
    if (s->out->size() < s->limit) s->out->append(p, std::min(bytes, s->limit - s->out->size()));
    return bytes;
  }

  // The body of a PUT, read from memory. libcurl may rewind it (to any offset inside the body);
  // whether a second copy of the request may go is send_guard's decision alone.
  struct upload_source {
    std::string_view body;
    std::size_t offset;
  };

  static std::size_t on_read(char* out, std::size_t size, std::size_t n, void* user) {
    auto* u = static_cast<upload_source*>(user);
    const std::size_t take = std::min(size * n, u->body.size() - u->offset);
    if (take > 0) std::memcpy(out, u->body.data() + u->offset, take);
    u->offset += take;
    return take;
  }

  static int on_seek(void* user, curl_off_t offset, int origin) {
    auto* u = static_cast<upload_source*>(user);
    if (origin != SEEK_SET || offset < 0 || static_cast<std::size_t>(offset) > u->body.size())
      return CURL_SEEKFUNC_FAIL;
    u->offset = static_cast<std::size_t>(offset);
    return CURL_SEEKFUNC_OK;
  }

  static std::string header(CURL* h, const char* name) {
    curl_header* hd = nullptr;
    if (curl_easy_header(h, name, 0, CURLH_HEADER, -1, &hd) != CURLHE_OK || hd == nullptr) return {};
    std::string_view v(hd->value);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return std::string(v);
  }

  // A new handle: the old one's connection closes with it (curl_easy_reset would keep it). Null
  // when curl_easy_init fails; the next perform tries again.
  void drop_connection() noexcept {
    h_.reset();
    h_.reset(curl_easy_init());
  }

  void wait_out_hold_back() const {
    const auto now = clock::now();
    if (not_before_ > now) std::this_thread::sleep_for(not_before_ - now);
  }

  struct handle_deleter {
    void operator()(CURL* h) const noexcept { curl_easy_cleanup(h); }
  };

  options opt_;
  endpoint_parts endpoint_;
  std::string sigv4_;
  std::string token_header_;
  std::unique_ptr<CURL, handle_deleter> h_;
  clock::time_point not_before_{};
};

}  // namespace noclobber::s3::detail
