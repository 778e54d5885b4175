// example: examples/adapters/etcd_auth.cpp
// etcd with v3 auth: the store and the lease backend take the same `credentials`; each gets a
// token from /v3/auth/authenticate, sends it on every request, and gets a new one when etcd
// refuses it as expired. A wrong password is permanent and its message never holds the password.
// Needs NOCLOBBER_ETCD_AUTH_URL, _USER and _PASSWORD (scripts/servers/etcd_auth.sh starts such
// an etcd).
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/etcd_lease.hpp>
#include <noclobber/lease_lock.hpp>
#include <noclobber/read_modify_write.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

int main() {
  const char* url = std::getenv("NOCLOBBER_ETCD_AUTH_URL");
  const char* user = std::getenv("NOCLOBBER_ETCD_AUTH_USER");
  const char* password = std::getenv("NOCLOBBER_ETCD_AUTH_PASSWORD");
  if (!url || !user || !password) return std::puts("set NOCLOBBER_ETCD_AUTH_{URL,USER,PASSWORD}"), 1;

  namespace et = noclobber::etcd;
  const et::credentials app{user, password};
  et::lease_backend backend(url, app, "example/locks/");
  noclobber::lease_lock_map<et::lease_backend> locks(backend, std::chrono::seconds(10));
  auto lease = locks.lock("report");  // the lease's token fences the writes under it
  et::store store(url, app);
  auto r = noclobber::read_modify_write(
      store, "config/auth-counter",
      [](const std::optional<std::string>& cur) { return std::to_string(cur ? std::stoll(*cur) + 1 : 1); });
  if (!r.ok()) return std::printf("gave up: %s\n", r.last_error.message.c_str()), 1;
  std::printf("auth-counter = %s under lease token %llu\n", r.value->c_str(),
              static_cast<unsigned long long>(lease.token()));
  if (lease.unlock() != noclobber::lease_check::held) return std::puts("lease lost"), 1;

  et::store wrong(url, et::credentials{user, "not-the-password"});
  auto w = wrong.read("config/auth-counter");
  std::printf("wrong password: %s\n", w.error.message.c_str());
  return w.status == noclobber::read_status::permanent ? 0 : 1;
}
