// noclobber/adapters/redis.hpp — Redis (hiredis 0.14): WATCH/MULTI/EXEC, SET NX, and a Lua CAS.
//
// Overview
// --------
// Redis has no version per key, so `redis::store` keeps one in the value: each stored string is a
// 32-hex-digit version stamp followed by the user's bytes. A stamp is (this connection's random
// 64-bit id, a per-connection counter), so no two writes ever share one (no ABA, also across erase
// and re-create). The token a read returns is that stamp.
//
//   create_if_absent   SET key stamp+value NX                     (nil reply = exists)
//   write_if_match     method::watch_multi_exec (default), two round trips:
//                        WATCH key + GET key (compare stamp); MULTI + SET + EXEC (EXEC nil = conflict)
//                      method::lua_compare_and_set:
//                        EVALSHA of a script that compares the stamp and SETs in one step
//   erase_if_match     the same two ways, with DEL
//
// WATCH state is per connection, which is what makes pooled connections dangerous: a connection
// handed back to a pool with a WATCH still armed makes the next borrower's EXEC fail (or, worse,
// succeed against the wrong snapshot). This adapter never lets WATCH outlive a call: every path
// out of write_if_match / erase_if_match has run EXEC, DISCARD or UNWATCH, and after an I/O error
// the connection is closed and reopened on the next call (a new connection has no WATCH). So a
// `store` may be returned to a pool between any two calls (`store_pool` below does exactly that).
//
// Errors: an EXEC whose answer was lost (timeout, dropped connection) is `indeterminate`; so is
// an EXEC or EVALSHA answer of a shape the adapter does not expect (the write may have run), and a
// refused MULTI whose write then ran on its own, without the compare (a proxy without
// transactions, an ACL without MULTI: use method::lua_compare_and_set there); an I/O error before
// anything was sent to write is `transient`; LOADING, BUSY, TRYAGAIN, MASTERDOWN, READONLY, OOM
// and CLUSTERDOWN replies are `transient`; other error replies are `permanent`.
//
// A record kept as a hash (one field per member plus a version field) is redis/hash_store.hpp;
// both stores sit on redis/connection.hpp (reconnects, pipelines, MULTI/EXEC, scripts).
//
// Thread safety: a `store` is one connection: one thread at a time. `store_pool` is thread-safe
// (one std::mutex around its free list; no user code runs under it).
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "noclobber/adapters/redis/connection.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber::redis {

namespace detail {
inline constexpr std::size_t stamp_size = 32;

// KEYS[1] = key, ARGV[1] = expected stamp, ARGV[2] = new stamp+value or "" to delete.
// Returns 2 applied, 1 conflict, 0 absent.
inline constexpr const char* cas_script =
    "local cur = redis.call('GET', KEYS[1]) "
    "if not cur then return 0 end "
    "if string.sub(cur, 1, 32) ~= ARGV[1] then return 1 end "
    "if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end "
    "return 2";

/// "<id><counter>" as 32 hex digits: a version stamp no other write has (see the overview).
inline std::string make_stamp(std::uint64_t id, std::uint64_t counter) {
  char buf[stamp_size + 1];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(id),
                static_cast<unsigned long long>(counter));
  return std::string(buf, stamp_size);
}

/// A random 64-bit id for this process's stamps.
inline std::uint64_t random_id() {
  std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}
}  // namespace detail

/// One Redis connection with versioned values; see the overview. Not thread-safe.
class store {
 public:
  using key_type = std::string;
  using value_type = std::string;
  using token_type = std::string;  // the 32-hex-digit version stamp

