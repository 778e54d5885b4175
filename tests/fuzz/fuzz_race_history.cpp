// Fuzz target: the race-history checker (check_race_history) against a slow reference written
// here from the rules its header states (Elle's lost update, the final-version chain, merged
// resends, unknown outcomes), on two kinds of histories:
//   arbitrary  writes, reads and initial/final versions drawn from a small set of version ids
//              (so ids collide, chains loop, keys cross, versions come from nowhere);
//   simulated  a store run by hand: writers read, then write with compare-and-set, create or a
//              blind overwrite, some outcomes unknown (landed or not), some requests resent; its
//              history is valid, so the checker must report no anomaly.
// Checked: the checker never crashes or hangs; its counts (attempts, applied, failed, unknown,
// unknown landed), lost-update pairs (in all and per key, the per-key ones by checking each key's
// own sub-history), the sets of lost and vanished writes, the doubled updates (none when the
// history says ops write in steps), each unknown
// outcome's landing and resolution, and whether it reports anomalies equal the reference's;
// each "overwritten by" names a recorded write (not a refused one, unless there are anomalies);
// serialize_history / append_history round-trip; the report renders, and its JSON parses.
// Two more programs: simulated histories (key names any bytes) exported to Elle's EDN and
// Porcupine's JSON and imported back (same key names, same verdict, the reference agrees), and
// arbitrary text imported (read, or refused with std::invalid_argument only).
//
// Library API under test: noclobber/race_harness/history.hpp (check_race_history,
// serialize_history, append_history), noclobber/race_harness/report.hpp (race_report,
// loss_trace) and noclobber/race_harness/export.hpp (to_/from_elle_edn, to_/from_porcupine_json),
// and noclobber/json/porcupine.hpp (from_porcupine_json), all public; the JSON checks parse with
// nlohmann/json. JSON text is UTF-8 (RFC 8259, section 8.1): a history whose key names are not
// well-formed UTF-8 is checked in EDN only, and its report's JSON is not parsed (to_json and
// to_porcupine_json write such names' bytes as they are; nlohmann/json refuses them).
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_support.hpp"
#include "noclobber/json/porcupine.hpp"
#include "noclobber/race_harness/export.hpp"
#include "noclobber/race_harness/history.hpp"
#include "noclobber/race_harness/report.hpp"

