// noclobber/adapters/detail/curl_easy.hpp — the small slice of libcurl the etcd, HTTP ETag and
// WebDAV lock adapters need: one easy handle (one keep-alive connection), a request, a response
// with its status, body, ETag and Lock-Token headers, and what a transport failure means for a
// retry loop.
//
// Thread safety: an `easy` is used by one thread at a time. curl_global_init runs once, under
// std::call_once, before the first handle is made.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "noclobber/outcome.hpp"

namespace noclobber::detail::curl {

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

  [[nodiscard]] bool transport_ok() const noexcept { return code == CURLE_OK; }
};

/// What a transport failure means. `may_write`: the request could change state on the server.
/// Nothing sent (cannot connect / resolve) -> transient; sent but no answer -> indeterminate for a
/// write, transient for a read; a malformed request -> permanent.
[[nodiscard]] inline write_status classify_transport(CURLcode c, bool may_write) noexcept {
  switch (c) {
    case CURLE_OK:
      return write_status::applied;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return write_status::transient;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_FUNCTION_ARGUMENT:
      return write_status::permanent;
    default:  // timeouts, resets, empty replies: the request may have been processed
      return may_write ? write_status::indeterminate : write_status::transient;
  }
}

class easy {
 public:
  explicit easy(std::chrono::milliseconds timeout) : timeout_(timeout) {
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
  /// optional header can be passed as "").
  response perform(const char* method, const std::string& url, std::string_view body,
                   std::initializer_list<std::string_view> headers = {}) {
    response out;
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
    const std::string_view m(method);
    if (m == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (m != "GET") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
    out.code = curl_easy_perform(h);
    if (out.code != CURLE_OK) {
      out.error = errbuf[0] ? errbuf : curl_easy_strerror(out.code);
    } else {
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out.status);
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
};

}  // namespace noclobber::detail::curl
