// noclobber/adapters/redis/connection.hpp — what the Redis stores share: one hiredis connection
// that reconnects after an I/O error, pipelined commands, MULTI/EXEC, Lua scripts by SHA, and
// the classification of Redis error replies.
//
// Overview
// --------
// `redis::store` (adapters/redis.hpp: a versioned string) and `redis::hash_store`
// (adapters/redis/hash_store.hpp: a record as a hash) both sit on `detail::connection`:
//
//   connection c(host, port, timeout, "store");   // connects at once, or throws
//   c.append({"WATCH", key}); c.append({"GET", key});      // one pipeline, one round trip
//   reply_ptr w = c.get_reply(), v = w ? c.get_reply() : nullptr;   // nullptr: I/O error
//
// After an I/O error the connection is closed (`c.error()` says why) and the next call that
// needs it reconnects. A new connection has no WATCH, no MULTI and no loaded script, which is
// why dropping it is always safe; `epoch()` counts connects, so `lua_script` knows when its
// SHA must be loaded again.
//
// Every connect and reconnect authenticates and selects the database of its connect_options
// (adapters/redis/options.hpp) before anything else; a refused AUTH or SELECT is classified by
// `error_status` like any error reply (WRONGPASS, NOAUTH: permanent) and reported by
// `connect_failure()`, with the password redacted.
//
// Errors: `error_status` maps an error reply: LOADING, BUSY, TRYAGAIN, MASTERDOWN, READONLY, OOM,
// CLUSTERDOWN and NOREPLICAS are transient (the server did nothing and may do it later);
// everything else (WRONGTYPE, a syntax error, a script error) is permanent. `transaction` reports
// a refused MULTI (a proxy without transactions, an ACL without MULTI) as `multi_refusal`: the
// commands pipelined after it ran on their own, without the compare (indeterminate, saying so),
// unless each was refused too; it sends UNWATCH after it (EXEC without MULTI leaves the WATCH
// armed). A command refused while queued (NOREPLICAS, OOM, READONLY) makes EXEC answer
// EXECABORT: nothing ran, and `multi_refusal` carries that command's own error, not EXECABORT's.
//
// Thread safety: a connection is used by one thread at a time. No user code runs here.
#pragma once

#include <hiredis/hiredis.h>

#include <sys/time.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "noclobber/adapters/detail/redact.hpp"
#include "noclobber/adapters/redis/options.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::redis {

/// Parses "host:port" (what scripts/servers/redis.sh prints); std::invalid_argument when malformed.
inline std::pair<std::string, int> parse_address(std::string_view addr) {
  const auto colon = addr.rfind(':');
  int port = 0;
  bool ok = colon != std::string_view::npos && colon > 0 && colon + 1 < addr.size();
  if (ok) {
    for (char c : addr.substr(colon + 1)) {
      ok = c >= '0' && c <= '9' && port <= 65535;  // so port * 10 + 9 stays far inside int
      if (!ok) break;
      port = port * 10 + (c - '0');
    }
  }
  if (!ok || port <= 0 || port > 65535) {
    throw std::invalid_argument("noclobber::redis: bad address '" + std::string(addr) + "' (want host:port)");
  }
  return {std::string(addr.substr(0, colon)), port};
}

/// "host:port", or a redis:// URL with credentials and database (options.hpp's parse_url), as
/// connect_options. std::invalid_argument when malformed (credentials redacted).
inline connect_options options_from(std::string_view addr) {
  if (addr.starts_with("redis://") || addr.starts_with("rediss://")) return parse_url(addr);
  auto [host, port] = parse_address(addr);
  connect_options o;
  o.host = std::move(host);
  o.port = port;
  return o;
}

/// How a store's conditional writes make the compare and the write one step: optimistic
/// WATCH/MULTI/EXEC, or one Lua script (atomic on the server).
enum class method : unsigned char { watch_multi_exec, lua_compare_and_set };

