// The read-through cache (noclobber/cached_store.hpp) on S3: one writer updating a 4 MiB object
// (the size of a small SQLite file kept as one object) on radosgw, with and without the cache, in
// the same binary. Without it every update downloads the object (GET 200, 4 MiB) and uploads it;
// with it the download becomes a conditional GET answered 304 while the copy is current.
// Counters per update: bytes downloaded, requests (round trips), attempts. Also plain reads.
//
//   scripts/bench_servers.sh BUILD_DIR --benchmark_filter=s3     (build with -DCMAKE_BUILD_TYPE=Release)
#include <benchmark/benchmark.h>
#include <noclobber/adapters/s3.hpp>
#include <noclobber/cached_store.hpp>
#include <noclobber/read_modify_write.hpp>

#include <cstdio>
#include <string>

#include "bench_env.hpp"

namespace {

namespace s3 = noclobber::s3;
using cache_t = noclobber::store_cache<std::string, std::string, std::string>;

s3::options radosgw() {
  s3::options o;
  o.endpoint = nc_bench::server_env("NOCLOBBER_RGW_ENDPOINT");
  o.bucket = nc_bench::server_env("NOCLOBBER_RGW_BUCKET");
  o.creds = {nc_bench::server_env("NOCLOBBER_RGW_ACCESS_KEY"),
             nc_bench::server_env("NOCLOBBER_RGW_SECRET_KEY"), ""};
  return o;
}

// s3::store with every request and every downloaded byte counted.
class counted_store {
 public:
  using key_type = std::string;
  using value_type = std::string;
  using token_type = std::string;

  explicit counted_store(s3::options o) : inner_(std::move(o)) {}

  noclobber::read_result<std::string, std::string> read(const std::string& k) {
    ++requests;
    auto r = inner_.read(k);
    downloaded += r.value.size();
    return r;
  }
  noclobber::read_if_changed_result<std::string, std::string> read_if_changed(const std::string& k,
                                                                              const std::string& t) {
    ++requests;
    auto r = inner_.read_if_changed(k, t);
    downloaded += r.fresh.value.size();
    return r;
  }
  noclobber::write_result<std::string> write_if_match(const std::string& k, const std::string& t,
                                                      const std::string& v) {
    ++requests;
    return inner_.write_if_match(k, t, v);
  }
  noclobber::write_result<std::string> create_if_absent(const std::string& k, const std::string& v) {
    ++requests;
    return inner_.create_if_absent(k, v);
  }

  std::int64_t requests = 0;
  std::int64_t downloaded = 0;

 private:
  s3::store inner_;
};

constexpr std::size_t object_bytes = 4u << 20;

// A new 4 MiB body each time (a zero-padded counter in its first 16 bytes), so every ETag is new.
auto touch = [](const std::optional<std::string>& cur) -> noclobber::update<std::string> {
  std::string next = cur ? *cur : std::string(object_bytes, 'x');
  const unsigned long long n = cur ? std::stoull(next.substr(0, 16)) + 1 : 0;
  char stamp[17];
  std::snprintf(stamp, sizeof stamp, "%016llu", n);
  next.replace(0, 16, stamp);
  return next;
};

template <class Store>
void run_updates(benchmark::State& state, Store& store, counted_store& counted, const std::string& key) {
  if (!noclobber::read_modify_write(store, key, touch).ok()) state.SkipWithError("setup write failed");
  counted.requests = counted.downloaded = 0;
  std::int64_t attempts = 0;
  for (auto _ : state) {
    auto r = noclobber::read_modify_write(store, key, touch);
    if (!r.ok()) state.SkipWithError(("gave up: " + r.last_error.message).c_str());
    attempts += r.attempts;
  }
  const double n = static_cast<double>(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(object_bytes));
  state.counters["downloaded_MiB/op"] = static_cast<double>(counted.downloaded) / n / (1 << 20);
  state.counters["requests/op"] = static_cast<double>(counted.requests) / n;
  state.counters["attempts/op"] = static_cast<double>(attempts) / n;
}

void BM_s3_rmw_4MiB_without_cache(benchmark::State& state) {
  counted_store s(radosgw());
  run_updates(state, s, s, nc_bench::unique("bench/cache/plain"));
}

void BM_s3_rmw_4MiB_with_cache(benchmark::State& state) {
  counted_store s(radosgw());
  cache_t cache;
  noclobber::cached_store<counted_store> view(s, cache);
  run_updates(state, view, s, nc_bench::unique("bench/cache/cached"));
}

template <class Store>
void run_reads(benchmark::State& state, Store& store, counted_store& counted, const std::string& key) {
  if (!noclobber::read_modify_write(store, key, touch).ok()) state.SkipWithError("setup write failed");
  counted.requests = counted.downloaded = 0;
  for (auto _ : state) {
    auto r = store.read(key);
    if (!r.found()) state.SkipWithError("read failed");
    benchmark::DoNotOptimize(r.value.data());
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["downloaded_MiB/op"] = static_cast<double>(counted.downloaded) / n / (1 << 20);
  state.counters["requests/op"] = static_cast<double>(counted.requests) / n;
}

void BM_s3_read_4MiB_without_cache(benchmark::State& state) {
  counted_store s(radosgw());
  run_reads(state, s, s, nc_bench::unique("bench/cache/read-plain"));
}

void BM_s3_read_4MiB_with_cache(benchmark::State& state) {
  counted_store s(radosgw());
  cache_t cache;
  noclobber::cached_store<counted_store> view(s, cache);
  run_reads(state, view, s, nc_bench::unique("bench/cache/read-cached"));
}

}  // namespace

BENCHMARK(BM_s3_rmw_4MiB_without_cache)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_s3_rmw_4MiB_with_cache)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_s3_read_4MiB_without_cache)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_s3_read_4MiB_with_cache)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
