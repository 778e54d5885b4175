// noclobber/adapters/sqlite.hpp — embedded SQLite as a conditional_writer store.
//
// Overview
// --------
// `sqlite::store` keeps key → (value, version) rows in one table of an SQLite database
// file and fulfils the store contract of conditional_writer.hpp, so read_modify_write,
// locked_read_modify_write and the race harness drive it directly:
//
//   noclobber::sqlite::store db("app.db");                          // one connection
//   auto r = noclobber::read_modify_write(db, "location/42", [](const auto& cur) {
//     return cur.value_or("") + "row;";
//   });
//
// How each call maps onto SQL (table `T`, version counter table `T_version`):
//   read              SELECT value, version FROM T WHERE key = ?          (autocommit)
//   write_if_match    BEGIN IMMEDIATE; bump the counter;
//                     UPDATE T SET value = ?, version = ? WHERE key = ? AND version = ? RETURNING version;
//                     no row: conflict (the key exists) or absent; COMMIT
//   create_if_absent  BEGIN IMMEDIATE; bump; INSERT … ON CONFLICT(key) DO NOTHING RETURNING version
//                     (no row: exists); COMMIT
//   overwrite         BEGIN IMMEDIATE; bump; INSERT … ON CONFLICT(key) DO UPDATE … RETURNING version
//                     (the UPSERT; the blind write of the naive negative control); COMMIT
//   erase_if_match    BEGIN IMMEDIATE; DELETE … WHERE key = ? AND version = ?; COMMIT
//
// Versions come from one counter per table that only grows, so a version is never reused, not
// even after a key is erased and created again (no ABA). BEGIN IMMEDIATE takes SQLite's write
// lock at the start, so the transaction never has to upgrade a read snapshot (the cause of
// SQLITE_BUSY_SNAPSHOT). The database runs in WAL mode (readers don't block the writer) with a
// busy_timeout, and several connections and several processes may use one file.
//
// Errors (`classify`): SQLITE_BUSY / SQLITE_LOCKED (after busy_timeout) → transient (nothing was
// written); SQLITE_BUSY_SNAPSHOT → transient_restart (re-read: the snapshot is stale); an I/O
// error or interrupt while COMMIT runs → indeterminate (it may have committed); anything else →
// permanent. The SQLite code name and message are kept in store_error.
//
// Thread safety: one sqlite::store is one SQLite connection (opened with SQLITE_OPEN_NOMUTEX) and
// must be used by one thread at a time; give each thread (each harness writer) its own, on the
// same file. No user callback runs inside this adapter, and no in-process lock is taken.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "noclobber/conditional_writer.hpp"
#include "noclobber/duration.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::sqlite {

/// What an SQLite result code means to a retry loop. `commit_sent`: the failing step was COMMIT
/// (or an autocommit write), so an I/O error leaves the outcome unknown.
[[nodiscard]] inline write_status classify(int extended_code, bool commit_sent) noexcept {
  if (extended_code == SQLITE_BUSY_SNAPSHOT) return write_status::transient_restart;
  switch (extended_code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return write_status::transient;
    case SQLITE_IOERR:
    case SQLITE_INTERRUPT:
    case SQLITE_FULL:
      return commit_sent ? write_status::indeterminate : write_status::transient;
    case SQLITE_CONSTRAINT:
      // Only a duplicate key means somebody created the row first. NOT NULL, CHECK, FOREIGN KEY
      // and trigger failures are the request's own fault: retrying cannot help.
      return extended_code == SQLITE_CONSTRAINT || extended_code == SQLITE_CONSTRAINT_UNIQUE ||
                     extended_code == SQLITE_CONSTRAINT_PRIMARYKEY || extended_code == SQLITE_CONSTRAINT_ROWID
                 ? write_status::exists
                 : write_status::permanent;
    default:
      return write_status::permanent;
  }
}

/// How to open the database.
struct store_options {
  std::string table = "noclobber_kv";  ///< [A-Za-z_][A-Za-z0-9_]*; created if missing
  /// How long a write waits for another connection's lock before SQLITE_BUSY. Any duration
  /// converts without overflow; SQLite counts int milliseconds, so anything past about 24.8 days
  /// (hours::max() included) waits that maximum.
  saturating_ns busy_timeout = std::chrono::seconds(5);
  bool wal = true;                     ///< PRAGMA journal_mode = WAL
  std::string synchronous = "NORMAL";  ///< OFF, NORMAL, FULL or EXTRA
  bool create_if_missing = true;       ///< create the file and the tables
};

