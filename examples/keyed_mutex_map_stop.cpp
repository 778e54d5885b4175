// example: examples/keyed_mutex_map_stop.cpp
// Workers that queue for a per-key lock can be told to stop: lock(key, stop_token) wakes a parked
// waiter and returns an empty guard, holding nothing.
#include <noclobber/keyed_mutex_map.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

int main() {
  noclobber::keyed_mutex_map<std::string, noclobber::string_hash, std::equal_to<>> locks;
  auto migration = locks.lock("bucket/tenant-4824/db.sqlite");  // a long job holds the key

  std::atomic<int> stopped{0};
  std::vector<std::jthread> workers;
  for (int i = 0; i < 3; ++i) {
    workers.emplace_back([&](std::stop_token stop) {
      auto guard = locks.lock("bucket/tenant-4824/db.sqlite", stop);  // parks behind the job
      if (!guard) stopped.fetch_add(1);                               // shut down while waiting
    });
  }
  while (locks.counters().sleeps < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (auto& w : workers) w.request_stop();  // wakes the parked workers
  workers.clear();                           // joins them
  migration.unlock();

  std::printf("workers stopped while waiting: %d, live entries: %zu\n", stopped.load(), locks.size());
  return stopped.load() == 3 && locks.size() == 0 ? 0 : 1;
}
