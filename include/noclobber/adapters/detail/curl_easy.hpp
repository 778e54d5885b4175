// noclobber/adapters/detail/curl_easy.hpp — the small slice of libcurl the etcd, HTTP ETag,
// WebDAV lock and S3 adapters need: one easy handle (one keep-alive connection), a request, a response
// with its status, body, ETag and Lock-Token headers, and what a transport failure means for a
// retry loop.
//
// libcurl's silent re-send: when a request goes out on a reused keep-alive connection and the
// connection dies before any byte of an answer arrives ("Connection died, retrying a fresh
// connect"), libcurl sends the whole request again on a new connection, without telling the
// caller. The first copy may have been delivered and applied (a server killed after committing,
// a connection reset after the request was read), so for a request that can change state the
// re-send is a second write, and its answer ("couldn't connect", 412) describes the copy, not
// the write. `easy` (and every adapter that drives its own handle, through `send_guard`)
// therefore never lets libcurl re-send a request other than GET / HEAD:
// libcurl >= 7.80 asks CURLOPT_PREREQFUNCTION before every copy it sends, and the second ask is
// refused (the request fails, marked `resend_refused`); an older libcurl sends such requests on a
// fresh connection that is never reused, so there is nothing to re-send. The invariant
// classify_transport relies on: `sent` is false only when no byte of the request can have left.
//
// TLS (https:// URLs): `tls_files` names the CA that signed the server's certificate and, for a
// server that requires one, the client certificate and key; `easy` applies them to every request.
// A TLS refusal is permanent (`tls_refused`): we refuse the server's certificate (curl 60), a
// file cannot be used (58, 77), or the server refused our certificate during the handshake (35
// or 56 with OpenSSL's "alert bad certificate", "alert certificate required", "alert unknown ca"
// …: OpenSSL's words, never translated). With TLS 1.3 the server checks the client certificate
// after the client has finished its handshake; a server that then closes the connection can
// leave only "connection reset" / "getpeername() failed" (curl 55) behind, which cannot be told
// from a network failure and stays transient (indeterminate for a write). `easy` speaks HTTP/1.1
// over https too (libcurl would negotiate HTTP/2 by ALPN): one request per connection at a time,
// the model the re-send rule and the failure classes above were worked out and tested for.
//
// Thread safety: an `easy` is used by one thread at a time. curl_global_init runs once, under
// std::call_once, before the first handle is made.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "noclobber/adapters/detail/redact.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber {

/// TLS files for https:// endpoints (PEM). Every member optional: no ca_file means the system's
/// CA store; a cert_file is sent only to a server that asks for a client certificate. The paths
/// may appear in error messages (they are not secrets); no file's contents ever does.
struct tls_files {
  std::string ca_file;    // the CA (bundle) that signed the server's certificate
  std::string cert_file;  // the client certificate (may hold its key too)
  std::string key_file;   // the client certificate's private key, unencrypted; needs cert_file

  [[nodiscard]] bool empty() const noexcept {
    return ca_file.empty() && cert_file.empty() && key_file.empty();
  }
};

}  // namespace noclobber

namespace noclobber::detail::curl {

/// std::invalid_argument naming `who` for files that cannot go together (a key without a
/// certificate).
inline void check_tls_files(const tls_files& tls, const char* who) {
  if (!tls.key_file.empty() && tls.cert_file.empty())
    throw std::invalid_argument(std::string(who) + ": tls_files has a key_file without a cert_file");
}

/// Sets `tls` on a handle (after curl_easy_reset, before curl_easy_perform). The strings must
/// outlive the transfer.
inline void apply_tls(CURL* h, const tls_files& tls) noexcept {
  if (!tls.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, tls.ca_file.c_str());
  if (!tls.cert_file.empty()) curl_easy_setopt(h, CURLOPT_SSLCERT, tls.cert_file.c_str());
  if (!tls.key_file.empty()) curl_easy_setopt(h, CURLOPT_SSLKEY, tls.key_file.c_str());
}

inline void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw std::runtime_error("noclobber: curl_global_init failed");
  });
}

struct response {
  CURLcode code = CURLE_OK;  // transport result; CURLE_OK when an HTTP answer came back
  long status = 0;           // HTTP status
  std::string body;
  std::string etag;        // the ETag header, verbatim (quotes and any W/ prefix kept)
  std::string lock_token;  // the Lock-Token header (WebDAV LOCK), verbatim: <opaquelocktoken:…>
  std::string error;       // curl's words when code != CURLE_OK
  /// The request may have left this process: libcurl got as far as sending it on a connection
  /// (once or more). false only when it failed before (resolving, connecting, a TLS handshake).
  bool sent = false;
  /// The connection died after the request went out and libcurl wanted to send it again on a new
  /// connection; the re-send was refused (code is then CURLE_ABORTED_BY_CALLBACK).
  bool resend_refused = false;

