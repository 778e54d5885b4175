// example: examples/records/typed_store.cpp
// A struct stored as JSON in any byte store: typed<T>(store, codec) shows the store as a store of
// T, so read_modify_write hands your function a model, not a string. A stored value the codec
// cannot read stops the update with the codec's message; it is never replaced by a default.
#include <noclobber/json/codec.hpp>
#include <noclobber/memory_store.hpp>
#include <noclobber/read_modify_write.hpp>
#include <noclobber/typed_store.hpp>

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>

struct model {
  std::string description;
  std::int64_t revision = 0;
  std::map<std::string, std::string> env;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(model, description, revision, env)

int main() {
  noclobber::memory_store<std::string, std::string> db;  // or any adapter that keeps strings
  auto models = noclobber::typed<model>(db, noclobber::json::codec<model>{});

  auto r = noclobber::read_modify_write(models, "qb", [](const std::optional<model>& cur) {
    model m = cur.value_or(model{"query-backed", 0, {}});
    m.env["REGION"] = "eu-west-1";
    ++m.revision;
    return m;
  });
  std::printf("stored: %s\n", db.read("qb").value.c_str());

  (void)db.overwrite("broken", "{\"description\": 5}");  // written by something else
  auto bad = noclobber::read_modify_write(
      models, "broken", [](const std::optional<model>& cur) { return cur.value_or(model{}); });
  std::printf("broken: %s, %s: %s\n", std::string(noclobber::to_string(bad.outcome)).c_str(),
              bad.last_error.code.c_str(), bad.last_error.message.c_str());
  return r.ok() && !bad.ok() && bad.last_error.code == "codec" ? 0 : 1;
}
