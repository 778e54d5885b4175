// noclobber/adapters/postgres.hpp — PostgreSQL (libpq): a version-column store and the row-lock path.
//
// Overview
// --------
// Two ways to stop lost updates on a PostgreSQL row, both here:
//
//  * `postgres::store` — optimistic. A table (key text primary key, value bytea, version
//    bigint) whose version comes from a sequence, so every write gets a version no earlier write of
//    any key ever had (no ABA, also across erase and re-create). It fulfils the conditional_writer
//    contract, so read_modify_write and the race harness drive it directly:
//      write_if_match   UPDATE … SET version = nextval(…) WHERE key = $1 AND version = $2 RETURNING
//                       (0 rows: a SELECT tells conflict from absent — on the slow path only)
//      create_if_absent INSERT … ON CONFLICT (key) DO NOTHING RETURNING version
//  * `postgres::update_under_row_lock` — pessimistic, exactly as the fix for the concurrent
//    disjoint-key env PATCH shipped it (docs/scenarios.md): one transaction, `SET LOCAL lock_timeout`,
//    `SELECT … FOR UPDATE`, the caller's guard and merge run under the row lock, the size cap is
//    checked before the UPDATE, then COMMIT. Its outcomes map one-to-one onto HTTP answers
//    (413 / 404 / 409 / 503, see `http_status`).
//
// Errors are classified by SQLSTATE (`classify_sqlstate`): 40001 / 40P01 restart the transaction,
// 55P03 (lock_timeout, NOWAIT) and 57014 (statement_timeout) retry, a connection lost after the
// statement was sent is `indeterminate` (it may have committed), everything else is permanent.
// A connect or reconnect the server refuses for good — its credentials (a password changed or
// revoked: 28P01), pg_hba.conf (28000), TLS (`tls`: sslmode=verify-full against a certificate
// sslrootcert did not sign) — is permanent; any other failed reconnect is 08006, transient
// (adapters/postgres/connect_failure.hpp, shared with the lease backend through `connection`).
// Passwords in the conninfo never appear in a message (adapters/detail/redact.hpp).
//
// Thread safety: a `connection` (and so a `store`) is one libpq connection and must be
// used by one thread at a time; give each writer thread its own. Nothing here locks in-process.
// The row-lock path calls the caller's `modify` while the transaction holds the PostgreSQL row
// lock (not any in-process lock); if `modify` throws, the transaction is rolled back and the
// exception propagates, with the connection left usable.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "noclobber/adapters/detail/redact.hpp"
#include "noclobber/adapters/postgres/connect_failure.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/duration.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::postgres {

/// What a SQLSTATE means to a retry loop. `sent_write`: the failing statement may have changed
/// data (a lost connection then leaves the outcome unknown).
[[nodiscard]] inline write_status classify_sqlstate(std::string_view sqlstate, bool sent_write) noexcept {
  if (sqlstate == "40001" || sqlstate == "40P01") return write_status::transient_restart;
  if (sqlstate == "55P03" || sqlstate == "57014" || sqlstate == "57P03") return write_status::transient;
  if (sqlstate.starts_with("53")) return write_status::transient;  // insufficient resources
  if (sqlstate == "23505") return write_status::exists;            // unique_violation
  if (sqlstate.starts_with("08") || sqlstate == "57P01" || sqlstate == "57P02") {
    return sent_write ? write_status::indeterminate : write_status::transient;
  }
  return write_status::permanent;
}

