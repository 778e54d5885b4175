// example: examples/gtest/race_harness_gtest.cpp
#include <gtest/gtest.h>
#include <noclobber/adapters/sqlite.hpp>
#include <noclobber/gtest/race_harness.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

TEST(MyAdapter, LosesNoUpdates) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("my_adapter_gtest_" + std::to_string(getpid()) + ".db"))
          .string();
  using store = noclobber::sqlite::store;  // your adapter here

  auto opt = noclobber::race_options_from_env<store>();  // honours NOCLOBBER_RACE_REPLAY
  opt.writers = 16;
  opt.ops_per_writer = 20;
  auto report = noclobber::run_race_per_writer([&](unsigned) { return store(path); },  // a connection each
                                               noclobber::cas_strategy{}, opt);
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());

  NOCLOBBER_ASSERT_NO_LOST_UPDATES(report);  // the message is the whole report if it fails
}
