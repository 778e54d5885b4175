// example: examples/adapters/redis_hash.cpp
// A record kept as a Redis hash (one field per member, plus a version field): 8 threads add to a
// cart at once, and a sparse patch applies a coupon at the version it read. Needs
// NOCLOBBER_REDIS_ADDR, e.g. "127.0.0.1:6379".
#include <noclobber/adapters/redis/hash_store.hpp>
#include <noclobber/read_modify_write.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

struct session {
  std::string user;
  std::int64_t items = 0;
  std::optional<std::string> coupon;  // no field while empty
};

int main() {
  const char* addr = std::getenv("NOCLOBBER_REDIS_ADDR");
  if (addr == nullptr) return std::puts("set NOCLOBBER_REDIS_ADDR"), 1;
  const auto spec = noclobber::redis::hash_spec<session>()
                        .field("user", &session::user)
                        .field("items", &session::items)
                        .field("coupon", &session::coupon)
                        .version("version");
  const std::string key = "example:session:" + std::to_string(std::random_device{}());
  noclobber::retry_policy policy;  // 8 threads on one key: allow for many conflicts
  policy.max_attempts = 100;

  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      noclobber::redis::hash_store<session> sessions(addr, spec);  // one connection per thread
      for (int i = 0; i < 10; ++i) {
        auto r = noclobber::read_modify_write(
            sessions, key,
            [](const std::optional<session>& cur) {
              session s = cur.value_or(session{"ada", 0, std::nullopt});
              ++s.items;
              return s;
            },
            policy);
        if (!r.ok()) std::printf("gave up: %s\n", r.last_error.message.c_str());
      }
    });
  }
  for (auto& t : threads) t.join();

  noclobber::redis::hash_store<session> sessions(addr, spec);
  auto loaded = sessions.read(key);
  noclobber::table_patch coupon;  // HSET of one field and the version, nothing else
  spec.set(coupon, &session::coupon, std::optional<std::string>("SPRING"));
  auto w = sessions.patch_if_match(key, loaded.token, coupon);
  if (!w.ok() || !w.token) return std::printf("patch: %s\n", w.error.message.c_str()), 1;
  const session s = sessions.read(key).value;
  std::printf("items = %lld (80 expected), coupon %s, version %lld\n", static_cast<long long>(s.items),
              s.coupon.value_or("-").c_str(), static_cast<long long>(*w.token));
  (void)sessions.erase_if_match(key, *w.token);
  return s.items == 80 && s.coupon == "SPRING" ? 0 : 1;
}