namespace detail {
struct result_deleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

struct conninfo_options_deleter {
  void operator()(PQconninfoOption* o) const noexcept { PQconninfoFree(o); }
};
using conninfo_options = std::unique_ptr<PQconninfoOption, conninfo_options_deleter>;

/// The options written in `conninfo` (key=value or URI form), or null when libpq cannot parse
/// it. libpq's error text is dropped unread: it may quote the conninfo, password included.
inline conninfo_options parse_conninfo(const std::string& conninfo) {
  char* error = nullptr;
  conninfo_options options(PQconninfoParse(conninfo.c_str(), &error));
  if (error != nullptr) PQfreemem(error);
  return options;
}

/// libpq marks the options to hide (password, sslpassword) with dispchar "*".
inline bool secret_option(const PQconninfoOption& o) noexcept {
  return o.dispchar != nullptr && o.dispchar[0] == '*';
}

/// `conninfo` for a message: "host=… port=… dbname=… user=…", the secret options left out.
inline std::string describe_conninfo(const std::string& conninfo) {
  const conninfo_options options = parse_conninfo(conninfo);
  if (!options) return "a conninfo libpq cannot parse";
  std::string out;
  for (const PQconninfoOption* o = options.get(); o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0' || secret_option(*o)) continue;
    if (!out.empty()) out += ' ';
    out += std::string(o->keyword) + "=" + o->val;
  }
  return out;
}

/// The values of the secret options in `conninfo`: no message may contain them.
inline std::vector<std::string> conninfo_secrets(const std::string& conninfo) {
  std::vector<std::string> out;
  const conninfo_options options = parse_conninfo(conninfo);
  for (const PQconninfoOption* o = options.get(); o != nullptr && o->keyword != nullptr; ++o) {
    if (o->val != nullptr && *o->val != '\0' && secret_option(*o)) out.emplace_back(o->val);
  }
  return out;
}

inline std::int64_t read_be_int64(const char* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return static_cast<std::int64_t>(v);
}
inline std::string be_int64(std::int64_t x) {
  std::string s(8, '\0');
  auto v = static_cast<std::uint64_t>(x);
  for (int i = 7; i >= 0; --i, v >>= 8) s[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
  return s;
}
}  // namespace detail

/// One statement's answer: ok, or the write_status and store_error of its failure.
struct exec_result {
  detail::result_ptr result;
  write_status failure = write_status::applied;  // `applied` means the statement succeeded
  store_error error;

  [[nodiscard]] bool ok() const noexcept { return failure == write_status::applied; }
  [[nodiscard]] int rows() const noexcept { return result ? PQntuples(result.get()) : 0; }
  /// The row and the column exist.
  [[nodiscard]] bool has(int row, int col) const noexcept {
    return result && row >= 0 && row < PQntuples(result.get()) && col >= 0 && col < PQnfields(result.get());
  }
  /// NULL, or no such row or column.
  [[nodiscard]] bool is_null(int row, int col) const noexcept {
    return !has(row, col) || PQgetisnull(result.get(), row, col) != 0;
  }
  /// Raw bytes of a binary-format column (empty: NULL, or no such row or column).
  [[nodiscard]] std::string bytes(int row, int col) const {
    if (is_null(row, col)) return {};
    return std::string(PQgetvalue(result.get(), row, col),
                       static_cast<std::size_t>(PQgetlength(result.get(), row, col)));
  }
  /// A binary-format int8 (bigint) column; nullopt unless the value is exactly that: not NULL,
  /// type int8, binary, 8 bytes. Reads only the bytes the server sent (another type, an int4
  /// version column of a user's table, is not read as 8 bytes).
  [[nodiscard]] std::optional<std::int64_t> int64(int row, int col) const noexcept {
    if (!typed(row, col, 20 /* int8 */, 8)) return std::nullopt;
    return detail::read_be_int64(PQgetvalue(result.get(), row, col));
  }
  /// A binary-format bool column; nullopt unless it is one (not NULL, type bool, 1 byte).
  [[nodiscard]] std::optional<bool> boolean(int row, int col) const noexcept {
    if (!typed(row, col, 16 /* bool */, 1)) return std::nullopt;
    return *PQgetvalue(result.get(), row, col) != 0;
  }

