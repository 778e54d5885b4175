// noclobber/race_harness/history.hpp — what a race harness run recorded, and the checker.
//
// Overview
// --------
// The race harness (noclobber/race_harness.hpp) records every read and every write attempt its
// writers make. This header holds those records (`race_history`) and the checker that turns them
// into verdicts (`check_race_history`). It is separate so that histories gathered elsewhere (other
// processes, a log) can be checked too, and so the checker can be benchmarked on its own.
//
// Versions are named by the write that produced them. Every value the harness writes is unique and
// carries its `write_id`, so "the version a write read" is simply the id of the write whose value
// it read, and version 0 means "whatever the key held before the run" (absent, or a value the
// harness did not write). The rules follow Jepsen's Elle:
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
// The checker runs in time linear in the number of records (one hash-map pass); see
// bench/bench_race_harness.cpp.
//
// Thread safety: plain values and a pure function. Nothing here locks or calls user code.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace noclobber {

/// Identifies one value written by the harness. Layout: bit 63 clear; writer (20 bits); a run
/// nonce (20 bits, so that runs on the same store don't reuse ids); a per-writer sequence number
/// (23 bits). 0 is "the key's state before the run". Ids with bit 63 set name values the
/// harness did not write but saw (told apart by their version token).
using write_id = std::uint64_t;

inline constexpr write_id initial_version = 0;
inline constexpr write_id foreign_version_bit = write_id{1} << 63;
inline constexpr std::uint32_t max_race_writer = (1u << 20) - 1;
inline constexpr std::uint64_t max_race_sequence = (std::uint64_t{1} << 23) - 1;

[[nodiscard]] constexpr write_id make_write_id(std::uint32_t writer, std::uint32_t run_nonce,
                                               std::uint64_t sequence) noexcept {
  return (static_cast<write_id>(writer & max_race_writer) << 43) |
         (static_cast<write_id>(run_nonce & 0xFFFFFu) << 23) | (sequence & max_race_sequence);
}
[[nodiscard]] constexpr std::uint32_t writer_of(write_id id) noexcept {
  return static_cast<std::uint32_t>((id & ~foreign_version_bit) >> 43) & max_race_writer;
}

/// How one write attempt ended, as the checker sees it.
enum class op_outcome : unsigned char {
  ok,       ///< the store said applied
  failed,   ///< the store said it did not apply (conflict, absent, exists, transient, permanent)
  unknown,  ///< indeterminate: it may or may not have landed
};

[[nodiscard]] constexpr std::string_view to_string(op_outcome o) noexcept {
  switch (o) {
    case op_outcome::ok:
      return "ok";
    case op_outcome::failed:
      return "failed";
    case op_outcome::unknown:
      return "unknown";
  }
  return "?";
}

/// Which store call a write attempt was.
enum class write_kind : unsigned char { write_if_match, create_if_absent, overwrite };

[[nodiscard]] constexpr std::string_view to_string(write_kind k) noexcept {
  switch (k) {
    case write_kind::write_if_match:
      return "write_if_match";
    case write_kind::create_if_absent:
      return "create_if_absent";
    case write_kind::overwrite:
      return "overwrite";
  }
  return "?";
}

/// One write attempt. Writers are numbered from 1; `op` from 0; `attempt` counts the calls of
/// the harness's value function within the op (1 = first computation).
struct race_write {
  std::uint32_t writer = 0;
  std::uint32_t op = 0;
  std::uint32_t attempt = 0;
  std::uint32_t key = 0;  ///< index into race_history::keys
  write_id read_from = initial_version;
  write_id written = initial_version;
  op_outcome outcome = op_outcome::failed;
  write_kind kind = write_kind::write_if_match;
  std::uint64_t invoke = 0;    ///< logical tick when the call started
  std::uint64_t complete = 0;  ///< logical tick when it returned
};

/// One read.
struct race_read {
  std::uint32_t writer = 0;
  std::uint32_t op = 0;
  std::uint32_t key = 0;
  write_id version = initial_version;  ///< the write whose value was read (0: initial or absent)
  bool found = false;
  std::uint64_t invoke = 0;
  std::uint64_t complete = 0;
};

