// noclobber/adapters/webdav_lock.hpp — read-modify-write under a WebDAV LOCK (RFC 4918), for
// WebDAV servers whose conditional PUT is not atomic (Apache mod_dav, see http_etag.hpp).
//
// Overview
// --------
// `webdav_lock::update_under_lock(store, key, fn, policy)` is the pessimistic path, in the style
// of postgres::update_under_row_lock. Each attempt:
//
//   LOCK key   exclusive write lock, depth 0, `Timeout: Second-N`; token from `Lock-Token:`
//              200/201 -> held            423 Locked -> someone else holds it: transient (back
//                                                       off and retry through cas_retry)
//   GET key    200 -> value + ETag        404 -> absent (also right after a LOCK of an absent key:
//                                                       mod_dav makes a lock-null resource)
//   fn(value)  under the WebDAV lock; answers a value, noclobber::keep or noclobber::abort(why)
//   PUT key    `If: <url> (<token>)` plus `If-Match: <etag>` (or `If-None-Match: *` when absent)
//   UNLOCK key `Lock-Token: <token>`, also when fn throws or a request fails; a lock that
//              cannot be released (a killed process, a lost connection) expires after N seconds
//
// The decisions between the requests (which write to send, keep / abort, resolving an
// indeterminate PUT by reading again — under the lock) are read_modify_write's own
// (detail::rmw_machine); the result is the same rmw_result. The retry loop is cas_retry: 423 is
// `transient`, a PUT refused because the lock was lost (412 on the `If:` token, 423) is
// `conflict` and the next attempt locks and reads again.
//
// `webdav_lock::store` is the client: one libcurl handle, the locks it holds (key -> token), and
// the conditional_writer contract (read, write_if_match, create_if_absent, erase_if_match) whose
// writes carry `If: <url> (<token>)` while it holds a lock on the key. Its URLs, keys and answers
// are the HTTP ETag adapter's: both use noclobber/adapters/detail/http.hpp.
//
// Is the server's LOCK exclusive under concurrency? That is the server's promise, not ours, and
// on Apache httpd 2.4 mod_dav_fs it is broken: simultaneous LOCKs of one resource are granted
// together (up to 16 of 16). Only the last lock stored keeps a token the server knows, so the
// other holders' PUTs are refused (412) and retried: the race harness lost nothing, but that is
// evidence, not a guarantee (docs/adapters/webdav_lock.md has the numbers and the gap).
//
// Expiry: a lock outlives its holder by at most `lock_options::timeout`. A holder slower than
// that loses its lock: its PUT is refused (412 or 423) and the attempt starts again. Pick a
// timeout well above the time of one GET + fn + PUT. Apache mod_dav counts whole seconds (the
// lock expires once `time(NULL) >= granted_second + N`), so a lock of N seconds lasts N-1 to N s:
// `Second-1` may expire at once.
//
// Thread safety: a `store` is one libcurl handle and one table of held locks: one thread at a
// time. `fn` runs on the calling thread while this client holds the server's lock on `key` (no
// in-process lock is held); it must not write `key` through another client (the server refuses
// with 423). The policy's hooks (on_retry, on_give_up) and the backoff sleeps run with no lock
// held: every attempt releases its lock before the loop decides what to do next. If `fn`
// throws, the lock is released, nothing is written and the exception propagates.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "noclobber/adapters/detail/curl_easy.hpp"
#include "noclobber/adapters/detail/http.hpp"
#include "noclobber/cas_retry.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_modify_write.hpp"

namespace noclobber::webdav_lock {

struct lock_options {
  /// `Timeout: Second-N`: how long the server keeps the lock of a holder that never unlocks.
  std::chrono::seconds timeout{30};
  /// The lock's <D:owner> text, for people reading lockdiscovery (plain text; XML-escaped here).
  std::string owner;
};

/// What the client counted since it was made (for tests and tuning).
struct lock_stats {
  std::size_t acquired = 0;         // LOCK answered 200/201
  std::size_t refused = 0;          // LOCK answered 423 Locked
  std::size_t unlock_failures = 0;  // UNLOCK not answered 2xx (the lock then expires)
  std::size_t refused_writes = 0;   // a write sent with our lock token refused (412/423): the lock
                                    // had expired or been lost, or the ETag had moved
};

class store {
 public:
  using key_type = std::string;    // a relative path: [A-Za-z0-9._~-] segments joined by '/'
  using value_type = std::string;  // the resource's body
  using token_type = std::string;  // the strong ETag, quotes included