 private:
  [[nodiscard]] bool typed(int row, int col, Oid type, int length) const noexcept {
    return !is_null(row, col) && PQftype(result.get(), col) == type && PQfformat(result.get(), col) == 1 &&
           PQgetlength(result.get(), row, col) == length;
  }
};

/// One statement parameter: text, or binary bytes (bytea, or an int8 in network byte order), or
/// SQL NULL.
struct param {
  std::string_view data;
  bool binary = false;
  bool is_null = false;
};

/// One libpq connection. Reconnects (PQreset) lazily when the server dropped it.
/// Not thread-safe: one thread at a time.
class connection {
 public:
  /// Connects at once; throws connect_error (a std::runtime_error) naming the server's message,
  /// and classified (connect_failure.hpp), when it cannot.
  /// Neither that message nor any store_error of this connection contains the conninfo's
  /// password (the conninfo is shown with its secret options left out: detail::describe_conninfo).
  explicit connection(std::string conninfo)
      : conninfo_(std::move(conninfo)), secrets_(detail::conninfo_secrets(conninfo_)) {
    if (conninfo_.empty()) throw std::invalid_argument("noclobber::postgres::connection: empty conninfo");
    if (!detail::parse_conninfo(conninfo_)) {
      // libpq's own words for a malformed conninfo quote it ("missing "=" after …"): not shown.
      throw std::invalid_argument(
          "noclobber::postgres::connection: libpq cannot parse the conninfo "
          "(a key=value list or a postgresql:// URI; its text is not shown, it may hold a "
          "password)");
    }
    conn_ = PQconnectdb(conninfo_.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string msg = last_error();
      connect_failure failure = classify_connect_failure(conn_, msg);
      PQfinish(conn_);
      conn_ = nullptr;
      throw connect_error("noclobber::postgres::connection: cannot connect (" +
                              detail::describe_conninfo(conninfo_) + "): " + msg,
                          std::move(failure));
    }
  }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  connection(connection&& o) noexcept
      : conninfo_(std::move(o.conninfo_)),
        secrets_(std::move(o.secrets_)),
        conn_(std::exchange(o.conn_, nullptr)) {}
  connection& operator=(connection&& o) noexcept {
    if (this != &o) {
      if (conn_) PQfinish(conn_);
      conninfo_ = std::move(o.conninfo_);
      secrets_ = std::move(o.secrets_);
      conn_ = std::exchange(o.conn_, nullptr);
    }
    return *this;
  }
  ~connection() {
    if (conn_) PQfinish(conn_);
  }

  [[nodiscard]] PGconn* native_handle() const noexcept { return conn_; }
  /// The conninfo as given, password included: never put it in a message (describe_conninfo).
  [[nodiscard]] const std::string& conninfo() const noexcept { return conninfo_; }
  /// The server's backend PID (for pg_terminate_backend in tests).
  [[nodiscard]] int backend_pid() const noexcept { return conn_ ? PQbackendPID(conn_) : 0; }

  /// Runs one statement with parameters ($1, $2, …), results in binary format.
  /// `may_write`: whether the statement can change data (decides indeterminate vs transient when
  /// the connection is lost mid-statement).
  exec_result exec(const char* sql, std::initializer_list<param> params, bool may_write) {
    return exec(sql, std::span<const param>(params.begin(), params.size()), may_write);
  }

  /// The same, with a run-time number of parameters.
  exec_result exec(const char* sql, std::span<const param> params, bool may_write) {
    if (!ensure_connected()) return reconnect_failed();
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    values.reserve(params.size());
    for (const param& p : params) {
      values.push_back(p.data.data() ? p.data.data() : "");
      lengths.push_back(static_cast<int>(p.data.size()));
      formats.push_back(p.binary ? 1 : 0);
    }
    // Text parameters must be NUL-terminated: copy those that are views into larger buffers.
    std::vector<std::string> text_copies;
    text_copies.reserve(params.size());
    std::size_t i = 0;
    for (const param& p : params) {
      if (p.is_null) {
        values[i] = nullptr;
      } else if (!p.binary) {
        text_copies.emplace_back(p.data);
        values[i] = text_copies.back().c_str();
      }
      ++i;
    }
    detail::result_ptr r(PQexecParams(conn_, sql, static_cast<int>(values.size()), nullptr, values.data(),
                                      lengths.data(), formats.data(), 1));
    return finish(std::move(r), may_write);
  }

  exec_result exec(const std::string& sql, std::initializer_list<param> params, bool may_write) {
    return exec(sql.c_str(), params, may_write);
  }

  /// Runs one or more statements without parameters (BEGIN, SET LOCAL, COMMIT, DDL).
  exec_result exec_simple(const std::string& sql, bool may_write) {
    if (!ensure_connected()) return reconnect_failed();
    return finish(detail::result_ptr(PQexec(conn_, sql.c_str())), may_write);
  }

