// keyed_mutex_map against the per-key locks a user would otherwise write, in one binary.
//
// Peers (each: lock(key) -> RAII hold; unlock by scope):
//   kmm            noclobber::keyed_mutex_map (4096 shards; entries freed when unused)
//   kmm64k         the same with 65536 shards (4 MiB of shard lines) for the scaling runs
//   global_map     one global mutex over unordered_map<string, shared_ptr<mutex>>, never erased
//   refcounted     moby/locker style: global mutex over refcounted entries, erased at zero
//   striped4096    4096 padded mutexes picked by hash (no cleanup, no exactness: the speed floor)
//   tbb_erase      tbb::concurrent_hash_map accessor, erased on unlock
//   bare_mutex     hash the key, lock one std::mutex (the cost of hashing plus a mutex pair)
//   absl_mutex     hash the key, lock one absl::Mutex (built only where libabsl-dev is found)
//
// Scenarios: distinct keys (1024 per thread, disjoint between threads) on 1 and 2 threads; one hot
// key on 2 and 16 threads, with an empty critical section and with the holder blocking; Zipf-skewed
// keys (s = 0.99 over 65536 keys) on 2 threads; 1M distinct keys touched once, reporting live
// entries and RSS growth afterwards. Then keyed_mutex_map alone: the cost of each of its paths
// (BM_kmm_*) uncontended on one thread, and per peer one lock+unlock of a distinct key as a
// noinline cycle (BM_cycle_distinct) for callgrind. Last, the fairness tool (BM_fairness): N
// threads hammer one key for a fixed time and every lock() call's wait is recorded.
// Keys look like real object keys: bucket/tenant-4824/2024/06/part-000123-c000.snappy.parquet.
#include <benchmark/benchmark.h>
#include <tbb/concurrent_hash_map.h>
#include <noclobber/keyed_mutex_map.hpp>

#if NOCLOBBER_BENCH_HAVE_ABSL
#include <absl/synchronization/mutex.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <latch>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

using noclobber::string_hash;

std::string object_key(unsigned tenant, unsigned part) {
  char buf[96];
  const int n = std::snprintf(buf, sizeof buf, "bucket/tenant-%04u/2024/06/part-%06u-c000.snappy.parquet",
                              tenant, part);
  return std::string(buf, static_cast<std::size_t>(n));
}

// ---- peers ------------------------------------------------------------------------------------

struct kmm_peer {
  explicit kmm_peer(std::size_t shards = 4096, std::chrono::nanoseconds handoff_after =
                                                   noclobber::keyed_mutex_map_options{}.handoff_after)
      : map(noclobber::keyed_mutex_map_options{shards, handoff_after}) {}
  noclobber::keyed_mutex_map<std::string, string_hash, std::equal_to<>> map;
  auto lock(std::string_view k) { return map.lock(k); }
  std::size_t live() const { return map.size(); }
};
struct kmm64k_peer : kmm_peer {
  kmm64k_peer() : kmm_peer(65536) {}
};
// The same map with another fairness bound (keyed_mutex_map_options::handoff_after): never hand
// the key over (pure barging), or always (FIFO among parked waiters). For the fairness tool.
struct kmm_barging_peer : kmm_peer {
  kmm_barging_peer() : kmm_peer(4096, std::chrono::nanoseconds::max()) {}
};
struct kmm_fifo_peer : kmm_peer {
  kmm_fifo_peer() : kmm_peer(4096, std::chrono::nanoseconds::zero()) {}
};

struct global_map_peer {
  std::mutex global;
  std::unordered_map<std::string, std::shared_ptr<std::mutex>, string_hash, std::equal_to<>> map;
  struct hold {
    std::shared_ptr<std::mutex> m;
    std::unique_lock<std::mutex> lk;
  };
  hold lock(std::string_view k) {
    std::shared_ptr<std::mutex> m;
    {
      std::lock_guard<std::mutex> g(global);
      auto it = map.find(k);
      if (it == map.end()) it = map.emplace(std::string(k), std::make_shared<std::mutex>()).first;
      m = it->second;
    }
    std::unique_lock<std::mutex> lk(*m);
    return hold{std::move(m), std::move(lk)};
  }
  std::size_t live() {
    std::lock_guard<std::mutex> g(global);
    return map.size();
  }
};

