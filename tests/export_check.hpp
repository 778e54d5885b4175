// Shared by the export tests (tests/test_race_export.cpp: Elle EDN; tests/json/test_porcupine_json.cpp:
// Porcupine JSON): a real run's history, exported and imported, keeps the run's verdict.
#pragma once

#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>

#include <catch2/catch.hpp>

#include <string>

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

/// A real run of each strategy (naive, then CAS: 6 writers x 4 ops on two keys, one of them
/// holding a version from before the run), exported and imported by `round_trip`, keeps its
/// verdict.
template <class RoundTrip>
void require_real_runs_keep_their_verdict(RoundTrip round_trip) {
  namespace nc = noclobber;
  using store_t = nc::memory_store<std::string, std::string>;
  for (auto strategy : {0, 1}) {
    store_t store;
    REQUIRE(store.create_if_absent("k1", "before the run").ok());  // a version from before the run
    nc::race_options_for<store_t> o;
    o.writers = 6;
    o.ops_per_writer = 4;
    o.keys = {"k1", "k2"};
    const auto r = strategy == 0 ? nc::run_race(store, nc::naive_strategy{}, o)
                                 : nc::run_race(store, nc::cas_strategy{}, o);
    INFO(r.to_text());
    require_same_verdict(round_trip(r.history), r);
  }
}

}  // namespace nc_test
