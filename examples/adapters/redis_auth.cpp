// example: examples/adapters/redis_auth.cpp
// Redis with credentials and a database: an ACL user (AUTH user password) and SELECT, given as
// connect_options or as a redis:// URL; both run again on every reconnect. A wrong password is a
// permanent error whose message never shows the password. Needs NOCLOBBER_REDIS_AUTH_ADDR
// ("host:port"), NOCLOBBER_REDIS_AUTH_USER and NOCLOBBER_REDIS_AUTH_PASSWORD.
#include <noclobber/adapters/redis.hpp>
#include <noclobber/read_modify_write.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>

int main() {
  const char* addr = std::getenv("NOCLOBBER_REDIS_AUTH_ADDR");
  const char* user = std::getenv("NOCLOBBER_REDIS_AUTH_USER");
  const char* password = std::getenv("NOCLOBBER_REDIS_AUTH_PASSWORD");
  if (!addr || !user || !password) return std::puts("set NOCLOBBER_REDIS_AUTH_{ADDR,USER,PASSWORD}"), 1;

  namespace rd = noclobber::redis;
  rd::connect_options options = rd::options_from(addr);  // host and port
  options.username = user;                               // empty: legacy AUTH password
  options.password = password;
  options.db = 2;
  std::cout << "connecting to " << options << "\n";  // redis://[redacted]@host:port/2
  rd::store store(options);

  const std::string key = "example:auth:" + std::to_string(std::random_device{}());
  auto r = noclobber::read_modify_write(store, key, [](const std::optional<std::string>& cur) {
    return std::to_string(cur ? std::stoll(*cur) + 1 : 1);
  });
  std::printf("counter = %s\n", store.read(key).value.c_str());

  // The same server through a URL with a wrong password: refused at connect, permanently.
  const std::string url = "redis://" + std::string(user) + ":not-the-password@" + addr + "/2";
  try {
    rd::store wrong(url);
    return std::puts("a wrong password was accepted"), 1;
  } catch (const std::runtime_error& e) {
    std::printf("wrong password: %s\n", e.what());  // WRONGPASS …, no password in it
    if (std::string(e.what()).find("not-the-password") != std::string::npos) return 1;
  }
  (void)store.erase_if_match(key, store.read(key).token);
  return r.ok() ? 0 : 1;
}
