// The lease strategy of the fault runs (`lease-fenced`): each writer has its own lease lock (its
// own backend, one connection, as a separate process would have) and runs
// fenced_read_modify_write under it: the lease in front, the conditional write behind (neither
// store here checks the fencing token; the version check is the fence). What the lease did is
// noted per op, so that a run says whether the fault made the lock server forget or expire leases:
//
//   lease_lost_local   the guard's local deadline (grant request sent + TTL) had passed when the
//                      op's read_modify_write ended
//   lease_lost_server  the release found the lease gone (another owner, a session that is gone)
//   lease_unknown      the release had no answer (the server frees the key after the TTL)
//   lease_overlaps     grants of a key that returned before the previous holder of that key began
//                      its release: two writers held the key's lease at once (an exclusive lease
//                      server never lets that happen; a holder finds out only at its release)
//   lease_errors       ops that gave up because the lock server could not be asked (lease_error)
//
// Thread safety: one any_lease_backend, lease_map and noting_leases per writer thread; a
// lease_note is written by its op's thread only, and read after the run.
#pragma once

#include <noclobber/lease_lock.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <utility>

namespace nc_faults {

/// A lease backend behind virtual calls, so that a fault_case names its backend without a
/// template parameter. `lease_backend_of<B>` wraps a concrete one.
class any_lease_backend {
 public:
  using key_type = std::string;
  any_lease_backend() = default;
  any_lease_backend(const any_lease_backend&) = delete;
  any_lease_backend& operator=(const any_lease_backend&) = delete;
  virtual ~any_lease_backend() = default;
  virtual noclobber::lease_attempt try_acquire(const std::string& key, std::chrono::milliseconds ttl) = 0;
  virtual noclobber::lease_check extend(const std::string& key, const noclobber::lease_grant& g,
                                        std::chrono::milliseconds ttl) = 0;
  virtual noclobber::lease_check release(const std::string& key, const noclobber::lease_grant& g) = 0;
};

template <class Backend>
class lease_backend_of final : public any_lease_backend {
 public:
  template <class... Args>
  explicit lease_backend_of(Args&&... args) : b_(std::forward<Args>(args)...) {}
  noclobber::lease_attempt try_acquire(const std::string& key, std::chrono::milliseconds ttl) override {
    return b_.try_acquire(key, ttl);
  }
  noclobber::lease_check extend(const std::string& key, const noclobber::lease_grant& g,
                                std::chrono::milliseconds ttl) override {
    return b_.extend(key, g, ttl);
  }
  noclobber::lease_check release(const std::string& key, const noclobber::lease_grant& g) override {
    return b_.release(key, g);
  }

 private:
  Backend b_;
};

using lease_map = noclobber::lease_lock_map<any_lease_backend>;

/// What the lease did during one op (see the overview).
struct lease_note {
  bool used = false;      // a grant was made
  bool error = false;     // lease_error: the lock server could not be asked
  bool released = false;  // its release was sent (released_at is set)
  noclobber::fencing_token fence = 0;
  std::chrono::steady_clock::time_point granted_at{}, released_at{};
  bool lost_local = false;
  noclobber::lease_check release = noclobber::lease_check::held;
};

/// A lease_map whose grants and releases are noted in one op's lease_note: the `locks` of
/// fenced_read_modify_write (lock(key) -> a guard with token(), lost(), unlock()).
class noting_leases {
 public:
  noting_leases(lease_map& map, lease_note& note) noexcept : map_(&map), note_(&note) {}

  class guard {
   public:
    guard(lease_map::guard g, lease_note& n) : g_(std::move(g)), n_(&n) {}
    [[nodiscard]] noclobber::fencing_token token() const { return g_.token(); }
    [[nodiscard]] bool lost() { return n_->lost_local = g_.lost(); }
    noclobber::lease_check unlock() {
      n_->released = true;
      n_->released_at = std::chrono::steady_clock::now();  // before the release is sent
      return n_->release = g_.unlock();
    }

   private:
    lease_map::guard g_;
    lease_note* n_;
  };

  guard lock(const std::string& key) {
    auto g = map_->lock(key);
    note_->used = true;
    note_->fence = g.token();
    note_->granted_at = std::chrono::steady_clock::now();  // after the grant came back
    return guard(std::move(g), *note_);
  }

 private:
  lease_map* map_;
  lease_note* note_;
};

}  // namespace nc_faults