struct refcounted_peer {  // moby/locker
  struct entry {
    std::mutex m;
    int refs = 0;
  };
  std::mutex global;
  std::unordered_map<std::string, std::unique_ptr<entry>, string_hash, std::equal_to<>> map;
  struct hold {
    refcounted_peer* self = nullptr;
    std::unordered_map<std::string, std::unique_ptr<entry>, string_hash, std::equal_to<>>::iterator it;
    hold(refcounted_peer* s, decltype(it) i) : self(s), it(i) {}
    hold(hold&& o) noexcept : self(std::exchange(o.self, nullptr)), it(o.it) {}
    ~hold() {
      if (self == nullptr) return;
      it->second->m.unlock();
      std::lock_guard<std::mutex> g(self->global);
      if (--it->second->refs == 0) self->map.erase(it);
    }
  };
  hold lock(std::string_view k) {
    decltype(map)::iterator it;
    {
      std::lock_guard<std::mutex> g(global);
      it = map.find(k);
      if (it == map.end()) it = map.emplace(std::string(k), std::make_unique<entry>()).first;
      ++it->second->refs;
    }
    it->second->m.lock();
    return hold(this, it);
  }
  std::size_t live() {
    std::lock_guard<std::mutex> g(global);
    return map.size();
  }
};

struct striped_peer {
  struct alignas(64) stripe {
    std::mutex m;
  };
  std::unique_ptr<stripe[]> stripes = std::make_unique<stripe[]>(4096);
  std::unique_lock<std::mutex> lock(std::string_view k) {
    return std::unique_lock<std::mutex>(stripes[string_hash{}(k)&4095].m);
  }
  std::size_t live() const { return 0; }
};

struct tbb_hash_compare {
  static std::size_t hash(const std::string& s) { return string_hash{}(s); }
  static bool equal(const std::string& a, const std::string& b) { return a == b; }
};
struct tbb_erase_peer {
  using map_type = tbb::concurrent_hash_map<std::string, char, tbb_hash_compare>;
  map_type map;
  struct hold {
    map_type* map;
    map_type::accessor acc;
    explicit hold(map_type* m) : map(m) {}
    hold(hold&&) = delete;
    ~hold() { map->erase(acc); }
  };
  // Accessors are not movable, so this peer is driven through with_lock.
  template <class F>
  void with_lock(std::string_view k, F&& f) {
    hold h(&map);
    map.insert(h.acc, std::string(k));
    f();
  }
  std::size_t live() const { return map.size(); }
};

struct bare_mutex_peer {
  std::mutex m;
  std::unique_lock<std::mutex> lock(std::string_view k) {
    benchmark::DoNotOptimize(string_hash{}(k));
    return std::unique_lock<std::mutex>(m);
  }
  std::size_t live() const { return 0; }
};

#if NOCLOBBER_BENCH_HAVE_ABSL
struct absl_mutex_peer {
  absl::Mutex m;
  // absl::MutexLock is neither movable nor returned, so this peer is driven through with_lock.
  template <class F>
  void with_lock(std::string_view k, F&& f) {
    benchmark::DoNotOptimize(string_hash{}(k));
    absl::MutexLock hold(&m);
    f();
  }
  std::size_t live() const { return 0; }
};
#endif

template <class Peer, class F>
inline void with_lock(Peer& p, std::string_view k, F&& f) {
  if constexpr (requires { p.with_lock(k, f); }) {
    p.with_lock(k, f);
  } else {
    auto h = p.lock(k);
    f();
  }
}

// ---- key sets ---------------------------------------------------------------------------------

struct key_sets {
  std::vector<std::string> distinct[2];  // 1024 keys per thread, disjoint
  std::vector<std::string> zipf_keys;    // 65536 keys
  std::vector<std::uint32_t> zipf_draws[2];
  std::string hot = object_key(4824, 1);

