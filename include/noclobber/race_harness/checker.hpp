// noclobber/race_harness/checker.hpp — the race harness's checker: from a recorded history
// (race_harness/records.hpp) to verdicts (race_check).
//
// Overview
// --------
// The rules follow Jepsen's Elle:
//
//   * lost update: two or more *successful* writes read the same version of the same key;
//   * a successful write must have read a version of its own key: the state before the run, or
//     a value a recorded write wrote to that key (anything else is an anomaly);
//   * the successful writes of a key must form one version chain that ends in the key's final
//     value: walk back from the final version through "read from" links; every successful write
//     must be on that walk, otherwise it is lost (and the report names the write that replaced it);
//   * a write whose outcome is unknown (indeterminate) may or may not have landed: it is never
//     counted as lost, and it counts as landed when the final chain passes through it.
//
// Under faults (a crash, a failover, a dropped connection) a missing write is not always a
// strategy's fault, so the checker tells four things apart per key (classify_faults):
//
//   * lost to a stale read (`lost`): a successful write off the final chain, as above;
//   * vanished (`vanished`): a successful write off the final chain that the store itself forgot
//     — a read that began after the write was acknowledged (or the key's final value) returned
//     a version from before it: a durability or failover loss, not a strategy bug;
//   * applied twice (`doubled`): one operation's update twice on the final chain (its first write
//     landed although the writer was told otherwise, and it wrote again); not judged when the
//     history says ops write in steps (race_history::ops_write_in_steps);
//   * indeterminate (`indeterminate`): every write with an unknown outcome, whether it landed and
//     how its writer found out (read it back, wrote again, or neither).
//
// check_race_history runs in phases, each a function over the shared history_index:
//
//   index_writes        one entry per distinct written value (attempts that sent the same value
//                       merged: ok if any applied, unknown if any was unknown, else failed)
//   group_readers       successful writes grouped by the version they read (Elle's lost-update
//                       pairs); reads of a version nobody wrote, or written to another key,
//                       are anomalies
//   walk_final_chains   each key's chain, walked back from its final version; marks what is on it
//   collect_lost        successful writes off every chain, in order of completion
//   classify_faults     of the lost writes, those the store forgot (vanished); updates applied
//                       twice; how each unknown outcome was resolved (see there)
//   name_replacers      for each lost write, the write that replaced it (see there)
//
// It runs in time linear in the number of records (hash tables sized up front); losses add a
// sort, only when there are losses. See bench/bench_race_harness.cpp.
//
// Extending: a new verdict is one more phase over history_index filling its own field of
// race_check (and race_check::ok() if it is a failure); exports and traces read race_history and
// race_check, never the phases' internals.
//
// Thread safety: plain values and pure functions. Nothing here locks or calls user code.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "noclobber/race_harness/records.hpp"

namespace noclobber {

/// A successful write that is not in the final state, and the write that replaced it.
struct lost_write {
  race_write lost;
  race_write overwritten_by;  ///< writer 0 when no replacing write was recorded
};

/// A successful write the store forgot: off the final chain, and `trace` names what later saw
/// the key's state from before it.
struct vanished_write {
  race_write write;
  std::string trace;
};

/// One operation whose update is on a final chain more than once.
struct doubled_update {
  std::vector<race_write> copies;  ///< its values on the chain, newest first
  std::string trace;
};

/// How the writer of a write with an unknown outcome went on.
enum class unknown_resolution : unsigned char {
  later_attempt,  ///< the same op wrote again (it decided the first did not land)
  read_back,      ///< the same op read the key again and wrote no more
  unresolved,     ///< neither: the op ended with the outcome unknown
};

[[nodiscard]] constexpr std::string_view to_string(unknown_resolution r) noexcept {
  switch (r) {
    case unknown_resolution::later_attempt:
      return "wrote again";
    case unknown_resolution::read_back:
      return "read back";
    case unknown_resolution::unresolved:
      return "unresolved";
  }
  return "?";
}

/// A write with an unknown outcome: whether it landed (the final chain passes through it) and how
/// its writer went on.
struct indeterminate_write {
  race_write write;
  bool landed = false;
  unknown_resolution how = unknown_resolution::unresolved;
  std::string trace;
};

/// The checker's verdict.
struct race_check {
  std::size_t write_attempts = 0;
  std::size_t applied = 0;         ///< distinct values the store said it applied
  std::size_t failed = 0;          ///< attempts that did not apply
  std::size_t unknown = 0;         ///< distinct values with an unknown outcome
  std::size_t unknown_landed = 0;  ///< of those, how many the final chain passes through
  /// Elle's count: for each (key, version) read by n ≥ 2 successful writes, n − 1.
  std::size_t lost_update_pairs = 0;
  std::vector<lost_write> lost;        ///< successful writes missing from the final state
  std::vector<std::string> anomalies;  ///< anything else that breaks the rules, in words
  /// Successful writes the store forgot (not in `lost`), in order of completion.
  std::vector<vanished_write> vanished;
  std::vector<doubled_update> doubled;  ///< updates applied twice
  /// Every distinct value with an unknown outcome, in order of completion.
  std::vector<indeterminate_write> indeterminate;