namespace {

using noclobber::op_outcome;

bool utf8_names(const noclobber::race_history& h) {
  for (const std::string& k : h.keys)
    if (!nc_fuzz::valid_utf8(k)) return false;
  return true;
}

using noclobber::race_history;
using noclobber::race_read;
using noclobber::race_write;
using noclobber::write_id;

// ---- the reference checker --------------------------------------------------------------------

struct reference_verdict {
  std::size_t applied = 0, failed = 0, unknown = 0, unknown_landed = 0;
  std::size_t lost_update_pairs = 0;
  std::map<std::uint32_t, std::size_t> pairs_per_key;
  std::set<write_id> lost;      // successful writes missing from the final state, stale-read losses
  std::set<write_id> vanished;  // the ones the store forgot (taken out of `lost`)
  std::map<std::uint64_t, std::size_t> doubled;  // (writer, op) -> its values on final chains, when >= 2
  // Per distinct unknown value: whether it landed, and 0 unresolved / 1 wrote again / 2 read back.
  std::map<write_id, std::pair<bool, int>> indeterminate;
  bool anomaly = false;
  std::string why;  // the first anomaly, for messages
};

int rank(op_outcome o) {
  return o == op_outcome::ok ? 2 : o == op_outcome::unknown ? 1 : 0;
}

reference_verdict reference_check(const race_history& h) {
  reference_verdict r;
  auto anomaly = [&r](const std::string& why) {
    if (!r.anomaly) r.why = why;
    r.anomaly = true;
  };
  // A written value is one write, however often it was sent: it took effect if any attempt was
  // applied, is unknown if none was and any was unknown; the first attempt with that outcome
  // stands for it. A value sent to two keys is an anomaly.
  std::map<write_id, std::size_t> decided;  // written id -> index of the standing attempt
  std::map<write_id, std::set<std::uint32_t>> keys_of;
  for (std::size_t i = 0; i < h.writes.size(); ++i) {
    const race_write& w = h.writes[i];
    if (w.outcome == op_outcome::failed) ++r.failed;
    keys_of[w.written].insert(w.key);
    auto it = decided.find(w.written);
    if (it == decided.end())
      decided.emplace(w.written, i);
    else if (rank(w.outcome) > rank(h.writes[it->second].outcome))
      it->second = i;
  }
  for (const auto& [id, keys] : keys_of)
    if (keys.size() > 1) anomaly("value written to two keys");
  auto is_initial = [&h](std::uint32_t key, write_id v) {
    return v == noclobber::initial_version || (v & noclobber::foreign_version_bit) != 0 ||
           (key < h.initial_versions.size() && v == h.initial_versions[key]);
  };
  // Elle's lost update: successful writes of the same key that read the same version.
  std::map<std::pair<std::uint32_t, write_id>, std::size_t> readers;
  for (const auto& [id, i] : decided) {
    const race_write& w = h.writes[i];
    if (w.outcome == op_outcome::unknown) ++r.unknown;
    if (w.outcome != op_outcome::ok) continue;
    ++r.applied;
    ++readers[{w.key, w.read_from}];
    if (!is_initial(w.key, w.read_from)) {
      const auto parent = decided.find(w.read_from);
      if (parent == decided.end())
        anomaly("read an unrecorded version");
      else if (h.writes[parent->second].key != w.key)
        anomaly("read another key's version");
    }
  }
  for (const auto& [kv, n] : readers) {
    if (n >= 2) {
      r.lost_update_pairs += n - 1;
      r.pairs_per_key[kv.first] += n - 1;
    }
  }
  // The final chain of each key: from its final version back through "read from" links to the
  // version it started from. Every value on it landed.
  std::set<write_id> on_chain;
  for (std::uint32_t k = 0; k < h.final_versions.size(); ++k) {
    const write_id start = k < h.initial_versions.size() ? h.initial_versions[k] : noclobber::initial_version;
    write_id v = h.final_versions[k];
    bool first = true;
    while (v != noclobber::initial_version && v != start && (v & noclobber::foreign_version_bit) == 0) {
      const auto it = decided.find(v);
      if (it == decided.end()) {
        if (first) anomaly("final version from no recorded write");
        break;
      }
      const race_write& w = h.writes[it->second];
      if (on_chain.count(v) != 0) {
        anomaly("chain loops");
        break;
      }
      if (w.key != k) {
        anomaly("chain crosses keys");
        break;
      }
      if (w.outcome == op_outcome::failed) anomaly("refused write on the chain");
      on_chain.insert(v);
      if (w.outcome == op_outcome::unknown) ++r.unknown_landed;
      v = w.read_from;
      first = false;
    }
  }
  for (const auto& [id, i] : decided)
    if (h.writes[i].outcome == op_outcome::ok && on_chain.count(id) == 0) r.lost.insert(id);

  // Vanished: a lost write whose replaced versions (what it read, and below through "read from"
  // links) the store showed again after acknowledging it: the key's final value, a read that
  // began after the write completed, or an applied write_if_match conditional on one of them and
  // sent after it completed; or, for a write_if_match conditional on what it read, another value
  // applied conditionally on that same version.
  for (auto it = r.lost.begin(); it != r.lost.end();) {
    const race_write& w = h.writes[decided.at(*it)];
    const write_id start =
        w.key < h.initial_versions.size() ? h.initial_versions[w.key] : noclobber::initial_version;
    bool forgot = false;
    write_id v = w.read_from;
    for (std::size_t steps = 0; !forgot && steps <= decided.size(); ++steps) {
      forgot = w.key < h.final_versions.size() && h.final_versions[w.key] == v;
      for (const race_read& rd : h.reads)
        forgot = forgot || (rd.key == w.key && rd.version == v && rd.invoke > w.complete);
      for (const race_write& x : h.writes)  // an applied update conditional on v, sent later
        forgot = forgot || (x.outcome == op_outcome::ok && x.kind == noclobber::write_kind::write_if_match &&
                            x.key == w.key && x.expected == v && x.expected != noclobber::unknown_version &&
                            x.invoke > w.complete);
      if (v == noclobber::initial_version || v == start || (v & noclobber::foreign_version_bit) != 0) break;
      const auto below = decided.find(v);
      if (below == decided.end()) break;
      v = h.writes[below->second].read_from;
    }
    // Or: it updated conditionally on what it read, and another value did so too on that version.
    if (w.outcome == op_outcome::ok && w.kind == noclobber::write_kind::write_if_match &&
        w.expected != noclobber::unknown_version && w.expected == w.read_from) {
      for (const race_write& x : h.writes)
        forgot = forgot || (x.outcome == op_outcome::ok && x.kind == noclobber::write_kind::write_if_match &&
                            x.key == w.key && x.expected == w.expected && x.written != w.written);
    }
    if (forgot) {
      r.vanished.insert(*it);
      it = r.lost.erase(it);
    } else {
      ++it;
    }
  }
  // Doubled: one operation's values on the final chains two or more times.
  auto op_of = [](std::uint32_t writer, std::uint32_t op) { return (std::uint64_t{writer} << 32) | op; };
  std::map<std::uint64_t, std::size_t> landed;
  for (write_id v : on_chain) ++landed[op_of(h.writes[decided.at(v)].writer, h.writes[decided.at(v)].op)];
  for (const auto& [op, n] : landed)
    if (n >= 2 && !h.ops_write_in_steps) r.doubled[op] = n;  // steps: not judged (race_history)
  // Unknown outcomes: landed when on a chain; the writer wrote again (a later attempt of the same
  // op) or read back (a read of the same op that began after the write completed), or neither.
  for (const auto& [id, i] : decided) {
    const race_write& w = h.writes[i];
    if (w.outcome != op_outcome::unknown) continue;
    int how = 0;
    for (const race_write& x : h.writes)
      if (x.writer == w.writer && x.op == w.op && x.attempt > w.attempt) how = 1;
    if (how == 0)
      for (const race_read& rd : h.reads)
        if (rd.writer == w.writer && rd.op == w.op && rd.invoke > w.complete) how = 2;
    r.indeterminate[id] = {on_chain.count(id) != 0, how};
  }
  return r;
}

// ---- comparing ---------------------------------------------------------------------------------

std::string describe(const race_history& h) {
  std::string s =
      "history (" + std::to_string(h.writes.size()) + " writes):\n" + noclobber::serialize_history(h);
  s += "initial:";
  for (write_id v : h.initial_versions) s += " " + std::to_string(v);
  s += "\nfinal:";
  for (write_id v : h.final_versions) s += " " + std::to_string(v);
  return s;
}

void compare(const race_history& h, bool valid) {
  const noclobber::race_check c = noclobber::check_race_history(h);
  const reference_verdict r = reference_check(h);
  const std::string ctx = "\n" + describe(h);
  NC_FUZZ_CHECK(c.write_attempts == h.writes.size(), "write_attempts" + ctx);
  NC_FUZZ_CHECK(c.failed == r.failed,
                "failed " + std::to_string(c.failed) + " != " + std::to_string(r.failed) + ctx);
  NC_FUZZ_CHECK(c.applied == r.applied,
                "applied " + std::to_string(c.applied) + " != " + std::to_string(r.applied) + ctx);
  NC_FUZZ_CHECK(c.unknown == r.unknown, "unknown" + ctx);
  NC_FUZZ_CHECK(c.lost_update_pairs == r.lost_update_pairs,
                "lost_update_pairs " + std::to_string(c.lost_update_pairs) + " != reference " +
                    std::to_string(r.lost_update_pairs) + ctx);
  NC_FUZZ_CHECK(c.anomalies.empty() == !r.anomaly,
                "anomalies: checker " + std::to_string(c.anomalies.size()) + " (" +
                    (c.anomalies.empty() ? std::string() : c.anomalies.front()) + "), reference " +
                    (r.anomaly ? r.why : std::string("none")) + ctx);
  if (valid) NC_FUZZ_CHECK(c.anomalies.empty(), "anomaly in a valid history: " + c.anomalies.front() + ctx);
  // unknown_landed counts chain steps; where a chain breaks (an anomaly) the two walks agree too.
  NC_FUZZ_CHECK(c.unknown_landed == r.unknown_landed, "unknown_landed" + ctx);
  std::set<write_id> lost;
  for (const noclobber::lost_write& l : c.lost) {
    NC_FUZZ_CHECK(l.lost.outcome == op_outcome::ok, "a lost write that was not applied" + ctx);
    NC_FUZZ_CHECK(lost.insert(l.lost.written).second, "a write listed as lost twice" + ctx);
    if (l.overwritten_by.writer != 0) {
      bool recorded = false;
      for (const race_write& w : h.writes) {
        // A refused write can be on a chain only in a history with anomalies.
        recorded =
            recorded || (w.written == l.overwritten_by.written && w.writer == l.overwritten_by.writer &&
                         (w.outcome != op_outcome::failed || !c.anomalies.empty()));
      }
      NC_FUZZ_CHECK(recorded, "overwritten_by names no applied recorded write" + ctx);
    }
  }
  NC_FUZZ_CHECK(lost == r.lost, "lost writes: checker " + std::to_string(lost.size()) + ", reference " +
                                    std::to_string(r.lost.size()) + ctx);
  // Faults: vanished, doubled, indeterminate.
  std::set<write_id> vanished;
  for (const noclobber::vanished_write& v : c.vanished) {
    NC_FUZZ_CHECK(v.write.outcome == op_outcome::ok && !v.trace.empty(), "a vanished write" + ctx);
    NC_FUZZ_CHECK(vanished.insert(v.write.written).second && lost.count(v.write.written) == 0,
                  "a write listed as vanished twice, or also as lost" + ctx);
  }
  NC_FUZZ_CHECK(vanished == r.vanished, "vanished writes: checker " + std::to_string(vanished.size()) +
                                            ", reference " + std::to_string(r.vanished.size()) + ctx);
  if (valid) NC_FUZZ_CHECK(vanished.empty(), "a vanished write in a valid history" + ctx);
  std::map<std::uint64_t, std::size_t> doubled;
  for (const noclobber::doubled_update& d : c.doubled) {
    NC_FUZZ_CHECK(!d.copies.empty() && !d.trace.empty(), "an empty doubled update" + ctx);
    const std::uint64_t op = (std::uint64_t{d.copies.front().writer} << 32) | d.copies.front().op;
    NC_FUZZ_CHECK(doubled.emplace(op, d.copies.size()).second, "an update listed as doubled twice" + ctx);
  }
  NC_FUZZ_CHECK(doubled == r.doubled, "doubled updates: checker " + std::to_string(doubled.size()) +
                                          ", reference " + std::to_string(r.doubled.size()) + ctx);
  NC_FUZZ_CHECK(c.indeterminate.size() == r.indeterminate.size(), "indeterminate count" + ctx);
  for (const noclobber::indeterminate_write& u : c.indeterminate) {
    const auto it = r.indeterminate.find(u.write.written);
    NC_FUZZ_CHECK(it != r.indeterminate.end() && u.landed == it->second.first, "indeterminate landed" + ctx);
    const int how = u.how == noclobber::unknown_resolution::later_attempt ? 1
                    : u.how == noclobber::unknown_resolution::read_back   ? 2
                                                                          : 0;
    NC_FUZZ_CHECK(how == it->second.second, "indeterminate resolution" + ctx);
  }
  NC_FUZZ_CHECK(c.ok() == (lost.empty() && c.lost_update_pairs == 0 && c.anomalies.empty() &&
                           vanished.empty() && doubled.empty()),
                "ok()");

  // Per key: the checker on each key's own writes finds that key's pairs.
  std::set<std::uint32_t> keys;
  for (const race_write& w : h.writes) keys.insert(w.key);
  if (!r.anomaly) {
    for (std::uint32_t k : keys) {
      race_history sub = h;
      sub.writes.clear();
      for (const race_write& w : h.writes)
        if (w.key == k) sub.writes.push_back(w);
      const auto sc = noclobber::check_race_history(sub);
      const auto it = r.pairs_per_key.find(k);
      const std::size_t expect = it == r.pairs_per_key.end() ? 0 : it->second;
      NC_FUZZ_CHECK(sc.lost_update_pairs == expect, "lost_update_pairs of key " + std::to_string(k) + ctx);
    }
  }

  // The text form round-trips (outcomes and kinds are in range here).
  race_history back;
  noclobber::append_history(back, noclobber::serialize_history(h));
  NC_FUZZ_CHECK(back.writes.size() == h.writes.size() && back.reads.size() == h.reads.size(),
                "round trip sizes");
  for (std::size_t i = 0; i < h.writes.size(); ++i) {
    const race_write &a = h.writes[i], &b = back.writes[i];
    NC_FUZZ_CHECK(a.writer == b.writer && a.op == b.op && a.attempt == b.attempt && a.key == b.key &&
                      a.read_from == b.read_from && a.written == b.written && a.outcome == b.outcome &&
                      a.kind == b.kind && a.invoke == b.invoke && a.complete == b.complete &&
                      a.expected == b.expected,
                  "write round trip" + ctx);
  }
  for (std::size_t i = 0; i < h.reads.size(); ++i) {
    const race_read &a = h.reads[i], &b = back.reads[i];
    NC_FUZZ_CHECK(a.writer == b.writer && a.op == b.op && a.key == b.key && a.version == b.version &&
                      a.found == b.found && a.invoke == b.invoke && a.complete == b.complete,
                  "read round trip" + ctx);
  }

  // The report renders (with a trace of the first loss), and its JSON is valid JSON.
  noclobber::race_report rep;
  rep.store = "fuzz\"store\n";
  rep.check = c;
  rep.history = h;
  if (!c.lost.empty()) rep.trace = noclobber::detail::loss_trace(h, c.lost.front());
  const std::string text = rep.to_text();
  NC_FUZZ_CHECK(!text.empty(), "to_text");
  const std::string json = rep.to_json();
  if (utf8_names(h))
    NC_FUZZ_CHECK(!nlohmann::json::parse(json, nullptr, false).is_discarded(),
                  "to_json is not JSON: " + json);
}

// ---- histories ---------------------------------------------------------------------------------

write_id version_from(std::uint8_t b) {
  static const write_id table[8] = {
      noclobber::initial_version,
      noclobber::make_write_id(1, 7, 1),
      noclobber::make_write_id(1, 7, 2),
      noclobber::make_write_id(2, 7, 1),
      noclobber::make_write_id(2, 7, 2),
      noclobber::make_write_id(3, 7, 1),
      noclobber::foreign_version_bit | 42,
      noclobber::make_write_id(noclobber::max_race_writer, 0xFFFFF, noclobber::max_race_sequence)};
  return table[b % 8];
}

race_history arbitrary_history(nc_fuzz::reader& in) {
  race_history h;
  const std::uint8_t shape = in.u8();
  const std::size_t keys = 1 + shape % 3;
  for (std::size_t k = 0; k < keys; ++k) h.keys.push_back("key" + std::to_string(k));
  const std::size_t initial = (shape >> 2) % 2 ? keys : (shape >> 3) % (keys + 1);
  const std::size_t final = (shape >> 4) % 2 ? keys : (shape >> 5) % (keys + 2);
  for (std::size_t k = 0; k < initial; ++k) h.initial_versions.push_back(version_from(in.u8()));
  for (std::size_t k = 0; k < final; ++k) h.final_versions.push_back(version_from(in.u8()));
  const std::size_t n = in.u8() % 24;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t a = in.u8(), b = in.u8();
    race_write w;
    w.writer = 1 + a % 4;
    w.op = a >> 4;
    w.attempt = 1;
    w.key = (a >> 2) % 4;  // 3 may be past the keys and the final versions
    w.read_from = version_from(b);
    w.written = version_from(b >> 3);
    w.outcome = static_cast<op_outcome>((b >> 6) % 3);
    w.kind = static_cast<noclobber::write_kind>(a % 3);
    w.invoke = 2 * i;
    w.complete = (b & 0x40) ? 2 * i + 1 : in.u8();
    const std::uint8_t e = in.u8();  // conditional on what it read, another version, or unknown
    w.expected = e % 4 == 0 ? noclobber::unknown_version : e % 4 == 1 ? w.read_from : version_from(e >> 2);
    h.writes.push_back(w);
  }
  const std::size_t reads = in.u8() % 6;
  for (std::size_t i = 0; i < reads; ++i) {
    const std::uint8_t a = in.u8();
    h.reads.push_back(
        race_read{1u + a % 4, 0, (a >> 2) % 3u, version_from(a >> 4), (a & 0x80) != 0, in.u8(), in.u8()});
  }
  h.ops_write_in_steps = in.u8() % 4 == 0;  // an op may write in steps: no doubled verdict
  return h;
}

