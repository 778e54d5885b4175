// redis::hash_store against a real server (NOCLOBBER_REDIS_ADDR): a record as a hash, every
// outcome for both write methods, each member kind's text form, fields the spec does not map
// left alone, sparse patches with their change report, bad data and bad specs refused with clear
// errors, no WATCH outliving a call, a flushed script reloaded, and transport failures
// classified.
#include <noclobber/adapters/redis/hash_store.hpp>
#include <noclobber/json/codec.hpp>
#include <noclobber/read_modify_write.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "canned_redis.hpp"
#include "redis_raw.hpp"
#include "server_env.hpp"

namespace nc = noclobber;
namespace rd = noclobber::redis;
using nc::read_status;
using nc::write_status;

namespace {

using nc_test::raw;

std::string addr() {
  return nc_test::redis_addr();
}

// The field of a hash as the server holds it; nullopt when there is none.
std::optional<std::string> hget(redisContext* c, const std::string& key, const std::string& field) {
  auto r = raw(c, {"HGET", key, field});
  if (r->type != REDIS_REPLY_STRING) return std::nullopt;
  return std::string(r->str, static_cast<std::size_t>(r->len));
}

struct session {
  std::string user;
  std::int64_t items = 0;
  double total = 0;
  bool paid = false;
  std::optional<std::string> coupon;
  std::vector<std::string> tags;  // a JSON field
  friend bool operator==(const session&, const session&) = default;
};

rd::hash_spec<session> session_spec() {
  return rd::hash_spec<session>()
      .field("user", &session::user)
      .field("items", &session::items)
      .field("total", &session::total)
      .field("paid", &session::paid)
      .field("coupon", &session::coupon)
      .field("tags", &session::tags, nc::json::codec<std::vector<std::string>>{});
}

session named(std::string user) {
  session s;
  s.user = std::move(user);
  return s;
}

// True when a MULTI/EXEC on `c` runs although `key` was changed by another client just before,
// i.e. no WATCH is armed on `c`.
bool no_watch_armed(redisContext* c, redisContext* other, const std::string& key) {
  raw(other, {"HSET", key + ":probe", "f", "changed"});
  raw(other, {"HSET", key, "probe", "changed by other"});
  raw(c, {"MULTI"});
  raw(c, {"HSET", key + ":probe", "f", "mine"});
  return raw(c, {"EXEC"})->type == REDIS_REPLY_ARRAY;
}

}  // namespace

TEST_CASE("redis hash_store: every outcome, both write methods", "[server][redis][hash]") {
  for (auto m : {rd::method::watch_multi_exec, rd::method::lua_compare_and_set}) {
    INFO("method " << static_cast<int>(m));
    rd::hash_store<session> s(addr(), session_spec(), m);
    const std::string key = nc_test::unique_name("nc:hash");
    const session first{"ada", 2, 19.5, false, "SPRING", {"a", "b"}};

    CHECK(s.read(key).status == read_status::absent);
    auto c1 = s.create_if_absent(key, first);
    REQUIRE(c1.status == write_status::applied);
    CHECK(c1.token == 1);
    CHECK(s.create_if_absent(key, first).status == write_status::exists);

    auto r1 = s.read(key);
    REQUIRE(r1.found());
    CHECK(r1.value == first);
    CHECK(r1.token == 1);

    session second = first;
    second.items = 3;
    second.coupon.reset();  // an empty optional: the field goes
    auto w2 = s.write_if_match(key, 1, second);
    REQUIRE(w2.status == write_status::applied);
    CHECK(w2.token == 2);
    CHECK(hget(s.native_handle(), key, "coupon") == std::nullopt);
    CHECK(hget(s.native_handle(), key, "version") == "2");
    CHECK(s.read(key).value == second);
    CHECK(s.write_if_match(key, 1, first).status == write_status::conflict);
    CHECK(s.read(key).value == second);

    CHECK(s.write_if_match(key + ":missing", 1, first).status == write_status::absent);
    CHECK(s.erase_if_match(key, 1).status == write_status::conflict);
    CHECK(s.erase_if_match(key, 2).status == write_status::applied);
    CHECK(s.read(key).status == read_status::absent);
    CHECK(s.erase_if_match(key, 2).status == write_status::absent);

    auto blind = s.overwrite(key, first);  // the naive control: no compare
    REQUIRE(blind.ok());
    CHECK(blind.token == 1);
    CHECK(s.overwrite(key, second).token == 2);
    CHECK(s.read(key).value == second);
    raw(s.native_handle(), {"DEL", key});
  }
}

