// Tests for patch_if_unchanged (the cache refresh that overwrites an edit): a sparse patch
// against an expected revision.
#include <catch2/catch.hpp>

#include <atomic>
#include <barrier>
#include <cstdint>
#include <latch>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "noclobber/cas_retry.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/memory_store.hpp"
#include "noclobber/patch_if_unchanged.hpp"
#include "noclobber/read_modify_write.hpp"

namespace nc = noclobber;

namespace {

struct model {
  std::string description;
  std::vector<std::string> edits;    // every editor's update, by id
  std::vector<std::string> columns;  // the cache a read path refreshes
  std::string backing_sql;           // cache
  friend bool operator==(const model&, const model&) = default;
};

using store_t = nc::memory_store<std::string, model>;

// A conditional_writer without patch_if_match: patch_if_unchanged emulates the patch.
struct plain_store {
  using key_type = std::string;
  using value_type = model;
  using token_type = std::uint64_t;
  store_t inner;
  nc::read_result<model, std::uint64_t> read(const std::string& k) { return inner.read(k); }
  nc::write_result<std::uint64_t> write_if_match(const std::string& k, const std::uint64_t& t,
                                                 const model& v) {
    return inner.write_if_match(k, t, v);
  }
  nc::write_result<std::uint64_t> create_if_absent(const std::string& k, const model& v) {
    return inner.create_if_absent(k, v);
  }
};
static_assert(!nc::patchable_writer<plain_store>);
static_assert(nc::patchable_writer<store_t>);

nc::retry_policy patient() {
  nc::retry_policy p;
  p.backoff = nc::backoff_policy::full_jitter(std::chrono::microseconds(1), std::chrono::microseconds(100));
  p.max_attempts = 100000;
  return p;
}

auto refresh_patch(const model& loaded) {
  return [cols = std::vector<std::string>{"c-" + loaded.description},
          sql = "select /*" + loaded.description + "*/"](model& m) {
    m.columns = cols;
    m.backing_sql = sql;
  };
}

template <class Store>
void edit(Store& store, const std::string& key, const std::string& id) {
  auto r = nc::read_modify_write(
      store, key,
      [&](const std::optional<model>& cur) {
        model next = cur.value_or(model{});
        next.description = "desc-" + id;
        next.edits.push_back(id);
        return next;
      },
      patient());
  REQUIRE(r.ok());
}

}  // namespace

TEMPLATE_TEST_CASE("patch_if_unchanged: applied, dropped, retried, absent", "[patch]", store_t, plain_store) {
  TestType store;
  edit(store, "qb", "e0");
  auto loaded = store.read("qb");
  REQUIRE(loaded.found());

  SECTION("unchanged revision: applied, only the cache fields change") {
    auto r = nc::patch_if_unchanged(store, "qb", loaded.token, refresh_patch(loaded.value));
    REQUIRE(r.outcome == nc::patch_outcome::applied);
    auto now = store.read("qb");
    CHECK(now.value.columns == std::vector<std::string>{"c-desc-e0"});
    CHECK(now.value.edits == std::vector<std::string>{"e0"});
    REQUIRE(r.token.has_value());
    CHECK(*r.token == now.token);
  }
  SECTION("the model was edited since: dropped, the edit kept") {
    edit(store, "qb", "e1");
    auto r = nc::patch_if_unchanged(store, "qb", loaded.token, refresh_patch(loaded.value),
                                    nc::patch_conflict::drop);
    CHECK(r.outcome == nc::patch_outcome::dropped);
    CHECK(r.last_status == nc::write_status::conflict);
    CHECK(r.reason == nc::stop_reason::decided);  // dropped at the refusal: no retry, no backoff
    CHECK(r.attempts == 1);
    auto now = store.read("qb");
    CHECK(now.value.columns.empty());
    CHECK(now.value.edits == std::vector<std::string>{"e0", "e1"});
  }
  SECTION("edited since, retry asked: the same sparse patch lands on the newer revision") {
    edit(store, "qb", "e1");
    auto r = nc::patch_if_unchanged(store, "qb", loaded.token, refresh_patch(loaded.value),
                                    nc::patch_conflict::retry, patient());
    CHECK(r.outcome == nc::patch_outcome::applied);
    CHECK(r.attempts == 2);
    auto now = store.read("qb");
    CHECK(now.value.columns == std::vector<std::string>{"c-desc-e0"});
    CHECK(now.value.description == "desc-e1");
    CHECK(now.value.edits == std::vector<std::string>{"e0", "e1"});
  }
  SECTION("nothing to patch: absent") {
    auto r = nc::patch_if_unchanged(store, "missing", loaded.token, refresh_patch(loaded.value));
    CHECK(r.outcome == nc::patch_outcome::absent);
    CHECK(r.reason == nc::stop_reason::decided);
    CHECK(r.last_status == nc::write_status::absent);
  }
}

