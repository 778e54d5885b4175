// Shared by tests/servers/test_server_harness_*.cpp: each server adapter proven by the race
// harness against its real server, 16 writers and 2,000 operations (16 × 125): the naive blind
// read-modify-write loses updates (in the forced window, so for sure), CAS and lock + CAS lose none. One
// store object (one connection) per writer, as the adapters require. One executable per server keeps each
// under ~20 s with ThreadSanitizer.
#pragma once

#include <noclobber/race_harness.hpp>

#include <memory>

#include "server_env.hpp"

namespace nc_harness {

constexpr unsigned writers = 16;
constexpr unsigned ops_per_writer = 125;  // 2,000 operations

template <class Store>
inline noclobber::race_options_for<Store> options(const std::string& store_name, const std::string& strategy,
                                                  noclobber::race_mode mode, unsigned ops,
                                                  std::vector<std::string> keys) {
  noclobber::race_options_for<Store> o;
  o.writers = writers;
  o.ops_per_writer = ops;
  o.mode = mode;
  o.keys = std::move(keys);
  o.store_name = store_name;
  o.strategy_name = strategy;
  o.barrier_timeout = std::chrono::milliseconds(2000);
  return o;
}

inline std::vector<std::string> fresh_keys(const std::string& prefix, int n) {
  std::vector<std::string> keys;
  const std::string base = nc_test::unique_name(prefix);
  for (int i = 0; i < n; ++i) keys.push_back(base + "-" + std::to_string(i));
  return keys;
}

// The same proof for every adapter. `make(i)` returns a std::unique_ptr<Store>, one connection.
template <class Store, class Make>
void prove_adapter(const std::string& name, Make make, int keys = 4) {
  using noclobber::race_mode;
  SECTION("naive, forced window: 15 of 16 writes lost") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::naive_strategy{},
        options<Store>(name, "naive", race_mode::forced, 1, fresh_keys("naive-forced", 1)));
    INFO(r.to_text());
    CHECK(r.op_errors == 0);
    CHECK(r.lost() == writers - 1);
  }
  SECTION("naive, forced window then 2,000 ops: updates lost") {
    // The forced window holds every read: in each round, of the writers that read the same key
    // all but one are lost for sure; at least W - K in the first round alone.
    auto r = noclobber::run_race_per_writer(
        make, noclobber::naive_strategy{},
        options<Store>(name, "naive", race_mode::forced, ops_per_writer, fresh_keys("naive-stress", keys)));
    INFO(r.to_text());
    CHECK(r.operations == writers * ops_per_writer);
    CHECK_FALSE(r.writers_serialised);
    CHECK(r.lost() >= writers - static_cast<unsigned>(keys));
  }
  SECTION("CAS, forced window then 2,000 ops: nothing lost") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::cas_strategy{},
        options<Store>(name, "cas", race_mode::forced, ops_per_writer, fresh_keys("cas", keys)));
    INFO(r.to_text());
    CHECK(r.operations == writers * ops_per_writer);
    CHECK(r.op_errors == 0);
    CHECK(r.check.applied >= writers * ops_per_writer);
    CHECK(r.lost() == 0);
    CHECK(r.check.ok());
  }
  SECTION("lock + CAS, 2,000 ops: nothing lost") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::locked_cas_strategy<std::string>{},
        options<Store>(name, "lock+cas", race_mode::stress, ops_per_writer, fresh_keys("locked", keys)));
    INFO(r.to_text());
    CHECK(r.operations == writers * ops_per_writer);
    CHECK(r.op_errors == 0);
    CHECK(r.lost() == 0);
    CHECK(r.check.ok());
  }
}

}  // namespace nc_harness
