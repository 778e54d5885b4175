// The GoogleTest integration: the assertion passes on a CAS run, fails on the naive strategy with
// the report, the replay line and the timeline in its message, and the macros report as GoogleTest
// failures (checked with gtest-spi, so that the failing cases themselves pass).
#include <gtest/gtest-spi.h>
#include <noclobber/gtest/race_harness.hpp>
#include <noclobber/memory_store.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace nc = noclobber;
using store_t = nc::memory_store<std::string, std::string>;

namespace {

nc::race_report naive_report() {
  store_t store;
  nc::race_options_for<store_t> opt;
  opt.writers = 4;
  return nc::run_race(store, nc::naive_strategy{}, opt);
}

// A fresh folder for the timelines of the failing cases, so that the test can find them.
std::filesystem::path html_dir() {
  auto dir = std::filesystem::temp_directory_path() / ("noclobber_gtest_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  ::setenv("NOCLOBBER_RACE_HTML_DIR", dir.c_str(), 1);
  return dir;
}

}  // namespace

TEST(RaceHarnessGtest, CasRunPasses) {
  store_t store;
  auto opt = nc::race_options_from_env<store_t>();
  opt.writers = 16;
  opt.ops_per_writer = 10;
  const auto report = nc::run_race(store, nc::cas_strategy{}, opt);
  NOCLOBBER_ASSERT_NO_LOST_UPDATES(report);
  NOCLOBBER_EXPECT_NO_LOST_UPDATES(report);
  EXPECT_TRUE(nc::gtest::no_lost_updates(report));
}

TEST(RaceHarnessGtest, NaiveRunFailsWithTheReportReplayAndTimeline) {
  const auto dir = html_dir();
  const auto report = naive_report();
  const auto result = nc::gtest::no_lost_updates(report);
  ASSERT_FALSE(result);
  const std::string message = result.message();
  EXPECT_NE(message.find("LOST UPDATES: 3"), std::string::npos) << message;
  EXPECT_NE(message.find("replay: mode=forced"), std::string::npos) << message;
  const auto at = message.find("timeline: ");
  ASSERT_NE(at, std::string::npos) << message;
  const std::string path = message.substr(at + 10, message.find('\n', at) - at - 10);
  EXPECT_EQ(std::filesystem::path(path).parent_path(), dir);
  EXPECT_TRUE(std::filesystem::is_regular_file(path)) << path;
  std::filesystem::remove_all(dir);
  ::unsetenv("NOCLOBBER_RACE_HTML_DIR");
}

TEST(RaceHarnessGtest, MacrosReportGoogleTestFailures) {
  const auto dir = html_dir();
  const auto report = naive_report();
  EXPECT_NONFATAL_FAILURE(NOCLOBBER_EXPECT_NO_LOST_UPDATES(report), "LOST UPDATES: 3");
  EXPECT_FATAL_FAILURE(NOCLOBBER_ASSERT_NO_LOST_UPDATES(naive_report()), "replay: mode=forced");
  std::filesystem::remove_all(dir);
  ::unsetenv("NOCLOBBER_RACE_HTML_DIR");
}

TEST(RaceHarnessGtest, ReplayVariableSetsTheOptions) {
  ::setenv("NOCLOBBER_RACE_REPLAY", "mode=explore writers=3 ops=2 seed=9 depth=3 schedule=77", 1);
  const auto opt = nc::race_options_from_env<store_t>();
  ::unsetenv("NOCLOBBER_RACE_REPLAY");
  EXPECT_EQ(opt.mode, nc::race_mode::explore);
  EXPECT_EQ(opt.writers, 3u);
  EXPECT_EQ(opt.ops_per_writer, 2u);
  EXPECT_EQ(opt.seed, 9u);
  EXPECT_EQ(opt.depth, 3u);
  EXPECT_EQ(opt.schedule, std::optional<std::uint64_t>(77));
}
