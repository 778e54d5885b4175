// noclobber/adapters/s3/probe.hpp — does this S3 server enforce If-None-Match: * and If-Match?
//
// Overview
// --------
// S3-compatible servers differ, and some accept the precondition headers and ignore them (s3rver
// answers 200 to every conditional PUT; radosgw 16.2 ignores If-Match on DELETE). Against such a
// server a conditional write protects nothing and every "applied" can be a lost update. The probe
// finds out on a scratch object (options::probe_prefix + a random name) before the first
// conditional write:
//
//   1  PUT If-None-Match: *           on a new key          must be 2xx (the scratch object)
//   2  PUT If-None-Match: *           on that existing key  must be 412  -> create_if_absent
//   3  PUT If-Match: <a wrong ETag>                          must be 412  -> write_if_match ...
//   4  PUT If-Match: <its ETag>                              must be 2xx  -> ... and it can succeed
//      (if 412: the same without quotes, and a wrong ETag without quotes must be 412: radosgw
//      16.2 compares a PUT's If-Match with the bare MD5; the store then sends that form)
//   5  DELETE If-Match: <a wrong ETag>, then GET            412, still there -> erase_if_match
//   6  DELETE                                                the scratch object goes
//
// A step without an HTTP answer (or answered 408/429/5xx) leaves the report incomplete; the store
// then answers `transient` and probes again at its next write. A definite refusal of step 1 (403
// AccessDenied for a read-only key, SignatureDoesNotMatch, NoSuchBucket) is no missing answer:
// `refused` holds the server's error, the store's conditional writes answer `permanent` with it,
// and (as any incomplete report) it is not kept, so a key given write access later works.
// The result of a complete probe is kept per process for each endpoint and bucket
// (`probe_registry`): all store objects for one bucket share one probe, and the first writer runs
// it while the others wait for it.
//
// What the probe cannot see: whether the check and the write are one atomic step under concurrent
// writers. Only a race shows that (tests/servers/test_server_s3_harness.cpp, docs/adapters/s3.md).
//
// Thread safety: run_probe uses the caller's connection (one thread at a time). probe_registry is
// thread-safe: one mutex for its map, one per endpoint and bucket held while that bucket's probe
// runs (network I/O under it, bounded by options::timeout per request; no user code).
#pragma once

#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>

#include "noclobber/adapters/detail/http.hpp"
#include "noclobber/adapters/s3/answers.hpp"
#include "noclobber/adapters/s3/connection.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber::s3 {

/// What the probe found.
struct enforcement_report {
  bool complete = false;               ///< every step got a definite answer
  std::optional<store_error> refused;  ///< step 1 was refused (e.g. 403): nothing could be checked
  bool create_if_absent = false;       ///< If-None-Match: * over an existing object answered 412
  bool write_if_match = false;         ///< If-Match with a wrong ETag answered 412, with the right one 2xx
  bool erase_if_match = false;         ///< DELETE If-Match with a wrong ETag answered 412 and kept the object
  etag_form if_match_form = etag_form::quoted;  ///< the If-Match form the server matches
  std::string steps;                            ///< each step and what it was answered (no secrets)

  /// Both conditional writes are enforced: the store's conditional writes may run.
  [[nodiscard]] bool writes_enforced() const noexcept {
    return complete && create_if_absent && write_if_match;
  }
};

