// noclobber/race_harness/options.hpp — what a race harness run does: race_options.
//
// Overview
// --------
// `race_options<Key, Value>` (or `race_options_for<Store>`) says how many writers run how many
// operations, in which mode (forced / explore / stress, see noclobber/race_harness.hpp), on
// which keys, with which values (race_harness/workload.hpp), and how long writers wait for each
// other. A report's replay line (race_report::replay_line) sets the fields that reproduce a run:
//
//   noclobber::race_options_for<my_store> opt;
//   opt.apply_replay("mode=explore writers=16 ops=1 seed=7 depth=2 schedule=12345");
//
// detail::validate() is the boundary check every run starts with: options that make no sense throw
// std::invalid_argument naming the field (and fill in the default key and workload).
//
// Timeouts saturate: `std::chrono::milliseconds::max()` means "wait without limit" (in forced
// mode a store that serialises the writers then makes the run wait for ever instead of
// reporting "writers serialised").
//
// Thread safety: a plain value; the harness reads it from every writer thread and never writes
// it during a run.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "noclobber/conditional_writer.hpp"
#include "noclobber/race_harness/report.hpp"
#include "noclobber/race_harness/schedule.hpp"
#include "noclobber/race_harness/workload.hpp"

namespace noclobber {

/// What to run. Defaults: 8 forced writers, one op each, on one key.
template <class Key, class Value>
struct race_options {
  unsigned writers = 8;         ///< W, 1 … 65535
  unsigned ops_per_writer = 1;  ///< K, ≥ 1
  race_mode mode = race_mode::forced;
  std::uint64_t seed = 1;                 ///< master seed: key choice, explore schedules
  unsigned iterations = 10;               ///< explore: schedules to try
  unsigned depth = 2;                     ///< explore: PCT depth d (d − 1 change points), 1 … 8
  bool stop_at_first_failure = true;      ///< explore: stop at the first losing schedule
  std::optional<std::uint64_t> schedule;  ///< explore: run exactly this schedule seed (replay)
  /// explore: run exactly this written-out schedule (race_harness/schedule.hpp; wins over
  /// `schedule`); empty: draw schedules from seeds
  race_schedule plan;
  /// forced: how long writers wait for each other (milliseconds::max(): without limit)
  std::chrono::milliseconds barrier_timeout{1000};
  /// explore: a writer silent this long is blocked (milliseconds::max(): never)
  std::chrono::milliseconds stall_timeout{200};
  /// The keys ops write; each op picks one (seeded), or `choose_key(writer, op, random)` picks an
  /// index. Empty: one key, "noclobber/race" (for keys constructible from a string).
  std::vector<Key> keys;
  std::function<std::size_t(std::uint32_t writer, std::uint32_t op, std::uint64_t random)> choose_key;
  /// How values are made unique; empty: append_workload() for std::string values.
  race_workload<Value> workload;
  std::string store_name = "store";
  std::string strategy_name = "strategy";
  /// Number of the first writer (runs in several processes give each a disjoint range).
  std::uint32_t first_writer = 1;
  /// The strategy writes several values per op in turn (an idempotency ledger's claim, then its
  /// completion). The checker then cannot tell a step from an update applied twice and leaves
  /// `doubled` to the caller, who checks the op's effect itself (race_demo's import_retry does).
  bool ops_write_in_steps = false;

