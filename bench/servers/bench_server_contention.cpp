// Lock + CAS against CAS alone: 16 in-process writers (threads, one connection each) increment
// one hot key through each adapter. Reports throughput (items_per_second, all threads) and
// attempts per successful update (1.0 = no wasted round trip). The per-key lock is noclobber's
// keyed_mutex_map; it serialises this process's writers, so CAS only competes with other
// processes — here there are none, which is the case the lock helps most.
#include <benchmark/benchmark.h>
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/http_etag.hpp>
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/adapters/redis.hpp>
#include <noclobber/keyed_mutex_map.hpp>
#include <noclobber/locked_read_modify_write.hpp>
#include <noclobber/read_modify_write.hpp>

#include <memory>

#include "bench_env.hpp"

namespace {

constexpr int writers = 16;

auto increment = [](const std::optional<std::string>& cur) -> noclobber::update<std::string> {
  return std::to_string((cur && !cur->empty() ? std::stoll(*cur) : 0) + 1);
};

noclobber::retry_policy policy() {
  noclobber::retry_policy p;
  p.max_attempts = 100000;
  p.backoff =
      noclobber::backoff_policy::full_jitter(std::chrono::microseconds(100), std::chrono::milliseconds(10));
  return p;
}

// One hot key per benchmark run, shared by its threads.
std::string hot_key(benchmark::State& state, const char* name) {
  return std::string(name) + "_" + std::to_string(::getpid()) + "_" + std::to_string(state.max_iterations);
}

template <class Make>
void contend(benchmark::State& state, const char* name, Make make, bool with_lock) {
  static noclobber::keyed_mutex_map<std::string> locks;
  auto store = make();
  const std::string key = hot_key(state, name);
  const noclobber::retry_policy p = policy();
  std::int64_t attempts = 0, failures = 0;
  for (auto _ : state) {
    auto r = with_lock ? noclobber::locked_read_modify_write(locks, *store, key, increment, p)
                       : noclobber::read_modify_write(*store, key, increment, p);
    attempts += r.attempts;
    failures += r.ok() ? 0 : 1;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["attempts/op"] =
      benchmark::Counter(static_cast<double>(attempts) / static_cast<double>(state.iterations()),
                         benchmark::Counter::kAvgThreads);
  state.counters["gave_up"] = static_cast<double>(failures);
}

std::string pg_table() {
  static const std::string t = [] {
    std::string name = nc_bench::unique("nc_contend");
    noclobber::postgres::store s(nc_bench::server_env("NOCLOBBER_PG_CONNINFO"), name);
    s.ensure_table();
    return name;
  }();
  return t;
}

auto make_pg = [] {
  return std::make_unique<noclobber::postgres::store>(nc_bench::server_env("NOCLOBBER_PG_CONNINFO"),
                                                      pg_table());
};
auto make_redis = [] {
  return std::make_unique<noclobber::redis::store>(nc_bench::server_env("NOCLOBBER_REDIS_ADDR"));
};
auto make_redis_lua = [] {
  return std::make_unique<noclobber::redis::store>(nc_bench::server_env("NOCLOBBER_REDIS_ADDR"),
                                                   noclobber::redis::method::lua_compare_and_set);
};
auto make_etcd = [] {
  return std::make_unique<noclobber::etcd::store>(nc_bench::server_env("NOCLOBBER_ETCD_URL"));
};
auto make_http = [] {
  return std::make_unique<noclobber::http_etag::store>(nc_bench::server_env("NOCLOBBER_DAV_URL"));
};

void BM_postgres_cas(benchmark::State& s) {
  contend(s, "pg_cas", make_pg, false);
}
void BM_postgres_lock_cas(benchmark::State& s) {
  contend(s, "pg_lock", make_pg, true);
}
void BM_redis_watch_cas(benchmark::State& s) {
  contend(s, "redis_cas", make_redis, false);
}
void BM_redis_watch_lock_cas(benchmark::State& s) {
  contend(s, "redis_lock", make_redis, true);
}
void BM_redis_lua_cas(benchmark::State& s) {
  contend(s, "lua_cas", make_redis_lua, false);
}
void BM_redis_lua_lock_cas(benchmark::State& s) {
  contend(s, "lua_lock", make_redis_lua, true);
}
void BM_etcd_cas(benchmark::State& s) {
  contend(s, "etcd_cas", make_etcd, false);
}
void BM_etcd_lock_cas(benchmark::State& s) {
  contend(s, "etcd_lock", make_etcd, true);
}
// Apache mod_dav's conditional PUT is not atomic (docs/adapters/http_etag.md): CAS alone is
// measured for its cost only; its results lose updates.
void BM_http_cas(benchmark::State& s) {
  contend(s, "http_cas", make_http, false);
}
void BM_http_lock_cas(benchmark::State& s) {
  contend(s, "http_lock", make_http, true);
}

}  // namespace

BENCHMARK(BM_postgres_cas)->Threads(writers)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_postgres_lock_cas)->Threads(writers)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_redis_watch_cas)->Threads(writers)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_redis_watch_lock_cas)->Threads(writers)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_redis_lua_cas)->Threads(writers)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_redis_lua_lock_cas)->Threads(writers)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_etcd_cas)->Threads(writers)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_etcd_lock_cas)->Threads(writers)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_http_cas)->Threads(writers)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_http_lock_cas)->Threads(writers)->MinTime(1.0)->UseRealTime();

BENCHMARK_MAIN();
