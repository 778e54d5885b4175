// noclobber/adapters/detail/redact.hpp — the one place where the adapters take secrets out of the
// words they hand back (store_error messages, exception messages, reports).
//
// Overview
// --------
//   redact(text, secrets)        every occurrence of each non-empty secret replaced by
//                                "[redacted]" (what a server or a client library echoes back);
//                                overlapping secrets become one mark, so none leaks in part
//   url_password(url)            the password of a URL's user:password@ part ("" when none)
//   redact_url(url)              the URL with its user:password@ (or user@) part replaced by
//                                "[redacted]@", the form every message that names a URL uses
//   redact(store_error, secrets) the same for a store_error's code and message
//   url_secrets(url)             what redact() must take out of messages about a request to `url`:
//                                the password, and the base64 of "user:password" (the Basic
//                                Authorization header a server may echo)
//
// Every adapter that holds a secret (a PostgreSQL password, an S3 secret key or session token, a
// password in an http(s) URL) passes each message it builds through these before it leaves.
// Std-only: no client library is needed.
//
// Thread safety: pure functions. No user code is called.
#pragma once

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "noclobber/adapters/detail/base64.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::detail {

inline constexpr std::string_view redacted_mark = "[redacted]";

/// `text` with every occurrence of each non-empty secret replaced by "[redacted]". All secrets
/// are looked for in the original text at once and overlapping (or touching) occurrences become
/// one mark: a secret inside another (an S3 secret key inside a session token, a password inside
/// its userinfo) leaves no part of either behind, in whatever order the secrets come.
template <class Secrets>
[[nodiscard]] std::string redact_all(std::string_view text, const Secrets& secrets) {
  std::vector<std::pair<std::size_t, std::size_t>> spans;  // [from, to) of every occurrence
  for (const auto& each : secrets) {
    const std::string_view secret(each);
    if (secret.empty()) continue;
    for (std::size_t at = text.find(secret); at != std::string_view::npos; at = text.find(secret, at + 1))
      spans.emplace_back(at, at + secret.size());
  }
  if (spans.empty()) return std::string(text);
  std::sort(spans.begin(), spans.end());
  std::string out;
  out.reserve(text.size());
  std::size_t copied = 0;  // text before this is in `out` or under a mark
  for (std::size_t i = 0; i < spans.size();) {
    const std::size_t from = spans[i].first;
    std::size_t to = spans[i].second;
    for (++i; i < spans.size() && spans[i].first <= to; ++i) to = std::max(to, spans[i].second);
    out.append(text.substr(copied, from - copied)).append(redacted_mark);
    copied = to;
  }
  return out.append(text.substr(copied));
}

[[nodiscard]] inline std::string redact(std::string_view text,
                                        std::initializer_list<std::string_view> secrets) {
  return redact_all(text, secrets);
}

[[nodiscard]] inline std::string redact(std::string_view text, const std::vector<std::string>& secrets) {
  return redact_all(text, secrets);
}

/// The user:password part of a URL (between "://" and the '@' before the first '/', '?' or '#'),
/// or an empty view when it has none.
[[nodiscard]] inline std::string_view url_userinfo(std::string_view url) noexcept {
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return {};
  const std::size_t from = scheme_end + 3;
  const std::size_t authority_end = url.find_first_of("/?#", from);
  const std::string_view authority =
      url.substr(from, authority_end == std::string_view::npos ? url.npos : authority_end - from);
  const std::size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return {};
  return authority.substr(0, at);
}

/// The password of a URL's user:password@ part, or "".
[[nodiscard]] inline std::string_view url_password(std::string_view url) noexcept {
  const std::string_view userinfo = url_userinfo(url);
  const std::size_t colon = userinfo.find(':');
  return colon == std::string_view::npos ? std::string_view{} : userinfo.substr(colon + 1);
}

/// `url` with its user:password@ part replaced by "[redacted]@" (unchanged when it has none).
[[nodiscard]] inline std::string redact_url(std::string url) {
  const std::string_view userinfo = url_userinfo(url);
  if (userinfo.empty()) return url;
  const auto from = static_cast<std::size_t>(userinfo.data() - url.data());
  url.replace(from, userinfo.size(), redacted_mark);
  return url;
}

/// What must never appear in a message about a request to `url`: its password, its whole
/// userinfo, and the base64 of the userinfo (the Basic credentials sent for it). Empty when the
/// URL carries no password.
[[nodiscard]] inline std::vector<std::string> url_secrets(std::string_view url) {
  const std::string_view userinfo = url_userinfo(url);
  if (url_password(url).empty()) return {};
  return {std::string(userinfo), base64_encode(userinfo), std::string(url_password(url))};
}

/// `e` with redact() applied to its code and its message.
[[nodiscard]] inline store_error redact(store_error e, const std::vector<std::string>& secrets) {
  e.code = redact(std::move(e.code), secrets);
  e.message = redact(std::move(e.message), secrets);
  return e;
}

}  // namespace noclobber::detail