  key_sets() {
    for (unsigned t = 0; t < 2; ++t)
      for (unsigned i = 0; i < 1024; ++i) distinct[t].push_back(object_key(4824 + t, 100000 + i * 7));
    constexpr unsigned n = 65536;
    for (unsigned i = 0; i < n; ++i) zipf_keys.push_back(object_key(i % 97, i));
    std::vector<double> cdf(n);
    double sum = 0;
    for (unsigned i = 0; i < n; ++i) cdf[i] = (sum += 1.0 / std::pow(i + 1.0, 0.99));
    std::vector<std::uint32_t> perm(n);
    for (unsigned i = 0; i < n; ++i) perm[i] = i;
    std::mt19937 shuffle_rng(5);
    std::shuffle(perm.begin(), perm.end(), shuffle_rng);  // hot keys spread over the shards
    for (unsigned t = 0; t < 2; ++t) {
      std::mt19937_64 rng(11 + t);
      std::uniform_real_distribution<double> u(0, sum);
      for (int i = 0; i < (1 << 16); ++i) {
        const auto idx = std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin();
        zipf_draws[t].push_back(perm[static_cast<std::size_t>(idx)]);
      }
    }
  }
};
const key_sets& keys() {
  static const key_sets k;
  return k;
}

// Shared protected state: one plain counter per key slot (touched under the lock, like real work).
struct alignas(64) slot_counter {
  long v = 0;
};

// ---- scenarios --------------------------------------------------------------------------------

template <class Peer>
void BM_distinct(benchmark::State& state) {
  static Peer peer;
  const auto& ks = keys().distinct[state.thread_index() % 2];
  std::size_t i = 0;
  long work = 0;
  for (auto _ : state) {
    with_lock(peer, ks[i], [&] { ++work; });
    i = (i + 1) & 1023;
  }
  benchmark::DoNotOptimize(work);
  state.SetItemsProcessed(state.iterations());
}

template <class Peer>
void BM_hot_key(benchmark::State& state) {
  static Peer peer;
  static slot_counter counter;
  const std::string& k = keys().hot;
  for (auto _ : state) with_lock(peer, k, [&] { ++counter.v; });
  state.SetItemsProcessed(state.iterations());
}

// 16 writers of one key, each holding the lock across a blocking wait that stands in for a store
// round trip (lock + CAS against a server). The ideal is one hold per hold time; what a peer
// loses beyond that is its hand-over cost (waking the next waiter, and any it wakes for nothing).
template <class Peer>
void BM_hot_key_blocking(benchmark::State& state) {
  static Peer peer;
  static slot_counter counter;
  const std::string& k = keys().hot;
  const auto hold = std::chrono::microseconds(state.range(0));
  for (auto _ : state)
    with_lock(peer, k, [&] {
      std::this_thread::sleep_for(hold);
      ++counter.v;
    });
  state.SetItemsProcessed(state.iterations());
}

template <class Peer>
void BM_zipf(benchmark::State& state) {
  static Peer peer;
  const auto& ks = keys().zipf_keys;
  const auto& draws = keys().zipf_draws[state.thread_index() % 2];
  std::size_t i = 0;
  long work = 0;
  for (auto _ : state) {
    with_lock(peer, ks[draws[i]], [&] { ++work; });
    i = (i + 1) & 0xffff;
  }
  benchmark::DoNotOptimize(work);
  state.SetItemsProcessed(state.iterations());
}

long rss_kib() {
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * 4;
}

// 1M distinct keys, each locked once; the peer stays alive while live entries and RSS are read.
template <class Peer>
void BM_million_keys(benchmark::State& state) {
  for (auto _ : state) {
    auto peer = std::make_unique<Peer>();
    const long before = rss_kib();
    char buf[96];
    for (unsigned i = 0; i < 1000000; ++i) {
      const int n = std::snprintf(buf, sizeof buf, "bucket/tenant-%04u/2024/06/part-%06u-c000.snappy.parquet",
                                  4824 + (i >> 16), i & 0xffff);
      with_lock(*peer, std::string_view(buf, static_cast<std::size_t>(n)), [] {});
    }
    state.counters["live_entries"] = static_cast<double>(peer->live());
    state.counters["rss_growth_MiB"] = static_cast<double>(rss_kib() - before) / 1024.0;
    state.PauseTiming();
    peer.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * 1000000);
}

