// Fuzz target: the PostgreSQL lease backend's reading of what a server answers
// (adapters/postgres_lease.hpp and exec_result of adapters/postgres.hpp: int8 and bool columns in
// binary format), end to end through libpq against a scripted loopback server (pg_server.hpp).
//
// Input: one byte picks the scope (session or transaction), then up to 12 operation bytes
// (try_acquire of one of two keys, extend and release of the last grant or of a made-up one), then
// the server's script: per command one byte picks the answer a real server gives (the acquire
// query's row with the next fence number and the backend pid; the pid; true for the unlock; the
// command tag of BEGIN, COMMIT, ROLLBACK, SET), or another: the other real answer (busy: fence 0;
// another pid; false), an error with a SQLSTATE, rows of any shape (0-2 rows of 0-4 columns, each
// int8, int4, int2, bool or text, binary or text format, NULL, the type's exact size or any bytes),
// closing the connection, or raw bytes (the connection then closes; the exact checks stop for
// that input, as answers may no longer pair with commands).
//
// Checked, for every call: no crash, leak or undefined behaviour (an int8 read past the bytes a
// column holds: the bug this target was written for); acquired only with a token > 0, an owner and
// no error; failed always with the store's words. While answers pair with commands, against a
// reference written here:
//   - the constructor throws exactly when its statement got an error (other than 23505, 42P07) or
//     no answer;
//   - try_acquire sends the acquire query with the key and the TTL in ms; its answer: one row whose
//     column 0 is an int8 (binary, 8 bytes, not NULL) t <= 0 -> busy; t > 0 with column 2 such an
//     int8 p -> acquired with token t and owner p; anything else -> failed (an error's SQLSTATE
//     kept); with no acquire query sent (BEGIN failed) -> failed;
//   - extend: no statement sent -> lost (another session); an answer of one row whose column 0 is
//     such an int8 -> held when it is the owner, else lost; an error -> unknown; no answer (the
//     connection closed) -> lost; any other shape -> unknown;
//   - release, session scope: the same with a bool (binary, 1 byte) in column 0: true -> held,
//     false -> lost; transaction scope: COMMIT answered -> held, an error -> unknown, none -> lost.
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_support.hpp"
#include "noclobber/adapters/postgres_lease.hpp"
#include "pg_server.hpp"

namespace {

using noclobber::lease_check;
using noclobber::lease_grant;
using noclobber::lease_status;
namespace pg = noclobber::postgres;
namespace wire = nc_fuzz::pg_wire;

// ---- answers ----------------------------------------------------------------------------------------

enum class answer_kind { rows, error, closed, raw };

struct answer {
  answer_kind kind = answer_kind::rows;
  std::vector<wire::column> columns;  // rows
  std::vector<wire::row> rows;
  std::string tag = "SELECT 1";
  std::string sqlstate;  // error
};

/// Column c of the only row as an int8 the way exec_result reads one (nullopt: it is not one).
std::optional<std::int64_t> int8_cell(const answer& a, std::size_t c) {
  if (a.kind != answer_kind::rows || a.rows.size() != 1 || c >= a.columns.size()) return std::nullopt;
  const auto& v = a.rows[0][c];
  if (a.columns[c].type != 20 || a.columns[c].format != 1 || !v || v->size() != 8) return std::nullopt;
  std::uint64_t x = 0;
  for (char ch : *v) x = (x << 8) | static_cast<unsigned char>(ch);
  return static_cast<std::int64_t>(x);
}
std::optional<bool> bool_cell(const answer& a, std::size_t c) {
  if (a.kind != answer_kind::rows || a.rows.size() != 1 || c >= a.columns.size()) return std::nullopt;
  const auto& v = a.rows[0][c];
  if (a.columns[c].type != 16 || a.columns[c].format != 1 || !v || v->size() != 1) return std::nullopt;
  return (*v)[0] != 0;
}

std::string wire_of(const answer& a, bool extended) {
  switch (a.kind) {
    case answer_kind::error:
      return wire::error(a.sqlstate, "scripted error") + wire::ready();
    case answer_kind::closed:
    case answer_kind::raw:
      return {};
    case answer_kind::rows:
      break;
  }
  std::string out = extended ? wire::message('1', "") + wire::message('2', "") : std::string();
  if (a.columns.empty() && extended) {
    out += wire::message('n', "");
  } else if (!a.columns.empty()) {
    out += wire::row_description(a.columns);
  }
  for (const auto& r : a.rows) out += wire::data_row(r);
  return out + wire::command_complete(a.tag) + wire::ready();
}

bool is_acquire(const nc_fuzz::pg_command& c) {
  return c.extended && c.sql.find("pg_try_advisory") != std::string::npos;
}
bool is_pid_query(const nc_fuzz::pg_command& c) {
  return c.extended && c.sql == "SELECT pg_backend_pid()::bigint";
}
bool is_unlock(const nc_fuzz::pg_command& c) {
  return c.extended && c.sql.find("pg_advisory_unlock") != std::string::npos;
}

struct server_state {
  struct entry {
    nc_fuzz::pg_command command;
    answer given;
  };
  nc_fuzz::reader in{nullptr, 0};
  std::int32_t first_pid = 4242;
  std::int64_t next_fence = 1;
  std::vector<entry> log;  // this call's commands
  bool unpaired = false;   // raw bytes were sent: answers and commands may not pair any more

