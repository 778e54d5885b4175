// example: examples/writing_an_adapter.cpp
// Writing an adapter: make a store of your own usable by every noclobber algorithm, then prove
// with the race harness that it loses no updates (docs/writing_an_adapter.md walks through it).
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include <noclobber/conditional_writer.hpp>
#include <noclobber/race_harness.hpp>
#include <noclobber/read_modify_write.hpp>

// ---- Step 0: the store we want to adapt: a vendor class we cannot edit ----------------------
namespace vendor {

struct timeout_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The server could not be reached; nothing was sent.
struct unavailable_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A request the server will never accept.
struct bad_name_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

class revision_map {
 public:
  struct row {
    std::string data;
    long revision;
  };
  std::optional<row> get(const std::string& name) const {
    if (name.empty()) throw bad_name_error("a row name must not be empty");
    std::lock_guard lock(mutex_);
    if (unreachable_gets_ > 0) {
      --unreachable_gets_;
      throw unavailable_error("connection refused");
    }
    auto it = rows_.find(name);
    if (it == rows_.end()) return std::nullopt;
    return it->second;
  }
  // Stores `data` if the row's revision equals `expected` (0: the row must not exist).
  // Returns the new revision, or -1 when the revision did not match.
  long put_if_revision(const std::string& name, long expected, const std::string& data) {
    std::lock_guard lock(mutex_);
    auto it = rows_.find(name);
    const long current = it == rows_.end() ? 0 : it->second.revision;
    if (current != expected) return -1;
    rows_[name] = row{data, ++last_revision_};
    return last_revision_;
  }
  // For tests: the next n get() calls find the server unreachable.
  void fail_next_gets(int n) {
    std::lock_guard lock(mutex_);
    unreachable_gets_ = n;
  }
  // Unconditional write (what the naive code used).
  void put(const std::string& name, const std::string& data) {
    std::lock_guard lock(mutex_);
    rows_[name] = row{data, ++last_revision_};
  }

 private:
  mutable std::mutex mutex_;
  mutable int unreachable_gets_ = 0;  // a test knob: see fail_next_gets
  std::map<std::string, row> rows_;
  long last_revision_ = 0;  // store-wide: a revision is never reused (no ABA)
};

}  // namespace vendor

// ---- Steps 1-3: the adapter, as a store_traits specialisation -------------------------------
template <>
struct noclobber::store_traits<vendor::revision_map> {
  using key_type = std::string;  // step 1: the types
  using value_type = std::string;
  using token_type = long;  // the row revision is the version token
  using read_type = read_result<std::string, long>;
  using write_type = write_result<long>;

  // Step 2: each operation, with absence as a normal answer.
  // Every function of a store_traits specialisation is static and takes the store first.
  static read_type read(vendor::revision_map& s, const std::string& key) {
    try {
      auto row = s.get(key);
      if (!row) return read_type::make_absent();
      return read_type::make_found(row->data, row->revision);
    } catch (const vendor::unavailable_error& e) {  // step 3: nothing happened, try again
      return read_type::make_failed(read_status::transient, {"unavailable", e.what()});
    } catch (const vendor::bad_name_error& e) {  // step 3: asking again will not help
      return read_type::make_failed(read_status::permanent, {"bad_name", e.what()});
    }
  }
  static write_type write_if_match(vendor::revision_map& s, const std::string& key, const long& token,
                                   const std::string& value) {
    // The vendor cannot tell "changed" from "deleted": both mean re-read, so say conflict.
    return classify([&] { return s.put_if_revision(key, token, value); }, write_status::conflict);
  }
  static write_type create_if_absent(vendor::revision_map& s, const std::string& key,
                                     const std::string& value) {
    return classify([&] { return s.put_if_revision(key, 0, value); }, write_status::exists);
  }
  static write_type overwrite(vendor::revision_map& s, const std::string& key, const std::string& value) {
    s.put(key, value);  // only for the naive negative control
    return write_type::make_applied();
  }

 private:
  // Step 3: the store's failures, sorted into the outcome categories.
  template <class Put>
  static write_type classify(Put put, write_status mismatch) {
    try {
      const long revision = put();
      if (revision < 0) return write_type::make_failed(mismatch);
      return write_type::make_applied(revision);
    } catch (const vendor::timeout_error& e) {
      return write_type::make_failed(write_status::indeterminate,
                                     {"timeout", e.what()});  // sent, outcome unknown
    }
  }
};

// Step 4: the compiler checks the contract and names anything missing in plain words.
static_assert(noclobber::check_conditional_writer<vendor::revision_map>());
static_assert(noclobber::overwritable_store<vendor::revision_map>);

int main() {
  vendor::revision_map store;

  // Step 5: use it.
  auto add_world = [](const std::optional<std::string>& current) {
    return current.value_or("hello") + ", world";
  };
  auto r = noclobber::read_modify_write(store, "greeting", add_world);
  std::printf("read_modify_write: %s, revision %ld\n", std::string(to_string(r.outcome)).c_str(),
              r.token.value_or(-1));

  // Failed reads: an unreachable server is retried (transient), a bad name is not (permanent).
  noclobber::retry_policy quick;
  quick.backoff =
      noclobber::backoff_policy::full_jitter(std::chrono::microseconds(100), std::chrono::milliseconds(1));
  store.fail_next_gets(2);
  const auto retried = noclobber::read_modify_write(store, "greeting", add_world, quick);
  const auto refused = noclobber::read_modify_write(store, "", add_world, quick);
  std::printf("unreachable twice: %s after %u attempts; empty name: %s (%s: %s)\n",
              std::string(to_string(retried.outcome)).c_str(), retried.attempts,
              std::string(to_string(refused.reason)).c_str(), refused.last_error.code.c_str(),
              refused.last_error.message.c_str());
  const bool failures_sorted = retried.ok() && retried.attempts == 3 &&
                               refused.reason == noclobber::stop_reason::permanent && refused.attempts == 1 &&
                               refused.last_error.code == "bad_name";

  // Step 6: prove it with the race harness: 8 writers forced to read the same version first.
  noclobber::race_options<std::string, std::string> options;
  options.writers = 8;
  options.keys = {"race/cas"};
  const auto safe = noclobber::run_race(store, noclobber::cas_strategy{}, options);
  options.keys = {"race/naive"};
  const auto naive = noclobber::run_race(store, noclobber::naive_strategy{}, options);
  std::printf("lost updates: read_modify_write %zu, naive %zu (of %u writers)\n", safe.lost(), naive.lost(),
              options.writers);
  return r.ok() && failures_sorted && safe.lost() == 0 && naive.lost() == options.writers - 1 ? 0 : 1;
}