TEST_CASE("patch_if_unchanged: a throwing patch changes nothing", "[patch][exceptions]") {
  store_t store;
  edit(store, "qb", "e0");
  auto loaded = store.read("qb");
  auto throwing = [](model& m) {
    m.backing_sql = "half-written";
    throw std::runtime_error("resolver failed");
  };
  CHECK_THROWS_AS(nc::patch_if_unchanged(store, "qb", loaded.token, throwing), std::runtime_error);
  CHECK(store.read("qb").value == loaded.value);
  CHECK(store.read("qb").token == loaded.token);
  plain_store plain;
  edit(plain, "qb", "e0");
  auto loaded2 = plain.read("qb");
  CHECK_THROWS_AS(nc::patch_if_unchanged(plain, "qb", loaded2.token, throwing), std::runtime_error);
  CHECK(plain.read("qb").value == loaded2.value);
}

TEST_CASE("patch_if_unchanged: transient and indeterminate", "[patch][faults]") {
  store_t store;
  edit(store, "qb", "e0");
  auto loaded = store.read("qb");
  nc::retry_policy p;
  p.backoff = nc::backoff_policy::immediate();
  p.max_attempts = 64;
  SECTION("transient is resent") {
    nc::fault_config f;
    f.transient = 0.5;
    f.seed = 11;
    store.set_faults(f);
    auto r = nc::patch_if_unchanged(store, "qb", loaded.token, refresh_patch(loaded.value),
                                    nc::patch_conflict::drop, p);
    CHECK(r.outcome == nc::patch_outcome::applied);
  }
  SECTION("indeterminate, not applied: same token on re-read, resent") {
    nc::fault_config f;
    f.indeterminate_lost = 0.5;
    f.seed = 5;
    store.set_faults(f);
    auto r = nc::patch_if_unchanged(store, "qb", loaded.token, refresh_patch(loaded.value),
                                    nc::patch_conflict::drop, p);
    CHECK(r.outcome == nc::patch_outcome::applied);
    CHECK(store.peek("qb")->first.columns == std::vector<std::string>{"c-desc-e0"});
  }
  SECTION("indeterminate, applied: the token moved; unknowable for a native patch") {
    nc::fault_config f;
    f.indeterminate_applied = 1.0;
    store.set_faults(f);
    auto r = nc::patch_if_unchanged(store, "qb", loaded.token, refresh_patch(loaded.value),
                                    nc::patch_conflict::drop, p);
    CHECK(r.outcome == nc::patch_outcome::gave_up);
    CHECK(r.indeterminate);
    CHECK(r.reason == nc::stop_reason::indeterminate);
  }
  SECTION("indeterminate, applied, emulated path: recognised by value") {
    plain_store plain;
    edit(plain, "qb", "e0");
    auto l2 = plain.read("qb");
    nc::fault_config f;
    f.indeterminate_applied = 1.0;
    plain.inner.set_faults(f);
    auto r =
        nc::patch_if_unchanged(plain, "qb", l2.token, refresh_patch(l2.value), nc::patch_conflict::drop, p);
    CHECK(r.outcome == nc::patch_outcome::applied);
  }
}

