// noclobber/race_harness/check_index.hpp -- the verdict types, the checker's index of a history and phases
// 1-5. Part of the checker: race_harness/checker.hpp has the overview and check_race_history.
//
// Thread safety: plain values and pure functions. Nothing here locks or calls user code.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
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

/// A fixed-capacity open-addressing table (linear probing, no erase) from K to a 32-bit value:
/// the checker knows its maximum size up front, and flat slots keep it linear in practice, not
/// only on paper. Keys and values sit in two arrays (no padding: 12 bytes a slot for a write_id)
/// at a load of at most 2/3 — at a million records the tables, not the records, are what a check
/// touches most, and every page first touched is a page fault.
template <class K, class Hash>
class flat_table {
 public:
  using value_type = std::uint32_t;
  static constexpr value_type empty = ~value_type{0};  ///< never stored: indices and counts are smaller

  explicit flat_table(std::size_t max_entries) {
    std::size_t capacity = 16;
    while (capacity * 2 < max_entries * 3) capacity <<= 1;
    keys_.reset(new K[capacity]);  // (not zeroed: a key is read only where a value is stored)
    values_.assign(capacity, empty);
    mask_ = capacity - 1;
  }
  /// The value for `key`, inserting `value` when absent; second: whether it was inserted.
  std::pair<value_type*, bool> try_emplace(const K& key, value_type value) {
    for (std::size_t i = slot_of(key);; i = (i + 1) & mask_) {
      if (values_[i] == empty) {
        keys_[i] = key;
        values_[i] = value;
        return {&values_[i], true};
      }
      if (keys_[i] == key) return {&values_[i], false};
    }
  }
  value_type* find(const K& key) {
    for (std::size_t i = slot_of(key);; i = (i + 1) & mask_) {
      if (values_[i] == empty) return nullptr;
      if (keys_[i] == key) return &values_[i];
    }
  }
  const value_type* find(const K& key) const { return const_cast<flat_table*>(this)->find(key); }
  /// Empties the table (its capacity stays).
  void clear() { values_.assign(values_.size(), empty); }
  /// Starts loading the slot where `key` would be: a pass that looks up many keys prefetches a
  /// few ahead, so the cache misses of a table larger than the cache overlap.
  void prefetch(const K& key) const noexcept {
#if defined(__GNUC__)
    const std::size_t i = slot_of(key);
    __builtin_prefetch(&values_[i]);
    __builtin_prefetch(&keys_[i]);
#else
    (void)key;
#endif
  }

 private:
  [[nodiscard]] std::size_t slot_of(const K& key) const noexcept {
    return Hash{}(key)&mask_;
  }

  std::unique_ptr<K[]> keys_;
  std::vector<value_type> values_;
  std::size_t mask_ = 0;
};

/// Whether a value occurs twice in `values`. Partitions them by hash into groups of a few
/// thousand and checks each with a small table that stays in the cache: a table of a million
/// values is larger than the cache, and each of its inserts would be a cache miss.
inline bool any_repeated(const std::vector<std::uint64_t>& values) {
  constexpr std::size_t group_size = 4096;  // about: its table (8 K slots, 96 KiB) fits L2
  if (values.size() <= 8 * group_size) {    // a table of them all fits L2: one group
    flat_table<std::uint64_t, id_hash> seen(values.size());
    for (std::uint64_t v : values) {
      if (!seen.try_emplace(v, 0).second) return true;
    }
    return false;
  }
  unsigned bits = 0;
  while ((values.size() >> bits) > group_size && bits < 12) ++bits;
  // Bits 20-31 of the hash pick the group (size_t may be 32 bits); a group's table, far below
  // 2^20 slots, indexes by the low bits.
  auto group_of = [bits](std::uint64_t v) {
    return (static_cast<std::uint64_t>(id_hash{}(v)) >> 20) & ((std::uint64_t{1} << bits) - 1);
  };
  std::vector<std::uint32_t> start((std::size_t{1} << bits) + 1, 0);
  for (std::uint64_t v : values) ++start[group_of(v) + 1];
  std::uint32_t largest = 0;
  for (std::size_t g = 1; g < start.size(); ++g) {
    largest = std::max(largest, start[g]);
    start[g] += start[g - 1];
  }
  std::vector<std::uint64_t> grouped(values.size());
  std::vector<std::uint32_t> next(start.begin(), start.end() - 1);
  for (std::uint64_t v : values) grouped[next[group_of(v)]++] = v;
  flat_table<std::uint64_t, id_hash> seen(largest);
  for (std::size_t g = 0; g + 1 < start.size(); ++g) {
    if (g != 0) seen.clear();
    for (std::uint32_t i = start[g]; i < start[g + 1]; ++i) {
      if (!seen.try_emplace(grouped[i], 0).second) return true;
    }
  }
  return false;
}

