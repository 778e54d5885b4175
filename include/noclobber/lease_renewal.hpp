// noclobber/lease_renewal.hpp — keeps a lease lock alive from a background thread while its
// holder works.
//
// Overview
// --------
// A lease is granted for a TTL (noclobber/lease_lock.hpp). A holder whose work may outlast it
// must renew it, and calling guard.renew() by hand means threading it through the work.
// `renewed_lease` takes the guard and renews it from its own thread every `interval` (by default
// a third of the TTL), the way Redisson's lock watchdog and etcd's keep-alive loop do:
//
//   noclobber::renewed_lease lease(locks.lock("loc/42.db"));  // renewing from now on
//   ... work that may take longer than the TTL ...
//   lease.check();                 // throws lease_lost_error if the lease was lost meanwhile
//   ... the conditional write ...
//   lease.unlock();                // stops renewing, then releases (or let the destructor do it)
//
// Renewal is not safety. A renewal thread keeps the lease while the holder's own thread is slow;
// it cannot keep it while the whole process is stopped (SIGSTOP, a VM paused, swapped out) or cut
// off from the lease server: then the lease runs out and the server grants it to somebody else,
// exactly as without renewal. The write behind the lock must stay conditional
// (fenced_read_modify_write); `lost()` and `check()` tell the holder what is already known.
//
// Renewal answers (lease_lock_map::guard::renew):
//   held     the lease runs for another TTL from the request; the next renewal after `interval`
//   unknown  no answer (server unreachable, or the backend threw): tried again after interval / 4,
//            until the local deadline (expires_at) passes, which makes the lease lost
//   lost     another owner has the key: lost for good, renewal stops
// lost() and check() answer on any thread, from what is known locally: a renewal answered lost,
// or the local deadline passed; once lost, always lost, and renewal stops. on_lost
// (lease_lock_options) is called when the guard itself finds the loss: a renewal answered lost or
// came after its deadline (on the renewal thread), or the release answered lost (on the thread
// that calls unlock()).
//
// Thread safety
// -------------
// lost(), check(), token(), expires_at(), renewals() and failed_renewals() may be called from any
// number of threads, concurrently with the renewals: they read what the renewal thread published
// and never wait for a request in flight. unlock() and take() stop the renewal thread first
// (waiting for a request in flight), so call them (and the destructor) from one thread, the
// owner's. The guard itself is touched only by the renewal thread while it runs, and by the
// owner after it stopped. User code run by the renewal thread: the backend's extend (through the
// map, under the map's own mutex) and on_lost (under no lock).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>

#include "noclobber/lease_lock.hpp"

namespace noclobber {

/// Keeps a lease lock guard renewed from a background thread (see the overview). `Guard` is a
/// lease_lock_map<...>::guard.
template <class Guard>
class renewed_lease {
 public:
  using clock = std::chrono::steady_clock;

  /// Starts renewing `g` every `interval`; zero picks a third of the TTL the server granted.
  /// std::invalid_argument when `g` holds nothing or `interval` is not shorter than that TTL.
  explicit renewed_lease(Guard g, std::chrono::milliseconds interval = std::chrono::milliseconds::zero())
      : guard_(std::move(g)) {
    if (!guard_.owns_lock())
      throw std::invalid_argument("noclobber::renewed_lease: the guard holds no lease");
    // The TTL the server granted; else (a backend that does not say) what is left of the lease.
    const std::chrono::milliseconds ttl =
        guard_.grant().ttl > std::chrono::milliseconds::zero()
            ? guard_.grant().ttl
            : std::chrono::duration_cast<std::chrono::milliseconds>(guard_.expires_at() - clock::now());
    if (interval == std::chrono::milliseconds::zero())
      interval = std::max(ttl / 3, std::chrono::milliseconds(1));
    if (interval <= std::chrono::milliseconds::zero() || interval >= ttl) {
      throw std::invalid_argument("noclobber::renewed_lease: interval must be above 0 and below the TTL (" +
                                  std::to_string(ttl.count()) + " ms), got " +
                                  std::to_string(interval.count()) + " ms");
    }
    interval_ = interval;
    token_ = guard_.token();
    expires_.store(guard_.expires_at().time_since_epoch().count());
    renewer_ = std::jthread([this](std::stop_token stop) { renew_until(stop); });
  }
  renewed_lease(const renewed_lease&) = delete;
  renewed_lease& operator=(const renewed_lease&) = delete;
  ~renewed_lease() {
    stop();  // then the guard's destructor releases (quietly: on_lost only)
  }

