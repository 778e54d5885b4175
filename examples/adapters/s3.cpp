// example: examples/adapters/s3.cpp
// The fix for the SQLite file kept as one S3 object (docs/scenarios.md), on the S3 API: download
// the object with its ETag, change it, upload it with If-Match (If-None-Match: * to create it); a
// 412 evicts the cached copy and the next attempt downloads again. A per-key lock queues this
// process's writers; the cache turns each repeated download into a 304. Needs the variables
// scripts/servers/radosgw.sh prints (NOCLOBBER_RGW_ENDPOINT, _BUCKET, _ACCESS_KEY, _SECRET_KEY).
#include <noclobber/adapters/s3.hpp>
#include <noclobber/cached_store.hpp>
#include <noclobber/keyed_mutex_map.hpp>
#include <noclobber/locked_read_modify_write.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

int main() {
  const char* vars[] = {"NOCLOBBER_RGW_ENDPOINT", "NOCLOBBER_RGW_BUCKET", "NOCLOBBER_RGW_ACCESS_KEY",
                        "NOCLOBBER_RGW_SECRET_KEY"};
  for (const char* v : vars) {
    if (std::getenv(v) == nullptr) return std::printf("set %s\n", v), 1;
  }
  noclobber::s3::options o;
  o.endpoint = std::getenv("NOCLOBBER_RGW_ENDPOINT");
  o.bucket = std::getenv("NOCLOBBER_RGW_BUCKET");
  o.creds = {std::getenv("NOCLOBBER_RGW_ACCESS_KEY"), std::getenv("NOCLOBBER_RGW_SECRET_KEY"), ""};
  noclobber::s3::store bucket(o);  // one HTTP connection: one thread at a time

  // Fail fast: a server that ignores If-Match / If-None-Match: * cannot protect the object.
  const noclobber::s3::enforcement_report enforced = bucket.probe();
  if (!enforced.writes_enforced())
    return std::printf("preconditions not enforced: %s\n", enforced.steps.c_str()), 1;

  noclobber::store_cache<std::string, std::string, std::string> cache;  // one per process
  noclobber::cached_store<noclobber::s3::store> object(bucket, cache);  // one per thread
  noclobber::keyed_mutex_map<std::string> locks;                        // one per process

  noclobber::retry_policy policy;  // as the original fix: up to 5 attempts, jittered backoff
  policy.max_attempts = 5;
  for (int i = 1; i <= 3; ++i) {
    auto r = noclobber::locked_read_modify_write(
        locks, object, "notes.txt",
        [i](const std::optional<std::string>& cur) {
          return cur.value_or("") + "note " + std::to_string(i) + "\n";
        },
        policy);
    if (!r.ok()) return std::printf("gave up: %s\n", r.last_error.message.c_str()), 1;
  }
  std::printf("notes.txt updated 3 times; downloads saved by a 304: %llu\n",
              static_cast<unsigned long long>(cache.stats().revalidated));
  return 0;
}
