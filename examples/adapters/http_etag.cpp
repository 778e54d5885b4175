// example: examples/adapters/http_etag.cpp
// The fix for the SQLite file kept as one object-store object (docs/scenarios.md), on any HTTP
// server with strong ETags: download, modify, upload with If-Match (If-None-Match: * to create);
// 412 means re-download and retry. A per-key lock in front serialises this process's writers (and
// is required on servers whose conditional PUT is not atomic, such as Apache mod_dav). Needs
// NOCLOBBER_DAV_URL, e.g. "http://127.0.0.1/dav/".
#include <noclobber/adapters/http_etag.hpp>
#include <noclobber/keyed_mutex_map.hpp>
#include <noclobber/locked_read_modify_write.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

int main() {
  const char* base = std::getenv("NOCLOBBER_DAV_URL");
  if (base == nullptr) return std::puts("set NOCLOBBER_DAV_URL"), 1;

  noclobber::http_etag::store store(base);  // one HTTP connection: one thread at a time
  noclobber::keyed_mutex_map<std::string> locks;

  noclobber::retry_policy policy;  // as the original fix: up to 5 attempts, jittered backoff
  policy.max_attempts = 5;
  auto r = noclobber::locked_read_modify_write(
      locks, store, "notes.txt",
      [](const std::optional<std::string>& cur) { return cur.value_or("") + "one more line\n"; }, policy);
  if (!r.ok()) return std::printf("gave up: %s\n", r.last_error.message.c_str()), 1;
  std::printf("notes.txt is %zu bytes after %u attempt(s)\n", r.value->size(), r.attempts);
  return 0;
}