  [[nodiscard]] bool transport_ok() const noexcept { return code == CURLE_OK; }
};

/// Whether a transport failure is a TLS refusal that no retry changes: we refuse the server's
/// certificate, a TLS file cannot be used, or the server refused ours with an alert (see the
/// overview; a bare reset is not one of these).
[[nodiscard]] inline bool tls_refused(const response& r) noexcept {
  switch (r.code) {
    case CURLE_PEER_FAILED_VERIFICATION:  // 60: the server's certificate is not one we trust
    case CURLE_SSL_CERTPROBLEM:           // 58: our client certificate or key cannot be used
    case CURLE_SSL_CACERT_BADFILE:        // 77: the CA file cannot be read
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
      return true;
    case CURLE_SSL_CONNECT_ERROR:  // 35: the handshake failed (TLS 1.2: the server's alert)
    case CURLE_RECV_ERROR:         // 56: TLS 1.3: the server's alert after our handshake
      for (const char* alert :
           {"alert bad certificate", "alert certificate required", "alert unknown ca",
            "alert certificate unknown", "alert certificate revoked", "alert certificate expired",
            "alert unsupported certificate", "alert access denied"}) {
        if (r.error.find(alert) != std::string::npos) return true;
      }
      return false;
    default:
      return false;
  }
}

/// What a transport failure means, by "could the request have left?". `may_write`: the request
/// could change state on the server. A malformed request -> permanent; nothing sent (cannot
/// resolve or connect, a connect timeout) -> transient; sent but no answer (a reset, a timeout,
/// an empty reply, a refused re-send — also when libcurl's own re-send then could not connect)
/// -> indeterminate for a write, transient for a read. A TLS refusal (tls_refused) -> permanent:
/// the server refused the connection before it read any request.
[[nodiscard]] inline write_status classify_transport(const response& r, bool may_write) noexcept {
  if (tls_refused(r)) return write_status::permanent;
  switch (r.code) {
    case CURLE_OK:
      return write_status::applied;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_FUNCTION_ARGUMENT:
      return write_status::permanent;
    default:
      if (!r.sent) return write_status::transient;
      return may_write ? write_status::indeterminate : write_status::transient;
  }
}

/// Whether libcurl may send a request with this method twice by itself: only for methods that
/// change nothing on the server.
[[nodiscard]] inline bool resend_allowed(std::string_view method) noexcept {
  return method == "GET" || method == "HEAD";
}

/// The re-send rule for one request on one handle (see the overview), for `easy` and for any
/// adapter that drives its own handle (adapters/s3/connection.hpp): attach() before
/// curl_easy_perform, finish() after it. finish() records `sent` and `resend_refused` in the
/// response and, for a failure, words that say what a re-send means. Lives on the caller's stack
/// until curl_easy_perform has returned (libcurl holds a pointer to it).
class send_guard {
 public:
  explicit send_guard(std::string_view method) noexcept : resend_allowed_(resend_allowed(method)) {}
  send_guard(const send_guard&) = delete;
  send_guard& operator=(const send_guard&) = delete;

  void attach(CURL* h) noexcept { guard_resend(h); }

  /// After curl_easy_perform set `out.code`: `sent`, `resend_refused`, and `out.error` from
  /// `errbuf` (libcurl's CURLOPT_ERRORBUFFER) when the transfer failed.
  void finish(response& out, const char* errbuf) const {
    note_copies(out);
    if (out.resend_refused) {
      out.error =
          "the connection died after the request was sent, before any answer (libcurl's "
          "automatic re-send refused: the first copy may have been applied)";
    } else if (out.code != CURLE_OK) {
      out.error = errbuf != nullptr && errbuf[0] ? errbuf : curl_easy_strerror(out.code);
      if (out.sent && out.code == CURLE_COULDNT_CONNECT) {
        out.error +=
            " (libcurl's re-send, after the connection died with the request sent: the first "
            "copy may have been applied)";
      }
    }
  }

 private:
// NOCLOBBER_CURL_NO_PREREQ selects the fallback on any libcurl (the tests build both).
#if LIBCURL_VERSION_NUM >= 0x075000 && !defined(NOCLOBBER_CURL_NO_PREREQ)  // 7.80.0: CURLOPT_PREREQFUNCTION
  // Called by libcurl once per copy of the request, after the connection is up, before sending.
  static int on_prereq(void* user, char*, char*, int, int) {
    auto* me = static_cast<send_guard*>(user);
    ++me->asked_;
    return me->asked_ > 1 && !me->resend_allowed_ ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
  }
  void guard_resend(CURL* h) noexcept {
    curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, &send_guard::on_prereq);
    curl_easy_setopt(h, CURLOPT_PREREQDATA, this);
  }
  void note_copies(response& out) const noexcept {
    out.sent = asked_ > 0;
    out.resend_refused = asked_ > 1 && !resend_allowed_;
  }
  int asked_ = 0;  // copies of the request libcurl got ready to send
