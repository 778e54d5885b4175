// noclobber/race_harness/engine.hpp — how the race harness runs: W writer threads × K ops,
// once (forced, stress) or over many schedules (explore), and the report that comes out.
//
// Overview
// --------
//   run_race / run_race_per_writer   the public entries (documented in noclobber/race_harness.hpp)
//   run_all    validates the options (race_harness/options.hpp), then runs once, or (explore) one run per
//   schedule seed
//              until a losing schedule turns up, which it replays twice to check that it is
//              deterministic; fills the race_report.
//   run_once   one run, in phases: set up the run state (barrier or scheduler), read what each
//              key holds before, start one thread per writer behind a latch, let each run its ops
//              through the strategy (run_writer_ops), read what each key holds after, gather the
//              writers' records into one history and check it (race_harness/checker.hpp).
//
// Thread safety: run_once starts and joins its own threads; the strategy, the workload and the
// store run on those threads concurrently and never under a harness lock. Everything else runs
// on the caller's thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <latch>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/race_harness/history.hpp"
#include "noclobber/race_harness/options.hpp"
#include "noclobber/race_harness/overlap.hpp"
#include "noclobber/race_harness/recorder.hpp"
#include "noclobber/race_harness/report.hpp"
#include "noclobber/race_harness/scheduler.hpp"
#include "noclobber/race_harness/workload.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber {
namespace detail {

inline std::uint64_t race_splitmix(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// The seed of explore iteration i under master seed m.
inline std::uint64_t iteration_seed(std::uint64_t master, unsigned i) noexcept {
  std::uint64_t s = master ^ (0xd1b54a32d192ed03ULL * (static_cast<std::uint64_t>(i) + 1));
  return race_splitmix(s);
}

template <class K>
std::string printable_key(const K& k, std::size_t index) {
  if constexpr (std::is_convertible_v<const K&, std::string_view>) {
    return std::string(std::string_view(k));
  } else if constexpr (std::is_arithmetic_v<K>) {
    return std::to_string(k);
  } else {
    return "#" + std::to_string(index);
  }
}

template <class T>
struct factory_store {
  using type = std::remove_cvref_t<T>;
};
template <class T>
struct factory_store<std::unique_ptr<T>> {
  using type = T;
};
template <class R>
using factory_store_t = typename factory_store<std::remove_cvref_t<R>>::type;

/// Holds what a store factory returned; built in place (guaranteed elision), so the store need
/// not be movable.
template <class T>
struct factory_holder {
  template <class F>
  factory_holder(F& f, unsigned i) : value(f(i)) {}
  T value;
};

template <class Store>
read_result<store_value_t<Store>, store_token_t<Store>> settled_read(Store& s, const store_key_t<Store>& k) {
  auto r = store_traits<Store>::read(s, k);
  for (int i = 0; i < 50 && r.status == read_status::transient; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    r = store_traits<Store>::read(s, k);
  }
  return r;
}

/// A fingerprint of a run's interleaving, independent of ids carried over from earlier runs.
inline std::uint64_t schedule_signature(const race_history& h) {
  std::unordered_map<write_id, std::uint64_t, id_hash> name;
  for (const race_write& w : h.writes) {
    name.emplace(w.written, (std::uint64_t{w.writer} << 40) ^ (std::uint64_t{w.op} << 16) ^ w.attempt);
  }
  auto label = [&](write_id v, std::uint32_t key) -> std::uint64_t {
    if (key < h.initial_versions.size() && v == h.initial_versions[key]) return 0;
    auto it = name.find(v);
    return it == name.end() ? 1 : it->second;
  };
  struct ev {
    std::uint64_t tick, a, b;
  };
  std::vector<ev> events;
  events.reserve(h.writes.size() + h.reads.size());
  for (const race_write& w : h.writes) {
    events.push_back({w.invoke,
                      (std::uint64_t{w.writer} << 32) ^ (std::uint64_t{w.key} << 8) ^
                          static_cast<std::uint64_t>(w.outcome) ^ 0x100000,
                      label(w.read_from, w.key) * 31 + label(w.written, w.key)});
  }
  for (const race_read& r : h.reads) {
    events.push_back(
        {r.invoke, (std::uint64_t{r.writer} << 32) ^ (std::uint64_t{r.key} << 8), label(r.version, r.key)});
  }
  std::sort(events.begin(), events.end(), [](const ev& x, const ev& y) { return x.tick < y.tick; });
  std::uint64_t sig = 0xcbf29ce484222325ULL;
  for (const ev& e : events) {
    std::uint64_t s = sig ^ e.a;
    sig = race_splitmix(s);
    s = sig ^ e.b;
    sig = race_splitmix(s);
  }
  return sig;
}

struct run_outcome {
  race_history history;
  race_schedule plan;  // explore: the schedule run, written out
  std::uint64_t steps = 0;
  race_check check;
  std::size_t op_errors = 0;
  std::size_t retries = 0;
  std::size_t untracked = 0;
  std::string first_error;
  bool serialised = false;
  std::size_t stalls = 0;
  std::uint64_t signature = 0;
};

/// The writers (0-based slots: writer number − first_writer) a run starts, in order; with a
/// written-out schedule only those it names.
template <class Options>
std::vector<unsigned> writer_slots(const Options& o) {
  std::vector<unsigned> slots;
  if (o.plan.empty()) {
    for (unsigned i = 0; i < o.writers; ++i) slots.push_back(i);
  } else {
    for (std::uint32_t w : o.plan.priority) slots.push_back(w - o.first_writer);
    std::sort(slots.begin(), slots.end());
  }
  return slots;
}

/// A written-out schedule as the scheduler takes it: priorities per writer index (the i-th of
/// `slots`), from m + n for the first in `plan.priority` down to m + 1, and the change points at
/// writer indices.
template <class Options>
std::unique_ptr<pct_scheduler> planned_scheduler(const Options& o, const std::vector<unsigned>& slots) {
  const race_schedule& plan = o.plan;
  auto index_of = [&](std::uint32_t writer) {
    return static_cast<unsigned>(std::find(slots.begin(), slots.end(), writer - o.first_writer) -
                                 slots.begin());
  };
  const int m = static_cast<int>(plan.preemptions.size());
  const int n = static_cast<int>(plan.priority.size());
  std::vector<int> priorities(slots.size());
  for (int rank = 0; rank < n; ++rank)
    priorities[index_of(plan.priority[static_cast<std::size_t>(rank)])] = m + n - rank;
  std::vector<pct_scheduler::change> changes;
  for (const race_preemption& p : plan.preemptions) changes.push_back({index_of(p.writer), p.op, p.call});
  return std::make_unique<pct_scheduler>(std::move(priorities), std::move(changes), o.stall_timeout);
}

/// The schedule a run followed, written out (priority order, change points where they fell).
template <class Options>
race_schedule written_out(const pct_scheduler& scheduler, const Options& o,
                          const std::vector<unsigned>& slots) {
  race_schedule plan;
  const std::vector<int> priorities = scheduler.initial_priorities();
  std::vector<unsigned> order(slots.size());
  for (unsigned j = 0; j < order.size(); ++j) order[j] = j;
  std::stable_sort(order.begin(), order.end(),
                   [&](unsigned a, unsigned b) { return priorities[a] > priorities[b]; });
  for (unsigned j : order) plan.priority.push_back(o.first_writer + slots[j]);
  for (const pct_scheduler::change& c : scheduler.fired())
    plan.preemptions.push_back({o.first_writer + slots[c.writer], c.op, c.call});
  plan.ops = o.plan.ops;
  return plan;
}

/// The run's barrier (forced) or scheduler (explore).
template <class Store>
void start_run(race_run_state<Store>& run, const race_options_for<Store>& o,
               const race_workload<store_value_t<Store>>& workload, std::optional<std::uint64_t> schedule,
               const std::vector<unsigned>& slots) {
  run.options = &o;
  run.workload = &workload;
  {
    annotated_lock lock(run.foreign_mutex);  // no writer runs yet; the lock satisfies the analysis
    run.foreign_tokens.resize(o.keys.size());
  }
  if (o.mode == race_mode::forced) run.barrier = std::make_unique<timed_barrier>(o.writers);
  if (o.mode == race_mode::explore && !o.plan.empty()) {
    run.scheduler = planned_scheduler(o, slots);
  } else if (o.mode == race_mode::explore) {
    const std::uint64_t expected_steps = std::uint64_t{o.writers} * o.ops_per_writer * 3 + o.writers;
    run.scheduler = std::make_unique<pct_scheduler>(o.writers, o.depth, expected_steps,
                                                    schedule.value_or(o.seed), o.stall_timeout);
  }
}

/// The version each key holds now, read through `reader` (chains stop at the initial ones). A
/// failed read counts as the initial version; `failure` gets its words when given.
template <class Store>
std::vector<write_id> read_key_versions(Store& reader, race_run_state<Store>& run,
                                        const race_options_for<Store>& o,
                                        const std::vector<std::string>& key_names, std::string* failure) {
  std::vector<write_id> versions;
  for (std::uint32_t k = 0; k < o.keys.size(); ++k) {
    auto r = settled_read(reader, o.keys[k]);
    versions.push_back(r.failed() ? initial_version : run.version_of(k, r));
    if (r.failed() && failure != nullptr)
      *failure = "final read of key " + key_names[k] + " failed: " + r.error.code + " " + r.error.message;
  }
  return versions;
}

/// One writer's recorder, before its thread starts: writer slot `slot` (0-based), thread index
/// `index` (the scheduler's).
template <class Store, class StoreOf>
void prepare_writer(race_writer_state<Store>& w, unsigned slot, unsigned index, race_run_state<Store>& run,
                    StoreOf& store_of, const race_options_for<Store>& o,
                    const std::vector<write_id>& initial_versions) {
  w.run = &run;
  w.store = &store_of(slot);
  w.writer = o.first_writer + slot;
  w.index = index;
  w.last_read = initial_versions;
  w.writes.reserve(o.ops_per_writer * 2);
  w.reads.reserve(o.ops_per_writer * 2);
}

/// What a writer's ops threw: how many, and the first one in words.
struct writer_errors {
  std::size_t count = 0;
  std::string first;
};

/// A writer thread's ops, each one strategy call on a (seeded or chosen) key. Whatever the
/// strategy throws is counted and the writer goes on.
template <class Store, class Strategy>
void run_writer_ops(race_writer_state<Store>& w, Strategy& strategy, const race_options_for<Store>& o,
                    writer_errors& errors) {
  race_run_state<Store>& run = *w.run;
  if (run.scheduler) run.scheduler->point(w.index, pct_scheduler::none, pct_scheduler::none);
  std::uint64_t key_rng = o.seed ^ (0x9e3779b97f4a7c15ULL * (std::uint64_t{w.writer} + 1));
  race_store<Store> view(w);
  race_modify<store_value_t<Store>> modify(w);
  auto note_error = [&](std::uint32_t op, std::string_view what) {
    if (errors.count++ == 0)
      errors.first = "W" + std::to_string(w.writer) + " op " + std::to_string(op) + ": " + std::string(what);
  };
  for (std::uint32_t op = 0; op < o.ops_per_writer; ++op) {
    const std::uint64_t random = race_splitmix(key_rng);
    std::size_t key = 0;
    if (o.choose_key)
      key = o.choose_key(w.writer, op, random);
    else if (o.keys.size() > 1)
      key = static_cast<std::size_t>(random % o.keys.size());
    if (key >= o.keys.size()) key = key % o.keys.size();
    if (!o.plan.empty() && !o.plan.runs(w.writer, op)) continue;  // left out: its key was still drawn
    w.op = op;
    w.call = 0;
    w.key = static_cast<std::uint32_t>(key);
    w.attempt = 0;
    w.computed_this_op.clear();
    w.tokens_this_op.clear();
    try {
      std::invoke(strategy, view, std::as_const(o.keys[key]), modify);
    } catch (const std::exception& e) {
      note_error(op, e.what());
    } catch (...) {
      note_error(op, "unknown exception");
    }
  }
  // A writer that reads no more must not hold the others at the forced window.
  if (run.barrier) run.barrier->drop();
  if (run.scheduler) run.scheduler->finish(w.index);
}

/// Gathers the writers' records and counts into `out` (history, errors, retries, ...).
template <class Store>
void gather_writers(std::vector<race_writer_state<Store>>& writers, std::vector<writer_errors>& errors,
                    run_outcome& out) {
  race_history& h = out.history;
  for (std::size_t i = 0; i < writers.size(); ++i) {
    auto& w = writers[i];
    out.op_errors += errors[i].count;
    if (out.first_error.empty() && !errors[i].first.empty()) out.first_error = std::move(errors[i].first);
    out.serialised = out.serialised || w.serialised;
    out.untracked += w.untracked;
    // Retries: write attempts beyond the first of each op.
    std::uint32_t last_op = ~0u;
    for (const race_write& rw : w.writes) {
      if (rw.op == last_op) ++out.retries;
      last_op = rw.op;
    }
    h.writes.insert(h.writes.end(), w.writes.begin(), w.writes.end());
    h.reads.insert(h.reads.end(), w.reads.begin(), w.reads.end());
  }
}

/// One run: W threads × K ops. `store_of(i)` gives writer i's store (0-based).
template <class Store, class StoreOf, class Strategy>
run_outcome run_once(StoreOf& store_of, Strategy& strategy, const race_options_for<Store>& o,
                     const race_workload<store_value_t<Store>>& workload,
                     std::optional<std::uint64_t> schedule) {
  race_run_state<Store> run;
  const std::vector<unsigned> slots = writer_slots(o);
  const auto active = static_cast<unsigned>(slots.size());
  start_run(run, o, workload, schedule, slots);
  run_outcome out;
  race_history& h = out.history;
  h.ops_write_in_steps = o.ops_write_in_steps;
  for (std::size_t i = 0; i < o.keys.size(); ++i) h.keys.push_back(printable_key(o.keys[i], i));
  Store& reader = store_of(0u);
  h.initial_versions = read_key_versions(reader, run, o, h.keys, nullptr);

  std::vector<race_writer_state<Store>> writers(active);
  std::vector<writer_errors> errors(active);
  for (unsigned i = 0; i < active; ++i)
    prepare_writer(writers[i], slots[i], i, run, store_of, o, h.initial_versions);
  {
    // All threads exist before any starts, so the forced barrier measures store time only.
    std::latch start(active);
    std::vector<std::jthread> threads;
    threads.reserve(active);
    for (unsigned i = 0; i < active; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        run_writer_ops(writers[i], strategy, o, errors[i]);
      });
    }
  }

