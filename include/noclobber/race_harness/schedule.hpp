// noclobber/race_harness/schedule.hpp — an explore schedule written out: which writers and ops
// run, in which priority order, and where a writer's priority drops.
//
// Overview
// --------
// An explore run (PCT, race_harness/scheduler.hpp) is normally drawn from a seed: a random
// priority order of the writers and d − 1 change points at random global step numbers. The same
// schedule can be written out, and then edited, as a `race_schedule`:
//
//   priority      the writers that run (their numbers, as in reports), highest priority first
//   preemptions   PCT's change points, each anchored to one writer's store call: "before W3's
//                 call 1 (from 0) of op 0, W3 drops below every other writer". The i-th (from 0)
//                 of m drops its writer to priority m − i, below all initial priorities, as the
//                 i-th seeded change point does. Anchoring to a writer's own call, not to a
//                 global step, keeps a preemption where it was when other writers or ops are
//                 removed, which is what shrinking (race_harness/shrink.hpp) needs.
//   ops           the (writer, op) pairs that run; empty: every op of every writer in `priority`.
//                 An op left out is skipped, not renumbered: op numbers and key choices of the
//                 others stay as they were.
//
// Every explore report carries the schedule it ran written out (race_report::schedule); setting
// race_options::plan runs exactly that schedule, and the report's replay line then names it:
//
//   mode=explore writers=16 ops=5 seed=7 depth=2 priority=9,3 preempt=3.0.1 run=3.0,9.0
//
// Thread safety: plain values and pure functions.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace noclobber {

/// One (writer, op) of a run: writer number as in reports, op from 0.
struct race_op_ref {
  std::uint32_t writer = 0;
  std::uint32_t op = 0;
  friend bool operator==(const race_op_ref&, const race_op_ref&) = default;
};

/// A priority change point anchored to a writer's store call: before call `call` (from 0) of
/// op `op`, writer `writer` drops its priority.
struct race_preemption {
  std::uint32_t writer = 0;
  std::uint32_t op = 0;
  std::uint32_t call = 0;
  friend bool operator==(const race_preemption&, const race_preemption&) = default;
};

/// An explore schedule written out (see the overview).
struct race_schedule {
  std::vector<std::uint32_t> priority;       ///< writers that run, highest priority first
  std::vector<race_preemption> preemptions;  ///< in order: the i-th of m drops to priority m − i
  std::vector<race_op_ref> ops;              ///< the ops that run; empty: all ops of those writers

  [[nodiscard]] bool empty() const noexcept { return priority.empty(); }

  /// Whether `writer`'s op `op` runs.
  [[nodiscard]] bool runs(std::uint32_t writer, std::uint32_t op) const {
    if (ops.empty()) {
      for (std::uint32_t w : priority)
        if (w == writer) return true;
      return false;
    }
    for (const race_op_ref& r : ops)
      if (r.writer == writer && r.op == op) return true;
    return false;
  }

  /// How many ops run when each writer has `ops_per_writer`.
  [[nodiscard]] std::size_t op_count(unsigned ops_per_writer) const noexcept {
    return ops.empty() ? priority.size() * ops_per_writer : ops.size();
  }

  /// "priority=9,3 preempt=3.0.1 run=3.0,9.0" (tokens for race_options::apply_replay; an empty
  /// list is left out).
  [[nodiscard]] std::string replay_tokens() const {
    std::string s = "priority=";
    for (std::size_t i = 0; i < priority.size(); ++i) s += (i ? "," : "") + std::to_string(priority[i]);
    if (!preemptions.empty()) {
      s += " preempt=";
      for (std::size_t i = 0; i < preemptions.size(); ++i) {
        const race_preemption& p = preemptions[i];
        s += (i ? "," : "") + std::to_string(p.writer) + "." + std::to_string(p.op) + "." +
             std::to_string(p.call);
      }
    }
    if (!ops.empty()) {
      s += " run=";
      for (std::size_t i = 0; i < ops.size(); ++i)
        s += (i ? "," : "") + std::to_string(ops[i].writer) + "." + std::to_string(ops[i].op);
    }
    return s;
  }
};

namespace detail {

/// "3,9" / "3.0.1,9.0.2": comma-separated items of `parts` dot-separated unsigned numbers.
/// Throws std::invalid_argument naming `what` and the text.
inline std::vector<std::vector<std::uint32_t>> parse_number_tuples(std::string_view text, std::size_t parts,
                                                                   std::string_view what) {
  auto fail = [&] {
    throw std::invalid_argument("noclobber: replay value '" + std::string(text) + "' for '" +
                                std::string(what) + "' is not a list of " + std::to_string(parts) +
                                "-part numbers");
  };
  std::vector<std::vector<std::uint32_t>> out;
  if (text.empty()) return out;
  const char* p = text.data();
  const char* end = text.data() + text.size();
  while (true) {
    std::vector<std::uint32_t> item;
    for (std::size_t k = 0; k < parts; ++k) {
      if (k > 0) {
        if (p == end || *p != '.') fail();
        ++p;
      }
      std::uint32_t n = 0;
      auto [next, ec] = std::from_chars(p, end, n);
      if (ec != std::errc{} || next == p) fail();
      p = next;
      item.push_back(n);
    }
    out.push_back(std::move(item));
    if (p == end) break;
    if (*p != ',') fail();
    ++p;
  }
  return out;
}

}  // namespace detail

/// Applies one replay token of a written-out schedule ("priority", "preempt", "run") to `s`;
/// false when `name` is none of them. Throws std::invalid_argument for a malformed value.
inline bool apply_schedule_token(race_schedule& s, std::string_view name, std::string_view value) {
  if (name == "priority") {
    s.priority.clear();
    for (const auto& t : detail::parse_number_tuples(value, 1, name)) s.priority.push_back(t[0]);
    return true;
  }
  if (name == "preempt") {
    s.preemptions.clear();
    for (const auto& t : detail::parse_number_tuples(value, 3, name))
      s.preemptions.push_back({t[0], t[1], t[2]});
    return true;
  }
  if (name == "run") {
    s.ops.clear();
    for (const auto& t : detail::parse_number_tuples(value, 2, name)) s.ops.push_back({t[0], t[1]});
    return true;
  }
  return false;
}

}  // namespace noclobber
