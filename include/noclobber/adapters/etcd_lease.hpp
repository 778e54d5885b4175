// noclobber/adapters/etcd_lease.hpp — a lease_backend (noclobber/lease_lock.hpp) on etcd v3,
// through its JSON gateway (libcurl).
//
// Overview
// --------
// The lock of KEY is the etcd key `PREFIX KEY`, attached to an etcd lease:
//
//   try_acquire  POST /v3/lease/grant {TTL}                      -> lease ID (the owner id)
//                POST /v3/kv/txn { CREATE(PREFIX KEY) == 0 }
//                     then put(PREFIX KEY, ID, lease = ID)        -> acquired; token = header.revision,
//                                                                    the key's create_revision
//                     else                                         -> busy; the lease is revoked
//   extend       POST /v3/lease/keepalive {ID}    TTL > 0 -> held; no TTL (lease gone) -> lost
//   release      POST /v3/kv/lease/revoke {ID}    deletes the key with the lease; NotFound -> lost
//
// The fencing token is the revision of the put that created the lock key: etcd's revision is
// one counter for the whole cluster, replicated by Raft, so tokens only grow — across leader
// changes and restarts too (unlike Redis' counter). etcd counts TTLs in whole seconds and has a
// minimum (about 1.5 x the election timeout; 2 s with the defaults): the backend asks for
// ceil(ttl / 1 s) and records the TTL etcd granted in `lease_grant::ttl`, which the guard's local
// deadline then uses (the server's timer starts after the request was sent: still conservative). extend
// cannot change a lease's TTL; it restarts it (keep-alive), so the `ttl` argument of extend is ignored.
//
// What it survives: a holder killed or paused (the lease expires on the leader after its TTL,
// the key goes with it); a leader kill or partition of a minority (a new leader keeps the
// lease — and, per etcd's design, restarts every lease's TTL on election, so a lease can
// outlive its TTL by an election, never end early). What it does not make safe on its own: a
// holder paused past its TTL resumes believing it holds the key (Jepsen, etcd 3.4.3, 2020: the
// lock API is unsafe without fencing). Hence the conditional write behind (fenced_read_modify_write),
// or a store that compares the token.
//
// Errors: a grant or txn without an answer is `failed` (a lease granted without our knowing
// expires after its TTL; a key put under it goes with it). keepalive / revoke without an answer
// are `unknown`. One endpoint (the first of a list). TLS: `tls_files`, as etcd::store.
//
// Authentication: `credentials{user, password}`, as etcd::store, through the same
// detail::etcd::session (adapters/etcd/session.hpp): a token before the first request, one new
// token and one more send when etcd refuses it (HTTP 401, gRPC 16: nothing ran — a grant, a txn,
// a keep-alive or a revoke alike), the password and tokens redacted from every error. A refused
// authenticate (a wrong password) fails try_acquire (the lease map's lease_error, its message
// starting "authenticate failed") and makes extend / release `unknown`; it is never retried.
//
// The gateway JSON is read with nlohmann/json (the strict reads of adapters/etcd.hpp); link
// noclobber::etcd.
//
// Thread safety: one backend is one libcurl handle and one auth session (its token): one thread
// at a time (lease_lock_map serialises its calls under its own mutex). No user code runs inside.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "noclobber/adapters/detail/base64.hpp"
#include "noclobber/adapters/detail/curl_easy.hpp"
#include "noclobber/adapters/detail/redact.hpp"
#include "noclobber/adapters/etcd.hpp"
#include "noclobber/adapters/etcd/session.hpp"
#include "noclobber/lease_lock.hpp"

namespace noclobber::etcd {

/// Lease locks on etcd; see the overview. Not thread-safe (one HTTP handle).
class lease_backend {
  using json_value = nlohmann::json;

 public:
  using key_type = std::string;

