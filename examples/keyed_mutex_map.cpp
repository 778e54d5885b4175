// example: examples/keyed_mutex_map.cpp
// Writers of the same object key queue behind a per-key lock; writers of other keys never wait.
#include <noclobber/keyed_mutex_map.hpp>

#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

// A stand-in for a remote object store: get and put, no conditional write.
class blob_store {
 public:
  long get(std::string_view key) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = blobs_.find(key);
    return it == blobs_.end() ? 0 : it->second;
  }
  void put(std::string_view key, long value) {
    std::lock_guard<std::mutex> lk(mu_);
    blobs_.insert_or_assign(std::string(key), value);
  }

 private:
  std::mutex mu_;
  std::map<std::string, long, std::less<>> blobs_;
};

int main() {
  blob_store store;
  noclobber::keyed_mutex_map<std::string, noclobber::string_hash, std::equal_to<>> locks;
  const std::vector<std::string> keys = {"bucket/tenant-4824/locations/paris.sqlite",
                                         "bucket/tenant-4824/locations/lyon.sqlite"};

  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        const std::string_view key = keys[i % keys.size()];
        auto guard = locks.lock(key);  // same key: wait here; no std::string is built
        const long rows = store.get(key);
        store.put(key, rows + 1);  // read-modify-write, safe within this process
      }                            // guard released; the entry is freed if nobody else waits for this key
    });
  }
  for (auto& w : writers) w.join();

  for (const auto& key : keys) std::printf("%s: %ld rows\n", key.c_str(), store.get(key));
  std::printf("live entries: %zu, acquisitions: %llu\n", locks.size(),
              static_cast<unsigned long long>(locks.counters().acquisitions));
  const bool ok = store.get(keys[0]) == 2000 && store.get(keys[1]) == 2000 && locks.size() == 0;
  return ok ? 0 : 1;
}
