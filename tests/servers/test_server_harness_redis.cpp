// The Redis store, both write methods, proven by the race harness (see harness_common.hpp).
#include <memory>
#include <noclobber/adapters/redis.hpp>

#include "harness_common.hpp"
#include "server_env.hpp"

using namespace nc_harness;

TEST_CASE("race harness: redis WATCH/MULTI/EXEC", "[server][redis][harness][concurrency]") {
  const std::string addr = nc_test::server_env("NOCLOBBER_REDIS_ADDR");
  prove_adapter<noclobber::redis::store>("redis-watch", [&](unsigned) {
    return std::make_unique<noclobber::redis::store>(addr, noclobber::redis::method::watch_multi_exec);
  });
}

TEST_CASE("race harness: redis Lua compare-and-set", "[server][redis][harness][concurrency]") {
  const std::string addr = nc_test::server_env("NOCLOBBER_REDIS_ADDR");
  prove_adapter<noclobber::redis::store>("redis-lua", [&](unsigned) {
    return std::make_unique<noclobber::redis::store>(addr, noclobber::redis::method::lua_compare_and_set);
  });
}