  /// Connects at once; throws std::runtime_error when the server cannot be reached.
  store(std::string host, int port, method m = method::watch_multi_exec,
        std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : conn_(std::move(host), port, timeout, "store"), method_(m), id_(detail::random_id()) {}
  /// `addr` is "host:port".
  explicit store(std::string_view addr, method m = method::watch_multi_exec)
      : store(parse_address(addr).first, parse_address(addr).second, m) {}

  store(const store&) = delete;
  store& operator=(const store&) = delete;
  store(store&& o) noexcept = default;
  store& operator=(store&& o) noexcept = default;
  ~store() = default;

  [[nodiscard]] method write_method() const noexcept { return method_; }
  /// The raw connection (nullptr while disconnected), for tests and for commands of your own.
  /// Leave it as you found it: no WATCH or MULTI pending.
  [[nodiscard]] redisContext* native_handle() const noexcept { return conn_.native_handle(); }

  read_result<value_type, token_type> read(const key_type& key) {
    using rr = read_result<value_type, token_type>;
    if (!conn_.ensure_connected()) return rr::make_failed(read_status::transient, conn_.error());
    detail::reply_ptr r = conn_.command({"GET", key});
    if (!r) return rr::make_failed(read_status::transient, conn_.error());
    if (r->type == REDIS_REPLY_NIL) return rr::make_absent();
    if (r->type == REDIS_REPLY_ERROR) {
      return rr::make_failed(detail::as_read(detail::error_status(r.get())), detail::error_of(r.get()));
    }
    token_type stamp;
    value_type value;
    if (!split(r.get(), stamp, value)) {
      return rr::make_failed(read_status::permanent,
                             {"format", "key '" + key + "' holds a value without a noclobber version stamp"});
    }
    return rr::make_found(std::move(value), std::move(stamp));
  }

  write_result<token_type> create_if_absent(const key_type& key, const value_type& value) {
    using wr = write_result<token_type>;
    if (!conn_.ensure_connected()) return wr::make_failed(write_status::transient, conn_.error());
    token_type stamp = next_stamp();
    detail::reply_ptr r = conn_.command({"SET", key, stamp + value, "NX"});
    if (!r) return wr::make_failed(write_status::indeterminate, conn_.error());
    if (r->type == REDIS_REPLY_NIL) return wr::make_exists();
    if (r->type == REDIS_REPLY_ERROR) return error_reply(r.get());
    return wr::make_applied(std::move(stamp));
  }

  write_result<token_type> write_if_match(const key_type& key, const token_type& token,
                                          const value_type& value) {
    return compare_and(key, token, &value);
  }

  write_result<token_type> erase_if_match(const key_type& key, const token_type& token) {
    return compare_and(key, token, nullptr);
  }

  /// The unconditional SET that loses updates (negative control only).
  write_result<token_type> overwrite(const key_type& key, const value_type& value) {
    using wr = write_result<token_type>;
    if (!conn_.ensure_connected()) return wr::make_failed(write_status::transient, conn_.error());
    token_type stamp = next_stamp();
    detail::reply_ptr r = conn_.command({"SET", key, stamp + value});
    if (!r) return wr::make_failed(write_status::indeterminate, conn_.error());
    if (r->type == REDIS_REPLY_ERROR) return error_reply(r.get());
    return wr::make_applied(std::move(stamp));
  }

 private:
  token_type next_stamp() { return detail::make_stamp(id_, ++counter_); }

  static bool split(const redisReply* r, token_type& stamp, value_type& value) {
    if (r->type != REDIS_REPLY_STRING || r->len < static_cast<decltype(r->len)>(detail::stamp_size))
      return false;
    for (std::size_t i = 0; i < detail::stamp_size; ++i) {
      const char c = r->str[i];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    stamp.assign(r->str, detail::stamp_size);
    value.assign(r->str + detail::stamp_size, static_cast<std::size_t>(r->len) - detail::stamp_size);
    return true;
  }

  static write_result<token_type> error_reply(const redisReply* r) {
    return write_result<token_type>::make_failed(detail::error_status(r), detail::error_of(r));
  }

  /// `value` null = erase.
  write_result<token_type> compare_and(const key_type& key, const token_type& token,
                                       const value_type* value) {
    using wr = write_result<token_type>;
    if (token.size() != detail::stamp_size) {
      throw std::invalid_argument("noclobber::redis::store: token '" + token +
                                  "' is not a 32-hex-digit version stamp");
    }
    if (!conn_.ensure_connected()) return wr::make_failed(write_status::transient, conn_.error());
    token_type stamp = value ? next_stamp() : token_type();
    return method_ == method::lua_compare_and_set ? lua_cas(key, token, value, std::move(stamp))
                                                  : watch_cas(key, token, value, std::move(stamp));
  }

  write_result<token_type> watch_cas(const key_type& key, const token_type& token, const value_type* value,
                                     token_type stamp) {
    using wr = write_result<token_type>;
    // Nothing is written before EXEC: an I/O error up to there is transient. WATCH and GET go
    // out in one pipeline (one round trip); GET runs after WATCH, so it sees the watched state.
    conn_.append({"WATCH", key});
    conn_.append({"GET", key});
    detail::reply_ptr w = conn_.get_reply();
    detail::reply_ptr cur = w ? conn_.get_reply() : nullptr;
    if (!cur) return wr::make_failed(write_status::transient, conn_.error());
    if (w->type == REDIS_REPLY_ERROR) return conn_.unwatch_and(error_reply(w.get()));
    if (cur->type == REDIS_REPLY_ERROR) return conn_.unwatch_and(error_reply(cur.get()));
    if (cur->type == REDIS_REPLY_NIL) return conn_.unwatch_and(wr::make_absent());
    if (cur->type != REDIS_REPLY_STRING || static_cast<std::size_t>(cur->len) < detail::stamp_size ||
        std::string_view(cur->str, detail::stamp_size) != token) {
      return conn_.unwatch_and(wr::make_conflict());
    }
    // MULTI, the write and EXEC go out in one pipeline; EXEC clears the WATCH whatever happens.
    const std::string payload = value ? stamp + *value : std::string();
    std::optional<detail::multi_refusal> refused;
    detail::reply_ptr exec = conn_.transaction(
        {value ? detail::command_args{"SET", key, payload} : detail::command_args{"DEL", key}}, refused);
    if (refused) return wr::make_failed(refused->status, std::move(refused->error));
    if (!exec) return wr::make_failed(write_status::indeterminate, conn_.error());  // EXEC may have run
    if (exec->type == REDIS_REPLY_NIL) return wr::make_conflict();                  // a watched key changed
    if (exec->type == REDIS_REPLY_ERROR) return error_reply(exec.get());            // EXECABORT: nothing ran
    if (exec->type != REDIS_REPLY_ARRAY || exec->elements != 1) {                   // the write may have run
      return wr::make_failed(write_status::indeterminate, {"EXEC", "unexpected EXEC reply"});
    }
    if (exec->element[0]->type == REDIS_REPLY_ERROR) return error_reply(exec->element[0]);
    return value ? wr::make_applied(std::move(stamp)) : wr::make_applied();
  }

  write_result<token_type> lua_cas(const key_type& key, const token_type& token, const value_type* value,
                                   token_type stamp) {
    using wr = write_result<token_type>;
    const std::string payload = value ? stamp + *value : std::string();
    write_status failed = write_status::permanent;
    store_error error;
    auto r = script_.run(conn_, {"1", key, token, payload}, write_status::indeterminate, failed, error);
    if (!r) return wr::make_failed(failed, std::move(error));
    // Anything but the script's 0, 1 or 2: the script (or something else) ran; it may have written.
    if ((*r)->type != REDIS_REPLY_INTEGER || (*r)->integer < 0 || (*r)->integer > 2)
      return wr::make_failed(write_status::indeterminate, {"EVALSHA", "unexpected reply"});
    if ((*r)->integer == 0) return wr::make_absent();
    if ((*r)->integer == 1) return wr::make_conflict();
    return value ? wr::make_applied(std::move(stamp)) : wr::make_applied();
  }

  detail::connection conn_;
  method method_ = method::watch_multi_exec;
  std::uint64_t id_ = 0;
  std::uint64_t counter_ = 0;
  detail::lua_script script_{detail::cas_script};
};

static_assert(check_conditional_writer<store>());

/// A fixed set of `store`s shared by many threads: lease one, use it, it goes back when the lease
/// ends. Safe because a store never leaves WATCH or MULTI armed between calls (see overview).
/// Thread-safe; lease() blocks while all stores are out.
class store_pool {
 public:
  store_pool(std::string_view addr, std::size_t size, method m = method::watch_multi_exec) {
    if (size == 0)
      throw std::invalid_argument("noclobber::redis::store_pool: size must be at least 1, got 0");
    for (std::size_t i = 0; i < size; ++i) free_.push_back(std::make_unique<store>(addr, m));
  }

  class lease {
   public:
    lease(store_pool& p, std::unique_ptr<store> s) : pool_(&p), store_(std::move(s)) {}
    lease(lease&&) noexcept = default;
    lease& operator=(lease&&) = delete;
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    ~lease() {
      if (store_) pool_->give_back(std::move(store_));
    }
    store& operator*() const noexcept { return *store_; }
    store* operator->() const noexcept { return store_.get(); }

   private:
    store_pool* pool_;
    std::unique_ptr<store> store_;
  };

  [[nodiscard]] lease acquire() {
    std::unique_ptr<store> s;
    {
      annotated_lock lock(mu_);
      // cv waits on the native mutex, which `lock` holds (adopted; released again before `lock` ends).
      std::unique_lock<std::mutex> native(mu_.native(), std::adopt_lock);
      while (free_.empty()) cv_.wait(native);
      (void)native.release();
      s = std::move(free_.back());
      free_.pop_back();
    }
    return lease(*this, std::move(s));
  }

 private:
  void give_back(std::unique_ptr<store> s) {
    {
      annotated_lock lock(mu_);
      free_.push_back(std::move(s));
    }
    cv_.notify_one();
  }

  annotated_mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<store>> free_ NOCLOBBER_GUARDED_BY(mu_);
};

}  // namespace noclobber::redis
