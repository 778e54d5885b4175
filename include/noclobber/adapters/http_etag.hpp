// noclobber/adapters/http_etag.hpp — HTTP resources with strong ETags (libcurl): If-Match and
// If-None-Match: *, the S3 conditional-write pattern of seed 000, for any RFC 9110 server.
//
// Overview
// --------
// `http_etag::store` maps a key to `base_url + key` and uses the resource's strong ETag as the
// version token:
//
//   read              GET                               200 -> body, ETag     404/410 -> absent
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
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::http_etag {

// The pieces of the protocol, shared with adapters built on the same requests
// (noclobber/adapters/webdav_lock.hpp).
namespace detail {

/// `base` checked to be an http(s) URL, with a trailing '/'. `who` names the caller in errors.
inline std::string checked_base_url(std::string base, const char* who) {
  if (!(base.starts_with("http://") || base.starts_with("https://")) || base.size() < 9) {
    throw std::invalid_argument(std::string(who) + ": base URL '" + base + "' is not an http(s) URL");
  }
  if (!base.ends_with('/')) base += '/';
  return base;
}

/// `base + key`, after checking that `key` is a relative path of [A-Za-z0-9._~-] segments.
inline std::string resource_url(const std::string& base, const std::string& key, const char* who) {
  bool ok = !key.empty() && key.front() != '/' && key.back() != '/';
  std::size_t seg_start = 0;
  for (std::size_t i = 0; ok && i <= key.size(); ++i) {
    if (i == key.size() || key[i] == '/') {
      const std::string_view seg(key.data() + seg_start, i - seg_start);
      ok = !seg.empty() && seg != "." && seg != "..";
      seg_start = i + 1;
      continue;
    }
    const char c = key[i];
    ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '~';
  }
  if (!ok) {
    throw std::invalid_argument(std::string(who) + ": key '" + key +
                                "' is not a relative path of [A-Za-z0-9._~-] segments");
  }
  return base + key;
}

/// A strong ETag: a quoted string (W/"…" is weak; anything unquoted is malformed).
[[nodiscard]] inline bool is_strong_etag(std::string_view token) noexcept {
  return token.size() >= 2 && token.front() == '"' && token.back() == '"';
}

inline void check_strong_etag(const std::string& token, const char* who) {
  if (!is_strong_etag(token)) {
    throw std::invalid_argument(std::string(who) + ": token '" + token +
                                "' is not a strong ETag (a quoted string)");
  }
}

/// 408, 429 and 503: the request was refused, not applied.
[[nodiscard]] inline bool retryable(long status) noexcept {
  return status == 408 || status == 429 || status == 503;
}

[[nodiscard]] inline store_error http_error(const noclobber::detail::curl::response& r) {
  return {std::to_string(r.status), r.body.substr(0, 200)};
}

/// A GET's answer as a read: 200 with a strong ETag -> found (a weak, missing or unquoted one is
/// permanent); 404/410 -> absent.
[[nodiscard]] inline read_result<std::string, std::string> read_answer(noclobber::detail::curl::response&& r,
                                                                       const std::string& key) {
  using rr = read_result<std::string, std::string>;
  if (!r.transport_ok()) {
    return rr::make_failed(
        noclobber::detail::curl::classify_transport(r.code, false) == write_status::permanent
            ? read_status::permanent
            : read_status::transient,
        {"curl " + std::to_string(static_cast<int>(r.code)), r.error});
  }
  if (r.status == 404 || r.status == 410) return rr::make_absent();
  if (r.status == 200) {
    if (r.etag.empty())
      return rr::make_failed(read_status::permanent, {"200", "the server sent no ETag for " + key});
    if (r.etag.starts_with("W/")) {
      return rr::make_failed(read_status::permanent,
                             {"weak-etag", "the server sent a weak ETag " + r.etag + " for " + key +
                                               ", which If-Match never matches (Apache: FileETag Digest)"});
    }
    if (!is_strong_etag(r.etag)) {  // a token the writes would refuse
      return rr::make_failed(
          read_status::permanent,
          {"bad-etag", "the server sent an ETag that is not a quoted string (" + r.etag + ") for " + key});
    }
    return rr::make_found(std::move(r.body), std::move(r.etag));
  }
  return rr::make_failed(retryable(r.status) ? read_status::transient : read_status::permanent,
                         http_error(r));
}

/// A write's answer, for the statuses that mean the same for every write: 2xx -> applied (with the
/// new ETag when a strong one came back); 408/429/503 -> transient; 500/502/504 and a request without
/// an answer -> indeterminate; anything else -> permanent.
[[nodiscard]] inline write_result<std::string> write_answer(const noclobber::detail::curl::response& r) {
  using wr = write_result<std::string>;
  if (!r.transport_ok()) {
    return wr::failed(noclobber::detail::curl::classify_transport(r.code, true),
                      {"curl " + std::to_string(static_cast<int>(r.code)), r.error});
  }
  if (r.status >= 200 && r.status < 300) {
    if (is_strong_etag(r.etag)) return wr::applied(r.etag);
    return wr::applied();  // no usable token: the next read gets one
  }
  if (retryable(r.status)) return wr::failed(write_status::transient, http_error(r));
  if (r.status == 500 || r.status == 502 || r.status == 504)
    return wr::failed(write_status::indeterminate, http_error(r));
  return wr::failed(write_status::permanent, http_error(r));
}

/// After a 412 on If-Match: conflict when the resource still exists, absent when a HEAD finds nothing.
[[nodiscard]] inline write_result<std::string> moved_or_gone(noclobber::detail::curl::easy& http,
                                                             const std::string& url) {
  noclobber::detail::curl::response h = http.perform("HEAD", url, {});
  if (h.transport_ok() && (h.status == 404 || h.status == 410)) return write_result<std::string>::absent();
  return write_result<std::string>::conflict();
}

}  // namespace detail

class store {
 public:
  using key_type = std::string;    // a relative path: [A-Za-z0-9._~-] segments joined by '/'
  using value_type = std::string;  // the resource's body
  using token_type = std::string;  // the strong ETag, quotes included

  /// `base_url`: "http(s)://host[:port]/prefix/" (a trailing '/' is added when missing).
  explicit store(std::string base_url, std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : base_(detail::checked_base_url(std::move(base_url), who)), http_(timeout) {}

  read_result<value_type, token_type> read(const key_type& key) {
    return detail::read_answer(http_.perform("GET", url(key), {}), key);
  }

  write_result<token_type> write_if_match(const key_type& key, const token_type& token,
                                          const value_type& value) {
    detail::check_strong_etag(token, who);
    const std::string u = url(key);
    noclobber::detail::curl::response r = http_.perform("PUT", u, value, {"If-Match: " + token});
    if (r.transport_ok() && r.status == 412) return detail::moved_or_gone(http_, u);
    if (r.transport_ok() && r.status == 409) return write_result<token_type>::conflict();
    return detail::write_answer(r);
  }

  write_result<token_type> create_if_absent(const key_type& key, const value_type& value) {
    noclobber::detail::curl::response r = http_.perform("PUT", url(key), value, {"If-None-Match: *"});
    if (r.transport_ok() && r.status == 412) return write_result<token_type>::exists();
    if (r.transport_ok() && r.status == 409) {
      // S3: a concurrent conditional request; WebDAV: the parent collection is missing.
      return write_result<token_type>::failed(write_status::transient, detail::http_error(r));
    }
    return detail::write_answer(r);
  }

  write_result<token_type> erase_if_match(const key_type& key, const token_type& token) {
    detail::check_strong_etag(token, who);
    const std::string u = url(key);
    noclobber::detail::curl::response r = http_.perform("DELETE", u, {}, {"If-Match: " + token});
    if (r.transport_ok() && r.status == 412) return detail::moved_or_gone(http_, u);
    if (r.transport_ok() && r.status == 404) return write_result<token_type>::absent();
    return detail::write_answer(r);
  }

  /// The unconditional PUT that loses updates (negative control only).
  write_result<token_type> overwrite(const key_type& key, const value_type& value) {
    return detail::write_answer(http_.perform("PUT", url(key), value));
  }

  [[nodiscard]] const std::string& base_url() const noexcept { return base_; }

 private:
  static constexpr const char* who = "noclobber::http_etag::store";
  std::string url(const key_type& key) const { return detail::resource_url(base_, key, who); }

  std::string base_;
  noclobber::detail::curl::easy http_;
};

static_assert(check_conditional_writer<store>());

}  // namespace noclobber::http_etag