struct key_version_hash {
  std::size_t operator()(const std::pair<std::uint32_t, write_id>& p) const noexcept {
    return id_hash{}(p.second ^ (static_cast<write_id>(p.first) * 0x9e3779b97f4a7c15ULL));
  }
};

}  // namespace detail

namespace detail {

inline constexpr std::uint32_t no_entry = ~0u;

/// One distinct written value of a history (16 bytes: the phases that follow chains touch these,
/// not the 56-byte records, so a step down a chain is one cache line).
struct checked_write {
  std::uint32_t record;  ///< index in race_history::writes of the attempt that decided the outcome
  std::uint32_t key;     ///< that attempt's key
  /// The entry whose value that attempt read (of any key), or no_entry (not recorded); set by
  /// link_parents.
  std::uint32_t parent = no_entry;
  op_outcome outcome;
  bool on_chain = false;    ///< a key's final chain passes through it
  bool reads_root = false;  ///< it read a version from before the run (the chain ends below it)
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
  std::vector<checked_write> writes;       ///< one per distinct written value
  flat_table<write_id, id_hash> by_value;  ///< written value -> index in `writes`
  std::vector<version_readers> readers;    ///< per entry of `writes`: who read its value

  [[nodiscard]] const race_write& record_of(std::uint32_t n) const { return h.writes[writes[n].record]; }
};

/// How many records ahead a pass over the records prefetches its table slot.
inline constexpr std::uint32_t prefetch_distance = 16;

inline int outcome_rank(op_outcome o) noexcept {
  return o == op_outcome::ok ? 2 : o == op_outcome::unknown ? 1 : 0;
}

/// Phase 1: one entry per distinct written value. A value sent twice (a transient retry of the
/// same request) is merged: ok if any attempt applied, unknown if any was unknown, else failed.
inline void index_writes(history_index& ix, race_check& c) {
  const race_history& h = ix.h;
  ix.writes.reserve(h.writes.size());
  const auto n = static_cast<std::uint32_t>(h.writes.size());
  for (std::uint32_t i = 0; i < n; ++i) {
    if (i + prefetch_distance < n) ix.by_value.prefetch(h.writes[i + prefetch_distance].written);
    const race_write& w = h.writes[i];
    if (w.outcome == op_outcome::failed) ++c.failed;
    auto [slot, inserted] = ix.by_value.try_emplace(w.written, static_cast<std::uint32_t>(ix.writes.size()));
    if (inserted) {
      ix.writes.push_back({i, w.key, no_entry, w.outcome});
      continue;
    }
    checked_write& e = ix.writes[*slot];
    if (h.writes[e.record].key != w.key) {
      c.anomalies.push_back("value " + std::to_string(w.written) + " was written to two keys (" +
                            describe_write(h.writes[e.record]) + ", " + describe_write(w) + ")");
    }
    if (outcome_rank(w.outcome) > outcome_rank(e.outcome)) e = checked_write{i, w.key, no_entry, w.outcome};
  }
}

/// Whether `v`, read by a write to `key`, is a version from before the run: the bottom of a chain.
inline bool is_root_version(const race_history& h, std::uint32_t key, write_id v) noexcept {
  return v == initial_version || (v & foreign_version_bit) != 0 ||
         (key < h.initial_versions.size() && v == h.initial_versions[key]);
}

/// Phase 1b: each entry's parent (the entry whose value it read) and whether it read a version
/// from before the run. Independent look-ups in one pass (the processor overlaps their cache
/// misses), so that the chain walks after it follow `parent` instead of hashing.
inline void link_parents(history_index& ix) {
  const std::size_t n = ix.writes.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (i + prefetch_distance < n)
      ix.by_value.prefetch(ix.h.writes[ix.writes[i + prefetch_distance].record].read_from);
    checked_write& e = ix.writes[i];
    const race_write& w = ix.h.writes[e.record];
    const std::uint32_t* p = ix.by_value.find(w.read_from);
    e.parent = p == nullptr ? no_entry : *p;
    e.reads_root = is_root_version(ix.h, w.key, w.read_from);
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
    const std::uint32_t parent = e.parent;
    const bool parent_of_key = parent != no_entry && ix.writes[parent].key == w.key;
    version_readers& g = parent_of_key ? ix.readers[parent] : other_versions[{w.key, w.read_from}];
    if (g.count++ == 0) {
      g.first = n;
    } else {
      ++c.lost_update_pairs;
      if (completes_before(w, ix.record_of(g.first))) g.first = n;  // not the history's order
    }
    if (!e.reads_root && !parent_of_key) {
      c.anomalies.push_back(
          describe_write(w) + " read version " + std::to_string(w.read_from) +
          (parent != no_entry ? ", which was written to another key" : ", which no recorded write produced"));
    }
  }
}

