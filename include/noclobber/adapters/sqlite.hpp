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
      return write_status::exists;
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
    if (options_.synchronous != "OFF" && options_.synchronous != "NORMAL" && options_.synchronous != "FULL" &&
        options_.synchronous != "EXTRA") {
      throw std::invalid_argument("noclobber::sqlite: synchronous = '" + options_.synchronous +
                                  "' (expected OFF, NORMAL, FULL or EXTRA)");
    }
    if (options_.busy_timeout.count() < 0) {
      throw std::invalid_argument("noclobber::sqlite: busy_timeout = " +
                                  std::to_string(options_.busy_timeout.count()) + " ns is negative");
    }
    sqlite3* raw = nullptr;
    const int flags =
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (options_.create_if_missing ? SQLITE_OPEN_CREATE : 0);
    const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
    db_.reset(raw);
    if (rc != SQLITE_OK) {
      throw std::runtime_error("noclobber::sqlite: cannot open '" + path +
                               "': " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
    }
    sqlite3_extended_result_codes(db_.get(), 1);
    sqlite3_busy_timeout(db_.get(), detail::clamp_ms(options_.busy_timeout));
    if (options_.wal) exec("PRAGMA journal_mode = WAL");
    exec("PRAGMA synchronous = " + options_.synchronous);
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
    begin_ = prepare("BEGIN IMMEDIATE");
    commit_ = prepare("COMMIT");
    rollback_ = prepare("ROLLBACK");
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
  // BEGIN IMMEDIATE; draw the next version; body(next); COMMIT (ROLLBACK unless applied).
  template <class Body>
  write_result_type in_transaction(Body&& body) {
    {
      detail::stmt_use b(begin_.get());
      const int rc = sqlite3_step(b.get());
      if (rc != SQLITE_DONE) return write_result_type::make_failed(classify(rc, false), error(rc));
    }
    write_result_type result;
    try {
      token_type next = 0;
      {
        detail::stmt_use s(bump_.get());
        const int rc = sqlite3_step(s.get());
        if (rc != SQLITE_ROW) {
          result = write_result_type::make_failed(classify(rc, false), error(rc));
        } else {
          next = sqlite3_column_int64(s.get(), 0);
        }
      }
      if (next != 0) result = body(next);
    } catch (...) {
      rollback();
      throw;
    }
    if (!result.ok()) {
      rollback();
      return result;
    }
    detail::stmt_use c(commit_.get());
    const int rc = sqlite3_step(c.get());
    if (rc == SQLITE_DONE) return result;
    // COMMIT failed. BUSY leaves the transaction open and nothing written; anything else may
    // or may not have reached the file.
    const write_status status = classify(rc, true);
    store_error e = error(rc);
    if (!sqlite3_get_autocommit(db_.get())) rollback();
    return write_result_type::make_failed(status, std::move(e));
  }

  void rollback() noexcept {
    if (sqlite3_get_autocommit(db_.get())) return;  // SQLite already rolled back
    detail::stmt_use r(rollback_.get());
    (void)sqlite3_step(r.get());
  }

  bool key_exists(const std::string& key) {
    detail::stmt_use s(exists_.get());
    bind_text(s.get(), 1, key);
    return sqlite3_step(s.get()) == SQLITE_ROW;
  }

  store_error error(int rc) const {
    return {detail::code_name(rc), db_ ? sqlite3_errmsg(db_.get()) : std::string()};
  }

  static void bind_text(sqlite3_stmt* s, int i, const std::string& v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }
  static void bind_blob(sqlite3_stmt* s, int i, const std::string& v) {
    sqlite3_bind_blob(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }

  void exec(const std::string& sql) {
    char* msg = nullptr;
    const int rc = sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &msg);
    if (rc != SQLITE_OK) {
      std::string m = msg ? msg : sqlite3_errstr(rc);
      sqlite3_free(msg);
      throw std::runtime_error("noclobber::sqlite: '" + sql + "' failed: " + m);
    }
  }

  detail::stmt_ptr prepare(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    const int rc = sqlite3_prepare_v3(db_.get(), sql.c_str(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) {
      throw std::runtime_error("noclobber::sqlite: cannot prepare '" + sql +
                               "': " + sqlite3_errmsg(db_.get()));
    }
    return detail::stmt_ptr(s);
  }

  store_options options_;
  std::unique_ptr<sqlite3, detail::db_closer> db_;  // declared before the statements: outlives them
  detail::stmt_ptr read_, bump_, update_, insert_, upsert_, erase_, exists_, begin_, commit_, rollback_;
};

static_assert(erasable_writer<store>);
static_assert(overwritable_store<store>);

/// The name before 0.2, kept for one release.
using version_store [[deprecated("use noclobber::sqlite::store")]] = store;

}  // namespace noclobber::sqlite