/// A valid history: a store run by hand, ticks in order. `odd_names`: key names from the input
/// (any bytes), kept distinct by their index.
race_history simulated_history(nc_fuzz::reader& in, bool odd_names = false) {
  race_history h;
  const std::size_t keys = 1 + in.u8() % 3;
  std::vector<write_id> current(keys);
  for (std::size_t k = 0; k < keys; ++k) {
    h.keys.push_back((odd_names ? in.bytes(in.u8() % 8) : std::string("k")) + std::to_string(k));
    const std::uint8_t b = in.u8();
    current[k] = b % 4 == 0 ? noclobber::foreign_version_bit | b : noclobber::initial_version;
    h.initial_versions.push_back(current[k]);
  }
  struct writer_state {
    std::optional<std::pair<std::uint32_t, write_id>> read;  // key, version
    std::uint32_t op = 0;
    std::uint64_t seq = 0;
  };
  writer_state writers[4];
  std::uint64_t tick = 0;
  const std::size_t steps = in.u8() % 40;
  for (std::size_t s = 0; s < steps; ++s) {
    const std::uint8_t a = in.u8();
    const std::uint32_t wr = a % 4;
    writer_state& ws = writers[wr];
    if (!ws.read || (a & 0x04) == 0) {  // read a key
      const std::uint32_t k = (a >> 3) % keys;
      ws.read = {{k, current[k]}};
      h.reads.push_back(
          race_read{wr + 1, ws.op, k, current[k], current[k] != noclobber::initial_version, tick, tick + 1});
      tick += 2;
      continue;
    }
    const auto [k, seen] = *ws.read;
    race_write w;
    w.writer = wr + 1;
    w.op = ws.op;
    w.attempt = 1;
    w.key = k;
    w.read_from = seen;
    w.written = noclobber::make_write_id(wr + 1, 7, ++ws.seq);
    const std::uint8_t how = in.u8();
    w.kind = static_cast<noclobber::write_kind>(how % 3);
    if (w.kind == noclobber::write_kind::write_if_match) w.expected = seen;
    bool applies =
        w.kind == noclobber::write_kind::overwrite ||
        (w.kind == noclobber::write_kind::write_if_match && current[k] == seen) ||
        (w.kind == noclobber::write_kind::create_if_absent && current[k] == noclobber::initial_version);
    if ((how >> 2) % 4 == 0 && applies) {
      // A transient failure first: the same request (same value) is sent again.
      w.outcome = op_outcome::failed;
      w.invoke = tick++;
      w.complete = tick++;
      h.writes.push_back(w);
    }
    w.invoke = tick++;
    if ((how >> 4) % 4 == 0) {
      w.outcome = op_outcome::unknown;  // the answer got lost; it landed or not
      applies = applies && (how & 0x40) != 0;
    } else {
      w.outcome = applies ? op_outcome::ok : op_outcome::failed;
    }
    if (applies) current[k] = w.written;
    w.complete = tick++;
    h.writes.push_back(w);
    ws.read.reset();
    ++ws.op;
  }
  h.final_versions = current;
  return h;
}

