// example: examples/conditional_writer.cpp
// 16 threads merge disjoint keys into one stored map at the same time (the concurrent
// disjoint-key env PATCH, docs/scenarios.md).
// read_modify_write keeps all 16; the naive read-merge-overwrite would keep one or a few.
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <noclobber/memory_store.hpp>
#include <noclobber/read_modify_write.hpp>

using env_map = std::map<std::string, std::string>;

int main() {
  noclobber::memory_store<std::string, env_map> store;  // any conditional_writer store works
  noclobber::retry_policy policy;
  policy.max_attempts = 100;  // 16 writers on one key: allow for many conflicts

  std::vector<std::thread> writers;
  for (int i = 0; i < 16; ++i) {
    writers.emplace_back([&, i] {
      auto r = noclobber::read_modify_write(
          store, "stacks/demo/env",
          [&](const std::optional<env_map>& current) -> noclobber::update<env_map> {
            env_map next = current.value_or(env_map{});  // absent: start empty (create-if-absent)
            if (next.size() >= 64) return noclobber::abort("too many variables");
            next["KEY_" + std::to_string(i)] = "value " + std::to_string(i);
            return next;
          },
          policy);
      if (!r.ok()) std::printf("writer %d: %s\n", i, std::string(to_string(r.reason)).c_str());
    });
  }
  for (auto& w : writers) w.join();

  const auto stored = store.peek("stacks/demo/env");
  std::printf("keys stored: %zu of 16\n", stored ? stored->first.size() : 0);
  return stored && stored->first.size() == 16 ? 0 : 1;
}
