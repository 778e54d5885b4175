// The race harness proof shared by the scenario tests (tests/sqlite, tests/servers): 16 writers,
// one connection each, on the scenario's own table (or hash) through its typed store. Naive
// (read, compute, overwrite) loses exactly 15 of 16 forced writes; read_modify_write loses none
// over 16 x 25 operations.
#pragma once

#include <noclobber/catch2/race_harness.hpp>
#include <noclobber/race_harness.hpp>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace noclobber_test {

inline constexpr unsigned scenario_writers = 16;
inline constexpr unsigned scenario_ops = 25;

template <class Store, class Make>
void prove_with_harness(const std::string& scenario, Make make,
                        noclobber::race_workload<noclobber::store_value_t<Store>> workload,
                        std::vector<noclobber::store_key_t<Store>> naive_keys,
                        std::vector<noclobber::store_key_t<Store>> cas_keys) {
  namespace nc = noclobber;
  auto options = [&](const char* strategy, nc::race_mode mode, unsigned ops, auto keys) {
    nc::race_options_for<Store> o;
    o.writers = scenario_writers;
    o.ops_per_writer = ops;
    o.mode = mode;
    o.keys = std::move(keys);
    o.workload = workload;
    o.store_name = scenario;
    o.strategy_name = strategy;
    o.barrier_timeout = std::chrono::milliseconds(5000);
    return o;
  };
  const auto naive = nc::run_race_per_writer(make, nc::naive_strategy{},
                                             options("naive", nc::race_mode::forced, 1, naive_keys));
  INFO(naive.to_text());
  CHECK(naive.op_errors == 0);
  CHECK(naive.lost() == scenario_writers - 1);

  const auto cas = nc::run_race_per_writer(
      make, nc::cas_strategy{}, options("read_modify_write", nc::race_mode::forced, scenario_ops, cas_keys));
  INFO(cas.to_text());
  // One line per scenario for the record (the figures a report quotes).
  std::printf(
      "harness %s: naive lost %zu of %zu (%u writers x %u, forced); read_modify_write lost %zu of %zu "
      "(%u writers x %u, forced), %zu retries\n",
      scenario.c_str(), naive.lost(), naive.operations, naive.writers, naive.ops_per_writer, cas.lost(),
      cas.operations, cas.writers, cas.ops_per_writer, cas.retries);
  CHECK(cas.op_errors == 0);
  CHECK(cas.check.applied == scenario_writers * scenario_ops);
  NOCLOBBER_CHECK_NO_LOST_UPDATES(cas);
}

}  // namespace noclobber_test
