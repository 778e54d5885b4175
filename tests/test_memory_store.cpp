// Tests for memory_store: the contract, versions, fault injection, validation, and a real race.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <latch>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "noclobber/conditional_writer.hpp"
#include "noclobber/memory_store.hpp"

namespace nc = noclobber;
using store_t = nc::memory_store<std::string, std::string>;

static_assert(nc::conditional_writer<store_t>);
static_assert(nc::erasable_writer<store_t>);
static_assert(nc::patchable_writer<store_t>);
static_assert(nc::overwritable_store<store_t>);
static_assert(nc::check_conditional_writer<store_t>());
static_assert(std::is_same_v<nc::store_token_t<store_t>, std::uint64_t>);

TEST_CASE("memory_store: the conditional-write contract", "[memory_store]") {
  store_t s;
  CHECK(s.read("k").status == nc::read_status::absent);
  CHECK(s.write_if_match("k", 1, "x").status == nc::write_status::absent);
  CHECK(s.erase_if_match("k", 1).status == nc::write_status::absent);

  auto c = s.create_if_absent("k", "v1");
  REQUIRE(c.ok());
  REQUIRE(c.token.has_value());
  CHECK(*c.token != 0);
  CHECK(s.create_if_absent("k", "other").status == nc::write_status::exists);

  auto r = s.read("k");
  REQUIRE(r.found());
  CHECK(r.value == "v1");
  CHECK(r.token == *c.token);

  CHECK(s.write_if_match("k", r.token + 1000, "stale").status == nc::write_status::conflict);
  CHECK(s.read("k").value == "v1");  // a conflict changes nothing

  auto w = s.write_if_match("k", r.token, "v2");
  REQUIRE(w.ok());
  CHECK(*w.token != r.token);
  CHECK(s.write_if_match("k", r.token, "v3").status == nc::write_status::conflict);  // old token is dead

  auto p = s.patch_if_match("k", *w.token, [](std::string& v) { v += "+patch"; });
  REQUIRE(p.ok());
  CHECK(s.read("k").value == "v2+patch");
  CHECK(s.patch_if_match("k", *w.token, [](std::string& v) { v += "!"; }).status ==
        nc::write_status::conflict);

  CHECK(s.erase_if_match("k", *w.token).status == nc::write_status::conflict);
  CHECK(s.erase_if_match("k", *p.token).ok());
  CHECK(s.read("k").absent());
  CHECK(s.size() == 0);

  auto o1 = s.overwrite("k", "blind1");
  auto o2 = s.overwrite("k", "blind2");
  CHECK(o1.ok());
  CHECK(*o2.token != *o1.token);
  CHECK(s.peek("k")->first == "blind2");

  const auto st = s.stats();
  CHECK(st.conflicts >= 5);
  CHECK(st.applied == 6);
}

TEST_CASE("memory_store: versions are never reused, not even after erase and re-create", "[memory_store]") {
  store_t s;
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 100; ++i) {
    auto c = s.create_if_absent("k", "v");
    REQUIRE(c.ok());
    CHECK(seen.insert(*c.token).second);
    auto w = s.write_if_match("k", *c.token, "w");
    REQUIRE(w.ok());
    CHECK(seen.insert(*w.token).second);
    REQUIRE(s.erase_if_match("k", *w.token).ok());
  }
}

TEST_CASE("memory_store: a throwing patch or outside writer leaves the key as it was",
          "[memory_store][exceptions]") {
  store_t s;
  auto c = s.create_if_absent("k", "v");
  CHECK_THROWS_AS(s.patch_if_match("k", *c.token,
                                   [](std::string& v) {
                                     v = "half";
                                     throw std::runtime_error("patch failed");
                                   }),
                  std::runtime_error);
  CHECK(s.peek("k") == std::pair<std::string, std::uint64_t>("v", *c.token));
  CHECK_THROWS_AS(s.patch_if_match("k", *c.token, store_t::patch_type{}), std::invalid_argument);

  nc::fault_config f;
  f.outside_writer = 1.0;
  s.set_faults(f);
  s.set_outside_writer([](const std::string&, std::string& v) {
    v = "half";
    throw std::runtime_error("outside writer failed");
  });
  CHECK_THROWS_AS(s.write_if_match("k", *c.token, "mine"), std::runtime_error);
  CHECK(s.peek("k") == std::pair<std::string, std::uint64_t>("v", *c.token));
  // and the shard mutex was released: the store still works
  s.set_faults({});
  CHECK(s.write_if_match("k", *c.token, "mine").ok());
}