  /// Applies a report's replay line ("mode=explore writers=16 ops=1 seed=7 depth=2 schedule=…",
  /// or with a written-out schedule "… priority=9,3 preempt=3.0.1 run=3.0,9.0").
  /// Throws std::invalid_argument naming a token it does not understand.
  void apply_replay(std::string_view line) {
    std::size_t pos = 0;
    while (pos < line.size()) {
      while (pos < line.size() && line[pos] == ' ') ++pos;
      const std::size_t end = std::min(line.find(' ', pos), line.size());
      if (end == pos) break;
      const std::string_view token = line.substr(pos, end - pos);
      pos = end;
      const auto eq = token.find('=');
      if (eq == std::string_view::npos) {
        throw std::invalid_argument("noclobber: replay token '" + std::string(token) + "' is not key=value");
      }
      const std::string_view name = token.substr(0, eq);
      const std::string value(token.substr(eq + 1));
      // A number as strtoull reads it with base 0 (decimal, 0x hex, leading-0 octal), but only
      // digits: no sign (stoull wraps "-1") or leading space, and within the field's type.
      auto number = [&](std::uint64_t max) -> std::uint64_t {
        std::size_t used = 0;
        std::uint64_t n = 0;
        if (!value.empty() && value[0] >= '0' && value[0] <= '9') {
          try {
            n = std::stoull(value, &used, 0);
          } catch (const std::exception&) {
            used = 0;
          }
        }
        if (used != value.size() || value.empty() || n > max) {
          throw std::invalid_argument("noclobber: replay value '" + value + "' for '" + std::string(name) +
                                      "' is not a number from 0 to " + std::to_string(max));
        }
        return n;
      };
      constexpr std::uint64_t any = std::numeric_limits<std::uint64_t>::max();
      constexpr std::uint64_t narrow = std::numeric_limits<unsigned>::max();
      if (name == "mode")
        mode = parse_race_mode(value);
      else if (name == "writers")
        writers = static_cast<unsigned>(number(narrow));
      else if (name == "ops")
        ops_per_writer = static_cast<unsigned>(number(narrow));
      else if (name == "seed")
        seed = number(any);
      else if (name == "depth")
        depth = static_cast<unsigned>(number(narrow));
      else if (name == "schedule")
        schedule = number(any);
      else if (name == "iterations")
        iterations = static_cast<unsigned>(number(narrow));
      else if (apply_schedule_token(plan, name, value))
        continue;
      else
        throw std::invalid_argument("noclobber: unknown replay key '" + std::string(name) + "'");
    }
  }
};

template <class Store>
using race_options_for = race_options<store_key_t<Store>, store_value_t<Store>>;

namespace detail {

template <class Store>
race_workload<store_value_t<Store>> resolve_workload(const race_options_for<Store>& o) {
  if (!o.workload.empty()) return o.workload;
  if constexpr (std::is_same_v<store_value_t<Store>, std::string>) {
    return append_workload();
  } else {
    throw std::invalid_argument(
        "noclobber: race_options.workload is empty; the harness needs next_value and id_of for this value "
        "type "
        "(append_workload() covers std::string)");
  }
}

/// A written-out schedule names only writers and ops of the run, each writer once.
template <class Options>
void validate_plan(const race_schedule& plan, const Options& o) {
  auto bad = [](const std::string& what) {
    throw std::invalid_argument("noclobber: race_options.plan: " + what);
  };
  if (o.mode != race_mode::explore) bad("a written-out schedule needs mode explore");
  auto planned = [&](std::uint32_t w) {
    return std::find(plan.priority.begin(), plan.priority.end(), w) != plan.priority.end();
  };
  for (std::size_t i = 0; i < plan.priority.size(); ++i) {
    const std::uint32_t w = plan.priority[i];
    if (w < o.first_writer || w - o.first_writer >= o.writers)
      bad("writer " + std::to_string(w) + " is not one of the run's writers");
    if (std::find(plan.priority.begin(), plan.priority.begin() + static_cast<std::ptrdiff_t>(i), w) !=
        plan.priority.begin() + static_cast<std::ptrdiff_t>(i))
      bad("writer " + std::to_string(w) + " is listed twice in priority");
  }
  for (const race_preemption& p : plan.preemptions) {
    if (!planned(p.writer))
      bad("preemption of writer " + std::to_string(p.writer) + ", which is not in priority");
  }
  for (const race_op_ref& r : plan.ops) {
    if (!planned(r.writer)) bad("op of writer " + std::to_string(r.writer) + ", which is not in priority");
    if (r.op >= o.ops_per_writer)
      bad("op " + std::to_string(r.op) + " of writer " + std::to_string(r.writer) + " (ops_per_writer is " +
          std::to_string(o.ops_per_writer) + ")");
  }
}

template <class Store>
void validate(race_options_for<Store>& o) {
  if (o.writers == 0 || o.writers > 65535) {
    throw std::invalid_argument("noclobber: race_options.writers = " + std::to_string(o.writers) +
                                " (expected 1 … 65535)");
  }
  if (o.ops_per_writer == 0)
    throw std::invalid_argument("noclobber: race_options.ops_per_writer = 0 (expected ≥ 1)");
  if (o.mode == race_mode::explore && (o.depth == 0 || o.depth > 8)) {
    throw std::invalid_argument("noclobber: race_options.depth = " + std::to_string(o.depth) +
                                " (expected 1 … 8)");
  }
  if (o.iterations == 0) throw std::invalid_argument("noclobber: race_options.iterations = 0 (expected ≥ 1)");
  if (o.first_writer == 0 || o.first_writer + o.writers > max_race_writer) {
    throw std::invalid_argument("noclobber: race_options.first_writer = " + std::to_string(o.first_writer) +
                                " (expected 1 … 2^20 − 1 − writers)");
  }
  if (!o.plan.empty()) validate_plan(o.plan, o);
  if (o.keys.empty()) {
    if constexpr (std::is_constructible_v<store_key_t<Store>, const char*>) {
      o.keys.push_back(store_key_t<Store>("noclobber/race"));
    } else {
      throw std::invalid_argument(
          "noclobber: race_options.keys is empty (give the keys the writers should race on)");
    }
  }
}

}  // namespace detail

}  // namespace noclobber
