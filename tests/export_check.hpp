// Shared by the export tests (tests/test_race_export.cpp: Elle EDN; tests/json/test_porcupine_json.cpp:
// Porcupine JSON): a real run's history, exported and imported, keeps the run's verdict.
#pragma once

#include <noclobber/race_harness.hpp>

#include <catch2/catch.hpp>

namespace nc_test {

/// `back` (a history read back from an export of `r.history`) has r's verdict: the same lost
/// updates (who lost to whom), counts and anomalies, and as many reads and writes.
inline void require_same_verdict(const noclobber::race_history& back, const noclobber::race_report& r) {
  const auto c = noclobber::check_race_history(back);
  REQUIRE(c.lost.size() == r.check.lost.size());
  REQUIRE(c.lost_update_pairs == r.check.lost_update_pairs);
  REQUIRE(c.applied == r.check.applied);
  REQUIRE(c.failed == r.check.failed);
  REQUIRE(c.anomalies == r.check.anomalies);
  REQUIRE(back.writes.size() == r.history.writes.size());
  REQUIRE(back.reads.size() == r.history.reads.size());
  for (std::size_t i = 0; i < c.lost.size(); ++i) {
    CHECK(c.lost[i].lost.writer == r.check.lost[i].lost.writer);
    CHECK(c.lost[i].overwritten_by.writer == r.check.lost[i].overwritten_by.writer);
  }
}

}  // namespace nc_test
