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
// Guarantees
//   * Entries exist only while a key is held or awaited: the map never grows with keys that were
//     used once (no slow leak). `entry_count()` reports the live ones.
//   * FIFO hand-off: unlocking a key with waiters passes ownership straight to the oldest waiter
//     (the key never looks free in between, so no barging), and that waiter's completion is
//     posted to *its own* associated executor, never run inline in the unlocker.
//   * `co_await m.lock(key)` is the coroutine shorthand: no suspension at all when the key is free.
//   * Any completion token: `async_lock` is an `async_initiate` operation with signature
//     `void(boost::system::error_code, guard)`; use_awaitable, deferred, use_future, as_tuple,
//     redirect_error and plain callbacks all work. Even an uncontended lock completes via post.
//   * Cancellation: a waiter whose associated cancellation slot fires (terminal, partial or total
//     — leaving the queue has no side effect) leaves the queue at once and completes with
//     `asio::error::operation_aborted`; `async_lock_for` / `async_lock_until` complete with
//     `asio::error::timed_out` when the deadline passes first. Either way nothing stays behind:
//     no queue node, and no entry when nobody else holds or awaits the key. A waiter that was
//     already granted the key when cancellation arrives completes normally, holding it.
//   * If a granted completion is destroyed without being invoked (its execution context shut
//     down), the key is released, so no lock is left held.
//
// Thread safety: every member function may be called from any thread at once; the mutex works
// with one io_context thread or many, with or without strands. Each shard has a small mutex
// (annotated_mutex: clang's -Wthread-safety checks its map) that guards its map and waiter queues. The only
// user code run under it is the map's own: Hash, KeyEqual and copying the Key (if they throw, nothing is
// queued or held). Completion handlers, including coroutine resumption, always run after it is released, on
// the waiter's executor. Lock order: shard mutex, then (only while a timed wait is being armed) the timer
// service's internal lock. A `guard` is a plain movable object: use one guard from one place at a time.
//
// Lifetime: the mutex must outlive every guard and every pending operation, and a pending
// waiter's execution context must outlive its wait (as for any Asio operation).
#pragma once

#include <atomic>
#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include "noclobber/duration.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber {

namespace detail {

// One queued async_lock. Fields marked (S) are guarded by the shard mutex of the key's shard.
struct async_lock_waiter {
  enum class state : unsigned char { queued, granted, withdrawn };

  async_lock_waiter* prev = nullptr;  // (S)
  async_lock_waiter* next = nullptr;  // (S)
  state st = state::queued;           // (S) leaves `queued` exactly once
  void* node = nullptr;               // the key's map node: valid while queued or granted-but-not-released
  void* shard = nullptr;              // the key's shard: valid as long as the mutex
  // Posts the completion to the waiter's executor. Called after st left `queued`, with no lock.
  void (*post_completion)(async_lock_waiter*, boost::system::error_code) = nullptr;
};

// The per-key state. An entry is in its shard's map exactly while held or awaited.
struct async_lock_entry {
  bool held = false;                  // (S)
  async_lock_waiter* head = nullptr;  // (S) oldest waiter
  async_lock_waiter* tail = nullptr;  // (S)
  std::size_t waiters = 0;            // (S)

  void push_back(async_lock_waiter* w) noexcept {
    w->prev = tail;
    w->next = nullptr;
    (tail ? tail->next : head) = w;
    tail = w;
    ++waiters;
  }
  void remove(async_lock_waiter* w) noexcept {
    (w->prev ? w->prev->next : head) = w->next;
    (w->next ? w->next->prev : tail) = w->prev;
    w->prev = w->next = nullptr;
    --waiters;
  }
};

[[nodiscard]] inline std::size_t keyed_async_mutex_mix_hash(std::size_t h) noexcept {
  // std::hash of an integer is the identity; spread it before taking a shard.
  std::uint64_t x = static_cast<std::uint64_t>(h);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return static_cast<std::size_t>(x);
}

}  // namespace detail