namespace detail {

struct db_closer {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct stmt_finalizer {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using stmt_ptr = std::unique_ptr<sqlite3_stmt, stmt_finalizer>;

inline bool valid_identifier(std::string_view s) noexcept {
  if (s.empty() || s.size() > 64) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

inline std::string code_name(int code) {
  const char* s = sqlite3_errstr(code);
  return "SQLITE(" + std::to_string(code) + "): " + (s ? s : "?");
}

/// Resets a statement (and clears its bindings) when it goes out of scope.
class stmt_use {
 public:
  explicit stmt_use(sqlite3_stmt* s) noexcept : s_(s) {}
  stmt_use(const stmt_use&) = delete;
  stmt_use& operator=(const stmt_use&) = delete;
  ~stmt_use() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  sqlite3_stmt* get() const noexcept { return s_; }

 private:
  sqlite3_stmt* s_;
};

/// A non-negative duration in whole milliseconds for sqlite3_busy_timeout, at most INT_MAX.
[[nodiscard]] constexpr int clamp_ms(std::chrono::nanoseconds d) noexcept {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();  // divides: no overflow
  return ms > std::numeric_limits<int>::max() ? std::numeric_limits<int>::max() : static_cast<int>(ms);
}

using db_ptr = std::unique_ptr<sqlite3, db_closer>;

/// The connection's words for result code `rc`.
inline store_error error_of(sqlite3* db, int rc) {
  return {code_name(rc), db ? sqlite3_errmsg(db) : std::string()};
}

/// Runs SQL without parameters; throws std::runtime_error with SQLite's message.
inline void exec(sqlite3* db, const std::string& sql) {
  char* msg = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
  if (rc != SQLITE_OK) {
    std::string m = msg ? msg : sqlite3_errstr(rc);
    sqlite3_free(msg);
    throw std::runtime_error("noclobber::sqlite: '" + sql + "' failed: " + m);
  }
}

/// Prepares a statement kept for the connection's life; throws std::runtime_error.
inline stmt_ptr prepare(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  const int rc = sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                    &s, nullptr);
  if (rc != SQLITE_OK) {
    throw std::runtime_error("noclobber::sqlite: cannot prepare '" + sql + "': " + sqlite3_errmsg(db));
  }
  return stmt_ptr(s);
}

/// Puts the database into WAL mode. Switching takes an exclusive lock and answers SQLITE_BUSY
/// at once (the busy handler is not consulted), so connections opened at the same moment on a
/// file not yet in WAL mode retry here for up to `busy_timeout`; a file already in WAL mode
/// needs no switch.
inline void enter_wal(sqlite3* db, std::chrono::nanoseconds busy_timeout) {
  const auto deadline =
      saturating_deadline<std::chrono::steady_clock>(std::chrono::steady_clock::now(), busy_timeout);
  for (;;) {
    {
      stmt_ptr mode = prepare(db, "PRAGMA journal_mode");
      if (sqlite3_step(mode.get()) == SQLITE_ROW) {
        const auto* m = sqlite3_column_text(mode.get(), 0);
        if (m != nullptr && sqlite3_stricmp(reinterpret_cast<const char*>(m), "wal") == 0) return;
      }
    }
    const int rc = sqlite3_exec(db, "PRAGMA journal_mode = WAL", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) return;
    if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) break;
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  exec(db, "PRAGMA journal_mode = WAL");  // once more, throwing SQLite's message
}

/// Opens one connection as `options` say (busy_timeout, WAL, synchronous; `table` is not read).
/// Throws std::invalid_argument for bad options, std::runtime_error when SQLite refuses.
inline db_ptr open_connection(const std::string& path, const store_options& options) {
  if (options.synchronous != "OFF" && options.synchronous != "NORMAL" && options.synchronous != "FULL" &&
      options.synchronous != "EXTRA") {
    throw std::invalid_argument("noclobber::sqlite: synchronous = '" + options.synchronous +
                                "' (expected OFF, NORMAL, FULL or EXTRA)");
  }
  if (options.busy_timeout.count() < 0) {
    throw std::invalid_argument("noclobber::sqlite: busy_timeout = " +
                                std::to_string(options.busy_timeout.count()) + " ns is negative");
  }
  sqlite3* raw = nullptr;
  const int flags =
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (options.create_if_missing ? SQLITE_OPEN_CREATE : 0);
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  db_ptr db(raw);
  if (rc != SQLITE_OK) {
    throw std::runtime_error("noclobber::sqlite: cannot open '" + path +
                             "': " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), clamp_ms(options.busy_timeout));
  if (options.wal) enter_wal(db.get(), options.busy_timeout);
  exec(db.get(), "PRAGMA synchronous = " + options.synchronous);
  return db;
}

/// BEGIN IMMEDIATE, COMMIT and ROLLBACK, prepared once per connection.
struct transaction_statements {
  stmt_ptr begin, commit, rollback;
  explicit transaction_statements(sqlite3* db)
      : begin(prepare(db, "BEGIN IMMEDIATE")),
        commit(prepare(db, "COMMIT")),
        rollback(prepare(db, "ROLLBACK")) {}

