// example: examples/adapters/webdav_lock.cpp
// A read-modify-write under a WebDAV LOCK, for writers in several processes: LOCK the resource,
// GET it, let the function compute, PUT it back with the lock token (If:) and the ETag
// (If-Match), UNLOCK. 423 Locked means another client holds the lock: back off and try again.
// A holder that dies keeps the lock at most `timeout` seconds. On Apache mod_dav, LOCK is not
// exclusive under concurrency; the token check on the PUT is what refuses the extra holders (see
// docs/adapters/webdav_lock.md). Needs NOCLOBBER_DAV_URL, e.g. "http://127.0.0.1/dav/".
#include <noclobber/adapters/webdav_lock.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

int main() {
  const char* base = std::getenv("NOCLOBBER_DAV_URL");
  if (base == nullptr) return std::puts("set NOCLOBBER_DAV_URL"), 1;

  noclobber::webdav_lock::store dav(base);  // one HTTP connection: one thread at a time
  noclobber::webdav_lock::lock_options lock;
  lock.timeout = std::chrono::seconds(10);  // how long a crashed holder blocks the key
  lock.owner = "webdav_lock example";

  auto r = noclobber::webdav_lock::update_under_lock(
      dav, "journal.txt",
      [](const std::optional<std::string>& cur) { return cur.value_or("") + "one more line\n"; },
      noclobber::webdav_lock::default_lock_policy(), lock);
  if (!r.ok())
    return std::printf("gave up: %s %s\n", r.last_error.code.c_str(), r.last_error.message.c_str()), 1;
  std::printf("journal.txt is %zu bytes after %u attempt(s); %zu LOCK(s) refused with 423\n", r.value->size(),
              r.attempts, dav.stats().refused);
  return 0;
}