 private:
  bool ensure_connected() {
    if (PQstatus(conn_) == CONNECTION_OK) return true;
    PQreset(conn_);
    return PQstatus(conn_) == CONNECTION_OK;
  }
  /// A reconnect that failed, classified by classify_connect_failure: a refusal of our
  /// credentials, by pg_hba.conf or in TLS is permanent (no loop retries a password or a
  /// certificate that will not become right); anything else (server unreachable, restarting) is
  /// 08006, transient: nothing was sent.
  exec_result reconnect_failed() const {
    std::string msg = last_error();
    connect_failure f = classify_connect_failure(conn_, msg);
    return {nullptr, f.status, {std::move(f.code), "connection lost and reset failed: " + msg}};
  }
  std::string last_error() const {
    return conn_ ? noclobber::detail::redact(PQerrorMessage(conn_), secrets_) : std::string("no connection");
  }

  exec_result finish(detail::result_ptr r, bool may_write) {
    const ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return {std::move(r), write_status::applied, {}};
    const char* state = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
    std::string msg = r ? noclobber::detail::redact(PQresultErrorMessage(r.get()), secrets_) : last_error();
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    if (state == nullptr || PQstatus(conn_) != CONNECTION_OK) {
      // No SQLSTATE, or the connection broke: the statement may or may not have run.
      return {std::move(r),
              may_write ? write_status::indeterminate : write_status::transient,
              {state ? state : "08006", msg}};
    }
    return {std::move(r), classify_sqlstate(state, may_write), {state, msg}};
  }