  void roll_back(sqlite3* db) noexcept {
    if (sqlite3_get_autocommit(db)) return;  // SQLite already rolled back
    stmt_use r(rollback.get());
    (void)sqlite3_step(r.get());
  }

  /// BEGIN IMMEDIATE (SQLite's write lock, so the snapshot never has to be upgraded); `body()`
  /// (returns write_result<T>); COMMIT when it applied, else ROLLBACK. A COMMIT that fails
  /// with anything but BUSY may have reached the file: indeterminate. Whatever `body` throws
  /// rolls back and propagates.
  template <class Body>
  auto run(sqlite3* db, Body&& body) -> decltype(body()) {
    using result_type = decltype(body());
    {
      stmt_use b(begin.get());
      const int rc = sqlite3_step(b.get());
      if (rc != SQLITE_DONE) return result_type{classify(rc, false), std::nullopt, error_of(db, rc)};
    }
    result_type result;
    try {
      result = body();
    } catch (...) {
      roll_back(db);
      throw;
    }
    if (!result.ok()) {
      roll_back(db);
      return result;
    }
    stmt_use c(commit.get());
    const int rc = sqlite3_step(c.get());
    if (rc == SQLITE_DONE) return result;
    // COMMIT failed. BUSY leaves the transaction open and nothing written; anything else may
    // or may not have reached the file.
    const write_status status = classify(rc, true);
    store_error e = error_of(db, rc);
    if (!sqlite3_get_autocommit(db)) roll_back(db);
    return result_type{status, std::nullopt, std::move(e)};
  }
};

}  // namespace detail

class store {
 public:
  using key_type = std::string;
  using value_type = std::string;
  using token_type = std::int64_t;
  using read_result_type = read_result<std::string, token_type>;
  using write_result_type = write_result<token_type>;

  /// Opens (creating when allowed) the database at `path`. Throws std::invalid_argument for bad
  /// options (naming the value) and std::runtime_error when SQLite refuses (with its message).
  explicit store(const std::string& path, store_options options = {}) : options_(std::move(options)) {
    if (!detail::valid_identifier(options_.table)) {
      throw std::invalid_argument("noclobber::sqlite: table name '" + options_.table +
                                  "' is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 64)");
    }
    db_ = detail::open_connection(path, options_);
    const std::string& t = options_.table;
    if (options_.create_if_missing) {
      exec("CREATE TABLE IF NOT EXISTS " + t +
           " (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID");
      exec("CREATE TABLE IF NOT EXISTS " + t +
           "_version (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL)");
      exec("INSERT OR IGNORE INTO " + t + "_version (id, last) VALUES (1, 0)");
    }
    read_ = prepare("SELECT value, version FROM " + t + " WHERE key = ?1");
    bump_ = prepare("UPDATE " + t + "_version SET last = last + 1 WHERE id = 1 RETURNING last");
    update_ = prepare("UPDATE " + t +
                      " SET value = ?2, version = ?3 WHERE key = ?1 AND version = ?4 RETURNING version");
    insert_ = prepare("INSERT INTO " + t +
                      " (key, value, version) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO NOTHING " +
                      "RETURNING version");
    upsert_ = prepare("INSERT INTO " + t +
                      " (key, value, version) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO UPDATE " +
                      "SET value = excluded.value, version = excluded.version RETURNING version");
    erase_ = prepare("DELETE FROM " + t + " WHERE key = ?1 AND version = ?2 RETURNING version");
    exists_ = prepare("SELECT 1 FROM " + t + " WHERE key = ?1");
    tx_ = std::make_unique<detail::transaction_statements>(db_.get());
  }

  /// Movable (a moved-from store may only be destroyed or assigned to); not copyable.
  store(store&&) noexcept = default;
  store& operator=(store&&) noexcept = default;

  /// The underlying connection, for your own SQL on the same thread.
  [[nodiscard]] sqlite3* handle() const noexcept { return db_.get(); }
  [[nodiscard]] const store_options& options() const noexcept { return options_; }

  [[nodiscard]] read_result_type read(const std::string& key) {
    detail::stmt_use s(read_.get());
    bind_text(s.get(), 1, key);
    const int rc = sqlite3_step(s.get());
    if (rc == SQLITE_ROW) {
      const auto* data = static_cast<const char*>(sqlite3_column_blob(s.get(), 0));
      const int size = sqlite3_column_bytes(s.get(), 0);
      return read_result_type::make_found(std::string(data ? data : "", static_cast<std::size_t>(size)),
                                          sqlite3_column_int64(s.get(), 1));
    }
    if (rc == SQLITE_DONE) return read_result_type::make_absent();
    const write_status w = classify(rc, false);
    return read_result_type::make_failed(w == write_status::transient || w == write_status::transient_restart
                                             ? read_status::transient
                                             : read_status::permanent,
                                         error(rc));
  }

