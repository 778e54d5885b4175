// noclobber/adapters/etcd/session.hpp — etcd v3 auth as the etcd clients share it: the token
// from /v3/auth/authenticate, the one new token when etcd refuses one, and the redaction of the
// password and the token from every error.
//
// Overview
// --------
// `etcd::store` (adapters/etcd.hpp) and `etcd::lease_backend` (adapters/etcd_lease.hpp) each
// hold one `detail::etcd::session` and send every request through `session::call`:
//
//   session s;                                  // no credentials: requests go without a token
//   session s(credentials{user, password}, "noclobber::etcd::store");  // empty user: invalid_argument
//   answer a = s.call(send, authenticate);
//     send(authorization)   one request, with the header line `authorization` ("Authorization:
//                           TOKEN", or "" without credentials)
//     authenticate(body)    POST /v3/auth/authenticate of `body` ({name, password}), no token
//
// With credentials, `call` authenticates before the first request. A request refused for its
// token (HTTP 401, gRPC Unauthenticated 16: the token expired or was revoked; nothing ran) gets
// one new token and is sent once more — a write too. A refused authenticate (wrong password,
// unknown user: gRPC 3) ends the call with that answer, its message starting "authenticate
// failed: "; the caller classifies it like any error answer (permanent). Every error an answer
// carries out of `call` has the password and the current token redacted.
//
// An answer is the caller's type: default-constructible, with `bool ok`, `store_error error`
// (code "http STATUS grpc CODE" for an error answer) and `nlohmann::json body`.
//
// Thread safety: a session is used by one thread at a time (its client's). Calls only the two
// functions passed to `call`.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "noclobber/adapters/detail/redact.hpp"
#include "noclobber/json/members.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::etcd {

/// An etcd v3 auth user (adapters/etcd/session.hpp).
struct credentials {
  std::string user;
  std::string password;
};

}  // namespace noclobber::etcd

namespace noclobber::detail::etcd {

/// The error code of an answer refused for its token (expired or revoked): nothing ran.
inline constexpr std::string_view token_refused_code = "http 401 grpc 16";

class session {
 public:
  /// No credentials: requests go without a token.
  session() = default;

  /// With etcd v3 auth; `who` names the client in the exception for an empty user name.
  session(noclobber::etcd::credentials creds, std::string_view who) : creds_(std::move(creds)) {
    if (creds_.user.empty())
      throw std::invalid_argument(std::string(who) + ": credentials without a user name");
  }

  [[nodiscard]] bool has_credentials() const noexcept { return !creds_.user.empty(); }
  /// How many tokens this session has asked for (the first, and one per refused token).
  [[nodiscard]] std::size_t authentications() const noexcept { return authentications_; }

  /// One request through `send`, authenticated when the session has credentials (see the overview).
  template <class Send, class Authenticate>
  auto call(Send&& send, Authenticate&& authenticate) {
    if (!has_credentials()) return send(std::string());
    if (token_.empty()) {
      auto a = authenticate_now(authenticate);
      if (!a.ok) return a;
    }
    auto out = redacted(send(authorization()));
    if (out.ok || out.error.code != token_refused_code) return out;
    token_.clear();  // expired or revoked; the request did not run
    auto a = authenticate_now(authenticate);
    return a.ok ? redacted(send(authorization())) : a;
  }

 private:
  [[nodiscard]] std::string authorization() const { return "Authorization: " + token_; }

  template <class Answer>
  Answer redacted(Answer a) const {
    a.error = detail::redact(std::move(a.error), {creds_.password, token_});
    return a;
  }

  /// POST /v3/auth/authenticate; its token kept for the requests after it.
  template <class Authenticate>
  auto authenticate_now(Authenticate& authenticate) {
    ++authentications_;
    const nlohmann::json request = {{"name", creds_.user}, {"password", creds_.password}};
    auto a = redacted(authenticate(request));
    const std::string* token = a.ok ? noclobber::json::string_member(a.body, "token") : nullptr;
    if (a.ok && (token == nullptr || token->empty())) {
      a = decltype(a){};
      a.error = {"json", "authenticate answered no token"};
    }
    if (a.ok) token_ = *token;
    if (!a.ok) a.error.message = "authenticate failed: " + a.error.message;
    return a;
  }

  noclobber::etcd::credentials creds_;  // user empty: no auth
  std::string token_;                   // the current token ("" before the first authenticate)
  std::size_t authentications_ = 0;
};

}  // namespace noclobber::detail::etcd
