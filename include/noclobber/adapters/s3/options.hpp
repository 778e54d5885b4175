// noclobber/adapters/s3/options.hpp — where the S3 adapter sends its requests and as whom:
// endpoint, bucket, region, addressing style, credentials, time limits, and the enforcement check;
// validated once, and the URL of each key.
//
// Overview
// --------
//   endpoint   "http(s)://host[:port]" — no path, no query, no user:password@ (credentials go in
//              `creds`, so they never travel in a URL, a log line or an error message)
//   bucket     3–63 characters of [a-z0-9.-], starting and ending with a letter or digit
//   addressing path style ENDPOINT/BUCKET/KEY (every S3-compatible server), or virtual-host style
//              scheme://BUCKET.host[:port]/KEY (AWS's default; a server needs its DNS name set:
//              radosgw `rgw dns name`, s3rver `--service-endpoint`; curl resolves *.localhost to
//              loopback by itself)
//   keys       any bytes but control characters, at most 1,024, no empty, "." or ".." segments
//              (URL normalisation would change them); sent percent-encoded as SigV4 wants
//
// Thread safety: plain values and pure functions. No user code is called.
#pragma once

#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace noclobber::s3 {

enum class addressing : unsigned char {
  path,          ///< http://host:port/bucket/key
  virtual_host,  ///< http://bucket.host:port/key
};

/// What the adapter does about servers that ignore preconditions (see the probe in s3.hpp).
enum class enforcement : unsigned char {
  probe,  ///< default: before the first conditional write to this endpoint and bucket, check on a
          ///< scratch key that If-None-Match: * and If-Match are enforced; refuse writes if not
  trust,  ///< opt out: no check. Only for servers you know enforce both (or for a negative control)
};

/// How the ETag goes into an If-Match header.
enum class etag_form : unsigned char {
  quoted,    ///< as the server sent it, quotes included (RFC 9110; AWS S3)
  unquoted,  ///< without the quotes: what radosgw 16.2 compares a PUT's If-Match against
};

/// SigV4 credentials. Never printed: no error, exception or message of the adapter contains the
/// secret key or the session token.
struct credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  ///< temporary credentials only; sent as x-amz-security-token
};

struct options {
  std::string endpoint;  ///< "http(s)://host[:port]"
  std::string bucket;
  std::string region = "us-east-1";
  credentials creds;
  addressing style = addressing::path;
  /// Whole-request limit (connect, send, answer). A write that runs out of it after it was sent
  /// is indeterminate.
  std::chrono::milliseconds timeout = std::chrono::seconds(30);
  enforcement check = enforcement::probe;
  /// The If-Match form for writes. With enforcement::probe the probe finds the form the server
  /// accepts and this is ignored; with enforcement::trust it is used as given.
  etag_form if_match_form = etag_form::quoted;
  /// Where the probe writes its scratch object (a random name under it, deleted afterwards).
  std::string probe_prefix = ".noclobber-probe/";
  /// The longest Retry-After the store waits out before its next request. A longer one makes the
  /// answer `permanent` (with the server's figure in the message) instead of `transient`.
  std::chrono::milliseconds max_retry_after = std::chrono::seconds(30);
};

