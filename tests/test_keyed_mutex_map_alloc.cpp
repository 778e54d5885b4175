// keyed_mutex_map makes no heap allocation per lock/unlock in steady state: this TU replaces the
// global operator new and counts, per thread, what each loop allocates after a warm-up.
#include <noclobber/keyed_mutex_map.hpp>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KMM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KMM_SANITIZED 1
#endif
#endif

namespace {
thread_local long allocations_on_this_thread = 0;
}  // namespace

#if defined(KMM_SANITIZED)
// The sanitizer runtimes own operator new (clang links theirs statically, so it cannot be
// replaced); count through their allocator hook instead, which sees every operator new.
// Declared here: GCC does not ship <sanitizer/allocator_interface.h>; both runtimes export it.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             std::size_t),
                                                         void (*free_hook)(const volatile void*));
namespace {
void count_malloc(const volatile void*, std::size_t) {
  ++allocations_on_this_thread;
}
void ignore_free(const volatile void*) {}
const int hooks_installed = __sanitizer_install_malloc_and_free_hooks(count_malloc, ignore_free);
}  // namespace
#else
namespace {
void* counted_alloc(std::size_t n, std::size_t align) {
  ++allocations_on_this_thread;
  if (n == 0) n = 1;
  void* p = align <= alignof(std::max_align_t) ? std::malloc(n)
                                               : std::aligned_alloc(align, (n + align - 1) / align * align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) {
  return counted_alloc(n, alignof(std::max_align_t));
}
void* operator new[](std::size_t n) {
  return counted_alloc(n, alignof(std::max_align_t));
}
void* operator new(std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n, alignof(std::max_align_t));
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
#endif

namespace {

using string_map = noclobber::keyed_mutex_map<std::string, noclobber::string_hash, std::equal_to<>>;

std::vector<std::string> object_keys(int n) {
  std::vector<std::string> keys;
  for (int i = 0; i < n; ++i)
    keys.push_back("bucket/tenant-" + std::to_string(4824 + i % 13) + "/2024/06/part-" +
                   std::to_string(1000000 + i) + ".parquet");  // ~50 bytes: past the SSO buffer
  return keys;
}

}  // namespace

TEST_CASE("the counter sees allocations (the test can fail)") {
  const long before = allocations_on_this_thread;
  auto* p = new std::string(100, 'x');
  delete p;
  REQUIRE(allocations_on_this_thread - before == 2);
}

TEST_CASE("steady state: lock/unlock with string_view keys allocates nothing") {
  string_map m;
  const auto keys = object_keys(256);
  std::vector<std::string_view> views(keys.begin(), keys.end());
  auto round = [&] {
    for (auto k : views) {
      auto g = m.lock(k);
      auto t = m.try_lock(k);  // fails: held
      auto s = m.try_lock_for(views[0] == k ? views[1] : views[0], std::chrono::microseconds(0));
    }
    for (std::size_t i = 0; i + 1 < views.size(); i += 2) {
      auto r = m.lock_shared(views[i]);
      auto r2 = m.try_lock_shared(views[i]);
    }
  };
  round();  // warm-up: entries and key capacity come into the pool once
  round();
  const long before = allocations_on_this_thread;
  for (int i = 0; i < 20; ++i) round();
  REQUIRE(allocations_on_this_thread - before == 0);
  REQUIRE(m.size() == 0);
}

TEST_CASE("contended lock/unlock on two threads: allocations bounded, not per lock", "[concurrency]") {
  // A key released by the thread that did not create its entry retires the entry into that
  // thread's cache, so entries drift between the two caches and the pool grows on rare
  // interleavings, up to a bound: when a thread must allocate, its cache and the pool are empty,
  // so every entry is live (<= keys), in a thread's hand (<= threads) or in the other thread's
  // cache (<= capacity). Each entry costs two allocations (itself and its key's buffer). The
  // total over the whole run must stay under that bound however many locks are taken.
  string_map m;
  const auto keys = object_keys(4);
  std::vector<std::string_view> views(keys.begin(), keys.end());
  constexpr long iterations = 60000;
  std::atomic<long> allocations{0};
  std::atomic<int> ready{0};
  long counter[4] = {0, 0, 0, 0};
  auto worker = [&] {
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();
    const long before = allocations_on_this_thread;
    for (long i = 0; i < iterations; ++i) {
      auto g = m.lock(views[i % 4]);
      ++counter[i % 4];
    }
    allocations.fetch_add(allocations_on_this_thread - before);
  };
  std::thread a(worker), b(worker);
  a.join();
  b.join();
  constexpr long bound = 2 * (noclobber::detail::kmm_cache_slot::capacity + 4 /*keys*/ + 2 /*threads*/ + 1);
  INFO("allocations over " << 2 * iterations << " contended locks: " << allocations.load());
  REQUIRE(allocations.load() <= bound);
  REQUIRE(counter[0] + counter[1] + counter[2] + counter[3] == 2 * iterations);
  REQUIRE(m.size() == 0);
}
