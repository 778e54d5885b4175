// Fuzz target: the S3 adapter's parsers and its reading of answers (noclobber/adapters/s3*.hpp).
//
// One byte picks a mode:
//   0  key encoding (SigV4 URI encoding of the object key) and the object URL, both addressing
//      styles: accepted exactly when a reference predicate says so (1-1024 bytes, no control
//      character, no empty / "." / ".." segment); the encoding percent-decodes back to the key,
//      is canonical (only bytes outside A-Z a-z 0-9 - . _ ~ / are %XX, upper-case hex), and
//      libcurl's own URL parser keeps the path unchanged (no normalisation).
//   1  XML error bodies: xml_field on arbitrary bytes (never longer than its input, "" without
//      the element), and a round trip: any text, XML-escaped (entities chosen by the input) and
//      put in <Code> between other markup, comes back unchanged.
//   2  Retry-After: delta-seconds against a reference (saturating at 999,999,999), IMF-fixdates
//      built from fields against a days-from-civil reference, and arbitrary text (no UB; never a
//      negative wait).
//   3  redaction: no secret and no session token is left visible in the text between markers.
//   4  option validation: endpoint, bucket and region accepted exactly when reference predicates
//      say so; no exception message quotes the secret key or the session token.
//   5  the store end to end through libcurl against a scripted loopback server
//      (scripted_server.hpp): reads, conditional reads and every write kind, against the answer
//      table of s3/answers.hpp written out here (status, the XML <Code>, the ETag header trimmed,
//      Retry-After over options::max_retry_after); the request line carries the encoded key, every
//      request is SigV4-signed and carries no secret; no store_error or probe report contains the
//      secret key or the session token, even when the server echoes them.
#include <curl/curl.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <deque>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "noclobber/adapters/s3.hpp"
#include "scripted_server.hpp"