// ---- keyed_mutex_map's own paths, uncontended, one thread ----------------------------------------
// What one lock + unlock of a key nobody else holds costs on each path of keyed_mutex_map:
//   exclusive_fast  lock(k) on an empty shard (one CAS in, one CAS out)
//   exclusive_slow  lock(k) while another key of the same shard is held (shard lock, chain walk)
//   shared          lock_shared(k) (shared holds always take the shard lock)
//   timed           try_lock_for(k, 1 s) on an empty shard (adds reading the clock for the deadline)
//   lock_all_2      lock_all(k1, k2), two keys of different shards
// Each cycle is one call of a noinline function, so callgrind's inclusive cost of kmm_cycle_*
// divided by its call count is the instructions per lock + unlock, which the load of a shared
// machine does not disturb (commands: docs/keyed_mutex_map.md, "Cost of each path").
using kmm_map = noclobber::keyed_mutex_map<std::string, string_hash, std::equal_to<>>;

[[gnu::noinline]] void kmm_cycle_exclusive(kmm_map& m, std::string_view k) {
  auto g = m.lock(k);
  benchmark::DoNotOptimize(g);
}
[[gnu::noinline]] void kmm_cycle_shared(kmm_map& m, std::string_view k) {
  auto g = m.lock_shared(k);
  benchmark::DoNotOptimize(g);
}
[[gnu::noinline]] void kmm_cycle_timed(kmm_map& m, std::string_view k) {
  auto g = m.try_lock_for(k, std::chrono::seconds(1));
  benchmark::DoNotOptimize(g);
}
[[gnu::noinline]] void kmm_cycle_lock_all_2(kmm_map& m, std::string_view k1, std::string_view k2) {
  auto g = m.lock_all(k1, k2);
  benchmark::DoNotOptimize(g);
}

void BM_kmm_exclusive_fast(benchmark::State& state) {
  kmm_map m;
  const std::string k = object_key(4824, 7);
  for (auto _ : state) kmm_cycle_exclusive(m, k);
  state.SetItemsProcessed(state.iterations());
}
void BM_kmm_exclusive_slow(benchmark::State& state) {
  kmm_map m(noclobber::keyed_mutex_map_options{1});  // one shard: the neighbour shares it
  auto neighbour = m.lock(object_key(4824, 8));
  const std::string k = object_key(4824, 7);
  for (auto _ : state) kmm_cycle_exclusive(m, k);
  state.SetItemsProcessed(state.iterations());
}
void BM_kmm_shared(benchmark::State& state) {
  kmm_map m;
  const std::string k = object_key(4824, 7);
  for (auto _ : state) kmm_cycle_shared(m, k);
  state.SetItemsProcessed(state.iterations());
}
void BM_kmm_timed(benchmark::State& state) {
  kmm_map m;
  const std::string k = object_key(4824, 7);
  for (auto _ : state) kmm_cycle_timed(m, k);
  state.SetItemsProcessed(state.iterations());
}
// The hot path: a key whose entry is live (here a shared hold keeps it so), locked without the
// shard lock: one CAS on the entry's state word in, one out, no key copy.
void BM_kmm_hot(benchmark::State& state) {
  kmm_map m;
  const std::string k = object_key(4824, 7);
  auto keep = m.lock_shared(k);
  for (auto _ : state) kmm_cycle_shared(m, k);
  state.SetItemsProcessed(state.iterations());
}
void BM_kmm_lock_all_2(benchmark::State& state) {
  kmm_map m;
  const std::string k1 = object_key(4824, 7);
  const std::string k2 = object_key(4824, 9);
  for (auto _ : state) kmm_cycle_lock_all_2(m, k1, k2);
  state.SetItemsProcessed(state.iterations());
}

