// Race harness benchmarks.
//
//   BM_check_chain/N         the checker on a clean history: N successful writes on 64 keys, each
//                            reading its predecessor, plus one failed attempt per 4 writes.
//   BM_check_naive/N         the checker on a lossy history: groups of 8 writes that read the same
//                            version, 7 of each lost (so the loss bookkeeping is exercised too).
//   BM_check_in_parts/P      check_race_history_in_parts on a 10 M-record clean history (1024 keys,
//                            chains as in BM_check_chain), generated part by part (P parts, keys
//                            k % P == part) so it never exists whole; max_rss_MiB is the process's
//                            peak resident memory (getrusage): run each P in its own process
//                            (--benchmark_filter='BM_check_in_parts/16$'). P = 1 holds it whole.
//   BM_serialise_history/N   serialize_history + append_history (runs across processes).
//   BM_rmw_direct / BM_rmw_in_harness (real time: the harness works on its own thread)
//                            read_modify_write on a memory_store, called directly vs through a
//                            1-writer stress run of the harness: the recording cost per op.
//
// items_per_second is write records (checker) or operations (rmw). Target (issue 16): checker
// ≥ 5 M records/s on a 1 M-record history; 10 M records in bounded memory.
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>

#include <benchmark/benchmark.h>

#include <sys/resource.h>

#include <string>

namespace nc = noclobber;

namespace {

nc::race_history chain_history(std::size_t n) {
  constexpr std::uint32_t keys = 64;
  nc::race_history h;
  for (std::uint32_t k = 0; k < keys; ++k) h.keys.push_back("k" + std::to_string(k));
  h.initial_versions.assign(keys, nc::initial_version);
  h.final_versions.assign(keys, nc::initial_version);
  h.writes.reserve(n + n / 4);
  std::uint64_t tick = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto key = static_cast<std::uint32_t>(i % keys);
    const std::uint32_t writer = 1 + static_cast<std::uint32_t>(i % 16);
    const nc::write_id id = nc::make_write_id(writer, 1, i + 1);
    if (i % 4 == 0) {  // a conflicting attempt that did not apply
      nc::race_write f{writer,
                       static_cast<std::uint32_t>(i),
                       1,
                       key,
                       h.final_versions[key],
                       nc::make_write_id(writer, 2, i + 1),
                       nc::op_outcome::failed,
                       nc::write_kind::write_if_match,
                       tick,
                       tick + 1};
      h.writes.push_back(f);
      tick += 2;
    }
    h.writes.push_back({writer, static_cast<std::uint32_t>(i), 2, key, h.final_versions[key], id,
                        nc::op_outcome::ok, nc::write_kind::write_if_match, tick, tick + 1});
    tick += 2;
    h.final_versions[key] = id;
  }
  return h;
}

nc::race_history naive_history(std::size_t n) {
  nc::race_history h;
  h.keys = {"k"};
  h.initial_versions = {nc::initial_version};
  h.writes.reserve(n);
  nc::write_id current = nc::initial_version;
  std::uint64_t tick = 0;
  for (std::size_t i = 0; i < n; i += 8) {
    const nc::write_id read = current;
    for (std::size_t j = i; j < i + 8 && j < n; ++j) {
      const nc::write_id id = nc::make_write_id(1 + static_cast<std::uint32_t>(j % 8), 3, j + 1);
      h.writes.push_back({1 + static_cast<std::uint32_t>(j % 8), static_cast<std::uint32_t>(j), 1, 0, read,
                          id, nc::op_outcome::ok, nc::write_kind::overwrite, tick, tick + 1});
      tick += 2;
      current = id;
    }
  }
  h.final_versions = {current};
  return h;
}

