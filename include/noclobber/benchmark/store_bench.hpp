// noclobber/benchmark/store_bench.hpp — Google Benchmark fixture for your own store: plain CAS
// (read_modify_write) against lock + CAS (locked_read_modify_write over a keyed_mutex_map),
// uncontended and contended, with attempts and conflicts per update as counters.
//
// Overview
// --------
// One call registers the benchmarks for a store; Google Benchmark's main runs them:
//
//   noclobber::register_store_benchmarks("sqlite", [] { return noclobber::sqlite::store("bench.db"); });
//   benchmark::Initialize(&argc, argv);
//   benchmark::RunSpecifiedBenchmarks();
//
// registers, for each thread count n of options.threads (Google Benchmark's ->Threads(n)):
//
//   <name>/uncontended/cas/threads:n       every thread updates its own key with read_modify_write
//   <name>/uncontended/lock_cas/threads:n  the same through locked_read_modify_write
//   <name>/contended/cas/threads:n         all n threads update one key (n > 1 only)
//   <name>/contended/lock_cas/threads:n    the same with the per-key lock in front
//
// Each iteration is one read-modify-write call. Counters (per call, over all threads):
//   attempts   attempts made (1.0: no attempt wasted)
//   conflicts  attempts refused because another writer got there first (conflict, or a create
//              that met an existing key / a write that met a vanished one)
//   transient  attempts that failed with a transient store error (busy, timeout)
//   gave_up    calls that ended without applying (the retry policy stopped them)
// and items_per_second counts applied updates. A call that fails with a permanent error (the
// store is misconfigured, the server is gone), or a make_store() that throws, stops the benchmark
// with that error.
//
// The store: `make_store()` is called once per benchmark thread, on that thread, before the
// timed loop of every run; what each thread gets must reach the same data (a connection to one
// database, or a reference to one in-process store) so that the contended runs do contend. It may
// return the store by value (even a non-movable one), an lvalue reference to a store that outlives
// the benchmarks, or a pointer-like owner (std::unique_ptr, std::shared_ptr).
//
// Keys and values: by default a run's key is built from its name ("<name>/contended/cas/t4", and
// "/w<thread>" appended when uncontended) and the update is a decimal counter for string values
// (+1 for arithmetic ones); other stores set options.make_key and options.update_fn.
//
// Thread safety: call register_store_benchmarks() before benchmark::RunSpecifiedBenchmarks(),
// from one thread. While the benchmarks run, make_store, make_key and update_fn are called
// concurrently from the benchmark threads (update_fn under the per-key lock in the lock_cas
// runs, never under a lock of this header otherwise); options.policy's hooks run on the
// calling benchmark thread. The stores, lock map and options live as long as the registered
// benchmarks.
//
// This header includes <benchmark/benchmark.h>; link noclobber::benchmark (which carries
// benchmark::benchmark).
#pragma once

#include <benchmark/benchmark.h>

#include <charconv>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "noclobber/conditional_writer.hpp"
#include "noclobber/keyed_mutex_map.hpp"
#include "noclobber/locked_read_modify_write.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_modify_write.hpp"
#include "noclobber/retry_controller.hpp"

namespace noclobber {

/// What register_store_benchmarks() measures, and how.
template <class Store>
struct store_bench_options {
  using key_type = store_key_t<Store>;
  using value_type = store_value_t<Store>;

  /// The thread counts (each >= 1); contended runs use those above 1.
  std::vector<int> threads{1, 2, 4, 8};
  /// The retry policy of both strategies: by default the library's default (what a caller of
  /// read_modify_write gets). Its on_retry / on_give_up hooks still run, after the bench's count.
  retry_policy policy{};
  /// The key of a run, from its name; null: key_type constructed from the string.
  std::function<key_type(const std::string&)> make_key;
  /// The update; null: a decimal counter for std::string values, +1 for arithmetic values.
  std::function<update<value_type>(const std::optional<value_type>&)> update_fn;
  /// Applied to every registered benchmark (e.g. `b->MinTime(0.5)`); may be null.
  std::function<void(::benchmark::internal::Benchmark*)> configure;
};

namespace detail {

/// Holds what make_store() returned on one benchmark thread and hands out the store.
template <class Make>
class bench_store_holder {
  using made_type = std::invoke_result_t<Make&>;