  [[nodiscard]] bool ok() const noexcept {
    return lost.empty() && lost_update_pairs == 0 && anomalies.empty() && vanished.empty() && doubled.empty();
  }
  /// Unknown outcomes whose writer neither wrote again nor read the key back.
  [[nodiscard]] std::size_t indeterminate_unresolved() const noexcept {
    std::size_t n = 0;
    for (const indeterminate_write& w : indeterminate) n += w.how == unknown_resolution::unresolved;
    return n;
  }
};

namespace detail {

/// A fixed-capacity open-addressing table (linear probing, no erase): the checker knows its
/// maximum size up front, and flat slots keep it linear in practice, not only on paper.
template <class K, class V, class Hash>
class flat_table {
 public:
  explicit flat_table(std::size_t max_entries) {
    std::size_t capacity = 16;
    while (capacity < max_entries * 2) capacity <<= 1;
    slots_.resize(capacity);
    mask_ = capacity - 1;
  }
  /// The value for `key`, inserting `value` when absent; second: whether it was inserted.
  std::pair<V*, bool> try_emplace(const K& key, const V& value) {
    for (std::size_t i = Hash{}(key)&mask_;; i = (i + 1) & mask_) {
      slot& s = slots_[i];
      if (!s.used) {
        s.used = true;
        s.key = key;
        s.value = value;
        return {&s.value, true};
      }
      if (s.key == key) return {&s.value, false};
    }
  }
  V* find(const K& key) {
    for (std::size_t i = Hash{}(key)&mask_;; i = (i + 1) & mask_) {
      slot& s = slots_[i];
      if (!s.used) return nullptr;
      if (s.key == key) return &s.value;
    }
  }
  const V* find(const K& key) const { return const_cast<flat_table*>(this)->find(key); }

 private:
  struct slot {
    K key{};
    V value{};
    bool used = false;
  };
  std::vector<slot> slots_;
  std::size_t mask_ = 0;
};

struct key_version_hash {
  std::size_t operator()(const std::pair<std::uint32_t, write_id>& p) const noexcept {
    return id_hash{}(p.second ^ (static_cast<write_id>(p.first) * 0x9e3779b97f4a7c15ULL));
  }
};

}  // namespace detail

namespace detail {

/// One distinct written value of a history.
struct checked_write {
  std::uint32_t record;  ///< index in race_history::writes of the attempt that decided the outcome
  op_outcome outcome;
  bool on_chain;  ///< a key's final chain passes through it
};

/// The successful writes that read one version: how many, and the first (a checked_write index).
struct version_readers {
  std::uint32_t count = 0;
  std::uint32_t first = 0;
};

/// What the checker's phases share.
struct history_index {
  explicit history_index(const race_history& history) : h(history), by_value(history.writes.size()) {}

  const race_history& h;
  std::vector<checked_write> writes;                      ///< one per distinct written value
  flat_table<write_id, std::uint32_t, id_hash> by_value;  ///< written value -> index in `writes`
  std::vector<version_readers> readers;                   ///< per entry of `writes`: who read its value

