// example: examples/race_demo/race_harness_catch2.cpp
#define CATCH_CONFIG_MAIN
#include <noclobber/adapters/sqlite.hpp>
#include <noclobber/catch2/race_harness.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

TEST_CASE("my adapter loses no updates") {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("my_adapter_" + std::to_string(getpid()) + ".db")).string();
  using store = noclobber::sqlite::store;  // your adapter here

  auto opt = noclobber::catch2::race_options_from_env<store>();  // honours NOCLOBBER_RACE_REPLAY
  opt.writers = 16;
  opt.ops_per_writer = 20;
  auto report = noclobber::run_race_per_writer([&](unsigned) { return store(path); },  // a connection each
                                               noclobber::cas_strategy{}, opt);
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());

  NOCLOBBER_REQUIRE_NO_LOST_UPDATES(report);  // prints the whole report if it fails
}
