// example: examples/adapters/redis_lease.cpp
// A Redis lease lock in front of a Redis conditional write: 4 threads, each with its own
// connections (one per thread, as a process would have), add 1 to a counter 20 times.
// Needs NOCLOBBER_REDIS_ADDR, e.g. "127.0.0.1:6379".
#include <noclobber/adapters/redis.hpp>
#include <noclobber/adapters/redis_lease.hpp>
#include <noclobber/fenced_read_modify_write.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

int main() {
  const char* addr = std::getenv("NOCLOBBER_REDIS_ADDR");
  if (addr == nullptr) return std::puts("set NOCLOBBER_REDIS_ADDR"), 1;
  const std::string key = "example:lease:" + std::to_string(std::rand());

  std::atomic<unsigned> attempts{0}, lost_leases{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      noclobber::redis::store store(addr, noclobber::redis::method::lua_compare_and_set);
      noclobber::redis::lease_backend backend(addr);
      noclobber::lease_lock_map<noclobber::redis::lease_backend> locks(backend, std::chrono::seconds(5));
      for (int i = 0; i < 20; ++i) {
        auto r =
            noclobber::fenced_read_modify_write(locks, store, key, [](const std::optional<std::string>& v) {
              return noclobber::update<std::string>(std::to_string(v ? std::stoll(*v) + 1 : 1));
            });
        if (!r.ok()) std::printf("gave up: %s\n", r.last_error.message.c_str());
        attempts += r.attempts;
        lost_leases += r.lease_lost ? 1 : 0;
      }
    });
  }
  for (auto& th : threads) th.join();

  noclobber::redis::store check(addr);
  const std::string value = check.read(key).value;
  std::printf("counter = %s after 80 updates, %u conditional writes, %u leases lost\n", value.c_str(),
              attempts.load(), lost_leases.load());
  return value == "80" ? 0 : 1;
}