namespace detail {

struct reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

/// One command's arguments, binary-safe (views into strings that outlive the call).
using command_args = std::vector<std::string_view>;

/// Whether an error reply's code (its first word, compared whole: BUSYKEY and BUSYGROUP are not
/// BUSY) is one of the transient ones.
inline bool is_transient_error(std::string_view e) noexcept {
  const std::string_view code = e.substr(0, e.find(' '));
  for (std::string_view p :
       {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "OOM", "CLUSTERDOWN", "NOREPLICAS"}) {
    if (code == p) return true;
  }
  return false;
}

/// An error reply's meaning to a retry loop (see the overview).
inline write_status error_status(const redisReply* r) noexcept {
  return is_transient_error(std::string_view(r->str, static_cast<std::size_t>(r->len)))
             ? write_status::transient
             : write_status::permanent;
}
inline store_error error_of(const redisReply* r) {
  return {"ERR", std::string(r->str, static_cast<std::size_t>(r->len))};
}
inline read_status as_read(write_status s) noexcept {
  return s == write_status::permanent ? read_status::permanent : read_status::transient;
}

/// The text of a string (or status) reply.
inline std::string_view text_of(const redisReply* r) noexcept {
  return {r->str, static_cast<std::size_t>(r->len)};
}

/// Queues one command on `c` without sending it.
inline void append_command(redisContext* c, const std::string_view* args, std::size_t n) {
  std::vector<const char*> argv(n);
  std::vector<std::size_t> len(n);
  for (std::size_t i = 0; i < n; ++i) {
    argv[i] = args[i].data();
    len[i] = args[i].size();
  }
  redisAppendCommandArgv(c, static_cast<int>(n), argv.data(), len.data());
}

/// Sends one command on a raw context and waits for its reply; nullptr on an I/O error (see
/// c->errstr). For tests and tools; the stores use `connection`.
inline reply_ptr command(redisContext* c, std::initializer_list<std::string_view> args) {
  append_command(c, args.begin(), args.size());
  void* raw = nullptr;
  if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr) return nullptr;
  return reply_ptr(static_cast<redisReply*>(raw));
}

struct context_deleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
using context_ptr = std::unique_ptr<redisContext, context_deleter>;

/// AUTH (when credentials are set) and SELECT (when db is not 0) on a fresh context; false with
/// `error` and `failure` set: an error reply classified by error_status (WRONGPASS, NOAUTH, a
/// database out of range: permanent), a lost answer transient. The password never reaches `error`.
inline bool handshake(redisContext* c, const connect_options& o, store_error& error, write_status& failure) {
  const auto refused = [&](const char* what, reply_ptr r) {
    failure = r ? error_status(r.get()) : write_status::transient;
    const std::string why = r ? std::string(text_of(r.get())) : std::string(c->errstr);
    error = noclobber::detail::redact({what, std::string(what) + " was refused: " + why},
                                      {o.password, o.username + ":" + o.password});
    return false;
  };
  if (!o.password.empty() || !o.username.empty()) {
    reply_ptr r =
        o.username.empty() ? command(c, {"AUTH", o.password}) : command(c, {"AUTH", o.username, o.password});
    if (!r || r->type == REDIS_REPLY_ERROR) return refused("AUTH", std::move(r));
  }
  if (o.db != 0) {
    const std::string db = std::to_string(o.db);
    reply_ptr r = command(c, {"SELECT", db});
    if (!r || r->type == REDIS_REPLY_ERROR) return refused("SELECT", std::move(r));
  }
  return true;
}

/// Connects with `o.timeout` for the connect and for every later reply, then AUTH and SELECT;
/// nullptr (with `error` and `failure` set: transient when the server cannot be reached, see
/// handshake otherwise) when it cannot. Shared by `connection` and the lease backend
/// (adapters/redis_lease.hpp).
inline context_ptr connect(const connect_options& o, store_error& error, write_status& failure) {
  timeval tv{static_cast<time_t>(o.timeout.count() / 1000),
             static_cast<suseconds_t>((o.timeout.count() % 1000) * 1000)};
  context_ptr c(redisConnectWithTimeout(o.host.c_str(), o.port, tv));
  if (!c || c->err != 0) {
    error = {"IO", c ? c->errstr : "cannot allocate a redis context"};
    failure = write_status::transient;
    return nullptr;
  }
  redisSetTimeout(c.get(), tv);
  if (!handshake(c.get(), o, error, failure)) return nullptr;
  return c;
}

/// Checks what every store's constructor checks: a port in 1-65535, a positive timeout, a
/// database >= 0. std::invalid_argument naming `who` otherwise.
inline void check_options(const connect_options& o, std::string_view who) {
  const std::string prefix = "noclobber::redis::" + std::string(who) + ": ";
  if (o.port <= 0 || o.port > 65535)
    throw std::invalid_argument(prefix + "bad port " + std::to_string(o.port));
  if (o.timeout.count() <= 0) {
    throw std::invalid_argument(prefix + "timeout must be positive, got " +
                                std::to_string(o.timeout.count()) + "ms");
  }
  if (o.db < 0) throw std::invalid_argument(prefix + "bad database " + std::to_string(o.db));
}

