// noclobber/memory_lease_backend.hpp — an in-process lease server, for tests and examples.
//
// Overview
// --------
// memory_lease_backend<Key> plays the server of noclobber/lease_lock.hpp inside one process: one
// backend stands for the server, and every lease_lock_map given it is a client (a "process").
// It keeps, per key, the current owner and its expiry, and one counter per key that gives each
// grant its fencing token (so tokens only grow, as with Redis' INCR). Its clock is steady_clock
// plus a skew that `advance(d)` moves forward: a test expires a lease without sleeping.
//
//   noclobber::memory_lease_backend<std::string> server;
//   noclobber::lease_lock_map<noclobber::memory_lease_backend<std::string>> a(server), b(server);
//   auto ga = a.lock("k");
//   server.advance(std::chrono::hours(1));     // a's lease runs out on the server
//   auto gb = b.lock("k");                     // gb.token() > ga.token()
//   ga.renew();                                // lease_check::lost, a's on_lost called
//
// `fail_next(n)` makes the next n calls answer `failed` / `unknown`, as an unreachable server.
//
// Thread safety: every member function may be called concurrently (one std::mutex, held only
// inside each call; no user code runs under it).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "noclobber/lease_lock.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber {

template <class Key>
class memory_lease_backend {
 public:
  using key_type = Key;
  using clock = std::chrono::steady_clock;

  lease_attempt try_acquire(const Key& key, std::chrono::milliseconds ttl) {
    annotated_lock lock(mutex_);
    if (injected_failure()) {
      return {lease_status::failed, {}, {"IO", "memory_lease_backend: failure injected by fail_next"}};
    }
    slot& s = slots_[key];
    const auto now = now_locked();
    if (!s.owner.empty() && now < s.expires) return {lease_status::busy, {}, {}};
    s.owner = "owner-" + std::to_string(++owners_);
    s.expires = now + ttl;
    return {lease_status::acquired, lease_grant{++s.fence, s.owner, ttl}, {}};
  }

  lease_check extend(const Key& key, const lease_grant& g, std::chrono::milliseconds ttl) {
    annotated_lock lock(mutex_);
    if (injected_failure()) return lease_check::unknown;
    slot* s = live_owned(key, g);
    if (s == nullptr) return lease_check::lost;
    s->expires = now_locked() + ttl;
    return lease_check::held;
  }

  lease_check release(const Key& key, const lease_grant& g) {
    annotated_lock lock(mutex_);
    if (injected_failure()) return lease_check::unknown;
    slot* s = live_owned(key, g);
    if (s == nullptr) return lease_check::lost;
    s->owner.clear();
    return lease_check::held;
  }

  /// Moves this server's clock forward (leases expire without anybody sleeping).
  void advance(std::chrono::nanoseconds d) {
    annotated_lock lock(mutex_);
    skew_ += d;
  }
  /// The next n calls fail (try_acquire: failed; extend / release: unknown).
  void fail_next(unsigned n) {
    annotated_lock lock(mutex_);
    failing_ = n;
  }
  /// Calls answered so far (all keys, all clients).
  [[nodiscard]] std::uint64_t calls() const {
    annotated_lock lock(mutex_);
    return calls_;
  }
  /// True when somebody holds an unexpired lease on `key`.
  [[nodiscard]] bool held(const Key& key) const {
    annotated_lock lock(mutex_);
    auto it = slots_.find(key);
    return it != slots_.end() && !it->second.owner.empty() && now_locked() < it->second.expires;
  }

 private:
  struct slot {
    std::string owner;  // empty: free
    clock::time_point expires{};
    fencing_token fence = 0;  // last token granted; never goes back
  };
  // Counts the call; true when fail_next asked for this one to fail.
  bool injected_failure() NOCLOBBER_REQUIRES(mutex_) {
    ++calls_;
    if (failing_ == 0) return false;
    --failing_;
    return true;
  }
  clock::time_point now_locked() const NOCLOBBER_REQUIRES(mutex_) { return clock::now() + skew_; }
  slot* live_owned(const Key& key, const lease_grant& g) NOCLOBBER_REQUIRES(mutex_) {
    auto it = slots_.find(key);
    if (it == slots_.end() || it->second.owner != g.owner || now_locked() >= it->second.expires)
      return nullptr;
    return &it->second;
  }

  mutable annotated_mutex mutex_;
  std::map<Key, slot> slots_ NOCLOBBER_GUARDED_BY(mutex_);
  std::chrono::nanoseconds skew_ NOCLOBBER_GUARDED_BY(mutex_){0};
  std::uint64_t owners_ NOCLOBBER_GUARDED_BY(mutex_) = 0;
  std::uint64_t calls_ NOCLOBBER_GUARDED_BY(mutex_) = 0;
  unsigned failing_ NOCLOBBER_GUARDED_BY(mutex_) = 0;
};

}  // namespace noclobber
