// noclobber/race_harness/check_faults.hpp -- the checker's classify_faults phase: vanished, doubled and
// indeterminate writes. Part of the checker: race_harness/checker.hpp has the overview and
// check_race_history.
//
// Thread safety: plain values and pure functions. Nothing here locks or calls user code.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "noclobber/race_harness/check_index.hpp"

namespace noclobber::detail {

/// A (writer, op) pair as one number.
[[nodiscard]] inline std::uint64_t op_number(const race_write& w) noexcept {
  return (static_cast<std::uint64_t>(w.writer) << 32) | w.op;
}

/// For separate_vanished: per (key, version), the observation of that version that began last —
/// a read that returned it, or an applied write_if_match conditional on it (race_write::expected:
/// the store held that version when the write arrived). Either shows the store had that version
/// as current at its invoke tick. Indices below reads.size() are reads, the rest writes.
class latest_observations {
 public:
  explicit latest_observations(const race_history& h) : latest_observations(h, conditional_updates(h)) {}
  /// The latest observation of (key, v), or nullptr.
  [[nodiscard]] const std::uint32_t* find(std::uint32_t key, write_id v) const {
    return latest_.find({key, v});
  }
  /// For an applied write_if_match conditional on the version it computed from: another applied
  /// write_if_match with a different value conditional on that same version (an observation
  /// index), or nullopt. Two updates let through on one version break compare-and-set whatever
  /// their timing: the store forgot one (a failover) or never compared (an adapter that ignores
  /// the token).
  [[nodiscard]] std::optional<std::uint32_t> rival(const race_write& w) const {
    if (!conditional_update(w) || w.expected != w.read_from) return std::nullopt;
    const std::uint32_t* first = first_update_.find({w.key, w.expected});
    if (first == nullptr) return std::nullopt;
    const std::uint32_t* other =
        h_.writes[*first].written != w.written ? first : second_update_.find({w.key, w.expected});
    if (other == nullptr) return std::nullopt;
    return static_cast<std::uint32_t>(h_.reads.size()) + *other;
  }
  [[nodiscard]] std::uint64_t invoke(std::uint32_t i) const {
    return i < h_.reads.size() ? h_.reads[i].invoke : h_.writes[i - h_.reads.size()].invoke;
  }
  /// "W2 op 5 read <what> at tick 17" or "W2 op 5 wrote conditionally on <what> (applied), sent at tick 17".
  [[nodiscard]] std::string describe(std::uint32_t i, const std::string& what) const {
    if (i < h_.reads.size()) {
      const race_read& r = h_.reads[i];
      return "W" + std::to_string(r.writer) + " op " + std::to_string(r.op) + " read " + what + " at tick " +
             std::to_string(r.invoke);
    }
    const race_write& w = h_.writes[i - h_.reads.size()];
    return "W" + std::to_string(w.writer) + " op " + std::to_string(w.op) + " wrote conditionally on " +
           what + " (applied), sent at tick " + std::to_string(w.invoke);
  }

 private:
  latest_observations(const race_history& h, std::size_t conditional)
      : h_(h),
        latest_(h.reads.size() + conditional),
        first_update_(conditional),
        second_update_(conditional) {
    for (std::uint32_t i = 0; i < h.reads.size(); ++i) note(h.reads[i].key, h.reads[i].version, i);
    const auto base = static_cast<std::uint32_t>(h.reads.size());
    for (std::uint32_t i = 0; i < h.writes.size(); ++i) {
      if (!conditional_update(h.writes[i])) continue;
      const race_write& w = h.writes[i];
      note(w.key, w.expected, base + i);
      auto [first, inserted] = first_update_.try_emplace({w.key, w.expected}, i);
      if (!inserted && h.writes[*first].written != w.written)
        second_update_.try_emplace({w.key, w.expected}, i);
    }
  }
  [[nodiscard]] static bool conditional_update(const race_write& w) noexcept {
    return w.outcome == op_outcome::ok && w.kind == write_kind::write_if_match &&
           w.expected != unknown_version;
  }
  // The tables are sized exactly: every page of a table is first touched (a page fault) per check.
  [[nodiscard]] static std::size_t conditional_updates(const race_history& h) noexcept {
    return static_cast<std::size_t>(std::count_if(h.writes.begin(), h.writes.end(), conditional_update));
  }
  void note(std::uint32_t key, write_id v, std::uint32_t i) {
    auto [slot, inserted] = latest_.try_emplace({key, v}, i);
    if (!inserted && invoke(*slot) < invoke(i)) *slot = i;
  }