  /// The fencing token of the grant (see lease_lock.hpp).
  [[nodiscard]] fencing_token token() const noexcept { return token_; }
  /// The local deadline after the last renewal that was answered `held`.
  [[nodiscard]] clock::time_point expires_at() const noexcept {
    return clock::time_point(clock::duration(expires_.load()));
  }
  /// True once a renewal found another owner or the local deadline passed; stays true (and
  /// renewal stops) from then on.
  [[nodiscard]] bool lost() const noexcept {
    if (lost_.load()) return true;
    if (clock::now() < expires_at()) return false;
    lost_.store(true);
    return true;
  }
  /// Throws lease_lost_error when lost().
  void check() const {
    if (lost()) throw lease_lost_error(token_);
  }
  /// Renewals answered `held`, and renewals that got no answer, so far.
  [[nodiscard]] std::uint64_t renewals() const noexcept { return renewals_.load(); }
  [[nodiscard]] std::uint64_t failed_renewals() const noexcept { return failed_.load(); }
  [[nodiscard]] std::chrono::milliseconds interval() const noexcept { return interval_; }

  /// Stops renewing, then releases: held, lost (it was gone before the release), unknown.
  lease_check unlock() {
    stop();
    if (!guard_.owns_lock()) throw std::logic_error("noclobber::renewed_lease::unlock: already released");
    return guard_.unlock();
  }
  /// Stops renewing and hands the guard back (it still holds the lease until its TTL or unlock).
  [[nodiscard]] Guard take() {
    stop();
    return std::move(guard_);
  }

 private:
  void stop() {
    if (!renewer_.joinable()) return;
    renewer_.request_stop();
    renewer_.join();
  }

  // The renewal thread: sleep (woken at once by stop), renew, publish what the answer says.
  void renew_until(const std::stop_token& stop) {
    auto wait = interval_;
    std::mutex m;  // only for the condition variable: nothing else waits on it
    std::condition_variable_any wake;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(m);
        (void)wake.wait_for(lock, stop, wait, [] { return false; });  // a timed sleep that stop ends
      }
      if (stop.stop_requested()) return;
      if (lost_.load()) {     // a reader saw the deadline pass: the guard reports it (on_lost)
        (void)guard_.lost();  // unless a renewal in flight then came back held
        return;
      }
      lease_check c = lease_check::unknown;
      try {
        c = guard_.renew();
      } catch (...) {  // a backend that throws is a renewal without an answer
      }
      if (c == lease_check::held) {
        renewals_.fetch_add(1);
        expires_.store(guard_.expires_at().time_since_epoch().count());
        wait = interval_;
      } else if (c == lease_check::unknown) {
        failed_.fetch_add(1);
        wait = std::max(interval_ / 4, std::chrono::milliseconds(1));
      }
      if (c == lease_check::lost || guard_.lost()) {  // guard_.lost() reports a passed deadline once
        lost_.store(true);
        return;
      }
    }
  }

  Guard guard_;  // the renewal thread's while it runs; the owner's after stop()
  std::chrono::milliseconds interval_{0};
  fencing_token token_ = 0;
  std::atomic<clock::rep> expires_{0};
  mutable std::atomic<bool> lost_{false};  // sticky
  std::atomic<std::uint64_t> renewals_{0}, failed_{0};
  std::jthread renewer_;  // last: started after, and stopped before, everything above
};

}  // namespace noclobber