/// Everything one run recorded, plus what each key held before and after it.
struct race_history {
  std::vector<std::string> keys;           ///< printable key names, by index
  std::vector<race_write> writes;          ///< in any order
  std::vector<race_read> reads;            ///< in any order (only needed for traces)
  std::vector<write_id> initial_versions;  ///< per key: the version the run started from
  std::vector<write_id> final_versions;    ///< per key: the version the store holds at the end
};

/// A successful write that is not in the final state, and the write that replaced it.
struct lost_write {
  race_write lost;
  race_write overwritten_by;  ///< writer 0 when no replacing write was recorded
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

  [[nodiscard]] bool ok() const noexcept {
    return lost.empty() && lost_update_pairs == 0 && anomalies.empty();
  }
};

namespace detail {

inline std::string describe_write(const race_write& w) {
  return "W" + std::to_string(w.writer) + " op " + std::to_string(w.op) + " attempt " +
         std::to_string(w.attempt);
}

struct id_hash {
  std::size_t operator()(write_id id) const noexcept {
    // splitmix64 finaliser: ids are structured (writer in the high bits), so mix them.
    id ^= id >> 30;
    id *= 0xbf58476d1ce4e5b9ULL;
    id ^= id >> 27;
    id *= 0x94d049bb133111ebULL;
    id ^= id >> 31;
    return static_cast<std::size_t>(id);
  }
};

}  // namespace detail

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

