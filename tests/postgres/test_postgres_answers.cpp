// exec_result reads an int8 or a bool column only when the cell is exactly one (binary, its size,
// not NULL, the row and column exist), and the advisory lease backend treats any other answer as
// failed / unknown. Before the fix exec_result::int64 read 8 bytes from whatever the cell held: an
// int4 token was acquired as a garbage token, a missing column was a null pointer read.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fuzz/pg_server.hpp"
#include "noclobber/adapters/postgres_lease.hpp"

namespace pg = noclobber::postgres;
namespace wire = nc_fuzz::pg_wire;
using noclobber::lease_check;
using noclobber::lease_status;

namespace {

struct cell {
  Oid type;
  int format;
  std::optional<std::string> value;  // nullopt: NULL
};

/// A one-row result of the given cells, as libpq would hold it.
pg::exec_result result_of(const std::vector<cell>& cells) {
  PGresult* res = PQmakeEmptyPGresult(nullptr, PGRES_TUPLES_OK);
  std::vector<PGresAttDesc> attrs;
  char name[] = "c";
  for (const cell& c : cells) attrs.push_back({name, 0, 0, c.format, c.type, -1, -1});
  REQUIRE(PQsetResultAttrs(res, static_cast<int>(attrs.size()), attrs.data()) != 0);
  for (std::size_t i = 0; i < cells.size(); ++i) {
    std::string v = cells[i].value.value_or("");
    REQUIRE(PQsetvalue(res, 0, static_cast<int>(i), cells[i].value ? v.data() : nullptr,
                       cells[i].value ? static_cast<int>(v.size()) : -1) != 0);
  }
  return {pg::detail::result_ptr(res), noclobber::write_status::applied, {}};
}

// A server that answers the constructor, then each acquire / pid / unlock query with `answer`.
struct scripted {
  std::vector<nc_fuzz::pg_command> commands;
  std::string answer;
  nc_fuzz::pg_answer respond(const nc_fuzz::pg_command& c) {
    commands.push_back(c);
    if (!c.extended) return {wire::command_complete("SET") + wire::ready(), false};
    return {wire::message('1', "") + wire::message('2', "") + answer, false};
  }
};

std::string one_row(const std::vector<wire::column>& cols, const wire::row& values) {
  return wire::row_description(cols) + wire::data_row(values) + wire::command_complete("SELECT 1") +
         wire::ready();
}

}  // namespace

TEST_CASE("exec_result reads an int8 or a bool only from a cell that is exactly one", "[postgres]") {
  const std::string seven = wire::be64(7);
  const auto r = result_of({{20, 1, seven},
                            {23, 1, std::string("\0\0\0\7", 4)},  // int4
                            {20, 0, "7"},                         // int8 in text format
                            {20, 1, std::nullopt},                // NULL
                            {20, 1, std::string("\0\0\0\7", 4)},  // int8 with 4 bytes
                            {16, 1, std::string(1, '\1')},
                            {16, 0, "t"}});
  CHECK(r.int64(0, 0) == 7);
  CHECK_FALSE(r.int64(0, 1).has_value());
  CHECK_FALSE(r.int64(0, 2).has_value());
  CHECK_FALSE(r.int64(0, 3).has_value());
  CHECK_FALSE(r.int64(0, 4).has_value());
  CHECK_FALSE(r.int64(0, 5).has_value());
  CHECK_FALSE(r.int64(0, 7).has_value());  // no such column
  CHECK_FALSE(r.int64(1, 0).has_value());  // no such row
  CHECK(r.boolean(0, 5) == true);
  CHECK_FALSE(r.boolean(0, 6).has_value());
  CHECK_FALSE(r.boolean(0, 0).has_value());
  CHECK(r.is_null(0, 3));
  CHECK(r.is_null(0, 9));
  CHECK(r.bytes(0, 9).empty());
  CHECK(r.bytes(0, 1) == std::string("\0\0\0\7", 4));
}

TEST_CASE("the advisory lease backend fails an acquire answer it cannot read", "[postgres][concurrency]") {
  scripted s;
  nc_fuzz::pg_server::script script;
  script.respond = [&s](const nc_fuzz::pg_command& c) { return s.respond(c); };
  nc_fuzz::pg_server server(script, 4242);
  pg::advisory_lease_backend backend(server.conninfo());
  const std::vector<wire::column> acquire_cols = {{20, 1}, {25, 1}, {20, 1}};
  const std::chrono::milliseconds ttl(500);

  // A readable answer first: the positive control.
  server.locked([&] { s.answer = one_row(acquire_cols, {wire::be64(9), "500", wire::be64(4242)}); });
  auto a = backend.try_acquire("job:42", ttl);
  REQUIRE(a.status == lease_status::acquired);
  CHECK(a.grant.token == 9);
  CHECK(a.grant.owner == "4242");

  SECTION("an int4 token") {
    server.locked([&] {
      s.answer = one_row({{23, 1}, {25, 1}, {20, 1}}, {std::string("\0\0\0\7", 4), "500", wire::be64(4242)});
    });
    a = backend.try_acquire("job:42", ttl);
    CHECK(a.status == lease_status::failed);
    CHECK_FALSE(a.error.empty());
  }
  SECTION("a NULL token") {
    server.locked([&] { s.answer = one_row(acquire_cols, {std::nullopt, "500", wire::be64(4242)}); });
    CHECK(backend.try_acquire("job:42", ttl).status == lease_status::failed);
  }
  SECTION("no pid column: failed, and the lock it got is unlocked") {
    server.locked([&] { s.answer = one_row({{20, 1}}, {wire::be64(10)}); });
    CHECK(backend.try_acquire("job:42", ttl).status == lease_status::failed);
    server.locked([&] {
      REQUIRE_FALSE(s.commands.empty());
      CHECK(s.commands.back().sql.find("pg_advisory_unlock") != std::string::npos);
    });
  }
  SECTION("extend answered with an int4 pid, release with a text-format bool: unknown") {
    server.locked([&] { s.answer = one_row({{23, 1}}, {std::string("\0\0\x10\x92", 4)}); });
    CHECK(backend.extend("job:42", a.grant, ttl) == lease_check::unknown);
    server.locked([&] { s.answer = one_row({{16, 0}, {25, 1}}, {"t", "0"}); });
    CHECK(backend.release("job:42", a.grant) == lease_check::unknown);
    server.locked([&] { s.answer = one_row({{16, 1}, {25, 1}}, {std::string(1, '\1'), "0"}); });
    CHECK(backend.release("job:42", a.grant) == lease_check::held);
  }
}
