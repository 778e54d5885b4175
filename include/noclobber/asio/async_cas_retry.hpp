// noclobber/asio/async_cas_retry.hpp — cas_retry as a coroutine: backoff on a steady_timer.
//
// Overview
// --------
// `async_cas_retry` is `cas_retry` (cas_retry.hpp) for Boost.Asio coroutines. The attempt may
// return a `write_status`-like outcome directly or an `asio::awaitable` of one; between attempts
// the coroutine waits on an `asio::steady_timer` instead of sleeping its thread.
//
//   auto r = co_await noclobber::async_cas_retry(policy,
//       [&](const noclobber::attempt_info& a) -> asio::awaitable<noclobber::write_result<long>> {
//         if (a.reread) cached = co_await store.async_read(key);
//         co_return co_await store.async_write_if_match(key, cached.token, cached.value + 1);
//       });
//
// The decisions are not re-implemented here: the loop drives the same `retry_controller` as the
// synchronous cas_retry, so policies, attempt limit, deadline, retry budget, stop reasons,
// classify_exception and the on_retry / on_give_up hooks behave identically. Two things may
// cancel the loop, both ending it with stop_reason::cancelled (a waiting backoff wakes at once):
//   * the policy's std::stop_token;
//   * Asio cancellation of the awaiting coroutine (its cancellation slot, e.g. from
//     `awaitable_operators ||`, a parallel_group or co_spawn with bind_cancellation_slot), when
//     it arrives during a backoff or between attempts. Arriving during an attempt, it reaches the
//     attempt's own awaitable, whose outcome (or exception) is then handled as usual.
//
// Environment: the clock is std::chrono::steady_clock (read only when the policy has a
// deadline), the random engine is system_retry_env's per-thread engine, and the timer runs on
// the coroutine's executor.
//
// Thread safety: like cas_retry it holds no lock. The attempt, the hooks and classify_exception
// run on the awaiting coroutine's executor, under no noclobber lock. A stop request from another
// thread cancels the backoff timer under a small mutex private to that one wait. The policy is held by
// reference and must outlive the returned awaitable's completion.
#pragma once

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "noclobber/cas_retry.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber {

namespace detail {

template <class T>
struct is_asio_awaitable : std::false_type {};
template <class T, class Executor>
struct is_asio_awaitable<boost::asio::awaitable<T, Executor>> : std::true_type {
  using value_type = T;
};

// The attempt's store outcome type, whether it returns R, attempt_result<R>, or an awaitable of
// either.
template <class A>
struct async_attempt_outcome {
  using type = outcome_of_t<attempt_result_t<A>>;
};
// clang-format off
template <class A>
  requires is_asio_awaitable<attempt_result_t<A>>::value
struct async_attempt_outcome<A> {
  // clang-format on
  using type = outcome_of_t<std::remove_cvref_t<typename is_asio_awaitable<attempt_result_t<A>>::value_type>>;
};
template <class A>
using async_attempt_outcome_t = typename async_attempt_outcome<A>::type;

// A backoff timer that a stop request from any thread can cancel: the timer is only touched
// under `mutex` (arming the wait, and cancelling it from the stop callback).
struct backoff_timer {
  explicit backoff_timer(const boost::asio::any_io_executor& ex) : timer(ex) {}
  annotated_mutex mutex;
  boost::asio::steady_timer timer NOCLOBBER_GUARDED_BY(mutex);
  bool stopped NOCLOBBER_GUARDED_BY(mutex) = false;
};

struct backoff_stop_callback {
  std::weak_ptr<backoff_timer> weak;
  void operator()() const {
    if (auto t = weak.lock()) {
      annotated_lock lock(t->mutex);
      t->stopped = true;
      t->timer.cancel();
    }
  }
};

struct backoff_wait_initiation {
  std::shared_ptr<backoff_timer> t;
  template <class Handler>
  void operator()(Handler&& handler) const {
    // Once the wait is armed the coroutine may resume elsewhere and destroy this initiation
    // object: from then on use only locals.
    const std::shared_ptr<backoff_timer> keep = t;
    annotated_lock lock(keep->mutex);
    keep->timer.async_wait(std::forward<Handler>(handler));  // the coroutine's cancellation slot goes with it
    if (keep->stopped) keep->timer.cancel();
  }
};

// Waits `delay` on a fresh timer. Returns false when the wait was cut short by the stop token or
// by Asio cancellation of the coroutine.
inline boost::asio::awaitable<bool> backoff_wait(std::chrono::nanoseconds delay,
                                                 const std::stop_token& stop) {
  if (stop.stop_requested()) co_return false;
  auto state = co_await boost::asio::this_coro::cancellation_state;
  if (state.cancelled() != boost::asio::cancellation_type::none) co_return false;
  if (delay <= std::chrono::nanoseconds::zero()) co_return true;
  // Named locals, not temporaries, around each co_await: g++ 12 may destroy a non-trivial
  // temporary of a co_await full-expression twice.
  const boost::asio::any_io_executor ex = co_await boost::asio::this_coro::executor;
  auto t = std::make_shared<backoff_timer>(ex);
  {
    annotated_lock lock(t->mutex);  // nobody else sees `t` yet; the lock satisfies the analysis
    t->timer.expires_after(delay);
  }
  std::optional<std::stop_callback<backoff_stop_callback>> on_stop;
  if (stop.stop_possible()) on_stop.emplace(stop, backoff_stop_callback{t});
  auto token = boost::asio::as_tuple(boost::asio::use_awaitable);
  backoff_wait_initiation initiation{t};
  auto [ec] = co_await boost::asio::async_initiate<decltype(token), void(boost::system::error_code)>(
      initiation, token);
  co_return !ec && !stop.stop_requested();
}

}  // namespace detail