  /// `base_url`: "http(s)://host[:port]/prefix/" (a trailing '/' is added when missing).
  explicit store(std::string base_url, std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : base_(noclobber::detail::http::checked_base_url(std::move(base_url), who)), http_(timeout) {}

  /// LOCK `key` (exclusive write lock, depth 0). applied: held, the token is returned and
  /// remembered (later writes to `key` carry it). transient: 423 Locked (someone else holds it),
  /// 408, 429, 5xx, or no answer (a lock granted without our hearing of it expires after
  /// `opt.timeout`). permanent: any other answer, e.g. a server without locking (405).
  write_result<std::string> lock(const key_type& key, const lock_options& opt = {}) {
    using wr = write_result<std::string>;
    if (opt.timeout.count() <= 0) {
      throw std::invalid_argument(std::string(who) + ": lock timeout must be positive, got " +
                                  std::to_string(opt.timeout.count()) + "s");
    }
    if (held(key) != nullptr) {
      throw std::logic_error(std::string(who) + ": this client already holds a lock on '" + key + "'");
    }
    const std::string u = url(key);
    std::string body =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:lockinfo xmlns:D=\"DAV:\"><D:lockscope><D:exclusive/>"
        "</D:lockscope><D:locktype><D:write/></D:locktype>";
    if (!opt.owner.empty()) body += "<D:owner>" + xml_escape(opt.owner) + "</D:owner>";
    body += "</D:lockinfo>";
    noclobber::detail::curl::response r =
        http_.perform("LOCK", u, body,
                      {"Timeout: Second-" + std::to_string(opt.timeout.count()), "Depth: 0",
                       "Content-Type: application/xml; charset=utf-8"});
    if (!r.transport_ok()) {
      // LOCK changes no data: whatever happened, retrying is safe.
      const write_status s = noclobber::detail::curl::classify_transport(r, false);
      return wr::make_failed(s, {"curl " + std::to_string(static_cast<int>(r.code)), r.error});
    }
    if (r.status == 200 || r.status == 201) {
      if (!noclobber::detail::http::is_lock_token(r.lock_token)) {
        return wr::make_failed(write_status::permanent,
                               {std::to_string(r.status), "LOCK answered without a Lock-Token header"});
      }
      ++stats_.acquired;
      locks_.emplace_back(key, r.lock_token);
      return wr::make_applied(r.lock_token);
    }
    if (r.status == 423) {
      ++stats_.refused;
      return wr::make_failed(write_status::transient, {"423", "locked by another client"});
    }
    // 5xx, 408, 429: LOCK changes no data, so trying again is safe (mod_dav_fs answers 500 when
    // it reads its .locknull file while another request rewrites it).
    if (noclobber::detail::http::retryable(r.status) || r.status >= 500)
      return wr::make_failed(write_status::transient, noclobber::detail::http::http_error(r));
    return wr::make_failed(write_status::permanent, noclobber::detail::http::http_error(r));
  }

  /// UNLOCK the lock this client holds on `key` and forget it. applied: released. absent: this
  /// client held none. transient / permanent: the server did not confirm (the lock then expires
  /// after its timeout); the token is forgotten either way.
  write_status unlock(const key_type& key) {
    auto it = find(key);
    if (it == locks_.end()) return write_status::absent;
    const std::string token = std::move(it->second);
    locks_.erase(it);
    noclobber::detail::curl::response r = http_.perform("UNLOCK", url(key), {}, {"Lock-Token: " + token});
    if (r.transport_ok() && r.status >= 200 && r.status < 300) return write_status::applied;
    ++stats_.unlock_failures;
    return r.transport_ok() ? write_status::permanent : write_status::transient;
  }

  /// The token of the lock this client holds on `key` ("<opaquelocktoken:…>"), or null.
  [[nodiscard]] const std::string* held(const key_type& key) const {
    const auto it = std::ranges::find(locks_, key, &held_lock::first);
    return it == locks_.end() ? nullptr : &it->second;
  }

  read_result<value_type, token_type> read(const key_type& key) {
    return noclobber::detail::http::read_answer(http_.perform("GET", url(key), {}), key);
  }

  /// PUT with `If-Match: token`, and `If: <url> (<lock token>)` while this client holds a lock on key.
  write_result<token_type> write_if_match(const key_type& key, const token_type& token,
                                          const value_type& value) {
    noclobber::detail::http::check_strong_etag(token, who);
    const std::string u = url(key);
    const std::string lock = if_header(u, key);
    noclobber::detail::curl::response r = http_.perform("PUT", u, value, {"If-Match: " + token, lock});
    if (r.transport_ok() && (r.status == 412 || r.status == 423)) {
      if (auto refused = refused_by_lock(r, !lock.empty())) return *refused;
      return noclobber::detail::http::moved_or_gone(http_, u);
    }
    return noclobber::detail::http::write_answer(r);
  }

  /// PUT with `If-None-Match: *`, and `If: <url> (<lock token>)` while this client holds a lock on key.
  write_result<token_type> create_if_absent(const key_type& key, const value_type& value) {
    const std::string u = url(key);
    const std::string lock = if_header(u, key);
    noclobber::detail::curl::response r = http_.perform("PUT", u, value, {"If-None-Match: *", lock});
    if (r.transport_ok() && (r.status == 412 || r.status == 423)) {
      if (auto refused = refused_by_lock(r, !lock.empty())) return *refused;
      return write_result<token_type>::make_exists();
    }
    return noclobber::detail::http::write_answer(r);
  }

  /// DELETE with `If-Match: token`, and `If: <url> (<lock token>)` while this client holds a lock on
  /// key. A DELETE that succeeds also removes the server's lock: the client forgets it.
  write_result<token_type> erase_if_match(const key_type& key, const token_type& token) {
    noclobber::detail::http::check_strong_etag(token, who);
    const std::string u = url(key);
    const std::string lock = if_header(u, key);
    noclobber::detail::curl::response r = http_.perform("DELETE", u, {}, {"If-Match: " + token, lock});
    if (r.transport_ok() && (r.status == 412 || r.status == 423)) {
      if (auto refused = refused_by_lock(r, !lock.empty())) return *refused;
      return noclobber::detail::http::moved_or_gone(http_, u);
    }
    if (r.transport_ok() && r.status == 404) return write_result<token_type>::make_absent();
    auto out = noclobber::detail::http::write_answer(r);
    if (out.ok() && !lock.empty()) locks_.erase(find(key));
    return out;
  }

  [[nodiscard]] const std::string& base_url() const noexcept { return base_; }
  [[nodiscard]] const lock_stats& stats() const noexcept { return stats_; }

 private:
  static constexpr const char* who = "noclobber::webdav_lock::store";

  std::string url(const key_type& key) const {
    return noclobber::detail::http::resource_url(base_, key, who);
  }

  using held_lock = std::pair<std::string, std::string>;  // key, lock token

  std::vector<held_lock>::iterator find(const key_type& key) {
    return std::ranges::find(locks_, key, &held_lock::first);
  }

  // `If: <url> (<token>)` while this client holds a lock on `key`, else "" (no header).
  std::string if_header(const std::string& u, const key_type& key) const {
    const std::string* token = held(key);
    return token ? noclobber::detail::http::if_lock_header(u, *token) : std::string();
  }

  // A 412/423 answer to a write. With our lock token sent, 423 means our lock is gone and someone
  // else's is there, and 412 may mean our token is no longer valid (expired): either way the next
  // attempt must lock and read again (conflict). Without a lock, 423 means someone else holds one:
  // try later (transient). nullopt: a 412 to judge as a plain conditional write.
  std::optional<write_result<token_type>> refused_by_lock(const noclobber::detail::curl::response& r,
                                                          bool sent_token) {
    if (sent_token) ++stats_.refused_writes;
    if (r.status == 423) {
      if (!sent_token)
        return write_result<token_type>::make_failed(write_status::transient, {"423", "locked"});
      return write_result<token_type>::make_failed(write_status::conflict, {"423", "our lock is gone"});
    }
    return std::nullopt;
  }

  static std::string xml_escape(std::string_view s) {
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
          out += "&gt;";
          break;
        default:
          out += c;
      }
    }
    return out;
  }

