// noclobber/asio/keyed_async_mutex.hpp — an awaitable per-key lock on Boost.Asio.
//
// Overview
// --------
// `keyed_async_mutex<Key>` serialises work per key, like a map of mutexes, but waiting for a key
// parks the *operation*, not the thread: `co_await m.async_lock(key, asio::use_awaitable)` suspends
// the coroutine and frees its thread to serve others until the key is handed over.
//
//   noclobber::keyed_async_mutex<std::string> locks;
//   asio::awaitable<void> bump(std::string account) {
//     auto held = co_await locks.async_lock(account, asio::use_awaitable);
//     co_await read_modify_write_somewhere(account);  // one writer per account in this process
//   }                                                 // `held` unlocks; the next waiter runs
//
// Forms: exclusive (`async_lock`, `lock`, `try_lock`, timed), shared (`async_lock_shared`,
// `lock_shared`, `try_lock_shared`, timed: any number of shared holders, or one exclusive), and
// several keys at once (`async_lock_all`, `lock_all`, `try_lock_all`, timed; exclusive).
//
// Guarantees
//   * Entries exist only while a key is held or awaited: the map never grows with keys that were
//     used once (no slow leak). `entry_count()` reports the live ones. Map nodes of entries that
//     went away are reused, so once the shards have seen their high-water mark of live keys,
//     taking and releasing keys (`try_lock` included) allocates nothing.
//   * FIFO hand-off: unlocking a key with waiters passes ownership straight to the oldest waiter
//     (the key never looks free in between, so no barging), and that waiter's completion is
//     posted to *its own* associated executor, never run inline in the unlocker. Shared waiters at
//     the front are granted together, up to the first exclusive waiter; a newcomer never passes a
//     queued waiter (a shared newcomer waits behind a queued exclusive one).
//   * `co_await m.lock(key)` (and lock_shared, lock_all) is the coroutine shorthand: no
//     suspension at all when the keys are free.
//   * Any completion token: the async_* functions are `async_initiate` operations with signature
//     `void(boost::system::error_code, G)` (G = guard, shared_guard or multi_guard); use_awaitable,
//     deferred, use_future, as_tuple, redirect_error and plain callbacks all work. Even an
//     uncontended lock completes via post.
//   * Cancellation: a waiter whose associated cancellation slot fires (terminal, partial or total
//     — leaving the queue has no side effect) leaves the queue at once and completes with
//     `asio::error::operation_aborted`; the *_until / *_for forms complete with
//     `asio::error::timed_out` when the deadline passes first. Either way nothing stays behind:
//     no queue node, and no entry when nobody else holds or awaits the key. A waiter that was
//     already granted the key when cancellation arrives completes normally, holding it. A
//     multi-key operation cancelled or timed out releases the keys it had taken.
//   * If a granted completion is destroyed without being invoked (its execution context shut
//     down), the key is released, so no lock is left held.
//   * Several keys: sorted by (shard, hash) with duplicates folded; taken shard by shard in
//     ascending order, the keys of one shard all at once or not at all (a multi-key waiter holds
//     none of a shard's keys while it waits for one of them), so two multi-key operations never
//     deadlock each other.
//
// Thread safety: every member function may be called from any thread at once; the mutex works
// with one io_context thread or many, with or without strands. Each shard has a small mutex
// (annotated_mutex: clang's -Wthread-safety checks its map) that guards its map and waiter queues.
// The only user code run under it is the map's own: Hash, KeyEqual and copying the Key (if they
// throw, nothing is queued or held). Completion handlers, including coroutine resumption, always
// run after it is released, on the waiter's executor. Lock order: shard mutex, then (only while a
// timed wait is being armed) the timer service's internal lock. A guard is a plain movable
// object: use one guard from one place at a time.
//
// Lifetime: the mutex must outlive every guard and every pending operation, and a pending
// waiter's execution context must outlive its wait (as for any Asio operation).
//
// Inside (noclobber/asio/keyed_async_mutex/): entry.hpp (the per-key state, FIFO grants, the
// shard map with reused nodes), lock_op.hpp (one queued operation), lock_all_op.hpp (the
// multi-key operation).
#pragma once

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include "noclobber/asio/keyed_async_mutex/entry.hpp"
#include "noclobber/asio/keyed_async_mutex/lock_all_op.hpp"
#include "noclobber/asio/keyed_async_mutex/lock_op.hpp"
#include "noclobber/duration.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber {

