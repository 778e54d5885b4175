// example: examples/lease_locks.cpp
// Two "processes" (two lease_lock_maps on one lease server) update one counter. The first is
// paused between its read and its write until its lease has run out and the second has written:
// its late write is refused by the conditional write, re-read and retried; nothing is lost.
#include <noclobber/fenced_read_modify_write.hpp>
#include <noclobber/lease_lock.hpp>
#include <noclobber/memory_lease_backend.hpp>
#include <noclobber/memory_store.hpp>

#include <chrono>
#include <cstdio>
#include <latch>
#include <optional>
#include <string>
#include <thread>

namespace nc = noclobber;
using server_t = nc::memory_lease_backend<std::string>;

int main() {
  server_t server;                            // stands for Redis / etcd / PostgreSQL
  nc::memory_store<std::string, long> store;  // stands for the store with conditional writes
  nc::lease_lock_map<server_t> a(server, std::chrono::seconds(10));
  nc::lease_lock_map<server_t> b(server, std::chrono::seconds(10));
  auto add_one = [](const std::optional<long>& v) -> nc::update<long> { return v.value_or(0) + 1; };

  std::latch a_has_read(1), b_has_written(1);
  nc::store_fenced_rmw_result_t<nc::memory_store<std::string, long>> ra;
  std::thread paused([&] {
    bool first = true;
    ra = nc::fenced_read_modify_write(a, store, std::string("counter"), [&](const std::optional<long>& v) {
      if (first) {  // a GC pause, a SIGSTOP: the lease runs out meanwhile
        first = false;
        a_has_read.count_down();
        b_has_written.wait();
      }
      return add_one(v);
    });
  });
  a_has_read.wait();
  server.advance(std::chrono::hours(1));  // a's lease expires on the server
  auto rb = nc::fenced_read_modify_write(b, store, std::string("counter"), add_one);
  b_has_written.count_down();
  paused.join();

  const long value = store.read("counter").value;
  std::printf("a: fence %llu, %u attempts, lease lost: %s\n", static_cast<unsigned long long>(ra.fence),
              ra.attempts, ra.lease_lost ? "yes" : "no");
  std::printf("b: fence %llu, %u attempts\n", static_cast<unsigned long long>(rb.fence), rb.attempts);
  std::printf("counter = %ld (2 updates, none lost)\n", value);
  return ra.ok() && rb.ok() && value == 2 && ra.lease_lost && rb.fence > ra.fence ? 0 : 1;
}
