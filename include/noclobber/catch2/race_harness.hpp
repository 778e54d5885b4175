// noclobber/catch2/race_harness.hpp — the race harness as a Catch2 assertion (v2; v3 headers too).
//
// Overview
// --------
// So that a user's adapter test reads like the requirement it checks:
//
//   TEST_CASE("my adapter loses no updates") {
//     my_store store;
//     auto opt = noclobber::catch2::race_options_from_env<my_store>();   // honours a replay line
//     opt.writers = 16;
//     auto report = noclobber::run_race(store, noclobber::cas_strategy{}, opt);
//     NOCLOBBER_REQUIRE_NO_LOST_UPDATES(report);
//     // or: REQUIRE_THAT(report, noclobber::catch2::no_lost_updates());
//   }
//
// On failure the whole report is printed: counts, each lost write and its replacer, the trace,
// and the replay line; the report's HTML timeline (race_harness/html.hpp) is written to a file
// (in $NOCLOBBER_RACE_HTML_DIR, else the temp folder) and its path printed with it. To rerun exactly that
// case, set NOCLOBBER_RACE_REPLAY to the replay line (e.g. `NOCLOBBER_RACE_REPLAY='mode=explore writers=16
// ops=1 seed=7 depth=2 schedule=…'`) and build the options with race_options_from_env().
//
// Catch2 v2 or v3: a test file that included Catch2 first decides (CATCH_VERSION_MAJOR); otherwise
// v3's headers (<catch2/catch_test_macros.hpp>, <catch2/matchers/catch_matchers.hpp>) are used
// where they exist, else v2's single header <catch2/catch.hpp>. The two differ here only in where
// the matcher base class lives. Include this header only from test code.
// Thread safety: call the assertions from the test's own thread (Catch2's rule).
#pragma once

#if defined(CATCH_VERSION_MAJOR) && CATCH_VERSION_MAJOR >= 3
#define NOCLOBBER_CATCH2_V3 1
#elif !defined(CATCH_VERSION_MAJOR) && __has_include(<catch2/catch_test_macros.hpp>)
#define NOCLOBBER_CATCH2_V3 1
#else
#define NOCLOBBER_CATCH2_V3 0
#endif

#if NOCLOBBER_CATCH2_V3
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers.hpp>
#else
#include <catch2/catch.hpp>
#endif

#include <string>

#include "noclobber/race_harness.hpp"
#include "noclobber/race_harness/assertions.hpp"

namespace noclobber::catch2 {

// Shared with the GoogleTest assertion (noclobber/race_harness/assertions.hpp); kept here under
// their old names.
using ::noclobber::race_options_from_env;
using ::noclobber::timeline_on_failure;

/// Matches a report with no lost update and no anomaly; describes itself with the report (and,
/// when it fails, the path of its HTML timeline).
#if NOCLOBBER_CATCH2_V3
template <class T>
using catch_matcher_base = Catch::Matchers::MatcherBase<T>;
#else
template <class T>
using catch_matcher_base = Catch::MatcherBase<T>;
#endif

class no_lost_updates_matcher : public catch_matcher_base<race_report> {
 public:
  bool match(const race_report& r) const override {
    text_ = r.to_text();
    const bool ok = race_assertion_passes(r);
    if (!ok) text_ += timeline_on_failure(r) + "\n";
    return ok;
  }
  std::string describe() const override { return "loses no updates (and no op threw)\n" + text_; }

 private:
  mutable std::string text_;
};

[[nodiscard]] inline no_lost_updates_matcher no_lost_updates() {
  return {};
}

}  // namespace noclobber::catch2

/// REQUIRE that a race_report shows no lost update, no anomaly and no op error; prints the
/// report (with its replay line) when it fails.
#define NOCLOBBER_REQUIRE_NO_LOST_UPDATES(report)                      \
  do {                                                                 \
    const ::noclobber::race_report& noclobber_report_ = (report);      \
    INFO(noclobber_report_.to_text());                                 \
    INFO(::noclobber::catch2::timeline_on_failure(noclobber_report_)); \
    REQUIRE(noclobber_report_.lost() == 0);                            \
    REQUIRE(noclobber_report_.check.lost_update_pairs == 0);           \
    REQUIRE(noclobber_report_.check.anomalies.empty());                \
    REQUIRE(noclobber_report_.failing_iterations == 0);                \
    REQUIRE(noclobber_report_.op_errors == 0);                         \
  } while (false)

/// The same, as CHECKs (the test goes on).
#define NOCLOBBER_CHECK_NO_LOST_UPDATES(report)                        \
  do {                                                                 \
    const ::noclobber::race_report& noclobber_report_ = (report);      \
    INFO(noclobber_report_.to_text());                                 \
    INFO(::noclobber::catch2::timeline_on_failure(noclobber_report_)); \
    CHECK(noclobber_report_.lost() == 0);                              \
    CHECK(noclobber_report_.check.lost_update_pairs == 0);             \
    CHECK(noclobber_report_.check.anomalies.empty());                  \
    CHECK(noclobber_report_.failing_iterations == 0);                  \
    CHECK(noclobber_report_.op_errors == 0);                           \
  } while (false)