/// Phase 3: walks each key's chain back from its final version to the version the run started
/// from, marking every entry on it (unknown ones count as landed). Breaks, loops, another key's
/// value and a value the store called not applied are anomalies.
///
/// A walk is a chain of dependent loads, one cache miss a step on a large history, so the keys'
/// walks advance side by side, one step each per round (the misses of different keys overlap).
/// That changes nothing: a key's walk marks only entries of its own key (it stops at another
/// key's value), so the walks never see each other's marks; anomalies are reported in key order.
inline void walk_final_chains(history_index& ix, race_check& c) {
  const race_history& h = ix.h;
  struct walker {
    std::uint32_t key;
    std::uint32_t at;  ///< entry to visit next
    std::size_t steps;
  };
  std::vector<std::pair<std::uint32_t, std::string>> found;  // (key, anomaly)
  auto key_name = [&](std::uint32_t k) { return k < h.keys.size() ? h.keys[k] : std::to_string(k); };
  std::vector<walker> active;
  for (std::uint32_t k = 0; k < h.final_versions.size(); ++k) {
    const write_id v = h.final_versions[k];
    if (is_root_version(h, k, v)) continue;
    const std::uint32_t* at = ix.by_value.find(v);
    if (at == nullptr) {
      found.emplace_back(k, "key " + key_name(k) + " holds version " + std::to_string(v) +
                                ", which no recorded write produced");
    } else {
      active.push_back({k, *at, 0});
    }
  }
  while (!active.empty()) {
    std::size_t kept = 0;
    for (walker wk : active) {
      checked_write& e = ix.writes[wk.at];
      const std::uint32_t k = wk.key;
      if (e.key != k) {  // (before the loop test: another key's chain may have passed here)
        found.emplace_back(k, "key " + key_name(k) + " holds a value written to another key by " +
                                  describe_write(h.writes[e.record]));
        continue;
      }
      if (e.on_chain || ++wk.steps > ix.writes.size()) {
        found.emplace_back(
            k, "key " + key_name(k) + ": the version chain loops at " + describe_write(h.writes[e.record]));
        continue;
      }
      if (e.outcome == op_outcome::failed) {
        found.emplace_back(k, "key " + key_name(k) + " holds the value of " +
                                  describe_write(h.writes[e.record]) +
                                  ", which the store reported as not applied");
      }
      e.on_chain = true;
      if (e.outcome == op_outcome::unknown) ++c.unknown_landed;
      // The chain ends at a version from before the run; a broken link further down was already
      // reported with the write that read it.
      if (e.reads_root || e.parent == no_entry) continue;
      wk.at = e.parent;
#if defined(__GNUC__)
      __builtin_prefetch(&ix.writes[wk.at]);
#endif
      active[kept++] = wk;
    }
    active.resize(kept);
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [k, text] : found) c.anomalies.push_back(std::move(text));
}