  std::string base_;
  noclobber::detail::curl::easy http_;
  std::vector<held_lock> locks_;  // the locks held now
  lock_stats stats_;
};

static_assert(check_conditional_writer<store>());

/// The default for update_under_lock: waits out a busy lock (423) with full jitter from 5 ms to
/// 250 ms, for up to 60 s — longer than the default lock timeout, so that the lock of a holder
/// that died expires while we wait.
[[nodiscard]] inline retry_policy default_lock_policy() {
  retry_policy p;
  p.backoff = backoff_policy::full_jitter(std::chrono::milliseconds(5), std::chrono::milliseconds(250));
  p.max_attempts = 100000;
  p.timeout = std::chrono::seconds(60);
  return p;
}

namespace detail {
// Releases the attempt's lock however the attempt ends.
class unlock_on_exit {
 public:
  unlock_on_exit(store& s, const std::string& key) noexcept : s_(s), key_(key) {}
  unlock_on_exit(const unlock_on_exit&) = delete;
  unlock_on_exit& operator=(const unlock_on_exit&) = delete;
  ~unlock_on_exit() {
    try {
      (void)s_.unlock(key_);
    } catch (...) {  // NOLINT(bugprone-empty-catch): the lock expires after its timeout
    }
  }

 private:
  store& s_;
  const std::string& key_;
};
}  // namespace detail

