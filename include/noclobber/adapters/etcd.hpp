// noclobber/adapters/etcd.hpp — etcd v3 through its JSON gateway (libcurl): compare mod_revision.
//
// Overview
// --------
// etcd versions every key with `mod_revision` (the cluster revision of its last write), and its
// transactions compare and write in one step. `etcd::store` speaks the gateway's JSON
// (`POST /v3/kv/range`, `POST /v3/kv/txn`; keys and values base64, int64 as strings):
//
//   read              range(key)                  -> value, token = kvs[0].mod_revision
//   write_if_match    txn { MOD(key) == token } then put, else range(key)
//                     succeeded -> applied, token = header.revision (the put's revision)
//                     failed    -> conflict, or absent when the else-range found no key
//   create_if_absent  txn { CREATE(key) == 0 } then put, else range  (failed -> exists)
//   erase_if_match    txn { MOD(key) == token } then delete_range
//
// Revisions only grow, so tokens never repeat (no ABA). The gateway omits `succeeded` when the
// compare failed, `kvs` when a range found nothing, and a `value` that is empty.
//
// The gateway's JSON is read and written with nlohmann/json (as noclobber/json/codec.hpp; link
// noclobber::json and libcurl); int64 members through json/members.hpp. Decoding is strict (`detail::` below,
// tested without a server): an answer that is not JSON, a `value` that is not a base64 string, and an int64
// field
// (`mod_revision`, `revision`, `code`) that is not an integer in int64's range — a JSON string
// of an optional '-' and digits, or a JSON integer — are malformed answers, never read as 0 or
// as an empty value.
//
// Errors: a request sent without an answer (timeout, reset) is `indeterminate` for a write:
// etcd may have committed it, so resolve by re-reading, never by calling it a conflict. gRPC
// codes in the gateway's error body: Unavailable (14), DeadlineExceeded (4) and Aborted (10) are
// indeterminate for writes and transient for reads; ResourceExhausted (8) and everything else
// (InvalidArgument 3, e.g. a request over --max-request-bytes) are permanent.
//
// Authentication (etcd v3 auth, `credentials{user, password}`): before its first request the
// store POSTs /v3/auth/authenticate for a token and sends it as the Authorization header of
// every request. A request refused for its token (HTTP 401, gRPC Unauthenticated 16: the token
// expired or was revoked; nothing ran) gets one new token and is sent once more. A refused
// authenticate (wrong password, unknown user: gRPC 3) is permanent, like a request sent without
// credentials to a server that requires them ("user name is empty"). Neither the password nor
// a token appears in any store_error or exception. The rule lives in adapters/etcd/session.hpp,
// shared with the lease backend.
//
// TLS (https:// endpoints, `tls_files`: the CA that signed etcd's certificate, and the client
// certificate and key for an etcd run with --client-cert-auth): applied to every request, the
// authenticate too. A TLS refusal (we refuse etcd's certificate; etcd refuses ours with an
// alert; a file that cannot be used) is permanent and does not move to the next member
// (detail::curl::tls_refused). Under TLS 1.3 a missing client certificate can also surface as a
// bare connection reset (curl 55): that stays transient (indeterminate for a write).
//
// Several members: give the store every member's client URL ("http://a:2379,http://b:2379" or
// a vector). It talks to one member at a time and moves to the next when that member fails
// (no connection, a timeout, a reset, gRPC Unavailable / DeadlineExceeded, a 5xx): a read tries
// each member once within the call (reading twice changes nothing); a write is never sent again
// — its answer stays indeterminate (or transient when nothing left) and the *next* call goes to
// the next member. Reads are linearizable (the gateway's default), so the re-read that resolves
// an indeterminate write sees it on any member if it committed.
//
// Thread safety: a `store` is one libcurl handle (one keep-alive connection) and one auth
// session (its token): one thread at a time. No user code is called.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "noclobber/adapters/detail/base64.hpp"
#include "noclobber/adapters/detail/curl_easy.hpp"
#include "noclobber/adapters/detail/redact.hpp"
#include "noclobber/adapters/etcd/session.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/json/members.hpp"
#include "noclobber/outcome.hpp"

