// noclobber/fmt/ostream.hpp: fmt::format("{}", x) writes exactly what operator<< writes, for every
// type noclobber/ostream.hpp prints.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>

#include "noclobber/fmt/ostream.hpp"

using namespace noclobber;

namespace {

template <class T>
std::string streamed(const T& x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

// fmt's text must be operator<<'s text, and not empty (an empty formatter would not pass).
#define CHECK_SAME_TEXT(x)                  \
  do {                                      \
    const std::string shown = streamed(x);  \
    CHECK_FALSE(shown.empty());             \
    CHECK(fmt::format("{}", (x)) == shown); \
  } while (false)

struct opaque {};  // no operator<<: printed as <value> / <token>

const store_error busy{"SQLITE_BUSY", "database is locked"};

}  // namespace

TEST_CASE("fmt formats every status enumerator as operator<< does", "[fmt]") {
  for (auto s : {write_status::applied, write_status::conflict, write_status::absent, write_status::exists,
                 write_status::transient, write_status::transient_restart, write_status::indeterminate,
                 write_status::permanent}) {
    CHECK_SAME_TEXT(s);
  }
  for (auto s : {read_status::found, read_status::absent, read_status::transient, read_status::permanent}) {
    CHECK_SAME_TEXT(s);
  }
  for (auto r : {stop_reason::applied, stop_reason::permanent, stop_reason::attempts_exhausted,
                 stop_reason::deadline, stop_reason::budget_exhausted, stop_reason::cancelled,
                 stop_reason::indeterminate, stop_reason::decided}) {
    CHECK_SAME_TEXT(r);
  }
  for (auto o : {rmw_outcome::applied, rmw_outcome::unchanged, rmw_outcome::aborted, rmw_outcome::gave_up}) {
    CHECK_SAME_TEXT(o);
  }
}

TEST_CASE("fmt formats store errors, write and read results as operator<< does", "[fmt]") {
  CHECK_SAME_TEXT(busy);
  CHECK_SAME_TEXT((store_error{"42P01", ""}));
  CHECK_SAME_TEXT((store_error{"", "connection reset"}));
  CHECK(fmt::format("{}", store_error{}) == streamed(store_error{}));  // both empty

  CHECK_SAME_TEXT(write_result<std::uint64_t>::make_applied(7));
  CHECK_SAME_TEXT(write_result<std::uint64_t>::make_applied());
  CHECK_SAME_TEXT((write_result<std::uint64_t>{write_status::conflict, std::nullopt, {}}));
  CHECK_SAME_TEXT((write_result<std::uint64_t>{write_status::transient, std::nullopt, busy}));
  CHECK_SAME_TEXT((write_result<opaque>{write_status::applied, opaque{}, {}}));

  CHECK_SAME_TEXT((read_result<std::string, std::uint64_t>{read_status::found, "41", 3, {}}));
  CHECK_SAME_TEXT((read_result<std::string, std::uint64_t>{read_status::absent, {}, {}, {}}));
  CHECK_SAME_TEXT(
      (read_result<std::string, std::uint64_t>{read_status::permanent, {}, {}, {"42P01", "no table"}}));
  CHECK_SAME_TEXT((read_result<opaque, opaque>{read_status::found, {}, {}, {}}));
}

TEST_CASE("fmt formats retry counts, stats and results as operator<< does", "[fmt]") {
  retry_counts counts;
  counts.attempts = 3;
  counts.conflicts = 2;
  counts.reason = stop_reason::applied;
  counts.slept = std::chrono::microseconds(1500);
  CHECK_SAME_TEXT(counts);

  retry_stats stats;
  static_cast<retry_counts&>(stats) = counts;
  CHECK_SAME_TEXT(stats);
  stats.reason = stop_reason::attempts_exhausted;
  stats.last_status = write_status::transient;
  stats.last_error = busy;
  CHECK_SAME_TEXT(stats);

  retry_result<write_result<std::uint64_t>> result;
  static_cast<retry_stats&>(result) = stats;
  CHECK_SAME_TEXT(result);
}

TEST_CASE("fmt formats every read-modify-write outcome as operator<< does", "[fmt]") {
  rmw_result<int, std::uint64_t> r;
  r.attempts = 2;
  r.conflicts = 1;
  r.outcome = rmw_outcome::applied;
  r.reason = stop_reason::applied;
  r.value = 42;
  r.token = 9;
  CHECK_SAME_TEXT(r);
  r.created = true;
  CHECK_SAME_TEXT(r);

  r.outcome = rmw_outcome::unchanged;
  r.reason = stop_reason::decided;
  CHECK_SAME_TEXT(r);
  r.outcome = rmw_outcome::aborted;
  r.abort_reason = "quota exceeded";
  CHECK_SAME_TEXT(r);

  r.outcome = rmw_outcome::gave_up;
  r.reason = stop_reason::deadline;
  r.value.reset();
  r.token.reset();
  r.last_status = write_status::transient;
  r.last_error = busy;
  CHECK_SAME_TEXT(r);
  r.indeterminate = true;
  r.reason = stop_reason::indeterminate;
  CHECK_SAME_TEXT(r);

  rmw_result<opaque, opaque> o;
  o.attempts = 1;
  o.outcome = rmw_outcome::applied;
  o.value = opaque{};
  o.token = opaque{};
  CHECK_SAME_TEXT(o);
}

TEST_CASE("fmt's string spec applies to the whole text", "[fmt]") {
  CHECK(fmt::format("{:>10}", write_status::conflict) == "  conflict");
  CHECK(fmt::format("{:*<12}", busy) == "SQLITE_BUSY: database is locked");  // longer than the width
  CHECK(fmt::format("[{:^9}]", read_status::absent) == "[ absent  ]");
  CHECK(fmt::format("{:.7}", write_result<std::uint64_t>::make_applied(7)) == "applied");
}
