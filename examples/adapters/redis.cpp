// example: examples/adapters/redis.cpp
// A lost-update-free counter in Redis: WATCH/MULTI/EXEC (or a Lua compare-and-set), with a pool
// of connections shared by threads. Needs NOCLOBBER_REDIS_ADDR, e.g. "127.0.0.1:6379".
#include <noclobber/adapters/redis.hpp>
#include <noclobber/read_modify_write.hpp>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

int main() {
  const char* addr = std::getenv("NOCLOBBER_REDIS_ADDR");
  if (addr == nullptr) return std::puts("set NOCLOBBER_REDIS_ADDR"), 1;

  // 4 connections for 8 threads. A store never leaves WATCH armed between calls, so handing
  // it back to the pool after any call is safe.
  noclobber::redis::store_pool pool(addr, 4, noclobber::redis::method::watch_multi_exec);
  const std::string key = "example:likes:" + std::to_string(std::random_device{}());
  noclobber::retry_policy policy;  // 8 threads on one key: allow for many conflicts
  policy.max_attempts = 100;

  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto conn = pool.acquire();
        auto r = noclobber::read_modify_write(
            *conn, key,
            [](const std::optional<std::string>& cur) {
              return std::to_string(cur ? std::stoll(*cur) + 1 : 1);
            },
            policy);
        if (!r.ok()) std::printf("gave up: %s\n", r.last_error.message.c_str());
      }
    });
  }
  for (auto& t : threads) t.join();

  auto final_value = pool.acquire()->read(key);
  std::printf("likes = %s (80 expected)\n", final_value.value.c_str());
  return final_value.value == "80" ? 0 : 1;
}