  h.final_versions = read_key_versions(reader, run, o, h.keys, &out.first_error);
  gather_writers(writers, errors, out);
  if (run.scheduler) {
    out.stalls = run.scheduler->stalls();
    out.signature = schedule_signature(h);
    out.plan = written_out(*run.scheduler, o, slots);
    out.steps = run.scheduler->steps();
  }
  out.check = check_race_history(h);
  return out;
}

/// The report's fields that come from the run it shows.
template <class Store>
void fill_report(race_report& rep, const race_options_for<Store>& o, run_outcome&& r) {
  rep.operations =
      o.plan.empty() ? std::size_t{o.writers} * o.ops_per_writer : o.plan.op_count(o.ops_per_writer);
  rep.plan = std::move(r.plan);
  rep.steps = r.steps;
  rep.signature = r.signature;
  rep.op_errors = r.op_errors;
  rep.retries = r.retries;
  rep.untracked_calls = r.untracked;
  rep.first_error = std::move(r.first_error);
  rep.check = std::move(r.check);
  rep.writers_serialised = r.serialised;
  rep.history = std::move(r.history);
  rep.overlap = measure_overlap(rep.history);
  if (!rep.check.lost.empty()) rep.trace = loss_trace(rep.history, rep.check.lost.front());
}

/// Explore mode: one run per schedule seed (or the one `o.schedule`) until a losing schedule
/// turns up (or all of them); a losing one is replayed twice to check that it is deterministic.
/// Shows the first losing run, else the first run.
template <class Store, class StoreOf, class Strategy>
void run_explore(StoreOf& store_of, Strategy& strategy, const race_options_for<Store>& o,
                 const race_workload<store_value_t<Store>>& workload, race_report& rep) {
  const bool planned = !o.plan.empty();
  const unsigned iterations = o.schedule || planned ? 1 : o.iterations;
  std::optional<run_outcome> shown;
  std::uint64_t shown_seed = 0;
  rep.iterations = 0;
  for (unsigned i = 0; i < iterations; ++i) {
    const std::uint64_t s = o.schedule ? *o.schedule : iteration_seed(o.seed, i);
    auto r = run_once<Store>(store_of, strategy, o, workload, s);
    ++rep.iterations;
    rep.stalls += r.stalls;
    const bool losing = !r.check.ok();
    if (losing) ++rep.failing_iterations;
    if (!shown || (losing && shown->check.ok())) {
      shown = std::move(r);
      shown_seed = s;
    }
    if (losing && o.stop_at_first_failure) break;
  }
  if (rep.failing_iterations > 0) {
    // A losing schedule must replay the same way, or the replay line is worthless.
    bool same = true;
    for (int replay = 0; replay < 2; ++replay) {
      auto again = run_once<Store>(store_of, strategy, o, workload, shown_seed);
      same =
          same && again.signature == shown->signature && again.check.lost.size() == shown->check.lost.size();
    }
    rep.replay_deterministic = same;
  }
  if (!planned) rep.schedule_seed = shown_seed;
  rep.planned = planned;
  fill_report<Store>(rep, o, std::move(*shown));
}

