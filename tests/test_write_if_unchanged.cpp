// Tests for write_if_unchanged, update_field_if_unchanged and erase_if_unchanged (the
// dirty flag cleared after a long wait).
#include <catch2/catch.hpp>

#include <atomic>
#include <barrier>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "noclobber/cas_retry.hpp"
#include "noclobber/memory_store.hpp"
#include "noclobber/read_modify_write.hpp"
#include "noclobber/write_if_unchanged.hpp"

namespace nc = noclobber;

namespace {

struct inode {
  std::string content;
  std::optional<std::int64_t> dirty_since;  // ms; nullopt = clean
  friend bool operator==(const inode&, const inode&) = default;
};

nc::retry_policy patient() {
  nc::retry_policy p;
  p.backoff = nc::backoff_policy::full_jitter(std::chrono::microseconds(1), std::chrono::microseconds(100));
  p.max_attempts = 100000;
  return p;
}

// The user's write: new content, dirty_since = t (through read_modify_write, never lost).
nc::rmw_result<inode, std::uint64_t> user_write(nc::memory_store<int, inode>& store, int ino, std::int64_t t,
                                                const std::string& content) {
  return nc::read_modify_write(
      store, ino,
      [&](const std::optional<inode>& cur) {
        inode next = cur.value_or(inode{});
        next.content = content;
        next.dirty_since = t;
        return next;
      },
      patient());
}

// The bug: clear dirty_since blindly (read the record, set the field, overwrite).
void blind_clear(nc::memory_store<int, inode>& store, int ino) {
  auto r = store.read(ino);
  r.value.dirty_since.reset();
  (void)store.overwrite(ino, r.value);
}

}  // namespace

TEST_CASE("update_field_if_unchanged clears only the value seen at claim time", "[write_if_unchanged]") {
  nc::memory_store<int, inode> store;
  (void)store.create_if_absent(1, inode{"v1", 1000});
  const auto seen = store.read(1).value.dirty_since;

  SECTION("unchanged since the claim: cleared") {
    auto r =
        nc::update_field_if_unchanged(store, 1, &inode::dirty_since, seen, std::optional<std::int64_t>{});
    CHECK(r.outcome == nc::rmw_outcome::applied);
    CHECK_FALSE(store.peek(1)->first.dirty_since.has_value());
    CHECK(store.peek(1)->first.content == "v1");
  }
  SECTION("a newer write happened: left alone, the newer value reported") {
    REQUIRE(user_write(store, 1, 2000, "v2").ok());
    auto r =
        nc::update_field_if_unchanged(store, 1, &inode::dirty_since, seen, std::optional<std::int64_t>{});
    CHECK(r.outcome == nc::rmw_outcome::unchanged);
    CHECK(r.reason == nc::stop_reason::decided);  // a mismatch is a decision, not a failure
    REQUIRE(r.value.has_value());
    CHECK(r.value->dirty_since == 2000);
    CHECK(store.peek(1)->first.dirty_since == 2000);
  }
  SECTION("a projection callable works like a member pointer") {
    auto field = [](auto& node) -> auto& {
      return node.dirty_since;
    };
    auto r = nc::update_field_if_unchanged(store, 1, field, seen, std::optional<std::int64_t>{});
    CHECK(r.outcome == nc::rmw_outcome::applied);
  }
  SECTION("an absent key is unchanged") {
    auto r =
        nc::update_field_if_unchanged(store, 99, &inode::dirty_since, seen, std::optional<std::int64_t>{});
    CHECK(r.outcome == nc::rmw_outcome::unchanged);
    CHECK(store.size() == 1);
  }
}

TEST_CASE("write_if_unchanged: whole-value compare-and-set, nullopt expects absence",
          "[write_if_unchanged]") {
  nc::memory_store<std::string, std::string> store;
  CHECK(nc::write_if_unchanged(store, "flag", std::nullopt, std::string("claimed-by-1")).outcome ==
        nc::rmw_outcome::applied);
  CHECK(nc::write_if_unchanged(store, "flag", std::nullopt, std::string("claimed-by-2")).outcome ==
        nc::rmw_outcome::unchanged);
  CHECK(nc::write_if_unchanged(store, "flag", std::string("claimed-by-2"), std::string("x")).outcome ==
        nc::rmw_outcome::unchanged);
  CHECK(nc::write_if_unchanged(store, "flag", std::string("claimed-by-1"), std::string("done")).outcome ==
        nc::rmw_outcome::applied);
  CHECK(store.peek("flag")->first == "done");
}