namespace {

namespace s3 = noclobber::s3;
namespace s3d = noclobber::s3::detail;
using noclobber::read_status;
using noclobber::write_status;

constexpr std::string_view secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY";
constexpr std::string_view token = "FwoGZXIvYXdzEFUAEXAMPLESESSIONTOKEN";
constexpr std::string_view marker = "[redacted]";

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

// ---- references ---------------------------------------------------------------------------------

/// Whether S3 URLs carry `key` unchanged (options.hpp's rule, written from its overview).
bool key_acceptable(std::string_view key) {
  if (key.empty() || key.size() > 1024) return false;
  for (char c : key) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  std::size_t from = 0;
  for (;;) {
    const std::size_t slash = key.find('/', from);
    const std::string_view seg = key.substr(from, slash == std::string_view::npos ? key.npos : slash - from);
    if (seg.empty() || seg == "." || seg == "..") return false;
    if (slash == std::string_view::npos) return true;
    from = slash + 1;
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // lower-case hex is not canonical
}

/// `encoded` decoded, when it is the canonical encoding of some key; nullopt otherwise.
std::optional<std::string> canonical_decode(std::string_view encoded) {
  std::string out;
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    const auto c = static_cast<unsigned char>(encoded[i]);
    if (c == '%') {
      if (i + 2 >= encoded.size()) return std::nullopt;
      const int hi = hex_value(encoded[i + 1]), lo = hex_value(encoded[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      const auto byte = static_cast<unsigned char>(hi * 16 + lo);
      if (unreserved(byte) || byte == '/') return std::nullopt;  // needlessly encoded
      out += static_cast<char>(byte);
      i += 2;
    } else if (unreserved(c) || c == '/') {
      out += static_cast<char>(c);
    } else {
      return std::nullopt;
    }
  }
  return out;
}

bool bucket_acceptable(std::string_view b) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (b.size() < 3 || b.size() > 63 || !alnum(b.front()) || !alnum(b.back())) return false;
  for (char c : b)
    if (!alnum(c) && c != '.' && c != '-') return false;
  return true;
}

bool region_acceptable(std::string_view r) {
  if (r.empty() || r.size() > 64) return false;
  for (char c : r)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

bool endpoint_acceptable(std::string_view e) {
  std::string_view rest;
  if (e.starts_with("http://")) {
    rest = e.substr(7);
  } else if (e.starts_with("https://")) {
    rest = e.substr(8);
  } else {
    return false;
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  return !rest.empty() && rest.find_first_of("/?#@") == std::string_view::npos;
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

constexpr const char* month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr const char* day_names[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};

/// An IMF-fixdate built from the input's fields, and the time it names.
struct built_date {
  std::string text;
  std::int64_t at;
};

built_date imf_date(nc_fuzz::reader& in) {
  const int year = 1900 + static_cast<int>(in.u16() % 8100);
  const unsigned month = 1 + in.u8() % 12;
  static constexpr unsigned month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  const unsigned days = month == 2 && !leap ? 28 : month_days[month - 1];
  const unsigned day = 1 + in.u8() % days;
  const int hour = in.u8() % 24, minute = in.u8() % 60, sec = in.u8() % 60;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02u %s %04d %02d:%02d:%02d GMT", day_names[in.u8() % 7], day,
                month_names[month - 1], year, hour, minute, sec);
  return {buf, days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + sec};
}

/// What parse_retry_after must answer for delta-seconds.
std::optional<std::int64_t> delta_seconds(std::string_view v) {
  if (v.empty() || v.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  if (v.size() > 9) return 999'999'999;
  std::int64_t n = 0;
  for (char c : v) n = n * 10 + (c - '0');
  return n;
}

std::string xml_escape(std::string_view s, nc_fuzz::reader& in) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += in.flag() ? "&gt;" : ">";  // '>' may stand as it is in XML text
        break;
      case '"':
        out += in.flag() ? "&quot;" : "\"";
        break;
      case '\'':
        out += in.flag() ? "&apos;" : "'";
        break;
      default:
        out += c;
    }
  }
  return out;
}

/// No secret (or session token) is visible outside the "[redacted]" markers of `text`.
void check_no_secret(std::string_view text, std::string_view s, std::string_view t, const char* where) {
  std::size_t from = 0;
  for (;;) {
    const std::size_t at = text.find(marker, from);
    const std::string_view piece = text.substr(from, at == std::string_view::npos ? text.npos : at - from);
    NC_FUZZ_CHECK(s.empty() || piece.find(s) == std::string_view::npos,
                  std::string(where) + ": the secret key is visible in: " + std::string(text));
    NC_FUZZ_CHECK(t.empty() || piece.find(t) == std::string_view::npos,
                  std::string(where) + ": the session token is visible in: " + std::string(text));
    if (at == std::string_view::npos) return;
    from = at + marker.size();
  }
}

// ---- modes 0 to 4: the pure functions -------------------------------------------------------------

void fuzz_key(nc_fuzz::reader& in) {
  const bool virtual_host = in.flag();
  const std::string key = in.rest();
  std::optional<std::string> encoded;
  try {
    encoded = s3d::encode_key(key);
  } catch (const std::invalid_argument&) {
  }
  NC_FUZZ_CHECK(encoded.has_value() == key_acceptable(key),
                std::string("encode_key ") + (encoded ? "accepted" : "refused") + " '" + key + "'");
  if (!encoded) return;
  const std::optional<std::string> back = canonical_decode(*encoded);
  NC_FUZZ_CHECK(back.has_value(), "not a canonical SigV4 encoding: " + *encoded);
  NC_FUZZ_CHECK(*back == key, "'" + *encoded + "' decodes to '" + *back + "', not '" + key + "'");

  s3::options o;
  o.endpoint = "http://127.0.0.1:9000";
  o.bucket = "fuzz-bucket";
  o.style = virtual_host ? s3::addressing::virtual_host : s3::addressing::path;
  const std::string url = s3d::object_url(s3d::parse_endpoint(o.endpoint), o, key);
  const std::string path = (virtual_host ? "/" : "/fuzz-bucket/") + *encoded;
  NC_FUZZ_CHECK(url == (virtual_host ? "http://fuzz-bucket.127.0.0.1:9000" : "http://127.0.0.1:9000") + path,
                "object_url: " + url);
  CURLU* u = curl_url();
  NC_FUZZ_CHECK(u != nullptr, "curl_url");
  const CURLUcode set = curl_url_set(u, CURLUPART_URL, url.c_str(), 0);
  char* got = nullptr;
  if (set == CURLUE_OK) curl_url_get(u, CURLUPART_PATH, &got, 0);
  const std::string curl_path = got ? got : "";
  curl_free(got);
  curl_url_cleanup(u);
  NC_FUZZ_CHECK(set == CURLUE_OK, "libcurl refuses the URL " + url);
  NC_FUZZ_CHECK(curl_path == path, "libcurl changes the path " + path + " to " + curl_path);
}

void fuzz_xml(nc_fuzz::reader& in) {
  static constexpr std::string_view names[] = {"Code", "Message", "RequestId", "Error", "C"};
  const std::string_view name = names[in.u8() % 5];
  if (in.flag()) {  // arbitrary bytes
    const std::string body = in.rest();
    const std::string got = s3d::xml_field(body, name);
    NC_FUZZ_CHECK(got.size() <= body.size(), "xml_field grew its input");
    const std::string open = "<" + std::string(name) + ">";
    NC_FUZZ_CHECK(body.find(open) != std::string::npos || got.empty(), "a field without its element: " + got);
    return;
  }
  const std::string before = in.short_string(), after = in.short_string();
  const std::string text = in.short_string();
  const std::string open = "<" + std::string(name) + ">";
  if (before.find(open) != std::string::npos) return;  // the first element would be another one
  const std::string body = before + open + xml_escape(text, in) + "</" + std::string(name) + ">" + after;
  const std::string got = s3d::xml_field(body, name);
  NC_FUZZ_CHECK(got == text, "xml_field round trip: '" + text + "' came back as '" + got + "' from " + body);
}

void fuzz_retry_after(nc_fuzz::reader& in) {
  const std::time_t now = static_cast<std::time_t>(in.u64() % (std::uint64_t{1} << 40));
  switch (in.u8() % 3) {
    case 0: {
      const built_date d = imf_date(in);
      const auto got = s3d::parse_retry_after(d.text, now);
      NC_FUZZ_CHECK(got.has_value(), "an IMF-fixdate refused: " + d.text);
      const std::int64_t want = d.at > now ? d.at - now : 0;
      NC_FUZZ_CHECK(got->count() == want, d.text + " at " + std::to_string(now) + ": " +
                                              std::to_string(got->count()) + " s, want " +
                                              std::to_string(want));
      return;
    }
    case 1: {
      const std::string digits = std::to_string(in.u64()).substr(0, 1 + in.u8() % 20);
      const auto got = s3d::parse_retry_after(digits, now);
      NC_FUZZ_CHECK(got && got->count() == *delta_seconds(digits), "delta-seconds " + digits);
      return;
    }
    default: {
      const std::string text = in.rest();
      const auto got = s3d::parse_retry_after(text, now);
      NC_FUZZ_CHECK(!got || got->count() >= 0, "a negative wait for '" + text + "'");
      if (const auto want = delta_seconds(text)) NC_FUZZ_CHECK(got && got->count() == *want, "delta " + text);
    }
  }
}

void fuzz_redact(nc_fuzz::reader& in) {
  s3::credentials c;
  c.access_key_id = "AKIDFUZZ";
  c.secret_access_key = in.short_string();
  c.session_token = in.flag() ? in.short_string() : std::string();
  // The text: pieces of the input and copies of the secrets, in the order the input says.
  std::string text;
  while (!in.empty()) {
    switch (in.u8() % 4) {
      case 0:
        text += c.secret_access_key;
        break;
      case 1:
        text += c.session_token;
        break;
      default:
        text += in.short_string();
    }
  }
  const std::string out = s3d::redact(text, c);
  check_no_secret(out, c.secret_access_key, c.session_token, "redact");
}

void fuzz_options(nc_fuzz::reader& in) {
  s3::options o;
  o.endpoint = in.flag() ? "http://" + in.short_string() : in.short_string();
  o.bucket = in.short_string();
  o.region = in.flag() ? std::string("us-east-1") : in.short_string();
  o.creds.access_key_id = in.flag() ? std::string("AKIDFUZZ") : in.short_string();
  // A secret is the fixed one, or the fixed one with input bytes after it: long enough that only a
  // leak (not a coincidence with a message's own words) puts it in a message.
  o.creds.secret_access_key = std::string(secret) + (in.flag() ? std::string() : in.short_string());
  if (in.u8() % 8 == 0) o.creds.secret_access_key = in.short_string();  // maybe empty or with control bytes
  o.creds.session_token = in.flag() ? std::string(token) : std::string();
  if (in.flag()) o.endpoint += std::string(secret);  // a credential where none belongs
  bool ok = true;
  try {
    (void)s3d::validate(o);
  } catch (const std::invalid_argument& e) {
    ok = false;
    const std::string what = e.what();
    if (o.creds.secret_access_key.starts_with(secret))
      check_no_secret(what, o.creds.secret_access_key, {}, "validate");
    check_no_secret(what, {}, o.creds.session_token, "validate");
  }
  bool creds_ok = !o.creds.access_key_id.empty() && !o.creds.secret_access_key.empty();
  for (char ch : o.creds.access_key_id + o.creds.secret_access_key + o.creds.session_token) {
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) creds_ok = false;
  }
  const bool want = endpoint_acceptable(o.endpoint) && bucket_acceptable(o.bucket) &&
                    region_acceptable(o.region) && creds_ok;
  NC_FUZZ_CHECK(ok == want, std::string("validate ") + (ok ? "accepted" : "refused") + " endpoint '" +
                                o.endpoint + "' bucket '" + o.bucket + "' region '" + o.region + "'");
}

// ---- mode 5: the store against a scripted server --------------------------------------------------

/// One answer built from the input's fields (or raw bytes), and what the reference needs of it.
struct built_answer {
  bool raw = false;
  long status = 0;
  std::optional<std::string> etag;  // the adapter's view: the last ETag header, trimmed
  std::string code;                 // <Code> of the body, when built
  std::string body;
  bool too_long = false;  // a Retry-After the store must not wait out (max_retry_after is 0)
  std::string wire;
};

std::string trimmed(std::string v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.erase(0, 1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
  return v;
}

built_answer answer_from(nc_fuzz::reader& in) {
  built_answer b;
  if (in.u8() % 8 == 0) {
    b.raw = true;
    b.wire = in.bytes(in.u16() % 1024);
    return b;
  }
  static const long common[] = {200, 201, 204, 304, 404, 409, 412, 408,
                                429, 503, 500, 502, 504, 400, 403, 405};
  const std::uint8_t st = in.u8();
  b.status = st % 4 != 0 ? common[(st >> 2) % 16] : 200 + static_cast<long>(in.u16() % 400);
  std::string head = "HTTP/1.1 " + std::to_string(b.status) + " Whatever\r\nConnection: close\r\n";
  const std::uint8_t h = in.u8();
  for (int i = 0; i < ((h & 3) == 3 ? 2 : (h & 1)); ++i) {  // none, one or two ETag headers
    const std::string v =
        in.flag() ? "\"" + in.short_string().substr(0, 40) + "\"" : nc_fuzz::header_value(in);
    std::string safe = v;
    for (char& c : safe)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) c = ' ';
    head += nc_fuzz::header_name("etag", in.u8()) + ": " + safe + "\r\n";
    if (!b.etag) b.etag = trimmed(safe);  // the adapter reads the first ETag header
  }
  if (h & 4) {
    std::string retry;
    switch (in.u8() % 4) {
      case 0:
        retry = std::to_string(in.u8() % 3);  // 0 waits nothing; 1 and 2 are over the limit
        break;
      case 1:
        retry = "Sun, 06 Nov 1994 08:49:37 GMT";  // in the past: no wait
        break;
      case 2:
        retry = "Fri, 31 Dec 9999 23:59:59 GMT";
        break;
      default:
        retry = "soon";
    }
    head += nc_fuzz::header_name("retry-after", in.u8()) + ": " + retry + "\r\n";
    const bool waits = retry == "1" || retry == "2" || retry.starts_with("Fri");
    b.too_long = waits && noclobber::detail::http::retryable(b.status);
  }
  if (h & 8) head += "x-amz-request-id: " + nc_fuzz::header_value(in) + "\r\n";
  if (h & 16) {
    static const char* codes[] = {
        "NoSuchKey",    "NoSuchBucket",     "PreconditionFailed",         "SlowDown",
        "AccessDenied", "OperationAborted", "ConditionalRequestConflict", "SignatureDoesNotMatch"};
    b.code = in.flag() ? std::string(codes[in.u8() % 8]) : in.short_string();
    if (b.code.find('<') != std::string::npos || b.code.find('&') != std::string::npos) b.code.clear();
    std::string message = in.short_string();
    if (in.flag()) message += " canonical request with " + std::string(secret) + " and " + std::string(token);
    b.body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>" + b.code + "</Code><Message>" +
             message + "</Message><RequestId>R1</RequestId></Error>";
  } else if (h & 32) {
    b.body = in.short_string();
  }
  if (b.status == 204 || b.status == 304) {  // no body may follow these
    b.body.clear();
    b.code.clear();
  }
  head += "Content-Length: " + std::to_string(b.body.size()) + "\r\n\r\n";
  b.wire = head + b.body;
  return b;
}

bool strong(const std::optional<std::string>& e) {
  return e && e->size() >= 2 && e->front() == '"' && e->back() == '"';
}

/// What a read must answer for a built answer (s3/answers.hpp's table).
read_status expected_read(const built_answer& b) {
  if (b.status == 200) return strong(b.etag) ? read_status::found : read_status::permanent;
  if (b.status == 404 && b.code != "NoSuchBucket") return read_status::absent;
  if (b.too_long) return read_status::permanent;
  return b.status == 408 || b.status == 429 || b.status >= 500 ? read_status::transient
                                                               : read_status::permanent;
}

write_status expected_write(const built_answer& b, s3d::write_kind kind) {
  if (b.status >= 200 && b.status < 300) return write_status::applied;
  if (b.status == 412 && kind != s3d::write_kind::overwrite)
    return kind == s3d::write_kind::create ? write_status::exists : write_status::conflict;
  if (b.status == 404 && b.code != "NoSuchBucket" &&
      (kind == s3d::write_kind::update || kind == s3d::write_kind::erase))
    return write_status::absent;
  if (b.status == 409 && (b.code == "ConditionalRequestConflict" || b.code == "OperationAborted"))
    return write_status::transient_restart;
  if (b.status == 408 || b.status == 429 || b.status == 503)
    return b.too_long ? write_status::permanent : write_status::transient;
  if (b.status == 500 || b.status == 502 || b.status == 504) return write_status::indeterminate;
  return write_status::permanent;
}

std::string key_from(nc_fuzz::reader& in) {
  switch (in.u8() % 4) {
    case 0: {
      std::string key = in.short_string();  // maybe not a key at all
      // A key is the user's data, sent as it is: one that holds the secret would put it in the
      // request line, which is no leak of the adapter's.
      if (key.find(secret) != std::string::npos || key.find(token) != std::string::npos) key = "k0";
      return key;
    }
    case 1:
      return "dir/k " + std::to_string(in.u8()) + "+%~é";
    default:
      return "k" + std::to_string(in.u8() % 4);
  }
}

void fuzz_store(nc_fuzz::reader& in) {
  enum class op : unsigned char { read, read_if_changed, update, create, erase, overwrite, probe };
  struct step {
    op what;
    std::string key;
    std::size_t answers;  // how many answers of the script it may take
  };
  std::vector<step> steps;
  std::vector<built_answer> answers;
  std::deque<std::string> wire;
  const std::size_t n = 1 + in.u8() % 4;
  for (std::size_t i = 0; i < n && !in.empty(); ++i) {
    const auto what = static_cast<op>(in.u8() % 7);
    const std::size_t takes = what == op::probe ? 1 + in.u8() % 9 : 1;
    steps.push_back({what, key_from(in), takes});
    for (std::size_t a = 0; a < takes; ++a) {
      answers.push_back(answer_from(in));
      wire.push_back(answers.back().wire);
    }
  }
  s3::options o;
  nc_fuzz::scripted_server server(wire);
  o.endpoint = server.url();
  o.bucket = "fuzz-bucket";
  o.creds = {"AKIDFUZZ", std::string(secret), in.flag() ? std::string(token) : std::string()};
  o.check = s3::enforcement::trust;  // the probe runs only as its own step (its result is per process)
  o.if_match_form = in.flag() ? s3::etag_form::unquoted : s3::etag_form::quoted;
  o.timeout = std::chrono::seconds(10);
  o.max_retry_after = std::chrono::seconds(0);
  s3::store store(o);

  std::size_t next = 0;  // the next answer of the script
  // Whether answers[next] is the answer the next request gets: a probe takes as many as it
  // needs, and after a raw answer libcurl may have kept a connection the server closed.
  bool aligned = true;
  auto words = [&](const noclobber::store_error& e, const char* what) {
    check_no_secret(e.code, secret, o.creds.session_token, what);
    check_no_secret(e.message, secret, o.creds.session_token, what);
  };
  for (const step& s : steps) {
    const built_answer* b = s.what == op::probe || !aligned ? nullptr : &answers[next];
    next += s.answers;
    if (b != nullptr && b->raw) {
      aligned = false;
      b = nullptr;
    }
    const bool valid_key = key_acceptable(s.key);
    try {
      switch (s.what) {
        case op::read:
        case op::read_if_changed: {
          noclobber::read_result<std::string, std::string> r;
          if (s.what == op::read) {
            r = store.read(s.key);
          } else {
            auto c = store.read_if_changed(s.key, "\"etag-0\"");
            NC_FUZZ_CHECK(b == nullptr || c.unchanged == (b->status == 304), "304 and unchanged disagree");
            if (c.unchanged) break;
            r = std::move(c.fresh);
          }
          if (r.status != read_status::found && r.status != read_status::absent) words(r.error, "read");
          if (r.status == read_status::found) NC_FUZZ_CHECK(strong(r.token), "found without a strong ETag");
          if (b == nullptr) break;
          NC_FUZZ_CHECK(r.status == expected_read(*b), "read of status " + std::to_string(b->status) +
                                                           " code '" + b->code + "': got " +
                                                           std::to_string(int(r.status)) + ", want " +
                                                           std::to_string(int(expected_read(*b))));
          if (r.status == read_status::found) {
            NC_FUZZ_CHECK(r.value == b->body && r.token == *b->etag, "found: the wrong body or ETag");
          } else if (r.status != read_status::absent && !b->code.empty()) {
            NC_FUZZ_CHECK(r.error.code == b->code || r.error.code == "NoStrongETag" ||
                              r.error.code.find("[redacted]") != std::string::npos,
                          "error code " + r.error.code + ", the server said " + b->code);
          }
          break;
        }
        case op::probe: {
          const s3::enforcement_report r = store.probe();
          check_no_secret(r.steps, secret, o.creds.session_token, "probe steps");
          if (r.refused) words(*r.refused, "probe refused");
          NC_FUZZ_CHECK(!r.writes_enforced() || (r.complete && !r.refused),
                        "enforced by an incomplete probe");
          aligned = false;
          continue;
        }
        default: {
          static constexpr s3d::write_kind kinds[] = {s3d::write_kind::update, s3d::write_kind::create,
                                                      s3d::write_kind::erase, s3d::write_kind::overwrite};
          const s3d::write_kind kind = kinds[static_cast<int>(s.what) - static_cast<int>(op::update)];
          noclobber::write_result<std::string> w;
          switch (kind) {
            case s3d::write_kind::update:
              w = store.write_if_match(s.key, "\"etag-0\"", "v");
              break;
            case s3d::write_kind::create:
              w = store.create_if_absent(s.key, "v");
              break;
            case s3d::write_kind::erase:
              w = store.erase_if_match(s.key, "\"etag-0\"");
              break;
            case s3d::write_kind::overwrite:
              w = store.overwrite(s.key, "v");
              break;
          }
          if (w.status != write_status::applied) words(w.error, "write");
          if (b == nullptr) break;
          NC_FUZZ_CHECK(w.status == expected_write(*b, kind),
                        "write kind " + std::to_string(int(kind)) + " of status " +
                            std::to_string(b->status) + " code '" + b->code + "': got " +
                            std::to_string(int(w.status)) + ", want " +
                            std::to_string(int(expected_write(*b, kind))));
          if (w.status == write_status::applied) {
            NC_FUZZ_CHECK(w.token.has_value() == strong(b->etag) && (!w.token || *w.token == *b->etag),
                          "applied: the wrong ETag");
          }
        }
      }
      NC_FUZZ_CHECK(valid_key, "a request for a key S3 URLs cannot carry: " + s.key);
    } catch (const std::invalid_argument& e) {
      NC_FUZZ_CHECK(!valid_key, std::string("refused a valid key: ") + e.what());
      check_no_secret(e.what(), secret, o.creds.session_token, "invalid_argument");
      next -= s.answers;  // nothing was sent: the answer is the next step's
    }
  }

  // What the server saw: SigV4-signed requests, each for a canonically encoded valid key, and
  // never the secret key.
  for (const std::string& r : server.requests()) {
    check_no_secret(r, secret, {}, "a request");
    if (r.find("\r\n\r\n") == std::string::npos) continue;  // cut short
    NC_FUZZ_CHECK(r.find("\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDFUZZ/") != std::string::npos,
                  "an unsigned request: " + r);
    NC_FUZZ_CHECK(r.find("\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n") != std::string::npos,
                  "no x-amz-content-sha256: " + r);
    const std::size_t sp1 = r.find(' '), sp2 = r.find(' ', sp1 + 1);
    const std::string target = r.substr(sp1 + 1, sp2 - sp1 - 1);
    NC_FUZZ_CHECK(target.starts_with("/fuzz-bucket/"), "request target " + target);
    const auto key = canonical_decode(std::string_view(target).substr(13));
    NC_FUZZ_CHECK(key && key_acceptable(*key), "request target " + target + " is no encoded key");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nc_fuzz::reader in(data, size);
  switch (in.u8() % 6) {
    case 0:
      fuzz_key(in);
      break;
    case 1:
      fuzz_xml(in);
      break;
    case 2:
      fuzz_retry_after(in);
      break;
    case 3:
      fuzz_redact(in);
      break;
    case 4:
      fuzz_options(in);
      break;
    default:
      fuzz_store(in);
  }
  return 0;
}
