// The read-through cache (noclobber/cached_store.hpp) on S3: one writer updating a 4 MiB object
// (the size of a small SQLite file kept as one object) on radosgw, with and without the cache, in
// the same binary. Without it every update downloads the object (GET 200, 4 MiB) and uploads it;
// with it the download becomes a conditional GET answered 304 while the copy is current; with
// cache_options::serve_unasked_for the copy is used without asking (the PUT's If-Match decides),
// and the "stale" form shows what that costs when another writer changed the object before each
// update (PUT 412, GET 200, PUT). Counters per update: bytes downloaded, requests (round trips),
// attempts. Also plain reads.
//
//   scripts/bench_servers.sh BUILD_DIR --benchmark_filter=s3     (build with -DCMAKE_BUILD_TYPE=Release)
#include <benchmark/benchmark.h>
#include <noclobber/adapters/s3.hpp>
#include <noclobber/cached_store.hpp>
#include <noclobber/read_modify_write.hpp>

#include <chrono>
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

// `between(key)` runs before each timed update, outside the timing.
template <class Store, class Between>
void run_updates(benchmark::State& state, Store& store, counted_store& counted, const std::string& key,
                 Between between) {
  if (!noclobber::read_modify_write(store, key, touch).ok()) state.SkipWithError("setup write failed");
  counted.requests = counted.downloaded = 0;
  std::int64_t attempts = 0;
  for (auto _ : state) {
    state.PauseTiming();
    between(key);
    state.ResumeTiming();
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

template <class Store>
void run_updates(benchmark::State& state, Store& store, counted_store& counted, const std::string& key) {
  run_updates(state, store, counted, key, [](const std::string&) {});
}

// Another writer (its own store) changes the object before each timed update, so the cached copy
// is always stale: the update's first PUT is refused (412), the copy evicted, the object downloaded.
void BM_s3_rmw_4MiB_with_cache_unasked_stale(benchmark::State& state) {
  counted_store s(radosgw());
  cache_t cache({.serve_unasked_for = std::chrono::hours(1)});
  noclobber::cached_store<counted_store> view(s, cache);
  s3::store other(radosgw());
  run_updates(state, view, s, nc_bench::unique("bench/cache/unasked-stale"), [&](const std::string& key) {
    if (!noclobber::read_modify_write(other, key, touch).ok()) state.SkipWithError("other writer failed");
  });
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

enum class cache_mode {
  none,        // the plain store: every read downloads
  revalidate,  // cached_store, default options: a read with a copy is a conditional GET (304)
  unasked,     // cached_store, serve_unasked_for = 1 h: a copy is used without asking
};

// Calls fn(store, counted) with the plain counted store or a cached_store view of it.
template <class Fn>
void with_store(cache_mode mode, Fn fn) {
  counted_store s(radosgw());
  if (mode == cache_mode::none) return fn(s, s);
  noclobber::cache_options o;
  if (mode == cache_mode::unasked) o.serve_unasked_for = std::chrono::hours(1);
  cache_t cache(o);
  noclobber::cached_store<counted_store> view(s, cache);
  fn(view, s);
}

// One writer updating its object (with the cache, the copy it wrote is current).
void BM_s3_rmw_4MiB(benchmark::State& state, cache_mode mode) {
  with_store(mode, [&](auto& store, counted_store& counted) {
    run_updates(state, store, counted, nc_bench::unique("bench/cache/rmw"));
  });
}

void BM_s3_read_4MiB(benchmark::State& state, cache_mode mode) {
  with_store(mode, [&](auto& store, counted_store& counted) {
    run_reads(state, store, counted, nc_bench::unique("bench/cache/read"));
  });
}

}  // namespace

// clang-format off
BENCHMARK_CAPTURE(BM_s3_rmw_4MiB, without_cache, cache_mode::none)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_s3_rmw_4MiB, with_cache, cache_mode::revalidate)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_s3_rmw_4MiB, with_cache_unasked, cache_mode::unasked)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_s3_rmw_4MiB_with_cache_unasked_stale)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_s3_read_4MiB, without_cache, cache_mode::none)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_s3_read_4MiB, with_cache, cache_mode::revalidate)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_s3_read_4MiB, with_cache_unasked, cache_mode::unasked)->Unit(benchmark::kMillisecond)->UseRealTime();
// clang-format on

BENCHMARK_MAIN();
