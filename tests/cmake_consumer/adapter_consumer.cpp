// The program the component consumer tests build (find_package COMPONENTS, FetchContent,
// add_subdirectory, the single header with its adapter companions): it links noclobber::sqlite and
// noclobber::postgres and nothing else, so it builds only if those targets carry SQLite and libpq.
//   SQLite:     4 threads, each with its own connection to one database file, increment one
//               counter with read_modify_write; it fails unless no update was lost.
//   PostgreSQL: no server here, so it connects to a socket folder that does not exist and expects
//               the adapter's connection error: libpq was linked and called.
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/adapters/sqlite.hpp>
#include <noclobber/noclobber.hpp>  // read_modify_write; the umbrella also works with single_include/

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <latch>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

int main() {
  constexpr int threads = 4;
  constexpr int increments = 50;
  const std::string path =
      (std::filesystem::temp_directory_path() / ("noclobber_consumer_" + std::to_string(getpid()) + ".db"))
          .string();
  noclobber::retry_policy policy;
  policy.max_attempts = 10000;
  int failed = 0;
  {
    std::latch start(threads);
    std::vector<std::thread> workers;
    std::vector<int> failures(threads, 0);
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        noclobber::sqlite::store db(path);  // one connection per thread
        start.arrive_and_wait();
        for (int i = 0; i < increments; ++i) {
          auto r = noclobber::read_modify_write(
              db, "counter",
              [](const std::optional<std::string>& v) { return std::to_string(v ? std::stol(*v) + 1 : 1); },
              policy);
          if (!r.ok()) ++failures[t];
        }
      });
    }
    for (auto& w : workers) w.join();
    for (int f : failures) failed += f;
  }
  noclobber::sqlite::store db(path);
  const auto final_read = db.read("counter");
  const long counted = final_read.found() ? std::stol(final_read.value) : 0;
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());

  bool pg_error_seen = false;
  try {
    noclobber::postgres::store pg("host=/nonexistent-noclobber-consumer connect_timeout=1", "kv");
  } catch (const std::runtime_error& e) {
    pg_error_seen = std::string(e.what()).find("cannot connect") != std::string::npos;
  }

  std::printf("adapter consumer: sqlite %ld/%d (%d failed), postgres connection error %s\n", counted,
              threads * increments, failed, pg_error_seen ? "seen" : "MISSING");
  return counted == threads * increments && failed == 0 && pg_error_seen ? 0 : 1;
}
