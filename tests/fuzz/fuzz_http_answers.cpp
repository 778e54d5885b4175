// Fuzz target: the HTTP adapters' handling of what a server answers, end to end through libcurl:
// the etcd adapter's decoding of its JSON gateway's answers, the HTTP ETag adapter's reads and
// conditional writes, the WebDAV adapter's LOCK / UNLOCK, and the header parsing they share
// (ETag and Lock-Token, in noclobber/adapters/detail/curl_easy.hpp, reachable only this way).
//
// A server thread in this process (scripted_server.hpp) listens on a loopback port and answers each request
// with the next answer of the input's script, then closes the connection (no keep-alive guesswork); with the
// script used up it closes without answering (curl: an empty reply). Each input gets its own listener (on the
// same port), so no connection left over from one input can take another's answers. Nothing leaves the
// machine. Input: one byte picks the operation, then answers follow, each either raw bytes (u16 length +
// bytes: whatever curl makes of them) or built from fields (a status, an ETag and a Lock-Token header with
// names in any letter case, a body that is often JSON) so that most reach the adapters' decoding.
//
// Checked: no crash, leak or undefined behaviour; every result is one the adapter documents
// (a found read has a token, a failure carries the store's words, applied has no error); and for
// built answers the exact outcome against references written here: etcd's range and txn
// decoding (kvs[0].mod_revision and base64 value; succeeded / header.revision; the failure
// branch's range; gRPC codes 14, 4, 10 and 5xx), the ETag header value (trimmed, last one wins,
// W/ refused), the Lock-Token's "<...>" form.
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include <nlohmann/json.hpp>

#include "fuzz_support.hpp"
#include "noclobber/adapters/detail/base64.hpp"
#include "noclobber/adapters/etcd.hpp"
#include "noclobber/adapters/http_etag.hpp"
#include "noclobber/adapters/webdav_lock.hpp"
#include "scripted_server.hpp"

namespace {

using noclobber::read_status;
using noclobber::write_status;
using json = nlohmann::json;

// ---- reference JSON reads (nlohmann/json, written here apart from the adapter's) ---------------

// A NUL byte is never part of JSON text (nlohmann stops there as at the end of input, so
// "7\0junk" would read as 7): such an answer is not JSON.
std::optional<json> parse_json(const std::string& text) {
  if (text.find('\0') != std::string::npos) return std::nullopt;
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded()) return std::nullopt;
  return doc;
}

/// obj[key] when obj is an object that has it, else nullptr.
const json* member_of(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

/// An int64 as proto3 JSON sends it: a JSON integer, or a string of '-'? digits, within int64.
std::optional<std::int64_t> int64_of(const json& obj, const char* key) {
  const json* m = member_of(obj, key);
  if (m == nullptr) return std::nullopt;
  if (m->is_number_unsigned()) {
    const auto u = m->get<std::uint64_t>();
    return u <= static_cast<std::uint64_t>(INT64_MAX)
               ? std::optional<std::int64_t>(static_cast<std::int64_t>(u))
               : std::nullopt;
  }
  if (m->is_number_integer()) return m->get<std::int64_t>();
  if (!m->is_string()) return std::nullopt;
  const std::string& t = m->get_ref<const std::string&>();
  const bool negative = !t.empty() && t[0] == '-';
  const std::size_t first = negative ? 1 : 0;
  if (first == t.size()) return std::nullopt;
  __int128 x = 0;
  for (std::size_t j = first; j < t.size(); ++j) {
    if (t[j] < '0' || t[j] > '9') return std::nullopt;
    x = x * 10 + (t[j] - '0');
    if (x > (static_cast<__int128>(1) << 64)) return std::nullopt;  // far out of range already
  }
  if (negative) x = -x;
  if (x > INT64_MAX || x < INT64_MIN) return std::nullopt;
  return static_cast<std::int64_t>(x);
}

bool non_empty_array(const json* a) {
  return a != nullptr && a->is_array() && !a->empty();
}

using nc_fuzz::header_name;
using nc_fuzz::header_value;
using nc_fuzz::scripted_server;

// ---- answers from the input -------------------------------------------------------------------------

struct built {
  long status = 200;
  std::optional<std::string> etag;        // header value as sent
  std::optional<std::string> lock_token;  // header value as sent
  std::string body;
};

std::string body_from(nc_fuzz::reader& in) {
  // Often an etcd-shaped document whose fields come from the input, else raw text.
  const std::uint8_t how = in.u8();
  if (how % 3 != 0) return in.short_string();
  const std::string rev = in.u8() % 4 == 0 ? in.short_string() : std::to_string(in.edgy_i64());
  const std::string value =
      in.u8() % 4 == 0 ? in.short_string() : noclobber::detail::base64_encode(in.short_string());
  switch (in.u8() % 6) {
    case 0:
      return R"({"header":{"revision":")" + rev + R"("},"kvs":[{"key":"aw==","mod_revision":")" + rev +
             R"(","value":")" + value + R"("}],"count":"1"})";
    case 1:
      return R"({"header":{"revision":")" + rev + R"("},"succeeded":true,"responses":[]})";
    case 2:
      return R"({"header":{"revision":")" + rev +
             R"("},"responses":[{"response_range":{"kvs":[{"mod_revision":")" + rev + R"("}]}}]})";
    case 3:
      return R"({"header":{"revision":")" + rev + R"("},"responses":[{"response_range":{}}]})";
    case 4:
      return R"({"error":"x","code":)" + std::to_string(in.u8() % 20) + R"(,"message":")" + value + R"("})";
    default:
      return R"({"header":{},"kvs":[{"mod_revision":)" + rev + R"(,"value":)" +
             (in.flag() ? std::string("null") : std::string("\"") + value + "\"") + "}]}";
  }
}

