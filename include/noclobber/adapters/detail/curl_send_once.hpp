// noclobber/adapters/detail/curl_send_once.hpp — keeps libcurl from sending a write twice on its
// own, and tells when it did.
//
// libcurl re-sends a request by itself when a reused keep-alive connection dies before any answer
// ("Connection died, retrying a fresh connect"). For a write that is wrong: the first copy may
// have been delivered and applied, and whatever the second copy is answered (a 412 because the
// first one changed the ETag, or "couldn't connect") describes the second copy only — an adapter
// that believes it reports a landed write as a conflict or as "nothing was sent". `send_once`,
// attached to an easy handle for one request:
//
//   * refuses the rewind libcurl needs before re-sending a body (the seek callback fails, so the
//     transfer ends with CURLE_SEND_FAIL_REWIND instead of a second copy), when the body is sent
//     through `read_body` (CURLOPT_READFUNCTION with CURLOPT_UPLOAD);
//   * counts the request lines libcurl sent (CURLOPT_DEBUGFUNCTION, CURLINFO_HEADER_OUT), so a
//     body-less request that was re-sent (a DELETE) is seen.
//
// `sent_more_than_once()` then says the answer may not be about the first copy: a write must be
// reported `indeterminate` unless it was answered 2xx (a conditional write's second copy can only
// succeed when the first did not change the object).
//
// Thread safety: one object per request, used by the thread that performs it. The callbacks run
// inside curl_easy_perform on that thread. No user code is called.
#pragma once

#include <curl/curl.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace noclobber::detail::curl {

class send_once {
 public:
  /// `body` (may be empty) is sent through read_body when attach_upload is used.
  explicit send_once(std::string_view body = {}) noexcept : body_(body) {}
  send_once(const send_once&) = delete;
  send_once& operator=(const send_once&) = delete;

  /// Counts the request lines sent on `h` (turns on CURLOPT_VERBOSE; the debug callback keeps
  /// everything to itself, nothing is printed).
  void attach_counter(CURL* h) noexcept {
    curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, &send_once::on_debug);
    curl_easy_setopt(h, CURLOPT_DEBUGDATA, this);
    curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
  }

  /// attach_counter, and sends `body` as an upload (CURLOPT_UPLOAD: the method is PUT unless
  /// CURLOPT_CUSTOMREQUEST says otherwise) whose rewind is refused once the request went out.
  void attach_upload(CURL* h) noexcept {
    attach_counter(h);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body_.size()));
    curl_easy_setopt(h, CURLOPT_READFUNCTION, &send_once::read_body);
    curl_easy_setopt(h, CURLOPT_READDATA, this);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, &send_once::on_seek);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, this);
  }

  /// How many times the request line went out.
  [[nodiscard]] unsigned sends() const noexcept { return sends_; }
  /// libcurl sent the request again, or tried to and was refused the rewind.
  [[nodiscard]] bool sent_more_than_once() const noexcept { return sends_ > 1 || rewind_refused_; }

 private:
  static int on_debug(CURL*, curl_infotype type, char* data, std::size_t size, void* self) {
    auto* me = static_cast<send_once*>(self);
    // A header block starts with the request line; a header block sent in pieces (a partial
    // send) continues with other lines, which never start with an upper-case method and a space.
    if (type == CURLINFO_HEADER_OUT && starts_request_line(std::string_view(data, size))) ++me->sends_;
    return 0;
  }

  static bool starts_request_line(std::string_view text) noexcept {
    std::size_t i = 0;
    while (i < text.size() && text[i] >= 'A' && text[i] <= 'Z') ++i;
    return i > 0 && i < text.size() && text[i] == ' ' && text.find(" HTTP/") != std::string_view::npos;
  }

  static std::size_t read_body(char* out, std::size_t size, std::size_t n, void* self) {
    auto* me = static_cast<send_once*>(self);
    const std::size_t room = size * n;
    const std::size_t left = me->body_.size() - me->offset_;
    const std::size_t take = left < room ? left : room;
    if (take > 0) std::memcpy(out, me->body_.data() + me->offset_, take);
    me->offset_ += take;
    return take;
  }

  static int on_seek(void* self, curl_off_t offset, int origin) {
    auto* me = static_cast<send_once*>(self);
    if (me->sends_ > 0 || offset != 0 || origin != SEEK_SET) {
      me->rewind_refused_ = true;  // a rewind after the request went out: a re-send
      return CURL_SEEKFUNC_FAIL;
    }
    me->offset_ = 0;
    return CURL_SEEKFUNC_OK;
  }

  std::string_view body_;
  std::size_t offset_ = 0;
  unsigned sends_ = 0;
  bool rewind_refused_ = false;
};

}  // namespace noclobber::detail::curl
