// example: examples/quickstart.cpp
#include <noclobber/noclobber.hpp>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

int main() {
  noclobber::memory_store<std::string, int> store;  // or a SQLite/PostgreSQL/Redis/etcd/HTTP adapter
  noclobber::retry_policy policy;
  policy.max_attempts = 1000;  // 8 writers on one key: conflicts are the normal case here

  std::vector<std::jthread> writers;
  for (int w = 0; w < 8; ++w) {
    writers.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        // Read, add one, write only if nobody wrote in between; otherwise re-read and retry.
        auto r = noclobber::read_modify_write(
            store, "hits", [](const std::optional<int>& hits) { return hits.value_or(0) + 1; }, policy);
        if (!r.ok()) std::printf("gave up: %s\n", std::string(noclobber::to_string(r.reason)).c_str());
      }
    });
  }
  writers.clear();  // joins

  const int hits = store.read("hits").value;
  std::printf("hits = %d of 800: %s\n", hits, hits == 800 ? "no update lost" : "UPDATES LOST");
  return hits == 800 ? 0 : 1;
}