struct script {
  std::deque<std::string> wire;
  std::vector<std::optional<built>> built_answers;  // per answer: the fields, when built
};

script script_from(nc_fuzz::reader& in) {
  script s;
  const std::size_t n = 1 + in.u8() % 4;
  for (std::size_t i = 0; i < n && !in.empty(); ++i) {
    if (in.u8() % 4 == 0) {
      const std::size_t len = in.u16() % 2048;
      s.wire.push_back(in.bytes(len));
      s.built_answers.emplace_back();
      continue;
    }
    built b;
    const std::uint8_t st = in.u8();
    static const long common[] = {200, 201, 204, 404, 410, 412, 409, 423,
                                  408, 429, 503, 500, 502, 504, 400, 405};
    b.status = st % 2 ? common[(st >> 1) % 16] : 100 + static_cast<long>(in.u16() % 500);
    if (b.status < 200) b.status += 100;  // curl treats 1xx as interim: keep to final answers here
    const std::uint8_t h = in.u8();
    std::string head = "HTTP/1.1 " + std::to_string(b.status) + " Whatever\r\nConnection: close\r\n";
    if (h & 1) {
      b.etag = header_value(in);
      head += header_name("etag", in.u8()) + ":" + *b.etag + "\r\n";
    }
    if (h & 2) {
      b.lock_token = header_value(in);
      head += header_name("lock-token", in.u8()) + ":" + *b.lock_token + "\r\n";
    }
    b.body = body_from(in);
    head += "Content-Length: " + std::to_string(b.body.size()) + "\r\n\r\n";
    s.wire.push_back(head + b.body);
    s.built_answers.emplace_back(std::move(b));
  }
  return s;
}

/// A header's value as RFC 9110 defines it: without the optional whitespace (spaces and tabs)
/// around it.
std::string trimmed(std::string v) {
  std::size_t a = 0;
  while (a < v.size() && (v[a] == ' ' || v[a] == '\t')) ++a;
  std::size_t b = v.size();
  while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t')) --b;
  return v.substr(a, b - a);
}

/// RFC 9110 strong entity tag: a quoted string (W/"..." is weak).
bool strong(const std::string& tag) {
  return tag.size() >= 2 && tag.front() == '"' && tag.back() == '"';
}

// ---- etcd reference -----------------------------------------------------------------------------------

/// The write status of a gateway error answer (a non-200, an unparsable body, or an "error" member).
std::optional<write_status> etcd_error(const built& b, bool may_write) {
  // 204 and 304 answers have no body whatever follows them (curl drops it).
  const auto doc = parse_json(b.status == 204 || b.status == 304 ? std::string() : b.body);
  if (b.status == 200 && doc && member_of(*doc, "error") == nullptr) return std::nullopt;
  const std::int64_t c = (doc ? int64_of(*doc, "code") : std::nullopt).value_or(-1);
  if (c == 14 || c == 4 || c == 10 || (c == -1 && b.status >= 500))
    return may_write ? write_status::indeterminate : write_status::transient;
  return write_status::permanent;
}

