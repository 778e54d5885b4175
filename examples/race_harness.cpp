// example: examples/race_harness.cpp
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>

#include <iostream>
#include <string>

int main() {
  noclobber::memory_store<std::string, std::string> store;  // any conditional_writer store

  noclobber::race_options<std::string, std::string> opt;
  opt.writers = 8;                          // 8 threads, one op each, on one key
  opt.mode = noclobber::race_mode::forced;  // all read first, then all write
  opt.strategy_name = "naive";
  auto naive = noclobber::run_race(store, noclobber::naive_strategy{}, opt);
  std::cout << naive.to_text();  // LOST UPDATES: 7 ... trace ... replay

  opt.strategy_name = "cas";
  auto cas = noclobber::run_race(store, noclobber::cas_strategy{}, opt);
  std::cout << cas.to_text();  // lost updates: 0

  return naive.lost() == 7 && cas.ok() ? 0 : 1;
}
