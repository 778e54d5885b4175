// noclobber/race_harness/overlap.hpp — how often writers really stood in the read→write window
// at the same time: the overlap a run achieved.
//
// Overview
// --------
// A lost update needs two writers between a read and its write on the same key at once. A run in
// which that never happened (a store or strategy that serialises, too few threads, a machine that
// ran one writer at a time) proves nothing about the store, however clean its verdict. So every
// report measures it from the history, after the run:
//
//   window        one write attempt with the read it was computed from (same writer, op and key,
//                 the version it names, the latest such read before the write): the span of
//                 logical ticks from that read's invoke to the write's complete. Writes that read
//                 nothing (blind writes) have no window.
//   overlapping   windows that another writer's window on the same key intersects.
//   most_at_once  the most writers that stood in windows on one key at the same tick.
//
// Ticks come from one atomic counter taken around every store call, so two windows intersect
// only when the calls really interleaved: a strategy that holds a lock across read and write
// shows 0 whatever the scheduler did; forced naive writers show every window overlapping.
//
// Thread safety: plain functions of a history; nothing here locks or calls user code.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <unordered_map>
#include <vector>

#include "noclobber/race_harness/records.hpp"

namespace noclobber {

/// What measure_overlap found in one run's history.
struct race_overlap {
  std::size_t windows = 0;       ///< write attempts with the read they were computed from
  std::size_t overlapping = 0;   ///< windows another writer's window on the same key intersected
  std::size_t most_at_once = 0;  ///< most writers in windows on one key at the same tick

  /// overlapping / windows (0 when there were none).
  [[nodiscard]] double ratio() const noexcept {
    return windows == 0 ? 0.0 : static_cast<double>(overlapping) / static_cast<double>(windows);
  }
};

namespace detail {

struct race_window {
  std::uint32_t writer;
  std::uint32_t key;
  std::uint64_t open;   // the read's invoke
  std::uint64_t close;  // the write's complete
};

/// Each write attempt paired with the read it was computed from (see the overview).
inline std::vector<race_window> race_windows(const race_history& h) {
  std::unordered_map<std::uint32_t, std::vector<const race_read*>> reads_of;  // writer -> by complete
  for (const race_read& r : h.reads) reads_of[r.writer].push_back(&r);
  for (auto& [writer, reads] : reads_of) {
    std::sort(reads.begin(), reads.end(),
              [](const race_read* a, const race_read* b) { return a->complete < b->complete; });
  }
  std::vector<race_window> windows;
  windows.reserve(h.writes.size());
  for (const race_write& w : h.writes) {
    auto it = reads_of.find(w.writer);
    if (it == reads_of.end()) continue;
    const auto& reads = it->second;
    // The latest read of this op that completed before the write started and saw read_from.
    auto pos = std::upper_bound(reads.begin(), reads.end(), w.invoke,
                                [](std::uint64_t tick, const race_read* r) { return tick < r->complete; });
    while (pos != reads.begin()) {
      const race_read& r = **--pos;
      if (r.op != w.op) break;
      if (r.key == w.key && r.version == w.read_from) {
        windows.push_back({w.writer, w.key, r.invoke, w.complete});
        break;
      }
    }
  }
  return windows;
}

}  // namespace detail

/// The overlap `h` achieved: a sweep over its windows per key, in tick order.
[[nodiscard]] inline race_overlap measure_overlap(const race_history& h) {
  std::vector<detail::race_window> windows = detail::race_windows(h);
  race_overlap out;
  out.windows = windows.size();
  std::sort(windows.begin(), windows.end(), [](const detail::race_window& a, const detail::race_window& b) {
    return a.key != b.key ? a.key < b.key : a.open < b.open;
  });
  std::size_t begin = 0;
  while (begin < windows.size()) {
    std::size_t end = begin;
    while (end < windows.size() && windows[end].key == windows[begin].key) ++end;
    // One key: windows [begin, end) by opening tick. Open windows sit in `open` (index, and
    // whether another writer's window met them yet); per writer, how many of its windows are open.
    std::vector<std::size_t> open;
    std::vector<char> met(end - begin, 0);
    std::unordered_map<std::uint32_t, std::size_t> open_of;
    std::size_t writers_open = 0;
    for (std::size_t i = begin; i < end; ++i) {
      const detail::race_window& w = windows[i];
      // Close what ended before this one opened.
      std::erase_if(open, [&](std::size_t j) {
        if (windows[j].close >= w.open) return false;
        if (--open_of[windows[j].writer] == 0) --writers_open;
        return true;
      });
      for (std::size_t j : open) {
        if (windows[j].writer != w.writer) met[j - begin] = met[i - begin] = 1;
      }
      if (open_of[w.writer]++ == 0) ++writers_open;
      open.push_back(i);
      out.most_at_once = std::max(out.most_at_once, writers_open);
    }
    out.overlapping += static_cast<std::size_t>(std::count(met.begin(), met.end(), 1));
    begin = end;
  }
  return out;
}

/// "37 of 40 read→write windows (92.5 %) met another writer's; at most 8 writers at once".
[[nodiscard]] inline std::string overlap_text(const race_overlap& o) {
  char pct[32];
  std::snprintf(pct, sizeof pct, "%.1f", 100.0 * o.ratio());
  return std::to_string(o.overlapping) + " of " + std::to_string(o.windows) + " read→write windows (" + pct +
         " %) met another writer's on their key; at most " + std::to_string(o.most_at_once) +
         " writer(s) in the window at once";
}

}  // namespace noclobber