  [[nodiscard]] const race_write& record_of(std::uint32_t n) const { return h.writes[writes[n].record]; }
};

inline int outcome_rank(op_outcome o) noexcept {
  return o == op_outcome::ok ? 2 : o == op_outcome::unknown ? 1 : 0;
}

/// Phase 1: one entry per distinct written value. A value sent twice (a transient retry of the
/// same request) is merged: ok if any attempt applied, unknown if any was unknown, else failed.
inline void index_writes(history_index& ix, race_check& c) {
  const race_history& h = ix.h;
  ix.writes.reserve(h.writes.size());
  for (std::uint32_t i = 0; i < h.writes.size(); ++i) {
    const race_write& w = h.writes[i];
    if (w.outcome == op_outcome::failed) ++c.failed;
    auto [slot, inserted] = ix.by_value.try_emplace(w.written, static_cast<std::uint32_t>(ix.writes.size()));
    if (inserted) {
      ix.writes.push_back({i, w.outcome, false});
      continue;
    }
    checked_write& e = ix.writes[*slot];
    if (h.writes[e.record].key != w.key) {
      c.anomalies.push_back("value " + std::to_string(w.written) + " was written to two keys (" +
                            describe_write(h.writes[e.record]) + ", " + describe_write(w) + ")");
    }
    if (outcome_rank(w.outcome) > outcome_rank(e.outcome)) e = checked_write{i, w.outcome, false};
  }
}

/// Orders writes by completion (then invocation, writer, op, attempt): the checker's choices among
/// equals (a version's first reader, the next applied write) never depend on the history's order.
inline bool completes_before(const race_write& a, const race_write& b) noexcept {
  return std::tie(a.complete, a.invoke, a.writer, a.op, a.attempt) <
         std::tie(b.complete, b.invoke, b.writer, b.op, b.attempt);
}

/// Phase 2, Elle's lost update: successful writes grouped by (key, version read). A version
/// written to the same key in the run is an entry, so its group lives in `ix.readers`; versions
/// from before the run (or from outside it) are few and go to a small map, and so do versions
/// written to another key (they group apart from that key's readers). A read of a version that
/// no recorded write produced for this key (and that is not from before the run) is an anomaly.
inline void group_readers(history_index& ix, race_check& c) {
  const race_history& h = ix.h;
  ix.readers.assign(ix.writes.size(), version_readers{});
  std::unordered_map<std::pair<std::uint32_t, write_id>, version_readers, key_version_hash> other_versions;
  for (std::uint32_t n = 0; n < ix.writes.size(); ++n) {
    const checked_write& e = ix.writes[n];
    const race_write& w = h.writes[e.record];
    if (e.outcome == op_outcome::unknown) ++c.unknown;
    if (e.outcome != op_outcome::ok) continue;
    ++c.applied;
    const std::uint32_t* parent = ix.by_value.find(w.read_from);
    const bool parent_of_key = parent != nullptr && ix.record_of(*parent).key == w.key;
    version_readers& g = parent_of_key ? ix.readers[*parent] : other_versions[{w.key, w.read_from}];
    if (g.count++ == 0) {
      g.first = n;
    } else {
      ++c.lost_update_pairs;
      if (completes_before(w, ix.record_of(g.first))) g.first = n;  // not the history's order
    }
    const bool from_before_run =
        w.read_from == initial_version || (w.read_from & foreign_version_bit) != 0 ||
        (w.key < h.initial_versions.size() && w.read_from == h.initial_versions[w.key]);
    if (!from_before_run && !parent_of_key) {
      c.anomalies.push_back(
          describe_write(w) + " read version " + std::to_string(w.read_from) +
          (parent != nullptr ? ", which was written to another key" : ", which no recorded write produced"));
    }
  }
}

/// Phase 3: walks each key's chain back from its final version to the version the run started
/// from, marking every entry on it (unknown ones count as landed). Breaks, loops, another key's
/// value and a value the store called not applied are anomalies.
inline void walk_final_chains(history_index& ix, race_check& c) {
  const race_history& h = ix.h;
  for (std::uint32_t k = 0; k < h.final_versions.size(); ++k) {
    const write_id start = k < h.initial_versions.size() ? h.initial_versions[k] : initial_version;
    write_id v = h.final_versions[k];
    std::size_t steps = 0;
    auto key_name = [&] { return k < h.keys.size() ? h.keys[k] : std::to_string(k); };
    while (v != initial_version && v != start && (v & foreign_version_bit) == 0) {
      const std::uint32_t* at = ix.by_value.find(v);
      if (at == nullptr) {
        // A broken link further down was already reported with the write that read it.
        if (steps == 0) {
          c.anomalies.push_back("key " + key_name() + " holds version " + std::to_string(v) +
                                ", which no recorded write produced");
        }
        break;
      }
      checked_write& e = ix.writes[*at];
      const race_write& w = h.writes[e.record];
      if (w.key != k) {  // (before the loop test: another key's chain may have passed here)
        c.anomalies.push_back("key " + key_name() + " holds a value written to another key by " +
                              describe_write(w));
        break;
      }
      if (e.on_chain || ++steps > ix.writes.size()) {
        c.anomalies.push_back("key " + key_name() + ": the version chain loops at " + describe_write(w));
        break;
      }
      if (e.outcome == op_outcome::failed) {
        c.anomalies.push_back("key " + key_name() + " holds the value of " + describe_write(w) +
                              ", which the store reported as not applied");
      }
      e.on_chain = true;
      if (e.outcome == op_outcome::unknown) ++c.unknown_landed;
      v = w.read_from;
    }
  }
}

/// Phase 4: the successful writes no chain passed through (lost), in order of completion.
inline std::vector<std::uint32_t> collect_lost(const history_index& ix) {
  std::vector<std::uint32_t> lost;
  for (std::uint32_t n = 0; n < ix.writes.size(); ++n) {
    if (ix.writes[n].outcome == op_outcome::ok && !ix.writes[n].on_chain) lost.push_back(n);
  }
  std::sort(lost.begin(), lost.end(), [&](std::uint32_t a, std::uint32_t b) {
    return ix.record_of(a).complete < ix.record_of(b).complete;
  });
  return lost;
}

/// Who replaced the tip of a lost branch: the chain write that read the same version, or else the
/// next write applied to the key after the tip completed. Built only when something was lost.
class replacement_index {
 public:
  static constexpr std::uint32_t none = ~0u;

