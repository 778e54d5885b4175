// The read-through cache (noclobber/cached_store.hpp): revalidation with a store that counts its
// calls, eviction on every answer that says the copy is wrong, the bounds, serving copies
// without asking, and the race: writers behind stale caches in front of one store lose nothing
// (a stale copy costs a retry, never an update).
#include <noclobber/cached_store.hpp>
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>
#include <noclobber/read_modify_write.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace nc = noclobber;

namespace {

using mem_t = nc::memory_store<std::string, std::string>;
using token_t = std::uint64_t;

// A view of a shared memory_store that counts its calls, with a conditional read when
// `revalidates` (as an HTTP server answers If-None-Match with 304).
template <bool Revalidates>
class counting_store {
 public:
  using key_type = std::string;
  using value_type = std::string;
  using token_type = token_t;

  explicit counting_store(mem_t& inner) : inner_(inner) {}

  nc::read_result<std::string, token_t> read(const std::string& k) {
    ++reads;
    auto r = inner_.read(k);
    if (r.found()) bytes_sent += r.value.size();
    return r;
  }
  nc::read_if_changed_result<std::string, token_t> read_if_changed(const std::string& k,
                                                                   const token_t& t) requires Revalidates {
    ++conditional_reads;
    auto r = inner_.read(k);
    if (r.found() && r.token == t) return nc::read_if_changed_result<std::string, token_t>::make_unchanged();
    if (r.found()) bytes_sent += r.value.size();
    return nc::read_if_changed_result<std::string, token_t>::make_fresh(std::move(r));
  }
  nc::write_result<token_t> write_if_match(const std::string& k, const token_t& t, const std::string& v) {
    ++writes;
    return inner_.write_if_match(k, t, v);
  }
  nc::write_result<token_t> create_if_absent(const std::string& k, const std::string& v) {
    ++writes;
    return inner_.create_if_absent(k, v);
  }
  nc::write_result<token_t> erase_if_match(const std::string& k, const token_t& t) {
    return inner_.erase_if_match(k, t);
  }
  nc::write_result<token_t> overwrite(const std::string& k, const std::string& v) {
    return inner_.overwrite(k, v);
  }

  std::atomic<unsigned> reads{0}, conditional_reads{0}, writes{0};
  std::atomic<std::size_t> bytes_sent{0};

 private:
  mem_t& inner_;
};

using revalidating = counting_store<true>;
using plain = counting_store<false>;
using cache_t = nc::store_cache<std::string, std::string, token_t>;

static_assert(nc::revalidating_store<revalidating>);
static_assert(!nc::revalidating_store<plain>);
static_assert(nc::conditional_writer<nc::cached_store<plain>>);
static_assert(nc::erasable_writer<nc::cached_store<plain>>);
static_assert(nc::overwritable_store<nc::cached_store<plain>>);
static_assert(!nc::patchable_writer<nc::cached_store<plain>>);
static_assert(nc::patchable_writer<nc::cached_store<mem_t>>);  // memory_store has patch_if_match

// A manual clock for serve_unasked_for.
struct manual_clock {
  std::shared_ptr<std::atomic<std::int64_t>> ms = std::make_shared<std::atomic<std::int64_t>>(0);
  std::chrono::steady_clock::time_point operator()() const {
    return std::chrono::steady_clock::time_point(std::chrono::milliseconds(ms->load()));
  }
  void advance(std::int64_t by) const { ms->fetch_add(by); }
};

std::string append_line(const std::optional<std::string>& cur, const std::string& line) {
  return cur.value_or("") + line + "\n";
}

}  // namespace

TEST_CASE("cached_store: a current copy is revalidated, not downloaded again", "[cached_store]") {
  mem_t mem;
  revalidating counted(mem);
  cache_t cache;
  nc::cached_store<revalidating> view(counted, cache);
  const std::string big(1 << 20, 'x');
  REQUIRE(mem.create_if_absent("db", big).ok());

  auto first = view.read("db");
  REQUIRE(first.found());
  CHECK(counted.reads == 1);
  CHECK(cache.stats().misses == 1);

  for (int i = 0; i < 3; ++i) {
    auto again = view.read("db");
    REQUIRE(again.found());
    CHECK(again.value == big);
    CHECK(again.token == first.token);
  }
  CHECK(counted.reads == 1);  // no second download
  CHECK(counted.conditional_reads == 3);
  CHECK(counted.bytes_sent == big.size());
  CHECK(cache.stats().revalidated == 3);
  CHECK(cache.stats().bytes_served_locally == 3 * big.size());

  SECTION("a change elsewhere is seen at the next read, and replaces the copy") {
    auto w = mem.write_if_match("db", first.token, "changed");
    REQUIRE(w.ok());
    auto fresh = view.read("db");
    REQUIRE(fresh.found());
    CHECK(fresh.value == "changed");
    CHECK(fresh.token == *w.token);
    CHECK(cache.stats().refreshed == 1);
    CHECK(view.read("db").value == "changed");
    CHECK(cache.stats().revalidated == 4);
  }
  SECTION("a write through the view keeps what it wrote: the next read is a revalidation") {
    auto w = view.write_if_match("db", first.token, "mine");
    REQUIRE(w.ok());
    auto r = view.read("db");
    CHECK(r.value == "mine");
    CHECK(r.token == *w.token);
    CHECK(counted.reads == 1);
    CHECK(cache.stats().revalidated == 4);
  }
  SECTION("deleted elsewhere: the read says absent and the copy goes") {
    REQUIRE(mem.erase_if_match("db", first.token).ok());
    CHECK(view.read("db").absent());
    CHECK(cache.size() == 0);
  }
}

