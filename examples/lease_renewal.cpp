// example: examples/lease_renewal.cpp
// A holder whose work outlasts the lease's TTL: renewed_lease renews it from a background thread,
// so nobody else is granted the key meanwhile; the write behind it is still conditional.
#include <noclobber/lease_lock.hpp>
#include <noclobber/lease_renewal.hpp>
#include <noclobber/memory_lease_backend.hpp>
#include <noclobber/memory_store.hpp>
#include <noclobber/read_modify_write.hpp>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>

namespace nc = noclobber;
using namespace std::chrono_literals;
using server_t = nc::memory_lease_backend<std::string>;

int main() {
  server_t server;                            // stands for Redis / etcd / PostgreSQL
  nc::memory_store<std::string, long> store;  // stands for the store with conditional writes
  nc::lease_lock_map<server_t> mine(server, 1s), other(server, 1s);

  nc::renewed_lease lease(mine.lock("report"), 100ms);  // renewed every 100 ms from now on
  std::this_thread::sleep_for(2500ms);                  // slow work: two and a half TTLs
  const bool taken = other.try_lock("report").owns_lock();
  lease.check();  // throws lease_lost_error had the lease been lost meanwhile
  auto r = nc::read_modify_write(
      store, std::string("report"),
      [](const std::optional<long>& v) -> nc::update<long> { return v.value_or(0) + 1; });
  std::printf("held for 2.5 s on a 1 s lease: %llu renewals, taken by another: %s, write %s\n",
              static_cast<unsigned long long>(lease.renewals()), taken ? "yes" : "no",
              r.ok() ? "applied" : "failed");
  return !taken && r.ok() && lease.unlock() == nc::lease_check::held ? 0 : 1;
}