/// The exception a constructor throws when its first connect fails (credentials redacted).
inline std::runtime_error connect_error(const connect_options& o, std::string_view who, const store_error& e,
                                        write_status failure) {
  return std::runtime_error(
      "noclobber::redis::" + std::string(who) + ": cannot connect to " + describe(o) + ": " + e.message +
      (failure == write_status::permanent ? " (permanent: check the credentials and database)" : ""));
}

/// A refused MULTI, as a failed write: `indeterminate` when a queued command ran on its own
/// (without the compare), else the first queued command's own refusal (nothing ran).
struct multi_refusal {
  write_status status = write_status::indeterminate;
  store_error error;
};

/// One connection that reconnects lazily after an I/O error (see the overview).
class connection {
 public:
  /// Connects at once (AUTH and SELECT included). `who` names the store in messages.
  /// std::invalid_argument for a bad port, timeout or database, std::runtime_error when the
  /// server cannot be reached or refuses the credentials or the database.
  connection(connect_options options, std::string_view who) : options_(std::move(options)) {
    check_options(options_, who);
    if (!connect()) throw connect_error(options_, who, error_, failure_);
  }
  connection(std::string host, int port, std::chrono::milliseconds timeout, std::string_view who)
      : connection(connect_options{std::move(host), port, {}, {}, 0, timeout}, who) {}

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  connection(connection&&) noexcept = default;
  connection& operator=(connection&&) noexcept = default;
  ~connection() = default;

  /// nullptr while disconnected.
  [[nodiscard]] redisContext* native_handle() const noexcept { return ctx_.get(); }
  /// Why the last I/O failed.
  [[nodiscard]] const store_error& error() const noexcept { return error_; }
  /// How many times this connection has connected (a script loaded in an earlier epoch is gone).
  [[nodiscard]] std::uint64_t epoch() const noexcept { return epoch_; }

  /// Connected, or reconnected now (AUTH and SELECT again); false when the server cannot be
  /// reached or refused the handshake: see error() and connect_failure().
  bool ensure_connected() { return (ctx_ && ctx_->err == 0) || connect(); }
  /// How the last failed ensure_connected() counts: transient (unreachable) or the handshake's
  /// classification (a refused AUTH is permanent).
  [[nodiscard]] write_status connect_failure() const noexcept { return failure_; }

  void append(std::initializer_list<std::string_view> args) { append(args.begin(), args.size()); }
  void append(const command_args& args) { append(args.data(), args.size()); }

  /// The next reply; nullptr after an I/O error, which closes the connection.
  reply_ptr get_reply() {
    void* raw = nullptr;
    if (!ctx_ || redisGetReply(ctx_.get(), &raw) != REDIS_OK || raw == nullptr) {
      drop();
      return nullptr;
    }
    return reply_ptr(static_cast<redisReply*>(raw));
  }

  reply_ptr command(std::initializer_list<std::string_view> args) {
    append(args);
    return get_reply();
  }
  reply_ptr command(const command_args& args) {
    append(args);
    return get_reply();
  }

  /// UNWATCH, then `out`. On an I/O error the connection is already closed, and its WATCH with it.
  template <class Result>
  Result unwatch_and(Result out) {
    (void)command({"UNWATCH"});
    return out;
  }

