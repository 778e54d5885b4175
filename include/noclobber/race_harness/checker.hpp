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
//     a version from before it, an applied write_if_match sent after it was conditional on such
//     a version, or it was itself a write_if_match and another one applied on the same version:
//     a durability or failover loss, or a store that does not compare tokens; not a strategy bug;
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
//   link_parents        each entry's parent (the entry whose value it read), looked up once
//   group_readers       successful writes grouped by the version they read (Elle's lost-update
//                       pairs); reads of a version nobody wrote, or written to another key,
//                       are anomalies
//   walk_final_chains   each key's chain, walked back from its final version; marks what is on it
//   collect_lost        successful writes off every chain, in order of completion
//   classify_faults     of the lost writes, those the store forgot (vanished); updates applied
//                       twice; how each unknown outcome was resolved (see there)
//   name_replacers      for each lost write, the write that replaced it (see there)
//
// It runs in time linear in the number of records (hash tables sized exactly, up front); losses
// add a sort, skipped when the lost writes already come in order of completion. On a large
// history it is memory-bound, so: the tables are compact (12-16 bytes a slot, load <= 2/3) and
// passes that probe them prefetch a few records ahead; every walk down a chain follows parent
// links in 16-byte entries (looked up once), never a hash per step; the keys' walks advance side
// by side so their cache misses overlap; find_doubled looks for a repeated op in cache-sized hash
// groups before it builds an op table; tables a check may not need are built on first use.
// Figures (bench/bench_race_harness.cpp, docs/race_harness.md): BM_check_chain/1M (1.25 M
// records) 9.3-14.4 M records/s, BM_check_naive/1M (875 k lost) 4.7-6.5 M/s, CPU time on the
// shared 2-core VM at load 3.6-4.7 (issue 16's target: 5 M/s; main: 5.8-7.3 and 1.9-2.5 M/s).
// A history too large for memory is checked part by part (history.hpp,
// check_race_history_in_parts): 12.5 M records in 64 parts with a 37 MiB peak RSS, 7.9 M
// records/s CPU (smaller parts fit the cache).
//
// Extending: a new verdict is one more phase over history_index filling its own field of
// race_check (and race_check::ok() if it is a failure); exports and traces read race_history and
// race_check, never the phases' internals.
//
// Thread safety: plain values and pure functions. Nothing here locks or calls user code.
#pragma once

#include <vector>

#include "noclobber/race_harness/check_faults.hpp"
#include "noclobber/race_harness/check_index.hpp"

namespace noclobber {

/// Checks a history (see the overview for the rules and the phases).
[[nodiscard]] inline race_check check_race_history(const race_history& h) {
  race_check c;
  c.write_attempts = h.writes.size();
  detail::history_index ix(h);
  detail::index_writes(ix, c);
  detail::link_parents(ix);
  detail::group_readers(ix, c);
  detail::walk_final_chains(ix, c);
  const std::vector<std::uint32_t> lost = detail::classify_faults(ix, detail::collect_lost(ix), c);
  if (!lost.empty()) detail::name_replacers(ix, lost, c);
  return c;
}

}  // namespace noclobber