// The gateway JSON, decoded strictly (see the overview); pure functions, tested without a server.
namespace noclobber::detail::etcd {

using json = nlohmann::json;
using noclobber::json::int64_member;
using noclobber::json::string_member;

/// A gateway answer as JSON; nullopt when it is not JSON (json::parse_text: a NUL byte too).
[[nodiscard]] inline std::optional<json> parse_answer(std::string_view body) {
  return noclobber::json::parse_text(body);
}

/// A range answer (top-level, or inside a txn's response) -> read_result.
template <class RR>
[[nodiscard]] RR range_answer(const json& range) {
  const auto kvs = range.is_object() ? range.find("kvs") : range.end();
  if (!range.is_object() || kvs == range.end() || !kvs->is_array() || kvs->empty()) return RR::make_absent();
  const json& kv = kvs->front();
  const auto rev = int64_member(kv, "mod_revision");
  std::optional<std::string> value;  // a base64 string; the gateway omits an empty value
  if (!kv.is_object() || !kv.contains("value")) {
    value = "";
  } else if (const std::string* text = string_member(kv, "value")) {
    value = base64_decode(*text);
  }
  if (!rev || !value) return RR::make_failed(read_status::permanent, {"json", "malformed kv in etcd answer"});
  return RR::make_found(std::move(*value), *rev);
}

/// The revision in a write answer's header, when there is a well-formed one.
[[nodiscard]] inline std::optional<std::int64_t> header_revision(const json& doc) {
  const auto h = doc.is_object() ? doc.find("header") : doc.end();
  return doc.is_object() && h != doc.end() ? int64_member(*h, "revision") : std::nullopt;
}

/// A txn answer -> write_result. `succeeded` true: applied (with header.revision for a put);
/// otherwise `exists` for a create, or the failure branch's range tells a moved key (conflict)
/// from a missing one (absent).
[[nodiscard]] inline write_result<std::int64_t> txn_answer(const json& doc, write_status on_compare_failed,
                                                           bool is_put) {
  using wr = write_result<std::int64_t>;
  const auto succeeded = doc.is_object() ? doc.find("succeeded") : doc.end();
  if (doc.is_object() && succeeded != doc.end() && succeeded->is_boolean() && succeeded->get<bool>()) {
    if (!is_put) return wr::make_applied();
    const auto rev = header_revision(doc);
    return rev ? wr::make_applied(*rev) : wr::make_applied();
  }
  if (on_compare_failed == write_status::exists) return wr::make_exists();
  const auto responses = doc.is_object() ? doc.find("responses") : doc.end();
  const json* range = nullptr;
  if (doc.is_object() && responses != doc.end() && responses->is_array() && !responses->empty() &&
      responses->front().is_object()) {
    const auto r = responses->front().find("response_range");
    if (r != responses->front().end() && r->is_object()) range = &*r;
  }
  if (range == nullptr)
    return wr::make_failed(write_status::permanent, {"json", "txn answer without its range"});
  const auto kvs = range->find("kvs");
  const bool found = kvs != range->end() && kvs->is_array() && !kvs->empty();
  return found ? wr::make_conflict() : wr::make_absent();
}

}  // namespace noclobber::detail::etcd

namespace noclobber::etcd {

/// The CA, client certificate and key for https:// endpoints (adapters/detail/curl_easy.hpp).
using noclobber::tls_files;

// credentials{user, password}: an etcd v3 auth user, declared in adapters/etcd/session.hpp.

class store {
 public:
  using key_type = std::string;
  using value_type = std::string;
  using token_type = std::int64_t;  // mod_revision