template <class Store, class StoreOf, class Strategy>
race_report run_all(StoreOf& store_of, Strategy& strategy, race_options_for<Store> o) {
  validate<Store>(o);
  const auto workload = resolve_workload<Store>(o);
  const auto started = std::chrono::steady_clock::now();

  race_report rep;
  rep.store = o.store_name;
  rep.strategy = o.strategy_name;
  rep.mode = o.mode;
  rep.writers = o.writers;
  rep.ops_per_writer = o.ops_per_writer;
  rep.depth = o.depth;
  rep.seed = o.seed;
  if (o.mode != race_mode::explore) {
    run_outcome r = run_once<Store>(store_of, strategy, o, workload, std::nullopt);
    rep.stalls += r.stalls;
    fill_report<Store>(rep, o, std::move(r));
  } else {
    run_explore<Store>(store_of, strategy, o, workload, rep);
  }
  rep.elapsed =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started);
  return rep;
}

}  // namespace detail

/// Runs the race with every writer sharing `store` (which must be safe to use from several
/// threads at once). `strategy(race_store<Store>&, const Key&, race_modify<Value>&)`.
/// Throws std::invalid_argument for options that make no sense; never throws for what the
/// store or the strategy do (that goes into the report).
template <class Store, class Strategy>
requires conditional_writer<Store>
[[nodiscard]] race_report run_race(Store& store, Strategy&& strategy,
                                   const race_options_for<Store>& options) {
  auto store_of = [&store](unsigned) -> Store& { return store; };
  return detail::run_all<Store>(store_of, strategy, options);
}

