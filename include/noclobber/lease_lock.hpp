// noclobber/lease_lock.hpp — per-key lease locks across processes, with a fencing token per grant.
//
// Overview
// --------
// keyed_mutex_map makes writers of one key queue inside one process. Across processes and
// machines the queue needs a server: a *lease lock* is a lock the server grants for a time to
// live (TTL) and takes back by itself when the holder stops renewing it (crashed, paused,
// partitioned). `lease_lock_map<Backend>` gives it the guard shape of keyed_mutex_map:
//
//   noclobber::redis::lease_backend backend("127.0.0.1:6379");     // adapters/redis_lease.hpp
//   noclobber::lease_lock_map<noclobber::redis::lease_backend> locks(backend, 2s);
//   {
//     auto g = locks.lock("loc/42.db");        // waits, paced by options.wait_backoff
//     g.token();                               // fencing token of this grant: only grows
//     ... read, modify, conditional write ...
//   }                                          // released (compare-and-delete on the owner id)
//
// A lease lock is never enough on its own. A holder that pauses past its TTL (GC, swap,
// SIGSTOP) still believes it holds the key when it resumes, while the server has granted it to
// somebody else: its late write lands on top of the new holder's (Kleppmann, 2016). So the
// write behind the lock must still be conditional: fenced_read_modify_write
// (noclobber/fenced_read_modify_write.hpp) puts both layers in one call. What the lock buys is
// fewer wasted round trips: writers queue instead of colliding on the conditional write.
//
// Grant, token, loss
// ------------------
// - Every grant carries a fencing token (`fencing_token`, 64-bit) that is larger than the token
//   of every earlier grant of the same key on the same server (Redis: INCR of a counter key;
//   etcd: the revision that created the lock key; PostgreSQL: a sequence). A store that records
//   the highest token it has seen can refuse a smaller one; the conditional write refuses a
//   stale version even where the store knows nothing about tokens.
// - `expires_at()` is a conservative local deadline: the time *before* the grant request was
//   sent, plus the TTL (the one the server granted: etcd rounds up). The server's timer starts later, so
//   before expires_at() the lease is held — unless the server itself forgot it (failover, restart: see each
//   backend).
// - The holder learns of a lost lease in three places: `lost()` (local deadline passed, or a
//   renew / release found another owner), `renew()` answering `lease_check::lost`, and
//   `unlock()` answering `lease_check::lost` (the lease was gone before the release). Each time
//   a loss is first found, `options.on_lost(key, token)` is called. `check()` throws
//   `lease_lost_error` when lost() is true.
//
// Waiting
// -------
// lock / try_lock_for / try_lock_until retry a busy key after a delay from `options.wait_backoff`
// (a backoff_policy; by default full jitter from 5 ms to ttl/4), never faster: the number of
// requests a waiter sends is bounded by the policy, not by the CPU. A backend failure (server
// unreachable) is retried the same way up to `options.max_consecutive_failures` times in a row;
// then, and on any failure in try_lock, `lease_error` is thrown. Timeouts saturate (duration.hpp).
//
// The backend (the `lease_backend` concept) talks to one server over one connection:
//   try_acquire(key, ttl)   -> lease_attempt   acquired (with the grant), busy, or failed
//   extend(key, grant, ttl) -> lease_check     held (extended), lost (not ours), unknown (error)
//   release(key, grant)     -> lease_check     held (it was ours, now released), lost, unknown
// Implementations: memory_lease_backend (noclobber/memory_lease_backend.hpp, one process, for
// tests), redis::lease_backend, etcd::lease_backend, postgres::advisory_lease_backend.
//
// Thread safety
// -------------
// All member functions of lease_lock_map may be called concurrently. The map serialises the
// backend's calls behind one internal mutex (the backend is one connection); waiting (the
// backoff sleep) happens with that mutex released. What runs under it: the backend's
// try_acquire / extend / release, nothing else. `on_lost` and the environment's sleep run under
// no lock of the map. A guard is not itself thread-safe; it may be moved to and released on
// another thread. Destroying the map (or the backend) while a guard is alive is undefined.
// Locks are not recursive: a second lock of a key this process holds waits for the lease.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>

