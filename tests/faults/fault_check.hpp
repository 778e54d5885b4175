// The assertions every fault cell shares: the run happened (faults applied without error, the
// final reads worked, something was acknowledged) and the row is printed for
// scripts/fault_matrix.sh; and the findings cells share (no loss; the strategy sound while the
// store may forget; every unknown outcome resolved). Each test asserts its cell's finding.
#pragma once

#include <catch2/catch.hpp>

#include <cstdlib>
#include <iostream>

#include "faults/fault_run.hpp"

namespace nc_faults {

inline void check_run(const fault_result& r, unsigned faults) {
  std::cout << r.row << "\n";
  if (std::getenv("NOCLOBBER_FAULT_VERBOSE") != nullptr) std::cout << r.describe();
  INFO(r.describe());
  CHECK(r.report.first_error.empty());
  // Every fault of the schedule fits in the run when the store keeps up; at least one must.
  REQUIRE(!r.timeline.empty());
  CHECK(r.timeline.size() <= faults);
  for (const auto& e : r.timeline) CHECK(e.error.empty());
  // The first fault began while writers still ran (not after the last operation).
  CHECK(r.timeline.front().operations_at_inject_began < r.counts.operations);
  CHECK(r.counts.acknowledged > 0);
}

/// The finding "nothing acknowledged was lost, vanished or applied twice; nothing the store
/// called not applied landed".
inline void check_no_loss(const fault_result& r) {
  INFO(r.describe());
  CHECK(r.counts.lost == 0);
  CHECK(r.counts.vanished == 0);
  CHECK(r.counts.doubled == 0);
  CHECK(r.counts.misreported == 0);
}

/// The finding of a cell whose store may forget (a failover to an asynchronous replica, an
/// unsafe persistence setting): the strategy never loses an update to a stale read, never applies
/// one twice, and nothing the store called not applied landed. What vanished is measured, printed
/// in the row, and asserted (or not) by the cell.
inline void check_strategy_sound(const fault_result& r) {
  INFO(r.describe());
  CHECK(r.counts.lost == 0);
  CHECK(r.counts.doubled == 0);
  CHECK(r.counts.misreported == 0);
}

/// The finding of a `locked-cas` cell on a store that forgets nothing: every unknown outcome was
/// found out. The writers of a key queue behind the run's per-key lock, so while one rides out the
/// fault nobody else moves its key on; its re-read finds either its own write or the version it
/// read, and the unknown-outcome rule never has to give up. (With `cas` it does: another writer
/// has usually moved the key on. A store that forgot acknowledged writes moves a key back.)
inline void check_unknowns_resolved(const fault_result& r) {
  INFO(r.describe());
  CHECK(r.counts.indeterminate_unresolved == 0);
}

}  // namespace nc_faults