  std::string conninfo_;
  std::vector<std::string> secrets_;  // what no message of this connection may contain
  PGconn* conn_ = nullptr;
};

namespace detail {
inline void check_identifier(std::string_view what, std::string_view name) {
  bool ok = !name.empty() && name.size() <= 48 && (name[0] == '_' || (name[0] >= 'a' && name[0] <= 'z'));
  for (char c : name) ok = ok && (c == '_' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'));
  if (!ok) {
    throw std::invalid_argument(
        "noclobber::postgres: " + std::string(what) + " '" + std::string(name) +
        "' is not a plain lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 48 chars)");
  }
}

/// lock_timeout in whole milliseconds for `SET LOCAL lock_timeout`: nanoseconds::max() is "no
/// limit" (0), anything else at most INT_MAX (PostgreSQL's upper bound).
[[nodiscard]] constexpr long long lock_timeout_ms(saturating_ns d) noexcept {
  if (d.is_max()) return 0;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d.get()).count();
  return ms > std::numeric_limits<int>::max() ? std::numeric_limits<int>::max() : ms;
}
}  // namespace detail

/// The outcome of `update_under_row_lock`, one per HTTP answer a handler gives.
enum class row_lock_status : unsigned char {
  applied,    // committed                                          -> 200
  unchanged,  // modify chose to write nothing; committed, no UPDATE -> 200
  too_large,  // the new value exceeded max_value_bytes; rolled back -> 413
  not_found,  // no row for the key                                 -> 404
  rejected,   // modify's guard refused (e.g. status = 'deleting')  -> 409
  busy,       // lock_timeout (55P03) or statement_timeout          -> 503, retryable
  restart,    // 40001 / 40P01: run the whole transaction again      -> 503, retryable
  failed,     // anything else (see error; indeterminate if COMMIT was lost) -> 503
};

[[nodiscard]] constexpr int http_status(row_lock_status s) noexcept {
  switch (s) {
    case row_lock_status::applied:
    case row_lock_status::unchanged:
      return 200;
    case row_lock_status::too_large:
      return 413;
    case row_lock_status::not_found:
      return 404;
    case row_lock_status::rejected:
      return 409;
    case row_lock_status::busy:
    case row_lock_status::restart:
    case row_lock_status::failed:
      return 503;
  }
  return 503;
}

struct row_lock_result {
  row_lock_status status = row_lock_status::failed;
  /// For `failed`: indeterminate when COMMIT's answer was lost, else transient or permanent.
  write_status write = write_status::permanent;
  store_error error;
  [[nodiscard]] bool ok() const noexcept {
    return status == row_lock_status::applied || status == row_lock_status::unchanged;
  }
};

/// What `modify` sees: the row's selected columns as text (nullopt for SQL NULL), column 0 being
/// the value to rewrite. It answers with `set(new_value)`, `keep()` or `reject(reason)`.
struct locked_row {
  std::vector<std::optional<std::string>> columns;
};
struct row_decision {
  enum class kind : unsigned char { set, keep, reject } what = kind::keep;
  std::string value;  // the new value (set) or the reason (reject)
  [[nodiscard]] static row_decision set(std::string v) { return {kind::set, std::move(v)}; }
  [[nodiscard]] static row_decision keep() { return {kind::keep, {}}; }
  [[nodiscard]] static row_decision reject(std::string reason) { return {kind::reject, std::move(reason)}; }
};

struct row_lock_options {
  /// `SET LOCAL lock_timeout`: how long to wait for the row lock before answering busy (503).
  /// Any duration converts without overflow; nanoseconds::max() (hours::max() too) means no
  /// limit (PostgreSQL's 0), anything else is sent in whole milliseconds, at most INT_MAX.
  saturating_ns lock_timeout = std::chrono::seconds(3);
  /// The size cap checked under the lock before the UPDATE (the `env_patch` fix's: 64 KiB); 0 = none.
  std::size_t max_value_bytes = 0;
};

/// The `env_patch` fix's pessimistic read-modify-write (docs/scenarios.md). In one transaction:
///   BEGIN; SET LOCAL lock_timeout = …;  `select_for_update` ($1 = key; must end in FOR UPDATE;
///   column 0 is the value, further columns are for the guard); modify(row) under the row lock;
///   size cap; `update` ($1 = key, $2 = new value); COMMIT.
/// `modify` must be invocable as `row_decision(const locked_row&)`; if it throws, the transaction
/// is rolled back and the exception propagates. The connection must not be inside a transaction.
template <class Modify>
row_lock_result update_under_row_lock(connection& c, const char* select_for_update, const char* update,
                                      std::string_view key, Modify&& modify,
                                      const row_lock_options& opt = {}) {
  if (opt.lock_timeout.count() < 0) {
    throw std::invalid_argument("noclobber::postgres::update_under_row_lock: negative lock_timeout " +
                                std::to_string(opt.lock_timeout.count()) + "ns");
  }
  if (std::string_view(select_for_update).find("FOR UPDATE") == std::string_view::npos &&
      std::string_view(select_for_update).find("for update") == std::string_view::npos) {
    throw std::invalid_argument(
        std::string("noclobber::postgres::update_under_row_lock: the select does not ") +
        "lock the row (no FOR UPDATE): " + select_for_update);
  }
  auto fail = [&c](exec_result& r, bool rollback) {
    if (rollback && PQstatus(c.native_handle()) == CONNECTION_OK) (void)c.exec_simple("ROLLBACK", false);
    row_lock_result out;
    out.write = r.failure;
    out.error = std::move(r.error);
    out.status =
        r.failure == write_status::transient_restart ? row_lock_status::restart
        : (r.failure == write_status::transient && (out.error.code == "55P03" || out.error.code == "57014"))
            ? row_lock_status::busy
            : row_lock_status::failed;
    return out;
  };
  auto finish = [&c](row_lock_status s, store_error e = {}) {
    (void)c.exec_simple("ROLLBACK", false);
    return row_lock_result{
        s, s == row_lock_status::not_found ? write_status::absent : write_status::permanent, std::move(e)};
  };

  exec_result begin = c.exec_simple(
      "BEGIN; SET LOCAL lock_timeout = '" + std::to_string(detail::lock_timeout_ms(opt.lock_timeout)) + "ms'",
      false);
  if (!begin.ok()) return fail(begin, true);

  exec_result sel = c.exec(select_for_update, {param{key}}, false);
  if (!sel.ok()) return fail(sel, true);
  if (sel.rows() == 0) return finish(row_lock_status::not_found);

  locked_row row;
  const int ncols = PQnfields(sel.result.get());
  row.columns.reserve(static_cast<std::size_t>(ncols));
  for (int i = 0; i < ncols; ++i) {
    if (sel.is_null(0, i)) {
      row.columns.emplace_back(std::nullopt);
    } else if (const auto v = sel.int64(0, i)) {  // int8: as decimal text
      row.columns.emplace_back(std::to_string(*v));
    } else {
      row.columns.emplace_back(sel.bytes(0, i));  // text, bytea: raw bytes in binary format
    }
  }

  row_decision d;
  try {
    d = modify(std::as_const(row));
  } catch (...) {
    (void)c.exec_simple("ROLLBACK", false);
    throw;
  }
  if (d.what == row_decision::kind::reject) return finish(row_lock_status::rejected, {"rejected", d.value});
  if (d.what == row_decision::kind::set) {
    if (opt.max_value_bytes != 0 && d.value.size() > opt.max_value_bytes) {
      return finish(row_lock_status::too_large,
                    {"too_large", std::to_string(d.value.size()) + " bytes > cap of " +
                                      std::to_string(opt.max_value_bytes)});
    }
    exec_result up = c.exec(update, {param{key}, param{d.value, true}}, true);
    if (!up.ok()) return fail(up, true);
  }
  exec_result commit = c.exec_simple("COMMIT", true);
  if (!commit.ok()) return fail(commit, false);
  // COMMIT of an aborted transaction answers "ROLLBACK" with no error.
  if (std::string_view(PQcmdStatus(commit.result.get())) != "COMMIT") {
    return {
        row_lock_status::failed, write_status::transient_restart, {"ROLLBACK", "transaction rolled back"}};
  }
  return {d.what == row_decision::kind::set ? row_lock_status::applied : row_lock_status::unchanged,
          write_status::applied,
          {}};
}

/// A key-value table with a version column, as a conditional_writer.
///   table:    key text PRIMARY KEY, value bytea NOT NULL, version bigint NOT NULL
///   sequence: <table>_version, the source of every version (unique across keys: no ABA)
/// Token: the version (int64). One object = one connection; not thread-safe.
class store {
 public:
  using key_type = std::string;
  using value_type = std::string;
  using token_type = std::int64_t;