  explicit replacement_index(const history_index& ix)
      : h_(ix.h), chain_reader_(count_on_chain(ix)), applied_by_key_(ix.h.final_versions.size()) {
    for (const checked_write& e : ix.writes) {
      const race_write& w = h_.writes[e.record];
      if (e.on_chain) chain_reader_.try_emplace({w.key, w.read_from}, e.record);
      if (e.outcome != op_outcome::failed && w.key < applied_by_key_.size())
        applied_by_key_[w.key].push_back(e.record);
    }
    for (auto& v : applied_by_key_) {
      std::sort(v.begin(), v.end(), [&](std::uint32_t a, std::uint32_t b) {
        return completes_before(h_.writes[a], h_.writes[b]);
      });
    }
  }

  /// The record that replaced `tip`, or none.
  [[nodiscard]] std::uint32_t replacer_of_tip(const race_write& tip) {
    if (const std::uint32_t* r = chain_reader_.find({tip.key, tip.read_from})) return *r;
    if (tip.key >= applied_by_key_.size()) return none;
    const auto& v = applied_by_key_[tip.key];
    auto it = std::upper_bound(v.begin(), v.end(), tip.complete,
                               [&](std::uint64_t t, std::uint32_t r) { return t < h_.writes[r].complete; });
    return it == v.end() ? none : *it;
  }

 private:
  static std::size_t count_on_chain(const history_index& ix) {
    std::size_t n = 0;
    for (const checked_write& e : ix.writes) n += e.on_chain;
    return n;
  }

  const race_history& h_;
  flat_table<std::pair<std::uint32_t, write_id>, std::uint32_t, key_version_hash> chain_reader_;
  std::vector<std::vector<std::uint32_t>> applied_by_key_;  // records applied (or maybe), by completion
};

/// Phase 5: a lost write that a later successful write read lives on in that write, so its loss
/// is the loss of the branch tip below it; the tip was replaced as replacement_index says. Walks
/// each lost write down to its tip once (what a walk resolves is remembered for the others) and
/// appends the lost writes with their replacers to c.lost.
inline void name_replacers(const history_index& ix, const std::vector<std::uint32_t>& lost, race_check& c) {
  constexpr std::uint32_t none = replacement_index::none;
  replacement_index replacements(ix);
  std::vector<std::uint32_t> replacer(ix.writes.size(), none);  // lost entry -> replacing record
  std::vector<char> resolved(ix.writes.size(), 0);
  std::vector<std::uint32_t> path;
  c.lost.reserve(lost.size());
  for (std::uint32_t n : lost) {
    path.clear();
    std::uint32_t at = n;
    std::uint32_t found = none;
    for (std::size_t guard = 0; guard <= lost.size(); ++guard) {
      if (resolved[at]) {
        found = replacer[at];
        break;
      }
      path.push_back(at);
      const version_readers& child = ix.readers[at];
      if (child.count == 0 || child.first == at) {
        found = replacements.replacer_of_tip(ix.record_of(at));
        break;
      }
      at = child.first;
    }
    for (std::uint32_t p : path) {
      resolved[p] = 1;
      replacer[p] = found;
    }
    lost_write l{ix.record_of(n), {}};
    if (found != none) l.overwritten_by = ix.h.writes[found];
    c.lost.push_back(l);
  }
}

// --- classify_faults: vanished, doubled, indeterminate ------------------------------------------

/// A (writer, op) pair as one number.
[[nodiscard]] inline std::uint64_t op_number(const race_write& w) noexcept {
  return (static_cast<std::uint64_t>(w.writer) << 32) | w.op;
}

/// For separate_vanished: per entry, what a walk from its value down its key's version chain can
/// find — the latest invoke of a read of a version on the way, and whether the key's final version
/// is on it — summed up once per entry, so settling a stale loss costs O(1) instead of a walk as
/// long as the chain (a lossy run has about as many lost writes as chain links: quadratic).
class chain_summaries {
 public:
  using read_index = flat_table<std::pair<std::uint32_t, write_id>, std::uint32_t, key_version_hash>;