#include "noclobber/backoff.hpp"
#include "noclobber/duration.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/retry_env.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber {

/// Grows with every grant of a key (on one server). 0 is never granted.
using fencing_token = std::uint64_t;

/// What the server gave: the token, the owner id it recorded (for compare-and-delete) and the
/// TTL it was asked for.
struct lease_grant {
  fencing_token token = 0;
  std::string owner;
  std::chrono::milliseconds ttl{0};
};

enum class lease_status : unsigned char { acquired, busy, failed };

/// One try_acquire: acquired (grant filled), busy (somebody holds it), failed (error filled).
struct lease_attempt {
  lease_status status = lease_status::failed;
  lease_grant grant;
  store_error error;
};

/// What extend / release / renew found: still ours, another owner (lost), or no answer.
enum class lease_check : unsigned char { held, lost, unknown };

[[nodiscard]] constexpr const char* to_string(lease_check c) noexcept {
  return c == lease_check::held ? "held" : c == lease_check::lost ? "lost" : "unknown";
}

/// What a lease backend must offer (see the overview).
template <class B>
concept lease_backend = requires(B& b, const typename B::key_type& key, const lease_grant& grant,
                                 std::chrono::milliseconds ttl) {
  typename B::key_type;
  { b.try_acquire(key, ttl) } -> std::same_as<lease_attempt>;
  { b.extend(key, grant, ttl) } -> std::same_as<lease_check>;
  { b.release(key, grant) } -> std::same_as<lease_check>;
};

/// The server could not be asked (try_lock, or lock after too many failures in a row).
class lease_error : public std::runtime_error {
 public:
  explicit lease_error(const std::string& what, store_error e = {})
      : std::runtime_error(what), error_(std::move(e)) {}
  [[nodiscard]] const store_error& error() const noexcept { return error_; }

 private:
  store_error error_;
};

/// check() on a guard whose lease is lost.
class lease_lost_error : public std::runtime_error {
 public:
  explicit lease_lost_error(fencing_token token)
      : std::runtime_error("noclobber::lease_lock: the lease of grant " + std::to_string(token) + " is lost"),
        token_(token) {}
  [[nodiscard]] fencing_token token() const noexcept { return token_; }

 private:
  fencing_token token_;
};

template <class Key>
struct lease_lock_options {
  /// How long the server keeps a grant without renewal. At least 1 ms.
  std::chrono::milliseconds ttl{std::chrono::seconds(10)};
  /// Delay between tries on a busy key (and after a failure). Default: full jitter, 5 ms to ttl/4.
  std::optional<backoff_policy> wait_backoff;
  /// Failures in a row that lock() / try_lock_for() tolerate before throwing lease_error.
  unsigned max_consecutive_failures = 5;
  /// Called (under no lock) the first time a guard finds its lease lost.
  std::function<void(const Key&, fencing_token)> on_lost;
};

template <lease_backend Backend, retry_env Env = system_retry_env>
class lease_lock_map {
 public:
  using key_type = typename Backend::key_type;
  using options_type = lease_lock_options<key_type>;
  using clock = std::chrono::steady_clock;
  class guard;

  lease_lock_map(Backend& backend, options_type options, Env env = Env())
      : backend_(backend), options_(std::move(options)), env_(std::move(env)) {
    if (options_.ttl < std::chrono::milliseconds(1)) {
      throw std::invalid_argument("noclobber::lease_lock_map: ttl must be at least 1 ms, got " +
                                  std::to_string(options_.ttl.count()) + " ms");
    }
    if (!options_.wait_backoff) {
      const auto cap = std::max<std::chrono::nanoseconds>(options_.ttl / 4, std::chrono::milliseconds(5));
      options_.wait_backoff = backoff_policy::full_jitter(std::chrono::milliseconds(5), cap);
    }
  }
  explicit lease_lock_map(Backend& backend) : lease_lock_map(backend, options_type{}) {}
  /// The default options with this TTL.
  lease_lock_map(Backend& backend, std::chrono::milliseconds ttl) : lease_lock_map(backend, with_ttl(ttl)) {}
  lease_lock_map(const lease_lock_map&) = delete;
  lease_lock_map& operator=(const lease_lock_map&) = delete;