// ---- per peer, one lock + unlock of a distinct key as a noinline call (for callgrind) ------------
// callgrind's inclusive cost of peer_cycle<Peer> divided by its calls is the instructions per
// lock + unlock of each peer on the distinct-key path (bench/keyed_mutex_map/callgrind_cost.py).
template <class Peer>
[[gnu::noinline]] void peer_cycle(Peer& p, std::string_view k, long& work) {
  with_lock(p, k, [&] { ++work; });
}
template <class Peer>
void BM_cycle_distinct(benchmark::State& state) {
  auto peer = std::make_unique<Peer>();
  const auto& ks = keys().distinct[0];
  std::size_t i = 0;
  long work = 0;
  for (auto _ : state) {
    peer_cycle(*peer, ks[i], work);
    i = (i + 1) & 1023;
  }
  benchmark::DoNotOptimize(work);
  state.SetItemsProcessed(state.iterations());
}

// ---- fairness: how long each lock() call of a hammered hot key waits ---------------------------
// range(0) threads hammer one key for range(1) milliseconds; each records, per lock() call, the
// time from calling lock() to being inside the critical section, in a log-linear histogram
// (4 sub-buckets per power of two: about 19% resolution) and its maximum. Reported:
//   max_wait_us         the longest single wait of any thread: the unfairness actually seen
//   p99_wait_us, p999_wait_us
//   min_share           the least-served thread's acquisitions / the mean (1 = perfectly even)
// On a machine with fewer cores than threads, a wait also includes time the waiter spent
// preempted by the OS scheduler (a timeslice is milliseconds), for every peer alike.
struct wait_histogram {
  static constexpr int sub = 4;
  std::array<std::uint64_t, 64 * sub> buckets{};
  static int bucket_of(std::uint64_t ns) {
    if (ns < 4) return static_cast<int>(ns);
    const int log = 63 - __builtin_clzll(ns);
    return log * sub + static_cast<int>((ns >> (log - 2)) & 3);
  }
  static std::uint64_t upper_ns(int b) {  // the bucket's upper edge
    if (b < 4) return static_cast<std::uint64_t>(b) + 1;
    const int log = b / sub;
    return (std::uint64_t{4} + static_cast<std::uint64_t>(b % sub) + 1) << (log - 2);
  }
  void add(std::uint64_t ns) { ++buckets[static_cast<std::size_t>(bucket_of(ns))]; }
  void merge(const wait_histogram& o) {
    for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
  }
  std::uint64_t quantile_ns(double q) const {
    std::uint64_t total = 0;
    for (auto c : buckets) total += c;
    const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < buckets.size(); ++i) {
      seen += buckets[i];
      if (seen > rank) return upper_ns(static_cast<int>(i));
    }
    return 0;
  }
};

template <class Peer>
void BM_fairness(benchmark::State& state) {
  using clock = std::chrono::steady_clock;
  const int threads = static_cast<int>(state.range(0));
  const auto run_for = std::chrono::milliseconds(state.range(1));
  const std::string& k = keys().hot;
  for (auto _ : state) {
    auto peer = std::make_unique<Peer>();
    slot_counter counter;
    std::atomic<bool> stop{false};
    std::latch start(threads + 1);
    struct result {
      std::uint64_t ops = 0;
      std::uint64_t max_wait_ns = 0;
      wait_histogram waits;
    };
    std::vector<result> results(static_cast<std::size_t>(threads));
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        result r;
        start.arrive_and_wait();
        while (!stop.load(std::memory_order_relaxed)) {
          const auto called = clock::now();
          clock::time_point inside;
          with_lock(*peer, k, [&] {
            inside = clock::now();
            ++counter.v;
          });
          const auto ns = static_cast<std::uint64_t>(
              std::chrono::duration_cast<std::chrono::nanoseconds>(inside - called).count());
          ++r.ops;
          r.max_wait_ns = std::max(r.max_wait_ns, ns);
          r.waits.add(ns);
        }
        results[static_cast<std::size_t>(t)] = r;
      });
    start.arrive_and_wait();
    std::this_thread::sleep_for(run_for);
    stop = true;
    for (auto& th : pool) th.join();
    wait_histogram all;
    std::uint64_t total = 0, max_wait = 0, least = ~std::uint64_t{0};
    for (const auto& r : results) {
      all.merge(r.waits);
      total += r.ops;
      max_wait = std::max(max_wait, r.max_wait_ns);
      least = std::min(least, r.ops);
    }
    state.counters["ops_per_s"] = benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsRate);
    state.counters["max_wait_us"] = static_cast<double>(max_wait) / 1e3;
    state.counters["p99_wait_us"] = static_cast<double>(all.quantile_ns(0.99)) / 1e3;
    state.counters["p999_wait_us"] = static_cast<double>(all.quantile_ns(0.999)) / 1e3;
    state.counters["min_share"] = static_cast<double>(least) * threads / static_cast<double>(total);
  }
}

