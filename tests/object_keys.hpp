// Object-store-like keys for tests that count allocations: ~50 bytes each, past std::string's
// small-string buffer, so storing one copies it to the heap unless a buffer is reused.
#pragma once

#include <string>
#include <vector>

inline std::vector<std::string> object_keys(int n) {
  std::vector<std::string> keys;
  for (int i = 0; i < n; ++i)
    keys.push_back("bucket/tenant-" + std::to_string(4824 + i % 13) + "/2024/06/part-" +
                   std::to_string(1000000 + i) + ".parquet");
  return keys;
}
