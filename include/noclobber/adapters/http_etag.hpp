// noclobber/adapters/http_etag.hpp — HTTP resources with strong ETags (libcurl): If-Match and
// If-None-Match: *, the S3 conditional-write pattern of the fix for the SQLite file kept as one
// object-store object (docs/scenarios.md), for any RFC 9110 server.
//
// Overview
// --------
// `http_etag::store` maps a key to `base_url + key` and uses the resource's strong ETag as the
// version token:
//
//   read              GET                               200 -> body, ETag     404/410 -> absent
//   read_if_changed   GET  If-None-Match: <etag>        304 -> unchanged (read_if_changed.hpp)
//   write_if_match    PUT  If-Match: <etag>             2xx -> applied        412 -> conflict, or
//                                                       absent when a HEAD then finds nothing
//   create_if_absent  PUT  If-None-Match: *             2xx -> applied        412 -> exists
//   erase_if_match    DELETE If-Match: <etag>
//
// A weak ETag (W/"…") never matches If-Match (RFC 9110 §13.1.1), so a read that gets one answers
// `permanent` with a message instead of looping on 412. Apache httpd needs `FileETag Digest` for
// strong ETags right after a write. A content-hash ETag repeats when the content repeats (ABA):
// the contract holds only when every write's body differs from the bodies the key had before.
// PUT answers often carry no ETag: then `applied` comes without a token and the next read gets it.
//
// Is the server's conditional PUT atomic? That is the server's promise, not ours: S3 documents
// it; Apache mod_dav does not (see docs/adapters/http_etag.md for what the race harness found).
//
// Errors: 408, 429 and 503 are transient (S3 SlowDown: the request was refused, not applied);
// 500, 502, 504 and a request without an answer are indeterminate for writes; 409 on If-Match
// (S3 ConditionalRequestConflict) is a conflict; 428 and other 4xx are permanent.
//
// Thread safety: a `store` is one libcurl handle (one keep-alive connection): one thread at a
// time. No user code is called.
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "noclobber/adapters/detail/curl_easy.hpp"
#include "noclobber/adapters/detail/http.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_if_changed.hpp"

namespace noclobber::http_etag {

class store {
 public:
  using key_type = std::string;    // a relative path: [A-Za-z0-9._~-] segments joined by '/'
  using value_type = std::string;  // the resource's body
  using token_type = std::string;  // the strong ETag, quotes included

  /// `base_url`: "http(s)://host[:port]/prefix/" (a trailing '/' is added when missing).
  explicit store(std::string base_url, std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : base_(noclobber::detail::http::checked_base_url(std::move(base_url), who)), http_(timeout) {}

  read_result<value_type, token_type> read(const key_type& key) {
    return noclobber::detail::http::read_answer(http_.perform("GET", url(key), {}), key);
  }

  /// A conditional GET: 304 -> unchanged, anything else as read().
  read_if_changed_result<value_type, token_type> read_if_changed(const key_type& key,
                                                                 const token_type& token) {
    noclobber::detail::http::check_strong_etag(token, who);
    noclobber::detail::curl::response r = http_.perform("GET", url(key), {}, {"If-None-Match: " + token});
    if (r.transport_ok() && r.status == 304)
      return read_if_changed_result<value_type, token_type>::make_unchanged();
    return read_if_changed_result<value_type, token_type>::make_fresh(
        noclobber::detail::http::read_answer(std::move(r), key));
  }

  write_result<token_type> write_if_match(const key_type& key, const token_type& token,
                                          const value_type& value) {
    noclobber::detail::http::check_strong_etag(token, who);
    const std::string u = url(key);
    noclobber::detail::curl::response r = http_.perform("PUT", u, value, {"If-Match: " + token});
    if (r.transport_ok() && r.status == 412) return noclobber::detail::http::moved_or_gone(http_, u);
    if (r.transport_ok() && r.status == 409) return write_result<token_type>::make_conflict();
    return noclobber::detail::http::write_answer(r);
  }

  write_result<token_type> create_if_absent(const key_type& key, const value_type& value) {
    noclobber::detail::curl::response r = http_.perform("PUT", url(key), value, {"If-None-Match: *"});
    if (r.transport_ok() && r.status == 412) return write_result<token_type>::make_exists();
    if (r.transport_ok() && r.status == 409) {
      // S3: a concurrent conditional request; WebDAV: the parent collection is missing.
      return write_result<token_type>::make_failed(write_status::transient,
                                                   noclobber::detail::http::http_error(r));
    }
    return noclobber::detail::http::write_answer(r);
  }

  write_result<token_type> erase_if_match(const key_type& key, const token_type& token) {
    noclobber::detail::http::check_strong_etag(token, who);
    const std::string u = url(key);
    noclobber::detail::curl::response r = http_.perform("DELETE", u, {}, {"If-Match: " + token});
    if (r.transport_ok() && r.status == 412) return noclobber::detail::http::moved_or_gone(http_, u);
    if (r.transport_ok() && r.status == 404) return write_result<token_type>::make_absent();
    return noclobber::detail::http::write_answer(r);
  }

  /// The unconditional PUT that loses updates (negative control only).
  write_result<token_type> overwrite(const key_type& key, const value_type& value) {
    return noclobber::detail::http::write_answer(http_.perform("PUT", url(key), value));
  }

  [[nodiscard]] const std::string& base_url() const noexcept { return base_; }

 private:
  static constexpr const char* who = "noclobber::http_etag::store";
  std::string url(const key_type& key) const {
    return noclobber::detail::http::resource_url(base_, key, who);
  }

  std::string base_;
  noclobber::detail::curl::easy http_;
};

static_assert(check_conditional_writer<store>());
static_assert(revalidating_store<store>);

}  // namespace noclobber::http_etag
