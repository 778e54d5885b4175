// noclobber/race_harness/report.hpp — what a race harness run found, as text and as JSON.
//
// Overview
// --------
// `race_report` is the result of `run_race` (noclobber/race_harness.hpp): the counts, each lost
// write and the write that replaced it, a short interleaving trace of the first loss
// (`W1 read v0 · W2 read v0 · W1 write v1 · W2 write v2 ← W1 lost`), the seed and a one-line
// replay, and in forced mode whether the writers were serialised by the store. `to_text()` is for
// people and test logs; `to_json()` for tools.
//
// Thread safety: a plain value.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "noclobber/race_harness/history.hpp"
#include "noclobber/race_harness/overlap.hpp"
#include "noclobber/race_harness/schedule.hpp"

namespace noclobber {

/// How the harness drives the writers between each read and its write.
enum class race_mode : unsigned char {
  forced,   ///< every writer waits after each read until all still running have read (timeout: "serialised")
  explore,  ///< PCT scheduling: one writer runs at a time, seeded, replayable
  stress,   ///< free-running threads, for stores that cannot be paused
};

[[nodiscard]] constexpr std::string_view to_string(race_mode m) noexcept {
  switch (m) {
    case race_mode::forced:
      return "forced";
    case race_mode::explore:
      return "explore";
    case race_mode::stress:
      return "stress";
  }
  return "?";
}

/// "forced" / "explore" / "stress"; anything else throws std::invalid_argument naming it.
[[nodiscard]] inline race_mode parse_race_mode(std::string_view s) {
  if (s == "forced") return race_mode::forced;
  if (s == "explore") return race_mode::explore;
  if (s == "stress") return race_mode::stress;
  throw std::invalid_argument("noclobber: unknown race mode '" + std::string(s) +
                              "' (expected forced, explore or stress)");
}

struct race_report {
  std::string store;
  std::string strategy;
  race_mode mode = race_mode::forced;
  unsigned writers = 0;
  unsigned ops_per_writer = 0;
  unsigned depth = 0;                          ///< explore: PCT depth
  std::uint64_t seed = 0;                      ///< the master seed
  std::optional<std::uint64_t> schedule_seed;  ///< explore: the schedule shown (replay it)
  /// explore: the schedule shown, written out (options.plan = plan runs it again; shrink_race
  /// edits it); `planned`: the run followed options.plan (the replay line then names it)
  race_schedule plan;
  bool planned = false;
  std::uint64_t steps = 0;  ///< explore: scheduled moves in the run shown (its trace's length)
  /// explore: a fingerprint of the run shown's interleaving (every read and write, in tick order,
  /// with the versions it saw and wrote); the same schedule replays to the same signature
  std::uint64_t signature = 0;

  std::size_t operations = 0;       ///< ops run (writers × ops_per_writer, in the run shown)
  std::size_t op_errors = 0;        ///< ops whose strategy threw
  std::size_t retries = 0;          ///< write attempts beyond the first of each op
  std::size_t untracked_calls = 0;  ///< store calls on keys the run did not choose (not checked)
  std::string first_error;          ///< what the first throwing op said
  race_check check;                 ///< the checker's verdict on the run shown

  bool writers_serialised = false;  ///< forced: the barrier timed out (the store serialises)
  /// How often two writers really stood in the read→write window on a key at once (every mode;
  /// race_harness/overlap.hpp). 0 overlapping: the run never raced, whatever its verdict.
  race_overlap overlap;
  std::size_t stalls = 0;           ///< explore: hand-offs because a writer blocked outside the harness
  unsigned iterations = 1;          ///< explore: schedules run
  unsigned failing_iterations = 0;  ///< explore: schedules that lost updates
  std::optional<bool> replay_deterministic;  ///< explore: a failing schedule replayed twice the same
  std::chrono::nanoseconds elapsed{0};       ///< wall time of all iterations
  std::string trace;                         ///< the first loss, as a short interleaving
  race_history history;                      ///< kept only when options.keep_history

  [[nodiscard]] std::size_t lost() const noexcept { return check.lost.size(); }
  [[nodiscard]] bool ok() const noexcept { return check.ok() && failing_iterations == 0; }

  /// `key=value` pairs that race_options::apply_replay() accepts.
  [[nodiscard]] std::string replay() const {
    std::string s = "mode=" + std::string(to_string(mode)) + " writers=" + std::to_string(writers) +
                    " ops=" + std::to_string(ops_per_writer) + " seed=" + std::to_string(seed);
    if (mode == race_mode::explore) {
      s += " depth=" + std::to_string(depth);
      if (planned)
        s += " " + plan.replay_tokens();
      else if (schedule_seed)
        s += " schedule=" + std::to_string(*schedule_seed);
    }
    return s;
  }