#if NOCLOBBER_BENCH_HAVE_ABSL
#define KMM_ABSL_PEER(BM, ...) BENCHMARK_TEMPLATE(BM, absl_mutex_peer) __VA_ARGS__
#else
#define KMM_ABSL_PEER(BM, ...) static_assert(true)
#endif

#define KMM_PEERS(BM, ...)                             \
  BENCHMARK_TEMPLATE(BM, kmm_peer) __VA_ARGS__;        \
  BENCHMARK_TEMPLATE(BM, global_map_peer) __VA_ARGS__; \
  BENCHMARK_TEMPLATE(BM, refcounted_peer) __VA_ARGS__; \
  BENCHMARK_TEMPLATE(BM, striped_peer) __VA_ARGS__;    \
  BENCHMARK_TEMPLATE(BM, tbb_erase_peer) __VA_ARGS__;  \
  BENCHMARK_TEMPLATE(BM, bare_mutex_peer) __VA_ARGS__; \
  KMM_ABSL_PEER(BM, __VA_ARGS__)

BENCHMARK(BM_kmm_exclusive_fast);
BENCHMARK(BM_kmm_exclusive_slow);
BENCHMARK(BM_kmm_shared);
BENCHMARK(BM_kmm_timed);
BENCHMARK(BM_kmm_hot);
BENCHMARK(BM_kmm_lock_all_2);
BENCHMARK_TEMPLATE(BM_cycle_distinct, kmm_peer);
BENCHMARK_TEMPLATE(BM_cycle_distinct, striped_peer);
BENCHMARK_TEMPLATE(BM_cycle_distinct, bare_mutex_peer);
KMM_PEERS(BM_distinct, ->UseRealTime());
KMM_PEERS(BM_distinct, ->Threads(2)->UseRealTime());
BENCHMARK_TEMPLATE(BM_distinct, kmm64k_peer)->UseRealTime();
BENCHMARK_TEMPLATE(BM_distinct, kmm64k_peer)->Threads(2)->UseRealTime();
KMM_PEERS(BM_hot_key, ->Threads(2)->UseRealTime());
KMM_PEERS(BM_hot_key, ->Threads(16)->UseRealTime());
KMM_PEERS(BM_hot_key_blocking, ->Arg(50)->Threads(16)->UseRealTime());
KMM_PEERS(BM_zipf, ->Threads(2)->UseRealTime());
BENCHMARK_TEMPLATE(BM_zipf, kmm64k_peer)->Threads(2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_million_keys, kmm_peer)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_million_keys, refcounted_peer)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_million_keys, striped_peer)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_million_keys, tbb_erase_peer)->Iterations(1)->Unit(benchmark::kMillisecond);
#define KMM_FAIRNESS(PEER) \
  BENCHMARK_TEMPLATE(BM_fairness, PEER)->Args({2, 300})->Args({16, 300})->Iterations(1)->UseRealTime()
KMM_FAIRNESS(kmm_peer);
KMM_FAIRNESS(kmm_barging_peer);
KMM_FAIRNESS(kmm_fifo_peer);
KMM_FAIRNESS(bare_mutex_peer);
#if NOCLOBBER_BENCH_HAVE_ABSL
KMM_FAIRNESS(absl_mutex_peer);
#endif
// Last: tearing down its 1M entries (~200 MiB) slows whatever runs right after it.
BENCHMARK_TEMPLATE(BM_million_keys, global_map_peer)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  // glibc locks and unlocks a std::mutex without atomic instructions while the process has never
  // created a thread. A program that needs per-key locks has threads, so create one first; without
  // this the mutex-based peers look ~1.6x cheaper on one thread than they are in any real use.
  std::thread([] {}).join();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
