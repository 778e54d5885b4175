// The Catch2 integration: the assertion a user's adapter test writes, its failure text, and
// the replay variable.
#include <noclobber/catch2/race_harness.hpp>
#include <noclobber/memory_store.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace nc = noclobber;
using store_t = nc::memory_store<std::string, std::string>;

TEST_CASE("run the harness on my adapter; require no lost updates", "[race_harness][catch2][concurrency]") {
  store_t store;
  auto opt = nc::catch2::race_options_from_env<store_t>();
  opt.writers = 16;
  opt.ops_per_writer = 10;
  const auto report = nc::run_race(store, nc::cas_strategy{}, opt);
  NOCLOBBER_REQUIRE_NO_LOST_UPDATES(report);
  REQUIRE_THAT(report, nc::catch2::no_lost_updates());
}

TEST_CASE("the matcher fails on the naive strategy and describes the losses",
          "[race_harness][catch2][concurrency]") {
  store_t store;
  nc::race_options_for<store_t> opt;
  opt.writers = 4;
  const auto report = nc::run_race(store, nc::naive_strategy{}, opt);
  const auto m = nc::catch2::no_lost_updates();
  REQUIRE_FALSE(m.match(report));
  REQUIRE_THAT(m.describe(), Catch::Contains("LOST UPDATES: 3") && Catch::Contains("replay: mode=forced"));
}

TEST_CASE("NOCLOBBER_RACE_REPLAY sets the options", "[race_harness][catch2]") {
  ::setenv("NOCLOBBER_RACE_REPLAY", "mode=explore writers=3 ops=2 seed=9 depth=3 schedule=77", 1);
  const auto opt = nc::catch2::race_options_from_env<store_t>();
  ::unsetenv("NOCLOBBER_RACE_REPLAY");
  REQUIRE(opt.mode == nc::race_mode::explore);
  REQUIRE(opt.writers == 3);
  REQUIRE(opt.ops_per_writer == 2);
  REQUIRE(opt.seed == 9);
  REQUIRE(opt.depth == 3);
  REQUIRE(opt.schedule == std::optional<std::uint64_t>(77));
}

TEST_CASE("a failing assertion writes the HTML timeline and names it; a passing one writes nothing",
          "[race_harness][catch2][html][concurrency]") {
  const auto dir =
      std::filesystem::temp_directory_path() / ("noclobber_catch2_html_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  ::setenv("NOCLOBBER_RACE_HTML_DIR", dir.c_str(), 1);
  store_t store;
  nc::race_options_for<store_t> opt;
  opt.writers = 4;
  const auto passing = nc::run_race(store, nc::cas_strategy{}, opt);
  REQUIRE(nc::catch2::timeline_on_failure(passing).empty());
  REQUIRE_FALSE(std::filesystem::exists(dir));

  const auto report = nc::run_race(store, nc::naive_strategy{}, opt);
  const auto m = nc::catch2::no_lost_updates();
  REQUIRE_FALSE(m.match(report));
  ::unsetenv("NOCLOBBER_RACE_HTML_DIR");
  const std::string text = m.describe();
  const auto at = text.find("timeline: ");
  REQUIRE(at != std::string::npos);
  const std::filesystem::path path = text.substr(at + 10, text.find('\n', at) - at - 10);
  REQUIRE(path.parent_path() == dir);
  std::ifstream f(path);
  const std::string page((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  REQUIRE_THAT(page, Catch::Contains("LOST UPDATES: 3") && Catch::Contains("class=\"m write ok lost\""));
  std::filesystem::remove_all(dir);
}
