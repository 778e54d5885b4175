// noclobber/metrics.hpp — retry-loop metrics shaped like OpenTelemetry counters and histograms.
//
// Overview
// --------
// Every retry loop (cas_retry, read_modify_write, write_if_unchanged, patch_if_unchanged, the
// ledger, the coroutine forms) reports through its retry_policy's hooks (retry_controller.hpp):
// on_attempt after each attempt, on_retry before each backoff, on_success or on_give_up once at
// the end. `with_metrics(policy, sink)` returns a copy of `policy` whose hooks also feed a
// *metrics sink*, an object with the two calls of OpenTelemetry's synchronous instruments:
//
//   sink.add(instrument, n, attributes)      a Counter's Add (monotonic, std::uint64_t)
//   sink.record(instrument, v, attributes)   a Histogram's Record (double)
//
// The instruments are fixed descriptions (name, unit, description, kind), so an adapter to a
// real OpenTelemetry Meter creates one Counter / Histogram per instrument on first use and
// forwards; noclobber/memory_metrics.hpp is a small thread-safe sink that keeps totals in memory.
//
//   instrument                         kind       unit       attributes
//   noclobber.attempts                 counter    {attempt}  status, [operation]
//   noclobber.retries                  counter    {retry}    status (that caused it), [operation]
//   noclobber.indeterminate.resolved   counter    {request}  [operation]
//   noclobber.calls                    counter    {call}     reason (stop_reason), [operation]
//   noclobber.call.attempts            histogram  {attempt}  reason, [operation]
//   noclobber.call.backoff             histogram  s          reason, [operation]
//
// `operation` (optional) names the call site ("cart.add_item"); it becomes the attribute
// noclobber.operation on every measurement. Status and reason values are the to_string names
// (conflict, transient, applied, attempts_exhausted...). Attribute values are string_views
// valid only during the call: a sink that keeps them copies them.
//
//   noclobber::memory_metrics sink;
//   noclobber::retry_policy policy = noclobber::with_metrics(base_policy, sink, "cart.add_item");
//   auto r = noclobber::read_modify_write(store, key, fn, policy);
//
// Cost: nothing unless installed. A policy without hooks pays two tests of an empty
// std::function per loop (bench/bench_read_modify_write.cpp, `hooks/*`, measures unused against
// installed in one binary). Installed, each attempt makes one sink call, each loop three more.
//
// Thread safety: with_metrics copies the policy (and the hooks already in it, which keep
// running, before the sink's). The sink is held by reference and must outlive every loop that
// uses the returned policy. A policy shared by concurrent loops calls the sink from all their
// threads at once, so the sink must be thread-safe (memory_metrics is). The sink runs on the
// loop's thread under no noclobber lock; whatever it throws propagates out of the loop (as
// from any hook).
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "noclobber/outcome.hpp"
#include "noclobber/retry_controller.hpp"

namespace noclobber {

/// OpenTelemetry's synchronous instrument kinds that noclobber uses.
enum class instrument_kind : unsigned char {
  counter,    // monotonic sum: Add(n)
  histogram,  // distribution: Record(v)
};

/// A fixed description of one instrument (OpenTelemetry: name, unit, description).
struct instrument {
  std::string_view name;
  std::string_view unit;
  std::string_view description;
  instrument_kind kind;