namespace detail {

template <class A>
using async_attempt_t = std::remove_cvref_t<A>;

/// async_cas_retry's loop, filling the driver's `out` and `last` (see retry_loop in
/// cas_retry.hpp). The driver awaits it at once: `out` and `last` outlive it.
template <class A>
boost::asio::awaitable<void> async_run_cas_retry(const retry_policy& policy, A attempt, retry_stats& out,
                                                 std::optional<async_attempt_outcome_t<A>>& last) {
  using R = async_attempt_outcome_t<A>;
  using duration = std::chrono::nanoseconds;
  using clock = std::chrono::steady_clock;
  retry_loop<R> loop(policy, out, last);
  if (loop.cancelled_before_start()) co_return;
  retry_controller& ctl = loop.controller();
  const clock::time_point start = ctl.needs_clock() ? clock::now() : clock::time_point{};

  for (;;) {
    const attempt_info info = ctl.next_attempt();
    std::exception_ptr failure;
    try {
      if constexpr (is_asio_awaitable<attempt_result_t<A>>::value) {
        auto result = co_await run_attempt(attempt, info);
        loop.accept(std::move(result));
      } else {
        auto result = run_attempt(attempt, info);
        loop.accept(std::move(result));
      }
    } catch (...) {
      failure = std::current_exception();
    }
    // Outside the handler (a coroutine cannot suspend in one): classified, it is an outcome.
    if (failure) loop.on_exception(failure);
    if (loop.settled()) co_return;  // applied or decided
    const duration elapsed =
        ctl.needs_clock() ? std::chrono::duration_cast<duration>(clock::now() - start) : duration::zero();
    const retry_decision d = loop.decide(elapsed, system_retry_env::rng());
    if (!d) co_return;
    const clock::time_point before = clock::now();
    // Checked here, not by co_await: awaiting any awaitable after a cancellation throws, and
    // the loop must end as `cancelled` (hooks run, budget tokens returned), not with an exception.
    const auto cancellation = co_await boost::asio::this_coro::cancellation_state;
    bool woke_normally = false;
    if (cancellation.cancelled() == boost::asio::cancellation_type::none) {
      woke_normally = co_await backoff_wait(d.delay, policy.stop);
    }
    loop.on_slept(std::chrono::duration_cast<duration>(clock::now() - before));
    if (!woke_normally) {
      loop.interrupted();
      co_return;
    }
  }
}

}  // namespace detail

/// The coroutine form of cas_retry: see the overview. Throws std::invalid_argument (when
/// awaited) for an invalid policy; rethrows what the attempt throws unless classify_exception
/// maps it.
// clang-format off
template <class Attempt>
  requires (detail::attempt_with_info<std::remove_cvref_t<Attempt>> ||
            detail::attempt_without_info<std::remove_cvref_t<Attempt>>) &&
           detail::write_outcome<detail::async_attempt_outcome_t<std::remove_cvref_t<Attempt>>>
boost::asio::awaitable<retry_result<detail::async_attempt_outcome_t<std::remove_cvref_t<Attempt>>>>
async_cas_retry(const retry_policy& policy, Attempt attempt) {
  // clang-format on
  retry_result<detail::async_attempt_outcome_t<std::remove_cvref_t<Attempt>>> out;
  co_await detail::async_run_cas_retry(policy, std::move(attempt), out, out.last);
  co_return out;
}

}  // namespace noclobber