/// An awaitable per-key lock, exclusive or shared. See the header comment for the contract.
template <class Key, class Hash = std::hash<Key>, class KeyEqual = std::equal_to<Key>>
class keyed_async_mutex {
  using shard = detail::async_lock_shard<Key, Hash, KeyEqual>;
  using node_type = typename shard::node_type;
  using mode = detail::async_lock_mode;

 public:
  using key_type = Key;
  using clock_type = std::chrono::steady_clock;

  template <detail::async_lock_mode Mode>
  class basic_guard;
  using guard = basic_guard<detail::async_lock_mode::exclusive>;      // exclusive hold of one key
  using shared_guard = basic_guard<detail::async_lock_mode::shared>;  // shared hold of one key
  class multi_guard;

  /// `shard_count` independent shards (each a mutex and a hash map); 0 is rejected.
  explicit keyed_async_mutex(std::size_t shard_count = 64, const Hash& hash = Hash(),
                             const KeyEqual& equal = KeyEqual())
      : shard_count_(checked_shard_count(shard_count)),
        hash_(hash),
        equal_(equal),
        shards_(new shard[shard_count_]) {
    for (std::size_t i = 0; i < shard_count_; ++i) {
      annotated_lock lock(shards_[i].mutex);
      shards_[i].map = typename shard::map_type(0, hash, equal);
    }
  }
  keyed_async_mutex(const keyed_async_mutex&) = delete;
  keyed_async_mutex& operator=(const keyed_async_mutex&) = delete;

  /// Precondition: no guard is alive and no operation is pending.
  ~keyed_async_mutex() { assert(entry_count() == 0); }

  // ---- exclusive ------------------------------------------------------------------------------

  /// Waits for `key` without blocking the thread. Completion signature
  /// `void(boost::system::error_code, guard)`: on success the guard owns the key; on
  /// cancellation the error is `operation_aborted` and the guard is empty.
  template <class CompletionToken>
  auto async_lock(const Key& key, CompletionToken&& token) {
    return initiate<guard>(key, std::nullopt, std::forward<CompletionToken>(token));
  }

  /// As async_lock, but gives up at `deadline` with `asio::error::timed_out`. The timer runs on
  /// the completion handler's associated executor (a coroutine's own executor under
  /// use_awaitable) and is armed only if the key is busy.
  template <class CompletionToken>
  auto async_lock_until(const Key& key, clock_type::time_point deadline, CompletionToken&& token) {
    return initiate<guard>(key, deadline, std::forward<CompletionToken>(token));
  }

  /// As async_lock_until(key, now + timeout, token). A negative timeout is rejected. Any duration
  /// converts without overflow: hours::max() waits without a deadline (time_point::max()).
  template <class CompletionToken>
  auto async_lock_for(const Key& key, saturating_ns timeout, CompletionToken&& token) {
    return async_lock_until(key, deadline_after(timeout, "async_lock_for"),
                            std::forward<CompletionToken>(token));
  }

  /// Coroutine shorthand: `auto g = co_await m.lock(key);`. Takes a free key at once, without
  /// suspending (try_lock; a key with waiters is never free, so this does not barge), else
  /// waits exactly like async_lock(key, use_awaitable), throwing system_error on cancellation.
  [[nodiscard]] boost::asio::awaitable<guard> lock(Key key) {
    if (guard g = try_lock(key)) co_return g;
    co_return co_await async_lock(key, boost::asio::use_awaitable);
  }

  /// Takes `key` if nobody holds or awaits it; otherwise returns an empty guard. Never waits, and
  /// allocates nothing once the shard has reusable map nodes (see the header comment).
  [[nodiscard]] guard try_lock(const Key& key) { return try_take<guard>(key); }