  friend constexpr bool operator==(const instrument& a, const instrument& b) noexcept {
    return a.name == b.name;
  }
};

/// One attribute of a measurement (OpenTelemetry: a key-value pair).
struct metric_attribute {
  std::string_view key;
  std::string_view value;
};
using metric_attributes = std::span<const metric_attribute>;

/// The instruments with_metrics feeds (see the overview's table).
namespace instruments {
inline constexpr instrument attempts{"noclobber.attempts", "{attempt}",
                                     "Attempts made, by the status each ended with",
                                     instrument_kind::counter};
inline constexpr instrument retries{"noclobber.retries", "{retry}",
                                    "Backoffs started, by the status of the attempt that failed",
                                    instrument_kind::counter};
inline constexpr instrument indeterminate_resolved{
    "noclobber.indeterminate.resolved", "{request}",
    "Requests with an unknown (indeterminate) outcome that a later read settled", instrument_kind::counter};
inline constexpr instrument calls{"noclobber.calls", "{call}", "Retry loops finished, by why they stopped",
                                  instrument_kind::counter};
inline constexpr instrument call_attempts{"noclobber.call.attempts", "{attempt}", "Attempts per retry loop",
                                          instrument_kind::histogram};
inline constexpr instrument call_backoff{"noclobber.call.backoff", "s",
                                         "Time slept in backoff per retry loop", instrument_kind::histogram};
}  // namespace instruments

/// Attribute keys with_metrics uses.
namespace metric_keys {
inline constexpr std::string_view status = "noclobber.status";
inline constexpr std::string_view reason = "noclobber.reason";
inline constexpr std::string_view operation = "noclobber.operation";
}  // namespace metric_keys

/// A metrics sink: counters and histograms in OpenTelemetry's shape (see the overview).
// clang-format off
template <class S>
concept metrics_sink = requires(S& s, const instrument& i, std::uint64_t n, double v, metric_attributes a) {
  s.add(i, n, a);
  s.record(i, v, a);
};
// clang-format on

namespace detail {

/// The hooks' measurements for one sink; copied into each hook (a std::string and a pointer).
template <metrics_sink Sink>
class metrics_feed {
 public:
  metrics_feed(Sink& sink, std::string_view operation) : sink_(&sink), operation_(operation) {}

  void attempt(const attempt_event& e) const {
    add(instruments::attempts, metric_keys::status, to_string(e.status));
    if (e.resolved_indeterminate) add(instruments::indeterminate_resolved, {}, {});
  }
  void retry(const retry_event& e) const {
    add(instruments::retries, metric_keys::status, to_string(e.status));
  }
  void finished(const retry_counts& c) const {
    const std::string_view reason = to_string(c.reason);
    add(instruments::calls, metric_keys::reason, reason);
    const std::chrono::duration<double> slept = c.slept;
    const metric_attribute attrs[] = {{metric_keys::reason, reason}, {metric_keys::operation, operation_}};
    const metric_attributes a(attrs, operation_.empty() ? 1 : 2);
    sink_->record(instruments::call_attempts, static_cast<double>(c.attempts), a);
    sink_->record(instruments::call_backoff, slept.count(), a);
  }

 private:
  // One counter measurement, with the attribute (key, value) when key is not empty, and the
  // operation when one was named.
  void add(const instrument& i, std::string_view key, std::string_view value) const {
    metric_attribute attrs[2];
    std::size_t n = 0;
    if (!key.empty()) attrs[n++] = {key, value};
    if (!operation_.empty()) attrs[n++] = {metric_keys::operation, operation_};
    sink_->add(i, 1, metric_attributes(attrs, n));
  }

  Sink* sink_;
  std::string operation_;
};

/// `first` then `then` (either may be null).
template <class Event, class Then>
std::function<void(const Event&)> chain_hook(std::function<void(const Event&)> first, Then then) {
  if (!first) return then;
  return [first = std::move(first), then = std::move(then)](const Event& e) {
    first(e);
    then(e);
  };
}

}  // namespace detail

/// `policy` with hooks that also feed `sink` (see the overview): the policy's own hooks run
/// first, then the sink's measurements. `operation`, when not empty, is added to every
/// measurement as noclobber.operation. The sink must outlive every loop run with the result.
template <metrics_sink Sink>
[[nodiscard]] retry_policy with_metrics(retry_policy policy, Sink& sink, std::string_view operation = {}) {
  const detail::metrics_feed<Sink> feed(sink, operation);
  policy.on_attempt =
      detail::chain_hook(std::move(policy.on_attempt), [feed](const attempt_event& e) { feed.attempt(e); });
  policy.on_retry =
      detail::chain_hook(std::move(policy.on_retry), [feed](const retry_event& e) { feed.retry(e); });
  policy.on_success = detail::chain_hook(std::move(policy.on_success),
                                         [feed](const success_event& e) { feed.finished(e.counts); });
  policy.on_give_up = detail::chain_hook(std::move(policy.on_give_up),
                                         [feed](const give_up_event& e) { feed.finished(e.counts); });
  return policy;
}

}  // namespace noclobber
