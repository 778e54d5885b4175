// noclobber/race_harness/assertions.hpp — what every test-framework assertion on a race report
// shares: the pass rule, the replay variable, and the HTML timeline written on failure.
//
// Overview
// --------
// The Catch2 assertion (noclobber/catch2/race_harness.hpp) and the GoogleTest one
// (noclobber/gtest/race_harness.hpp) are thin: each turns these three into its framework's
// failure. A report passes when no update was lost, the checker found no anomaly, no iteration
// failed and no op threw:
//
//   auto opt = noclobber::race_options_from_env<my_store>();   // honours NOCLOBBER_RACE_REPLAY
//   auto report = noclobber::run_race(store, noclobber::cas_strategy{}, opt);
//   if (!noclobber::race_assertion_passes(report))
//     fail(report.to_text() + noclobber::timeline_on_failure(report));
//
// Thread safety: race_options_from_env reads the environment (do not setenv concurrently);
// the others are pure functions of the report, except that timeline_on_failure writes a file.
#pragma once

#include <cstdlib>
#include <exception>
#include <string>

#include "noclobber/race_harness/html.hpp"
#include "noclobber/race_harness/options.hpp"
#include "noclobber/race_harness/report.hpp"

namespace noclobber {

/// Default options with the NOCLOBBER_RACE_REPLAY environment variable applied, if set.
template <class Store>
[[nodiscard]] race_options_for<Store> race_options_from_env() {
  race_options_for<Store> o;
  if (const char* line = std::getenv("NOCLOBBER_RACE_REPLAY"); line != nullptr && *line != '\0') {
    o.apply_replay(line);
  }
  return o;
}

/// The rule every race assertion applies: no lost update, no anomaly, no failing iteration, no
/// op error.
[[nodiscard]] inline bool race_assertion_passes(const race_report& r) noexcept {
  return r.ok() && r.op_errors == 0;
}

/// For a report that fails race_assertion_passes: writes its HTML timeline (in
/// $NOCLOBBER_RACE_HTML_DIR, else the temp folder) and returns "timeline: <path>" (or why it could
/// not); for one that passes: "" (nothing written).
[[nodiscard]] inline std::string timeline_on_failure(const race_report& r) {
  if (race_assertion_passes(r)) return {};
  try {
    return "timeline: " + write_html(r).string();
  } catch (const std::exception& e) {
    return std::string("timeline not written: ") + e.what();
  }
}

}  // namespace noclobber