  /// Waits (paced by wait_backoff) until the key is granted.
  [[nodiscard]] guard lock(const key_type& key) { return acquire(key, nullptr); }
  /// One request: an empty guard when the key is held elsewhere; lease_error when it failed.
  [[nodiscard]] guard try_lock(const key_type& key) {
    const auto sent = clock::now();
    lease_attempt a = attempt(key);
    if (a.status == lease_status::failed) throw failure(key, a.error);
    return a.status == lease_status::acquired ? make_guard(key, std::move(a), sent) : guard();
  }
  template <class Rep, class Period>
  [[nodiscard]] guard try_lock_for(const key_type& key, std::chrono::duration<Rep, Period> timeout) {
    const auto deadline = env_.now() + std::chrono::nanoseconds(saturating_ns(timeout));
    return acquire(key, &deadline);
  }
  template <class Clock, class Duration>
  [[nodiscard]] guard try_lock_until(const key_type& key, std::chrono::time_point<Clock, Duration> when) {
    return try_lock_for(key, when - Clock::now());
  }

  [[nodiscard]] const options_type& options() const noexcept { return options_; }
  /// The environment the waits sleep in (a virtual_retry_env in tests). Not synchronised: touch
  /// it only while no thread is locking through this map.
  [[nodiscard]] Env& env() noexcept { return env_; }
  /// Requests sent to the server by this map (acquire, extend, release): what waiting costs.
  [[nodiscard]] std::uint64_t requests() const {
    annotated_lock lock(mutex_);
    return requests_;
  }

 private:
  using env_time = decltype(std::declval<Env&>().now());

  static options_type with_ttl(std::chrono::milliseconds ttl) {
    options_type o;
    o.ttl = ttl;
    return o;
  }

  lease_attempt attempt(const key_type& key) {
    annotated_lock lock(mutex_);
    ++requests_;
    return backend_.try_acquire(key, options_.ttl);
  }
  lease_check call_extend(const key_type& key, const lease_grant& g, std::chrono::milliseconds ttl) {
    annotated_lock lock(mutex_);
    ++requests_;
    return backend_.extend(key, g, ttl);
  }
  lease_check call_release(const key_type& key, const lease_grant& g) {
    annotated_lock lock(mutex_);
    ++requests_;
    return backend_.release(key, g);
  }

  static lease_error failure(const key_type& key, const store_error& e) {
    if constexpr (std::is_convertible_v<const key_type&, std::string>) {
      return lease_error(
          "noclobber::lease_lock_map: cannot lock '" + std::string(key) + "': " + e.code + ": " + e.message,
          e);
    } else {
      return lease_error("noclobber::lease_lock_map: cannot lock: " + e.code + ": " + e.message, e);
    }
  }

  guard make_guard(const key_type& key, lease_attempt a, clock::time_point sent) {
    // The TTL the server granted (etcd rounds up to whole seconds), else the one asked for.
    const auto ttl = a.grant.ttl > std::chrono::milliseconds(0) ? a.grant.ttl : options_.ttl;
    return guard(this, key, std::move(a.grant), sent + ttl);
  }

  // Phases: try; on busy or failure sleep the policy's delay (clipped to the deadline); repeat.
  guard acquire(const key_type& key, const env_time* deadline) {
    unsigned retry = 0;
    unsigned failures = 0;
    std::chrono::nanoseconds previous{0};
    for (;;) {
      const auto sent = clock::now();
      lease_attempt a = attempt(key);
      if (a.status == lease_status::acquired) return make_guard(key, std::move(a), sent);
      if (a.status == lease_status::failed && ++failures >= std::max(1u, options_.max_consecutive_failures))
        throw failure(key, a.error);
      if (a.status == lease_status::busy) failures = 0;
      std::chrono::nanoseconds d = options_.wait_backoff->delay(++retry, previous, env_.rng());
      previous = d;
      if (deadline != nullptr) {
        const auto now = env_.now();
        if (now >= *deadline) return guard();
        d = std::min<std::chrono::nanoseconds>(d, *deadline - now);
      }
      env_.sleep_for(d, std::stop_token());
    }
  }