  static answer one_row(std::vector<wire::column> cols, wire::row values) {
    return {answer_kind::rows, std::move(cols), {std::move(values)}, "SELECT 1", {}};
  }
  static answer tag_only(std::string tag) { return {answer_kind::rows, {}, {}, std::move(tag), {}}; }

  answer usual(const nc_fuzz::pg_command& c, bool other) {
    const std::int32_t pid = first_pid + c.connection - 1;
    if (is_acquire(c)) {
      if (other) return one_row({{20, 1}, {25, 1}, {20, 1}}, {wire::be64(0), std::nullopt, wire::be64(pid)});
      return one_row({{20, 1}, {25, 1}, {20, 1}}, {wire::be64(next_fence++), "1000", wire::be64(pid)});
    }
    if (is_pid_query(c)) return one_row({{20, 1}}, {wire::be64(other ? pid + 1000 : pid)});
    if (is_unlock(c)) return one_row({{16, 1}, {25, 1}}, {std::string(1, other ? '\0' : '\1'), "0"});
    const std::size_t sp = c.sql.find(' ');
    return tag_only(c.sql.substr(0, sp == std::string::npos ? c.sql.size() : sp));
  }

  answer shaped() {
    static const std::uint32_t types[] = {20, 23, 21, 16, 25};
    answer a;
    const std::size_t ncols = in.u8() % 5;
    for (std::size_t i = 0; i < ncols; ++i) {
      const std::uint8_t b = in.u8();
      a.columns.push_back({types[b % 5], static_cast<std::int16_t>((b >> 3) % 4 == 0 ? 0 : 1)});
    }
    const std::size_t nrows = ncols == 0 ? 0 : in.u8() % 3;
    for (std::size_t r = 0; r < nrows; ++r) {
      wire::row row;
      for (std::size_t i = 0; i < ncols; ++i) {
        const std::uint8_t how = in.u8();
        const std::uint32_t t = a.columns[i].type;
        const std::size_t exact = t == 20 ? 8 : t == 23 ? 4 : t == 21 ? 2 : 1;
        if (how % 4 == 0) {
          row.emplace_back(std::nullopt);
        } else if (how % 4 == 1) {
          std::string v = in.bytes(exact);
          v.resize(exact, '\0');
          row.emplace_back(std::move(v));
        } else {
          row.emplace_back(in.short_string());
        }
      }
      a.rows.push_back(std::move(row));
    }
    a.tag = "SELECT " + std::to_string(nrows);
    return a;
  }

  answer scripted(const nc_fuzz::pg_command& c) {
    const std::uint8_t pick = in.u8();
    if (pick < 128) return usual(c, false);
    static const char* const states[] = {"40001", "57P01", "53300", "42883",
                                         "25P02", "XX000", "55P03", "23505"};
    switch (pick % 8) {
      case 0:
        return usual(c, true);
      case 1:
      case 2:
        return {answer_kind::error, {}, {}, {}, states[in.u8() % 8]};
      case 3:
      case 4:
      case 5:
        return shaped();
      case 6:
        return {answer_kind::closed, {}, {}, {}, {}};
      default:
        return {answer_kind::raw, {}, {}, {}, {}};
    }
  }

