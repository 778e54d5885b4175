// The Catch2 integration (noclobber/catch2/race_harness.hpp) against Catch2 v3's headers: the
// passing assertion and matcher, and the matcher's failure text. Built only where a Catch2 v3
// package is installed (tests/catch2_v3/CMakeLists.txt); Debian bookworm ships Catch2 2.13 only.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <noclobber/catch2/race_harness.hpp>
#include <noclobber/memory_store.hpp>

#include <string>

namespace nc = noclobber;
using store_t = nc::memory_store<std::string, std::string>;

static_assert(NOCLOBBER_CATCH2_V3 == 1, "the v3 branch of noclobber/catch2/race_harness.hpp was not taken");

TEST_CASE("v3: require no lost updates", "[race_harness][catch2][concurrency]") {
  store_t store;
  auto opt = nc::catch2::race_options_from_env<store_t>();
  opt.writers = 8;
  opt.ops_per_writer = 5;
  const auto report = nc::run_race(store, nc::cas_strategy{}, opt);
  NOCLOBBER_REQUIRE_NO_LOST_UPDATES(report);
  NOCLOBBER_CHECK_NO_LOST_UPDATES(report);
  REQUIRE_THAT(report, nc::catch2::no_lost_updates());
}

TEST_CASE("v3: the matcher fails on the naive strategy and describes the losses",
          "[race_harness][catch2][concurrency]") {
  store_t store;
  nc::race_options_for<store_t> opt;
  opt.writers = 4;
  const auto report = nc::run_race(store, nc::naive_strategy{}, opt);
  const auto m = nc::catch2::no_lost_updates();
  REQUIRE_FALSE(m.match(report));
  REQUIRE_THAT(m.describe(), Catch::Matchers::ContainsSubstring("LOST UPDATES: 3") &&
                                 Catch::Matchers::ContainsSubstring("replay: mode=forced"));
}
