// Shared by the Redis server tests: the server's address and raw commands on a hiredis context.
#pragma once

#include <noclobber/adapters/redis/connection.hpp>

#include <catch2/catch.hpp>

#include <initializer_list>
#include <string>
#include <string_view>

#include "server_env.hpp"

namespace nc_test {

inline std::string redis_addr() {
  return server_env("NOCLOBBER_REDIS_ADDR");
}

/// One command on `c`, its reply; the test fails on an I/O error.
inline noclobber::redis::detail::reply_ptr raw(redisContext* c,
                                               std::initializer_list<std::string_view> args) {
  auto r = noclobber::redis::detail::command(c, args);
  REQUIRE(r != nullptr);
  return r;
}

}  // namespace nc_test
