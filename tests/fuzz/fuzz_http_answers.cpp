// Fuzz target: the HTTP adapters' handling of what a server answers, end to end through libcurl:
// the etcd adapter's decoding of its JSON gateway's answers, the HTTP ETag adapter's reads and
// conditional writes, the WebDAV adapter's LOCK / UNLOCK, and the header parsing they share
// (ETag and Lock-Token, in noclobber/adapters/detail/curl_easy.hpp, reachable only this way).
//
// A server thread in this process listens on a loopback port and answers each request with the
// next answer of the input's script, then closes the connection (no keep-alive guesswork); with
// the script used up it closes without answering (curl: an empty reply). Each input gets its own
// listener (on the same port), so no connection left over from one input can take another's
// answers. Nothing leaves the machine. Input: one byte picks the operation, then answers follow, each either
// raw bytes (u16 length + bytes: whatever curl makes of them) or built from fields (a status, an ETag and a
// Lock-Token header with names in any letter case, a body that is often JSON) so that most reach the
// adapters' decoding.
//
// Checked: no crash, leak or undefined behaviour; every result is one the adapter documents
// (a found read has a token, a failure carries the store's words, applied has no error); and for
// built answers the exact outcome against references written here: etcd's range and txn
// decoding (kvs[0].mod_revision and base64 value; succeeded / header.revision; the failure
// branch's range; gRPC codes 14, 4, 10 and 5xx), the ETag header value (trimmed, last one wins,
// W/ refused), the Lock-Token's "<...>" form.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "fuzz_support.hpp"
#include "noclobber/adapters/detail/json_lite.hpp"
#include "noclobber/adapters/etcd.hpp"
#include "noclobber/adapters/http_etag.hpp"
#include "noclobber/adapters/webdav_lock.hpp"

namespace {

using noclobber::read_status;
using noclobber::write_status;
namespace json = noclobber::detail::json;

// ---- the scripted server --------------------------------------------------------------------------

class scripted_server {
 public:
  explicit scripted_server(std::deque<std::string> answers) : script_(std::move(answers)) {
    // Every input's listener takes the same port (SO_REUSEADDR: the connections of earlier inputs
    // linger in TIME_WAIT on it): a fresh port per input would use up the ephemeral range within
    // minutes. The old listener is closed, so its backlog goes with it.
    static int port = 0;
    fd_ = listen_on(port);
    if (fd_ < 0 && port != 0) fd_ = listen_on(port = 0);  // the port was taken meanwhile
    if (fd_ < 0) throw std::runtime_error("fuzz_http_answers: cannot listen on loopback");
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port = port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  scripted_server(const scripted_server&) = delete;
  scripted_server& operator=(const scripted_server&) = delete;
  ~scripted_server() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }

  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  static int listen_on(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    if (fd >= 0 && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
        ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(fd, 16) == 0)
      return fd;
    if (fd >= 0) ::close(fd);
    return -1;
  }
  static bool readable(int c, int ms) {
    pollfd p{c, POLLIN, 0};
    return ::poll(&p, 1, ms) > 0;
  }
  // Reads one request: headers, then Content-Length bytes of body (so closing sends no RST).
  static void read_request(int c) {
    std::string req;
    char buf[4096];
    std::size_t need = std::string::npos;
    while ((need == std::string::npos || req.size() < need) && readable(c, 1000)) {
      const ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) return;
      req.append(buf, static_cast<std::size_t>(n));
      const auto end = req.find("\r\n\r\n");
      if (need == std::string::npos && end != std::string::npos) {
        std::size_t body = 0;
        for (std::size_t p = 0; p < end;) {
          const std::size_t eol = req.find("\r\n", p);
          std::string line = req.substr(p, eol - p);
          for (char& ch : line) ch = static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
          if (line.rfind("content-length:", 0) == 0) body = std::stoul(line.substr(15));
          p = eol + 2;
        }
        need = end + 4 + body;
      }
    }
  }
  void serve() {
    for (;;) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      read_request(c);
      std::optional<std::string> answer;
      {
        std::lock_guard<std::mutex> lk(mutex_);
        if (!script_.empty()) {
          answer = std::move(script_.front());
          script_.pop_front();
        }
      }
      if (answer) {
        for (std::size_t off = 0; off < answer->size();) {
          const ssize_t n = ::send(c, answer->data() + off, answer->size() - off, MSG_NOSIGNAL);
          if (n <= 0) break;
          off += static_cast<std::size_t>(n);
        }
      }
      ::shutdown(c, SHUT_WR);
      char drain[512];
      while (readable(c, 1000) && ::read(c, drain, sizeof drain) > 0) {
      }
      ::close(c);
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::deque<std::string> script_;
};

// ---- answers from the input -------------------------------------------------------------------------

struct built {
  long status = 200;
  std::optional<std::string> etag;        // header value as sent
  std::optional<std::string> lock_token;  // header value as sent
  std::string body;
};

/// A header value the way a server may write it (RFC 9110 field-vchar, spaces and tabs): other
/// control characters become spaces.
std::string header_value(nc_fuzz::reader& in) {
  std::string v = in.short_string();
  for (char& c : v) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) c = ' ';
  }
  return v;
}