  /// `table` must be a plain lower-case identifier (std::invalid_argument otherwise).
  store(std::string conninfo, std::string table) : conn_(std::move(conninfo)), table_(std::move(table)) {
    detail::check_identifier("table name", table_);
    const std::string& t = table_;
    const std::string seq = "nextval('" + t + "_version')";
    read_sql_ = "SELECT value, version FROM " + t + " WHERE key = $1";
    update_sql_ = "UPDATE " + t + " SET value = $3, version = " + seq +
                  " WHERE key = $1 AND version = $2 RETURNING version";
    exists_sql_ = "SELECT 1 FROM " + t + " WHERE key = $1";
    create_sql_ = "INSERT INTO " + t + " (key, value, version) VALUES ($1, $2, " + seq +
                  ") ON CONFLICT (key) DO NOTHING RETURNING version";
    erase_sql_ = "DELETE FROM " + t + " WHERE key = $1 AND version = $2";
    overwrite_sql_ = "INSERT INTO " + t + " (key, value, version) VALUES ($1, $2, " + seq +
                     ") ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version "
                     "RETURNING version";
    lock_select_sql_ = "SELECT value FROM " + t + " WHERE key = $1 FOR UPDATE";
    lock_update_sql_ = "UPDATE " + t + " SET value = $2, version = " + seq + " WHERE key = $1";
  }

  /// Creates the table and its sequence if missing (idempotent). Throws std::runtime_error on failure.
  void ensure_table() {
    exec_result r = conn_.exec_simple(
        "CREATE SEQUENCE IF NOT EXISTS " + table_ + "_version; CREATE TABLE IF NOT EXISTS " + table_ +
            " (key text PRIMARY KEY, value bytea NOT NULL, version bigint NOT NULL)",
        true);
    // Two processes racing CREATE … IF NOT EXISTS can still collide on the catalog (23505): fine.
    if (!r.ok() && r.error.code != "23505" && r.error.code != "42P07") {
      throw std::runtime_error("noclobber::postgres::store: cannot create table " + table_ + ": " +
                               r.error.message);
    }
  }

