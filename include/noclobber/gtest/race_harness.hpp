// noclobber/gtest/race_harness.hpp — the race harness as a GoogleTest assertion.
//
// Overview
// --------
// The GoogleTest twin of noclobber/catch2/race_harness.hpp, so that a user's adapter test reads
// like the requirement it checks:
//
//   TEST(MyAdapter, LosesNoUpdates) {
//     my_store store;
//     auto opt = noclobber::race_options_from_env<my_store>();   // honours a replay line
//     opt.writers = 16;
//     auto report = noclobber::run_race(store, noclobber::cas_strategy{}, opt);
//     NOCLOBBER_ASSERT_NO_LOST_UPDATES(report);
//     // or: EXPECT_TRUE(noclobber::gtest::no_lost_updates(report));
//   }
//
// The pass rule, the replay variable (NOCLOBBER_RACE_REPLAY) and the HTML timeline written on
// failure are those of every noclobber assertion (noclobber/race_harness/assertions.hpp). On
// failure the message holds the whole report (counts, each lost write and its replacer, the trace,
// the replay line) and the timeline's path.
//
// This header includes <gtest/gtest.h>; include it only from test code (link GTest::gtest, or
// GTest::gtest_main for GoogleTest's main()).
// Thread safety: call the assertions from the test's own thread (GoogleTest's rule on platforms
// without pthreads; noclobber asks it everywhere).
#pragma once

#include <gtest/gtest.h>

#include "noclobber/race_harness.hpp"
#include "noclobber/race_harness/assertions.hpp"

namespace noclobber::gtest {

/// Success for a report that passes race_assertion_passes(); otherwise a failure whose message is
/// the report and the path of its HTML timeline.
[[nodiscard]] inline ::testing::AssertionResult no_lost_updates(const race_report& r) {
  if (race_assertion_passes(r)) return ::testing::AssertionSuccess() << "no lost updates";
  return ::testing::AssertionFailure() << "the race lost updates or found anomalies (and the race must "
                                          "lose none, with no op error)\n"
                                       << r.to_text() << timeline_on_failure(r) << "\n";
}

}  // namespace noclobber::gtest

/// ASSERT that a race_report shows no lost update, no anomaly and no op error (the test stops);
/// the failure message is the report with its replay line and timeline path.
#define NOCLOBBER_ASSERT_NO_LOST_UPDATES(report) ASSERT_TRUE(::noclobber::gtest::no_lost_updates(report))

/// The same as an EXPECT (the test goes on).
#define NOCLOBBER_EXPECT_NO_LOST_UPDATES(report) EXPECT_TRUE(::noclobber::gtest::no_lost_updates(report))