TEST_CASE("erase_if_unchanged: erases only the expected value", "[write_if_unchanged]") {
  nc::memory_store<std::string, std::string> store;
  (void)store.create_if_absent("marker", "job-7");
  auto wrong = nc::erase_if_unchanged(store, "marker", std::string("job-6"));
  CHECK(wrong.outcome == nc::rmw_outcome::unchanged);
  CHECK(wrong.reason == nc::stop_reason::decided);
  CHECK(wrong.value == "job-7");
  CHECK(store.size() == 1);
  auto right = nc::erase_if_unchanged(store, "marker", std::string("job-7"));
  CHECK(right.outcome == nc::rmw_outcome::applied);
  CHECK(store.size() == 0);
  CHECK(nc::erase_if_unchanged(store, "marker", std::string("job-7")).outcome == nc::rmw_outcome::unchanged);

  SECTION("an indeterminate erase that landed is recognised") {
    nc::fault_config f;
    f.indeterminate_applied = 1.0;
    (void)store.create_if_absent("m2", "v");
    store.set_faults(f);
    auto r = nc::erase_if_unchanged(store, "m2", std::string("v"));
    CHECK(r.outcome == nc::rmw_outcome::applied);
    CHECK(store.peek("m2") == std::nullopt);
  }
  SECTION("an indeterminate erase that did not land is sent again") {
    (void)store.create_if_absent("m3", "v");
    nc::fault_config f;
    f.indeterminate_lost = 0.5;
    f.seed = 3;
    store.set_faults(f);
    auto r = nc::erase_if_unchanged(store, "m3", std::string("v"), [] {
      nc::retry_policy p;
      p.backoff = nc::backoff_policy::immediate();
      p.max_attempts = 64;
      return p;
    }());
    CHECK(r.outcome == nc::rmw_outcome::applied);
    CHECK(store.peek("m3") == std::nullopt);
  }
}

