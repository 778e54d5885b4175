// example: examples/race_shrink.cpp
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>

#include <filesystem>
#include <iostream>
#include <string>

int main() {
  noclobber::memory_store<std::string, std::string> store;

  noclobber::race_options<std::string, std::string> opt;
  opt.mode = noclobber::race_mode::explore;  // seeded PCT schedules, replayable
  opt.writers = 16;
  opt.ops_per_writer = 5;
  opt.seed = 7;
  opt.strategy_name = "naive";
  const auto report = noclobber::run_race(store, noclobber::naive_strategy{}, opt);
  if (report.lost() == 0) return 1;  // seed 7 loses within 10 schedules

  // Delta debugging on the schedule: fewest writers, ops and preemptions that still lose.
  const auto shrunk = noclobber::shrink_race(store, noclobber::naive_strategy{}, opt, report);
  std::cout << shrunk.to_text();  // 16 writers × 5 ops … → 2 writers × 1 op …, both replay lines

  // The shrunk run as a page: one lane per writer, the lost write in red, linked to its overwriter.
  const auto page = noclobber::write_html(shrunk.shrunk);  // in $NOCLOBBER_RACE_HTML_DIR or /tmp
  std::cout << "timeline: " << page.string() << "\n";

  // Its replay line reproduces it anywhere: race_options::apply_replay or NOCLOBBER_RACE_REPLAY.
  noclobber::race_options<std::string, std::string> again;
  again.apply_replay(shrunk.shrunk_replay);
  noclobber::memory_store<std::string, std::string> fresh;
  const bool loses = noclobber::run_race(fresh, noclobber::naive_strategy{}, again).lost() == 1;
  std::filesystem::remove(page);
  return shrunk.ok() && shrunk.shrunk.operations == 2 && loses ? 0 : 1;
}
