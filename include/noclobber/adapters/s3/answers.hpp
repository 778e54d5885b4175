// noclobber/adapters/s3/answers.hpp — what an S3 answer means for a read or a write, in the
// store's own words and without a secret in them.
//
// Overview
// --------
//   read              200 + strong ETag -> found; 404 NoSuchKey -> absent; 404 NoSuchBucket,
//                     400, 403, ... -> permanent; 408/429/5xx and no answer -> transient
//   read_if_changed   304 -> unchanged; otherwise as read
//   a write           2xx -> applied (the new ETag when one came back)
//                     412 -> conflict (If-Match) / exists (If-None-Match: *)
//                     404 NoSuchKey -> absent (If-Match, DELETE); NoSuchBucket -> permanent
//                     409 ConditionalRequestConflict / OperationAborted -> transient_restart
//                     408, 429, 503 (SlowDown) -> transient: refused, not applied
//                     500, 502, 504, and a request that may have left without an answer
//                     (a reset, a timeout, libcurl's re-send refused) -> indeterminate;
//                     nothing sent (cannot connect) -> transient (curl::classify_transport)
//                     anything else -> permanent
// The 408/429/503 and 500/502/504 rule is the one every HTTP adapter shares (adapters/detail/http.hpp:
// retryable, write_answer), reused here.
//
// Words: store_error.code is the S3 error code from the answer's XML (`PreconditionFailed`,
// `SlowDown`, …), else "HTTP <status>" or "curl <code>"; the message has the status, the server's
// <Message>, the request id and, where one came, the Retry-After figure. Every message passes
// through redact(): the secret key and the session token never leave the adapter, whatever a
// server echoes back (AWS's SignatureDoesNotMatch answer carries the canonical request, with the
// session token in it).
//
// Thread safety: pure functions. No user code is called.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "noclobber/adapters/detail/curl_easy.hpp"
#include "noclobber/adapters/detail/http.hpp"
#include "noclobber/adapters/detail/redact.hpp"
#include "noclobber/adapters/s3/connection.hpp"
#include "noclobber/adapters/s3/options.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_if_changed.hpp"