  [[nodiscard]] std::string to_text() const;
  [[nodiscard]] std::string to_json() const;
};

namespace detail {

inline std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

inline std::string key_name(const race_history& h, std::uint32_t k) {
  return k < h.keys.size() ? h.keys[k] : "#" + std::to_string(k);
}

inline std::string ms_text(std::chrono::nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(d.count()) / 1e6);
  return buf;
}

/// Per key: version id -> its number in the order the store applied writes (v0 = before the run).
inline std::unordered_map<write_id, std::size_t, id_hash> version_numbers(const race_history& h,
                                                                          std::uint32_t key) {
  std::vector<const race_write*> applied;
  for (const race_write& w : h.writes) {
    if (w.key == key && w.outcome != op_outcome::failed) applied.push_back(&w);
  }
  std::sort(applied.begin(), applied.end(),
            [](const race_write* a, const race_write* b) { return a->complete < b->complete; });
  std::unordered_map<write_id, std::size_t, id_hash> numbers;
  if (key < h.initial_versions.size()) numbers[h.initial_versions[key]] = 0;
  numbers[initial_version] = 0;
  std::size_t n = 0;
  for (const race_write* w : applied) numbers.try_emplace(w->written, ++n);
  return numbers;
}

/// `W1 read v0 · W2 read v0 · W1 write v1 · W2 write v2 ← W1 lost`, around the first loss.
inline std::string loss_trace(const race_history& h, const lost_write& l) {
  const race_write& lw = l.lost;
  const race_write& ow = l.overwritten_by;
  const auto numbers = version_numbers(h, lw.key);
  auto label = [&](write_id v) {
    auto it = numbers.find(v);
    return it == numbers.end() ? std::string("v?") : "v" + std::to_string(it->second);
  };
  // The window opens at the read each of the two writes was computed from.
  auto read_tick = [&](const race_write& w) {
    std::uint64_t best = w.invoke;
    std::uint64_t best_complete = 0;
    for (const race_read& r : h.reads) {
      if (r.writer == w.writer && r.key == w.key && r.version == w.read_from && r.complete <= w.invoke &&
          r.complete >= best_complete) {
        best_complete = r.complete;
        best = r.invoke;
      }
    }
    return best;
  };
  std::uint64_t from = read_tick(lw);
  std::uint64_t to = lw.complete;
  if (ow.writer != 0) {
    from = std::min(from, read_tick(ow));
    to = std::max(to, ow.complete);
  }
  struct event {
    std::uint64_t tick;
    std::uint32_t writer;
    std::string text;
  };
  std::vector<event> events;
  for (const race_read& r : h.reads) {
    if (r.key == lw.key && r.invoke >= from && r.invoke <= to) {
      events.push_back({r.complete, r.writer, "W" + std::to_string(r.writer) + " read " + label(r.version)});
    }
  }
  for (const race_write& w : h.writes) {
    if (w.key == lw.key && w.invoke >= from && w.invoke <= to) {
      std::string t = "W" + std::to_string(w.writer) + " write ";
      if (w.outcome == op_outcome::ok)
        t += label(w.written);
      else if (w.outcome == op_outcome::unknown)
        t += label(w.written) + "?";
      else
        t += "(not applied)";
      events.push_back({w.complete, w.writer, std::move(t)});
    }
  }
  std::sort(events.begin(), events.end(), [](const event& a, const event& b) { return a.tick < b.tick; });
  if (events.size() > 12) {
    // Keep only the two writers involved.
    std::erase_if(events, [&](const event& e) { return e.writer != lw.writer && e.writer != ow.writer; });
  }
  std::string s;
  const std::size_t shown = std::min<std::size_t>(events.size(), 12);
  for (std::size_t i = 0; i < shown; ++i) {
    if (i) s += " · ";
    s += events[i].text;
  }
  if (events.size() > shown) s += " · …";
  s += " ← W" + std::to_string(lw.writer) + " lost";
  return s;
}

inline std::string version_text(const std::unordered_map<write_id, const race_write*, id_hash>& by_id,
                                write_id v) {
  if (v == initial_version) return "the initial version";
  if (v & foreign_version_bit) return "a version written outside the run";
  auto it = by_id.find(v);
  if (it == by_id.end()) return "the version before the run";
  return "the version of W" + std::to_string(it->second->writer) + " op " + std::to_string(it->second->op);
}

/// The fault verdicts of a check (vanished, doubled, indeterminate), at most 10 lines each.
inline void append_fault_verdicts(std::string& s, const race_check& check) {
  auto list = [&s](const auto& items, auto&& line) {
    const std::size_t listed = std::min<std::size_t>(items.size(), 10);
    for (std::size_t i = 0; i < listed; ++i) s += "    " + line(items[i]) + "\n";
    if (items.size() > listed) s += "    … and " + std::to_string(items.size() - listed) + " more\n";
  };
  if (!check.vanished.empty()) {
    s += "  VANISHED: " + std::to_string(check.vanished.size()) +
         " acknowledged write(s) the store forgot (a later read saw the state from before them, or "
         "it let another conditional write through on the version they replaced)\n";
    list(check.vanished, [](const vanished_write& v) { return v.trace; });
  }
  if (!check.doubled.empty()) {
    s += "  APPLIED TWICE: " + std::to_string(check.doubled.size()) + " update(s)\n";
    list(check.doubled, [](const doubled_update& d) { return d.trace; });
  }
  if (!check.indeterminate.empty()) {
    s += "  indeterminate: " + std::to_string(check.indeterminate.size()) + " write(s), " +
         std::to_string(check.unknown_landed) + " landed, " +
         std::to_string(check.indeterminate_unresolved()) + " unresolved by their writer\n";
    list(check.indeterminate, [](const indeterminate_write& u) { return u.trace; });
  }
}

}  // namespace detail

