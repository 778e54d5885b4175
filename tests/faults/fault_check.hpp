// The assertions every fault cell shares: the run happened (faults applied without error, the
// final reads worked, something was acknowledged) and the row is printed for
// scripts/fault_matrix.sh. The cell's finding itself is asserted by each test.
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

}  // namespace nc_faults
