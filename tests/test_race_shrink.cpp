// Shrinking a losing explore run (race_harness/shrink.hpp) and the written-out schedules it
// works on (race_harness/schedule.hpp): the 16 × 5 naive run shrinks to 2 writers × 1 op that
// lose in every replay, the same input shrinks the same way, a written-out schedule replays the
// seeded run it came from, and bad input is refused.
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>

#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <vector>

namespace nc = noclobber;

namespace {

using store_t = nc::memory_store<std::string, std::string>;
using options_t = nc::race_options_for<store_t>;

options_t explore(unsigned writers, unsigned ops, std::uint64_t seed) {
  options_t o;
  o.mode = nc::race_mode::explore;
  o.writers = writers;
  o.ops_per_writer = ops;
  o.seed = seed;
  o.stall_timeout = std::chrono::seconds(5);  // naive never blocks: only a descheduled thread could stall
  return o;
}

}  // namespace

TEST_CASE("shrink: 16 naive writers × 5 ops shrink to 2 writers × 1 op that lose every time",
          "[race_harness][shrink][concurrency]") {
  store_t store;
  const options_t o = explore(16, 5, 7);
  const auto report = nc::run_race(store, nc::naive_strategy{}, o);
  INFO(report.to_text());
  REQUIRE(report.lost() > 0);
  REQUIRE(report.plan.priority.size() == 16);

  const auto shrunk = nc::shrink_race(store, nc::naive_strategy{}, o, report);
  INFO(shrunk.to_text());
  REQUIRE(shrunk.reproduced);
  REQUIRE_FALSE(shrunk.budget_exhausted);
  REQUIRE(shrunk.original.lost() == report.lost());
  // A lost update needs two writers, one op each, and one preemption between a read and a write.
  REQUIRE(shrunk.shrunk.plan.priority.size() == 2);
  REQUIRE(shrunk.shrunk.plan.ops.size() == 2);
  REQUIRE(shrunk.shrunk.plan.ops[0].writer != shrunk.shrunk.plan.ops[1].writer);
  REQUIRE(shrunk.shrunk.plan.preemptions.size() == 1);
  REQUIRE(shrunk.shrunk.operations == 2);
  REQUIRE(shrunk.shrunk.lost() == 1);
  REQUIRE(shrunk.shrunk.steps < report.steps / 10);
  REQUIRE(shrunk.confirmations == 10);
  REQUIRE(shrunk.confirmed_losing == 10);
  REQUIRE(shrunk.ok());
  CHECK_THAT(shrunk.to_text(), Catch::Contains("16 writers × 5 ops") &&
                                   Catch::Contains("→ 2 writers × 1 op") &&
                                   Catch::Contains("original: " + report.replay()) &&
                                   Catch::Contains("shrunk:   " + shrunk.shrunk.replay()));

  // The shrunk replay line, applied to fresh options, loses in every one of 20 replays, each on a
  // fresh store, with the same trace.
  options_t again = explore(1, 1, 0);
  again.apply_replay(shrunk.shrunk_replay);
  REQUIRE(again.writers == 16);
  REQUIRE(again.plan.priority == shrunk.shrunk.plan.priority);
  for (int i = 0; i < 20; ++i) {
    store_t fresh;
    const auto r = nc::run_race(fresh, nc::naive_strategy{}, again);
    INFO(r.to_text());
    REQUIRE(r.lost() == 1);
    REQUIRE(r.planned);
    REQUIRE(r.replay() == shrunk.shrunk_replay);
    REQUIRE(r.trace == shrunk.shrunk.trace);
  }
}

TEST_CASE("shrink: the same losing run shrinks to the same result", "[race_harness][shrink][concurrency]") {
  for (std::uint64_t seed : {3u, 7u, 11u}) {
    store_t store;
    options_t o = explore(8, 3, seed);
    o.keys = {"a", "b"};
    o.depth = 3;
    o.iterations = 30;
    const auto report = nc::run_race(store, nc::naive_strategy{}, o);
    if (report.lost() == 0) continue;
    const auto first = nc::shrink_race(store, nc::naive_strategy{}, o, report);
    store_t other;
    const auto second = nc::shrink_race(other, nc::naive_strategy{}, o, report);
    INFO(first.to_text());
    REQUIRE(first.ok());
    REQUIRE(first.shrunk_replay == second.shrunk_replay);
    REQUIRE(first.runs == second.runs);
    REQUIRE(first.shrunk.plan.priority.size() == 2);
    REQUIRE(first.shrunk.operations == 2);
  }
}

