// noclobber/adapters/s3.hpp — objects in an S3 bucket (AWS S3, or an S3-compatible server) as a
// conditional_writer store, over libcurl with SigV4.
//
// Overview
// --------
// `s3::store` maps a key to an object in one bucket and uses the object's ETag as the version
// token (the object-store fix of docs/scenarios.md, as one adapter):
//
//   read              GET                              200 -> body + ETag     404 -> absent
//   read_if_changed   GET  If-None-Match: <etag>       304 -> unchanged (for cached_store.hpp)
//   write_if_match    PUT  If-Match: <etag>            412 -> conflict        404 -> absent
//   create_if_absent  PUT  If-None-Match: *            412 -> exists
//   erase_if_match    DELETE If-Match: <etag>          only where the probe found it enforced
//   overwrite         PUT                              the blind write (negative control only)
//
// 409 ConditionalRequestConflict -> transient_restart; 408/429/503 (SlowDown) -> transient, and a
// Retry-After makes this store wait that long before its next request (up to
// options::max_retry_after; a longer one turns the answer permanent); 500/502/504, a timeout or a
// reset after the request left, and a request libcurl re-sent on its own -> indeterminate. The full
// table is in s3/answers.hpp.
//
// Enforcement: before the first conditional write to an endpoint and bucket, the store probes on a
// scratch key whether the server enforces If-None-Match: * and If-Match (s3/probe.hpp); where it
// does not, every conditional write answers `permanent` with code "PreconditionNotEnforced" and
// says which header the server ignored, and erase_if_match does the same where DELETE ignores
// If-Match. The probe runs at first use rather than in the constructor: constructing a store does
// no I/O and cannot fail on a server that is briefly away; a probe without answers is retried at
// the next write; one whose first PUT the server refuses (403 for a read-only key) makes the write
// `permanent` with the server's code, and is not kept either; all stores for one bucket share one
// probe per process. `probe()` runs it now (call it at start-up to fail fast).
// `options::check = enforcement::trust` opts out.
//
// ETags: both servers checked here (and AWS for single-part uploads) send the MD5 of the content,
// so writing a body the object had before brings its ETag back (ABA): keep bodies unique (a
// SQLite file that grows a row per write does; so does an update id in the value).
//
// Secrets: the secret key and the session token go to libcurl only; no store_error, exception
// message or probe report contains them (redacted even when a server echoes them).
//
// Thread safety: a `store` is one libcurl handle (one keep-alive connection): one thread at a
// time; give each thread its own store (they share the probe). No user code is called.
#pragma once

#include <chrono>
#include <ctime>
#include <optional>
#include <string>
#include <utility>

#include "noclobber/adapters/detail/http.hpp"
#include "noclobber/adapters/s3/answers.hpp"
#include "noclobber/adapters/s3/connection.hpp"
#include "noclobber/adapters/s3/options.hpp"
#include "noclobber/adapters/s3/probe.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_if_changed.hpp"

namespace noclobber::s3 {

class store {
 public:
  using key_type = std::string;    // the object key
  using value_type = std::string;  // the object's bytes
  using token_type = std::string;  // the strong ETag, quotes included

  /// Throws std::invalid_argument naming the bad option (never quoting a credential).
  explicit store(options o) : conn_(std::move(o)) {}

  read_result<value_type, token_type> read(const key_type& key) {
    detail::answer a = conn_.perform("GET", key);
    const bool too_long = honour_retry_after(a);
    auto r = detail::read_answer(std::move(a), key, creds());
    if (too_long) r.status = read_status::permanent;
    return r;
  }

  read_if_changed_result<value_type, token_type> read_if_changed(const key_type& key,
                                                                 const token_type& token) {
    noclobber::detail::http::check_strong_etag(token, detail::who);
    detail::answer a = conn_.perform("GET", key, {}, {"If-None-Match: " + token});
    const bool too_long = honour_retry_after(a);
    auto r = detail::conditional_read_answer(std::move(a), key, creds());
    if (too_long && !r.unchanged) r.fresh.status = read_status::permanent;
    return r;
  }

  write_result<token_type> write_if_match(const key_type& key, const token_type& token,
                                          const value_type& value) {
    noclobber::detail::http::check_strong_etag(token, detail::who);
    (void)conn_.url(key);  // a bad key is std::invalid_argument before any probe
    gate g = check_enforcement(false);
    if (g.refused) return std::move(*g.refused);
    return write("PUT", key, value, "If-Match: " + detail::if_match_value(token, g.form),
                 detail::write_kind::update);
  }

  write_result<token_type> create_if_absent(const key_type& key, const value_type& value) {
    (void)conn_.url(key);
    if (gate g = check_enforcement(false); g.refused) return std::move(*g.refused);
    return write("PUT", key, value, "If-None-Match: *", detail::write_kind::create);
  }