namespace noclobber::s3::detail {

/// `text` with every occurrence of the secret key and the session token replaced.
[[nodiscard]] inline std::string redact(std::string text, const credentials& c) {
  return ::noclobber::detail::redact(std::move(text), {c.secret_access_key, c.session_token});
}

/// The text of the first <name>…</name> element in an S3 XML answer (the five predefined XML
/// entities decoded), or "".
[[nodiscard]] inline std::string xml_field(std::string_view body, std::string_view name) {
  const std::string open = "<" + std::string(name) + ">", close = "</" + std::string(name) + ">";
  const auto start = body.find(open);
  if (start == std::string_view::npos) return {};
  const auto from = start + open.size();
  const auto end = body.find(close, from);
  if (end == std::string_view::npos) return {};
  std::string out;
  const std::string_view raw = body.substr(from, end - from);
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '&') {
      static constexpr std::pair<std::string_view, char> entities[] = {
          {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
      bool decoded = false;
      for (const auto& [entity, ch] : entities) {
        if (raw.substr(i).starts_with(entity)) {
          out += ch;
          i += entity.size() - 1;
          decoded = true;
          break;
        }
      }
      if (decoded) continue;
    }
    out += raw[i];
  }
  return out;
}

/// Seconds from `now` that a Retry-After value asks for: delta-seconds, or an IMF-fixdate
/// (RFC 9110: exactly "Sun, 06 Nov 1994 08:49:37 GMT", every field in range; a date in the past is
/// 0). nullopt when it is neither. Fixed-width fields, read digit by digit: no field can overflow.
[[nodiscard]] inline std::optional<std::chrono::seconds> parse_retry_after(std::string_view v,
                                                                           std::time_t now) {
  if (v.empty()) return std::nullopt;
  if (v.find_first_not_of("0123456789") == std::string_view::npos) {
    if (v.size() > 9) return std::chrono::seconds(999'999'999);  // saturate: far more than any cap
    std::int64_t n = 0;
    for (char c : v) n = n * 10 + (c - '0');
    return std::chrono::seconds(n);
  }
  // "Www, DD Mon YYYY HH:MM:SS GMT": 29 characters, separators at fixed places.
  if (v.size() != 29 || v.substr(3, 2) != ", " || v[7] != ' ' || v[11] != ' ' || v[16] != ' ' ||
      v[19] != ':' || v[22] != ':' || v.substr(25) != " GMT") {
    return std::nullopt;
  }
  auto number = [&](std::size_t at, std::size_t digits) -> int {  // -1 unless all digits
    int n = 0;
    for (std::size_t i = at; i < at + digits; ++i) {
      if (v[i] < '0' || v[i] > '9') return -1;
      n = n * 10 + (v[i] - '0');
    }
    return n;
  };
  static constexpr std::string_view days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  static constexpr std::string_view months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  bool day_name = false;
  for (std::string_view d : days) day_name = day_name || v.substr(0, 3) == d;
  unsigned month = 0;
  for (unsigned m = 0; m < 12; ++m) {
    if (months[m] == v.substr(8, 3)) month = m + 1;
  }
  const int day = number(5, 2), year = number(12, 4);
  const int hour = number(17, 2), minute = number(20, 2), second = number(23, 2);
  if (!day_name || day < 0 || year < 0 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 ||
      second > 60) {
    return std::nullopt;
  }
  const std::chrono::year_month_day date{std::chrono::year{year}, std::chrono::month{month},
                                         std::chrono::day{static_cast<unsigned>(day)}};
  if (!date.ok()) return std::nullopt;  // no month 0, no 31 Feb
  const std::int64_t at = std::chrono::sys_seconds{std::chrono::sys_days{date}}.time_since_epoch().count() +
                          hour * 3600 + minute * 60 + second;
  return std::chrono::seconds(at > now ? at - now : 0);
}

/// The store's words for an answer that is not a success (see the overview), redacted.
[[nodiscard]] inline store_error error_of(const answer& a, const credentials& c) {
  if (!a.transport_ok()) return {"curl " + std::to_string(static_cast<int>(a.code)), redact(a.error, c)};
  const std::string code = xml_field(a.body, "Code");
  const std::string message = xml_field(a.body, "Message");
  std::string text = "HTTP " + std::to_string(a.status);
  if (!code.empty()) text += " " + code;
  if (!message.empty()) text += ": " + message;
  const std::string request = a.request_id.empty() ? xml_field(a.body, "RequestId") : a.request_id;
  if (!request.empty()) text += " (request " + request + ")";
  if (!a.retry_after.empty()) text += " (Retry-After: " + a.retry_after + ")";
  return {redact(code.empty() ? "HTTP " + std::to_string(a.status) : code, c), redact(std::move(text), c)};
}

/// A GET's answer as a read (see the overview).
[[nodiscard]] inline read_result<std::string, std::string> read_answer(answer&& a, const std::string& key,
                                                                       const credentials& c) {
  using rr = read_result<std::string, std::string>;
  if (!a.transport_ok()) {
    const bool bad_request = noclobber::detail::curl::classify_transport(a, false) == write_status::permanent;
    return rr::make_failed(bad_request ? read_status::permanent : read_status::transient, error_of(a, c));
  }
  if (a.status == 200) {
    if (!noclobber::detail::http::is_strong_etag(a.etag)) {
      return rr::make_failed(read_status::permanent,
                             {"NoStrongETag", redact("the server sent no strong ETag (got '" + a.etag +
                                                         "') for " + key + ", which If-Match cannot use",
                                                     c)});
    }
    return rr::make_found(std::move(a.body), std::move(a.etag));
  }
  if (a.status == 404 && xml_field(a.body, "Code") != "NoSuchBucket") return rr::make_absent();
  const bool refused =
      noclobber::detail::http::retryable(a.status) || a.status >= 500;  // a read can be repeated
  return rr::make_failed(refused ? read_status::transient : read_status::permanent, error_of(a, c));
}

/// A conditional GET's answer: 304 -> unchanged, else as read_answer.
[[nodiscard]] inline read_if_changed_result<std::string, std::string> conditional_read_answer(
    answer&& a, const std::string& key, const credentials& c) {
  using result = read_if_changed_result<std::string, std::string>;
  if (a.transport_ok() && a.status == 304) return result::make_unchanged();
  return result::make_fresh(read_answer(std::move(a), key, c));
}

/// Which write an answer is for: what 412 and 404 mean depends on it.
enum class write_kind : unsigned char { update, create, erase, overwrite };

/// A write's answer (see the overview).
[[nodiscard]] inline write_result<std::string> write_answer(const answer& a, write_kind kind,
                                                            const credentials& c) {
  using wr = write_result<std::string>;
  if (!a.transport_ok()) {
    return wr::make_failed(noclobber::detail::curl::classify_transport(a, true), error_of(a, c));
  }
  if (a.status >= 200 && a.status < 300)
    return noclobber::detail::http::is_strong_etag(a.etag) ? wr::make_applied(a.etag) : wr::make_applied();
  const std::string code = xml_field(a.body, "Code");
  if (a.status == 412 && kind != write_kind::overwrite) {
    return kind == write_kind::create ? wr::make_exists() : wr::make_conflict();
  }
  if (a.status == 404 && code != "NoSuchBucket" &&
      (kind == write_kind::update || kind == write_kind::erase)) {
    return wr::make_absent();
  }
  if (a.status == 409 && (code == "ConditionalRequestConflict" || code == "OperationAborted")) {
    return wr::make_failed(write_status::transient_restart, error_of(a, c));
  }
  // The statuses every HTTP write reads the same way (adapters/detail/http.hpp): 408/429/503
  // refused, 500/502/504 unknown, the rest permanent.
  return wr::make_failed(noclobber::detail::http::write_answer(a).status, error_of(a, c));
}

}  // namespace noclobber::s3::detail
