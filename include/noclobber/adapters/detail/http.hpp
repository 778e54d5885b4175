// noclobber/adapters/detail/http.hpp — what the HTTP adapters (http_etag.hpp, webdav_lock.hpp)
// share about HTTP itself: URLs, header values, and what an answer means for a read or a write.
//
// Overview
// --------
//   URLs       checked_base_url (an http(s) URL ending in '/'), resource_url (base + a key that
//              is a relative path of [A-Za-z0-9._~-] segments, so it never needs escaping)
//   headers    strong / weak ETags (If-Match needs a strong one), WebDAV Lock-Token values and
//              the `If: <url> (<token>)` header that presents one
//   answers    retryable (408, 429, 503: refused, not applied), read_answer (a GET as a
//              read_result), write_answer (the statuses every write reads the same way: 2xx
//              applied, 408/429/503 transient, 500/502/504 and no answer indeterminate, else
//              permanent), moved_or_gone (a 412 on If-Match: conflict, or absent after a HEAD)
//
// Each adapter adds only what its own requests mean (a 412 on If-None-Match, a 409, a 423).
// Transport failures are classified by curl::classify_transport (adapters/detail/curl_easy.hpp).
//
// Thread safety: pure functions, except moved_or_gone, which uses the caller's curl handle (one
// thread at a time, as the handle requires). No user code is called.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "noclobber/adapters/detail/curl_easy.hpp"
#include "noclobber/adapters/detail/redact.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::detail::http {

// ---- URLs ---------------------------------------------------------------------------------------

/// `base` checked to be an http(s) URL, with a trailing '/'. `who` names the caller in errors.
inline std::string checked_base_url(std::string base, const char* who) {
  if (!(base.starts_with("http://") || base.starts_with("https://")) || base.size() < 9) {
    throw std::invalid_argument(std::string(who) + ": base URL '" + redact_url(base) +
                                "' is not an http(s) URL");
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

// ---- header values ------------------------------------------------------------------------------

/// A weak ETag (W/"…") never matches If-Match (RFC 9110 §13.1.1).
[[nodiscard]] inline bool is_weak_etag(std::string_view etag) noexcept {
  return etag.starts_with("W/");
}

/// A strong ETag: a quoted string (W/"…" is weak; anything unquoted is malformed).
[[nodiscard]] inline bool is_strong_etag(std::string_view token) noexcept {
  return token.size() >= 2 && token.front() == '"' && token.back() == '"';
}

/// Throws std::invalid_argument unless `token` is a strong ETag (a quoted string).
inline void check_strong_etag(const std::string& token, const char* who) {
  if (!is_strong_etag(token)) {
    throw std::invalid_argument(std::string(who) + ": token '" + token +
                                "' is not a strong ETag (a quoted string)");
  }
}

/// A Lock-Token header value as RFC 4918 §10.5 writes it: a Coded-URL, "<…>".
[[nodiscard]] inline bool is_lock_token(std::string_view value) noexcept {
  return value.size() >= 3 && value.front() == '<' && value.back() == '>';
}

/// `If: <url> (<lock token>)`: a tagged list, which names the resource itself (an untagged list
/// is also checked against the parent collection for a DELETE, and fails there: 424).
[[nodiscard]] inline std::string if_lock_header(const std::string& url, const std::string& lock_token) {
  return "If: <" + url + "> (" + lock_token + ")";
}

// ---- answers ------------------------------------------------------------------------------------

/// 408, 429 and 503: the request was refused, not applied.
[[nodiscard]] inline bool retryable(long status) noexcept {
  return status == 408 || status == 429 || status == 503;
}

[[nodiscard]] inline store_error http_error(const curl::response& r) {
  return {std::to_string(r.status), r.body.substr(0, 200)};
}

/// A GET's answer as a read: 200 with a strong ETag -> found (a weak, missing or unquoted one is
/// permanent); 404/410 -> absent.
[[nodiscard]] inline read_result<std::string, std::string> read_answer(curl::response&& r,
                                                                       const std::string& key) {
  using rr = read_result<std::string, std::string>;
  if (!r.transport_ok()) {
    return rr::make_failed(curl::classify_transport(r, false) == write_status::permanent
                               ? read_status::permanent
                               : read_status::transient,
                           {"curl " + std::to_string(static_cast<int>(r.code)), r.error});
  }
  if (r.status == 404 || r.status == 410) return rr::make_absent();
  if (r.status == 200) {
    if (r.etag.empty())
      return rr::make_failed(read_status::permanent, {"200", "the server sent no ETag for " + key});
    if (is_weak_etag(r.etag)) {
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
[[nodiscard]] inline write_result<std::string> write_answer(const curl::response& r) {
  using wr = write_result<std::string>;
  if (!r.transport_ok()) {
    return wr::make_failed(curl::classify_transport(r, true),
                           {"curl " + std::to_string(static_cast<int>(r.code)), r.error});
  }
  if (r.status >= 200 && r.status < 300) {
    if (is_strong_etag(r.etag)) return wr::make_applied(r.etag);
    return wr::make_applied();  // no usable token: the next read gets one
  }
  if (retryable(r.status)) return wr::make_failed(write_status::transient, http_error(r));
  if (r.status == 500 || r.status == 502 || r.status == 504)
    return wr::make_failed(write_status::indeterminate, http_error(r));
  return wr::make_failed(write_status::permanent, http_error(r));
}

/// After a 412 on If-Match: conflict when the resource still exists, absent when a HEAD finds nothing.
[[nodiscard]] inline write_result<std::string> moved_or_gone(curl::easy& client, const std::string& url) {
  curl::response h = client.perform("HEAD", url, {});
  if (h.transport_ok() && (h.status == 404 || h.status == 410))
    return write_result<std::string>::make_absent();
  return write_result<std::string>::make_conflict();
}

}  // namespace noclobber::detail::http