namespace detail {

inline constexpr const char* who = "noclobber::s3::store";

/// The endpoint split into scheme ("http" / "https") and authority ("host[:port]").
struct endpoint_parts {
  std::string scheme;
  std::string authority;
};

/// Throws std::invalid_argument unless `endpoint` is "http(s)://host[:port]" (a trailing '/' is
/// allowed). The message never repeats a part that could hold credentials.
inline endpoint_parts parse_endpoint(std::string_view endpoint) {
  endpoint_parts out;
  if (endpoint.starts_with("http://")) {
    out.scheme = "http";
  } else if (endpoint.starts_with("https://")) {
    out.scheme = "https";
  } else {
    throw std::invalid_argument(std::string(who) + ": endpoint must start with http:// or https://");
  }
  std::string_view rest = endpoint.substr(out.scheme.size() + 3);
  if (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find('@') != std::string_view::npos) {
    throw std::invalid_argument(std::string(who) +
                                ": endpoint must not carry credentials (user:password@); use options::creds");
  }
  if (rest.empty() || rest.find_first_of("/?#") != std::string_view::npos) {
    throw std::invalid_argument(std::string(who) +
                                ": endpoint must be scheme://host[:port] with no path, query or fragment");
  }
  out.authority = std::string(rest);
  return out;
}

inline void check_bucket(const std::string& bucket) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  bool ok = bucket.size() >= 3 && bucket.size() <= 63 && alnum(bucket.front()) && alnum(bucket.back());
  for (char c : bucket) ok = ok && (alnum(c) || c == '.' || c == '-');
  if (!ok) {
    throw std::invalid_argument(
        std::string(who) + ": bucket '" + bucket +
        "' is not 3-63 characters of [a-z0-9.-] starting and ending with a letter or digit");
  }
}

inline void check_region(const std::string& region) {
  bool ok = !region.empty() && region.size() <= 64;
  for (char c : region) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
  if (!ok) throw std::invalid_argument(std::string(who) + ": region '" + region + "' is not [a-z0-9-]+");
}

/// Throws std::invalid_argument naming the first bad field. Never mentions the secret or token.
inline endpoint_parts validate(const options& o) {
  endpoint_parts e = parse_endpoint(o.endpoint);
  check_bucket(o.bucket);
  check_region(o.region);
  if (o.creds.access_key_id.empty() || o.creds.secret_access_key.empty()) {
    throw std::invalid_argument(std::string(who) +
                                ": creds.access_key_id and creds.secret_access_key are required");
  }
  for (char c : o.creds.access_key_id + o.creds.secret_access_key + o.creds.session_token) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      throw std::invalid_argument(std::string(who) + ": credentials must not contain control characters");
    }
  }
  if (o.timeout.count() <= 0) throw std::invalid_argument(std::string(who) + ": timeout must be positive");
  if (o.max_retry_after.count() < 0) {
    throw std::invalid_argument(std::string(who) + ": max_retry_after must be >= 0");
  }
  return e;
}

/// `key` percent-encoded for the URL path (SigV4's URI encoding: every byte but A-Z a-z 0-9 - . _ ~
/// and '/' as %XX). Throws std::invalid_argument for a key S3 URLs cannot carry unchanged.
inline std::string encode_key(const std::string& key) {
  if (key.empty() || key.size() > 1024) {
    throw std::invalid_argument(std::string(who) + ": a key must be 1 to 1024 bytes, got " +
                                std::to_string(key.size()));
  }
  std::string out;
  out.reserve(key.size() + 16);
  std::size_t seg_start = 0;
  for (std::size_t i = 0; i <= key.size(); ++i) {
    if (i == key.size() || key[i] == '/') {
      const std::string_view seg(key.data() + seg_start, i - seg_start);
      if (seg.empty() || seg == "." || seg == "..") {
        throw std::invalid_argument(
            std::string(who) + ": key '" + key +
            "' has an empty, '.' or '..' segment (URL normalisation would change it)");
      }
      seg_start = i + 1;
      if (i < key.size()) out += '/';
      continue;
    }
    const auto c = static_cast<unsigned char>(key[i]);
    if (c < 0x20 || c == 0x7f) {
      throw std::invalid_argument(std::string(who) + ": key has a control character at byte " +
                                  std::to_string(i));
    }
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      constexpr char hex[] = "0123456789ABCDEF";
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 0xF];
    }
  }
  return out;
}

/// The URL of `key` in the bucket.
inline std::string object_url(const endpoint_parts& e, const options& o, const std::string& key) {
  const std::string path = encode_key(key);
  if (o.style == addressing::virtual_host)
    return e.scheme + "://" + o.bucket + "." + e.authority + "/" + path;
  return e.scheme + "://" + e.authority + "/" + o.bucket + "/" + path;
}

}  // namespace detail
}  // namespace noclobber::s3