 public:
  explicit bench_store_holder(Make& make) : made_(make()) {}

  decltype(auto) store() {
    if constexpr (requires(made_type & m) { *m; }) {
      return *made_;
    } else {
      return static_cast<std::remove_reference_t<made_type>&>(made_);
    }
  }

 private:
  made_type made_;
};

template <class Make>
using bench_store_t = std::remove_cvref_t<decltype(std::declval<bench_store_holder<Make>&>().store())>;

/// The default update: a decimal counter in a string, or +1.
template <class Value>
update<Value> bench_counter_update(const std::optional<Value>& current) {
  if constexpr (std::is_arithmetic_v<Value>) {
    return static_cast<Value>(current.value_or(Value{}) + 1);
  } else {
    std::uint64_t n = 0;
    if (current) {
      const std::string& s = *current;
      if (std::from_chars(s.data(), s.data() + s.size(), n).ec != std::errc{}) n = 0;
    }
    return Value(std::to_string(n + 1));
  }
}

/// One benchmark thread's tally, turned into counters at the end of its run.
struct bench_tally {
  double attempts = 0;
  double conflicts = 0;
  double transient = 0;
  double gave_up = 0;
  std::int64_t applied = 0;

  void count_failed_attempt(write_status s) noexcept {
    switch (s) {
      case write_status::conflict:
      case write_status::absent:
      case write_status::exists:
        ++conflicts;
        break;
      case write_status::transient:
      case write_status::transient_restart:
        ++transient;
        break;
      default:
        break;
    }
  }

  void publish(::benchmark::State& state) const {
    using ::benchmark::Counter;
    state.counters["attempts"] = Counter(attempts, Counter::kAvgIterations);
    state.counters["conflicts"] = Counter(conflicts, Counter::kAvgIterations);
    state.counters["transient"] = Counter(transient, Counter::kAvgIterations);
    state.counters["gave_up"] = Counter(gave_up, Counter::kAvgIterations);
    state.SetItemsProcessed(applied);
  }
};

/// A copy of `base` whose hooks count each failed attempt into `tally` before the user's hooks.
inline retry_policy counting_policy(const retry_policy& base, bench_tally& tally) {
  retry_policy p = base;
  p.on_retry = [&tally, user = base.on_retry](const retry_event& e) {
    tally.count_failed_attempt(e.status);
    if (user) user(e);
  };
  p.on_give_up = [&tally, user = base.on_give_up](const give_up_event& e) {
    if (e.last_status) tally.count_failed_attempt(*e.last_status);
    if (user) user(e);
  };
  return p;
}

enum class bench_strategy { cas, lock_cas };

/// What every run of the benchmarks of one register_store_benchmarks() call shares.
template <class Make, class Store>
struct bench_registration {
  std::string name;
  Make make_store;
  store_bench_options<Store> options;
  keyed_mutex_map<store_key_t<Store>> locks;  // the lock_cas runs' per-key locks

  bench_registration(std::string n, Make m, store_bench_options<Store> o)
      : name(std::move(n)), make_store(std::move(m)), options(std::move(o)) {}

  [[nodiscard]] store_key_t<Store> key(const std::string& run) const {
    if constexpr (std::is_constructible_v<store_key_t<Store>, const std::string&>) {
      if (!options.make_key) return store_key_t<Store>(run);
    }
    return options.make_key(run);  // set: register_store_benchmarks() checked
  }