  // ---- shared ---------------------------------------------------------------------------------
  // Any number of shared holders, or one exclusive holder; grants stay FIFO (a shared newcomer
  // waits behind a queued exclusive waiter, and shared waiters at the front enter together).

  /// As async_lock, shared. Completion signature `void(boost::system::error_code, shared_guard)`.
  template <class CompletionToken>
  auto async_lock_shared(const Key& key, CompletionToken&& token) {
    return initiate<shared_guard>(key, std::nullopt, std::forward<CompletionToken>(token));
  }
  template <class CompletionToken>
  auto async_lock_shared_until(const Key& key, clock_type::time_point deadline, CompletionToken&& token) {
    return initiate<shared_guard>(key, deadline, std::forward<CompletionToken>(token));
  }
  template <class CompletionToken>
  auto async_lock_shared_for(const Key& key, saturating_ns timeout, CompletionToken&& token) {
    return async_lock_shared_until(key, deadline_after(timeout, "async_lock_shared_for"),
                                   std::forward<CompletionToken>(token));
  }
  [[nodiscard]] boost::asio::awaitable<shared_guard> lock_shared(Key key) {
    if (shared_guard g = try_lock_shared(key)) co_return g;
    co_return co_await async_lock_shared(key, boost::asio::use_awaitable);
  }
  /// Takes `key` shared if it is free or held shared with nobody queued; else an empty guard.
  [[nodiscard]] shared_guard try_lock_shared(const Key& key) { return try_take<shared_guard>(key); }

  // ---- several keys at once (exclusive) -------------------------------------------------------
  // `keys`: any input range whose elements convert to Key, or a braced list. Duplicates are
  // folded. Allocates the sorted key list (and, when it waits, the operation).

  /// All the keys, or none: completion signature `void(boost::system::error_code, multi_guard)`;
  /// on cancellation (`operation_aborted`) or timeout (`timed_out`) the keys taken so far are
  /// released and the guard is empty. Completes via post even when every key was free.
  template <class Range, class CompletionToken>
  requires std::ranges::input_range<Range>
  auto async_lock_all(const Range& keys, CompletionToken&& token) {
    return initiate_all(ordered(keys), std::nullopt, std::forward<CompletionToken>(token));
  }
  template <class CompletionToken>
  auto async_lock_all(std::initializer_list<Key> keys, CompletionToken&& token) {
    return initiate_all(ordered(keys), std::nullopt, std::forward<CompletionToken>(token));
  }
  template <class Range, class CompletionToken>
  requires std::ranges::input_range<Range>
  auto async_lock_all_until(const Range& keys, clock_type::time_point deadline, CompletionToken&& token) {
    return initiate_all(ordered(keys), deadline, std::forward<CompletionToken>(token));
  }
  template <class Range, class CompletionToken>
  requires std::ranges::input_range<Range>
  auto async_lock_all_for(const Range& keys, saturating_ns timeout, CompletionToken&& token) {
    return async_lock_all_until(keys, deadline_after(timeout, "async_lock_all_for"),
                                std::forward<CompletionToken>(token));
  }
  /// Coroutine shorthand: no suspension when every key is free (try_lock_all), else as
  /// async_lock_all(keys, use_awaitable).
  [[nodiscard]] boost::asio::awaitable<multi_guard> lock_all(std::vector<Key> keys) {
    if (multi_guard g = try_lock_all(keys)) co_return g;
    co_return co_await async_lock_all(keys, boost::asio::use_awaitable);
  }
  /// All the keys if every one is free now (nobody holds or awaits it), else an empty guard and
  /// nothing held.
  template <class Range>
  requires std::ranges::input_range<Range>
  [[nodiscard]] multi_guard try_lock_all(const Range& keys) {
    auto order = ordered(keys);
    std::vector<guard> held;
    held.reserve(order.size());
    for (std::size_t b = 0; b < order.size();) {
      const std::size_t e = group_end(order, b);
      if (take_group(order, b, e, npos, held) != npos) return multi_guard();  // `held` releases
      b = e;
    }
    return multi_guard(std::move(held));
  }
  [[nodiscard]] multi_guard try_lock_all(std::initializer_list<Key> keys) {
    return try_lock_all(std::vector<Key>(keys));
  }

