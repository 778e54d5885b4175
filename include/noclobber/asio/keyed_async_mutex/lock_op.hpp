// noclobber/asio/keyed_async_mutex/lock_op.hpp — one queued async_lock / async_lock_shared of a
// keyed_async_mutex: the operation that holds the completion handler while it waits, and what
// completes it (a grant, a cancellation, a timeout, or its execution context going away).
//
// Overview
// --------
// async_lock_op<Mutex, Guard, Handler> is queued in its key's entry (entry.hpp) and completes
// exactly once, always by posting to the handler's own executor (never inline in the thread that
// granted, cancelled or timed it out):
//
//   granted      a release handed it the key: it completes with no error and a Guard holding it
//   cancelled    its cancellation slot fired (terminal, partial or total) while it was queued:
//                it leaves the queue at once and completes with operation_aborted
//   timed out    its deadline timer fired while it was queued: timed_out
//   abandoned    a posted completion was destroyed un-run (its context shut down): a granted key
//                is released, so no lock is left held
//
// The op is reference counted: one reference for the completion, one for a pending timer wait;
// it is freed with the handler's associated allocator by whichever lets go last.
//
// async_lock_initiation<Mutex, Guard> starts one: it takes a free key at once (completing via
// post, no op allocated) or creates the op outside the shard mutex and queues it, re-checking the
// key under the mutex, and arms its deadline timer there.
//
// The owning mutex provides, as a friend: its shard type and shard_for(key), try_take<Guard>(key),
// `bool withdraw(async_lock_waiter*)` (take a still queued waiter out; false if it was already
// granted or withdrawn) and `static Guard adopt<Guard>(Mutex*, void* node)` (a guard for a
// granted key).
//
// Thread safety: an op is touched by the thread that queues it, the granting / cancelling /
// timing-out thread (under the shard mutex, then only to post), and the handler's executor. User
// code (the handler) runs only in finish(), on the handler's executor, under no lock.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include "noclobber/asio/keyed_async_mutex/entry.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber::detail {

// Runs a posted completion; if destroyed un-run (context shut down), abandons the operation so
// that a granted key is released.
template <class Op>
struct async_lock_invoker {
  Op* op;
  boost::system::error_code ec;

  async_lock_invoker(Op* o, boost::system::error_code e) noexcept : op(o), ec(e) {}
  async_lock_invoker(async_lock_invoker&& other) noexcept
      : op(std::exchange(other.op, nullptr)), ec(other.ec) {}
  async_lock_invoker& operator=(async_lock_invoker&&) = delete;
  ~async_lock_invoker() {
    if (op) op->abandon(ec);
  }
  void operator()() { std::exchange(op, nullptr)->finish(ec); }
};

template <class Op>
struct async_lock_cancel_handler {
  Op* op;
  explicit async_lock_cancel_handler(Op* o) noexcept : op(o) {}
  void operator()(boost::asio::cancellation_type_t type) {
    using ct = boost::asio::cancellation_type;
    if ((type & (ct::terminal | ct::partial | ct::total)) == ct::none) return;
    if (op->owner->withdraw(op)) Op::post_completion_fn(op, boost::asio::error::operation_aborted);
  }
};

template <class Op>
struct async_lock_timer_handler {
  Op* op;

  explicit async_lock_timer_handler(Op* o) noexcept : op(o) {}
  async_lock_timer_handler(async_lock_timer_handler&& other) noexcept
      : op(std::exchange(other.op, nullptr)) {}
  async_lock_timer_handler& operator=(async_lock_timer_handler&&) = delete;
  ~async_lock_timer_handler() {
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

/// A queued lock operation holding its completion handler (see the overview).
template <class Mutex, class Guard, class Handler>
struct async_lock_op final : async_lock_waiter {
  using executor_type = boost::asio::associated_executor_t<Handler>;
  using work_executor_type = std::decay_t<decltype(boost::asio::prefer(
      std::declval<const executor_type&>(), boost::asio::execution::outstanding_work.tracked))>;
  using allocator_type = typename std::allocator_traits<
      boost::asio::associated_allocator_t<Handler>>::template rebind_alloc<async_lock_op>;

  Mutex* owner;
  Handler handler;
  work_executor_type work;
  allocator_type alloc;
  boost::asio::cancellation_slot slot;
  std::optional<boost::asio::steady_timer> timer;
  std::atomic<int> refs{1};

  async_lock_op(Mutex* m, async_lock_mode lock_mode, Handler&& h)
      : owner(m),
        handler(std::move(h)),
        work(boost::asio::prefer(boost::asio::get_associated_executor(handler),
                                 boost::asio::execution::outstanding_work.tracked)),
        alloc(boost::asio::get_associated_allocator(handler)),
        slot(boost::asio::get_associated_cancellation_slot(handler)) {
    mode = lock_mode;
    post_completion = &post_completion_fn;
  }

  static async_lock_op* create(Mutex* m, async_lock_mode lock_mode, Handler&& h) {
    allocator_type a(boost::asio::get_associated_allocator(h));
    async_lock_op* p = std::allocator_traits<allocator_type>::allocate(a, 1);
    try {
      std::allocator_traits<allocator_type>::construct(a, p, m, lock_mode, std::move(h));
    } catch (...) {
      std::allocator_traits<allocator_type>::deallocate(a, p, 1);
      throw;
    }
    return p;
  }

  /// Connects the cancellation slot and, with a deadline, creates the timer (not yet armed).
  /// If this throws, the caller abandons the op.
  void prepare(bool timed) {
    if (slot.is_connected()) slot.template emplace<async_lock_cancel_handler<async_lock_op>>(this);
    if (timed) timer.emplace(boost::asio::any_io_executor(work));
  }

  void release_ref() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      allocator_type a(std::move(alloc));
      std::allocator_traits<allocator_type>::destroy(a, this);
      std::allocator_traits<allocator_type>::deallocate(a, this, 1);
    }
  }

