// Writes sample race report pages into the folder given (scripts/check_html_chromium.sh renders
// them): two naive writers losing one update (explore, shrunk), 64 naive writers × 100 ops
// (forced), and a clean CAS run. Prints one line per page: its path and how many writes it lost.
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>

#include <cstdio>
#include <filesystem>
#include <string>

namespace nc = noclobber;
using store_t = nc::memory_store<std::string, std::string>;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: race_html_pages FOLDER\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  auto page = [&](const char* name, const nc::race_report& r) {
    const auto path = dir / name;
    nc::write_html(r, path);
    std::printf("%s %zu\n", path.string().c_str(), r.lost());
  };
  {
    store_t store;
    nc::race_options_for<store_t> o;
    o.mode = nc::race_mode::explore;
    o.writers = 16;
    o.ops_per_writer = 5;
    o.seed = 7;
    o.strategy_name = "naive";
    const auto r = nc::run_race(store, nc::naive_strategy{}, o);
    page("explore_16x5.html", r);
    page("shrunk.html", nc::shrink_race(store, nc::naive_strategy{}, o, r).shrunk);
  }
  {
    store_t store;
    nc::race_options_for<store_t> o;
    o.writers = 64;
    o.ops_per_writer = 100;
    o.keys = {"a", "b", "c", "d"};
    o.strategy_name = "naive";
    page("forced_64x100.html", nc::run_race(store, nc::naive_strategy{}, o));
    o.writers = 8;
    o.ops_per_writer = 10;
    o.strategy_name = "cas";
    page("cas_clean.html", nc::run_race(store, nc::cas_strategy{}, o));
  }
  return 0;
}
