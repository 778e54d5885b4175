// noclobber/retry_env.hpp — the clock, the sleep and the random engine of a retry loop.
//
// Overview
// --------
// cas_retry (cas_retry.hpp) does no I/O of its own but three things it takes from an
// environment, so that tests can run it in virtual time:
//
//   now()                      a time_point of some clock (differences convert to nanoseconds)
//   sleep_for(d, stop_token)   sleeps d; returns false if the stop token cut it short
//   rng()                      a uniform_random_bit_generator, by reference
//
// `system_retry_env` is the real one (steady_clock, a sleep the stop token wakes at once, one
// std::mt19937_64 per thread). `virtual_retry_env` has virtual time that moves only by its sleeps,
// records every sleep and uses a seeded engine: exact, instant tests.
//
//   noclobber::virtual_retry_env env(42);
//   auto r = noclobber::cas_retry(policy, attempt, env);
//   // env.sleeps(): every backoff, in order; env.now(): the virtual time they add up to
//
// Durations saturate (duration.hpp): a sleep of nanoseconds::max() waits until the stop token
// fires, and virtual time stops at time_point::max(), never wrapping to a negative value.
//
// Thread safety: system_retry_env is stateless apart from the per-thread engine; share it freely.
// virtual_retry_env is not thread-safe (one loop, one thread). No noclobber lock is held while
// either sleeps; virtual_retry_env::on_sleep runs on the sleeping thread.
#pragma once

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <random>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <vector>

#include "noclobber/duration.hpp"

namespace noclobber {

/// What cas_retry needs from its environment.
///   now()                      a time_point of some clock (differences convert to nanoseconds)
///   sleep_for(d, stop_token)   sleeps d; returns false if the stop token cut it short
///   rng()                      a uniform_random_bit_generator, by reference
template <class E>
concept retry_env = requires(E& e, std::chrono::nanoseconds d, const std::stop_token& st) {
  { e.now() - e.now() } -> std::convertible_to<std::chrono::nanoseconds>;
  { e.sleep_for(d, st) } -> std::same_as<bool>;
  requires std::is_lvalue_reference_v<decltype(e.rng())>;
  requires std::uniform_random_bit_generator<std::remove_reference_t<decltype(e.rng())>>;
};

/// The real environment: steady_clock, a sleep that the stop token wakes at once, and one
/// std::mt19937_64 per thread seeded from std::random_device.
struct system_retry_env {
  [[nodiscard]] std::chrono::steady_clock::time_point now() const noexcept {
    return std::chrono::steady_clock::now();
  }

  bool sleep_for(saturating_ns delay, const std::stop_token& stop) const {
    const std::chrono::nanoseconds d = delay;
    if (stop.stop_requested()) return false;
    if (d <= std::chrono::nanoseconds::zero()) return true;
    if (!stop.stop_possible()) {
      std::this_thread::sleep_for(d);
      return true;
    }
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock<std::mutex> lock(m);
    // Returns when the stop token fires or the delay has passed; nothing else notifies cv. The
    // deadline saturates (wait_for would overflow computing now + nanoseconds::max()).
    const auto deadline = saturating_deadline<std::chrono::steady_clock>(std::chrono::steady_clock::now(), d);
    cv.wait_until(lock, stop, deadline, [] { return false; });
    return !stop.stop_requested();
  }

  [[nodiscard]] static std::mt19937_64& rng() {
    thread_local std::mt19937_64 engine = [] {
      std::random_device rd;
      const std::uint64_t seed =
          (std::uint64_t{rd()} << 32) ^ std::uint64_t{rd()} ^
          static_cast<std::uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id())) ^
          static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
      return std::mt19937_64(seed);
    }();
    return engine;
  }
};

/// Virtual time for tests and simulations: now() starts at the steady_clock epoch and moves only
/// by sleep_for and advance; every requested sleep is recorded; the engine is seeded.
/// `on_sleep`, if set, runs at the start of each sleep (a test can request stop there: the
/// sleep then returns false without advancing the clock). Not thread-safe.
class virtual_retry_env {
 public:
  explicit virtual_retry_env(std::uint64_t seed = 0) : rng_(seed) {}

  [[nodiscard]] std::chrono::steady_clock::time_point now() const noexcept { return now_; }

  bool sleep_for(saturating_ns delay, const std::stop_token& stop) {
    const std::chrono::nanoseconds d = delay;
    sleeps_.push_back(d);
    if (on_sleep) on_sleep(d);
    if (stop.stop_requested()) return false;
    advance(d);
    return true;
  }

  void advance(saturating_ns d) noexcept {
    now_ = saturating_deadline<std::chrono::steady_clock>(now_, d.get());
  }
  [[nodiscard]] std::mt19937_64& rng() noexcept { return rng_; }
  [[nodiscard]] const std::vector<std::chrono::nanoseconds>& sleeps() const noexcept { return sleeps_; }

  std::function<void(std::chrono::nanoseconds)> on_sleep;

 private:
  std::chrono::steady_clock::time_point now_{};
  std::mt19937_64 rng_;
  std::vector<std::chrono::nanoseconds> sleeps_;
};

}  // namespace noclobber
