// The Porcupine import (json/porcupine.hpp, nlohmann/json): hand-written histories with known
// verdicts go through the checker; a real run exported (race_harness/export.hpp) and imported
// keeps its verdict; malformed input is refused with a clear error naming the operation.
#include <noclobber/json/porcupine.hpp>
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>
#include <noclobber/race_harness/export.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <string_view>

#include "export_check.hpp"

namespace nc = noclobber;

namespace {
using store_t = nc::memory_store<std::string, std::string>;
}  // namespace

TEST_CASE("porcupine: hand-written histories with known verdicts", "[race_harness][export][json]") {
  SECTION("a lost update") {
    const auto h = nc::from_porcupine_json(R"([
      {"ClientId":1,"Input":{"op":"rmw","key":"x","read":null,"write":"7"},"Call":0,"Output":{"outcome":"ok"},"Return":3},
      {"ClientId":2,"Input":{"op":"rmw","key":"x","read":null,"write":"8"},"Call":1,"Output":{"outcome":"ok"},"Return":2},
      {"ClientId":0,"Input":{"op":"read","key":"x"},"Call":4,"Output":{"value":"7"},"Return":5}])");
    const auto c = nc::check_race_history(h);
    REQUIRE(c.lost.size() == 1);
    REQUIRE(c.lost[0].lost.writer == 2);
    REQUIRE(c.lost[0].overwritten_by.writer == 1);
  }
  SECTION("a clean chain with a version written outside the run") {
    const auto h = nc::from_porcupine_json(R"([
      {"ClientId":1,"Input":{"op":"read","key":"x"},"Call":0,"Output":{"value":"outside-0-0"},"Return":1},
      {"ClientId":1,"Input":{"op":"rmw","key":"x","read":"outside-0-0","write":"5"},"Call":2,"Output":{"outcome":"ok"},"Return":3},
      {"ClientId":2,"Input":{"op":"rmw","key":"x","read":"5","write":"6"},"Call":4,"Output":{"outcome":"ok"},"Return":5},
      {"ClientId":0,"Input":{"op":"read","key":"x"},"Call":6,"Output":{"value":"6"},"Return":7}])");
    REQUIRE(nc::check_race_history(h).ok());
  }
}

TEST_CASE("porcupine: a real run exported and imported keeps its verdict",
          "[race_harness][export][json][concurrency]") {
  nc_test::require_real_runs_keep_their_verdict(
      [](const nc::race_history& h) { return nc::from_porcupine_json(nc::to_porcupine_json(h)); });
}

TEST_CASE("porcupine: the import refuses what it cannot read, naming it", "[race_harness][export][json]") {
  REQUIRE_THROWS_WITH(nc::from_porcupine_json("{"), Catch::Contains("not a JSON array"));
  REQUIRE_THROWS_WITH(nc::from_porcupine_json("{}"), Catch::Contains("not a JSON array"));
  REQUIRE_THROWS_WITH(
      nc::from_porcupine_json(
          R"([{"ClientId":1.5,"Input":{"op":"read","key":"x"},"Call":0,"Output":{"value":null},"Return":1}])"),
      Catch::Contains("needs ClientId"));
  REQUIRE_THROWS_WITH(
      nc::from_porcupine_json(
          R"([{"ClientId":1,"Input":{"op":"read","key":"x"},"Call":0,"Output":{"value":null},"Return":99999999999999999999}])"),
      Catch::Contains("needs ClientId"));
  REQUIRE_THROWS_WITH(nc::from_porcupine_json(R"([{"ClientId":1}])"), Catch::Contains("operation 0"));
  // nlohmann/json alone stops at a NUL byte as at the end of input: "[]" and garbage read as [].
  REQUIRE_THROWS_WITH(nc::from_porcupine_json(std::string_view("[]\0garbage", 10)),
                      Catch::Contains("not a JSON array"));
  REQUIRE_THROWS_WITH(
      nc::from_porcupine_json(
          R"([{"ClientId":1,"Input":{"op":"rmw","key":"x","read":null,"write":7},"Call":0,"Output":{"outcome":"ok"},"Return":1}])"),
      Catch::Contains("Input.write is not a string"));
  REQUIRE_THROWS_WITH(
      nc::from_porcupine_json(
          R"([{"ClientId":1,"Input":{"op":"cas","key":"x"},"Call":0,"Output":{},"Return":1}])"),
      Catch::Contains("'cas'"));
}
