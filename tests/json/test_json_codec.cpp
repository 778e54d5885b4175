// The JSON codec: structs round-trip through NLOHMANN_DEFINE_TYPE_*; malformed JSON, a missing
// member, a wrong type and invalid UTF-8 are permanent outcomes carrying nlohmann's message;
// the race harness runs on a JSON-typed view (16 forced writers).
#include <noclobber/json/codec.hpp>
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>
#include <noclobber/race_harness/field_workload.hpp>
#include <noclobber/read_modify_write.hpp>
#include <noclobber/typed_store.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace nc = noclobber;

namespace app {
struct model {
  std::string name;
  std::string description;
  std::int64_t revision = 0;
  std::map<std::string, std::string> env;
  std::vector<std::string> columns;
  friend bool operator==(const model&, const model&) = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(model, name, description, revision, env, columns)

struct lenient {
  std::string name;
  int count = 7;
  friend bool operator==(const lenient&, const lenient&) = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(lenient, name, count)
}  // namespace app

using app::model;
using bytes_store = nc::memory_store<std::string, std::string>;
static_assert(nc::codec<nc::json::codec<model>, model>);

TEST_CASE("json codec: structs round-trip; equal values encode equally", "[json]") {
  const nc::json::codec<model> c;
  const model m{"qb", "revenue", 3, {{"B", "2"}, {"A", "1"}}, {"region", "total"}};
  const std::string text = c.encode(m);
  CHECK(
      text ==
      R"({"columns":["region","total"],"description":"revenue","env":{"A":"1","B":"2"},"name":"qb","revision":3})");
  CHECK(c.decode(text) == m);
  CHECK(nc::json::codec<model>{2}.encode(m).find("\n  \"columns\"") != std::string::npos);
  // Members missing from the text take the default with the _WITH_DEFAULT macro.
  CHECK(nc::json::codec<app::lenient>{}.decode(R"({"name":"x"})") == app::lenient{"x", 7});
}

TEST_CASE("json codec: every bad input is a permanent outcome with nlohmann's message", "[json]") {
  bytes_store bytes;
  auto models = nc::typed<model>(bytes, nc::json::codec<model>{});
  struct bad_case {
    const char* stored;
    const char* message;
  };
  const bad_case cases[] = {
      {R"({"name":)", "[json.exception.parse_error.101]"},
      {R"({"name":"qb"})", "[json.exception.out_of_range.403] key 'description' not found"},
      {R"({"name":"qb","description":"d","revision":"3","env":{},"columns":[]})",
       "[json.exception.type_error.302] type must be number, but is string"},
      {"", "[json.exception.parse_error.101]"},
      {"\xff\xfe", "[json.exception.parse_error.101]"},
  };
  int i = 0;
  for (const auto& c : cases) {
    const std::string key = "m" + std::to_string(i++);
    REQUIRE(bytes.create_if_absent(key, c.stored).ok());
    const auto r = models.read(key);
    INFO(c.stored);
    CHECK(r.status == nc::read_status::permanent);
    CHECK(r.error.code == "codec");
    CHECK(r.error.message.starts_with("key '" + key + "': " + c.message));
    bool called = false;
    const auto rmw =
        nc::read_modify_write(models, key, [&](const std::optional<model>&) -> nc::update<model> {
          called = true;
          return model{};
        });
    CHECK(rmw.last_status == nc::write_status::permanent);
    CHECK_FALSE(called);
    CHECK(bytes.read(key).value == c.stored);  // the corrupt record is still there, untouched
  }

  // Found by tests/fuzz/fuzz_json: nlohmann/json stops at a NUL byte as at the end of input, so a
  // record with anything after a NUL decoded as the part before it.
  const std::string with_nul = nc::json::codec<model>{}.encode(model{}) + std::string("\0garbage", 8);
  REQUIRE(bytes.create_if_absent("nul", with_nul).ok());
  const auto nul = models.read("nul");
  CHECK(nul.status == nc::read_status::permanent);
  CHECK(nul.error.code == "codec");
  CHECK_THAT(nul.error.message, Catch::Contains("a NUL byte at offset"));

  // A string that is not UTF-8 cannot be encoded: nothing is written.
  model bad;
  bad.name = "\xc3\x28";
  const auto w = models.create_if_absent("bad", bad);
  CHECK(w.status == nc::write_status::permanent);
  CHECK(w.error.message.find("[json.exception.type_error.316]") != std::string::npos);
  CHECK(bytes.read("bad").absent());
}

TEST_CASE("json codec: the race harness on a JSON-typed store (16 forced writers)", "[json][race]") {
  bytes_store bytes;
  auto models = nc::typed<model>(bytes, nc::json::codec<model>{});
  auto opts = [](const char* strategy) {
    nc::race_options_for<decltype(models)> o;
    o.writers = 16;
    o.ops_per_writer = strategy == std::string("naive") ? 1 : 10;
    o.keys = {std::string("models/") + strategy};
    o.strategy_name = strategy;
    // The tag travels in `description`; each writer also sets its own env entry.
    o.workload = nc::field_workload<model>(&model::description, [](model& m, const nc::write_tag& t) {
      m.env["w" + std::to_string(t.writer)] = "x";
    });
    return o;
  };
  const auto naive = nc::run_race(models, nc::naive_strategy{}, opts("naive"));
  INFO(naive.to_text());
  CHECK(naive.lost() == 15);
  CHECK(models.read("models/naive").value.env.size() < 16);

  const auto cas = nc::run_race(models, nc::cas_strategy{}, opts("cas"));
  INFO(cas.to_text());
  CHECK(cas.op_errors == 0);
  CHECK(cas.lost() == 0);
  CHECK(cas.check.ok());
  CHECK(models.read("models/cas").value.env.size() == 16);
}
