// example: examples/cached_store.cpp
// A read-through cache in front of a store: reads are served from the local copy while it is
// current, and the conditional write behind it still decides. Here the store cannot revalidate, so
// copies younger than a minute are served without asking; one of them is stale, and the update
// through it costs one retry — not the update.
#include <noclobber/cached_store.hpp>
#include <noclobber/memory_store.hpp>
#include <noclobber/read_modify_write.hpp>

#include <chrono>
#include <cstdio>
#include <string>

int main() {
  noclobber::memory_store<std::string, std::string> store;  // any conditional_writer store
  noclobber::store_cache<std::string, std::string, std::uint64_t> cache(
      {.max_bytes = 64 << 20, .serve_unasked_for = std::chrono::minutes(1)});  // one per process
  noclobber::cached_store<decltype(store)> view(store, cache);                 // one per thread

  (void)view.create_if_absent("motd", "hello");                    // written through: the copy is kept
  const auto copy = view.read("motd");                             // served locally
  (void)store.write_if_match("motd", copy.token, "hello, world");  // changed behind the cache

  auto r = noclobber::read_modify_write(view, "motd", [](const std::optional<std::string>& cur) {
    return cur.value_or("") + "!";  // first called with the stale "hello", then with "hello, world"
  });
  std::printf("%s after %u attempts; copies served locally: %llu\n", r.value->c_str(), r.attempts,
              static_cast<unsigned long long>(cache.stats().served_unasked));
  return r.ok() && *r.value == "hello, world!" && r.attempts == 2 ? 0 : 1;
}