  /// The body of every registered benchmark.
  void run(::benchmark::State& state, bench_strategy strategy, bool contended) {
    // Phase 1, untimed: this thread's store, key, and counting policy. A store that cannot be
    // made (no server, refused login) stops the benchmark with its words; the thread still
    // enters the loop (which then runs no iteration), as Google Benchmark's start barrier needs.
    std::optional<bench_store_holder<Make>> held;
    try {
      held.emplace(make_store);
    } catch (const std::exception& e) {
      state.SkipWithError((name + ": make_store() threw: " + e.what()).c_str());
      for (auto _ : state) {
      }
      return;
    }
    Store& store = held->store();
    std::string run_name = name + (contended ? "/contended/" : "/uncontended/") +
                           (strategy == bench_strategy::cas ? "cas" : "lock_cas") + "/t" +
                           std::to_string(state.threads());
    if (!contended) run_name += "/w" + std::to_string(state.thread_index());
    const store_key_t<Store> key = this->key(run_name);
    bench_tally tally;
    const retry_policy policy = counting_policy(options.policy, tally);
    auto fn = [this](const std::optional<store_value_t<Store>>& cur) { return options.update_fn(cur); };

    // Phase 2, timed: one read-modify-write per iteration (all threads start together).
    for (auto _ : state) {
      auto r = strategy == bench_strategy::cas ? read_modify_write(store, key, fn, policy)
                                               : locked_read_modify_write(locks, store, key, fn, policy);
      tally.attempts += r.attempts;
      if (r.outcome == rmw_outcome::applied) {
        ++tally.applied;
        continue;
      }
      ++tally.gave_up;
      if (r.reason == stop_reason::permanent) {
        const std::string what =
            name + ": permanent store error: " + r.last_error.code + " " + r.last_error.message;
        state.SkipWithError(what.c_str());
        break;
      }
    }
    tally.publish(state);
  }
};

}  // namespace detail

/// Registers the four benchmarks of the overview for the store `make_store()` makes, under
/// `name`. Throws std::invalid_argument for an empty name or a thread count below 1, and when
/// the store's values are neither strings nor numbers and options.update_fn is null (or its keys
/// are not constructible from a string and options.make_key is null).
template <class Make>
void register_store_benchmarks(std::string name, Make make_store,
                               store_bench_options<detail::bench_store_t<Make>> options = {}) {
  using Store = detail::bench_store_t<Make>;
  static_assert(conditional_writer<Store>,
                "noclobber::register_store_benchmarks: make_store() must return a conditional_writer store "
                "(by value, by reference or through a pointer-like owner)");
  using value_type = store_value_t<Store>;
  using key_type = store_key_t<Store>;

  // Phase 1: validate and complete the options.
  if (name.empty()) throw std::invalid_argument("noclobber::register_store_benchmarks: empty name");
  for (int n : options.threads) {
    if (n < 1) {
      throw std::invalid_argument("noclobber::register_store_benchmarks: thread count " + std::to_string(n) +
                                  " (each must be >= 1)");
    }
  }
  options.policy.validate();
  if (!options.update_fn) {
    if constexpr (std::is_arithmetic_v<value_type> || std::is_same_v<value_type, std::string>) {
      options.update_fn = &detail::bench_counter_update<value_type>;
    } else {
      throw std::invalid_argument(
          "noclobber::register_store_benchmarks(" + name +
          "): the store's values are not std::string or arithmetic; set options.update_fn");
    }
  }
  if constexpr (!std::is_constructible_v<key_type, const std::string&>) {
    if (!options.make_key) {
      throw std::invalid_argument(
          "noclobber::register_store_benchmarks(" + name +
          "): the store's keys are not constructible from std::string; set options.make_key");
    }
  }

  // Phase 2: register each strategy × contention × thread count.
  auto reg = std::make_shared<detail::bench_registration<Make, Store>>(name, std::move(make_store), options);
  for (const bool contended : {false, true}) {
    for (const auto strategy : {detail::bench_strategy::cas, detail::bench_strategy::lock_cas}) {
      const std::string bench_name = name + (contended ? "/contended/" : "/uncontended/") +
                                     (strategy == detail::bench_strategy::cas ? "cas" : "lock_cas");
      for (const int n : options.threads) {
        if (contended && n == 1) continue;
        auto* b = ::benchmark::RegisterBenchmark(
            bench_name.c_str(),
            [reg, strategy, contended](::benchmark::State& s) { reg->run(s, strategy, contended); });
        b->Threads(n)->UseRealTime();
        if (options.configure) options.configure(b);
      }
    }
  }
}

}  // namespace noclobber