  read_result<value_type, token_type> read(const key_type& key) {
    exec_result r = conn_.exec(read_sql_.c_str(), {param{key}}, false);
    if (!r.ok()) {
      return read_result<value_type, token_type>::make_failed(
          r.failure == write_status::permanent ? read_status::permanent : read_status::transient,
          std::move(r.error));
    }
    if (r.rows() == 0) return read_result<value_type, token_type>::make_absent();
    const auto version = r.int64(0, 1);
    if (!version)
      return read_result<value_type, token_type>::make_failed(read_status::permanent, bad_version());
    return read_result<value_type, token_type>::make_found(r.bytes(0, 0), *version);
  }

  write_result<token_type> write_if_match(const key_type& key, const token_type& token,
                                          const value_type& value) {
    const std::string ver = detail::be_int64(token);
    exec_result r = conn_.exec(update_sql_.c_str(), {param{key}, param{ver, true}, param{value, true}}, true);
    if (!r.ok()) return write_result<token_type>::make_failed(r.failure, std::move(r.error));
    if (r.rows() == 1) return applied(r);
    return moved_or_gone(key);
  }

  write_result<token_type> create_if_absent(const key_type& key, const value_type& value) {
    exec_result r = conn_.exec(create_sql_.c_str(), {param{key}, param{value, true}}, true);
    if (!r.ok()) return write_result<token_type>::make_failed(r.failure, std::move(r.error));
    if (r.rows() == 0) return write_result<token_type>::make_exists();
    return applied(r);
  }

  write_result<token_type> erase_if_match(const key_type& key, const token_type& token) {
    const std::string ver = detail::be_int64(token);
    exec_result r = conn_.exec(erase_sql_.c_str(), {param{key}, param{ver, true}}, true);
    if (!r.ok()) return write_result<token_type>::make_failed(r.failure, std::move(r.error));
    if (std::string_view(PQcmdTuples(r.result.get())) == "1") return write_result<token_type>::make_applied();
    return moved_or_gone(key);
  }

  /// The unconditional upsert that loses updates (negative control only).
  write_result<token_type> overwrite(const key_type& key, const value_type& value) {
    exec_result r = conn_.exec(overwrite_sql_.c_str(), {param{key}, param{value, true}}, true);
    if (!r.ok()) return write_result<token_type>::make_failed(r.failure, std::move(r.error));
    return applied(r);
  }

  /// The pessimistic path on this table: update_under_row_lock with `modify(const std::string&
  /// current) -> row_decision` (the key must exist: not_found otherwise).
  template <class Modify>
  row_lock_result update_locked(const key_type& key, Modify&& modify, const row_lock_options& opt = {}) {
    return update_under_row_lock(
        conn_, lock_select_sql_.c_str(), lock_update_sql_.c_str(), key,
        [&modify](const locked_row& row) { return modify(*row.columns.at(0)); }, opt);
  }

  [[nodiscard]] connection& conn() noexcept { return conn_; }
  [[nodiscard]] const std::string& table() const noexcept { return table_; }

 private:
  static store_error bad_version() { return {"SQL", "the version column is not a non-NULL bigint (int8)"}; }
  // A write that took effect and returned its version: applied with that token, or applied
  // without a token when the version cannot be read (a user's table with another column type).
  static write_result<token_type> applied(const exec_result& r) {
    const auto version = r.int64(0, 0);
    return version ? write_result<token_type>::make_applied(*version)
                   : write_result<token_type>::make_applied();
  }
  // After 0 rows matched (key, version): the key moved on (conflict) or is gone (absent). A slow
  // path only; if this second look fails, conflict is the safe answer (both mean: re-read).
  write_result<token_type> moved_or_gone(const key_type& key) {
    exec_result e = conn_.exec(exists_sql_.c_str(), {param{key}}, false);
    return e.ok() && e.rows() == 0 ? write_result<token_type>::make_absent()
                                   : write_result<token_type>::make_conflict();
  }

  connection conn_;
  std::string table_;
  std::string read_sql_, update_sql_, exists_sql_, create_sql_, erase_sql_, overwrite_sql_, lock_select_sql_,
      lock_update_sql_;
};

static_assert(check_conditional_writer<store>());

/// The name before 0.2, kept for one release.
using version_store [[deprecated("use noclobber::postgres::store")]] = store;

}  // namespace noclobber::postgres