/// An awaitable per-key exclusive lock. See the header comment for the contract.
template <class Key, class Hash = std::hash<Key>, class KeyEqual = std::equal_to<Key>>
class keyed_async_mutex {
  using map_type = std::unordered_map<Key, detail::async_lock_entry, Hash, KeyEqual>;
  using node_type = typename map_type::value_type;

 public:
  using key_type = Key;
  using clock_type = std::chrono::steady_clock;

  /// Exclusive ownership of one key. Movable, not copyable; unlocks on destruction.
  class guard {
   public:
    guard() noexcept = default;
    guard(guard&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)), node_(std::exchange(other.node_, nullptr)) {}
    guard& operator=(guard&& other) noexcept {
      if (this != &other) {
        unlock();
        owner_ = std::exchange(other.owner_, nullptr);
        node_ = std::exchange(other.node_, nullptr);
      }
      return *this;
    }
    guard(const guard&) = delete;
    guard& operator=(const guard&) = delete;
    ~guard() { unlock(); }

    [[nodiscard]] bool owns_lock() const noexcept { return node_ != nullptr; }
    explicit operator bool() const noexcept { return owns_lock(); }

    /// The key held. Precondition: owns_lock().
    [[nodiscard]] const Key& key() const noexcept {
      assert(node_);
      return node_->first;
    }

    /// Releases the key now: hands it to the oldest waiter (posting its completion to that
    /// waiter's executor) or, when nobody waits, removes the entry. No-op on an empty guard.
    /// noexcept: if posting the hand-off cannot allocate, std::terminate is called.
    void unlock() noexcept {
      if (node_) {
        std::exchange(owner_, nullptr)->release(std::exchange(node_, nullptr));
      }
    }

   private:
    friend class keyed_async_mutex;
    guard(keyed_async_mutex* owner, node_type* node) noexcept : owner_(owner), node_(node) {}