  chain_summaries(const history_index& ix, const read_index& last_read)
      : ix_(ix), last_read_(last_read), below_(ix.writes.size()), state_(ix.writes.size(), unseen) {}

  /// True when walking down from w.read_from cannot find a witness that w vanished (no read of a
  /// version there began after w completed, and the key never ends there). False also when the
  /// summary is inexact (the chain loops or crosses keys): then the caller walks.
  [[nodiscard]] bool rules_out(const race_write& w) {
    if (is_root(w.key, w.read_from)) return false;  // one step: the walk is as cheap
    const std::uint32_t* p = ix_.by_value.find(w.read_from);
    if (p == nullptr || ix_.record_of(*p).key != w.key) return false;
    summarise(*p);
    const summary& s = below_[*p];
    return s.exact && !s.holds_final && s.latest_read <= w.complete;
  }

 private:
  struct summary {
    std::uint64_t latest_read = 0;  ///< latest invoke among reads of the versions (0: none)
    bool holds_final = false;       ///< the key's final version is among them
    bool exact = true;              ///< false: the chain loops or crosses keys
  };
  enum : char { unseen, on_path, done };

  [[nodiscard]] bool is_root(std::uint32_t key, write_id v) const {
    const auto& initial = ix_.h.initial_versions;
    return v == initial_version || (v & foreign_version_bit) != 0 ||
           (key < initial.size() && v == initial[key]);
  }
  void visit(std::uint32_t key, write_id v, summary& s) const {
    const auto& h = ix_.h;
    if (key < h.final_versions.size() && h.final_versions[key] == v) s.holds_final = true;
    if (const std::uint32_t* r = last_read_.find({key, v}))
      s.latest_read = std::max(s.latest_read, h.reads[*r].invoke);
  }
  /// Follows read_from links down to a summarised entry or the chain's root, then fills the path
  /// back up (iterative: chains are as long as the run).
  void summarise(std::uint32_t n) {
    path_.clear();
    summary tail;
    for (;;) {
      if (state_[n] == done) {
        tail = below_[n];
        break;
      }
      if (state_[n] == on_path) {
        tail.exact = false;
        break;
      }
      state_[n] = on_path;
      path_.push_back(n);
      const race_write& w = ix_.record_of(n);
      const std::uint32_t* p = is_root(w.key, w.read_from) ? nullptr : ix_.by_value.find(w.read_from);
      if (p == nullptr) {
        visit(w.key, w.read_from, tail);
        break;
      }
      if (ix_.record_of(*p).key != w.key) {
        tail.exact = false;
        break;
      }
      n = *p;
    }
    for (auto it = path_.rbegin(); it != path_.rend(); ++it) {
      const race_write& w = ix_.record_of(*it);
      visit(w.key, w.written, tail);
      below_[*it] = tail;
      state_[*it] = done;
    }
  }