inline std::string race_report::to_text() const {
  std::string s = "race harness: store=" + store + " strategy=" + strategy +
                  " mode=" + std::string(to_string(mode)) + " writers=" + std::to_string(writers) +
                  " ops/writer=" + std::to_string(ops_per_writer) + " seed=" + std::to_string(seed) + "\n";
  s += "  operations " + std::to_string(operations) + " · write attempts " +
       std::to_string(check.write_attempts) + " · applied " + std::to_string(check.applied) + " · failed " +
       std::to_string(check.failed) + " · unknown " + std::to_string(check.unknown) + " (landed " +
       std::to_string(check.unknown_landed) + ") · retries " + std::to_string(retries) + " · errors " +
       std::to_string(op_errors) + " · " + detail::ms_text(elapsed) + " ms\n";
  if (mode == race_mode::explore) {
    s += "  explore: " + std::to_string(iterations) + " schedule(s), " + std::to_string(failing_iterations) +
         " losing; depth " + std::to_string(depth);
    if (replay_deterministic)
      s += *replay_deterministic ? "; replayed twice: identical" : "; replayed twice: DIFFERENT";
    if (stalls)
      s += "; " + std::to_string(stalls) + " stall hand-off(s) (a writer blocked outside the harness)";
    s += "\n";
  }
  if (writers_serialised) {
    s += "  writers serialised: the forced window timed out because the store (or strategy) holds a lock "
         "across read and write; no interleaving was forced\n";
  }
  s += "  overlap: " + overlap_text(overlap) + "\n";
  if (overlap.overlapping == 0 && overlap.windows > 0) {
    s += "  NO OVERLAP: no two writers stood in the read→write window at once, so no write could replace "
         "another's unseen (short of a store serving stale reads); a clean verdict here does not show the "
         "store safe under concurrency (use forced or explore, more writers, fewer keys)\n";
  }
  if (check.lost.empty() && check.lost_update_pairs == 0) {
    s += "  lost updates: 0\n";
  } else {
    s += "  LOST UPDATES: " + std::to_string(check.lost.size()) +
         " successful write(s) missing from the final state; " + std::to_string(check.lost_update_pairs) +
         " extra successful write(s) read an already-read version\n";
    std::unordered_map<write_id, const race_write*, detail::id_hash> by_id;
    for (const race_write& w : history.writes) by_id.emplace(w.written, &w);
    const std::size_t listed = std::min<std::size_t>(check.lost.size(), 10);
    for (std::size_t i = 0; i < listed; ++i) {
      const lost_write& l = check.lost[i];
      s += "    W" + std::to_string(l.lost.writer) + " op " + std::to_string(l.lost.op) + " (key " +
           detail::key_name(history, l.lost.key) + ", read " + detail::version_text(by_id, l.lost.read_from) +
           ")";
      if (l.overwritten_by.writer != 0) {
        s += " overwritten by W" + std::to_string(l.overwritten_by.writer) + " op " +
             std::to_string(l.overwritten_by.op);
      }
      s += "\n";
    }
    if (check.lost.size() > listed)
      s += "    … and " + std::to_string(check.lost.size() - listed) + " more\n";
  }
  if (!trace.empty()) s += "  trace: " + trace + "\n";
  detail::append_fault_verdicts(s, check);
  for (const std::string& a : check.anomalies) s += "  ANOMALY: " + a + "\n";
  if (op_errors) s += "  first error: " + first_error + "\n";
  if (untracked_calls)
    s += "  note: " + std::to_string(untracked_calls) +
         " store call(s) on keys outside the run were not checked\n";
  s += "  replay: " + replay() + "\n";
  return s;
}

