// example: examples/adapters/redis_sentinel.cpp
// A counter in Redis behind Sentinel: each thread's store asks the Sentinels for the primary,
// moves to the new one after a failover, and with wait_replicas = 1 reports a write the replicas
// did not confirm as indeterminate (read_modify_write then reads back to find out). Needs
// NOCLOBBER_REDIS_SENTINELS ("h:p,h:p,h:p") and NOCLOBBER_REDIS_MASTER (the monitored name), as
// scripts/clusters/redis.sh prints them.
#include <noclobber/adapters/redis_sentinel.hpp>
#include <noclobber/read_modify_write.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

int main() {
  const char* sentinels = std::getenv("NOCLOBBER_REDIS_SENTINELS");
  const char* master = std::getenv("NOCLOBBER_REDIS_MASTER");
  if (sentinels == nullptr || master == nullptr)
    return std::puts("set NOCLOBBER_REDIS_SENTINELS and NOCLOBBER_REDIS_MASTER"), 1;

  noclobber::redis::sentinel_options options;
  options.sentinels = noclobber::redis::split_addresses(sentinels);
  options.master_name = master;
  options.wait_replicas = 1;  // acknowledged = on the primary and on at least one replica
  options.wait_timeout = std::chrono::milliseconds(500);
  const std::string key = "example:visits:" + std::to_string(std::rand());

  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      noclobber::redis::sentinel_store store(options);  // one connection per thread
      for (int i = 0; i < 10; ++i) {
        auto r = noclobber::read_modify_write(store, key, [](const std::optional<std::string>& cur) {
          return std::to_string(cur ? std::stoll(*cur) + 1 : 1);
        });
        if (!r.ok()) std::printf("gave up: %s\n", r.last_error.message.c_str());
      }
    });
  }
  for (auto& t : threads) t.join();

  noclobber::redis::sentinel_store reader(options);
  auto final_value = reader.read(key);
  std::printf("visits = %s (40 expected) on primary %s\n", final_value.value.c_str(),
              reader.primary().c_str());
  return final_value.value == "40" ? 0 : 1;
}