  /// Offered only where the probe found DELETE's If-Match enforced (radosgw 16.2 ignores it):
  /// elsewhere `permanent`, "PreconditionNotEnforced", and nothing is sent.
  write_result<token_type> erase_if_match(const key_type& key, const token_type& token) {
    noclobber::detail::http::check_strong_etag(token, detail::who);
    (void)conn_.url(key);
    gate g = check_enforcement(true);
    if (g.refused) return std::move(*g.refused);
    return write("DELETE", key, {}, "If-Match: " + detail::if_match_value(token, g.form),
                 detail::write_kind::erase);
  }

  /// The unconditional PUT that loses updates (negative control only). Never probed.
  write_result<token_type> overwrite(const key_type& key, const value_type& value) {
    return write("PUT", key, value, {}, detail::write_kind::overwrite);
  }

  /// Runs the enforcement probe now (and keeps a complete result for every store of this bucket).
  enforcement_report probe() { return detail::probe_registry::instance().rerun(conn_); }

  /// What is known about this bucket's enforcement, without probing.
  [[nodiscard]] std::optional<enforcement_report> enforcement() {
    return detail::probe_registry::instance().known(conn_);
  }

  /// The time before which this store sends nothing (a Retry-After it honours).
  [[nodiscard]] std::chrono::steady_clock::time_point held_back_until() const noexcept {
    return conn_.held_back_until();
  }

  [[nodiscard]] std::string bucket_url() const { return conn_.bucket_url(); }

 private:
  const credentials& creds() const noexcept { return conn_.opts().creds; }

  write_result<token_type> write(std::string_view method, const key_type& key, std::string_view body,
                                 const std::string& precondition, detail::write_kind kind) {
    detail::answer a = conn_.perform(method, key, body, {precondition});
    const bool too_long = honour_retry_after(a);
    auto w = detail::write_answer(a, kind, creds());
    if (too_long && w.status == write_status::transient) w.status = write_status::permanent;
    return w;
  }

  // A Retry-After on a refusal (408/429/503) holds this store's next request back; true when the
  // server asked for longer than options::max_retry_after (the store does not wait then).
  bool honour_retry_after(const detail::answer& a) {
    if (!a.transport_ok() || a.retry_after.empty() || !noclobber::detail::http::retryable(a.status))
      return false;
    const auto wait = detail::parse_retry_after(a.retry_after, std::time(nullptr));
    if (!wait) return false;
    if (*wait > conn_.opts().max_retry_after) return true;
    conn_.hold_back_until(std::chrono::steady_clock::now() + *wait);
    return false;
  }

  // Whether a conditional write may go ahead, and the If-Match form to send.
  struct gate {
    std::optional<write_result<token_type>> refused;  // the answer when it may not
    etag_form form = etag_form::quoted;
  };

  gate check_enforcement(bool erase) {
    if (conn_.opts().check == enforcement::trust) return {std::nullopt, conn_.opts().if_match_form};
    const enforcement_report r = detail::probe_registry::instance().get(conn_);
    return {refusal(r, erase), r.if_match_form};
  }

  std::optional<write_result<token_type>> refusal(const enforcement_report& r, bool erase) const {
    if (r.refused) {
      return write_result<token_type>::make_failed(
          write_status::permanent,
          {r.refused->code, detail::redact("the enforcement probe's first PUT (a scratch object under '" +
                                               conn_.opts().probe_prefix + "' in " + conn_.bucket_url() +
                                               ") was refused: " + r.refused->message +
                                               "; nothing was written, the next write probes again",
                                           creds())});
    }
    if (!r.complete) {
      return write_result<token_type>::make_failed(
          write_status::transient,
          {"ProbeIncomplete", detail::redact("the enforcement probe of " + conn_.bucket_url() +
                                                 " got no answer to every step (" + r.steps +
                                                 "); nothing was written, the next write probes again",
                                             creds())});
    }
    std::string ignored;
    if (!r.create_if_absent) ignored += "If-None-Match: * (a PUT over an existing object was not refused)";
    if (!r.write_if_match) {
      ignored += std::string(ignored.empty() ? "" : " and ") +
                 "If-Match (a PUT with a wrong ETag was not refused, or one with the right ETag was)";
    }
    std::string consequence =
        "conditional writes cannot protect this bucket, so the store refuses them (options::check = "
        "enforcement::trust sends them anyway, and updates can be lost)";
    if (ignored.empty() && erase && !r.erase_if_match) {
      ignored = "If-Match on DELETE (a DELETE with a wrong ETag was not refused)";
      consequence = "erase_if_match is not offered on this server; nothing was sent";
    }
    if (ignored.empty()) return std::nullopt;
    return write_result<token_type>::make_failed(
        write_status::permanent,
        {"PreconditionNotEnforced", detail::redact("the server at " + conn_.bucket_url() + " ignores " +
                                                       ignored + ": " + consequence + ". Probe: " + r.steps,
                                                   creds())});
  }

  detail::connection conn_;
};

static_assert(check_conditional_writer<store>());
static_assert(revalidating_store<store>);

}  // namespace noclobber::s3