TEST_CASE("cached_store: every answer that says the copy is wrong evicts it", "[cached_store]") {
  mem_t mem;
  revalidating counted(mem);
  cache_t cache;
  nc::cached_store<revalidating> view(counted, cache);
  REQUIRE(mem.create_if_absent("k", "v1").ok());
  const auto r = view.read("k");
  REQUIRE(cache.size() == 1);

  SECTION("conflict") {
    REQUIRE(mem.write_if_match("k", r.token, "elsewhere").ok());
    CHECK(view.write_if_match("k", r.token, "mine").status == nc::write_status::conflict);
  }
  SECTION("absent") {
    REQUIRE(mem.erase_if_match("k", r.token).ok());
    CHECK(view.write_if_match("k", r.token, "mine").status == nc::write_status::absent);
  }
  SECTION("exists") {
    CHECK(view.create_if_absent("k", "mine").status == nc::write_status::exists);
  }
  SECTION("indeterminate") {
    nc::fault_config f;
    f.indeterminate_lost = 1.0;
    mem.set_faults(f);
    CHECK(view.write_if_match("k", r.token, "mine").status == nc::write_status::indeterminate);
  }
  SECTION("transient_restart") {
    nc::fault_config f;
    f.transient_restart = 1.0;
    mem.set_faults(f);
    CHECK(view.write_if_match("k", r.token, "mine").status == nc::write_status::transient_restart);
  }
  SECTION("permanent") {
    nc::fault_config f;
    f.permanent = 1.0;
    mem.set_faults(f);
    CHECK(view.write_if_match("k", r.token, "mine").status == nc::write_status::permanent);
  }
  CHECK(cache.size() == 0);
  CHECK(cache.stats().evicted_by_answer == 1);
}

TEST_CASE("cached_store: a patch goes to the store and evicts the copy (the store computed the result)",
          "[cached_store]") {
  mem_t mem;
  cache_t cache;
  nc::cached_store<mem_t> view(mem, cache);
  REQUIRE(view.create_if_absent("k", "v1").ok());
  REQUIRE(cache.size() == 1);
  const auto r = view.read("k");
  SECTION("applied") {
    CHECK(view.patch_if_match("k", r.token, [](std::string& v) { v += "+patch"; }).ok());
    CHECK(cache.size() == 0);
    CHECK(cache.stats().evicted_by_answer == 0);  // not a wrong copy: an old one
    CHECK(view.read("k").value == "v1+patch");
  }
  SECTION("conflict") {
    REQUIRE(mem.write_if_match("k", r.token, "elsewhere").ok());
    CHECK(view.patch_if_match("k", r.token, [](std::string& v) { v += "+patch"; }).status ==
          nc::write_status::conflict);
    CHECK(cache.size() == 0);
    CHECK(cache.stats().evicted_by_answer == 1);
    CHECK(view.read("k").value == "elsewhere");
  }
}

TEST_CASE("cached_store: transient (nothing happened) keeps the copy", "[cached_store]") {
  mem_t mem;
  revalidating counted(mem);
  cache_t cache;
  nc::cached_store<revalidating> view(counted, cache);
  REQUIRE(mem.create_if_absent("k", "v1").ok());
  const auto r = view.read("k");
  nc::fault_config f;
  f.transient = 1.0;
  mem.set_faults(f);
  CHECK(view.write_if_match("k", r.token, "mine").status == nc::write_status::transient);
  CHECK(cache.size() == 1);
  CHECK(cache.find("k")->token == r.token);
}