void BM_check_chain(benchmark::State& state) {
  const auto h = chain_history(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    auto c = nc::check_race_history(h);
    if (!c.ok()) state.SkipWithError("clean history reported a loss");
    benchmark::DoNotOptimize(c);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * h.writes.size()));
}
BENCHMARK(BM_check_chain)->Arg(10'000)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kMillisecond);

void BM_check_naive(benchmark::State& state) {
  const auto h = naive_history(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    auto c = nc::check_race_history(h);
    if (c.lost.size() != h.writes.size() / 8 * 7) state.SkipWithError("wrong loss count");
    benchmark::DoNotOptimize(c);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * h.writes.size()));
}
BENCHMARK(BM_check_naive)->Arg(10'000)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kMillisecond);

// The 10 M-record history of BM_check_in_parts, record i on key i % keys (a failed attempt
// before every 4th write, as in chain_history), without holding it: ids and ticks are
// functions of i.
struct parted_chain {
  static constexpr std::uint32_t keys = 1024;
  std::size_t n;
  static nc::write_id id(std::size_t i) {
    return nc::make_write_id(1 + static_cast<std::uint32_t>(i % 16), 1, i / 16 + 1);
  }
  nc::race_history frame() const {
    nc::race_history h;
    for (std::uint32_t k = 0; k < keys; ++k) h.keys.push_back("k" + std::to_string(k));
    h.initial_versions.assign(keys, nc::initial_version);
    h.final_versions.assign(keys, nc::initial_version);
    for (std::size_t i = n >= keys ? n - keys : 0; i < n; ++i) h.final_versions[i % keys] = id(i);
    return h;
  }
  void fill(std::size_t parts, std::size_t part, nc::race_history& h) const {
    for (std::size_t k = part; k < keys; k += parts) {
      for (std::size_t i = k; i < n; i += keys) {
        const auto key = static_cast<std::uint32_t>(k);
        const std::uint32_t writer = 1 + static_cast<std::uint32_t>(i % 16);
        const nc::write_id read = i >= keys ? id(i - keys) : nc::initial_version;
        if (i % 4 == 0) {
          h.writes.push_back({writer, static_cast<std::uint32_t>(i), 1, key, read,
                              nc::make_write_id(writer, 2, i / 16 + 1), nc::op_outcome::failed,
                              nc::write_kind::write_if_match, 4 * i, 4 * i + 1});
        }
        h.writes.push_back({writer, static_cast<std::uint32_t>(i), 2, key, read, id(i), nc::op_outcome::ok,
                            nc::write_kind::write_if_match, 4 * i + 2, 4 * i + 3});
      }
    }
  }
};

void BM_check_in_parts(benchmark::State& state) {
  const parted_chain history{10'000'000};
  const auto parts = static_cast<std::size_t>(state.range(0));
  const nc::race_history frame = history.frame();
  std::size_t records = 0;
  for (auto _ : state) {
    records = 0;
    auto c = nc::check_race_history_in_parts(frame, parts, [&](std::size_t p, nc::race_history& part) {
      history.fill(parts, p, part);
      records += part.writes.size();
    });
    if (!c.ok() || c.applied != history.n) state.SkipWithError("clean history reported a loss");
    benchmark::DoNotOptimize(c);
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  state.counters["max_rss_MiB"] = static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux: KiB
  state.counters["records"] = static_cast<double>(records);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * records));
}
BENCHMARK(BM_check_in_parts)->Arg(1)->Arg(16)->Arg(64)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_serialise_history(benchmark::State& state) {
  const auto h = chain_history(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    nc::race_history back;
    nc::append_history(back, nc::serialize_history(h));
    benchmark::DoNotOptimize(back);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * h.writes.size()));
}
BENCHMARK(BM_serialise_history)->Arg(100'000)->Unit(benchmark::kMillisecond);

constexpr unsigned rmw_ops = 20'000;

void BM_rmw_direct(benchmark::State& state) {
  const auto workload = nc::append_workload();
  for (auto _ : state) {
    nc::memory_store<std::string, std::string> store;
    std::uint64_t seq = 0;
    for (unsigned op = 0; op < rmw_ops; ++op) {
      auto r = nc::read_modify_write(store, "k", [&](const std::optional<std::string>& cur) {
        ++seq;
        return workload.next_value(cur, nc::write_tag{1, op, 1, nc::make_write_id(1, 0, seq)});
      });
      benchmark::DoNotOptimize(r);
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * rmw_ops));
}
BENCHMARK(BM_rmw_direct)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_rmw_in_harness(benchmark::State& state) {
  for (auto _ : state) {
    nc::memory_store<std::string, std::string> store;
    nc::race_options_for<decltype(store)> o;
    o.mode = nc::race_mode::stress;
    o.writers = 1;
    o.ops_per_writer = rmw_ops;
    auto report = nc::run_race(store, nc::cas_strategy{}, o);
    if (!report.ok()) state.SkipWithError("loss in a single-writer run");
    benchmark::DoNotOptimize(report);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * rmw_ops));
}
BENCHMARK(BM_rmw_in_harness)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
