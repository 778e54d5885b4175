// What the scenario tests (tests/sqlite, tests/servers) share:
//
//   prove_with_harness        the race harness proof: 16 writers, one connection each, on the
//                             scenario's own table (or hash) through its typed store. Naive (read,
//                             compute, overwrite) loses exactly 15 of 16 forced writes;
//                             read_modify_write loses none over 16 x 25 operations.
//   model, race_cache_refresh the model cache refresh raced for real on any store of `model`:
//                             8 editors (read_modify_write) and 8 refreshers (a sparse patch of
//                             the cache at the revision loaded, dropped when the model moved)
//                             start behind a latch, 25 rounds each.
//   patient                   a retry policy for many writers on one key.
#pragma once

#include <noclobber/catch2/race_harness.hpp>
#include <noclobber/race_harness.hpp>

#include <noclobber/adapters/table_patch.hpp>
#include <noclobber/patch_if_unchanged.hpp>
#include <noclobber/read_modify_write.hpp>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <latch>
#include <optional>
#include <string>
#include <thread>
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

/// Many attempts with short jittered backoff: many writers on one key.
inline noclobber::retry_policy patient() {
  noclobber::retry_policy p;
  p.max_attempts = 10000;
  p.backoff =
      noclobber::backoff_policy::full_jitter(std::chrono::microseconds(50), std::chrono::milliseconds(2));
  return p;
}

/// The model of the cache refresh scenario, as its services keep it.
struct model {
  std::string description;                 // what editors change
  std::int64_t edits = 0;                  // how many edits it has had
  std::vector<std::string> columns;        // cache: resolved columns (a JSON column)
  std::optional<std::string> backing_sql;  // cache
  std::optional<std::string> data_source;  // cache
  friend bool operator==(const model&, const model&) = default;
};

struct refresh_counts {
  int applied = 0, dropped = 0, errors = 0;
};

/// 8 editors and 8 refreshers on `key` (see the overview), each with its own store from
/// `make()`. `spec.set` builds the refreshers' patch (a table_spec or a redis::hash_spec).
template <class Make, class Key, class Spec>
refresh_counts race_cache_refresh(Make make, const Key& key, const Spec& spec) {
  namespace nc = noclobber;
  constexpr int editors = 8, refreshers = 8, rounds = 25;
  std::atomic<int> applied{0}, dropped{0}, errors{0};
  std::latch start(editors + refreshers);
  std::vector<std::thread> threads;
  for (int i = 0; i < editors + refreshers; ++i) {
    threads.emplace_back([&, i] {
      auto s = make();
      start.arrive_and_wait();
      for (int round = 0; round < rounds; ++round) {
        if (i < editors) {
          auto r = nc::read_modify_write(
              s, key,
              [&](const std::optional<model>& m) -> nc::update<model> {
                model next = *m;
                ++next.edits;
                next.description = "edit " + std::to_string(i) + "." + std::to_string(round);
                return next;
              },
              patient());
          if (!r.ok()) ++errors;
          continue;
        }
        auto loaded = s.read(key);
        if (!loaded.found()) {
          ++errors;
          continue;
        }
        nc::table_patch p;  // what the read path resolves from the model it loaded
        spec.set(p, &model::columns,
                 std::vector<std::string>{"region", "total-" + std::to_string(loaded.value.edits)});
        spec.set(p, &model::backing_sql,
                 std::optional<std::string>("SELECT region, sum(x) FROM t /*" +
                                            std::to_string(loaded.value.edits) + "*/"));
        spec.set(p, &model::data_source, std::optional<std::string>("warehouse"));
        auto r = nc::patch_if_unchanged(s, key, loaded.token, p, nc::patch_conflict::drop, patient());
        if (r.outcome == nc::patch_outcome::applied) {
          ++applied;
        } else if (r.outcome == nc::patch_outcome::dropped) {
          ++dropped;
        } else {
          ++errors;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return {applied.load(), dropped.load(), errors.load()};
}

}  // namespace noclobber_test