  Backend& backend_;
  options_type options_;
  Env env_;
  mutable annotated_mutex mutex_;  // around backend calls only; no user code runs under it
  std::uint64_t requests_ NOCLOBBER_GUARDED_BY(mutex_) = 0;
};

/// Hold of one key's lease. Movable, not copyable; released on destruction (errors and a loss
/// found then are reported through on_lost only). An empty guard (failed try, moved-from) holds
/// nothing.
template <lease_backend Backend, retry_env Env>
class lease_lock_map<Backend, Env>::guard {
 public:
  guard() noexcept = default;
  guard(guard&& o) noexcept
      : map_(std::exchange(o.map_, nullptr)),
        key_(std::move(o.key_)),
        grant_(std::move(o.grant_)),
        expires_(o.expires_),
        lost_(o.lost_) {}
  guard& operator=(guard&& o) noexcept {
    if (this != &o) {
      release_quietly();
      map_ = std::exchange(o.map_, nullptr);
      key_ = std::move(o.key_);
      grant_ = std::move(o.grant_);
      expires_ = o.expires_;
      lost_ = o.lost_;
    }
    return *this;
  }
  guard(const guard&) = delete;
  guard& operator=(const guard&) = delete;
  ~guard() { release_quietly(); }

  [[nodiscard]] bool owns_lock() const noexcept { return map_ != nullptr; }
  explicit operator bool() const noexcept { return owns_lock(); }

  [[nodiscard]] const key_type& key() const { return held("key").key_; }
  [[nodiscard]] fencing_token token() const { return held("token").grant_.token; }
  [[nodiscard]] const lease_grant& grant() const { return held("grant").grant_; }
  /// The conservative local deadline (see the overview).
  [[nodiscard]] clock::time_point expires_at() const { return held("expires_at").expires_; }

  /// True when the local deadline has passed or the server said the key has another owner.
  [[nodiscard]] bool lost() {
    held("lost");
    if (!lost_ && clock::now() >= expires_) note_lost();
    return lost_;
  }
  /// Throws lease_lost_error when lost().
  void check() {
    if (lost()) throw lease_lost_error(grant_.token);
  }

  /// Extends the lease by the map's TTL from now (etcd: a keep-alive). `held` moves expires_at();
  /// `lost` marks the guard lost (for good); `unknown` (no answer) changes nothing.
  lease_check renew() {
    held("renew");
    if (lost_) return lease_check::lost;
    const auto sent = clock::now();
    const lease_check c = map_->call_extend(key_, grant_, map_->options_.ttl);
    const auto ttl = grant_.ttl > std::chrono::milliseconds(0) ? grant_.ttl : map_->options_.ttl;
    if (c == lease_check::held) expires_ = sent + ttl;
    if (c == lease_check::lost) note_lost();
    return c;
  }

  /// Releases now: `held` (it was ours), `lost` (another owner had it already: whatever was
  /// written under this guard after the loss was unprotected), `unknown` (no answer: the server
  /// frees it when the TTL ends). The guard is empty afterwards.
  lease_check unlock() {
    held("unlock");
    const lease_check c = map_->call_release(key_, grant_);
    if (c == lease_check::lost) note_lost();
    map_ = nullptr;
    return c;
  }

 private:
  friend class lease_lock_map;
  guard(lease_lock_map* m, key_type key, lease_grant g, clock::time_point expires)
      : map_(m), key_(std::move(key)), grant_(std::move(g)), expires_(expires) {}

  const guard& held(const char* what) const {
    if (map_ == nullptr)
      throw std::logic_error(std::string("noclobber::lease_lock_map::guard::") + what +
                             ": guard holds no lease");
    return *this;
  }
  void note_lost() {
    if (lost_) return;
    lost_ = true;
    if (map_->options_.on_lost) map_->options_.on_lost(key_, grant_.token);
  }
  void release_quietly() noexcept {
    if (map_ == nullptr) return;
    try {
      (void)unlock();
    } catch (...) {  // a destructor reports through on_lost only; the TTL frees the key
      map_ = nullptr;
    }
  }

  lease_lock_map* map_ = nullptr;
  key_type key_{};
  lease_grant grant_;
  clock::time_point expires_{};
  bool lost_ = false;
};

}  // namespace noclobber