#else
  // No pre-request hook: a request libcurl must not re-send goes on a fresh connection that is
  // closed afterwards (libcurl re-sends only on a reused one), and `sent` is false only for the
  // failures that happen before a connection exists.
  void guard_resend(CURL* h) noexcept {
    if (resend_allowed_) return;
    curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
  }
  void note_copies(response& out) const noexcept {
    out.sent = !(out.code == CURLE_COULDNT_CONNECT || out.code == CURLE_COULDNT_RESOLVE_HOST ||
                 out.code == CURLE_COULDNT_RESOLVE_PROXY);
  }
#endif

  bool resend_allowed_;
};

class easy {
 public:
  /// `tls`: applied to every request (check_tls_files: std::invalid_argument when it is not usable).
  explicit easy(std::chrono::milliseconds timeout, tls_files tls = {})
      : timeout_(timeout), tls_(std::move(tls)) {
    check_tls_files(tls_, "noclobber: HTTP connection");
    if (timeout.count() <= 0) {
      throw std::invalid_argument("noclobber: HTTP timeout must be positive, got " +
                                  std::to_string(timeout.count()) + "ms");
    }
    global_init();
    h_.reset(curl_easy_init());
    if (!h_) throw std::runtime_error("noclobber: curl_easy_init failed");
  }

  /// One request. `method`: "GET", "PUT", "POST", "DELETE", "HEAD", or another method that sends
  /// `body` ("LOCK", "UNLOCK"). `headers`: full header lines; empty ones are skipped (so an
  /// optional header can be passed as ""). libcurl re-sends only GET and HEAD by itself (see the
  /// overview); any other request is sent at most once per call.
  response perform(const char* method, const std::string& url, std::string_view body,
                   std::initializer_list<std::string_view> headers = {}) {
    response out;
    send_guard once(method);
    CURL* h = h_.get();
    curl_easy_reset(h);  // keeps the connection cache: the next request reuses the connection
    curl_slist* list = nullptr;
    for (std::string_view hd : headers) {
      if (!hd.empty()) list = curl_slist_append(list, std::string(hd).c_str());
    }
    list = curl_slist_append(list, "Expect:");  // no 100-continue round trip
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> guard(list, &curl_slist_free_all);
    char errbuf[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout_.count()));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &easy::on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &out.body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &easy::on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &out);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION,
                     static_cast<long>(CURL_HTTP_VERSION_1_1));  // https too (see the overview)
    apply_tls(h, tls_);
    once.attach(h);
    const std::string_view m(method);
    if (m == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (m != "GET") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
    out.code = curl_easy_perform(h);
    once.finish(out, errbuf);
    if (out.code == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out.status);
    // A user:password@ URL: its secrets leave no error text, and no answer that is not a
    // success (the only bodies that end up in messages; a 2xx body is the caller's data).
    if (const std::vector<std::string> secrets = url_secrets(url); !secrets.empty()) {
      out.error = redact(std::move(out.error), secrets);
      if (out.status < 200 || out.status >= 300) out.body = redact(std::move(out.body), secrets);
    }
    return out;
  }

 private:
  static std::size_t on_body(char* p, std::size_t size, std::size_t n, void* user) {
    static_cast<std::string*>(user)->append(p, size * n);
    return size * n;
  }
  // Stores the header's value (spaces and tabs around it trimmed, RFC 9110 OWS) in `out` when
  // `line` is "<name> value".
  // `name` is lower case, colon included.
  static void take_header(std::string_view line, std::string_view name, std::string& out) {
    if (line.size() <= name.size()) return;
    for (std::size_t i = 0; i < name.size(); ++i) {
      const char c = line[i];
      if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) != name[i]) return;
    }
    line.remove_prefix(name.size());
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() &&
           (line.back() == '\r' || line.back() == '\n' || line.back() == ' ' || line.back() == '\t'))
      line.remove_suffix(1);
    out.assign(line);
  }
  static std::size_t on_header(char* p, std::size_t size, std::size_t n, void* user) {
    const std::string_view line(p, size * n);
    auto* r = static_cast<response*>(user);
    take_header(line, "etag:", r->etag);
    take_header(line, "lock-token:", r->lock_token);
    return size * n;
  }

  struct handle_deleter {
    void operator()(CURL* h) const noexcept { curl_easy_cleanup(h); }
  };
  std::unique_ptr<CURL, handle_deleter> h_;
  std::chrono::milliseconds timeout_;
  tls_files tls_;
};

}  // namespace noclobber::detail::curl