    keyed_async_mutex* owner_ = nullptr;
    node_type* node_ = nullptr;
  };

  /// `shard_count` independent shards (each a mutex and a hash map); 0 is rejected.
  explicit keyed_async_mutex(std::size_t shard_count = 64, const Hash& hash = Hash(),
                             const KeyEqual& equal = KeyEqual())
      : shard_count_(checked_shard_count(shard_count)), hash_(hash), shards_(new shard[shard_count_]) {
    for (std::size_t i = 0; i < shard_count_; ++i) {
      shards_[i].map = map_type(0, hash, equal);
    }
  }
  keyed_async_mutex(const keyed_async_mutex&) = delete;
  keyed_async_mutex& operator=(const keyed_async_mutex&) = delete;

  /// Precondition: no guard is alive and no operation is pending.
  ~keyed_async_mutex() { assert(entry_count() == 0); }

  /// Waits for `key` without blocking the thread. Completion signature
  /// `void(boost::system::error_code, guard)`: on success the guard owns the key; on
  /// cancellation the error is `operation_aborted` and the guard is empty.
  template <class CompletionToken>
  auto async_lock(const Key& key, CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code, guard)>(
        initiate_lock{this}, token, key, std::optional<clock_type::time_point>());
  }

  /// As async_lock, but gives up at `deadline` with `asio::error::timed_out`. The timer runs on
  /// the completion handler's associated executor (a coroutine's own executor under
  /// use_awaitable) and is armed only if the key is busy.
  template <class CompletionToken>
  auto async_lock_until(const Key& key, clock_type::time_point deadline, CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code, guard)>(
        initiate_lock{this}, token, key, std::optional<clock_type::time_point>(deadline));
  }

  /// As async_lock_until(key, now + timeout, token). A negative timeout is rejected. Any duration
  /// converts without overflow: hours::max() waits without a deadline (time_point::max()).
  template <class CompletionToken>
  auto async_lock_for(const Key& key, saturating_ns timeout, CompletionToken&& token) {
    if (timeout.get() < std::chrono::nanoseconds::zero()) {
      throw std::invalid_argument("noclobber::keyed_async_mutex::async_lock_for: negative timeout (" +
                                  std::to_string(timeout.count()) + " ns)");
    }
    return async_lock_until(key, saturating_deadline<clock_type>(clock_type::now(), timeout),
                            std::forward<CompletionToken>(token));
  }

  /// Coroutine shorthand: `auto g = co_await m.lock(key);`. Takes a free key at once, without
  /// suspending (try_lock; a key with waiters is never free, so this does not barge), else
  /// waits exactly like async_lock(key, use_awaitable), throwing system_error on cancellation.
  [[nodiscard]] boost::asio::awaitable<guard> lock(Key key) {
    if (guard g = try_lock(key)) co_return g;
    co_return co_await async_lock(key, boost::asio::use_awaitable);
  }

  /// Takes `key` if nobody holds or awaits it; otherwise returns an empty guard. Never waits.
  [[nodiscard]] guard try_lock(const Key& key) {
    shard& s = shard_for(key);
    annotated_lock lock(s.mutex);
    auto [it, inserted] = s.map.try_emplace(key);
    if (!inserted) return guard();
    it->second.held = true;
    return guard(this, &*it);
  }

  /// Number of keys currently held or awaited (the map's size; for tests and metrics).
  [[nodiscard]] std::size_t entry_count() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      annotated_lock lock(shards_[i].mutex);
      n += shards_[i].map.size();
    }
    return n;
  }

  /// Number of operations queued behind the holder of `key` (0 when free or uncontended).
  [[nodiscard]] std::size_t waiter_count(const Key& key) const {
    const shard& s = shard_for(key);
    annotated_lock lock(s.mutex);
    auto it = s.map.find(key);
    return it == s.map.end() ? 0 : it->second.waiters;
  }

  /// True while some guard holds `key`.
  [[nodiscard]] bool is_locked(const Key& key) const {
    const shard& s = shard_for(key);
    annotated_lock lock(s.mutex);
    auto it = s.map.find(key);
    return it != s.map.end() && it->second.held;
  }

 private:
  struct alignas(64) shard {
    mutable annotated_mutex mutex;
    map_type map NOCLOBBER_GUARDED_BY(mutex);
  };

  static std::size_t checked_shard_count(std::size_t n) {
    if (n == 0) {
      throw std::invalid_argument("noclobber::keyed_async_mutex: shard_count must be at least 1 (got 0)");
    }
    return n;
  }

  shard& shard_for(const Key& key) const {
    return shards_[detail::keyed_async_mutex_mix_hash(hash_(key)) % shard_count_];
  }

  // Called by guard::unlock: FIFO hand-off or removal of the entry.
  void release(node_type* node) noexcept {
    shard& s = shard_for(node->first);
    detail::async_lock_waiter* next = nullptr;
    {
      annotated_lock lock(s.mutex);
      detail::async_lock_entry& e = node->second;
      assert(e.held);
      if (e.head) {
        next = e.head;
        e.remove(next);
        next->st = detail::async_lock_waiter::state::granted;  // e.held stays true: no barging
      } else {
        s.map.erase(s.map.find(node->first));
      }
    }
    if (next) next->post_completion(next, {});
  }

  // Takes a still-queued waiter out of its queue. Returns false if it was already granted or
  // withdrawn (the other party completes it).
  bool withdraw(detail::async_lock_waiter* w) noexcept {
    // Only the shard is touched before the state check: once granted, the node may be gone.
    shard& s = *static_cast<shard*>(w->shard);
    annotated_lock lock(s.mutex);
    if (w->st != detail::async_lock_waiter::state::queued) return false;
    w->st = detail::async_lock_waiter::state::withdrawn;
    static_cast<node_type*>(w->node)->second.remove(w);  // the holder still holds: the entry stays
    return true;
  }

  template <class Handler>
  struct lock_op;

  // Runs a posted completion; if destroyed un-run (context shut down), abandons the operation
  // so that a granted key is released.
  template <class Op>
  struct op_invoker {
    Op* op;
    boost::system::error_code ec;

    op_invoker(Op* o, boost::system::error_code e) noexcept : op(o), ec(e) {}
    op_invoker(op_invoker&& other) noexcept : op(std::exchange(other.op, nullptr)), ec(other.ec) {}
    op_invoker& operator=(op_invoker&&) = delete;
    ~op_invoker() {
      if (op) op->abandon(ec);
    }
    void operator()() { std::exchange(op, nullptr)->finish(ec); }
  };

  template <class Op>
  struct op_cancel_handler {
    Op* op;
    explicit op_cancel_handler(Op* o) noexcept : op(o) {}
    void operator()(boost::asio::cancellation_type_t type) {
      using ct = boost::asio::cancellation_type;
      if ((type & (ct::terminal | ct::partial | ct::total)) == ct::none) return;
      if (op->owner->withdraw(op)) Op::post_completion_fn(op, boost::asio::error::operation_aborted);
    }
  };

  template <class Op>
  struct op_timer_handler {
    Op* op;

    explicit op_timer_handler(Op* o) noexcept : op(o) {}
    op_timer_handler(op_timer_handler&& other) noexcept : op(std::exchange(other.op, nullptr)) {}
    op_timer_handler& operator=(op_timer_handler&&) = delete;
    ~op_timer_handler() {
      if (op) op->release_ref();
    }
    void operator()(boost::system::error_code ec) {
      Op* o = std::exchange(op, nullptr);
      // Already on the waiter's executor (the timer's): complete inline.
      if (ec != boost::asio::error::operation_aborted && o->owner->withdraw(o)) {
        o->finish(boost::asio::error::timed_out);
      }
      o->release_ref();
    }
  };

  // A queued waiter holding the completion handler. Reference counted: one reference for the
  // completion, one for a pending timer wait; freed with the handler's associated allocator.
  template <class Handler>
  struct lock_op final : detail::async_lock_waiter {
    using executor_type = boost::asio::associated_executor_t<Handler>;
    using work_executor_type = std::decay_t<decltype(boost::asio::prefer(
        std::declval<const executor_type&>(), boost::asio::execution::outstanding_work.tracked))>;
    using allocator_type = typename std::allocator_traits<
        boost::asio::associated_allocator_t<Handler>>::template rebind_alloc<lock_op>;

    keyed_async_mutex* owner;
    Handler handler;
    work_executor_type work;
    allocator_type alloc;
    boost::asio::cancellation_slot slot;
    std::optional<boost::asio::steady_timer> timer;
    std::atomic<int> refs{1};

    lock_op(keyed_async_mutex* m, Handler&& h)
        : owner(m),
          handler(std::move(h)),
          work(boost::asio::prefer(boost::asio::get_associated_executor(handler),
                                   boost::asio::execution::outstanding_work.tracked)),
          alloc(boost::asio::get_associated_allocator(handler)),
          slot(boost::asio::get_associated_cancellation_slot(handler)) {
      post_completion = &post_completion_fn;
    }

    static lock_op* create(keyed_async_mutex* m, Handler&& h) {
      allocator_type a(boost::asio::get_associated_allocator(h));
      lock_op* p = std::allocator_traits<allocator_type>::allocate(a, 1);
      try {
        std::allocator_traits<allocator_type>::construct(a, p, m, std::move(h));
      } catch (...) {
        std::allocator_traits<allocator_type>::deallocate(a, p, 1);
        throw;
      }
      return p;
    }

    void release_ref() noexcept {
      if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        allocator_type a(std::move(alloc));
        std::allocator_traits<allocator_type>::destroy(a, this);
        std::allocator_traits<allocator_type>::deallocate(a, this, 1);
      }
    }

    static void post_completion_fn(detail::async_lock_waiter* w, boost::system::error_code ec) {
      auto* self = static_cast<lock_op*>(w);
      boost::asio::post(self->work, op_invoker<lock_op>(self, ec));
    }

    // Runs on the waiter's executor. Clears the cancellation slot and timer, frees the op's
    // completion reference, then invokes the handler.
    void finish(boost::system::error_code ec) {
      if (slot.is_connected()) slot.clear();
      if (timer) timer->cancel();
      Handler h(std::move(handler));
      [[maybe_unused]] work_executor_type w(std::move(work));  // keeps the context busy until the handler ran
      guard g = ec ? guard() : guard(owner, static_cast<node_type*>(node));
      release_ref();
      std::move(h)(ec, std::move(g));
    }

    // The completion will never run: release a granted key and drop the handler.
    void abandon(boost::system::error_code ec) noexcept {
      if (slot.is_connected()) slot.clear();
      if (timer) timer->cancel();
      if (!ec) guard(owner, static_cast<node_type*>(node)).unlock();
      release_ref();
    }
  };

  template <class Handler>
  static void post_immediate(Handler&& handler, guard g) {
    auto ex = boost::asio::get_associated_executor(handler);
    boost::asio::post(ex, [h = std::move(handler), g = std::move(g)]() mutable {
      std::move(h)(boost::system::error_code(), std::move(g));
    });
  }

  struct initiate_lock {
    keyed_async_mutex* self;

    template <class Handler>
    void operator()(Handler&& handler, const Key& key, std::optional<clock_type::time_point> deadline) const {
      using handler_type = std::decay_t<Handler>;
      shard& s = self->shard_for(key);
      {
        // Fast path: the key is free; no op allocated, no timer armed.
        annotated_unique_lock lock(s.mutex);
        auto [it, inserted] = s.map.try_emplace(key);
        if (inserted) {
          it->second.held = true;
          guard g(self, &*it);
          lock.unlock();
          post_immediate(handler_type(std::forward<Handler>(handler)), std::move(g));
          return;
        }
      }
      // Slow path: build the op outside the lock, then queue it (re-checking the key).
      lock_op<handler_type>* op =
          lock_op<handler_type>::create(self, handler_type(std::forward<Handler>(handler)));
      try {
        if (op->slot.is_connected()) op->slot.template emplace<op_cancel_handler<lock_op<handler_type>>>(op);
        if (deadline) op->timer.emplace(boost::asio::any_io_executor(op->work));
      } catch (...) {
        op->abandon(boost::asio::error::operation_aborted);
        throw;
      }
      annotated_unique_lock lock(s.mutex);
      typename map_type::iterator it;
      bool inserted = false;
      try {
        std::tie(it, inserted) = s.map.try_emplace(key);  // Key's copy, Hash, KeyEqual may throw
      } catch (...) {
        lock.unlock();
        op->abandon(boost::asio::error::operation_aborted);  // nothing queued, nothing held
        throw;
      }
      op->node = &*it;
      op->shard = &s;
      if (inserted) {
        // Freed while we were allocating: take it, and complete through the op.
        it->second.held = true;
        op->st = detail::async_lock_waiter::state::granted;
        lock.unlock();
        lock_op<handler_type>::post_completion_fn(op, {});
        return;
      }
      it->second.push_back(op);
      if (deadline) {
        // Armed under the shard lock, so no hand-off can race with arming the timer.
        op->timer->expires_at(*deadline);
        op->refs.fetch_add(1, std::memory_order_relaxed);
        try {
          op->timer->async_wait(op_timer_handler<lock_op<handler_type>>(op));  // takes that reference
        } catch (...) {
          it->second.remove(op);  // nobody else can have seen the op yet
          lock.unlock();
          op->abandon(boost::asio::error::operation_aborted);
          throw;
        }
      }
    }
  };

  std::size_t shard_count_;
  Hash hash_;
  std::unique_ptr<shard[]> shards_;
};

}  // namespace noclobber
