// example: examples/quickstart.cpp
#include <noclobber/noclobber.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

int main() {
  noclobber::memory_store<std::string, int> store;  // or an adapter: SQLite, PostgreSQL, Redis, etcd, HTTP
  noclobber::retry_policy policy;
  policy.max_attempts = 1000;  // 8 writers on one key: conflicts are the normal case here
  auto add_one = [](const std::optional<int>& hits) { return hits.value_or(0) + 1; };

  std::vector<std::jthread> writers;
  for (int w = 0; w < 8; ++w) {
    writers.emplace_back([&] {  // read, add one, write only if nobody wrote in between, else retry
      for (int i = 0; i < 100; ++i) (void)noclobber::read_modify_write(store, "hits", add_one, policy);
    });
  }
  writers.clear();  // joins the writers

  const int hits = store.read("hits").value;
  std::printf("hits = %d of 800 (%s)\n", hits, hits == 800 ? "none lost" : "UPDATES LOST");
  return hits == 800 ? 0 : 1;
}