  // ---- observation ----------------------------------------------------------------------------

  /// Number of keys currently held or awaited (the map's size; for tests and metrics).
  [[nodiscard]] std::size_t entry_count() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      annotated_lock lock(shards_[i].mutex);
      n += shards_[i].map.size();
    }
    return n;
  }

  /// Number of operations queued behind the holders of `key` (0 when free or uncontended).
  [[nodiscard]] std::size_t waiter_count(const Key& key) const {
    const shard& s = shard_for(key);
    annotated_lock lock(s.mutex);
    auto it = s.map.find(key);
    return it == s.map.end() ? 0 : it->second.waiters;
  }

  /// True while some guard holds `key`, exclusively or shared.
  [[nodiscard]] bool is_locked(const Key& key) const {
    const shard& s = shard_for(key);
    annotated_lock lock(s.mutex);
    auto it = s.map.find(key);
    return it != s.map.end() && it->second.held();
  }

  /// Number of shared holders of `key` (0 when free or held exclusively).
  [[nodiscard]] std::size_t shared_count(const Key& key) const {
    const shard& s = shard_for(key);
    annotated_lock lock(s.mutex);
    auto it = s.map.find(key);
    return it == s.map.end() ? 0 : it->second.shared;
  }

 private:
  template <class Mutex, class Guard, class Handler>
  friend struct detail::async_lock_op;
  template <class Op>
  friend struct detail::async_lock_cancel_handler;
  template <class Op>
  friend struct detail::async_lock_timer_handler;
  template <class Mutex>
  friend struct detail::async_lock_all_op;
  template <class Mutex, class Guard>
  friend struct detail::async_lock_initiation;

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  /// A key of a multi-key call, with its hash and shard (the lock order).
  struct ordered_key {
    Key key;
    std::size_t hash;
    std::size_t shard;
  };

  static std::size_t checked_shard_count(std::size_t n) {
    if (n == 0) {
      throw std::invalid_argument("noclobber::keyed_async_mutex: shard_count must be at least 1 (got 0)");
    }
    return n;
  }

  static clock_type::time_point deadline_after(saturating_ns timeout, const char* what) {
    if (timeout.get() < std::chrono::nanoseconds::zero()) {
      throw std::invalid_argument(std::string("noclobber::keyed_async_mutex::") + what +
                                  ": negative timeout (" + std::to_string(timeout.count()) + " ns)");
    }
    return saturating_deadline<clock_type>(clock_type::now(), timeout);
  }

  std::size_t shard_index(std::size_t hash) const noexcept {
    return detail::keyed_async_mutex_mix_hash(hash) % shard_count_;
  }
  shard& shard_for(const Key& key) const { return shards_[shard_index(hash_(key))]; }

  template <class Guard>
  static constexpr mode mode_of() noexcept {
    return std::is_same_v<Guard, guard> ? mode::exclusive : mode::shared;
  }

  /// A guard for a key granted to a queued operation (lock_op.hpp).
  template <class Guard>
  static Guard adopt(keyed_async_mutex* owner, void* node) noexcept {
    return Guard(owner, static_cast<node_type*>(node));
  }

  template <class Guard>
  Guard try_take(const Key& key) {
    shard& s = shard_for(key);
    node_type* node = nullptr;
    {
      annotated_lock lock(s.mutex);
      auto it = s.map.find(key);
      if (it != s.map.end() && !it->second.free_for(mode_of<Guard>())) return Guard();
      node = it != s.map.end() ? &*it : s.find_or_insert(key).first;
      node->second.take(mode_of<Guard>());
    }
    return Guard(this, node);
  }

  // Called by the guards: lets go of one hold and grants the front of the queue (FIFO hand-off),
  // or removes the entry when nobody holds or awaits the key any more.
  void release(node_type* node, mode m) noexcept {
    shard& s = shard_for(node->first);
    detail::async_lock_waiter* granted = nullptr;
    {
      annotated_lock lock(s.mutex);
      detail::async_lock_entry& e = node->second;
      assert(e.held());
      e.let_go(m);
      granted = e.grant_front();  // the key never looks free in between: no barging
      if (!e.held() && e.head == nullptr) s.erase(node);
    }
    detail::async_lock_complete_granted(granted);
  }

  // Takes a still-queued waiter out of its queue (and grants shared waiters it held back).
  // Returns false if it was already granted or withdrawn (the other party completes it).
  bool withdraw(detail::async_lock_waiter* w) noexcept {
    // Only the shard is touched before the state check: once granted, the node may be gone.
    shard& s = *static_cast<shard*>(w->shard);
    detail::async_lock_waiter* granted = nullptr;
    {
      annotated_lock lock(s.mutex);
      if (w->st != detail::async_lock_waiter::state::queued) return false;
      w->st = detail::async_lock_waiter::state::withdrawn;
      detail::async_lock_entry& e = static_cast<node_type*>(w->node)->second;
      e.remove(w);  // a holder still holds: the entry stays
      granted = e.grant_front();
    }
    detail::async_lock_complete_granted(granted);
    return true;
  }

  template <class Guard, class CompletionToken>
  auto initiate(const Key& key, std::optional<clock_type::time_point> deadline, CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code, Guard)>(
        detail::async_lock_initiation<keyed_async_mutex, Guard>{this}, token, key, deadline);
  }

  // ---- several keys ---------------------------------------------------------------------------

  /// The keys in lock order, (shard, hash), with duplicates folded (equal keys have equal hashes,
  /// so they are adjacent within a run of equal hashes).
  template <class Range>
  std::vector<ordered_key> ordered(const Range& keys) const {
    std::vector<ordered_key> out;
    for (auto&& k : keys) {
      Key key(k);
      const std::size_t h = hash_(key);
      out.push_back(ordered_key{std::move(key), h, shard_index(h)});
    }
    std::sort(out.begin(), out.end(), [](const ordered_key& a, const ordered_key& b) {
      return a.shard != b.shard ? a.shard < b.shard : a.hash < b.hash;
    });
    std::size_t kept = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      bool dup = false;
      for (std::size_t j = kept; j-- > 0 && out[j].hash == out[i].hash;) {
        if (equal_(out[j].key, out[i].key)) {
          dup = true;
          break;
        }
      }
      if (!dup) {
        if (kept != i) out[kept] = std::move(out[i]);
        ++kept;
      }
    }
    out.erase(out.begin() + static_cast<std::ptrdiff_t>(kept), out.end());
    return out;
  }

  static std::size_t group_end(const std::vector<ordered_key>& keys, std::size_t b) noexcept {
    std::size_t e = b;
    while (e < keys.size() && keys[e].shard == keys[b].shard) ++e;
    return e;
  }

  /// Takes keys[b … e) (one shard's keys) except keys[except] (already held by the caller) all at
  /// once, appending their guards to `held` (which has room), or none: then returns the index of
  /// a key that is held or awaited. Throws what find_or_insert throws; nothing of the group is
  /// taken then.
  std::size_t take_group(const std::vector<ordered_key>& keys, std::size_t b, std::size_t e,
                         std::size_t except, std::vector<guard>& held) {
    shard& s = shards_[keys[b].shard];
    const std::size_t first = held.size();
    {
      annotated_lock lock(s.mutex);
      for (std::size_t i = b; i < e; ++i) {
        if (i != except && s.map.find(keys[i].key) != s.map.end()) return i;  // held or awaited
      }
      std::size_t i = b;
      try {
        for (; i < e; ++i) {
          if (i == except) continue;
          node_type* node = s.find_or_insert(keys[i].key).first;
          node->second.take(mode::exclusive);
          held.push_back(guard(this, node));  // room reserved: cannot throw
        }
      } catch (...) {
        for (std::size_t j = first; j < held.size(); ++j) {
          held[j].node_->second.let_go(mode::exclusive);
          s.erase(std::exchange(held[j].node_, nullptr));
          held[j].owner_ = nullptr;
        }
        held.resize(first);
        throw;
      }
    }
    return npos;
  }

  template <class CompletionToken>
  auto initiate_all(std::vector<ordered_key> keys, std::optional<clock_type::time_point> deadline,
                    CompletionToken&& token) {
    return detail::async_lock_all_op<keyed_async_mutex>::start(this, std::move(keys), deadline,
                                                               std::forward<CompletionToken>(token));
  }

  std::size_t shard_count_;
  Hash hash_;
  KeyEqual equal_;
  std::unique_ptr<shard[]> shards_;
};

