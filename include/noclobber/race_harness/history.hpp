// noclobber/race_harness/history.hpp — what a race harness run recorded, and the checker.
//
// Overview
// --------
// The race harness (noclobber/race_harness.hpp) records every read and every write attempt its
// writers make. This header brings the records (`race_history`, race_harness/records.hpp) and the
// checker that turns them into verdicts (`check_race_history`, race_harness/checker.hpp, which
// states the rules), and adds the history's text form. It is separate from the harness so that
// histories gathered elsewhere (other processes, a log) can be checked too, and so the checker
// can be benchmarked on its own:
//
//   race_history h;                          // one process per writer group:
//   append_history(h, text_from_process_1);  //   serialize_history(its_history)
//   append_history(h, text_from_process_2);
//   h.keys = ...; h.initial_versions = ...; h.final_versions = ...;
//   race_check c = check_race_history(h);
//
// A history too large to hold at once (tens of millions of records) is checked key by key:
// check_race_history_in_parts asks a callback for the records of one group of keys at a time
// (from files, a log, a generator) and merges the groups' verdicts; peak memory is one group.
//
// Thread safety: plain values and pure functions. Nothing here locks or calls user code.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "noclobber/race_harness/checker.hpp"
#include "noclobber/race_harness/records.hpp"

namespace noclobber {

/// One line per record ("w writer op attempt key read_from written outcome kind invoke complete
/// [expected]", the last only when known; "r writer op key version found invoke complete"), for
/// runs spread over several processes:
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
    if (w.expected != unknown_version) num(w.expected);
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
    std::uint64_t f[11] = {};
    const bool is_write = line[0] == 'w';
    const std::size_t want = is_write ? 11 : line[0] == 'r' ? 7 : 0;  // (a write's 11th is optional)
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
    if (is_write && got == 10) {
      f[10] = unknown_version;
      got = want;
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
                          static_cast<op_outcome>(f[6]), static_cast<write_kind>(f[7]), f[8], f[9], f[10]});
    } else {
      h.reads.push_back({u32(f[0]), u32(f[1]), u32(f[2]), f[3], f[4] != 0, f[5], f[6]});
    }
  }
}

/// Checks a history part by part, so that it never has to be in memory at once: `frame` holds
/// the keys, their initial and final versions and ops_write_in_steps (no records); `fill(part,
/// records)` appends to `records` (a race_history, emptied before each call) every write and read
/// of the keys k with k % parts == part. Each part is checked with check_race_history and the
/// verdicts merged: counts summed; lost, vanished and indeterminate writes in order of
/// completion; doubled updates in key order, as check_race_history gives them. Peak memory: one
/// part's records and the checker's tables for them, plus the merged verdict.
///
/// Same verdict as check_race_history on the whole history (tests/test_race_checker_faults.cpp
/// compares them) as long as each op writes and reads one key and no value is written to two
/// keys, which a harness run guarantees. Across parts the checker cannot see: a value written
/// to keys of two parts, or read from another part's key, is reported as a read of a version
/// "no recorded write produced"; anomalies come part by part. Throws std::invalid_argument when
/// `fill` gives a record of a key outside its part, or `parts` is 0.
template <class Fill>
[[nodiscard]] race_check check_race_history_in_parts(const race_history& frame, std::size_t parts,
                                                     Fill&& fill) {
  if (parts == 0) throw std::invalid_argument("noclobber: check_race_history_in_parts needs parts >= 1");
  race_check all;
  race_history part;
  part.keys = frame.keys;
  part.initial_versions = frame.initial_versions;
  part.ops_write_in_steps = frame.ops_write_in_steps;
  auto initial_of = [&](std::size_t k) {
    return k < frame.initial_versions.size() ? frame.initial_versions[k] : initial_version;
  };
  for (std::size_t p = 0; p < parts; ++p) {
    part.writes.clear();
    part.reads.clear();
    // Keys of other parts end where they began: their chains are empty here.
    part.final_versions.resize(frame.final_versions.size());
    for (std::size_t k = 0; k < frame.final_versions.size(); ++k)
      part.final_versions[k] = k % parts == p ? frame.final_versions[k] : initial_of(k);
    fill(p, part);
    auto outside = [&](std::uint32_t key) { return key % parts != p; };
    if (std::any_of(part.writes.begin(), part.writes.end(),
                    [&](const race_write& w) { return outside(w.key); }) ||
        std::any_of(part.reads.begin(), part.reads.end(),
                    [&](const race_read& r) { return outside(r.key); })) {
      throw std::invalid_argument("noclobber: check_race_history_in_parts: part " + std::to_string(p) +
                                  " was given a record of another part's key");
    }
    race_check c = check_race_history(part);
    all.write_attempts += c.write_attempts;
    all.applied += c.applied;
    all.failed += c.failed;
    all.unknown += c.unknown;
    all.unknown_landed += c.unknown_landed;
    all.lost_update_pairs += c.lost_update_pairs;
    auto move_all = [](auto& to, auto& from) {
      to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
    };
    move_all(all.lost, c.lost);
    move_all(all.anomalies, c.anomalies);
    move_all(all.vanished, c.vanished);
    move_all(all.doubled, c.doubled);
    move_all(all.indeterminate, c.indeterminate);
  }
  auto by_completion = [](auto member) {
    return [member](const auto& a, const auto& b) { return (a.*member).complete < (b.*member).complete; };
  };
  std::stable_sort(all.lost.begin(), all.lost.end(), by_completion(&lost_write::lost));
  std::stable_sort(all.vanished.begin(), all.vanished.end(), by_completion(&vanished_write::write));
  std::stable_sort(all.indeterminate.begin(), all.indeterminate.end(),
                   by_completion(&indeterminate_write::write));
  std::stable_sort(all.doubled.begin(), all.doubled.end(),
                   [](const doubled_update& a, const doubled_update& b) {
                     return a.copies.front().key < b.copies.front().key;
                   });
  return all;
}

}  // namespace noclobber