/// LOCK, GET, fn, PUT, UNLOCK, retried through cas_retry (see the overview). `via` is what the
/// reads and writes go through: `locks` itself, or a wrapper whose calls end in `locks` (the race
/// harness's race_store<store>), so that they carry the lock token. `env`: cas_retry's clock,
/// sleep and random engine.
template <class Via, class Fn, retry_env Env>
[[nodiscard]] rmw_result<std::string, std::string> update_under_lock(store& locks, Via& via,
                                                                     const std::string& key, Fn&& fn,
                                                                     const retry_policy& policy,
                                                                     const lock_options& opt, Env& env) {
  static_assert(check_conditional_writer<Via>());
  static_assert(noclobber::detail::check_rmw_function<std::remove_reference_t<Fn>, std::string>());
  noclobber::detail::rmw_machine<Via, std::remove_reference_t<Fn>> machine(via, key, fn);
  auto r = cas_retry(
      policy,
      [&](const attempt_info& info) {
        write_result<std::string> held = locks.lock(key, opt);
        if (!held.ok()) return machine.refuse(std::move(held));
        const detail::unlock_on_exit release(locks, key);
        return machine(info);
      },
      env);
  return machine.finish(std::move(r));
}

template <class Via, class Fn>
[[nodiscard]] rmw_result<std::string, std::string> update_under_lock(store& locks, Via& via,
                                                                     const std::string& key, Fn&& fn,
                                                                     const retry_policy& policy,
                                                                     const lock_options& opt = {}) {
  system_retry_env env;
  return update_under_lock(locks, via, key, std::forward<Fn>(fn), policy, opt, env);
}

/// The usual form: reads and writes through `s` itself.
template <class Fn>
[[nodiscard]] rmw_result<std::string, std::string> update_under_lock(
    store& s, const std::string& key, Fn&& fn, const retry_policy& policy = default_lock_policy(),
    const lock_options& opt = {}) {
  return update_under_lock(s, s, key, std::forward<Fn>(fn), policy, opt);
}

}  // namespace noclobber::webdav_lock