  [[nodiscard]] write_result_type write_if_match(const std::string& key, const token_type& token,
                                                 const std::string& value) {
    return in_transaction([&](token_type next) -> write_result_type {
      detail::stmt_use s(update_.get());
      bind_text(s.get(), 1, key);
      bind_blob(s.get(), 2, value);
      sqlite3_bind_int64(s.get(), 3, next);
      sqlite3_bind_int64(s.get(), 4, token);
      const int rc = sqlite3_step(s.get());
      if (rc == SQLITE_ROW) return write_result_type::make_applied(next);
      if (rc != SQLITE_DONE) return write_result_type::make_failed(classify(rc, false), error(rc));
      return key_exists(key) ? write_result_type::make_conflict() : write_result_type::make_absent();
    });
  }

  [[nodiscard]] write_result_type create_if_absent(const std::string& key, const std::string& value) {
    return in_transaction([&](token_type next) -> write_result_type {
      detail::stmt_use s(insert_.get());
      bind_text(s.get(), 1, key);
      bind_blob(s.get(), 2, value);
      sqlite3_bind_int64(s.get(), 3, next);
      const int rc = sqlite3_step(s.get());
      if (rc == SQLITE_ROW) return write_result_type::make_applied(next);
      if (rc == SQLITE_DONE) return write_result_type::make_exists();
      return write_result_type::make_failed(classify(rc, false), error(rc));
    });
  }

  /// The blind UPSERT. Only the naive negative control should call it.
  [[nodiscard]] write_result_type overwrite(const std::string& key, const std::string& value) {
    return in_transaction([&](token_type next) -> write_result_type {
      detail::stmt_use s(upsert_.get());
      bind_text(s.get(), 1, key);
      bind_blob(s.get(), 2, value);
      sqlite3_bind_int64(s.get(), 3, next);
      const int rc = sqlite3_step(s.get());
      if (rc == SQLITE_ROW) return write_result_type::make_applied(next);
      return write_result_type::make_failed(classify(rc, false), error(rc));
    });
  }

  [[nodiscard]] write_result_type erase_if_match(const std::string& key, const token_type& token) {
    return in_transaction([&](token_type) -> write_result_type {
      detail::stmt_use s(erase_.get());
      bind_text(s.get(), 1, key);
      sqlite3_bind_int64(s.get(), 2, token);
      const int rc = sqlite3_step(s.get());
      if (rc == SQLITE_ROW) return write_result_type::make_applied();
      if (rc != SQLITE_DONE) return write_result_type::make_failed(classify(rc, false), error(rc));
      return key_exists(key) ? write_result_type::make_conflict() : write_result_type::make_absent();
    });
  }

 private:
  // In one IMMEDIATE transaction: draw the next version, then body(next).
  template <class Body>
  write_result_type in_transaction(Body&& body) {
    return tx_->run(db_.get(), [&]() -> write_result_type {
      token_type next = 0;
      {
        detail::stmt_use s(bump_.get());
        const int rc = sqlite3_step(s.get());
        if (rc != SQLITE_ROW) return write_result_type::make_failed(classify(rc, false), error(rc));
        next = sqlite3_column_int64(s.get(), 0);
      }
      return body(next);
    });
  }

  bool key_exists(const std::string& key) {
    detail::stmt_use s(exists_.get());
    bind_text(s.get(), 1, key);
    return sqlite3_step(s.get()) == SQLITE_ROW;
  }

  store_error error(int rc) const { return detail::error_of(db_.get(), rc); }

  static void bind_text(sqlite3_stmt* s, int i, const std::string& v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }
  static void bind_blob(sqlite3_stmt* s, int i, const std::string& v) {
    sqlite3_bind_blob(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }

  void exec(const std::string& sql) { detail::exec(db_.get(), sql); }
  detail::stmt_ptr prepare(const std::string& sql) { return detail::prepare(db_.get(), sql); }

  store_options options_;
  detail::db_ptr db_;  // declared before the statements: outlives them
  detail::stmt_ptr read_, bump_, update_, insert_, upsert_, erase_, exists_;
  std::unique_ptr<detail::transaction_statements> tx_;
};

static_assert(erasable_writer<store>);
static_assert(overwritable_store<store>);

/// The name before 0.2, kept for one release.
using version_store [[deprecated("use noclobber::sqlite::store")]] = store;

}  // namespace noclobber::sqlite