inline std::string race_report::to_json() const {
  using detail::json_escape;
  std::string s = "{";
  s += "\"store\":" + json_escape(store) + ",\"strategy\":" + json_escape(strategy) +
       ",\"mode\":" + json_escape(to_string(mode)) + ",\"writers\":" + std::to_string(writers) +
       ",\"ops_per_writer\":" + std::to_string(ops_per_writer) + ",\"seed\":" + std::to_string(seed);
  if (mode == race_mode::explore) {
    s += ",\"depth\":" + std::to_string(depth);
    s += ",\"schedule_seed\":" + (schedule_seed ? std::to_string(*schedule_seed) : std::string("null"));
    s += ",\"iterations\":" + std::to_string(iterations) +
         ",\"failing_iterations\":" + std::to_string(failing_iterations) + ",\"replay_deterministic\":" +
         (replay_deterministic ? (*replay_deterministic ? "true" : "false") : "null") +
         ",\"stalls\":" + std::to_string(stalls) + ",\"steps\":" + std::to_string(steps) +
         ",\"signature\":" + std::to_string(signature);
  }
  s += ",\"operations\":" + std::to_string(operations) +
       ",\"write_attempts\":" + std::to_string(check.write_attempts) +
       ",\"applied\":" + std::to_string(check.applied) + ",\"failed\":" + std::to_string(check.failed) +
       ",\"unknown\":" + std::to_string(check.unknown) +
       ",\"unknown_landed\":" + std::to_string(check.unknown_landed) +
       ",\"retries\":" + std::to_string(retries) + ",\"errors\":" + std::to_string(op_errors) +
       ",\"lost\":" + std::to_string(check.lost.size()) +
       ",\"lost_update_pairs\":" + std::to_string(check.lost_update_pairs) +
       ",\"vanished\":" + std::to_string(check.vanished.size()) +
       ",\"doubled\":" + std::to_string(check.doubled.size()) +
       ",\"indeterminate\":" + std::to_string(check.indeterminate.size()) +
       ",\"indeterminate_unresolved\":" + std::to_string(check.indeterminate_unresolved()) +
       ",\"writers_serialised\":" + (writers_serialised ? "true" : "false") +
       ",\"overlap\":{\"windows\":" + std::to_string(overlap.windows) +
       ",\"overlapping\":" + std::to_string(overlap.overlapping) +
       ",\"most_at_once\":" + std::to_string(overlap.most_at_once) + "}" +
       ",\"elapsed_ms\":" + detail::ms_text(elapsed) + ",\"ok\":" + (ok() ? "true" : "false");
  s += ",\"lost_writes\":[";
  for (std::size_t i = 0; i < check.lost.size(); ++i) {
    const lost_write& l = check.lost[i];
    if (i) s += ',';
    s += "{\"writer\":" + std::to_string(l.lost.writer) + ",\"op\":" + std::to_string(l.lost.op) +
         ",\"attempt\":" + std::to_string(l.lost.attempt) +
         ",\"key\":" + json_escape(detail::key_name(history, l.lost.key)) +
         ",\"read_from\":" + std::to_string(l.lost.read_from) +
         ",\"written\":" + std::to_string(l.lost.written) + ",\"overwritten_by\":";
    if (l.overwritten_by.writer == 0) {
      s += "null";
    } else {
      s += "{\"writer\":" + std::to_string(l.overwritten_by.writer) +
           ",\"op\":" + std::to_string(l.overwritten_by.op) +
           ",\"attempt\":" + std::to_string(l.overwritten_by.attempt) + "}";
    }
    s += '}';
  }
  s += "],\"anomalies\":[";
  for (std::size_t i = 0; i < check.anomalies.size(); ++i) {
    if (i) s += ',';
    s += json_escape(check.anomalies[i]);
  }
  s += "],\"trace\":" + json_escape(trace) + ",\"first_error\":" + json_escape(first_error) +
       ",\"replay\":" + json_escape(replay()) + "}";
  return s;
}

}  // namespace noclobber
