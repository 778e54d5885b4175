// noclobber/adapters/redis_lease.hpp — a lease_backend (noclobber/lease_lock.hpp) on one Redis
// server (hiredis 0.14).
//
// Overview
// --------
// Per lock key KEY the backend uses two Redis keys (one hash tag, so Redis Cluster keeps them
// in one slot): `PREFIX{KEY}` holds the current owner id with a PX expiry, `PREFIX{KEY}:fence`
// is a counter without expiry that numbers the grants.
//
//   try_acquire  EVAL: SET PREFIX{KEY} OWNER NX PX ttl; if it was set, INCR PREFIX{KEY}:fence and
//                return it (the fencing token), else 0 (busy). One round trip, one atomic step:
//                no grant without a token, no token without a grant.
//   extend       EVAL: if GET PREFIX{KEY} == OWNER then PEXPIRE ttl (compare-and-extend)
//   release      EVAL: if GET PREFIX{KEY} == OWNER then DEL (compare-and-delete)
//
// OWNER is random per grant (a random 64-bit id of this backend + a counter), so a holder whose
// lease ran out can never extend or delete the next holder's grant. The fence counter survives
// every grant and release, so on one server the token only grows.
//
// What it survives, and what it does not (say it plainly):
//   - a holder that crashes or is killed: the key expires after ttl, the next grant proceeds.
//   - a holder paused past ttl (GC, SIGSTOP): the server grants the key again, and the paused
//     holder does not know until it asks (renew/unlock answer `lost`, lost() once its local
//     deadline passes). Its late write must be refused by the store (fenced_read_modify_write).
//   - a Redis restart without persistence: lock *and fence counter* are gone: a second holder
//     can be granted at once and tokens start again at 1. With AOF (appendfsync always) both
//     survive.
//   - Sentinel (or any) failover: replication is asynchronous, so the promoted replica may lack
//     the last SET NX and the last INCR: two clients hold the "same" lock, and a token already
//     handed out can be handed out again (the counter goes back). WAIT narrows the window and
//     promises nothing (Jepsen, Redis Sentinel 2013). A lease lock on Redis is an efficiency
//     device; safety comes only from the conditional write behind it.
//   - clock: the TTL runs on the server's clock; a jump of the server's wall clock can expire
//     keys early (Redis 7 uses a monotonic clock for most expiries, older ones do not).
//
// Errors: a call that gets no answer (I/O error, timeout) drops the connection (the next call
// reconnects). try_acquire then answers `failed` — the grant may have happened; it expires after
// ttl — extend / release answer `unknown`. Error replies are `failed` / `unknown` with the
// server's words.
//
// Thread safety: one backend is one connection: one thread at a time (lease_lock_map serialises
// its calls under its own mutex). No user code runs inside.
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "noclobber/adapters/redis.hpp"
#include "noclobber/lease_lock.hpp"

namespace noclobber::redis {

namespace detail {
// KEYS[1] lock key, KEYS[2] fence key; ARGV[1] owner, ARGV[2] ttl ms. Token, or 0 when held.
inline constexpr const char* lease_acquire_script =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then "
    "return redis.call('INCR', KEYS[2]) end return 0";
// KEYS[1] lock key; ARGV[1] owner, ARGV[2] ttl ms. 1 extended, 0 not ours.
inline constexpr const char* lease_extend_script =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end "
    "return 0";
// KEYS[1] lock key; ARGV[1] owner. 1 deleted, 0 not ours.
inline constexpr const char* lease_release_script =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end return 0";
}  // namespace detail

/// Lease locks on one Redis server; see the overview. Not thread-safe (one connection).
class lease_backend {
 public:
  using key_type = std::string;