/// Runs the race with one store object per writer: `make_store(i)` for i = 0 … W−1, called once
/// each before the run, returning Store&, Store or std::unique_ptr<Store>. Writer 0's store also
/// reads the initial and final state. Use this for one-connection adapters.
template <class Factory, class Strategy,
          class Store = detail::factory_store_t<std::invoke_result_t<Factory&, unsigned>>>
requires conditional_writer<Store>
[[nodiscard]] race_report run_race_per_writer(Factory&& make_store, Strategy&& strategy,
                                              const race_options_for<Store>& options) {
  using result_t = std::invoke_result_t<Factory&, unsigned>;
  using holder = detail::factory_holder<std::remove_cvref_t<result_t>>;
  std::vector<std::unique_ptr<holder>> owned;
  std::vector<Store*> stores;
  const unsigned n = options.writers == 0 ? 1 : options.writers;
  for (unsigned i = 0; i < n; ++i) {
    if constexpr (std::is_lvalue_reference_v<result_t>) {
      stores.push_back(&make_store(i));
    } else {
      owned.push_back(std::make_unique<holder>(make_store, i));
      if constexpr (std::is_same_v<std::remove_cvref_t<result_t>, std::unique_ptr<Store>>) {
        if (!owned.back()->value)
          throw std::invalid_argument("noclobber: make_store(" + std::to_string(i) + ") returned null");
        stores.push_back(owned.back()->value.get());
      } else {
        stores.push_back(&owned.back()->value);
      }
    }
  }
  auto store_of = [&stores](unsigned i) -> Store& { return *stores[i]; };
  return detail::run_all<Store>(store_of, strategy, options);
}

}  // namespace noclobber