  nc_fuzz::pg_answer respond(const nc_fuzz::pg_command& c) {
    const answer a = scripted(c);
    log.push_back({c, a});
    switch (a.kind) {
      case answer_kind::closed:
        return {std::nullopt, false};
      case answer_kind::raw:
        unpaired = true;
        return {in.short_string(), true};
      default:
        return {wire_of(a, c.extended), false};
    }
  }
};

// ---- the run ----------------------------------------------------------------------------------------

void check_words(const noclobber::store_error& e, const char* what) {
  NC_FUZZ_CHECK(!e.code.empty() || !e.message.empty(),
                std::string(what) + ": failed without the store's words");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nc_fuzz::reader in(data, size);
  const std::uint8_t setup = in.u8();
  const auto scope = setup % 2 == 0 ? pg::advisory_lease_backend::scope::session
                                    : pg::advisory_lease_backend::scope::transaction;
  const bool xact = scope == pg::advisory_lease_backend::scope::transaction;
  std::vector<std::uint8_t> ops;
  const std::size_t nops = in.u8() % 13;
  for (std::size_t i = 0; i < nops; ++i) ops.push_back(in.u8());

  server_state state;
  state.in = in;
  nc_fuzz::pg_server::script script;
  script.respond = [&state](const nc_fuzz::pg_command& c) { return state.respond(c); };
  script.idle_ms = [] { return 2000; };
  nc_fuzz::pg_server server(script, state.first_pid);

  std::optional<pg::advisory_lease_backend> backend;
  try {
    backend.emplace(server.conninfo(), scope);
  } catch (const std::runtime_error&) {
    server.locked([&] {
      if (state.unpaired) return;
      NC_FUZZ_CHECK(!state.log.empty(), "the constructor threw without a statement");
      const answer& a = state.log.front().given;
      NC_FUZZ_CHECK(a.kind == answer_kind::closed ||
                        (a.kind == answer_kind::error && a.sqlstate != "23505" && a.sqlstate != "42P07"),
                    "the constructor threw on an answer that is not a failure");
    });
    return 0;
  }
  server.locked([&] {
    if (state.unpaired) return;
    const answer& a = state.log.front().given;
    NC_FUZZ_CHECK(a.kind == answer_kind::rows || (a.kind == answer_kind::error && a.sqlstate == "23505"),
                  "the constructor accepted a failure");
  });

  const std::string keys[] = {"job:42", "k"};
  std::optional<lease_grant> last;
  for (const std::uint8_t op : ops) {
    server.locked([&] { state.log.clear(); });
    const std::string& key = keys[(op >> 2) % 2];
    switch (op % 4) {
      case 0:
      case 3: {
        const std::chrono::milliseconds ttl(1 + (op >> 3));
        const noclobber::lease_attempt a = backend->try_acquire(key, ttl);
        if (a.status == lease_status::acquired) {
          NC_FUZZ_CHECK(a.grant.token > 0 && !a.grant.owner.empty() && a.error.empty(),
                        "acquired: a bad grant");
          last = a.grant;
        } else if (a.status == lease_status::failed) {
          check_words(a.error, "try_acquire");
        }
        server.locked([&] {
          if (state.unpaired) return;
          const server_state::entry* acq = nullptr;
          for (const auto& e : state.log)
            if (is_acquire(e.command)) acq = &e;
          if (acq == nullptr) {
            NC_FUZZ_CHECK(a.status == lease_status::failed,
                          "try_acquire without the acquire query did not fail");
            return;
          }
          NC_FUZZ_CHECK(acq->command.params.size() == 2 && acq->command.params[0] == key &&
                            acq->command.params[1] == std::to_string(ttl.count()),
                        "the acquire query's parameters");
          const answer& g = acq->given;
          const auto t = int8_cell(g, 0);
          const auto p = int8_cell(g, 2);
          if (t && *t <= 0) {
            NC_FUZZ_CHECK(a.status == lease_status::busy, "token <= 0 is not busy");
          } else if (t && p) {
            NC_FUZZ_CHECK(a.status == lease_status::acquired &&
                              a.grant.token == static_cast<std::uint64_t>(*t) &&
                              a.grant.owner == std::to_string(*p),
                          "a readable grant was not acquired as answered");
          } else {
            NC_FUZZ_CHECK(a.status == lease_status::failed, "an unreadable or failed answer was not failed");
            if (g.kind == answer_kind::error)
              NC_FUZZ_CHECK(a.error.code == g.sqlstate, "the error's SQLSTATE was not kept");
          }
        });
        break;
      }
      case 1:
      case 2: {
        lease_grant g = last.value_or(lease_grant{7, "4242", std::chrono::milliseconds(100)});
        if ((op >> 3) % 4 == 3) g.owner = "1";  // another session's
        const bool extend = op % 4 == 1;
        const lease_check r =
            extend ? backend->extend(key, g, std::chrono::milliseconds(100)) : backend->release(key, g);
        server.locked([&] {
          if (state.unpaired) return;
          const server_state::entry* stmt = nullptr;
          for (const auto& e : state.log)
            if (extend ? is_pid_query(e.command)
                       : (xact ? !e.command.extended && e.command.sql == "COMMIT" : is_unlock(e.command)))
              stmt = &e;
          if (stmt == nullptr) {
            NC_FUZZ_CHECK(r == lease_check::lost, "no statement sent, yet not lost");
            return;
          }
          if (!extend && !xact)
            NC_FUZZ_CHECK(stmt->command.params.size() == 1 && stmt->command.params[0] == key,
                          "the unlock's parameter");
          const answer& a = stmt->given;
          lease_check want = lease_check::unknown;
          if (a.kind == answer_kind::closed) {
            want = lease_check::lost;
          } else if (a.kind == answer_kind::error) {
            want = lease_check::unknown;
          } else if (extend) {
            const auto pid = int8_cell(a, 0);
            want = !pid                              ? lease_check::unknown
                   : std::to_string(*pid) == g.owner ? lease_check::held
                                                     : lease_check::lost;
          } else if (xact) {
            want = lease_check::held;
          } else {
            const auto b = bool_cell(a, 0);
            want = !b ? lease_check::unknown : *b ? lease_check::held : lease_check::lost;
          }
          NC_FUZZ_CHECK(r == want,
                        std::string(extend ? "extend" : "release") + " did not answer as the reference");
        });
        break;
      }
    }
  }
  backend.reset();
  return 0;
}
