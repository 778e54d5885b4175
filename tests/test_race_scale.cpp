// The race harness at scale (issue 18): the forced window held on every read, not only each
// writer's first; explore on 64 writers replaying to the same signature and verdict; the overlap
// every report measures (race_harness/overlap.hpp), forced where a test depends on it.
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace nc = noclobber;

namespace {

using store_t = nc::memory_store<std::string, std::string>;
using options_t = nc::race_options_for<store_t>;
using view_t = nc::race_store<store_t>;
using modify_t = nc::race_modify<std::string>;

options_t make_options(nc::race_mode mode, unsigned writers, unsigned ops) {
  options_t o;
  o.mode = mode;
  o.writers = writers;
  o.ops_per_writer = ops;
  // Long enough that only a store or strategy that never lets the others read can time it out,
  // short enough that a harness bug shows as "serialised", not as a hung test.
  o.barrier_timeout = std::chrono::seconds(30);
  o.stall_timeout = std::chrono::seconds(10);  // memory_store never blocks: only descheduling could stall
  return o;
}

// read, compute, overwrite: the naive read-modify-write, spelled out so tests can put steps around it.
std::optional<std::string> read_value(view_t& store, const std::string& key) {
  auto r = store.read(key);
  return r.found() ? std::optional<std::string>(r.value) : std::nullopt;
}

// A flag one thread raises and another waits for (with a limit).
class flag {
 public:
  void raise() {
    {
      std::lock_guard<std::mutex> lock(m_);
      up_ = true;
    }
    cv_.notify_all();
  }
  bool wait_for(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(m_);
    return cv_.wait_for(lock, limit, [&] { return up_; });
  }
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [&] { return up_; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool up_ = false;
};

}  // namespace

TEST_CASE("forced holds the window on every read: a second op loses only when its read is held",
          "[race_harness][forced]") {
  // Two naive writers, two ops each. Op 0 races in the forced window (one loss). Op 1 is made
  // sequential by the strategy itself: W1 starts it once W2's op 0 is written, and W2 reads only
  // after W1's op-1 write, or after 500 ms if W1 does not write by then. Held on its read, W1
  // cannot write before W2 has read, so W2 reads after 500 ms the same version W1 read: op 1
  // loses too. With only the first read held, W1 writes op 1 at once, W2 reads it: no op-1 loss.
  store_t store;
  flag w2_wrote_op0;
  flag w1_wrote_op1;
  std::atomic<int> failed_writes{0};
  std::vector<int> ops_done(3, 0);  // per writer number; each element touched by its own thread only
  auto strategy = [&](view_t& s, const std::string& key, modify_t& fn) {
    const std::uint32_t w = s.writer();
    const int op = ops_done[w]++;
    if (w == 1 && op == 1) w2_wrote_op0.wait();
    if (w == 2 && op == 1) (void)w1_wrote_op1.wait_for(std::chrono::milliseconds(500));
    const std::string v = fn(read_value(s, key));
    if (!s.overwrite(key, v).ok()) failed_writes.fetch_add(1);  // Catch2 asserts on this thread only
    if (w == 2 && op == 0) w2_wrote_op0.raise();
    if (w == 1 && op == 1) w1_wrote_op1.raise();
  };
  const auto report = nc::run_race(store, strategy, make_options(nc::race_mode::forced, 2, 2));
  INFO(report.to_text());
  REQUIRE(failed_writes.load() == 0);
  REQUIRE_FALSE(report.writers_serialised);
  REQUIRE(report.check.applied == 4);
  REQUIRE(report.lost() == 2);
  std::vector<std::uint32_t> lost_ops;
  for (const auto& l : report.check.lost) lost_ops.push_back(l.lost.op);
  std::sort(lost_ops.begin(), lost_ops.end());
  REQUIRE(lost_ops == std::vector<std::uint32_t>{0, 1});
}

TEST_CASE("forced naive writers lose W - 1 in every round of K ops, every window overlapping",
          "[race_harness][forced]") {
  // Every op's read is held until all writers have read, so no op's write comes before another
  // writer's read of the same round: a round's writes all read versions from earlier rounds, the
  // final chain holds at most one write per round, and at least K × (W − 1) are lost.
  constexpr unsigned writers = 8;
  constexpr unsigned ops = 25;
  store_t store;
  const auto report =
      nc::run_race(store, nc::naive_strategy{}, make_options(nc::race_mode::forced, writers, ops));
  INFO(report.to_text());
  REQUIRE_FALSE(report.writers_serialised);
  REQUIRE(report.check.applied == writers * ops);
  REQUIRE(report.lost() >= ops * (writers - 1));
  REQUIRE(report.overlap.windows == writers * ops);
  REQUIRE(report.overlap.overlapping == writers * ops);
  REQUIRE(report.overlap.most_at_once == writers);
}

TEST_CASE("forced: writers that read more, fewer or never do not hold the others", "[race_harness][forced]") {
  SECTION("CAS retries read again and again; 64 writers × 4 ops on one key") {
    store_t store;
    const auto report = nc::run_race(store, nc::cas_strategy{}, make_options(nc::race_mode::forced, 64, 4));
    INFO(report.to_text());
    REQUIRE_FALSE(report.writers_serialised);
    REQUIRE(report.ok());
    REQUIRE(report.op_errors == 0);
    REQUIRE(report.check.applied == 64 * 4);
    // Held on every read, each round's retries all conflict again: one write applies per round.
    REQUIRE(report.retries >= 64 * 4 * 8);
    REQUIRE(report.overlap.overlapping > 0);
  }
  SECTION("odd writers overwrite blind (no read): they never arrive, and leave when done") {
    store_t store;
    auto strategy = [](view_t& s, const std::string& key, modify_t& fn) {
      if (s.writer() % 2 == 1) {
        (void)s.overwrite(key, fn(std::optional<std::string>()));
      } else {
        (void)s.overwrite(key, fn(read_value(s, key)));
      }
    };
    const auto report = nc::run_race(store, strategy, make_options(nc::race_mode::forced, 8, 10));
    INFO(report.to_text());
    REQUIRE_FALSE(report.writers_serialised);
    REQUIRE(report.check.applied == 8 * 10);
    REQUIRE(report.overlap.windows == 4 * 10);  // blind writes have no window
  }
}

TEST_CASE("explore on 64 writers is deterministic: the same seed gives the same signature and verdict",
          "[race_harness][explore]") {
  auto run = [](auto strategy, std::uint64_t seed) {
    store_t store;
    auto o = make_options(nc::race_mode::explore, 64, 2);
    o.seed = seed;
    o.iterations = 3;
    o.depth = 3;
    return nc::run_race(store, strategy, o);
  };
  int losing_seeds = 0;
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    const auto naive_a = run(nc::naive_strategy{}, seed);
    const auto naive_b = run(nc::naive_strategy{}, seed);
    INFO(naive_a.to_text());
    INFO(naive_b.to_text());
    REQUIRE(naive_a.stalls == 0);
    REQUIRE(naive_b.stalls == 0);
    REQUIRE(naive_a.signature != 0);
    REQUIRE(naive_a.signature == naive_b.signature);
    REQUIRE(naive_a.schedule_seed == naive_b.schedule_seed);
    REQUIRE(naive_a.steps == naive_b.steps);
    REQUIRE(naive_a.lost() == naive_b.lost());
    REQUIRE(naive_a.failing_iterations == naive_b.failing_iterations);
    REQUIRE(naive_a.trace == naive_b.trace);
    REQUIRE(naive_a.overlap.overlapping == naive_b.overlap.overlapping);
    REQUIRE(naive_a.replay_deterministic == naive_b.replay_deterministic);

    const auto cas_a = run(nc::cas_strategy{}, seed);
    const auto cas_b = run(nc::cas_strategy{}, seed);
    INFO(cas_a.to_text());
    REQUIRE(cas_a.stalls == 0);
    REQUIRE(cas_b.stalls == 0);
    REQUIRE(cas_a.ok());
    REQUIRE(cas_b.ok());
    REQUIRE(cas_a.signature == cas_b.signature);
    REQUIRE(cas_a.steps == cas_b.steps);
    REQUIRE(cas_a.retries == cas_b.retries);
    if (!naive_a.ok()) ++losing_seeds;
  }
  REQUIRE(losing_seeds > 0);  // the losing verdict replays too, not only the clean one
  // The signature is not a constant: another seed, another interleaving.
  REQUIRE(run(nc::cas_strategy{}, 1).signature != run(nc::cas_strategy{}, 2).signature);
}