  static void post_completion_fn(async_lock_waiter* w, boost::system::error_code ec) {
    auto* self = static_cast<async_lock_op*>(w);
    boost::asio::post(self->work, async_lock_invoker<async_lock_op>(self, ec));
  }

  // Runs on the waiter's executor. Clears the cancellation slot and timer, frees the op's
  // completion reference, then invokes the handler.
  void finish(boost::system::error_code ec) {
    if (slot.is_connected()) slot.clear();
    if (timer) timer->cancel();
    Handler h(std::move(handler));
    [[maybe_unused]] work_executor_type w(std::move(work));  // keeps the context busy until the handler ran
    Guard g = ec ? Guard() : Mutex::template adopt<Guard>(owner, node);
    release_ref();
    std::move(h)(ec, std::move(g));
  }

  // The completion will never run: release a granted key and drop the handler.
  void abandon(boost::system::error_code ec) noexcept {
    if (slot.is_connected()) slot.clear();
    if (timer) timer->cancel();
    if (!ec) Mutex::template adopt<Guard>(owner, node).unlock();
    release_ref();
  }
};

/// Starts one async_lock / async_lock_shared (see the overview). Called by async_initiate.
template <class Mutex, class Guard>
struct async_lock_initiation {
  Mutex* self;

  template <class Handler, class Key, class TimePoint>
  void operator()(Handler&& handler, const Key& key, std::optional<TimePoint> deadline) const {
    using handler_type = std::decay_t<Handler>;
    using op_type = async_lock_op<Mutex, Guard, handler_type>;
    constexpr async_lock_mode m = Mutex::template mode_of<Guard>();
    // Fast path: the key is free for us; no op allocated, no timer armed.
    if (Guard g = self->template try_take<Guard>(key)) {
      post_immediate(handler_type(std::forward<Handler>(handler)), std::move(g));
      return;
    }
    // Slow path: build the op outside the lock, then queue it (re-checking the key).
    op_type* op = op_type::create(self, m, handler_type(std::forward<Handler>(handler)));
    try {
      op->prepare(deadline.has_value());
    } catch (...) {
      op->abandon(boost::asio::error::operation_aborted);
      throw;
    }
    auto& s = self->shard_for(key);
    annotated_unique_lock lock(s.mutex);
    typename Mutex::node_type* node = nullptr;
    bool inserted = false;
    try {
      std::tie(node, inserted) = s.find_or_insert(key);  // Key's copy, Hash, KeyEqual may throw
    } catch (...) {
      lock.unlock();
      op->abandon(boost::asio::error::operation_aborted);  // nothing queued, nothing held
      throw;
    }
    op->node = node;
    op->shard = &s;
    async_lock_entry& e = node->second;
    if (e.free_for(m)) {
      // Freed while we were allocating: take it, and complete through the op.
      e.take(m);
      op->st = async_lock_waiter::state::granted;
      lock.unlock();
      op_type::post_completion_fn(op, {});
      return;
    }
    e.push_back(op);
    if (deadline) {
      // Armed under the shard lock, so no hand-off can race with arming the timer.
      op->timer->expires_at(*deadline);
      op->refs.fetch_add(1, std::memory_order_relaxed);
      try {
        op->timer->async_wait(async_lock_timer_handler<op_type>(op));  // takes that reference
      } catch (...) {
        e.remove(op);  // nobody else can have seen the op yet
        lock.unlock();
        op->abandon(boost::asio::error::operation_aborted);
        throw;
      }
    }
  }

  template <class Handler>
  static void post_immediate(Handler&& handler, Guard g) {
    auto ex = boost::asio::get_associated_executor(handler);
    boost::asio::post(ex, [h = std::move(handler), g = std::move(g)]() mutable {
      std::move(h)(boost::system::error_code(), std::move(g));
    });
  }
};

}  // namespace noclobber::detail