TEST_CASE("cached_store: without revalidation every read asks the store, unless told otherwise",
          "[cached_store]") {
  mem_t mem;
  plain counted(mem);
  REQUIRE(mem.create_if_absent("k", "v1").ok());

  SECTION("default: a copy is never served unasked (it cannot be known current)") {
    cache_t cache;
    nc::cached_store<plain> view(counted, cache);
    for (int i = 0; i < 3; ++i) REQUIRE(view.read("k").found());
    CHECK(counted.reads == 3);
    CHECK(cache.stats().served_unasked == 0);
  }
  SECTION("serve_unasked_for: young copies are served, possibly stale; the CAS still decides") {
    manual_clock clock;
    cache_t cache({.serve_unasked_for = std::chrono::seconds(10), .clock = clock});
    nc::cached_store<plain> view(counted, cache);
    auto first = view.read("k");
    REQUIRE(mem.write_if_match("k", first.token, "v2").ok());  // elsewhere: the copy is now stale
    clock.advance(5'000);
    auto stale = view.read("k");
    CHECK(stale.value == "v1");  // the accepted staleness
    CHECK(counted.reads == 1);
    CHECK(cache.stats().served_unasked == 1);

    // An update through the stale copy: one conflict, evicted, re-read from the store, applied.
    auto r = nc::read_modify_write(
        view, "k", [](const std::optional<std::string>& cur) { return append_line(cur, "mine"); });
    REQUIRE(r.ok());
    CHECK(r.attempts == 2);
    CHECK(mem.read("k").value == "v2mine\n");  // built on v2: nothing lost
    CHECK(cache.stats().evicted_by_answer == 1);

    clock.advance(11'000);
    (void)view.read("k");
    CHECK(counted.reads == 3);  // too old: asked again
  }
}

TEST_CASE("store_cache: bounded by entries and bytes, least recently used out first", "[cached_store]") {
  const auto t0 = std::chrono::steady_clock::time_point{};
  SECTION("entries") {
    cache_t cache({.max_entries = 2});
    cache.put("a", "1", 1, t0);
    cache.put("b", "2", 2, t0);
    REQUIRE(cache.find("a"));  // a is now the most recently used
    cache.put("c", "3", 3, t0);
    CHECK(cache.size() == 2);
    CHECK(cache.find("a"));
    CHECK_FALSE(cache.find("b"));
    CHECK(cache.find("c"));
    CHECK(cache.stats().evicted_for_space == 1);
  }
  SECTION("bytes") {
    cache_t cache({.max_bytes = 10});
    cache.put("a", std::string(4, 'a'), 1, t0);
    cache.put("b", std::string(4, 'b'), 2, t0);
    CHECK(cache.bytes() == 8);
    cache.put("c", std::string(4, 'c'), 3, t0);
    CHECK(cache.bytes() == 8);
    CHECK_FALSE(cache.find("a"));
    cache.put("big", std::string(11, 'x'), 4, t0);  // larger than the budget: never kept
    CHECK_FALSE(cache.find("big"));
    CHECK(cache.bytes() == 8);
    cache.put("b", std::string(1, 'b'), 5, t0);  // replacing counts the new size only
    CHECK(cache.bytes() == 5);
  }
  SECTION("bad bounds are refused") {
    CHECK_THROWS_AS(cache_t({.max_entries = 0}), std::invalid_argument);
    CHECK_THROWS_AS(cache_t({.max_bytes = 0}), std::invalid_argument);
    CHECK_THROWS_AS(cache_t({.serve_unasked_for = std::chrono::nanoseconds(-1)}), std::invalid_argument);
  }
}

TEST_CASE("cached_store: what the store throws propagates and leaves the copy alone", "[cached_store]") {
  struct throwing_store : revalidating {
    using revalidating::revalidating;
    nc::write_result<token_t> write_if_match(const std::string&, const token_t&, const std::string&) {
      throw std::runtime_error("connection lost");
    }
  };
  mem_t mem;
  throwing_store s(mem);
  cache_t cache;
  nc::cached_store<throwing_store> view(s, cache);
  REQUIRE(mem.create_if_absent("k", "v1").ok());
  const auto r = view.read("k");
  CHECK_THROWS_WITH(view.write_if_match("k", r.token, "x"), "connection lost");
  CHECK(cache.find("k")->token == r.token);
}

// The race. Every writer has its own cache (as separate processes would), copies are served
// without asking for an hour, and 16 writers start together behind a latch. Staleness is forced,
// not left to scheduling: each writer first reads the key into its cache and waits until all have,
// so every writer's first update works on a copy of the initial value, and for all but the one
// that writes first that copy is stale. Each stale copy costs a conflict and a retry; no update is
// lost.
TEST_CASE("cached_store race: 16 writers behind stale caches lose no update", "[cached_store][concurrency]") {
  constexpr int writers = 16, updates = 50;
  mem_t mem;
  std::vector<std::unique_ptr<plain>> stores;
  std::vector<std::unique_ptr<cache_t>> caches;
  for (int i = 0; i < writers; ++i) {
    stores.push_back(std::make_unique<plain>(mem));
    caches.push_back(
        std::make_unique<cache_t>(nc::cache_options{.serve_unasked_for = std::chrono::hours(1)}));
  }
  REQUIRE(mem.create_if_absent("counter", "").ok());
  std::latch start(writers), all_cached(writers);
  std::atomic<int> failed{0};
  std::mutex why_mutex;
  std::string why;  // the first failure, in words
  std::vector<std::thread> ts;
  for (int i = 0; i < writers; ++i) {
    ts.emplace_back([&, i] {
      nc::cached_store<plain> view(*stores[i], *caches[i]);
      nc::retry_policy p;
      p.max_attempts = 10'000;
      p.backoff =
          nc::backoff_policy::full_jitter(std::chrono::microseconds(1), std::chrono::microseconds(200));
      start.arrive_and_wait();
      if (!view.read("counter").found()) failed.fetch_add(1);  // the initial value, now in the cache
      all_cached.arrive_and_wait();
      for (int u = 0; u < updates; ++u) {
        auto r = nc::read_modify_write(
            view, "counter",
            [&](const std::optional<std::string>& cur) {
              return append_line(cur, std::to_string(i) + "." + std::to_string(u));
            },
            p);
        if (!r.ok() && failed.fetch_add(1) == 0) {
          std::lock_guard lock(why_mutex);
          why = std::string(nc::to_string(r.reason)) + " after " + std::to_string(r.attempts) +
                " attempts, last status " + std::string(nc::to_string(r.last_status)) + ": " +
                r.last_error.code + " " + r.last_error.message;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  INFO(why);
  REQUIRE(failed == 0);
  const std::string final_value = mem.read("counter").value;
  CHECK(static_cast<int>(std::count(final_value.begin(), final_value.end(), '\n')) == writers * updates);
  std::uint64_t unasked = 0, evicted = 0;
  for (auto& c : caches) {
    unasked += c->stats().served_unasked;
    evicted += c->stats().evicted_by_answer;
  }
  CHECK(unasked >= writers);      // every first update used its copy without asking...
  CHECK(evicted >= writers - 1);  // ...and the stale ones were caught by the conditional write
}

TEST_CASE("race harness: CAS through per-writer caches in front of one store loses nothing",
          "[cached_store][concurrency]") {
  using view_t = nc::cached_store<revalidating>;
  mem_t mem;
  std::vector<std::unique_ptr<revalidating>> stores;
  std::vector<std::unique_ptr<cache_t>> caches;
  for (int i = 0; i < 16; ++i) {
    stores.push_back(std::make_unique<revalidating>(mem));
    // Half the writers accept stale copies for a while, the others revalidate every read.
    caches.push_back(std::make_unique<cache_t>(
        nc::cache_options{.serve_unasked_for = i % 2 ? std::chrono::hours(1) : std::chrono::nanoseconds(0)}));
  }
  auto make = [&](unsigned i) { return std::make_unique<view_t>(*stores[i], *caches[i]); };
  nc::race_options_for<view_t> o;
  o.writers = 16;
  o.ops_per_writer = 40;
  for (auto mode : {nc::race_mode::forced, nc::race_mode::stress}) {
    const std::string m(nc::to_string(mode));
    o.mode = mode;
    o.keys = {m + "-cas-a", m + "-cas-b"};
    o.strategy_name = "cas";
    auto cas = nc::run_race_per_writer(make, nc::cas_strategy{}, o);
    INFO(cas.to_text());
    CHECK(cas.op_errors == 0);
    CHECK(cas.lost() == 0);
    CHECK(cas.check.ok());
    o.keys = {m + "-naive-a", m + "-naive-b"};
    o.strategy_name = "naive";
    auto naive = nc::run_race_per_writer(make, nc::naive_strategy{}, o);
    INFO(naive.to_text());
    // The negative control still loses through the caches: certain in the forced window; free
    // running (stress), whether writers overlap is up to the scheduler, so nothing is asserted.
    if (mode == nc::race_mode::forced) CHECK(naive.lost() > 0);
  }
}

TEST_CASE("store_cache: many threads on one cache", "[cached_store][concurrency]") {
  cache_t cache({.max_entries = 8, .max_bytes = 64});
  std::latch start(8);
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = 0; i < 2000; ++i) {
        const std::string key = "k" + std::to_string((i * 7 + t) % 12);
        switch (i % 4) {
          case 0:
            cache.put(key, std::string(static_cast<std::size_t>(i % 9), 'v'), static_cast<token_t>(i),
                      cache.now());
            break;
          case 1:
            if (auto c = cache.find(key)) (void)c->value->size();
            break;
          case 2:
            cache.confirm(key, static_cast<token_t>(i - 2), cache.now());
            break;
          default:
            (void)cache.evict(key);
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(cache.size() <= 8);
  CHECK(cache.bytes() <= 64);
}