/// Hold of one key, exclusive (guard) or shared (shared_guard). Movable, not copyable; unlocks on
/// destruction.
template <class Key, class Hash, class KeyEqual>
template <detail::async_lock_mode Mode>
class keyed_async_mutex<Key, Hash, KeyEqual>::basic_guard {
 public:
  basic_guard() noexcept = default;
  basic_guard(basic_guard&& other) noexcept
      : owner_(std::exchange(other.owner_, nullptr)), node_(std::exchange(other.node_, nullptr)) {}
  basic_guard& operator=(basic_guard&& other) noexcept {
    if (this != &other) {
      unlock();
      owner_ = std::exchange(other.owner_, nullptr);
      node_ = std::exchange(other.node_, nullptr);
    }
    return *this;
  }
  basic_guard(const basic_guard&) = delete;
  basic_guard& operator=(const basic_guard&) = delete;
  ~basic_guard() { unlock(); }

  [[nodiscard]] bool owns_lock() const noexcept { return node_ != nullptr; }
  explicit operator bool() const noexcept { return owns_lock(); }

  /// The key held. Precondition: owns_lock().
  [[nodiscard]] const Key& key() const noexcept {
    assert(node_);
    return node_->first;
  }

  /// Releases the key now: grants the front of its queue (posting each grant to that waiter's
  /// executor) or, when nobody else holds or awaits it, removes the entry. No-op on an empty
  /// guard. noexcept: if posting a hand-off cannot allocate, std::terminate is called.
  void unlock() noexcept {
    if (node_) std::exchange(owner_, nullptr)->release(std::exchange(node_, nullptr), Mode);
  }