namespace detail {

/// The ETag as an If-Match value in `form`.
[[nodiscard]] inline std::string if_match_value(const std::string& etag, etag_form form) {
  if (form == etag_form::unquoted && noclobber::detail::http::is_strong_etag(etag)) {
    return etag.substr(1, etag.size() - 2);
  }
  return etag;
}

/// Runs the probe through `c` (see the overview).
inline enforcement_report run_probe(connection& c) {
  enforcement_report r;
  std::random_device rd;
  const std::string key = c.opts().probe_prefix + std::to_string(rd()) + "-" + std::to_string(rd());
  const std::string wrong = "\"0123456789abcdef0123456789abcdef\"";  // no MD5 of the probe's bodies
  bool answered_all = true;
  // One step: the request, and its status in `steps`; a step without a definite answer makes the
  // report incomplete.
  auto definite = [](const answer& a) {
    return a.transport_ok() && !noclobber::detail::http::retryable(a.status) && a.status < 500;
  };
  auto step = [&](const char* what, std::string_view method, std::string_view body,
                  const std::string& header) {
    answer a = c.perform(method, key, body, {header});
    r.steps += std::string(what) + ": " +
               (a.transport_ok() ? std::to_string(a.status) : error_of(a, c.opts().creds).message) + "; ";
    if (!definite(a)) answered_all = false;
    return a;
  };
  auto ok = [](const answer& a) { return a.transport_ok() && a.status >= 200 && a.status < 300; };
  auto refused = [](const answer& a) { return a.transport_ok() && a.status == 412; };

  if (const answer first = step("create", "PUT", "noclobber probe 1", "If-None-Match: *"); !ok(first)) {
    if (definite(first)) r.refused = error_of(first, c.opts().creds);  // a 4xx: the key may not write
    return r;                                                          // incomplete
  }
  r.create_if_absent = refused(step("create over it", "PUT", "noclobber probe 2", "If-None-Match: *"));
  const bool wrong_refused =
      refused(step("If-Match wrong", "PUT", "noclobber probe 3", "If-Match: " + wrong));
  const answer current = step("read", "GET", {}, {});
  if (current.status == 200 && noclobber::detail::http::is_strong_etag(current.etag)) {
    if (ok(step("If-Match right", "PUT", "noclobber probe 4", "If-Match: " + current.etag))) {
      r.write_if_match = wrong_refused;
    } else if (ok(step("If-Match right, unquoted", "PUT", "noclobber probe 5",
                       "If-Match: " + if_match_value(current.etag, etag_form::unquoted)))) {
      // radosgw 16.2: a PUT's If-Match is compared with the bare MD5, so a quoted ETag never
      // matches. Enforced if a wrong bare one is refused too.
      r.if_match_form = etag_form::unquoted;
      r.write_if_match = refused(step("If-Match wrong, unquoted", "PUT", "noclobber probe 6",
                                      "If-Match: " + if_match_value(wrong, etag_form::unquoted)));
    }
  }
  const bool delete_refused = refused(step("DELETE If-Match wrong", "DELETE", {}, "If-Match: " + wrong));
  r.erase_if_match = delete_refused && step("read after", "GET", {}, {}).status == 200;
  (void)c.perform("DELETE", key);  // the scratch object goes, whatever happened
  r.complete = answered_all;
  return r;
}

/// The probe results of this process, per endpoint and bucket.
class probe_registry {
 public:
  static probe_registry& instance() {
    static probe_registry r;
    return r;
  }

  /// The bucket's report: the kept one, or a probe run now through `c` (kept when complete).
  /// Concurrent callers for one bucket wait for the probe that runs.
  enforcement_report get(connection& c) { return lookup(c, false); }

  /// Runs the probe through `c` now and keeps the result when complete.
  enforcement_report rerun(connection& c) { return lookup(c, true); }

  /// What is kept for the bucket, without probing.
  std::optional<enforcement_report> known(const connection& c) {
    const std::shared_ptr<slot> s = slot_for(c);
    annotated_lock lock(s->mutex);
    return s->report;
  }

 private:
  struct slot {
    annotated_mutex mutex;  // held while the bucket's probe runs
    std::optional<enforcement_report> report NOCLOBBER_GUARDED_BY(mutex);
  };

  std::shared_ptr<slot> slot_for(const connection& c) {
    const std::string name = c.bucket_url() + " " + c.opts().region;
    annotated_lock lock(mutex_);
    auto& s = slots_[name];
    if (!s) s = std::make_shared<slot>();
    return s;
  }

  enforcement_report lookup(connection& c, bool again) {
    const std::shared_ptr<slot> s = slot_for(c);
    annotated_lock lock(s->mutex);
    if (s->report && !again) return *s->report;
    enforcement_report r = run_probe(c);
    if (r.complete) s->report = r;
    return r;
  }

  annotated_mutex mutex_;  // never held together with a slot's mutex
  std::map<std::string, std::shared_ptr<slot>> slots_ NOCLOBBER_GUARDED_BY(mutex_);
};

}  // namespace detail
}  // namespace noclobber::s3
