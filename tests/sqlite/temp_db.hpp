// A database file in the temp folder, removed (with its -wal and -shm files) at scope exit.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

namespace noclobber_test {

class temp_db {
 public:
  explicit temp_db(const std::string& tag) {
    static std::atomic<int> counter{0};
    path_ = (std::filesystem::temp_directory_path() / ("noclobber_" + tag + "_" + std::to_string(::getpid()) +
                                                       "_" + std::to_string(counter++) + ".db"))
                .string();
    remove_all();
  }
  temp_db(const temp_db&) = delete;
  temp_db& operator=(const temp_db&) = delete;
  ~temp_db() { remove_all(); }
  const std::string& path() const noexcept { return path_; }

 private:
  void remove_all() {
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(path_ + suffix, ec);
  }
  std::string path_;
};

}  // namespace noclobber_test
