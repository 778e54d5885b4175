// Brooker's experiment ("Exponential Backoff And Jitter", 2015) in virtual time: N clients, one
// row, read then conditional write, ~5 ms one-way network with jitter; on a conflict each client
// backs off per its strategy and starts over, until its write applies. One benchmark per
// (strategy, N); its counters are the means over `seeds` seeded runs:
//
//   writes           total write attempts (N of them succeed)
//   wasted           writes - N (refused writes)
//   completion_ms    when the last client finished
//   mean_finish_ms   mean finish time
//   bound            the writes no strategy can go below: 2N - 1 without a lock (sim/backoff_sim.hpp),
//                    N + P - 1 with P processes behind their locks
//   attempt_K        writes that were some client's K-th (attempt_6 counts the 6th and later):
//                    where the writes go
//   refused          retries a peer's governor refused (see sim/backoff_peers.hpp)
//
// Every noclobber strategy runs through noclobber::retry_controller (the same decision logic as
// cas_retry), fed the contention_meter data a real client has, so this also exercises the
// library. `lock_cas` puts a FIFO per-key lock in front for clients in one process (the
// object_store_file fix's second layer); `lock_cas_4proc` spreads the clients over 4 processes,
// each with its lock, contending with full jitter. The peers (aws_adaptive, grpc_throttling,
// finagle_budget) are sim/backoff_peers.hpp. `oracle` is no strategy anyone can run: it knows how
// many clients are still trying (m) and draws its window as 1.5 * m * 10 ms after the first
// retry — a reference for what knowing the crowd would buy.
//
// Two more families, named frontier/ (not plotted), back docs/backoff.md's bounds:
//   frontier/oracle_xF   the oracle with window F * m * 10 ms, F in {1, 1.5, 2, 3}: what knowing the
//                        crowd buys, and what it costs in time.
//   frontier/holdout     full_jitter and load_tracking on seeds 201 .. 600, which load_tracking's
//                        constants were not tuned on (they were searched on seeds 1 .. 200).
//   frontier/round2      how many second attempts can succeed at all: successes need pairwise
//                        disjoint server windows (read arrival .. write arrival) that start after
//                        the first commit; the counter is the mean size of the largest such set
//                        when the first retry waits d (uniform[0, 10 ms], which full jitter and
//                        load_tracking use; two-point {0, D} and exponential, each of mean 5 ms).
//
// The wall time Google Benchmark prints is the cost of the simulation itself, not a result.
// scripts/plot_backoff.sh turns the JSON output into docs/img/backoff_*.svg and the tables of
// docs/backoff.md.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "noclobber/backoff.hpp"
#include "noclobber/cas_retry.hpp"
#include "sim/backoff_peers.hpp"
#include "sim/backoff_sim.hpp"

namespace {

using namespace std::chrono_literals;
using noclobber::backoff_policy;
namespace sim = noclobber::sim;

constexpr int seeds = 100;
constexpr unsigned attempt_columns = 6;  // attempt_1 .. attempt_6 (6 and later)

// One client's decision logic: a retry_controller over a shared policy, fed the meter data a
// real client has (the version it read, when the read returned, when the refusal came).
class controller_strategy : public sim::client_strategy {
 public:
  explicit controller_strategy(const noclobber::retry_policy& p) : ctl_(p) {}
  sim::ns on_conflict(const sim::observation& o, std::mt19937_64& rng) override {
    ctl_.meter().observe(o.last_version, o.last_read, o.now);
    const auto d = ctl_.on_outcome(noclobber::write_status::conflict, {}, sim::ns(0), rng);
    return d.retry ? d.delay : sim::ns(0);  // never stops: max_attempts is unbounded
  }

 private:
  noclobber::retry_controller ctl_;
};

// Knows how many clients are still trying (cheats: see the file comment).
class oracle_strategy : public sim::client_strategy {
 public:
  oracle_strategy(unsigned clients, double factor) : clients_(clients), factor_(factor) {}
  sim::ns on_conflict(const sim::observation& o, std::mt19937_64& rng) override {
    // Every commit finished one client; the version this client read counts them.
    const double others =
        std::max(1.0, static_cast<double>(clients_) - static_cast<double>(o.last_version) - 1);
    const double window_ms = o.failures == 1 ? 10.0 : factor_ * others * 10.0;
    const auto window = static_cast<std::uint64_t>(window_ms * 1e6);
    return sim::ns(static_cast<std::int64_t>(noclobber::detail::uniform_0_to(rng, window)));
  }

