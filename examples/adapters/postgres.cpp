// example: examples/adapters/postgres.cpp
// Two ways to stop lost updates on PostgreSQL: the version column (optimistic) and the row lock
// (the `env_patch` fix's pessimistic path). Needs NOCLOBBER_PG_CONNINFO, e.g. "host=127.0.0.1 port=5432".
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/read_modify_write.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace pg = noclobber::postgres;

int main() {
  const char* conninfo = std::getenv("NOCLOBBER_PG_CONNINFO");
  if (conninfo == nullptr) return std::puts("set NOCLOBBER_PG_CONNINFO"), 1;

  pg::store store(conninfo, "example_counters");  // one connection: one thread at a time
  store.ensure_table();

  // Optimistic: read (value, version), compute, UPDATE … WHERE version = $read; retry on conflict.
  auto r = noclobber::read_modify_write(store, "visits", [](const std::optional<std::string>& cur) {
    return std::to_string(cur ? std::stoll(*cur) + 1 : 1);
  });
  if (!r.ok()) return std::printf("gave up: %s\n", r.last_error.message.c_str()), 1;
  std::printf("visits = %s (version %lld)\n", r.value->c_str(), static_cast<long long>(*r.token));

  // Pessimistic: one transaction holding the row lock; outcomes map onto HTTP statuses.
  pg::row_lock_options opt;
  opt.lock_timeout = std::chrono::seconds(3);  // busy (503) instead of waiting forever
  opt.max_value_bytes = 64 * 1024;             // too_large (413), checked under the lock
  auto locked = store.update_locked(
      "visits",
      [](const std::string& cur) { return pg::row_decision::set(std::to_string(std::stoll(cur) + 1)); }, opt);
  std::printf("row-lock update: HTTP %d\n", pg::http_status(locked.status));
  return locked.ok() ? 0 : 1;
}
