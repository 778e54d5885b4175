// example: examples/race_demo/sqlite_adapter.cpp
#include <noclobber/adapters/sqlite.hpp>
#include <noclobber/race_harness.hpp>
#include <noclobber/read_modify_write.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

int main() {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("noclobber_example_" + std::to_string(getpid()) + ".db"))
          .string();

  // One sqlite::store = one SQLite connection; use it from one thread at a time.
  noclobber::sqlite::store db(path);
  auto r = noclobber::read_modify_write(db, "locations/42", [](const std::optional<std::string>& rows) {
    return rows.value_or("") + "row;";  // created if absent, else written only if unchanged
  });
  std::cout << "applied: " << r.ok() << ", version " << r.token.value_or(0) << "\n";

  // Prove it: 8 writers, each with its own connection to the same file.
  noclobber::race_options<std::string, std::string> opt;
  opt.writers = 8;
  opt.ops_per_writer = 10;
  opt.store_name = "sqlite";
  opt.strategy_name = "cas";
  auto report = noclobber::run_race_per_writer([&](unsigned) { return noclobber::sqlite::store(path); },
                                               noclobber::cas_strategy{}, opt);
  std::cout << report.to_text();

  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
  return r.ok() && report.ok() ? 0 : 1;
}