TEST_CASE("a written-out schedule replays the seeded run it came from",
          "[race_harness][shrink][concurrency]") {
  store_t store;
  options_t o = explore(6, 4, 5);
  o.depth = 4;
  o.keys = {"x", "y", "z"};
  o.iterations = 1;
  const auto seeded = nc::run_race(store, nc::naive_strategy{}, o);
  REQUIRE(seeded.plan.priority.size() == 6);
  REQUIRE(seeded.plan.preemptions.size() <= 3);
  REQUIRE(seeded.steps > 0);
  options_t planned = o;
  planned.plan = seeded.plan;
  const auto replayed = nc::run_race(store, nc::naive_strategy{}, planned);
  REQUIRE(replayed.planned);
  REQUIRE(replayed.lost() == seeded.lost());
  REQUIRE(replayed.trace == seeded.trace);
  REQUIRE(replayed.steps == seeded.steps);
  REQUIRE(replayed.plan.preemptions == seeded.plan.preemptions);
  REQUIRE(replayed.history.writes.size() == seeded.history.writes.size());
  for (std::size_t i = 0; i < seeded.history.writes.size(); ++i) {
    CHECK(replayed.history.writes[i].writer == seeded.history.writes[i].writer);
    CHECK(replayed.history.writes[i].invoke == seeded.history.writes[i].invoke);
  }
}

TEST_CASE("a written-out schedule: ops left out keep their numbers and keys",
          "[race_harness][shrink][concurrency]") {
  store_t store;
  options_t o = explore(4, 3, 9);
  o.keys = {"a", "b", "c", "d"};
  o.plan.priority = {3, 1};
  o.plan.ops = {{1, 2}, {3, 0}};
  const auto r = nc::run_race(store, nc::naive_strategy{}, o);
  REQUIRE(r.operations == 2);
  std::set<std::pair<std::uint32_t, std::uint32_t>> ran;
  for (const auto& w : r.history.writes) ran.insert({w.writer, w.op});
  REQUIRE(ran == std::set<std::pair<std::uint32_t, std::uint32_t>>{{1, 2}, {3, 0}});
  // The same ops of the full run chose the same keys.
  options_t full = explore(4, 3, 9);
  full.keys = o.keys;
  const auto all = nc::run_race(store, nc::naive_strategy{}, full);
  for (const auto& w : r.history.writes) {
    for (const auto& f : all.history.writes)
      if (f.writer == w.writer && f.op == w.op) CHECK(f.key == w.key);
  }
  // Without preemptions the highest-priority writer runs first, to its end.
  REQUIRE(r.history.writes.size() == 2);
  const auto& w0 = r.history.writes[0];
  const auto& w1 = r.history.writes[1];
  CHECK((w0.invoke < w1.invoke ? w0 : w1).writer == 3);
  CHECK(r.lost() == 0);
}

TEST_CASE("replay lines carry written-out schedules", "[race_harness][shrink]") {
  options_t o;
  o.apply_replay("mode=explore writers=16 ops=5 seed=7 depth=2 priority=9,3 preempt=3.0.1,9.4.0 run=3.0,9.4");
  REQUIRE(o.plan.priority == std::vector<std::uint32_t>{9, 3});
  REQUIRE(o.plan.preemptions == std::vector<nc::race_preemption>{{3, 0, 1}, {9, 4, 0}});
  REQUIRE(o.plan.ops == std::vector<nc::race_op_ref>{{3, 0}, {9, 4}});
  REQUIRE(o.plan.replay_tokens() == "priority=9,3 preempt=3.0.1,9.4.0 run=3.0,9.4");
  REQUIRE_THROWS_WITH(o.apply_replay("preempt=3.0"), Catch::Contains("'preempt'"));
  REQUIRE_THROWS_WITH(o.apply_replay("priority=3,,4"), Catch::Contains("'3,,4'"));
  REQUIRE_THROWS_WITH(o.apply_replay("run=3.0;"), Catch::Contains("'run'"));
}