TEST_CASE("overlap: a serialised strategy shows none, forced naive writers show all",
          "[race_harness][overlap]") {
  SECTION("lock + CAS in stress and in forced mode: every window alone, and the report says so") {
    for (auto mode : {nc::race_mode::stress, nc::race_mode::forced}) {
      store_t store;
      auto o = make_options(mode, 8, 20);
      o.barrier_timeout = std::chrono::milliseconds(100);  // forced: the lock makes it time out
      const auto report = nc::run_race(store, nc::locked_cas_strategy<std::string>{}, o);
      INFO(report.to_text());
      REQUIRE(report.ok());
      REQUIRE(report.overlap.windows >= 8 * 20);
      REQUIRE(report.overlap.overlapping == 0);
      REQUIRE(report.overlap.most_at_once == 1);
      CHECK_THAT(report.to_text(), Catch::Contains("NO OVERLAP") && Catch::Contains("0 of "));
      CHECK_THAT(report.to_json(),
                 Catch::Contains("\"overlap\":{\"windows\":" + std::to_string(report.overlap.windows) +
                                 ",\"overlapping\":0,\"most_at_once\":1}"));
    }
  }
  SECTION("naive, forced: every window overlaps, all writers at once") {
    store_t store;
    const auto report = nc::run_race(store, nc::naive_strategy{}, make_options(nc::race_mode::forced, 16, 1));
    INFO(report.to_text());
    REQUIRE(report.overlap.windows == 16);
    REQUIRE(report.overlap.overlapping == 16);
    REQUIRE(report.overlap.most_at_once == 16);
    CHECK_THAT(report.to_text(), Catch::Contains("overlap: 16 of 16") && !Catch::Contains("NO OVERLAP"));
  }
  SECTION("naive, stress: the strategy itself holds every writer between read and write") {
    // Stress mode never pauses anyone; a std::barrier inside the strategy forces the overlap so
    // that the test does not depend on how the threads happened to run.
    constexpr unsigned writers = 6;
    constexpr unsigned ops = 10;
    std::barrier<> between(writers);
    auto strategy = [&](view_t& s, const std::string& key, modify_t& fn) {
      const std::string v = fn(read_value(s, key));
      between.arrive_and_wait();
      (void)s.overwrite(key, v);
    };
    store_t store;
    const auto report = nc::run_race(store, strategy, make_options(nc::race_mode::stress, writers, ops));
    INFO(report.to_text());
    REQUIRE(report.overlap.windows == writers * ops);
    REQUIRE(report.overlap.overlapping == writers * ops);
    REQUIRE(report.overlap.most_at_once >= 2);
    REQUIRE(report.lost() > 0);
  }
}