/// Checks a history in time linear in its records: one pass to merge attempts per written value,
/// one to group successful writes by the version they read, one walk per key back from its final
/// version. Losses add a sort (to name the replacing writes), only when there are losses.
[[nodiscard]] inline race_check check_race_history(const race_history& h) {
  race_check c;
  c.write_attempts = h.writes.size();

  // One entry per distinct written value; a value sent twice (a transient retry of the same
  // request) is merged: ok if any attempt applied, unknown if any was unknown, else failed.
  struct entry {
    std::uint32_t record;  // index of the attempt that decided the outcome
    op_outcome outcome;
    bool on_chain;
  };
  std::vector<entry> entries;
  entries.reserve(h.writes.size());
  detail::flat_table<write_id, std::uint32_t, detail::id_hash> index(h.writes.size());
  const auto rank = [](op_outcome o) { return o == op_outcome::ok ? 2 : o == op_outcome::unknown ? 1 : 0; };
  for (std::uint32_t i = 0; i < h.writes.size(); ++i) {
    const race_write& w = h.writes[i];
    if (w.outcome == op_outcome::failed) ++c.failed;
    auto [slot, inserted] = index.try_emplace(w.written, static_cast<std::uint32_t>(entries.size()));
    if (inserted) {
      entries.push_back({i, w.outcome, false});
      continue;
    }
    entry& e = entries[*slot];
    if (h.writes[e.record].key != w.key) {
      c.anomalies.push_back("value " + std::to_string(w.written) + " was written to two keys (" +
                            detail::describe_write(h.writes[e.record]) + ", " + detail::describe_write(w) +
                            ")");
    }
    if (rank(w.outcome) > rank(e.outcome)) e = entry{i, w.outcome, false};
  }

  // Elle's lost update: successful writes grouped by (key, version read). A version written in
  // the run is an entry, so its group lives in a vector; versions from before the run (or from
  // outside it) are few and go to a small map.
  struct group {
    std::uint32_t count = 0;
    std::uint32_t first = 0;  // an entry index
  };
  // A version written to another key is not this key's version: its readers group apart (and
  // reading it is an anomaly, below).
  std::vector<group> children(entries.size());
  std::unordered_map<std::pair<std::uint32_t, write_id>, group, detail::key_version_hash> other_parents;
  for (std::uint32_t n = 0; n < entries.size(); ++n) {
    const entry& e = entries[n];
    const race_write& w = h.writes[e.record];
    if (e.outcome == op_outcome::unknown) ++c.unknown;
    if (e.outcome != op_outcome::ok) continue;
    ++c.applied;
    const std::uint32_t* parent = index.find(w.read_from);
    const bool parent_of_key = parent != nullptr && h.writes[entries[*parent].record].key == w.key;
    group& g = parent_of_key ? children[*parent] : other_parents[{w.key, w.read_from}];
    if (g.count++ == 0)
      g.first = n;
    else
      ++c.lost_update_pairs;
    const bool from_before_run =
        w.read_from == initial_version || (w.read_from & foreign_version_bit) != 0 ||
        (w.key < h.initial_versions.size() && w.read_from == h.initial_versions[w.key]);
    if (!from_before_run && !parent_of_key) {
      c.anomalies.push_back(
          detail::describe_write(w) + " read version " + std::to_string(w.read_from) +
          (parent != nullptr ? ", which was written to another key" : ", which no recorded write produced"));
    }
  }

  // Walk each key's chain back from its final version.
  for (std::uint32_t k = 0; k < h.final_versions.size(); ++k) {
    const write_id start = k < h.initial_versions.size() ? h.initial_versions[k] : initial_version;
    write_id v = h.final_versions[k];
    std::size_t steps = 0;
    auto key_name = [&] { return k < h.keys.size() ? h.keys[k] : std::to_string(k); };
    while (v != initial_version && v != start && (v & foreign_version_bit) == 0) {
      const std::uint32_t* at = index.find(v);
      if (at == nullptr) {
        // A broken link further down was already reported with the write that read it.
        if (steps == 0) {
          c.anomalies.push_back("key " + key_name() + " holds version " + std::to_string(v) +
                                ", which no recorded write produced");
        }
        break;
      }
      entry& e = entries[*at];
      const race_write& w = h.writes[e.record];
      if (w.key != k) {  // (before the loop test: another key's chain may have passed here)
        c.anomalies.push_back("key " + key_name() + " holds a value written to another key by " +
                              detail::describe_write(w));
        break;
      }
      if (e.on_chain || ++steps > entries.size()) {
        c.anomalies.push_back("key " + key_name() + ": the version chain loops at " +
                              detail::describe_write(w));
        break;
      }
      if (e.outcome == op_outcome::failed) {
        c.anomalies.push_back("key " + key_name() + " holds the value of " + detail::describe_write(w) +
                              ", which the store reported as not applied");
      }
      e.on_chain = true;
      if (e.outcome == op_outcome::unknown) ++c.unknown_landed;
      v = w.read_from;
    }
  }

  // Successful writes the chain missed are lost. A lost write that a later successful write
  // read lives on in that write, so its loss is the loss of the branch tip below it; the tip
  // was replaced by the chain write that read the same version, or else by the next write
  // applied to the key.
  std::vector<std::uint32_t> lost_entries;
  for (std::uint32_t n = 0; n < entries.size(); ++n) {
    if (entries[n].outcome == op_outcome::ok && !entries[n].on_chain) lost_entries.push_back(n);
  }
  if (lost_entries.empty()) return c;
  std::sort(lost_entries.begin(), lost_entries.end(), [&](std::uint32_t a, std::uint32_t b) {
    return h.writes[entries[a].record].complete < h.writes[entries[b].record].complete;
  });
  std::size_t on_chain = 0;
  for (const entry& e : entries) on_chain += e.on_chain;
  detail::flat_table<std::pair<std::uint32_t, write_id>, std::uint32_t, detail::key_version_hash>
      chain_reader(on_chain);
  std::vector<std::vector<std::uint32_t>> applied_by_key(h.final_versions.size());
  for (const entry& e : entries) {
    const race_write& w = h.writes[e.record];
    if (e.on_chain) chain_reader.try_emplace({w.key, w.read_from}, e.record);
    if (e.outcome != op_outcome::failed && w.key < applied_by_key.size())
      applied_by_key[w.key].push_back(e.record);
  }
  for (auto& v : applied_by_key) {
    std::sort(v.begin(), v.end(),
              [&](std::uint32_t a, std::uint32_t b) { return h.writes[a].complete < h.writes[b].complete; });
  }
  constexpr std::uint32_t none = ~0u;
  auto replacer_of_tip = [&](const race_write& tip) -> std::uint32_t {
    if (const std::uint32_t* r = chain_reader.find({tip.key, tip.read_from})) return *r;
    if (tip.key >= applied_by_key.size()) return none;
    const auto& v = applied_by_key[tip.key];
    auto it = std::upper_bound(v.begin(), v.end(), tip.complete,
                               [&](std::uint64_t t, std::uint32_t r) { return t < h.writes[r].complete; });
    return it == v.end() ? none : *it;
  };
  // Lost entry -> the record that replaced it, filled along each branch walked.
  std::vector<std::uint32_t> replacer(entries.size(), none);
  std::vector<char> resolved(entries.size(), 0);
  std::vector<std::uint32_t> path;
  c.lost.reserve(lost_entries.size());
  for (std::uint32_t n : lost_entries) {
    path.clear();
    std::uint32_t at = n;
    std::uint32_t found = none;
    for (std::size_t guard = 0; guard <= lost_entries.size(); ++guard) {
      if (resolved[at]) {
        found = replacer[at];
        break;
      }
      path.push_back(at);
      const race_write& w = h.writes[entries[at].record];
      const group& child = children[at];
      if (child.count == 0 || child.first == at) {
        found = replacer_of_tip(w);
        break;
      }
      at = child.first;
    }
    for (std::uint32_t p : path) {
      resolved[p] = 1;
      replacer[p] = found;
    }
    lost_write l{h.writes[entries[n].record], {}};
    if (found != none) l.overwritten_by = h.writes[found];
    c.lost.push_back(l);
  }
  return c;
}