TEST_CASE("shrink and written-out schedules refuse what they cannot use",
          "[race_harness][shrink][concurrency]") {
  store_t store;
  SECTION("a run that did not lose, or was not explored") {
    const auto cas = nc::run_race(store, nc::cas_strategy{}, explore(4, 2, 1));
    REQUIRE(cas.ok());
    REQUIRE_THROWS_WITH(nc::shrink_race(store, nc::cas_strategy{}, explore(4, 2, 1), cas),
                        Catch::Contains("did not lose"));
    options_t forced;
    forced.writers = 4;
    const auto f = nc::run_race(store, nc::naive_strategy{}, forced);
    REQUIRE(f.lost() == 3);
    REQUIRE_THROWS_WITH(nc::shrink_race(store, nc::naive_strategy{}, forced, f), Catch::Contains("explore"));
  }
  SECTION("plans naming writers or ops outside the run") {
    options_t o = explore(4, 2, 1);
    o.plan.priority = {5};
    REQUIRE_THROWS_WITH(nc::run_race(store, nc::naive_strategy{}, o), Catch::Contains("writer 5"));
    o.plan.priority = {1, 1};
    REQUIRE_THROWS_WITH(nc::run_race(store, nc::naive_strategy{}, o), Catch::Contains("twice"));
    o.plan.priority = {1};
    o.plan.ops = {{1, 2}};
    REQUIRE_THROWS_WITH(nc::run_race(store, nc::naive_strategy{}, o), Catch::Contains("op 2"));
    o.plan.ops = {{2, 0}};
    REQUIRE_THROWS_WITH(nc::run_race(store, nc::naive_strategy{}, o), Catch::Contains("not in priority"));
    o.plan.ops.clear();
    o.mode = nc::race_mode::forced;
    REQUIRE_THROWS_WITH(nc::run_race(store, nc::naive_strategy{}, o), Catch::Contains("mode explore"));
  }
}

TEST_CASE("ddmin finds a 1-minimal failing subset, deterministically", "[race_harness][shrink]") {
  std::vector<int> items;
  for (int i = 0; i < 40; ++i) items.push_back(i);
  int tests = 0;
  auto fails = [&](const std::vector<int>& s) {
    ++tests;
    const auto has = [&](int x) { return std::find(s.begin(), s.end(), x) != s.end(); };
    return has(3) && has(17) && has(31);
  };
  REQUIRE(nc::detail::ddmin(items, fails) == std::vector<int>{3, 17, 31});
  CHECK(tests < 200);
  // The empty set is tried last: a failure that needs nothing shrinks to nothing.
  REQUIRE(nc::detail::ddmin(items, [](const std::vector<int>&) { return true; }).empty());
}

TEST_CASE("explore on 64 writers replays identically and shrinks to 2 writers × 1 op",
          "[race_harness][shrink][concurrency]") {
  store_t store;
  options_t o = explore(64, 3, 5);
  o.iterations = 20;
  const auto report = nc::run_race(store, nc::naive_strategy{}, o);
  INFO(report.to_text());
  REQUIRE(report.lost() > 0);
  REQUIRE(report.stalls == 0);
  REQUIRE(report.replay_deterministic == std::optional<bool>(true));
  // Its written-out schedule, run three more times on fresh stores: the same interleaving.
  options_t planned = o;
  planned.plan = report.plan;
  for (int i = 0; i < 3; ++i) {
    store_t fresh;
    const auto again = nc::run_race(fresh, nc::naive_strategy{}, planned);
    REQUIRE(again.lost() == report.lost());
    REQUIRE(again.trace == report.trace);
    REQUIRE(again.steps == report.steps);
  }
  const auto shrunk = nc::shrink_race(store, nc::naive_strategy{}, o, report);
  INFO(shrunk.to_text());
  REQUIRE(shrunk.ok());
  REQUIRE(shrunk.shrunk.plan.priority.size() == 2);
  REQUIRE(shrunk.shrunk.operations == 2);
}