  /// `endpoints`: one client URL "http(s)://host:port", or several separated by commas (the
  /// members of one cluster; the first is used first). std::invalid_argument otherwise.
  explicit store(const std::string& endpoints, std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : store(split_endpoints(endpoints), timeout) {}

  /// Over TLS (https:// endpoints; see the overview). std::invalid_argument for a key_file
  /// without a cert_file.
  store(const std::string& endpoints, tls_files tls,
        std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : store(split_endpoints(endpoints), std::move(tls), timeout) {}

  /// With etcd v3 auth: a token from /v3/auth/authenticate on every request (see the overview).
  store(const std::string& endpoints, credentials creds,
        std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : store(endpoints, std::move(creds), tls_files{}, timeout) {}

  /// With etcd v3 auth, over TLS.
  store(const std::string& endpoints, credentials creds, tls_files tls,
        std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : store(split_endpoints(endpoints), std::move(tls), timeout) {
    session_ = detail::etcd::session(std::move(creds), "noclobber::etcd::store");
  }

  /// The members' client URLs, the first used first.
  explicit store(std::vector<std::string> endpoints,
                 std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : store(std::move(endpoints), tls_files{}, timeout) {}

  /// The members' client URLs, over TLS.
  store(std::vector<std::string> endpoints, tls_files tls,
        std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : http_(timeout, std::move(tls)) {
    if (endpoints.empty()) throw std::invalid_argument("noclobber::etcd::store: no endpoint");
    for (std::string& e : endpoints) {
      if (!(e.starts_with("http://") || e.starts_with("https://")) || e.size() < 9 ||
          e.find(',') != std::string::npos) {
        throw std::invalid_argument("noclobber::etcd::store: endpoint '" + detail::redact_url(e) +
                                    "' is not an http(s)://host:port URL");
      }
      while (e.ends_with('/')) e.pop_back();
      members_.push_back(
          {e, e + "/v3/kv/range", e + "/v3/kv/txn", e + "/v3/kv/put", e + "/v3/auth/authenticate"});
    }
  }

  read_result<value_type, token_type> read(const key_type& key) {
    using rr = read_result<value_type, token_type>;
    check_key(key);
    const detail::etcd::json body = {{"key", detail::base64_encode(key)}};
    auto doc = call(&member::range, body, false);
    // A read changes nothing: try each other member once before answering a failure.
    for (std::size_t tried = 1; !doc.ok && doc.moved && tried < members_.size(); ++tried) {
      doc = call(&member::range, body, false);
    }
    if (!doc.ok) return rr::make_failed(as_read(doc.status), std::move(doc.error));
    return detail::etcd::range_answer<rr>(doc.body);
  }

  write_result<token_type> write_if_match(const key_type& key, const token_type& token,
                                          const value_type& value) {
    check_key(key);
    const std::string k = detail::base64_encode(key);
    return txn(k, mod_equals(k, token), put(k, value), write_status::conflict, true);
  }

  write_result<token_type> create_if_absent(const key_type& key, const value_type& value) {
    check_key(key);
    const std::string k = detail::base64_encode(key);
    const detail::etcd::json absent = {
        {"key", k}, {"target", "CREATE"}, {"create_revision", "0"}, {"result", "EQUAL"}};
    return txn(k, absent, put(k, value), write_status::exists, true);
  }

  write_result<token_type> erase_if_match(const key_type& key, const token_type& token) {
    check_key(key);
    const std::string k = detail::base64_encode(key);
    const detail::etcd::json erase = {{"request_delete_range", {{"key", k}}}};
    return txn(k, mod_equals(k, token), erase, write_status::conflict, false);
  }

  /// The unconditional put that loses updates (negative control only).
  write_result<token_type> overwrite(const key_type& key, const value_type& value) {
    using wr = write_result<token_type>;
    check_key(key);
    auto doc = call(&member::put, put(detail::base64_encode(key), value)["request_put"], true);
    if (!doc.ok) return wr::make_failed(doc.status, std::move(doc.error));
    const auto rev = detail::etcd::header_revision(doc.body);
    return rev ? wr::make_applied(*rev) : wr::make_applied();
  }

  /// The member the next call goes to.
  [[nodiscard]] const std::string& endpoint() const noexcept { return members_[current_].url; }
  /// Every member's URL, in the order given.
  [[nodiscard]] std::vector<std::string> endpoints() const {
    std::vector<std::string> out;
    for (const member& m : members_) out.push_back(m.url);
    return out;
  }
  /// How many times a failing member made the store move to the next one.
  [[nodiscard]] std::size_t member_switches() const noexcept { return switches_; }
  /// How many tokens this store has asked for (the first, and one per expired token).
  [[nodiscard]] std::size_t authentications() const noexcept { return session_.authentications(); }

 private:
  struct member {
    std::string url, range, txn, put, auth;
  };
  struct answer {
    bool ok = false;
    bool moved = false;  // the member failed; the next call goes to another
    write_status status = write_status::permanent;
    store_error error;
    detail::etcd::json body;
  };

  static std::vector<std::string> split_endpoints(const std::string& list) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (;;) {
      const std::size_t comma = list.find(',', start);
      out.push_back(list.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) return out;
      start = comma + 1;
    }
  }

  // The member failed as a member (not the request): use the next one from the next call on.
  void move_on(answer& a) {
    if (members_.size() < 2) return;
    current_ = (current_ + 1) % members_.size();
    ++switches_;
    a.moved = true;
  }

  static void check_key(const key_type& key) {
    if (key.empty()) throw std::invalid_argument("noclobber::etcd::store: empty key");
  }
  static read_status as_read(write_status s) noexcept {
    return s == write_status::permanent ? read_status::permanent : read_status::transient;
  }

  static detail::etcd::json mod_equals(const std::string& k, token_type token) {
    return {{"key", k}, {"target", "MOD"}, {"mod_revision", std::to_string(token)}, {"result", "EQUAL"}};
  }
  static detail::etcd::json put(const std::string& k, const value_type& value) {
    return {{"request_put", {{"key", k}, {"value", detail::base64_encode(value)}}}};
  }

  /// One request, authenticated when the store has credentials (detail::etcd::session: a token
  /// first if it has none, and once more with a new token when the server refused this one).
  answer call(std::string member::*url, const detail::etcd::json& request, bool may_write) {
    return session_.call(
        [&](const std::string& authorization) { return send(url, request, may_write, authorization); },
        [&](const detail::etcd::json& body) { return send(&member::auth, body, false, std::string()); });
  }

  /// One POST to the current member; `authorization` is a header line or "".
  answer send(std::string member::*url, const detail::etcd::json& request, bool may_write,
              const std::string& authorization) {
    answer out;
    const member& m = members_[current_];
    detail::curl::response r =
        http_.perform("POST", m.*url, request.dump(), {"Content-Type: application/json", authorization});
    if (!r.transport_ok()) {
      out.status = detail::curl::classify_transport(r, may_write);
      out.error = {"curl " + std::to_string(static_cast<int>(r.code)),
                   r.error + " (" + detail::redact_url(m.url) + ")"};
      if (out.status != write_status::permanent) move_on(out);
      return out;
    }
    auto doc = detail::etcd::parse_answer(r.body);
    if (r.status != 200 || !doc || (doc->is_object() && doc->contains("error"))) {
      // gRPC status in the gateway's error body.
      const std::int64_t c = (doc ? detail::etcd::int64_member(*doc, "code") : std::nullopt).value_or(-1);
      if (c == 14 || c == 4 || c == 10 || (c == -1 && r.status >= 500)) {
        out.status = may_write ? write_status::indeterminate : write_status::transient;
        if (c != 10) move_on(out);  // Unavailable, DeadlineExceeded, 5xx: this member cannot serve now
      } else {
        out.status = write_status::permanent;
      }
      const std::string* msg = doc ? detail::etcd::string_member(*doc, "message") : nullptr;
      out.error = {"http " + std::to_string(r.status) + " grpc " + std::to_string(c),
                   msg != nullptr ? *msg : r.body.substr(0, 200)};
      return out;
    }
    out.ok = true;
    out.status = write_status::applied;
    out.body = std::move(*doc);
    return out;
  }

  // txn { compare } success [ then ] failure [ range(key) ].
  write_result<token_type> txn(const std::string& k, const detail::etcd::json& compare,
                               const detail::etcd::json& then, write_status on_compare_failed, bool is_put) {
    const detail::etcd::json request = {
        {"compare", detail::etcd::json::array({compare})},
        {"success", detail::etcd::json::array({then})},
        {"failure", detail::etcd::json::array({{{"request_range", {{"key", k}}}}})}};
    auto doc = call(&member::txn, request, true);
    if (!doc.ok) return write_result<token_type>::make_failed(doc.status, std::move(doc.error));
    return detail::etcd::txn_answer(doc.body, on_compare_failed, is_put);
  }

  std::vector<member> members_;
  std::size_t current_ = 0;  // the member calls go to
  std::size_t switches_ = 0;
  detail::etcd::session session_;  // credentials and token; no credentials: no auth
  detail::curl::easy http_;
};

static_assert(check_conditional_writer<store>());

}  // namespace noclobber::etcd