TEST_CASE("redis hash_store: members as hash text, unmapped fields left alone", "[server][redis][hash]") {
  rd::hash_store<session> s(addr(), session_spec());
  const std::string key = nc_test::unique_name("nc:hash-text");
  raw(s.native_handle(), {"HSET", key, "owner", "billing", "version", "41"});  // a hash the service had
  const session v{"bob", -7, 0.1, true, std::nullopt, {"x\"y"}};
  REQUIRE(s.write_if_match(key, 41, v).ok());
  CHECK(hget(s.native_handle(), key, "items") == "-7");
  CHECK(hget(s.native_handle(), key, "total") == "0.1");  // the shortest text that reads back exactly
  CHECK(hget(s.native_handle(), key, "paid") == "1");
  CHECK(hget(s.native_handle(), key, "tags") == R"(["x\"y"])");
  CHECK(hget(s.native_handle(), key, "owner") == "billing");  // not mapped: untouched
  CHECK(s.read(key).value == v);
  CHECK(s.read(key).token == 42);
  REQUIRE(s.erase_if_match(key, 42).ok());  // erase removes the whole hash
  CHECK(raw(s.native_handle(), {"EXISTS", key})->integer == 0);
}

TEST_CASE("redis hash_store: bad data is a permanent error naming the key and field",
          "[server][redis][hash]") {
  for (auto m : {rd::method::watch_multi_exec, rd::method::lua_compare_and_set}) {
    INFO("method " << static_cast<int>(m));
    rd::hash_store<session> s(addr(), session_spec(), m);
    const std::string key = nc_test::unique_name("nc:hash-bad");
    auto* c = s.native_handle();

    raw(c, {"HSET", key, "user", "eve"});  // a hash without the version field
    auto r = s.read(key);
    CHECK(r.status == read_status::permanent);
    CHECK(r.error.message.find("without the version field 'version'") != std::string::npos);
    CHECK(s.write_if_match(key, 1, session{}).status == write_status::permanent);
    CHECK(s.erase_if_match(key, 1).status == write_status::permanent);
    CHECK(s.create_if_absent(key, session{}).status == write_status::exists);

    raw(c, {"HSET", key, "version", "007"});  // not what noclobber writes
    CHECK(s.read(key).status == read_status::permanent);
    raw(c, {"HSET", key, "version", "3", "items", "three", "tags", "[]", "total", "1", "paid", "0"});
    r = s.read(key);
    CHECK(r.status == read_status::permanent);
    CHECK(r.error.code == "codec");
    CHECK(r.error.message.find(key) != std::string::npos);
    CHECK(r.error.message.find("field 'items'") != std::string::npos);
    raw(c, {"HSET", key, "items", "99999999999999999999"});  // past int64
    CHECK(s.read(key).error.message.find("field 'items'") != std::string::npos);
    raw(c, {"HSET", key, "items", "1", "paid", "2"});  // a boolean is 0 or 1
    CHECK(s.read(key).error.message.find("field 'paid'") != std::string::npos);
    raw(c, {"HSET", key, "paid", "1", "tags", "{not json"});
    CHECK(s.read(key).error.code == "codec");
    raw(c, {"HSET", key, "tags", "[]"});
    CHECK(s.read(key).found());
    raw(c, {"HDEL", key, "user"});  // a member that is not optional has no field
    CHECK(s.read(key).error.message.find("field 'user'") != std::string::npos);

    raw(c, {"DEL", key});
    raw(c, {"LPUSH", key, "x"});  // another type: WRONGTYPE, whatever the call
    r = s.read(key);
    CHECK(r.status == read_status::permanent);
    CHECK(r.error.message.find("WRONGTYPE") != std::string::npos);
    CHECK(s.write_if_match(key, 1, session{}).status == write_status::permanent);
    CHECK(s.create_if_absent(key, session{}).status == write_status::permanent);
    CHECK(s.erase_if_match(key, 1).status == write_status::permanent);
    raw(c, {"DEL", key});
  }
}