  const history_index& ix_;
  const read_index& last_read_;
  std::vector<summary> below_;  // per entry, valid when state_ is done
  std::vector<char> state_;
  std::vector<std::uint32_t> path_;
};

/// Of the lost writes, those the store forgot: a read that began after the write was acknowledged
/// (its invoke tick is later than the write's complete tick), or the key's final value, shows a
/// version the write had replaced (its read_from or anything below it). A linearizable store
/// never answers that, whatever the strategy does; a stale-read loss never needs it (the writes
/// that replaced the lost one are newer than it). Moves those to c.vanished; returns the rest.
inline std::vector<std::uint32_t> separate_vanished(const history_index& ix, std::vector<std::uint32_t> lost,
                                                    race_check& c) {
  const race_history& h = ix.h;
  // Per (key, version): the read of it that began last.
  flat_table<std::pair<std::uint32_t, write_id>, std::uint32_t, key_version_hash> last_read(h.reads.size());
  for (std::uint32_t i = 0; i < h.reads.size(); ++i) {
    const race_read& r = h.reads[i];
    auto [slot, inserted] = last_read.try_emplace({r.key, r.version}, i);
    if (!inserted && h.reads[*slot].invoke < r.invoke) *slot = i;
  }
  chain_summaries below(ix, last_read);
  std::vector<std::uint32_t> stale;
  for (std::uint32_t n : lost) {
    const race_write& w = ix.record_of(n);
    if (below.rules_out(w)) {  // most lost writes in a lossy run: no walk needed
      stale.push_back(n);
      continue;
    }
    const write_id start = w.key < h.initial_versions.size() ? h.initial_versions[w.key] : initial_version;
    std::string trace;
    write_id v = w.read_from;
    for (std::size_t steps = 0; trace.empty() && steps <= ix.writes.size(); ++steps) {
      const std::string what = v == initial_version || v == start
                                   ? std::string("the key's state before the run")
                                   : "version " + std::to_string(v);
      if (w.key < h.final_versions.size() && h.final_versions[w.key] == v) {
        trace = "the key ends at " + what + ", which it replaced";
      } else if (const std::uint32_t* r = last_read.find({w.key, v}); r && h.reads[*r].invoke > w.complete) {
        const race_read& rd = h.reads[*r];
        trace = "W" + std::to_string(rd.writer) + " op " + std::to_string(rd.op) + " read " + what +
                " at tick " + std::to_string(rd.invoke) + ", after the write was acknowledged at tick " +
                std::to_string(w.complete);
      }
      if (v == initial_version || v == start || (v & foreign_version_bit) != 0) break;
      const std::uint32_t* below = ix.by_value.find(v);
      if (below == nullptr) break;
      v = ix.record_of(*below).read_from;
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

/// Operations with two or more values on the final chains (walked newest first).
inline void find_doubled(const history_index& ix, race_check& c) {
  const race_history& h = ix.h;
  flat_table<std::uint64_t, std::uint32_t, id_hash> landed(ix.writes.size());  // op -> values on chain
  bool any = false;
  for (const checked_write& e : ix.writes) {
    if (!e.on_chain) continue;
    auto [count, inserted] = landed.try_emplace(op_number(h.writes[e.record]), 1);
    if (!inserted) any = true, ++*count;
  }
  if (!any) return;
  std::unordered_map<std::uint64_t, std::size_t> at;  // op -> index in c.doubled
  std::vector<char> walked(ix.writes.size(), 0);      // each value once (a looping chain revisits)
  for (std::uint32_t k = 0; k < h.final_versions.size(); ++k) {
    write_id v = h.final_versions[k];
    for (std::size_t steps = 0; steps <= ix.writes.size(); ++steps) {
      const std::uint32_t* n = ix.by_value.find(v);
      if (n == nullptr || !ix.writes[*n].on_chain || walked[*n]) break;
      const race_write& w = ix.record_of(*n);
      if (w.key != k) break;
      walked[*n] = 1;
      if (*landed.find(op_number(w)) > 1) {
        auto [it, first] = at.try_emplace(op_number(w), c.doubled.size());
        if (first) c.doubled.push_back({});
        c.doubled[it->second].copies.push_back(w);
      }
      v = w.read_from;
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
  std::sort(unknown.begin(), unknown.end(), [&](std::uint32_t a, std::uint32_t b) {
    return ix.record_of(a).complete < ix.record_of(b).complete;
  });
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

}  // namespace detail

/// Checks a history (see the overview for the rules and the phases).
[[nodiscard]] inline race_check check_race_history(const race_history& h) {
  race_check c;
  c.write_attempts = h.writes.size();
  detail::history_index ix(h);
  detail::index_writes(ix, c);
  detail::group_readers(ix, c);
  detail::walk_final_chains(ix, c);
  const std::vector<std::uint32_t> lost = detail::classify_faults(ix, detail::collect_lost(ix), c);
  if (!lost.empty()) detail::name_replacers(ix, lost, c);
  return c;
}

}  // namespace noclobber
