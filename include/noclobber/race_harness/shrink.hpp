// noclobber/race_harness/shrink.hpp — from a losing explore run to a minimal reproduction.
//
// Overview
// --------
// An explore run that lost updates (race_harness.hpp) usually involves many writers and ops, of
// which two writers and one op each matter. `shrink_race` finds a small run that still loses, by
// delta debugging (Zeller and Hildebrandt's ddmin) on the run's schedule written out
// (race_report::plan, race_harness/schedule.hpp):
//
//   1. writers       ddmin over the writers in the schedule (a writer left out takes its ops and
//                    its preemptions with it);
//   2. ops           ddmin over the (writer, op) pairs that run (an op left out takes the
//                    preemptions anchored in it; a writer left without ops is left out);
//   3. preemptions   ddmin over PCT's priority change points (first: can none do?);
//
// repeated until a round changes nothing. Each candidate is one run of the harness with
// race_options::plan set: a written-out schedule is a deterministic interleaving, so the same
// losing run shrinks to the same result (candidates are remembered, never run twice). The result
// is 1-minimal in each dimension: leaving out any one more writer, op or preemption loses nothing.
// Fewer writers and ops also shorten the trace (race_report::steps, the scheduled moves).
// The shrunk schedule is then replayed `confirm_runs` times; shrink_result says how many lost.
//
//   auto report = noclobber::run_race(store, strategy, opt);          // mode explore, it lost
//   auto shrunk = noclobber::shrink_race(store, strategy, opt, report);
//   std::cout << shrunk.to_text();
//   // shrink: 16 writers × 5 ops (80 ops, 1 preemption, 177 steps) → 2 writers × 1 op (2 ops,
//   //   1 preemption, 7 steps) in 31 runs; the shrunk schedule lost 10 of 10 replays
//   //   original: mode=explore writers=16 ops=5 seed=7 depth=2 schedule=…
//   //   shrunk:   mode=explore writers=16 ops=5 seed=7 depth=2 priority=9,3 preempt=9.4.1 run=3.0,9.4
//
// The shrunk replay line goes to race_options::apply_replay (or NOCLOBBER_RACE_REPLAY) like any
// other. Writers keep their numbers and ops their op numbers (scenarios give writers roles by
// number, and keys are drawn per writer and op), so the line names the full run's W and K.
//
// State: every candidate runs against the store as it is. When the store's state decides what a
// run does (a batch already imported stays imported), give `shrink_options::before_run`, which
// resets it; `shrink_race_with(run, ...)` takes any function from options to report instead of a
// store (a fresh database per run, a per-writer factory).
//
// Thread safety: runs the harness (one thread per writer, see race_harness.hpp) once per
// candidate, one after the other, from the caller's thread; before_run and still_fails run on
// the caller's thread under no harness lock.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "noclobber/race_harness/engine.hpp"
#include "noclobber/race_harness/options.hpp"
#include "noclobber/race_harness/report.hpp"
#include "noclobber/race_harness/schedule.hpp"

namespace noclobber {

struct shrink_options {
  unsigned max_runs = 400;     ///< candidates to run at most (the best found so far is kept)
  unsigned confirm_runs = 10;  ///< replays of the shrunk schedule at the end
  /// Called before every run (reset the store when its state matters); empty: nothing.
  std::function<void()> before_run;
  /// What "still loses" means; empty: report.lost() > 0.
  std::function<bool(const race_report&)> still_fails;
};

struct shrink_result {
  race_report original;           ///< the losing run, replayed from its written-out schedule
  race_report shrunk;             ///< the smallest losing run found (== original when none smaller)
  std::string original_replay;    ///< the losing report's replay line (as given)
  std::string shrunk_replay;      ///< the shrunk run's replay line
  bool reproduced = false;        ///< the written-out schedule lost as the given run did
  std::size_t runs = 0;           ///< candidate runs spent (confirmations not counted)
  bool budget_exhausted = false;  ///< stopped at max_runs: smaller may exist
  unsigned confirmations = 0;     ///< replays of the shrunk schedule
  unsigned confirmed_losing = 0;  ///< of those, how many lost