TEST_CASE("redis hash_store: a bad spec or a bad patch is refused before anything is sent",
          "[server][redis][hash]") {
  CHECK_THROWS_AS(rd::hash_store<session>(addr(), rd::hash_spec<session>()), std::invalid_argument);
  CHECK_THROWS_AS(rd::hash_store<session>(addr(), session_spec().version("user")), std::invalid_argument);
  CHECK_THROWS_AS(session_spec().version(""), std::invalid_argument);
  CHECK_THROWS_AS(rd::hash_store<session>("no-port", session_spec()), std::invalid_argument);
  CHECK_THROWS_AS(
      rd::hash_store<session>("127.0.0.1:" + std::to_string(nc_test::closed_port()), session_spec()),
      std::runtime_error);

  rd::hash_store<session> s(addr(), session_spec());
  const std::string key = nc_test::unique_name("nc:hash-badpatch");
  REQUIRE(s.create_if_absent(key, session{}).ok());
  auto refused = [&](nc::table_patch p) {
    CHECK_THROWS_AS(s.patch_if_match(key, 1, p), std::invalid_argument);
  };
  nc::table_patch merge;
  merge.merge("tags").set_string("k", "v");
  refused(merge);
  refused(nc::table_patch().set("nope", nc::field_value::of_text("x")));
  refused(nc::table_patch().set("version", nc::field_value::of_integer(9)));
  refused(nc::table_patch().set("user", nc::field_value::null_value()));  // not optional
  refused(nc::table_patch().set("items", nc::field_value::of_text("many")));
  CHECK(s.read(key).token == 1);  // nothing was written
  raw(s.native_handle(), {"DEL", key});
}

TEST_CASE("redis hash_store: a patch writes only its fields, at the version, and reports them",
          "[server][redis][hash]") {
  for (auto m : {rd::method::watch_multi_exec, rd::method::lua_compare_and_set}) {
    INFO("method " << static_cast<int>(m));
    const auto spec = session_spec();
    rd::hash_store<session> s(addr(), spec, m);
    const std::string key = nc_test::unique_name("nc:hash-patch");
    REQUIRE(s.create_if_absent(key, session{"ada", 2, 10, false, "SPRING", {}}).ok());

    nc::change_report report;
    nc::table_patch p;
    spec.set(p, &session::items, std::int64_t{5});
    spec.set(p, &session::user, std::string("ada"));  // the same value: unchanged
    spec.set(p, &session::coupon, std::optional<std::string>());
    p.report_to(&report);
    auto w = s.patch_if_match(key, 1, p);
    REQUIRE(w.ok());
    CHECK(w.token == 2);
    const session now = s.read(key).value;
    CHECK(now.items == 5);
    CHECK(now.total == 10);  // untouched
    CHECK_FALSE(now.coupon.has_value());
    REQUIRE(report.entries.size() == 3);
    CHECK(report.entries[0] == nc::change_report::entry{"items", "", nc::change_kind::changed});
    CHECK(report.entries[1] == nc::change_report::entry{"user", "", nc::change_kind::unchanged});
    CHECK(report.entries[2] == nc::change_report::entry{"coupon", "", nc::change_kind::changed});

    report.entries.push_back({"stale", "", nc::change_kind::added});
    CHECK(s.patch_if_match(key, 1, p).status == write_status::conflict);
    CHECK(report.entries.size() == 4);  // not written on a conflict
    CHECK(s.patch_if_match(key + ":missing", 1, p).status == write_status::absent);
    raw(s.native_handle(), {"DEL", key});
  }
}

TEST_CASE("redis hash_store: no WATCH outlives a call", "[server][redis][hash]") {
  rd::hash_store<session> s(addr(), session_spec());
  rd::hash_store<session> other(addr(), session_spec());
  const std::string key = nc_test::unique_name("nc:hash-watch");
  auto* c = s.native_handle();
  auto* o = other.native_handle();
  REQUIRE(s.create_if_absent(key, session{}).ok());
  CHECK(s.write_if_match(key, 7, session{}).status == write_status::conflict);  // version mismatch
  CHECK(no_watch_armed(c, o, key));
  CHECK(s.write_if_match(key + ":gone", 1, session{}).status == write_status::absent);
  CHECK(no_watch_armed(c, o, key));
  CHECK(s.create_if_absent(key, session{}).status == write_status::exists);
  CHECK(no_watch_armed(c, o, key));
  CHECK(s.write_if_match(key, 1, session{}).ok());  // EXEC ran
  CHECK(no_watch_armed(c, o, key));
  CHECK(s.erase_if_match(key, 2).ok());
  CHECK(no_watch_armed(c, o, key));
  raw(c, {"DEL", key, key + ":probe"});
}