/// Sorts entries by their records' complete ticks into the order std::sort by that tick gives.
/// Without ties that order is unique, so a list already in it (the usual history) costs one scan,
/// and any other is sorted as (tick, entry) pairs, without indirect comparisons; with ties it is
/// std::sort itself, so the order among equals stays what it always was.
inline void sort_by_completion(const history_index& ix, std::vector<std::uint32_t>& v) {
  auto complete = [&](std::uint32_t n) { return ix.record_of(n).complete; };
  std::size_t i = 1;
  while (i < v.size() && complete(v[i - 1]) < complete(v[i])) ++i;
  if (i >= v.size()) return;
  std::vector<std::pair<std::uint64_t, std::uint32_t>> keyed(v.size());
  for (std::size_t j = 0; j < v.size(); ++j) keyed[j] = {complete(v[j]), v[j]};
  std::sort(keyed.begin(), keyed.end());
  const bool ties = std::adjacent_find(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
                      return a.first == b.first;
                    }) != keyed.end();
  if (!ties) {
    for (std::size_t j = 0; j < v.size(); ++j) v[j] = keyed[j].second;
    return;
  }
  std::sort(v.begin(), v.end(), [&](std::uint32_t a, std::uint32_t b) { return complete(a) < complete(b); });
}

/// Phase 4: the successful writes no chain passed through (lost), in order of completion.
inline std::vector<std::uint32_t> collect_lost(const history_index& ix) {
  std::vector<std::uint32_t> lost;
  for (std::uint32_t n = 0; n < ix.writes.size(); ++n) {
    if (ix.writes[n].outcome == op_outcome::ok && !ix.writes[n].on_chain) lost.push_back(n);
  }
  sort_by_completion(ix, lost);
  return lost;
}

/// Who replaced the tip of a lost branch: the chain write that read the same version, or else the
/// next write applied to the key after the tip completed. Built only when something was lost.
class replacement_index {
 public:
  static constexpr std::uint32_t none = ~0u;

  explicit replacement_index(const history_index& ix) : ix_(ix), chain_reader_(count_on_chain(ix)) {
    const std::size_t n = ix.writes.size();
    for (std::size_t i = 0; i < n; ++i) {
      if (i + prefetch_distance < n && ix.writes[i + prefetch_distance].on_chain)
        prefetch(ix.record_of(i + prefetch_distance));
      const checked_write& e = ix.writes[i];
      const race_write& w = ix.h.writes[e.record];
      if (e.on_chain) chain_reader_.try_emplace({w.key, w.read_from}, e.record);
    }
  }

  /// Starts loading what replacer_of_tip(tip) looks up first.
  void prefetch(const race_write& tip) const noexcept { chain_reader_.prefetch({tip.key, tip.read_from}); }
  /// The record that replaced `tip`, or none.
  [[nodiscard]] std::uint32_t replacer_of_tip(const race_write& tip) {
    if (const std::uint32_t* r = chain_reader_.find({tip.key, tip.read_from})) return *r;
    if (tip.key >= ix_.h.final_versions.size()) return none;
    if (applied_by_key_.empty()) index_applied();
    const auto& v = applied_by_key_[tip.key];
    const auto& writes = ix_.h.writes;
    auto it = std::upper_bound(v.begin(), v.end(), tip.complete,
                               [&](std::uint64_t t, std::uint32_t r) { return t < writes[r].complete; });
    return it == v.end() ? none : *it;
  }

