// The uncontended loops bench_read_modify_write.cpp times and bench/callgrind counts: one key of a
// memory_store<std::string, long>, incremented by the library or by hand.
#pragma once

#include <optional>
#include <string>

#include "noclobber/memory_store.hpp"

namespace nc_bench {

using counter_store = noclobber::memory_store<std::string, long>;

inline const std::string& counter_key() {
  static const std::string key = "bucket/tenant-4824/2024/06/counters/requests";
  return key;
}

inline long increment(const std::optional<long>& v) {
  return v.value_or(0) + 1;
}

// What a careful user writes by hand without the library: read, write_if_match, loop.
inline long hand_written(counter_store& store, const std::string& key) {
  long attempts = 0;
  for (;;) {
    ++attempts;
    auto r = store.read(key);
    auto w = r.found() ? store.write_if_match(key, r.token, r.value + 1) : store.create_if_absent(key, 1);
    if (w.ok()) return attempts;
  }
}

}  // namespace nc_bench