TEST_CASE("redis hash_store: a flushed script is reloaded; transport failures are classified",
          "[server][redis][hash]") {
  rd::hash_store<session> lua(addr(), session_spec(), rd::method::lua_compare_and_set);
  const std::string key = nc_test::unique_name("nc:hash-flush");
  REQUIRE(lua.create_if_absent(key, session{}).ok());
  raw(lua.native_handle(), {"SCRIPT", "FLUSH"});
  auto w = lua.write_if_match(key, 1, named("after flush"));
  CHECK(w.status == write_status::transient);  // NOSCRIPT: nothing ran
  CHECK(lua.read(key).token == 1);
  CHECK(lua.write_if_match(key, 1, named("after flush")).ok());  // loaded again
  raw(lua.native_handle(), {"DEL", key});

  nc_test::silent_listener silent;  // accepts, never answers
  for (auto m : {rd::method::watch_multi_exec, rd::method::lua_compare_and_set}) {
    rd::hash_store<session> s("127.0.0.1", silent.port(), session_spec(), m, std::chrono::milliseconds(100));
    CHECK(s.read("k").status == read_status::transient);
    CHECK(s.write_if_match("k", 1, session{}).status == write_status::transient);  // WATCH / SCRIPT LOAD
    CHECK(s.overwrite("k", session{}).status == write_status::indeterminate);      // EXEC sent
  }
}

TEST_CASE("redis hash_store: against a user without MULTI a write says it ran uncompared, a read fails",
          "[server][redis][hash]") {
  // A refused MULTI (a proxy without transactions, an ACL without MULTI): the commands queued
  // after it ran on their own. The write was reported as not applied (EXEC's "EXEC without
  // MULTI" error) and left its WATCH armed.
  rd::hash_store<session> s(addr(), session_spec());
  rd::hash_store<session> other(addr(), session_spec());
  const std::string key = nc_test::unique_name("nc:hash:nomulti");
  const std::string user = nc_test::unique_name("nc_hash_nomulti");
  raw(other.native_handle(), {"ACL", "SETUSER", user, "on", ">pw", "~*", "&*"});
  raw(other.native_handle(), {"ACL", "SETUSER", user, "+@all", "-multi"});
  REQUIRE(other.create_if_absent(key, named("before")).ok());
  const auto before = other.read(key);
  REQUIRE(before.found());
  REQUIRE(raw(s.native_handle(), {"AUTH", user, "pw"})->type == REDIS_REPLY_STATUS);
  const auto w = s.write_if_match(key, before.token, named("after"));
  CHECK(w.status == write_status::indeterminate);
  CHECK_THAT(w.error.message, Catch::Contains("MULTI was refused"));
  CHECK(hget(other.native_handle(), key, "user") == "after");  // it did run, without the compare
  const auto r = s.read(key);                                  // HMGET and EXISTS ran apart: no snapshot
  CHECK(r.status == read_status::permanent);
  CHECK_THAT(r.error.message, Catch::Contains("MULTI was refused"));
  REQUIRE(raw(s.native_handle(), {"AUTH", "default", "any"})->type == REDIS_REPLY_STATUS);
  CHECK(no_watch_armed(s.native_handle(), other.native_handle(), key));
  raw(other.native_handle(), {"ACL", "DELUSER", user});
  raw(other.native_handle(), {"DEL", key, key + ":probe"});
}

TEST_CASE("redis hash_store: a script answer of another shape may have written: indeterminate",
          "[server][redis][hash]") {
  // The script answers {0}, {1}, {3} or {2, ...}; anything else means something ran that may
  // have written. A code outside those read as applied, another shape as permanent.
  for (const char* answer :
       {"*1\r\n:7\r\n", "*1\r\n:-1\r\n", "+OK\r\n", ":2\r\n", "*0\r\n", "*1\r\n$1\r\n2\r\n"}) {
    INFO(answer);
    nc_test::canned_redis_server server(
        {nc_test::resp_bulk("0123456789abcdef0123456789abcdef01234567"), answer});
    rd::hash_store<session> s("127.0.0.1", server.port(), session_spec(), rd::method::lua_compare_and_set);
    CHECK(s.write_if_match("k", 4, named("x")).status == write_status::indeterminate);
    CHECK(server.commands() == std::vector<std::string>{"SCRIPT", "EVALSHA"});
  }
}
