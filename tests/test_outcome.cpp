#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"

namespace {

// A minimal adapter written with members.
struct toy_store {
  using key_type = std::string;
  using value_type = std::string;
  using token_type = long;
  std::map<std::string, std::pair<std::string, long>> rows;

  noclobber::read_result<std::string, long> read(const std::string& k) {
    auto it = rows.find(k);
    if (it == rows.end()) return noclobber::read_result<std::string, long>::make_absent();
    return noclobber::read_result<std::string, long>::make_found(it->second.first, it->second.second);
  }
  noclobber::write_result<long> write_if_match(const std::string& k, const long& t, const std::string& v) {
    auto it = rows.find(k);
    if (it == rows.end()) return noclobber::write_result<long>::make_absent();
    if (it->second.second != t) return noclobber::write_result<long>::make_conflict();
    it->second = {v, t + 1};
    return noclobber::write_result<long>::make_applied(t + 1);
  }
  noclobber::write_result<long> create_if_absent(const std::string& k, const std::string& v) {
    if (!rows.emplace(k, std::pair{v, 1L}).second) return noclobber::write_result<long>::make_exists();
    return noclobber::write_result<long>::make_applied(1);
  }
};

// A store type the user cannot edit, adapted through store_traits.
struct foreign_kv {
  std::map<int, int> data;
};
struct missing_create {
  using key_type = int;
  using value_type = int;
  using token_type = int;
  noclobber::read_result<int, int> read(const int&) { return {}; }
  noclobber::write_result<int> write_if_match(const int&, const int&, const int&) { return {}; }
};

}  // namespace

template <>
struct noclobber::store_traits<foreign_kv> {
  using key_type = int;
  using value_type = int;
  using token_type = int;
  static read_result<int, int> read(foreign_kv& s, const int& k) {
    auto it = s.data.find(k);
    return it == s.data.end() ? read_result<int, int>::make_absent()
                              : read_result<int, int>::make_found(it->second, it->second);
  }
  static write_result<int> write_if_match(foreign_kv& s, const int& k, const int& t, const int& v) {
    auto it = s.data.find(k);
    if (it == s.data.end()) return write_result<int>::make_absent();
    if (it->second != t) return write_result<int>::make_conflict();
    it->second = v;
    return write_result<int>::make_applied(v);
  }
  static write_result<int> create_if_absent(foreign_kv& s, const int& k, const int& v) {
    return s.data.emplace(k, v).second ? write_result<int>::make_applied(v)
                                       : write_result<int>::make_exists();
  }
};

static_assert(noclobber::conditional_writer<toy_store>);
static_assert(noclobber::conditional_writer<foreign_kv>);
static_assert(!noclobber::conditional_writer<missing_create>);
static_assert(noclobber::readable_store<missing_create>);
static_assert(!noclobber::erasable_writer<toy_store>);
static_assert(!noclobber::conditional_writer<int>);

TEST_CASE("write_result factories carry status, token and error", "[outcome]") {
  using wr = noclobber::write_result<long>;
  CHECK(wr::make_applied(7).ok());
  CHECK(*wr::make_applied(7).token == 7);
  CHECK_FALSE(wr::make_applied().token.has_value());
  CHECK_FALSE(wr::make_conflict().ok());
  auto f = wr::make_failed(noclobber::write_status::transient, {"SQLITE_BUSY", "database is locked"});
  CHECK(f.status == noclobber::write_status::transient);
  CHECK(f.error.code == "SQLITE_BUSY");
  CHECK(noclobber::to_string(f.status) == "transient");
  CHECK(noclobber::needs_reread(noclobber::write_status::exists));
  CHECK_FALSE(noclobber::needs_reread(noclobber::write_status::transient));
  CHECK_FALSE(noclobber::needs_reread(noclobber::write_status::indeterminate));
}

// The factory names before 0.2 stay for one release, deprecated: same results as make_*.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
TEST_CASE("write_result's deprecated factory names still build the same results", "[outcome]") {
  using wr = noclobber::write_result<long>;
  CHECK(wr::applied(7).token == wr::make_applied(7).token);
  CHECK(wr::applied().status == noclobber::write_status::applied);
  CHECK(wr::conflict().status == noclobber::write_status::conflict);
  CHECK(wr::absent().status == noclobber::write_status::absent);
  CHECK(wr::exists().status == noclobber::write_status::exists);
  auto f = wr::failed(noclobber::write_status::permanent, {"E", "m"});
  CHECK(f.status == noclobber::write_status::permanent);
  CHECK(f.error == noclobber::store_error{"E", "m"});
}
#pragma GCC diagnostic pop

TEST_CASE("store_traits forwards to members and to specialisations", "[outcome][contract]") {
  toy_store s;
  using tr = noclobber::store_traits<toy_store>;
  CHECK(tr::read(s, "a").absent());
  CHECK(tr::create_if_absent(s, "a", "x").ok());
  CHECK(tr::create_if_absent(s, "a", "y").status == noclobber::write_status::exists);
  auto r = tr::read(s, "a");
  REQUIRE(r.found());
  CHECK(tr::write_if_match(s, "a", r.token + 1, "z").status == noclobber::write_status::conflict);
  CHECK(tr::write_if_match(s, "a", r.token, "z").ok());
  CHECK(tr::read(s, "a").value == "z");

  foreign_kv f;
  using ft = noclobber::store_traits<foreign_kv>;
  CHECK(ft::create_if_absent(f, 1, 10).ok());
  CHECK(ft::write_if_match(f, 1, 9, 11).status == noclobber::write_status::conflict);
  CHECK(noclobber::check_conditional_writer<foreign_kv>());
}