void check_etcd_read(const built& b, const noclobber::read_result<std::string, std::int64_t>& r) {
  const std::string got =
      " (got " + std::string(to_string(r.status)) + ": " + r.error.code + " " + r.error.message + ")";
  if (const auto e = etcd_error(b, false)) {
    NC_FUZZ_CHECK(
        r.status == (*e == write_status::permanent ? read_status::permanent : read_status::transient),
        "etcd read of an error answer: " + std::string(to_string(r.status)));
    return;
  }
  const auto doc = parse_json(b.body);
  const json* kvs = member_of(*doc, "kvs");
  if (!non_empty_array(kvs)) {
    NC_FUZZ_CHECK(r.status == read_status::absent, "etcd read without kvs: " + b.body + got);
    return;
  }
  const json& kv = kvs->front();
  const auto rev = int64_of(kv, "mod_revision");
  const json* v = member_of(kv, "value");
  // The gateway omits an empty value; when present it is a base64 string.
  std::optional<std::string> value;
  if (kv.is_object() && v == nullptr)
    value = "";
  else if (v != nullptr && v->is_string())
    value = noclobber::detail::base64_decode(v->get<std::string>());
  if (!rev || !value) {
    NC_FUZZ_CHECK(r.status == read_status::permanent, "etcd read of a malformed kv: " + b.body + got);
    return;
  }
  NC_FUZZ_CHECK(r.status == read_status::found && r.token == *rev && r.value == *value,
                "etcd read: " + b.body + got);
}

void check_etcd_txn(const built& b, const noclobber::write_result<std::int64_t>& w, bool is_create,
                    bool is_put) {
  const std::string got =
      " (got " + std::string(to_string(w.status)) + ": " + w.error.code + " " + w.error.message + ")";
  if (const auto e = etcd_error(b, true)) {
    NC_FUZZ_CHECK(w.status == *e, "etcd txn of an error answer" + got);
    return;
  }
  const auto doc = parse_json(b.body);
  const json* ok = member_of(*doc, "succeeded");
  if (ok != nullptr && ok->is_boolean() && ok->get<bool>()) {
    const json* h = member_of(*doc, "header");
    const auto rev = h ? int64_of(*h, "revision") : std::nullopt;
    NC_FUZZ_CHECK(w.status == write_status::applied && w.token == (is_put ? rev : std::nullopt),
                  "etcd txn succeeded: " + b.body + got);
    return;
  }
  if (is_create) {
    NC_FUZZ_CHECK(w.status == write_status::exists, "etcd create refused" + got);
    return;
  }
  const json* responses = member_of(*doc, "responses");
  const json* range = non_empty_array(responses) ? member_of(responses->front(), "response_range") : nullptr;
  if (range == nullptr || !range->is_object()) {
    NC_FUZZ_CHECK(w.status == write_status::permanent, "etcd txn without its range: " + b.body + got);
    return;
  }
  const bool found = non_empty_array(member_of(*range, "kvs"));
  NC_FUZZ_CHECK(w.status == (found ? write_status::conflict : write_status::absent),
                "etcd txn failure branch");
}

// ---- invariants every result keeps --------------------------------------------------------------------

template <class V, class T>
void check_read(const noclobber::read_result<V, T>& r) {
  NC_FUZZ_CHECK(static_cast<unsigned>(r.status) <= 3, "read status out of range");
  if (r.failed()) NC_FUZZ_CHECK(!r.error.empty(), "a failed read without the store's words");
  if (!r.failed()) NC_FUZZ_CHECK(r.error.empty(), "an error on a read that did not fail");
}
template <class T>
void check_write(const noclobber::write_result<T>& w) {
  NC_FUZZ_CHECK(static_cast<unsigned>(w.status) <= 7, "write status out of range");
  if (w.ok()) NC_FUZZ_CHECK(w.error.empty(), "an error on an applied write");
  if (!w.ok()) NC_FUZZ_CHECK(!w.token.has_value(), "a token on a write that did not apply");
}

const built* only_built(const script& s) {
  return s.built_answers.size() == 1 && s.built_answers[0] ? &*s.built_answers[0] : nullptr;
}