  /// The shrunk schedule lost in every replay.
  [[nodiscard]] bool ok() const noexcept {
    return reproduced && confirmations > 0 && confirmed_losing == confirmations;
  }
  [[nodiscard]] std::string to_text() const;
};

namespace detail {

/// Zeller's ddmin: a 1-minimal subsequence of `items` for which `fails` holds (it holds for
/// `items`). Tries each of n chunks, then each complement, and refines n; deterministic.
template <class T, class Fails>
std::vector<T> ddmin(std::vector<T> items, Fails&& fails) {
  std::size_t n = 2;
  while (items.size() >= 2) {
    n = std::min(n, items.size());
    std::vector<std::vector<T>> chunks(n);
    for (std::size_t i = 0; i < items.size(); ++i) chunks[i * n / items.size()].push_back(items[i]);
    bool reduced = false;
    for (std::size_t c = 0; c < n && !reduced; ++c) {  // a chunk alone
      if (fails(chunks[c])) {
        items = chunks[c];
        n = 2;
        reduced = true;
      }
    }
    for (std::size_t c = 0; c < n && !reduced && n > 2; ++c) {  // everything but a chunk
      std::vector<T> rest;
      for (std::size_t d = 0; d < n; ++d)
        if (d != c) rest.insert(rest.end(), chunks[d].begin(), chunks[d].end());
      if (fails(rest)) {
        items = std::move(rest);
        n = std::max<std::size_t>(n - 1, 2);
        reduced = true;
      }
    }
    if (!reduced) {
      if (n >= items.size()) break;
      n = std::min(n * 2, items.size());
    }
  }
  if (items.size() == 1 && fails(std::vector<T>{})) items.clear();
  return items;
}

/// `plan` keeping only `writers` (in their priority order), their ops and preemptions.
inline race_schedule keep_writers(const race_schedule& plan, const std::vector<std::uint32_t>& writers) {
  auto kept = [&](std::uint32_t w) { return std::find(writers.begin(), writers.end(), w) != writers.end(); };
  race_schedule out;
  for (std::uint32_t w : plan.priority)
    if (kept(w)) out.priority.push_back(w);
  for (const race_preemption& p : plan.preemptions)
    if (kept(p.writer)) out.preemptions.push_back(p);
  for (const race_op_ref& r : plan.ops)
    if (kept(r.writer)) out.ops.push_back(r);
  return out;
}

/// `plan` running only `ops`; preemptions in other ops and writers without ops are left out.
inline race_schedule keep_ops(const race_schedule& plan, const std::vector<race_op_ref>& ops) {
  auto has_ops = [&](std::uint32_t w) {
    return std::any_of(ops.begin(), ops.end(), [&](const race_op_ref& r) { return r.writer == w; });
  };
  race_schedule out;
  out.ops = ops;
  for (std::uint32_t w : plan.priority)
    if (has_ops(w)) out.priority.push_back(w);
  for (const race_preemption& p : plan.preemptions)
    if (std::find(ops.begin(), ops.end(), race_op_ref{p.writer, p.op}) != ops.end())
      out.preemptions.push_back(p);
  return out;
}

/// Every (writer, op) the plan runs, listed.
inline std::vector<race_op_ref> listed_ops(const race_schedule& plan, unsigned ops_per_writer) {
  if (!plan.ops.empty()) return plan.ops;
  std::vector<race_op_ref> ops;
  for (std::uint32_t w : plan.priority)
    for (std::uint32_t k = 0; k < ops_per_writer; ++k) ops.push_back({w, k});
  return ops;
}

/// "16 writers × 5 ops (80 ops, 1 preemption, 177 steps)"
inline std::string schedule_size_text(const race_report& r) {
  const race_schedule& p = r.plan;
  const std::vector<race_op_ref> ops = listed_ops(p, r.ops_per_writer);
  std::map<std::uint32_t, std::size_t> per_writer;
  for (const race_op_ref& o : ops) ++per_writer[o.writer];
  std::string s = std::to_string(p.priority.size()) + (p.priority.size() == 1 ? " writer" : " writers");
  const bool even = std::all_of(per_writer.begin(), per_writer.end(),
                                [&](const auto& e) { return e.second == per_writer.begin()->second; });
  if (even && !per_writer.empty())
    s += " × " + std::to_string(per_writer.begin()->second) +
         (per_writer.begin()->second == 1 ? " op" : " ops");
  s += " (" + std::to_string(ops.size()) + (ops.size() == 1 ? " op, " : " ops, ") +
       std::to_string(p.preemptions.size()) +
       (p.preemptions.size() == 1 ? " preemption, " : " preemptions, ") + std::to_string(r.steps) + " steps)";
  return s;
}

}  // namespace detail

/// Shrinks the losing explore run `failing` (a report of `run(options)`), running candidates
/// through `run(const race_options<Key, Value>&) -> race_report`. Throws std::invalid_argument
/// when `failing` is not a losing explore run.
template <class Key, class Value, class Run>
[[nodiscard]] shrink_result shrink_race_with(Run&& run, const race_options<Key, Value>& options,
                                             const race_report& failing, const shrink_options& so = {}) {
  if (failing.mode != race_mode::explore || failing.plan.empty()) {
    throw std::invalid_argument("noclobber: shrink_race needs the report of an explore run (got mode " +
                                std::string(to_string(failing.mode)) + ")");
  }
  auto fails = [&](const race_report& r) { return so.still_fails ? so.still_fails(r) : r.lost() > 0; };
  if (!fails(failing)) throw std::invalid_argument("noclobber: shrink_race: the report given did not lose");

  shrink_result out;
  out.original_replay = failing.replay();
  race_options<Key, Value> o = options;
  o.mode = race_mode::explore;
  o.writers = failing.writers;
  o.ops_per_writer = failing.ops_per_writer;
  o.seed = failing.seed;
  o.depth = failing.depth;
  o.schedule.reset();
  o.iterations = 1;
  auto run_plan = [&](const race_schedule& plan) {
    if (so.before_run) so.before_run();
    o.plan = plan;
    return run(std::as_const(o));
  };

  // Phase 0: the given run, written out, must lose as it did.
  race_schedule best = failing.plan;
  out.original = run_plan(best);
  ++out.runs;
  out.reproduced = fails(out.original);
  out.shrunk = out.original;
  if (!out.reproduced) {
    out.shrunk_replay = out.shrunk.replay();
    return out;
  }

  // A candidate: remembered by its replay tokens; a losing one becomes the best so far.
  std::map<std::string, bool> tried;
  auto candidate = [&](const race_schedule& plan) {
    if (plan.priority.empty()) return false;
    const std::string id = plan.replay_tokens();
    if (auto it = tried.find(id); it != tried.end()) return it->second;
    if (out.runs >= so.max_runs) {
      out.budget_exhausted = true;
      return false;
    }
    race_report r = run_plan(plan);
    ++out.runs;
    const bool lost = fails(r);
    tried.emplace(id, lost);
    if (lost) out.shrunk = std::move(r);
    return lost;
  };

  for (int round = 0; round < 8; ++round) {
    const std::string before = best.replay_tokens();
    // Phase 1: writers.
    best = detail::keep_writers(best, detail::ddmin(best.priority, [&](const std::vector<std::uint32_t>& ws) {
                                  return candidate(detail::keep_writers(best, ws));
                                }));
    // Phase 2: ops.
    best = detail::keep_ops(best, detail::ddmin(detail::listed_ops(best, o.ops_per_writer),
                                                [&](const std::vector<race_op_ref>& ops) {
                                                  return candidate(detail::keep_ops(best, ops));
                                                }));
    // Phase 3: preemptions.
    auto with_preemptions = [&](const std::vector<race_preemption>& ps) {
      race_schedule p = best;
      p.preemptions = ps;
      return p;
    };
    if (candidate(with_preemptions({}))) {
      best.preemptions.clear();
    } else {
      best.preemptions = detail::ddmin(best.preemptions, [&](const std::vector<race_preemption>& ps) {
        return candidate(with_preemptions(ps));
      });
    }
    if (best.replay_tokens() == before || out.budget_exhausted) break;
  }
  // The best plan's own run (already run once as a candidate, unless it is the original).
  if (best.replay_tokens() != out.shrunk.plan.replay_tokens()) {
    out.shrunk = run_plan(best);
    ++out.runs;
  }
  out.shrunk_replay = out.shrunk.replay();

  for (unsigned i = 0; i < so.confirm_runs; ++i) {
    ++out.confirmations;
    out.confirmed_losing += fails(run_plan(best)) ? 1 : 0;
  }
  return out;
}

/// Shrinks a losing explore run of `run_race(store, strategy, options)`.
template <class Store, class Strategy>
requires conditional_writer<Store>
[[nodiscard]] shrink_result shrink_race(Store& store, Strategy&& strategy,
                                        const race_options_for<Store>& options, const race_report& failing,
                                        const shrink_options& so = {}) {
  auto run = [&](const race_options_for<Store>& o) { return run_race(store, strategy, o); };
  return shrink_race_with(run, options, failing, so);
}

/// Shrinks a losing explore run of `run_race_per_writer(make_store, strategy, options)`.
template <class Factory, class Strategy,
          class Store = detail::factory_store_t<std::invoke_result_t<Factory&, unsigned>>>
requires conditional_writer<Store>
[[nodiscard]] shrink_result shrink_race_per_writer(Factory&& make_store, Strategy&& strategy,
                                                   const race_options_for<Store>& options,
                                                   const race_report& failing,
                                                   const shrink_options& so = {}) {
  auto run = [&](const race_options_for<Store>& o) { return run_race_per_writer(make_store, strategy, o); };
  return shrink_race_with(run, options, failing, so);
}

inline std::string shrink_result::to_text() const {
  std::string s = "shrink: ";
  if (!reproduced) {
    s += "the losing schedule, written out, did not lose again (" + std::to_string(original.stalls) +
         " stall(s)): nothing to shrink\n  original: " + original_replay + "\n";
    return s;
  }
  s += detail::schedule_size_text(original) + " → " + detail::schedule_size_text(shrunk) + " in " +
       std::to_string(runs) + " runs";
  if (budget_exhausted) s += " (stopped at max_runs: smaller may exist)";
  s += "; the shrunk schedule lost " + std::to_string(confirmed_losing) + " of " +
       std::to_string(confirmations) + " replays\n";
  s += "  original: " + original_replay + "\n";
  s += "  shrunk:   " + shrunk_replay + "\n";
  if (!shrunk.trace.empty()) s += "  trace:    " + shrunk.trace + "\n";
  return s;
}

}  // namespace noclobber