  /// Connects at once (AUTH and SELECT as `options` ask, again on every reconnect);
  /// std::runtime_error when the server cannot be reached or refuses the credentials.
  explicit lease_backend(connect_options options, std::string prefix = "noclobber:lease:")
      : options_(std::move(options)), prefix_(std::move(prefix)) {
    detail::check_options(options_, "lease_backend");
    std::random_device rd;
    id_ = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    if (!connect()) throw detail::connect_error(options_, "lease_backend", error_, failure_);
  }
  lease_backend(std::string host, int port, std::string prefix = "noclobber:lease:",
                std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : lease_backend(connect_options{std::move(host), port, {}, {}, 0, timeout}, std::move(prefix)) {}
  /// `addr` is "host:port" or redis://[user:password@]host[:port][/db].
  explicit lease_backend(std::string_view addr, std::string prefix = "noclobber:lease:")
      : lease_backend(options_from(addr), std::move(prefix)) {}

  lease_backend(const lease_backend&) = delete;
  lease_backend& operator=(const lease_backend&) = delete;
  lease_backend(lease_backend&&) noexcept = default;
  lease_backend& operator=(lease_backend&&) noexcept = default;
  ~lease_backend() = default;

  lease_attempt try_acquire(const key_type& key, std::chrono::milliseconds ttl) {
    check_key(key);
    if (!ensure_connected()) return {lease_status::failed, {}, error_};
    std::string owner = next_owner();
    const std::string ms = std::to_string(ttl.count());
    detail::reply_ptr r = eval(detail::lease_acquire_script, {lock_key(key), fence_key(key)}, owner, ms);
    if (!r) return {lease_status::failed, {}, error_};  // it may have been granted: expires after ttl
    if (r->type == REDIS_REPLY_ERROR) return {lease_status::failed, {}, server_error(r.get())};
    // The script answers 0 or INCR's result (>= 1); a negative number grants nothing.
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0)
      return {lease_status::failed, {}, {"EVAL", "unexpected reply"}};
    if (r->integer == 0) return {lease_status::busy, {}, {}};
    return {lease_status::acquired,
            lease_grant{static_cast<fencing_token>(r->integer), std::move(owner), ttl},
            {}};
  }

  lease_check extend(const key_type& key, const lease_grant& g, std::chrono::milliseconds ttl) {
    return compare(detail::lease_extend_script, key, g, std::to_string(ttl.count()));
  }

  lease_check release(const key_type& key, const lease_grant& g) {
    return compare(detail::lease_release_script, key, g, {});
  }

  /// The Redis key that holds KEY's owner (for tests and tools).
  [[nodiscard]] std::string lock_key(const key_type& key) const { return prefix_ + "{" + key + "}"; }
  /// The Redis key that counts KEY's grants.
  [[nodiscard]] std::string fence_key(const key_type& key) const { return prefix_ + "{" + key + "}:fence"; }
  /// The last error (empty if none).
  [[nodiscard]] const store_error& last_error() const noexcept { return error_; }

 private:
  static void check_key(const key_type& key) {
    if (key.empty()) throw std::invalid_argument("noclobber::redis::lease_backend: empty lock key");
  }

  bool connect() {
    ctx_ = detail::connect(options_, error_, failure_);
    return ctx_ != nullptr;
  }
  bool ensure_connected() { return (ctx_ && ctx_->err == 0) || connect(); }

  /// EVAL script with two keys (or one when keys.second is empty) and ARGV owner[, arg].
  detail::reply_ptr eval(const char* script, std::pair<std::string, std::string> keys,
                         const std::string& owner, const std::string& arg) {
    detail::reply_ptr r;
    if (keys.second.empty()) {
      r = arg.empty() ? detail::command(ctx_.get(), {"EVAL", script, "1", keys.first, owner})
                      : detail::command(ctx_.get(), {"EVAL", script, "1", keys.first, owner, arg});
    } else {
      r = detail::command(ctx_.get(), {"EVAL", script, "2", keys.first, keys.second, owner, arg});
    }
    if (!r) {
      error_ = {"IO", ctx_->errstr[0] != '\0' ? std::string(ctx_->errstr) : std::string("no reply")};
      ctx_.reset();  // the next call reconnects
    }
    return r;
  }

  lease_check compare(const char* script, const key_type& key, const lease_grant& g, const std::string& arg) {
    check_key(key);
    if (g.owner.empty())
      throw std::invalid_argument("noclobber::redis::lease_backend: grant without an owner");
    if (!ensure_connected()) return lease_check::unknown;
    detail::reply_ptr r = eval(script, {lock_key(key), {}}, g.owner, arg);
    if (!r) return lease_check::unknown;
    if (r->type == REDIS_REPLY_ERROR) {
      error_ = server_error(r.get());
      return lease_check::unknown;
    }
    if (r->type != REDIS_REPLY_INTEGER) return lease_check::unknown;
    return r->integer == 1 ? lease_check::held : lease_check::lost;
  }

  /// An error reply as the store's words, the password redacted (a server may echo it).
  store_error server_error(const redisReply* r) const {
    if (options_.password.empty()) return detail::error_of(r);
    return noclobber::detail::redact(detail::error_of(r),
                                     {options_.password, options_.username + ":" + options_.password});
  }

  std::string next_owner() {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%016llx-%llu", static_cast<unsigned long long>(id_),
                  static_cast<unsigned long long>(++grants_));
    return buf;
  }

  connect_options options_;
  std::string prefix_;
  detail::context_ptr ctx_;
  std::uint64_t id_ = 0;
  std::uint64_t grants_ = 0;
  store_error error_;
  write_status failure_ = write_status::transient;  // why the last connect failed (constructor message)
};

static_assert(noclobber::lease_backend<lease_backend>);

}  // namespace noclobber::redis
