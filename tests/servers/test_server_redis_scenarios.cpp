// The model cache refresh on Redis (NOCLOBBER_REDIS_ADDR), through a typed record kept as a
// hash: `models:<name>` with the model's fields, its cache fields and a version field. Editors
// change the model with read_modify_write; a read path refreshes three cache fields with a
// sparse patch at the version it loaded, dropped when the model moved.
//
// Proven by the race harness on the hash, for both write methods (16 writers: the naive read,
// compute, overwrite loses 15 of 16 forced writes; read_modify_write none over 16 x 25), and the
// scenario's own operations raced for real behind a latch.
#include <noclobber/adapters/redis/hash_store.hpp>
#include <noclobber/json/codec.hpp>
#include <noclobber/patch_if_unchanged.hpp>
#include <noclobber/race_harness/field_workload.hpp>
#include <noclobber/read_modify_write.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <latch>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "scenario_harness.hpp"
#include "server_env.hpp"

namespace nc = noclobber;
namespace rd = noclobber::redis;
using noclobber_test::model;

namespace {

std::string addr() {
  return nc_test::server_env("NOCLOBBER_REDIS_ADDR");
}

model initial_model() {
  model m;
  m.description = "query-backed model";
  return m;
}

rd::hash_spec<model> models_spec() {
  return rd::hash_spec<model>()
      .field("description", &model::description)
      .field("edits", &model::edits)
      .field("columns", &model::columns, nc::json::codec<std::vector<std::string>>{})
      .field("backing_sql", &model::backing_sql)
      .field("data_source", &model::data_source)
      .version("revision");
}

// Deletes the scenario's keys when the test ends, whatever it did.
struct keys_guard {
  std::vector<std::string> keys;
  ~keys_guard() {
    try {
      rd::hash_store<model> s(addr(), models_spec());
      for (const auto& k : keys) (void)rd::detail::command(s.native_handle(), {"DEL", k});
    } catch (...) {  // the server is gone: nothing to clean
    }
  }
};

const char* method_name(rd::method m) {
  return m == rd::method::watch_multi_exec ? "WATCH/MULTI/EXEC" : "Lua";
}

}  // namespace

TEST_CASE("scenario, model cache refresh on a Redis hash: the harness (16 writers)",
          "[server][redis][scenario]") {
  for (auto m : {rd::method::watch_multi_exec, rd::method::lua_compare_and_set}) {
    INFO(method_name(m));
    const std::string base = nc_test::unique_name("models");
    keys_guard guard{{base + ":naive", base + ":cas"}};
    using store_t = rd::hash_store<model>;
    {
      store_t s(addr(), models_spec(), m);
      for (const auto& k : guard.keys) REQUIRE(s.create_if_absent(k, initial_model()).ok());
    }
    noclobber_test::prove_with_harness<store_t>(
        std::string("redis hash (") + method_name(m) + ")",
        [&](unsigned) { return store_t(addr(), models_spec(), m); },
        nc::field_workload<model>(&model::description, [](model& v, const nc::write_tag&) { ++v.edits; }),
        {guard.keys[0]}, {guard.keys[1]});
    store_t check(addr(), models_spec(), m);
    CHECK(check.read(guard.keys[1]).value.edits ==
          noclobber_test::scenario_writers * noclobber_test::scenario_ops);
    CHECK(check.read(guard.keys[0]).value.edits < noclobber_test::scenario_writers);
  }
}

TEST_CASE("scenario, model cache refresh on a Redis hash: 8 editors and 8 refreshers race; no edit is lost",
          "[server][redis][scenario]") {
  for (auto m : {rd::method::watch_multi_exec, rd::method::lua_compare_and_set}) {
    INFO(method_name(m));
    const auto spec = models_spec();
    const std::string key = nc_test::unique_name("models") + ":qb";
    keys_guard guard{{key}};
    {
      rd::hash_store<model> s(addr(), spec, m);
      REQUIRE(s.create_if_absent(key, initial_model()).ok());
    }
    const auto counts =
        noclobber_test::race_cache_refresh([&] { return rd::hash_store<model>(addr(), spec, m); }, key, spec);
    CHECK(counts.errors == 0);
    CHECK(counts.applied + counts.dropped == 8 * 25);
    CHECK(counts.applied > 0);
    rd::hash_store<model> check(addr(), spec, m);
    CHECK(check.read(key).value.edits == 8 * 25);  // every edit survived every refresh
  }
}

TEST_CASE(
    "scenario, model cache refresh on a Redis hash: saving the loaded model undoes an edit; the patch "
    "does not",
    "[server][redis][scenario]") {
  const auto spec = models_spec();
  const std::string key = nc_test::unique_name("models") + ":qb";
  keys_guard guard{{key}};
  rd::hash_store<model> reader(addr(), spec), editor(addr(), spec);
  REQUIRE(reader.create_if_absent(key, initial_model()).ok());
  auto edit = [&] {
    REQUIRE(nc::read_modify_write(editor, key, [](const std::optional<model>& cur) -> nc::update<model> {
              model next = *cur;
              next.description = "edited by B";
              ++next.edits;
              return next;
            }).ok());
  };

  // The bug: the read path saves the whole model it loaded, after B's edit.
  auto loaded = reader.read(key);
  edit();
  model refreshed = loaded.value;
  refreshed.columns = {"region"};
  REQUIRE(reader.overwrite(key, refreshed).ok());
  CHECK(reader.read(key).value.description == "query-backed model");  // B's edit is gone

  // The fix: a sparse patch at the revision it read, dropped when the model moved.
  loaded = reader.read(key);
  edit();
  nc::table_patch p;
  spec.set(p, &model::columns, std::vector<std::string>{"region"});
  auto r = nc::patch_if_unchanged(reader, key, loaded.token, p, nc::patch_conflict::drop);
  CHECK(r.outcome == nc::patch_outcome::dropped);
  const model now = reader.read(key).value;
  CHECK(now.description == "edited by B");
  CHECK(now.edits == 1);
}