  const race_history& h_;
  flat_table<std::pair<std::uint32_t, write_id>, key_version_hash> latest_;
  // Per (key, version): the first applied conditional update on it, and one with another value.
  flat_table<std::pair<std::uint32_t, write_id>, key_version_hash> first_update_, second_update_;
};

/// For separate_vanished: per entry, what a walk from its value down its key's version chain can
/// find — the latest invoke of a read of a version on the way, and whether the key's final version
/// is on it — summed up once per entry, so settling a stale loss costs O(1) instead of a walk as
/// long as the chain (a lossy run has about as many lost writes as chain links: quadratic).
class chain_summaries {
 public:
  chain_summaries(const history_index& ix, const latest_observations& seen)
      : ix_(ix),
        seen_(seen),
        latest_(new std::uint64_t[ix.writes.size()]),
        state_(ix.writes.size(), unseen) {}

  /// True when walking down from the version entry `n` read cannot find a witness that its write
  /// vanished (no observation of a version there began after it completed, and the key never ends
  /// there). False also when the summary is inexact (the chain loops or crosses keys): then the
  /// caller walks.
  [[nodiscard]] bool rules_out(std::uint32_t n) {
    const race_write& w = ix_.record_of(n);
    if (is_root(w.key, w.read_from)) return false;  // one step: the walk is as cheap
    const std::uint32_t p = ix_.writes[n].parent;
    if (p == no_entry || ix_.writes[p].key != w.key) return false;
    summarise(p);
    return (state_[p] & (holds_final | inexact)) == 0 && latest_[p] <= w.complete;
  }

 private:
  struct summary {
    std::uint64_t latest_read = 0;  ///< latest invoke among observations of the versions (0: none)
    bool holds_final = false;       ///< the key's final version is among them
    bool exact = true;              ///< false: the chain loops or crosses keys
  };
  // state_ per entry: unseen, on_path, or done with the summary's flags (latest_: its latest_read).
  enum : unsigned char { unseen = 0, on_path = 1, done = 2, holds_final = 4, inexact = 8 };

  [[nodiscard]] bool is_root(std::uint32_t key, write_id v) const {
    const auto& initial = ix_.h.initial_versions;
    return v == initial_version || (v & foreign_version_bit) != 0 ||
           (key < initial.size() && v == initial[key]);
  }
  void visit(std::uint32_t key, write_id v, summary& s) const {
    const auto& h = ix_.h;
    if (key < h.final_versions.size() && h.final_versions[key] == v) s.holds_final = true;
    if (const std::uint32_t* r = seen_.find(key, v))
      s.latest_read = std::max(s.latest_read, seen_.invoke(*r));
  }
  /// Follows parent links (read_from) down to a summarised entry or the chain's root, then fills
  /// the path back up (iterative: chains are as long as the run).
  void summarise(std::uint32_t n) {
    path_.clear();
    summary tail;
    for (;;) {
      if (state_[n] & done) {
        tail = {latest_[n], (state_[n] & holds_final) != 0, (state_[n] & inexact) == 0};
        break;
      }
      if (state_[n] == on_path) {
        tail.exact = false;
        break;
      }
      state_[n] = on_path;
      path_.push_back(n);
      const race_write& w = ix_.record_of(n);
      const std::uint32_t p = is_root(w.key, w.read_from) ? no_entry : ix_.writes[n].parent;
      if (p == no_entry) {
        visit(w.key, w.read_from, tail);
        break;
      }
      if (ix_.writes[p].key != w.key) {
        tail.exact = false;
        break;
      }
      n = p;
    }
    for (auto it = path_.rbegin(); it != path_.rend(); ++it) {
      const race_write& w = ix_.record_of(*it);
      visit(w.key, w.written, tail);
      latest_[*it] = tail.latest_read;
      state_[*it] = static_cast<unsigned char>(done | (tail.holds_final ? holds_final : 0) |
                                               (tail.exact ? 0 : inexact));
    }
  }