std::string header_name(std::string_view name, std::uint8_t caps) {
  std::string n(name);
  for (std::size_t i = 0; i < n.size(); ++i)
    if ((caps >> (i % 8)) & 1) n[i] = static_cast<char>(n[i] >= 'a' && n[i] <= 'z' ? n[i] - 'a' + 'A' : n[i]);
  return n;
}

std::string body_from(nc_fuzz::reader& in) {
  // Often an etcd-shaped document whose fields come from the input, else raw text.
  const std::uint8_t how = in.u8();
  if (how % 3 != 0) return in.short_string();
  const std::string rev = in.u8() % 4 == 0 ? in.short_string() : std::to_string(in.edgy_i64());
  const std::string value = in.u8() % 4 == 0 ? in.short_string() : json::base64_encode(in.short_string());
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
  const auto doc = json::parse(b.status == 204 || b.status == 304 ? std::string() : b.body);
  if (b.status == 200 && doc && doc->find("error") == nullptr) return std::nullopt;
  const std::int64_t c = (doc ? json::find_int64(*doc, "code") : std::nullopt).value_or(-1);
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
  const auto doc = json::parse(b.body);
  const json::value* kvs = doc->find("kvs");
  if (kvs == nullptr || kvs->type != json::value::kind::array || kvs->items.empty()) {
    NC_FUZZ_CHECK(r.status == read_status::absent, "etcd read without kvs: " + b.body + got);
    return;
  }
  const json::value& kv = kvs->items.front();
  const auto rev = json::find_int64(kv, "mod_revision");
  const json::value* v = kv.find("value");
  // The gateway omits an empty value; when present it is a base64 string.
  std::optional<std::string> value;
  if (v == nullptr)
    value = "";
  else if (v->type == json::value::kind::string)
    value = json::base64_decode(v->text);
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
  const auto doc = json::parse(b.body);
  const json::value* ok = doc->find("succeeded");
  if (ok != nullptr && ok->type == json::value::kind::boolean && ok->boolean) {
    const json::value* h = doc->find("header");
    const auto rev = h ? json::find_int64(*h, "revision") : std::nullopt;
    NC_FUZZ_CHECK(w.status == write_status::applied && w.token == (is_put ? rev : std::nullopt),
                  "etcd txn succeeded: " + b.body + got);
    return;
  }
  if (is_create) {
    NC_FUZZ_CHECK(w.status == write_status::exists, "etcd create refused" + got);
    return;
  }
  const json::value* responses = doc->find("responses");
  const json::value* range = nullptr;
  if (responses && responses->type == json::value::kind::array && !responses->items.empty())
    range = responses->items.front().find("response_range");
  if (range == nullptr) {
    NC_FUZZ_CHECK(w.status == write_status::permanent, "etcd txn without its range: " + b.body + got);
    return;
  }
  const json::value* kvs = range->find("kvs");
  const bool found = kvs && kvs->type == json::value::kind::array && !kvs->items.empty();
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
