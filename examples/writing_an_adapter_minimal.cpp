// example: examples/writing_an_adapter_minimal.cpp
// The smallest adapter: a store class of your own with the three member functions.
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include <noclobber/conditional_writer.hpp>
#include <noclobber/read_modify_write.hpp>

class my_store {
 public:
  using key_type = std::string;
  using value_type = std::string;
  using token_type = std::uint64_t;  // a version that never repeats

  noclobber::read_result<std::string, std::uint64_t> read(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto it = rows_.find(key);
    if (it == rows_.end()) return noclobber::read_result<std::string, std::uint64_t>::make_absent();
    return noclobber::read_result<std::string, std::uint64_t>::make_found(it->second.first,
                                                                          it->second.second);
  }
  noclobber::write_result<std::uint64_t> write_if_match(const std::string& key, const std::uint64_t& token,
                                                        const std::string& value) {
    std::lock_guard lock(mutex_);
    auto it = rows_.find(key);
    if (it == rows_.end()) return noclobber::write_result<std::uint64_t>::make_absent();
    if (it->second.second != token) return noclobber::write_result<std::uint64_t>::make_conflict();
    it->second = {value, ++version_};
    return noclobber::write_result<std::uint64_t>::make_applied(version_);
  }
  noclobber::write_result<std::uint64_t> create_if_absent(const std::string& key, const std::string& value) {
    std::lock_guard lock(mutex_);
    if (!rows_.try_emplace(key, value, version_ + 1).second)
      return noclobber::write_result<std::uint64_t>::make_exists();
    return noclobber::write_result<std::uint64_t>::make_applied(++version_);
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::pair<std::string, std::uint64_t>> rows_;
  std::uint64_t version_ = 0;
};

static_assert(noclobber::check_conditional_writer<my_store>());

int main() {
  my_store store;
  auto r = noclobber::read_modify_write(store, "motd", [](const std::optional<std::string>& current) {
    return current.value_or("") + "hello";
  });
  return r.ok() && store.read("motd").value == "hello" ? 0 : 1;
}