 private:
  static std::size_t count_on_chain(const history_index& ix) {
    std::size_t n = 0;
    for (const checked_write& e : ix.writes) n += e.on_chain;
    return n;
  }
  /// applied_by_key_, built on the first tip no chain write read beside (often none is).
  void index_applied() {
    const auto& writes = ix_.h.writes;
    applied_by_key_.resize(ix_.h.final_versions.size());
    std::vector<std::uint32_t> per_key(applied_by_key_.size(), 0);
    for (const checked_write& e : ix_.writes) {
      if (e.outcome != op_outcome::failed && e.key < per_key.size()) ++per_key[e.key];
    }
    for (std::size_t k = 0; k < per_key.size(); ++k) applied_by_key_[k].reserve(per_key[k]);
    for (const checked_write& e : ix_.writes) {
      if (e.outcome != op_outcome::failed && e.key < applied_by_key_.size())
        applied_by_key_[e.key].push_back(e.record);
    }
    auto before = [&](std::uint32_t a, std::uint32_t b) { return completes_before(writes[a], writes[b]); };
    for (auto& v : applied_by_key_) {
      // Strictly increasing already (the usual history): std::sort's order, which is unique then.
      std::size_t i = 1;
      while (i < v.size() && before(v[i - 1], v[i])) ++i;
      if (i < v.size()) std::sort(v.begin(), v.end(), before);
    }
  }

  const history_index& ix_;
  flat_table<std::pair<std::uint32_t, write_id>, key_version_hash> chain_reader_;
  std::vector<std::vector<std::uint32_t>> applied_by_key_;  // records applied (or maybe), by completion
};

/// Phase 5: a lost write that a later successful write read lives on in that write, so its loss
/// is the loss of the branch tip below it; the tip was replaced as replacement_index says. Walks
/// each lost write down to its tip once (what a walk resolves is remembered for the others) and
/// appends the lost writes with their replacers to c.lost.
inline void name_replacers(const history_index& ix, const std::vector<std::uint32_t>& lost, race_check& c) {
  constexpr std::uint32_t none = replacement_index::none;
  replacement_index replacements(ix);
  // Per entry passed on the way to a tip: the tip's replacer (unresolved: not yet). A tip is not
  // remembered (looking it up again is as cheap), so a history whose lost writes are all tips
  // (the usual one) never allocates this.
  constexpr std::uint32_t unresolved = none - 1;
  std::vector<std::uint32_t> replacer;
  std::vector<std::uint32_t> path;
  c.lost.reserve(lost.size());
  for (std::size_t i = 0; i < lost.size(); ++i) {
    // Most lost writes are their branch's tip: start loading its replacer a few writes ahead.
    if (i + prefetch_distance < lost.size()) replacements.prefetch(ix.record_of(lost[i + prefetch_distance]));
    const std::uint32_t n = lost[i];
    path.clear();
    std::uint32_t at = n;
    std::uint32_t found = none;
    for (std::size_t guard = 0; guard <= ix.writes.size(); ++guard) {  // (the path may pass vanished writes)
      if (!replacer.empty() && replacer[at] != unresolved) {
        found = replacer[at];
        break;
      }
      const version_readers& child = ix.readers[at];
      if (child.count == 0 || child.first == at) {
        found = replacements.replacer_of_tip(ix.record_of(at));
        break;
      }
      path.push_back(at);
      at = child.first;
    }
    if (!path.empty() && replacer.empty()) replacer.assign(ix.writes.size(), unresolved);
    for (std::uint32_t p : path) replacer[p] = found;
    lost_write l{ix.record_of(n), {}};
    if (found != none) l.overwritten_by = ix.h.writes[found];
    c.lost.push_back(l);
  }
}

}  // namespace detail

}  // namespace noclobber