  /// MULTI, `queued`…, EXEC in one pipeline; the EXEC reply (nil when a watched key changed),
  /// or nullptr: after an I/O error (EXEC may have run), or when MULTI was refused or EXEC
  /// aborted on a command refused while queued, which `refused` then describes (multi_refusal).
  reply_ptr transaction(const std::vector<command_args>& queued, std::optional<multi_refusal>& refused) {
    refused.reset();
    append({"MULTI"});
    for (const command_args& c : queued) append(c);
    append({"EXEC"});
    reply_ptr multi = get_reply();
    if (!multi) return nullptr;
    bool ran = false;  // a queued command answered other than with an error: it ran on its own
    reply_ptr first_error;
    for (std::size_t i = 0; i < queued.size(); ++i) {
      reply_ptr r = get_reply();  // QUEUED, or an error that makes EXEC abort; the command's own
      if (!r) return nullptr;     // answer when MULTI was refused
      if (r->type != REDIS_REPLY_ERROR) {
        ran = true;
      } else if (!first_error) {
        first_error = std::move(r);
      }
    }
    reply_ptr exec = get_reply();
    if (!exec) return nullptr;
    if (multi->type != REDIS_REPLY_ERROR) {
      // A command refused while queued (NOREPLICAS, OOM, READONLY): EXEC answered EXECABORT,
      // nothing ran, and EXEC cleared the WATCH. That command's error says what it means.
      if (exec->type == REDIS_REPLY_ERROR && first_error) {
        refused = multi_refusal{error_status(first_error.get()), error_of(first_error.get())};
        return nullptr;
      }
      return exec;
    }
    // MULTI refused (a proxy without transactions, an ACL without MULTI, a server still loading):
    // EXEC answered "EXEC without MULTI", which leaves a WATCH armed; the queued commands ran
    // on their own, without the compare, unless each was refused too.
    if (ran || !first_error) {
      refused = multi_refusal{write_status::indeterminate,
                              {"MULTI", "MULTI was refused (" + std::string(text_of(multi.get())) +
                                            "), so the commands after it ran on their own, without the "
                                            "compare: this server (or proxy) does not run transactions; "
                                            "use method::lua_compare_and_set for writes"}};
    } else {
      refused = multi_refusal{error_status(first_error.get()), error_of(first_error.get())};
    }
    (void)command({"UNWATCH"});  // on an I/O error the connection is closed, and its WATCH with it
    return nullptr;
  }

 private:
  void append(const std::string_view* args, std::size_t n) {
    if (ctx_) append_command(ctx_.get(), args, n);
  }

  bool connect() {
    ctx_ = detail::connect(options_, error_, failure_);
    if (!ctx_) return false;
    ++epoch_;
    return true;
  }

  void drop() {
    error_ = {"IO", ctx_ ? std::string(ctx_->errstr) : std::string("not connected")};
    ctx_.reset();
  }

  connect_options options_;
  context_ptr ctx_;
  std::uint64_t epoch_ = 0;
  store_error error_;
  write_status failure_ = write_status::transient;
};

/// A Lua script run by EVALSHA, loaded (SCRIPT LOAD) once per connection epoch.
class lua_script {
 public:
  explicit lua_script(const char* body) noexcept : body_(body) {}

  /// The script's reply, or nullopt with `status`/`error` set: transient when nothing ran (the
  /// load failed, NOSCRIPT after a server restart or SCRIPT FLUSH), `lost_answer` when EVALSHA
  /// was sent and its answer lost (it may have run), the error reply's status otherwise.
  /// `args`: the keys count, keys and arguments after the SHA.
  std::optional<reply_ptr> run(connection& c, const command_args& args, write_status lost_answer,
                               write_status& status, store_error& error) {
    if (loaded_epoch_ != c.epoch()) {
      reply_ptr l = c.command({"SCRIPT", "LOAD", body_});
      if (!l) return fail(status, error, write_status::transient, c.error());
      if (l->type == REDIS_REPLY_ERROR) return fail(status, error, error_status(l.get()), error_of(l.get()));
      if (l->type != REDIS_REPLY_STRING) {
        return fail(status, error, write_status::permanent, {"SCRIPT", "SCRIPT LOAD answered no SHA"});
      }
      sha_.assign(l->str, static_cast<std::size_t>(l->len));
      loaded_epoch_ = c.epoch();
    }
    command_args full{"EVALSHA", sha_};
    full.insert(full.end(), args.begin(), args.end());
    reply_ptr r = c.command(full);
    if (!r) return fail(status, error, lost_answer, c.error());
    if (r->type == REDIS_REPLY_ERROR && text_of(r.get()).starts_with("NOSCRIPT")) {
      loaded_epoch_ = 0;  // the server restarted or flushed its scripts: nothing ran
      return fail(status, error, write_status::transient, {"NOSCRIPT", std::string(text_of(r.get()))});
    }
    if (r->type == REDIS_REPLY_ERROR) return fail(status, error, error_status(r.get()), error_of(r.get()));
    return r;
  }

 private:
  static std::optional<reply_ptr> fail(write_status& status, store_error& error, write_status s,
                                       store_error e) {
    status = s;
    error = std::move(e);
    return std::nullopt;
  }

  const char* body_;
  std::string sha_;
  std::uint64_t loaded_epoch_ = 0;  // epochs start at 1: 0 = not loaded
};

}  // namespace detail
}  // namespace noclobber::redis