 private:
  friend class keyed_async_mutex;
  basic_guard(keyed_async_mutex* owner, node_type* node) noexcept : owner_(owner), node_(node) {}

  keyed_async_mutex* owner_ = nullptr;
  node_type* node_ = nullptr;
};

/// Exclusive hold of a folded set of keys (lock_all and friends). Movable, not copyable; releases
/// them all on destruction.
template <class Key, class Hash, class KeyEqual>
class keyed_async_mutex<Key, Hash, KeyEqual>::multi_guard {
 public:
  multi_guard() noexcept = default;
  multi_guard(multi_guard&&) noexcept = default;
  multi_guard& operator=(multi_guard&& other) noexcept {
    if (this != &other) {
      unlock();
      guards_ = std::move(other.guards_);
      owns_ = std::exchange(other.owns_, false);
    }
    return *this;
  }
  multi_guard(const multi_guard&) = delete;
  multi_guard& operator=(const multi_guard&) = delete;
  ~multi_guard() { unlock(); }

  /// True when the keys are held (an empty key list is held trivially).
  [[nodiscard]] bool owns_lock() const noexcept { return owns_; }
  explicit operator bool() const noexcept { return owns_; }
  /// Number of distinct keys held.
  [[nodiscard]] std::size_t size() const noexcept { return guards_.size(); }
  /// The i-th held key, in lock order (not the caller's). Precondition: i < size().
  [[nodiscard]] const Key& key(std::size_t i) const noexcept { return guards_[i].key(); }

  /// Releases every key now (in reverse lock order). No-op on an empty guard.
  void unlock() noexcept {
    while (!guards_.empty()) guards_.pop_back();
    owns_ = false;
  }

 private:
  friend class keyed_async_mutex;
  template <class Mutex>
  friend struct detail::async_lock_all_op;
  explicit multi_guard(std::vector<guard> guards) noexcept : guards_(std::move(guards)), owns_(true) {}

  std::vector<guard> guards_;
  bool owns_ = false;
};

}  // namespace noclobber