TEST_CASE("memory_store: each injected fault", "[memory_store][faults]") {
  store_t s;
  auto c = s.create_if_absent("k", "v0");
  const auto t0 = *c.token;
  auto with = [&](auto set) {
    nc::fault_config f;
    set(f);
    s.set_faults(f);
  };
  SECTION("transient: nothing happens") {
    with([](nc::fault_config& f) { f.transient = 1; });
    auto w = s.write_if_match("k", t0, "v1");
    CHECK(w.status == nc::write_status::transient);
    CHECK(w.error.code == "injected");
    CHECK(s.peek("k")->second == t0);
    CHECK(s.stats().injected_transient == 1);
  }
  SECTION("transient_restart: nothing happens") {
    with([](nc::fault_config& f) { f.transient_restart = 1; });
    CHECK(s.create_if_absent("n", "x").status == nc::write_status::transient_restart);
    CHECK(s.peek("n") == std::nullopt);
  }
  SECTION("permanent: nothing happens") {
    with([](nc::fault_config& f) { f.permanent = 1; });
    CHECK(s.erase_if_match("k", t0).status == nc::write_status::permanent);
    CHECK(s.peek("k")->second == t0);
    CHECK(s.stats().injected_permanent == 1);
  }
  SECTION("indeterminate_lost: reported unknown, not applied") {
    with([](nc::fault_config& f) { f.indeterminate_lost = 1; });
    CHECK(s.write_if_match("k", t0, "v1").status == nc::write_status::indeterminate);
    CHECK(s.peek("k")->first == "v0");
  }
  SECTION("indeterminate_applied: reported unknown, applied") {
    with([](nc::fault_config& f) { f.indeterminate_applied = 1; });
    auto w = s.write_if_match("k", t0, "v1");
    CHECK(w.status == nc::write_status::indeterminate);
    CHECK_FALSE(w.token.has_value());
    CHECK(s.peek("k")->first == "v1");
    CHECK(s.peek("k")->second != t0);
    // a write that would conflict anyway reports the conflict, not indeterminate
    CHECK(s.write_if_match("k", t0, "v2").status == nc::write_status::conflict);
  }
  SECTION("outside_writer: a real conflict, the outside value stored") {
    with([](nc::fault_config& f) { f.outside_writer = 1; });
    s.set_outside_writer([](const std::string& key, std::string& v) { v += "+outside(" + key + ")"; });
    CHECK(s.write_if_match("k", t0, "mine").status == nc::write_status::conflict);
    CHECK(s.peek("k")->first == "v0+outside(k)");
    CHECK(s.stats().outside_writes == 1);
    // create_if_absent on a missing key: the outside writer only writes existing keys
    CHECK(s.create_if_absent("fresh", "x").ok());
  }
  SECTION("read_transient") {
    with([](nc::fault_config& f) { f.read_transient = 1; });
    auto r = s.read("k");
    CHECK(r.status == nc::read_status::transient);
    CHECK(s.stats().read_faults == 1);
  }
  SECTION("latency: calls still behave") {
    with([](nc::fault_config& f) {
      f.latency_min = std::chrono::microseconds(10);
      f.latency_max = std::chrono::microseconds(50);
    });
    CHECK(s.read("k").found());
    CHECK(s.write_if_match("k", t0, "v1").ok());
  }
  SECTION("overwrite gets latency only") {
    with([](nc::fault_config& f) {
      f.permanent = 1;
      f.read_transient = 1;
    });
    CHECK(s.overwrite("k", "blind").ok());
  }
}