TEST_CASE("cache_refresh race: cache refreshes never undo concurrent edits",
          "[patch][race][cache_refresh][concurrency]") {
  // Editors edit the model (every edit id must survive); refreshers load it, "resolve" the
  // query, and patch the cache fields with drop-on-conflict. The naive refresh (save the whole
  // model it loaded) is run under the same race as the negative control, with its loss forced:
  // the editors start only once the first refresher has loaded the model, and that refresher
  // saves its stale copy only after an edit has landed, so at least that edit is lost.
  const int editors = 3;
  const int refreshers = 3;
  const int edits_each = 150;
  auto run = [&](auto& store, bool naive) {
    edit(store, "qb", "seed");
    std::atomic<int> dropped{0};
    std::atomic<int> applied{0};
    std::atomic<bool> editing{true};
    std::latch start(editors + refreshers);
    std::latch first_load(naive ? 1 : 0);
    std::vector<std::thread> threads;
    for (int e = 0; e < editors; ++e) {
      threads.emplace_back([&, e] {
        start.arrive_and_wait();
        first_load.wait();
        for (int i = 0; i < edits_each; ++i) {
          const std::string id = std::to_string(e) + "." + std::to_string(i);
          auto r = nc::read_modify_write(
              store, "qb",
              [&](const std::optional<model>& cur) {
                model next = cur.value_or(model{});
                next.description = "desc-" + id;
                next.edits.push_back(id);
                return next;
              },
              patient());
          if (!r.ok()) dropped += 1000000;  // poison: shows up in the check below
        }
      });
    }
    for (int f = 0; f < refreshers; ++f) {
      threads.emplace_back([&, f] {
        start.arrive_and_wait();
        bool forced = naive && f == 0;
        for (;;) {
          const bool last = !editing.load();  // one more refresh after the edits stop
          auto loaded = store.read("qb");
          std::this_thread::yield();  // "resolve the backing query"
          if (forced) {               // the editors go now; wait until one of their edits has landed
            forced = false;
            first_load.count_down();
            while (store.peek("qb")->second == loaded.token) std::this_thread::yield();
          }
          if (naive) {
            model whole = loaded.value;
            refresh_patch(loaded.value)(whole);
            (void)store.overwrite("qb", whole);  // the bug: saves the whole stale model
            ++applied;
          } else {
            auto r = nc::patch_if_unchanged(store, "qb", loaded.token, refresh_patch(loaded.value));
            if (r.outcome == nc::patch_outcome::applied) ++applied;
            if (r.outcome == nc::patch_outcome::dropped) ++dropped;
          }
          if (last) break;
        }
      });
    }
    for (int e = 0; e < editors; ++e) threads[static_cast<std::size_t>(e)].join();
    editing = false;
    for (std::size_t i = editors; i < threads.size(); ++i) threads[i].join();
    const auto final_model = store.peek("qb")->first;
    std::set<std::string> ids(final_model.edits.begin(), final_model.edits.end());
    int missing = 0;
    for (int e = 0; e < editors; ++e) {
      for (int i = 0; i < edits_each; ++i)
        missing += ids.count(std::to_string(e) + "." + std::to_string(i)) ? 0 : 1;
    }
    return std::tuple{missing, applied.load(), dropped.load()};
  };
  SECTION("patch_if_unchanged: every edit survives") {
    store_t store;
    auto [missing, applied, dropped] = run(store, false);
    CHECK(missing == 0);
    CHECK(dropped < 1000000);
    CHECK(applied > 0);
  }
  SECTION("naive whole-model save loses edits (negative control)") {
    store_t store;
    CHECK(std::get<0>(run(store, true)) > 0);  // at least the edit the forced refresh straddled
  }
}