void run_etcd(const std::string& url, std::uint8_t op, const script& s) {
  noclobber::etcd::store st(url, std::chrono::seconds(5));
  const built* b = only_built(s);
  switch (op % 5) {
    case 0: {
      const auto r = st.read("k");
      check_read(r);
      if (b) check_etcd_read(*b, r);
      break;
    }
    case 1: {
      const auto w = st.write_if_match("k", 5, "v");
      check_write(w);
      if (b) check_etcd_txn(*b, w, false, true);
      break;
    }
    case 2: {
      const auto w = st.create_if_absent("k", "v");
      check_write(w);
      if (b) check_etcd_txn(*b, w, true, true);
      break;
    }
    case 3: {
      const auto w = st.erase_if_match("k", 5);
      check_write(w);
      if (b) check_etcd_txn(*b, w, false, false);
      break;
    }
    default:
      check_write(st.overwrite("k", "v"));
  }
}

void run_http_etag(const std::string& url, std::uint8_t op, const script& s) {
  noclobber::http_etag::store st(url + "/dav", std::chrono::seconds(5));
  const built* b = s.built_answers.empty() || !s.built_answers[0] ? nullptr : &*s.built_answers[0];
  switch (op % 5) {
    case 0: {
      const auto r = st.read("dir/k");
      check_read(r);
      if (b && only_built(s) && b->status == 200) {
        const std::string tag = b->etag ? trimmed(*b->etag) : std::string();
        if (!strong(tag))
          NC_FUZZ_CHECK(r.status == read_status::permanent, "a read without a strong ETag");
        else
          NC_FUZZ_CHECK(r.found() && r.token == tag && r.value == b->body,
                        "ETag read: token '" + r.token + "', header '" + *b->etag + "'");
      }
      break;
    }
    case 1: {
      const auto w = st.write_if_match("dir/k", "\"e1\"", "v");
      check_write(w);
      if (b && b->status >= 200 && b->status < 300) {
        const std::string tag = b->etag ? trimmed(*b->etag) : std::string();
        NC_FUZZ_CHECK(w.ok() && w.token == (strong(tag) ? std::optional<std::string>(tag) : std::nullopt),
                      "ETag write token");
      }
      break;
    }
    case 2:
      check_write(st.create_if_absent("dir/k", "v"));
      break;
    case 3:
      check_write(st.erase_if_match("dir/k", "\"e1\""));
      break;
    default:
      check_write(st.overwrite("dir/k", "v"));
  }
}

void run_webdav(const std::string& url, std::uint8_t op, const script& s) {
  noclobber::webdav_lock::store st(url + "/dav/", std::chrono::seconds(5));
  const auto l = st.lock("k", {std::chrono::seconds(30), "fuzz <owner> & co"});
  check_write(l);
  const built* b = s.built_answers.empty() || !s.built_answers[0] ? nullptr : &*s.built_answers[0];
  if (b && (b->status == 200 || b->status == 201)) {
    const std::string tok = b->lock_token ? trimmed(*b->lock_token) : std::string();
    const bool good = tok.size() >= 3 && tok.front() == '<' && tok.back() == '>';
    NC_FUZZ_CHECK(l.ok() == good, "LOCK with Lock-Token '" + tok + "'");
    if (good) NC_FUZZ_CHECK(l.token == tok && st.held("k") && *st.held("k") == tok, "held lock token");
  }
  if (l.ok() != (st.held("k") != nullptr)) NC_FUZZ_CHECK(false, "held() disagrees with LOCK's result");
  switch (op % 3) {
    case 0:
      (void)st.unlock("k");
      NC_FUZZ_CHECK(st.held("k") == nullptr, "a lock still held after unlock");
      break;
    case 1:
      check_write(st.write_if_match("k", "\"e1\"", "v"));
      break;
    default:
      check_read(st.read("k"));
  }
  NC_FUZZ_CHECK(st.stats().acquired == (l.ok() ? 1u : 0u), "lock stats");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nc_fuzz::reader in(data, size);
  const std::uint8_t op = in.u8();
  script s = script_from(in);
  scripted_server server(s.wire);  // outlives the store each run_* makes (its connections close first)
  switch (op % 3) {
    case 0:
      run_etcd(server.url(), op >> 2, s);
      break;
    case 1:
      run_http_etag(server.url(), op >> 2, s);
      break;
    default:
      run_webdav(server.url(), op >> 2, s);
  }
  return 0;
}