TEST_CASE("measure_overlap on hand-written histories", "[race_harness][overlap]") {
  nc::race_history h;
  h.keys = {"a", "b"};
  h.initial_versions = {0, 0};
  auto read = [&](std::uint32_t writer, std::uint32_t op, std::uint32_t key, nc::write_id v,
                  std::uint64_t at) {
    h.reads.push_back({writer, op, key, v, v != 0, at, at + 1});
  };
  auto write = [&](std::uint32_t writer, std::uint32_t op, std::uint32_t key, nc::write_id from,
                   nc::write_id id, std::uint64_t at) {
    nc::race_write w;
    w.writer = writer;
    w.op = op;
    w.key = key;
    w.read_from = from;
    w.written = id;
    w.outcome = nc::op_outcome::ok;
    w.kind = nc::write_kind::overwrite;
    w.invoke = at;
    w.complete = at + 1;
    h.writes.push_back(w);
  };
  const nc::write_id v1 = nc::make_write_id(1, 1, 1);
  const nc::write_id v2 = nc::make_write_id(2, 1, 1);
  const nc::write_id v3 = nc::make_write_id(3, 1, 1);
  const nc::write_id v4 = nc::make_write_id(4, 1, 1);

  SECTION("one after the other: no overlap, even touching") {
    read(1, 0, 0, 0, 0);
    write(1, 0, 0, 0, v1, 2);  // W1's window: ticks 0 … 3
    read(2, 0, 0, v1, 4);
    write(2, 0, 0, v1, v2, 6);  // W2's: 4 … 7
    const auto o = nc::measure_overlap(h);
    CHECK(o.windows == 2);
    CHECK(o.overlapping == 0);
    CHECK(o.most_at_once == 1);
    CHECK(o.ratio() == 0.0);
  }
  SECTION("W2 reads inside W1's window: both overlap; W3 on another key and W4's blind write do not") {
    read(1, 0, 0, 0, 0);
    read(2, 0, 0, 0, 2);
    write(1, 0, 0, 0, v1, 4);
    write(2, 0, 0, 0, v2, 6);
    read(3, 0, 1, 0, 1);
    write(3, 0, 1, 0, v3, 8);    // key b, spans everything
    write(4, 0, 0, v2, v4, 10);  // no read: no window
    const auto o = nc::measure_overlap(h);
    CHECK(o.windows == 3);
    CHECK(o.overlapping == 2);
    CHECK(o.most_at_once == 2);
    CHECK(o.ratio() == Approx(2.0 / 3.0));
  }
  SECTION("a retry pairs with its own read; one writer's windows never overlap each other") {
    read(1, 0, 0, 0, 0);
    read(1, 0, 0, 0, 2);  // read again before writing: the write pairs with the later read
    write(1, 0, 0, 0, v1, 4);
    read(2, 0, 0, v1, 6);
    write(2, 0, 0, v1, v2, 8);
    const auto o = nc::measure_overlap(h);
    CHECK(o.windows == 2);
    CHECK(o.overlapping == 0);
  }
  SECTION("a write whose read saw another version has no window") {
    read(1, 0, 0, v3, 0);
    write(1, 0, 0, 0, v1, 2);
    CHECK(nc::measure_overlap(h).windows == 0);
  }
}