  const history_index& ix_;
  const latest_observations& seen_;
  std::unique_ptr<std::uint64_t[]>
      latest_;  // per entry, set when state_ is done (not zeroed: untouched pages cost nothing)
  std::vector<unsigned char> state_;
  std::vector<std::uint32_t> path_;
};

/// Of the lost writes, those the store forgot: an observation that began after the write was
/// acknowledged (its invoke tick is later than the write's complete tick) — a read, or an applied
/// write conditional on that version (after a failover to a replica that lacked the write, a
/// writer that read before the failover can update the old version on the new primary without
/// reading it again) — or the key's final value, shows a version the write had replaced (its
/// read_from or anything below it). A linearizable store never does that, whatever the strategy
/// does; a stale-read loss never needs it (the writes that replaced the lost one are newer than
/// it, or were conditional on a version other than the one they computed from). Also vanished:
/// a lost write_if_match conditional on the version it computed from when another applied
/// write_if_match was conditional on that same version (latest_observations::rival). Moves those
/// to c.vanished; returns the rest.
inline std::vector<std::uint32_t> separate_vanished(const history_index& ix, std::vector<std::uint32_t> lost,
                                                    race_check& c) {
  const race_history& h = ix.h;
  const latest_observations seen(h);
  chain_summaries below(ix, seen);
  std::vector<std::uint32_t> stale;
  for (std::uint32_t n : lost) {
    const race_write& w = ix.record_of(n);
    const write_id start = w.key < h.initial_versions.size() ? h.initial_versions[w.key] : initial_version;
    auto name = [start](write_id v) {
      return v == initial_version || v == start ? std::string("the key's state before the run")
                                                : "version " + std::to_string(v);
    };
    if (const auto r = seen.rival(w)) {
      const std::string what = name(w.expected);
      c.vanished.push_back({w, describe_write(w) + " wrote " + std::to_string(w.written) +
                                   " (applied) conditionally on " + what + "; " + seen.describe(*r, what) +
                                   " too"});
      continue;
    }
    if (below.rules_out(n)) {  // most lost writes in a lossy run: no walk needed
      stale.push_back(n);
      continue;
    }
    std::string trace;
    write_id v = w.read_from;
    std::uint32_t at = ix.writes[n].parent;  // v's entry (link_parents), or no_entry
    for (std::size_t steps = 0; trace.empty() && steps <= ix.writes.size(); ++steps) {
      const std::string what = name(v);
      if (w.key < h.final_versions.size() && h.final_versions[w.key] == v) {
        trace = "the key ends at " + what + ", which it replaced";
      } else if (const std::uint32_t* r = seen.find(w.key, v); r && seen.invoke(*r) > w.complete) {
        trace = seen.describe(*r, what) + ", after the write was acknowledged at tick " +
                std::to_string(w.complete);
      }
      if (v == initial_version || v == start || (v & foreign_version_bit) != 0) break;
      if (at == no_entry) break;
      v = ix.record_of(at).read_from;
      at = ix.writes[at].parent;
    }
    if (trace.empty()) {
      stale.push_back(n);
    } else {
      c.vanished.push_back(
          {w, describe_write(w) + " wrote " + std::to_string(w.written) + " (applied); " + trace});
    }
  }
  return stale;
}

/// Operations with two or more values on the final chains (walked newest first). Most checks
/// find none: any_repeated says so without a table of every op on a chain.
inline void find_doubled(const history_index& ix, race_check& c) {
  const race_history& h = ix.h;
  std::vector<std::uint64_t> ops;  // of the values on chains
  for (const checked_write& e : ix.writes) {
    if (e.on_chain) ops.push_back(op_number(h.writes[e.record]));
  }
  if (!any_repeated(ops)) return;
  flat_table<std::uint64_t, id_hash> landed(ops.size());  // op -> values on chain
  for (std::uint64_t op : ops) {
    auto [count, inserted] = landed.try_emplace(op, 1);
    if (!inserted) ++*count;
  }
  std::unordered_map<std::uint64_t, std::size_t> at;  // op -> index in c.doubled
  std::vector<char> walked(ix.writes.size(), 0);      // each value once (a looping chain revisits)
  for (std::uint32_t k = 0; k < h.final_versions.size(); ++k) {
    const std::uint32_t* top = ix.by_value.find(h.final_versions[k]);
    std::uint32_t n = top == nullptr ? no_entry : *top;
    // Down through parent links (link_parents: the entry of each value's read_from).
    for (std::size_t steps = 0; steps <= ix.writes.size(); ++steps) {
      if (n == no_entry || !ix.writes[n].on_chain || walked[n]) break;
      const race_write& w = ix.record_of(n);
      if (w.key != k) break;
      walked[n] = 1;
      if (*landed.find(op_number(w)) > 1) {
        auto [it, first] = at.try_emplace(op_number(w), c.doubled.size());
        if (first) c.doubled.push_back({});
        c.doubled[it->second].copies.push_back(w);
      }
      n = ix.writes[n].parent;
    }
  }
  for (doubled_update& d : c.doubled) {
    const race_write& w = d.copies.front();
    d.trace = "W" + std::to_string(w.writer) + " op " + std::to_string(w.op) +
              " is on the final chain of key " +
              (w.key < h.keys.size() ? h.keys[w.key] : std::to_string(w.key)) + " " +
              std::to_string(d.copies.size()) + " times:";
    for (auto it = d.copies.rbegin(); it != d.copies.rend(); ++it) {
      d.trace += " attempt " + std::to_string(it->attempt) + " (" + std::string(to_string(it->outcome)) + ")";
    }
  }
}

/// Each value with an unknown outcome: landed or not, and how its op went on (a later write
/// attempt of the same op, else a read of the same op that began after it returned, else none).
inline void resolve_indeterminate(const history_index& ix, race_check& c) {
  const race_history& h = ix.h;
  std::vector<std::uint32_t> unknown;
  for (std::uint32_t n = 0; n < ix.writes.size(); ++n) {
    if (ix.writes[n].outcome == op_outcome::unknown) unknown.push_back(n);
  }
  if (unknown.empty()) return;
  std::unordered_map<std::uint64_t, std::uint32_t> last_attempt;  // op -> highest attempt
  std::unordered_map<std::uint64_t, std::uint64_t> last_read;     // op -> latest read invoke
  for (std::uint32_t n : unknown) {
    last_attempt.emplace(op_number(ix.record_of(n)), 0);
    last_read.emplace(op_number(ix.record_of(n)), 0);
  }
  for (const race_write& w : h.writes) {
    if (auto it = last_attempt.find(op_number(w)); it != last_attempt.end())
      it->second = std::max(it->second, w.attempt);
  }
  for (const race_read& r : h.reads) {
    const std::uint64_t op = (static_cast<std::uint64_t>(r.writer) << 32) | r.op;
    if (auto it = last_read.find(op); it != last_read.end()) it->second = std::max(it->second, r.invoke);
  }
  sort_by_completion(ix, unknown);
  for (std::uint32_t n : unknown) {
    const race_write& w = ix.record_of(n);
    indeterminate_write u{w, ix.writes[n].on_chain, unknown_resolution::unresolved, {}};
    if (last_attempt[op_number(w)] > w.attempt) {
      u.how = unknown_resolution::later_attempt;
    } else if (last_read[op_number(w)] > w.complete) {
      u.how = unknown_resolution::read_back;
    }
    u.trace = describe_write(w) + " wrote " + std::to_string(w.written) +
              " (unknown): " + (u.landed ? "landed" : "did not land") + "; its writer " +
              (u.how == unknown_resolution::later_attempt ? "wrote again"
               : u.how == unknown_resolution::read_back   ? "read the key back"
                                                          : "did not find out");
    c.indeterminate.push_back(std::move(u));
  }
}

/// Phase: what faults did — vanished writes (taken out of `lost`), updates applied twice, unknown
/// outcomes and their resolution. Returns the lost writes left for name_replacers.
inline std::vector<std::uint32_t> classify_faults(const history_index& ix, std::vector<std::uint32_t> lost,
                                                  race_check& c) {
  if (!lost.empty()) lost = separate_vanished(ix, std::move(lost), c);
  if (!ix.h.ops_write_in_steps) find_doubled(ix, c);
  resolve_indeterminate(ix, c);
  return lost;
}

}  // namespace noclobber::detail
