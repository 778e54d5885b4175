// Instructions per uncontended update on memory_store<std::string, long>, for callgrind:
//
//   instructions_read_modify_write MODE N     MODE: hand | rmw | naive; N updates of one key
//
// scripts/count_instructions.sh runs it under callgrind for two N and divides the difference by
// the difference in N, so start-up and the first (creating) update cancel out. The same loop as
// bench/bench_read_modify_write.cpp's uncontended benchmarks.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>

#include "noclobber/memory_store.hpp"
#include "noclobber/naive_read_modify_write.hpp"
#include "noclobber/read_modify_write.hpp"
#include "uncontended_loops.hpp"

namespace nc = noclobber;
using store_t = nc_bench::counter_store;

namespace {

const std::string& kKey = nc_bench::counter_key();

[[gnu::noinline]] long hand_written(store_t& store, const std::string& key) {
  return nc_bench::hand_written(store, key);
}

[[gnu::noinline]] long library(store_t& store, const std::string& key) {
  return static_cast<long>(nc::read_modify_write(store, key, nc_bench::increment).attempts);
}

[[gnu::noinline]] long naive(store_t& store, const std::string& key) {
  return static_cast<long>(nc::naive_read_modify_write(store, key, nc_bench::increment).attempts);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "hand") != 0 && std::strcmp(argv[1], "rmw") != 0 &&
                    std::strcmp(argv[1], "naive") != 0)) {
    std::cerr << "usage: instructions_read_modify_write hand|rmw|naive N\n";
    return 2;
  }
  const long n = std::atol(argv[2]);
  long (*update)(store_t&, const std::string&) =
      argv[1][0] == 'h' ? hand_written : (argv[1][0] == 'r' ? library : naive);
  store_t store;
  long attempts = 0;
  for (long i = 0; i < n; ++i) attempts += update(store, kKey);
  const auto stored = store.peek(kKey);
  return attempts == n && stored && stored->first == n ? 0 : 1;  // one attempt per update, none lost
}