TEST_CASE("dirty_flag race: the push worker never destroys a newer dirty_since",
          "[write_if_unchanged][race][dirty_flag][concurrency]") {
  // Each round: the record is dirty at T1. The worker claims (snapshots dirty_since), pushes,
  // then compare-and-clears. The user writes T2 concurrently. If the claim saw T1, the user's
  // T2 must survive whatever the order (the user wrote after the clear, or the clear saw T2 and
  // left it alone). If the claim already saw T2, clearing it is right (the push carried the
  // edit). Even rounds force the dangerous order: claim, then the user's write, then the clear.
  const int rounds = 300;
  const int inodes = 4;
  nc::memory_store<int, inode> store;
  std::atomic<int> failures{0};
  std::atomic<int> claims_before_edit{0};
  std::vector<std::atomic<std::int64_t>> seen_at_claim(inodes);
  std::vector<std::atomic<int>> phase(inodes);  // forced rounds: 1 = claimed, 2 = user wrote
  for (int ino = 0; ino < inodes; ++ino) (void)store.create_if_absent(ino, inode{"v0", std::nullopt});
  std::barrier sync(2 * inodes);
  auto wait_for = [](std::atomic<int>& a, int v) {
    while (a.load() != v) std::this_thread::yield();
  };
  std::vector<std::thread> threads;
  for (int ino = 0; ino < inodes; ++ino) {
    threads.emplace_back([&, ino] {  // push worker
      for (int round = 0; round < rounds; ++round) {
        const bool forced = round % 2 == 0;
        sync.arrive_and_wait();  // round set up
        const auto seen = store.read(ino).value.dirty_since;
        seen_at_claim[static_cast<std::size_t>(ino)] = seen.value_or(-1);
        if (forced) {
          phase[static_cast<std::size_t>(ino)] = 1;
          wait_for(phase[static_cast<std::size_t>(ino)], 2);
        }
        auto r = nc::update_field_if_unchanged(store, ino, &inode::dirty_since, seen,
                                               std::optional<std::int64_t>{}, patient());
        if (!r.ok()) ++failures;
        sync.arrive_and_wait();  // round done
        sync.arrive_and_wait();  // checked
      }
    });
    threads.emplace_back([&, ino] {  // user
      for (int round = 0; round < rounds; ++round) {
        const bool forced = round % 2 == 0;
        const std::int64_t t1 = 1000 + 2 * round;
        phase[static_cast<std::size_t>(ino)] = 0;
        (void)user_write(store, ino, t1, "base");  // round setup: dirty at T1
        sync.arrive_and_wait();
        if (forced) wait_for(phase[static_cast<std::size_t>(ino)], 1);
        if (!user_write(store, ino, t1 + 1, "edit-" + std::to_string(round)).ok()) ++failures;
        if (forced) phase[static_cast<std::size_t>(ino)] = 2;
        sync.arrive_and_wait();
        const auto now = store.peek(ino)->first;
        if (seen_at_claim[static_cast<std::size_t>(ino)] == t1) {
          ++claims_before_edit;
          if (now.dirty_since != t1 + 1) ++failures;  // the lost update of the dirty_flag scenario
        } else if (now.dirty_since.has_value() && now.dirty_since != t1 + 1) {
          ++failures;
        }
        if (now.content != "edit-" + std::to_string(round)) ++failures;
        sync.arrive_and_wait();
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures.load() == 0);
  CHECK(claims_before_edit.load() >= inodes * rounds / 2);  // the dangerous order really happened
}

TEST_CASE("dirty_flag negative control: a blind clear destroys the newer dirty_since",
          "[write_if_unchanged][dirty_flag]") {
  // Forced order: claim T1, user writes T2, worker clears. The blind clear loses T2; the
  // compare-and-clear keeps it.
  nc::memory_store<int, inode> store;
  (void)store.create_if_absent(1, inode{"v1", 1000});
  (void)store.create_if_absent(2, inode{"v1", 1000});
  const auto seen1 = store.read(1).value.dirty_since;
  const auto seen2 = store.read(2).value.dirty_since;
  REQUIRE(user_write(store, 1, 2000, "v2").ok());
  REQUIRE(user_write(store, 2, 2000, "v2").ok());
  blind_clear(store, 1);
  (void)nc::update_field_if_unchanged(store, 2, &inode::dirty_since, seen2, std::optional<std::int64_t>{});
  CHECK_FALSE(
      store.peek(1)->first.dirty_since.has_value());  // the bug: T2 gone, the reconciler would overwrite
  CHECK(store.peek(2)->first.dirty_since == 2000);    // the fix
  (void)seen1;
}

namespace {

// memory_store with scripted erase answers: report `indeterminate` after erasing (or not), and a
// hook that runs before each read (a failed read, another writer).
struct scripted_erase_store {
  using key_type = std::string;
  using value_type = std::string;
  using token_type = std::uint64_t;
  nc::memory_store<std::string, std::string> inner;
  std::optional<bool> next_erase_unknown;  // engaged: report indeterminate; true: erase first
  std::function<std::optional<nc::read_status>()> before_read;
  int erases = 0;

  nc::read_result<std::string, std::uint64_t> read(const std::string& k) {
    if (before_read) {
      if (auto fail = before_read()) {
        return nc::read_result<std::string, std::uint64_t>::make_failed(*fail, {"scripted", "read"});
      }
    }
    return inner.read(k);
  }
  nc::write_result<std::uint64_t> write_if_match(const std::string& k, const std::uint64_t& t,
                                                 const std::string& v) {
    return inner.write_if_match(k, t, v);
  }
  nc::write_result<std::uint64_t> create_if_absent(const std::string& k, const std::string& v) {
    return inner.create_if_absent(k, v);
  }
  nc::write_result<std::uint64_t> erase_if_match(const std::string& k, const std::uint64_t& t) {
    ++erases;
    if (!next_erase_unknown) return inner.erase_if_match(k, t);
    const bool apply = *std::exchange(next_erase_unknown, std::nullopt);
    if (apply) (void)inner.erase_if_match(k, t);
    return nc::write_result<std::uint64_t>::make_failed(nc::write_status::indeterminate,
                                                        {"timeout", "erase"});
  }
};

nc::retry_policy immediate(unsigned attempts) {
  nc::retry_policy p;
  p.backoff = nc::backoff_policy::immediate();
  p.max_attempts = attempts;
  return p;
}

}  // namespace

TEST_CASE("erase_if_unchanged follows the one unknown-outcome rule", "[write_if_unchanged][indeterminate]") {
  // The same rule as read_modify_write (conditional_op.hpp): resolved by the read right after,
  // or by the next attempt's read when that one fails; unknowable when the key moved.
  scripted_erase_store s;
  (void)s.inner.create_if_absent("m", "v");
  SECTION("the resolving read fails: the next attempt finds the key gone: applied, erased once") {
    s.next_erase_unknown = true;
    int reads = 0;
    s.before_read = [&]() -> std::optional<nc::read_status> {
      if (++reads == 2) return nc::read_status::transient;  // the read right after the erase
      return std::nullopt;
    };
    auto r = nc::erase_if_unchanged(s, "m", std::string("v"), immediate(5));
    CHECK(r.outcome == nc::rmw_outcome::applied);
    CHECK(r.reason == nc::stop_reason::applied);
    CHECK(r.attempts == 2);
    CHECK(s.erases == 1);
    CHECK_FALSE(s.inner.peek("m").has_value());
  }
  SECTION("not landed, untouched: the same erase is sent again in the next attempt") {
    s.next_erase_unknown = false;
    auto r = nc::erase_if_unchanged(s, "m", std::string("v"), immediate(5));
    CHECK(r.outcome == nc::rmw_outcome::applied);
    CHECK(r.attempts == 2);
    CHECK(s.erases == 2);
  }
  SECTION("not landed, and another writer moved the key: unknowable, stop indeterminate") {
    s.next_erase_unknown = false;
    int reads = 0;
    s.before_read = [&]() -> std::optional<nc::read_status> {
      if (++reads == 2) {
        auto cur = s.inner.peek("m");
        (void)s.inner.write_if_match("m", cur->second, "theirs");
      }
      return std::nullopt;
    };
    auto r = nc::erase_if_unchanged(s, "m", std::string("v"), immediate(5));
    CHECK(r.outcome == nc::rmw_outcome::gave_up);
    CHECK(r.indeterminate);
    CHECK(r.reason == nc::stop_reason::indeterminate);
    CHECK(r.last_error.code == "timeout");
    CHECK(s.erases == 1);
    CHECK(s.inner.peek("m")->first == "theirs");
  }
}