TEST_CASE("memory_store: faults are reproducible from the seed", "[memory_store][faults]") {
  auto run = [](std::uint64_t seed) {
    nc::fault_config f;
    f.seed = seed;
    f.transient = 0.2;
    f.indeterminate_lost = 0.2;
    f.permanent = 0.1;
    f.outside_writer = 0.2;
    store_t s(f);
    std::vector<nc::write_status> out;
    for (int i = 0; i < 200; ++i) {
      auto c = s.create_if_absent("k" + std::to_string(i % 7), "v");
      out.push_back(c.status);
      auto r = s.peek("k" + std::to_string(i % 7));
      if (r) out.push_back(s.write_if_match("k" + std::to_string(i % 7), r->second, "w").status);
    }
    return out;
  };
  CHECK(run(42) == run(42));
  CHECK(run(42) != run(43));
  auto a = run(42);
  CHECK(std::count(a.begin(), a.end(), nc::write_status::transient) > 0);
  CHECK(std::count(a.begin(), a.end(), nc::write_status::indeterminate) > 0);
}

TEST_CASE("memory_store: a bad fault_config is rejected, naming the field", "[memory_store][faults]") {
  auto rejects = [](auto set, const std::string& name) {
    nc::fault_config f;
    set(f);
    try {
      store_t s(f);
      FAIL("accepted a bad " << name);
    } catch (const std::invalid_argument& e) {
      CHECK_THAT(e.what(), Catch::Contains(name));
    }
  };
  rejects([](nc::fault_config& f) { f.transient = 1.5; }, "transient");
  rejects([](nc::fault_config& f) { f.outside_writer = -0.1; }, "outside_writer");
  rejects([](nc::fault_config& f) { f.read_transient = std::numeric_limits<double>::quiet_NaN(); },
          "read_transient");
  rejects(
      [](nc::fault_config& f) {
        f.transient = 0.6;
        f.permanent = 0.6;
      },
      "exceeds 1");
  rejects([](nc::fault_config& f) { f.latency_min = std::chrono::nanoseconds(-1); }, "latency_min");
  rejects(
      [](nc::fault_config& f) {
        f.latency_min = std::chrono::microseconds(5);
        f.latency_max = std::chrono::microseconds(1);
      },
      "latency_max");
  store_t ok;
  nc::fault_config bad;
  bad.indeterminate_applied = 2;
  CHECK_THROWS_AS(ok.set_faults(bad), std::invalid_argument);
  CHECK(ok.faults().indeterminate_applied == 0);  // the old config stays
}

TEST_CASE("memory_store: raw CAS increments race exactly", "[memory_store][race][concurrency]") {
  // 8 threads x 2000 CAS increments over 4 keys, with outside writers bumping versions: the
  // final value of each key equals the number of increments applied to it.
  nc::fault_config f;
  f.outside_writer = 0.05;
  f.transient = 0.05;
  f.seed = 9;
  nc::memory_store<int, long> s(f);
  const int keys = 4;
  for (int k = 0; k < keys; ++k) REQUIRE(s.overwrite(k, 0).ok());
  std::vector<std::atomic<long>> applied(keys);
  std::latch start(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = 0; i < 2000; ++i) {
        const int k = (i + t) % keys;
        for (;;) {
          auto r = s.read(k);
          auto w = s.write_if_match(k, r.token, r.value + 1);
          if (w.ok()) {
            ++applied[static_cast<std::size_t>(k)];
            break;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  long total = 0;
  for (int k = 0; k < keys; ++k) {
    CHECK(s.peek(k)->first == applied[static_cast<std::size_t>(k)].load());
    total += s.peek(k)->first;
  }
  CHECK(total == 8 * 2000);
  CHECK(s.stats().outside_writes > 0);
  CHECK(s.size() == keys);
  CHECK(s.snapshot().size() == keys);
}