  /// `endpoint`: a client URL "http(s)://host:port" (of a list "a,b", the first is used).
  explicit lease_backend(std::string endpoint, std::string prefix = "noclobber/lease/",
                         std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : lease_backend(std::move(endpoint), tls_files{}, std::move(prefix), timeout) {}

  /// Over TLS: `tls` as for etcd::store (the CA, and a client certificate and key).
  lease_backend(std::string endpoint, tls_files tls, std::string prefix = "noclobber/lease/",
                std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : lease_backend(std::move(endpoint), detail::etcd::session(), std::move(tls), std::move(prefix),
                      timeout) {}

  /// With etcd v3 auth (see the overview). std::invalid_argument for an empty user name.
  lease_backend(std::string endpoint, credentials creds, std::string prefix = "noclobber/lease/",
                std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : lease_backend(std::move(endpoint), std::move(creds), tls_files{}, std::move(prefix), timeout) {}

  /// With etcd v3 auth, over TLS.
  lease_backend(std::string endpoint, credentials creds, tls_files tls,
                std::string prefix = "noclobber/lease/",
                std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : lease_backend(std::move(endpoint),
                      detail::etcd::session(std::move(creds), "noclobber::etcd::lease_backend"),
                      std::move(tls), std::move(prefix), timeout) {}

  lease_attempt try_acquire(const key_type& key, std::chrono::milliseconds ttl) {
    check_key(key);
    // Phase 1: a lease of ceil(ttl) seconds.
    const std::int64_t seconds = std::max<std::int64_t>(1, (ttl.count() + 999) / 1000);
    answer g = call("/v3/lease/grant", {{"TTL", std::to_string(seconds)}});
    if (!g.ok) return {lease_status::failed, {}, g.error};
    const auto id = noclobber::json::int64_member(g.body, "ID");
    const auto granted = noclobber::json::int64_member(g.body, "TTL");
    if (!id || !granted) return {lease_status::failed, {}, {"json", "lease grant without ID or TTL"}};
    // etcd grants 1 to 9,000,000,000 s (MaxLeaseTTL); anything else is no grant, and a larger
    // figure would overflow the local deadline (seconds -> ns).
    if (*granted < 1 || *granted > max_lease_ttl_s) {
      return {lease_status::failed,
              {},
              {"json", "lease grant with TTL " + std::to_string(*granted) + " s, outside etcd's 1 to " +
                           std::to_string(max_lease_ttl_s)}};
    }
    const std::string owner = std::to_string(*id);
    // Phase 2: create the lock key under the lease, if nobody holds it.
    const std::string k = noclobber::detail::base64_encode(prefix_ + key);
    const json_value txn = {
        {"compare", json_value::array(
                        {{{"key", k}, {"target", "CREATE"}, {"create_revision", "0"}, {"result", "EQUAL"}}})},
        {"success",
         json_value::array(
             {{{"request_put",
                {{"key", k}, {"value", noclobber::detail::base64_encode(owner)}, {"lease", owner}}}}})}};
    answer t = call("/v3/kv/txn", txn);
    if (!t.ok) return {lease_status::failed, {}, t.error};
    const auto ok = t.body.find("succeeded");
    if (ok == t.body.end() || !ok->is_boolean() || !ok->get<bool>()) {
      (void)call("/v3/kv/lease/revoke", {{"ID", owner}});  // unused: it would expire anyway
      return {lease_status::busy, {}, {}};
    }
    const auto rev = detail::etcd::header_revision(t.body);
    if (!rev || *rev <= 0) return {lease_status::failed, {}, {"json", "txn answer without a revision"}};
    return {lease_status::acquired,
            lease_grant{static_cast<fencing_token>(*rev), owner, std::chrono::seconds(*granted)},
            {}};
  }

  lease_check extend(const key_type& key, const lease_grant& g, std::chrono::milliseconds /*ttl*/) {
    check_key(key);
    answer a = call("/v3/lease/keepalive", {{"ID", g.owner}});
    if (!a.ok) return lease_check::unknown;
    const auto r = a.body.find("result");
    const auto ttl = r != a.body.end() ? noclobber::json::int64_member(*r, "TTL") : std::nullopt;
    return ttl && *ttl > 0 ? lease_check::held : lease_check::lost;
  }

  lease_check release(const key_type& key, const lease_grant& g) {
    check_key(key);
    answer a = call("/v3/kv/lease/revoke", {{"ID", g.owner}});
    if (a.ok) return lease_check::held;
    return a.grpc_code == 5 ? lease_check::lost : lease_check::unknown;  // 5: NotFound (expired)
  }

  /// The etcd key that holds KEY's lock.
  [[nodiscard]] std::string lock_key(const key_type& key) const { return prefix_ + key; }
  /// How many tokens this backend has asked for (the first, and one per refused token).
  [[nodiscard]] std::size_t authentications() const noexcept { return session_.authentications(); }

 private:
  lease_backend(std::string endpoint, detail::etcd::session session, tls_files tls, std::string prefix,
                std::chrono::milliseconds timeout)
      : prefix_(std::move(prefix)), session_(std::move(session)), http_(timeout, std::move(tls)) {
    endpoint = endpoint.substr(0, endpoint.find(','));
    while (endpoint.ends_with('/')) endpoint.pop_back();
    if (!(endpoint.starts_with("http://") || endpoint.starts_with("https://")) || endpoint.size() < 9)
      throw std::invalid_argument("noclobber::etcd::lease_backend: endpoint '" +
                                  detail::redact_url(endpoint) + "' is not an http(s)://host:port URL");
    url_ = std::move(endpoint);
  }

  struct answer {
    bool ok = false;
    std::int64_t grpc_code = -1;
    store_error error;
    json_value body;  // an object (call() checks)
  };

  static constexpr std::int64_t max_lease_ttl_s = 9'000'000'000;  // etcd's MaxLeaseTTL

  static void check_key(const key_type& key) {
    if (key.empty()) throw std::invalid_argument("noclobber::etcd::lease_backend: empty lock key");
  }

  /// One request, authenticated when the backend has credentials (detail::etcd::session).
  answer call(const char* path, const json_value& request) {
    return session_.call(
        [&](const std::string& authorization) { return post(path, request, authorization); },
        [&](const json_value& body) { return post("/v3/auth/authenticate", body, std::string()); });
  }

  /// One POST; `authorization` is a header line or "".
  answer post(const char* path, const json_value& request, const std::string& authorization) {
    answer out;
    detail::curl::response r =
        http_.perform("POST", url_ + path, request.dump(), {"Content-Type: application/json", authorization});
    if (!r.transport_ok()) {
      out.error = {"curl " + std::to_string(static_cast<int>(r.code)),
                   r.error + " (" + detail::redact_url(url_) + ")"};
      return out;
    }
    auto doc = detail::etcd::parse_answer(r.body);
    if (doc && !doc->is_object()) doc.reset();
    if (r.status != 200 || !doc || doc->contains("error")) {
      out.grpc_code = doc ? noclobber::json::int64_member(*doc, "code").value_or(-1) : -1;
      out.error = {"http " + std::to_string(r.status) + " grpc " + std::to_string(out.grpc_code),
                   r.body.substr(0, 200)};
      return out;
    }
    out.ok = true;
    out.body = std::move(*doc);
    return out;
  }

  std::string prefix_;
  std::string url_;
  detail::etcd::session session_;  // credentials and token; no credentials: no auth
  detail::curl::easy http_;
};

static_assert(noclobber::lease_backend<lease_backend>);

}  // namespace noclobber::etcd