 private:
  unsigned clients_;
  double factor_;
};

struct refusals {
  unsigned total = 0;
};

struct strategy {
  std::string name;
  unsigned processes;  // 0: no lock
  // Builds one client's strategy for a run with `clients` clients; adds the client's refusals to
  // `r` when the run ends (peers only).
  std::function<std::unique_ptr<sim::client_strategy>(unsigned clients, refusals& r)> make;
};

// Wraps a peer so that its refusal count is added up when the client is destroyed.
template <class Peer>
class counted : public Peer {
 public:
  explicit counted(refusals& r) : r_(r) {}
  ~counted() override { r_.total += this->refused(); }
  counted(const counted&) = delete;
  counted& operator=(const counted&) = delete;

 private:
  refusals& r_;
};

std::vector<strategy> strategies() {
  const std::chrono::nanoseconds base = 10ms, cap = 1s;
  auto policy = [](backoff_policy b) {
    auto p = std::make_shared<noclobber::retry_policy>();
    p->backoff = b;
    p->max_attempts = UINT_MAX;
    return p;
  };
  auto ours = [&](const std::string& name, backoff_policy b, unsigned processes = 0) {
    auto p = policy(b);
    return strategy{name, processes, [p](unsigned, refusals&) -> std::unique_ptr<sim::client_strategy> {
                      return std::make_unique<controller_strategy>(*p);
                    }};
  };
  return {
      ours("none", backoff_policy::immediate()),
      ours("exponential", backoff_policy::exponential(base, cap)),
      ours("full_jitter", backoff_policy::full_jitter(base, cap)),
      ours("equal_jitter", backoff_policy::equal_jitter(base, cap)),
      ours("decorrelated_jitter", backoff_policy::decorrelated_jitter(base, cap)),
      ours("full_jitter_tuned", backoff_policy::full_jitter(30ms, cap, 3.0)),  // commit_rate minus the meter
      ours("commit_rate", backoff_policy::commit_rate()),
      ours("load_tracking", backoff_policy::load_tracking()),
      {"aws_adaptive", 0,
       [](unsigned, refusals& r) { return std::make_unique<counted<sim::aws_adaptive_client>>(r); }},
      {"grpc_throttling", 0,
       [](unsigned, refusals& r) { return std::make_unique<counted<sim::grpc_throttling_client>>(r); }},
      {"finagle_budget", 0,
       [](unsigned, refusals& r) { return std::make_unique<counted<sim::finagle_budget_client>>(r); }},
      {"oracle", 0, [](unsigned n, refusals&) { return std::make_unique<oracle_strategy>(n, 1.5); }},
      ours("lock_cas", backoff_policy::full_jitter(base, cap), 1),
      ours("lock_cas_4proc", backoff_policy::full_jitter(base, cap), 4),
  };
}

// Seeds first_seed .. first_seed + count - 1; the sim/ rows use 1 .. 100.
struct seed_range {
  int first_seed = 1;
  int count = seeds;
};

void run(benchmark::State& state, const strategy& s, seed_range range = {}) {
  const auto clients = static_cast<unsigned>(state.range(0));
  double writes = 0, completion = 0, mean_finish = 0, max_one = 0;
  std::vector<double> by_attempt(attempt_columns, 0.0);
  refusals refused;
  for (auto _ : state) {
    writes = completion = mean_finish = max_one = 0;
    std::fill(by_attempt.begin(), by_attempt.end(), 0.0);
    refused = {};
    for (int seed = range.first_seed; seed < range.first_seed + range.count; ++seed) {
      sim::sim_config cfg;
      cfg.clients = clients;
      cfg.processes = s.processes;
      cfg.seed = static_cast<std::uint64_t>(seed);
      const auto r = sim::simulate(cfg, [&] { return s.make(clients, refused); });
      writes += static_cast<double>(r.writes);
      completion += static_cast<double>(r.completion.count()) / 1e6;
      mean_finish += static_cast<double>(r.mean_completion.count()) / 1e6;
      max_one += r.max_writes_one_client;
      for (std::size_t k = 0; k < r.writes_by_attempt.size(); ++k) {
        by_attempt[std::min<std::size_t>(k, attempt_columns - 1)] +=
            static_cast<double>(r.writes_by_attempt[k]);
      }
    }
  }
  state.counters["clients"] = clients;
  state.counters["writes"] = writes / range.count;
  state.counters["wasted"] = writes / range.count - clients;
  state.counters["completion_ms"] = completion / range.count;
  state.counters["mean_finish_ms"] = mean_finish / range.count;
  state.counters["max_writes_one_client"] = max_one / range.count;
  // Every first read, one per contender (lock holders only, with a lock), sees the same version.
  const unsigned contenders = s.processes ? std::min(s.processes, clients) : clients;
  state.counters["bound"] = clients + contenders - 1.0;
  state.counters["refused"] = static_cast<double>(refused.total) / range.count;
  for (unsigned k = 0; k < attempt_columns; ++k) {
    state.counters["attempt_" + std::to_string(k + 1)] = by_attempt[k] / range.count;
  }
}

// The largest set of second attempts that could all succeed (see the file comment), averaged.
double round2_disjoint(unsigned clients, const std::function<double(std::mt19937_64&)>& first_delay_ms) {
  std::mt19937_64 rng(1);
  auto one_way = [&] { return 2.5 + 5.0 * sim::peers::unit(rng); };  // the simulation's network, in ms
  constexpr int runs = 20'000;
  double total = 0;
  std::vector<std::pair<double, double>> windows;  // (read arrival, write arrival) of second attempts
  for (int run = 0; run < runs; ++run) {
    std::vector<double> write_at(clients), refused_at(clients);
    for (unsigned i = 0; i < clients; ++i) {
      write_at[i] = one_way() + one_way() + one_way();  // all reads arrive before any write
      refused_at[i] = write_at[i] + one_way();
    }
    const auto first =
        static_cast<unsigned>(std::min_element(write_at.begin(), write_at.end()) - write_at.begin());
    windows.clear();
    for (unsigned i = 0; i < clients; ++i) {
      if (i == first) continue;
      const double read_at = refused_at[i] + first_delay_ms(rng) + one_way();
      windows.emplace_back(read_at, read_at + one_way() + one_way());
    }
    std::sort(windows.begin(), windows.end(),
              [](const auto& a, const auto& b) { return a.second < b.second; });
    double free_from = write_at[first];  // a window must start after the last commit
    for (const auto& [read_at, written_at] : windows) {
      if (read_at >= free_from) {
        total += 1;
        free_from = written_at;
      }
    }
  }
  return total / runs;
}

void round2(benchmark::State& state) {
  const auto clients = static_cast<unsigned>(state.range(0));
  for (auto _ : state) {
    state.counters["uniform_0_10ms"] =
        round2_disjoint(clients, [](auto& g) { return 10 * sim::peers::unit(g); });
    for (double d : {10.0, 20.0, 30.0, 50.0}) {
      state.counters["two_point_0_" + std::to_string(static_cast<int>(d)) + "ms"] =
          round2_disjoint(clients, [d](auto& g) { return sim::peers::unit(g) < 5.0 / d ? d : 0.0; });
    }
    state.counters["exponential_5ms"] =
        round2_disjoint(clients, [](auto& g) { return -5.0 * std::log1p(-sim::peers::unit(g)); });
  }
  state.counters["clients"] = clients;
}

const bool registered = [] {
  for (const auto& s : strategies()) {
    if (s.name != "full_jitter" && s.name != "load_tracking") continue;
    benchmark::RegisterBenchmark(("frontier/holdout/" + s.name).c_str(),
                                 [s](benchmark::State& st) {
                                   run(st, s, seed_range{201, 400});
                                 })
        ->ArgName("clients")
        ->Arg(2)
        ->Arg(5)
        ->Arg(10)
        ->Arg(20)
        ->Arg(50)
        ->Arg(100)
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("frontier/round2", round2)
      ->ArgName("clients")
      ->Arg(5)
      ->Arg(10)
      ->Arg(20)
      ->Iterations(1);
  for (double factor : {1.0, 1.5, 2.0, 3.0}) {
    char name[40];
    std::snprintf(name, sizeof name, "frontier/oracle_x%g", factor);
    strategy s{name, 0,
               [factor](unsigned n, refusals&) { return std::make_unique<oracle_strategy>(n, factor); }};
    benchmark::RegisterBenchmark(name, [s](benchmark::State& st) { run(st, s); })
        ->ArgName("clients")
        ->Arg(20)
        ->Arg(50)
        ->Arg(100)
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }
  for (const auto& s : strategies()) {
    benchmark::RegisterBenchmark(("sim/" + s.name).c_str(), [s](benchmark::State& st) { run(st, s); })
        ->ArgName("clients")
        ->Arg(2)
        ->Arg(5)
        ->Arg(10)
        ->Arg(20)
        ->Arg(50)
        ->Arg(100)
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