// ---- the Elle (EDN) and Porcupine (JSON) forms -------------------------------------------------

/// A valid history exported in both formats reads back with the same key names and the same
/// verdict, and the reference agrees on what was read back.
void export_round_trip(const race_history& h) {
  const noclobber::race_check c = noclobber::check_race_history(h);
  for (const bool edn : {true, false}) {
    if (!edn && !utf8_names(h)) continue;  // JSON strings are UTF-8 (see the overview)
    const std::string text = edn ? noclobber::to_elle_edn(h) : noclobber::to_porcupine_json(h);
    race_history back;
    try {
      back = edn ? noclobber::from_elle_edn(text) : noclobber::from_porcupine_json(text);
    } catch (const std::invalid_argument& e) {
      NC_FUZZ_CHECK(false, std::string("the import refused an export: ") + e.what() + "\n" + text);
    }
    const std::set<std::string> names(h.keys.begin(), h.keys.end()), got(back.keys.begin(), back.keys.end());
    NC_FUZZ_CHECK(names == got, std::string(edn ? "EDN" : "JSON") + " key names do not round-trip:\n" + text);
    const noclobber::race_check b = noclobber::check_race_history(back);
    NC_FUZZ_CHECK(b.applied == c.applied && b.failed == c.failed && b.unknown == c.unknown &&
                      b.unknown_landed == c.unknown_landed && b.lost_update_pairs == c.lost_update_pairs &&
                      b.lost.size() == c.lost.size() && b.anomalies.empty() == c.anomalies.empty(),
                  std::string(edn ? "EDN" : "JSON") + " round trip changed the verdict:\n" + text);
    compare(back, true);
  }
}

/// Arbitrary text: the import reads it or refuses it with std::invalid_argument (any other
/// exception escapes and is a finding); what it reads, the checker and the reference agree on.
void import_text(nc_fuzz::reader& in) {
  const bool edn = in.flag();
  const std::string text = in.rest();
  race_history h;
  try {
    h = edn ? noclobber::from_elle_edn(text) : noclobber::from_porcupine_json(text);
  } catch (const std::invalid_argument&) {
    return;
  }
  compare(h, false);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nc_fuzz::reader in(data, size);
  switch (in.u8() % 4) {
    case 0:
      compare(arbitrary_history(in), false);
      break;
    case 1:
      compare(simulated_history(in), true);
      break;
    case 2:
      export_round_trip(simulated_history(in, true));
      break;
    default:
      import_text(in);
  }
  return 0;
}
