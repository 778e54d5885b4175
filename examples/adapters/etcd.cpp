// example: examples/adapters/etcd.cpp
// Compare-and-set on etcd's mod_revision through its JSON gateway. A write whose answer was lost
// (a timeout) is `indeterminate`: read_modify_write re-reads to find out, never calls it a
// conflict. Needs NOCLOBBER_ETCD_URL, e.g. "http://127.0.0.1:2379".
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/read_modify_write.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

int main() {
  const char* url = std::getenv("NOCLOBBER_ETCD_URL");
  if (url == nullptr) return std::puts("set NOCLOBBER_ETCD_URL"), 1;

  noclobber::etcd::store store(url, std::chrono::seconds(2));  // one HTTP connection

  // Append a member to a comma-separated list; concurrent appenders never drop each other.
  auto r = noclobber::read_modify_write(store, "config/members", [](const std::optional<std::string>& cur) {
    std::string next = cur.value_or("");
    return next + (next.empty() ? "" : ",") + "node-" + std::to_string(std::rand() % 1000);
  });
  if (!r.ok())
    return std::printf("gave up after %u attempts: %s\n", r.attempts, r.last_error.message.c_str()), 1;
  std::printf("members = %s, mod_revision %lld%s\n", r.value->c_str(), static_cast<long long>(*r.token),
              r.created ? " (created)" : "");
  return 0;
}
