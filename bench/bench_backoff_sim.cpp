// Brooker's experiment ("Exponential Backoff And Jitter", 2015) in virtual time: N clients, one
// row, read then conditional write, ~5 ms one-way network with jitter; on a conflict each client
// backs off per its strategy and starts over, until its write applies. One benchmark per
// (strategy, N); its counters are the means over `seeds` seeded runs:
//
//   writes           total write attempts (N of them succeed)
//   wasted           writes - N (refused writes)
//   completion_ms    when the last client finished
//   mean_finish_ms   mean finish time
//
// Every backoff strategy runs through noclobber::retry_controller (the same decision logic as
// cas_retry), so this also exercises the library. `lock_cas` puts a FIFO per-key lock in front
// for clients in one process (the object_store_file fix's second layer); `lock_cas_4proc` spreads the clients
// over 4 processes, each with its lock, contending with full jitter.
//
// The wall time Google Benchmark prints is the cost of the simulation itself, not a result.
// scripts/plot_backoff.sh turns the JSON output into docs/img/backoff_*.svg.
#include <benchmark/benchmark.h>

#include <chrono>
#include <climits>
#include <memory>
#include <string>
#include <vector>

#include "noclobber/backoff.hpp"
#include "noclobber/cas_retry.hpp"
#include "sim/backoff_sim.hpp"

namespace {

using namespace std::chrono_literals;
using noclobber::backoff_policy;
namespace sim = noclobber::sim;

constexpr int seeds = 100;

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

struct strategy {
  std::string name;
  backoff_policy backoff;
  unsigned processes;  // 0: no lock
};

std::vector<strategy> strategies() {
  const std::chrono::nanoseconds base = 10ms, cap = 1s;
  return {
      {"none", backoff_policy::immediate(), 0},
      {"exponential", backoff_policy::exponential(base, cap), 0},
      {"full_jitter", backoff_policy::full_jitter(base, cap), 0},
      {"equal_jitter", backoff_policy::equal_jitter(base, cap), 0},
      {"decorrelated_jitter", backoff_policy::decorrelated_jitter(base, cap), 0},
      {"full_jitter_tuned", backoff_policy::full_jitter(30ms, cap, 3.0), 0},  // commit_rate minus the meter
      {"commit_rate", backoff_policy::commit_rate(), 0},
      {"lock_cas", backoff_policy::full_jitter(base, cap), 1},
      {"lock_cas_4proc", backoff_policy::full_jitter(base, cap), 4},
  };
}

void run(benchmark::State& state, const strategy& s) {
  const auto clients = static_cast<unsigned>(state.range(0));
  noclobber::retry_policy policy;
  policy.backoff = s.backoff;
  policy.max_attempts = UINT_MAX;
  double writes = 0, completion = 0, mean_finish = 0, max_one = 0;
  for (auto _ : state) {
    writes = completion = mean_finish = max_one = 0;
    for (int seed = 1; seed <= seeds; ++seed) {
      sim::sim_config cfg;
      cfg.clients = clients;
      cfg.processes = s.processes;
      cfg.seed = static_cast<std::uint64_t>(seed);
      const auto r = sim::simulate(cfg, [&] { return std::make_unique<controller_strategy>(policy); });
      writes += static_cast<double>(r.writes);
      completion += static_cast<double>(r.completion.count()) / 1e6;
      mean_finish += static_cast<double>(r.mean_completion.count()) / 1e6;
      max_one += r.max_writes_one_client;
    }
  }
  state.counters["clients"] = clients;
  state.counters["writes"] = writes / seeds;
  state.counters["wasted"] = writes / seeds - clients;
  state.counters["completion_ms"] = completion / seeds;
  state.counters["mean_finish_ms"] = mean_finish / seeds;
  state.counters["max_writes_one_client"] = max_one / seeds;
}

const bool registered = [] {
  for (const auto& s : strategies()) {
    benchmark::RegisterBenchmark(("sim/" + s.name).c_str(), [s](benchmark::State& st) { run(st, s); })
        ->ArgName("clients")
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