/// One line per record ("w writer op attempt key read_from written outcome kind invoke complete",
/// "r writer op key version found invoke complete"), for runs spread over several processes:
/// each process serialises its history, one process merges them (append_history) and checks.
/// Keys and the initial/final versions are not included: the checking process knows them.
[[nodiscard]] inline std::string serialize_history(const race_history& h) {
  std::string out;
  out.reserve(h.writes.size() * 64 + h.reads.size() * 48);
  auto num = [&out](std::uint64_t n) {
    out += std::to_string(n);
    out += ' ';
  };
  for (const race_write& w : h.writes) {
    out += "w ";
    num(w.writer), num(w.op), num(w.attempt), num(w.key), num(w.read_from), num(w.written);
    num(static_cast<unsigned>(w.outcome)), num(static_cast<unsigned>(w.kind)), num(w.invoke), num(w.complete);
    out.back() = '\n';
  }
  for (const race_read& r : h.reads) {
    out += "r ";
    num(r.writer), num(r.op), num(r.key), num(r.version), num(r.found ? 1 : 0), num(r.invoke),
        num(r.complete);
    out.back() = '\n';
  }
  return out;
}

/// Appends the records of serialize_history's text to `h`. Throws std::invalid_argument naming
/// the first line it cannot read: an unknown record letter, a missing or extra field, anything
/// but spaces between the numbers, or a number out of its field's range (a writer, op, attempt or
/// key past 2^32 - 1, an outcome or kind past 2, `found` other than 0 or 1) — never coerced.
/// Lines may end in "\r\n".
inline void append_history(race_history& h, std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    std::uint64_t f[10] = {};
    const bool is_write = line[0] == 'w';
    const std::size_t want = is_write ? 10 : line[0] == 'r' ? 7 : 0;
    const char* p = line.data() + 1;
    const char* last = line.data() + line.size();
    std::size_t got = 0;
    bool ok = want != 0;
    while (ok) {
      while (p < last && *p == ' ') ++p;
      if (p == last) break;
      if (got == want) {
        ok = false;  // an extra field
        break;
      }
      auto [next, ec] = std::from_chars(p, last, f[got]);
      ok = ec == std::errc{} && (next == last || *next == ' ');
      p = next;
      ++got;
    }
    constexpr std::uint64_t u32_max = 0xFFFFFFFFu;
    if (ok && got == want) {
      ok = f[0] <= u32_max && f[1] <= u32_max && f[2] <= u32_max &&
           (is_write ? f[3] <= u32_max && f[6] <= 2 && f[7] <= 2 : f[4] <= 1);
    }
    if (!ok || got != want) {
      throw std::invalid_argument("noclobber: cannot read history line '" + std::string(line) + "'");
    }
    auto u32 = [](std::uint64_t v) { return static_cast<std::uint32_t>(v); };
    if (is_write) {
      h.writes.push_back({u32(f[0]), u32(f[1]), u32(f[2]), u32(f[3]), f[4], f[5],
                          static_cast<op_outcome>(f[6]), static_cast<write_kind>(f[7]), f[8], f[9]});
    } else {
      h.reads.push_back({u32(f[0]), u32(f[1]), u32(f[2]), f[3], f[4] != 0, f[5], f[6]});
    }
  }
}

}  // namespace noclobber
