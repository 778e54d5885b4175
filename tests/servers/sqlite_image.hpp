// A SQLite database kept as one blob (the SQLite file kept as one object-store object,
// docs/scenarios.md): opened from the downloaded image in memory, changed, serialised back.
// Shared by tests/servers/test_server_object_store_file.cpp and test_server_s3_object_store_file.cpp.
#pragma once

#include <sqlite3.h>
#include <noclobber/read_modify_write.hpp>

#include <cstring>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>

namespace nc_sqlite {

// Catch2 assertions are not thread-safe: code that runs on writer threads throws instead.
inline void ensure(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("sqlite: " + what);
}

struct sqlite_db {
  sqlite3* db = nullptr;
  explicit sqlite_db(const std::optional<std::string>& image) {
    ensure(sqlite3_open(":memory:", &db) == SQLITE_OK, "open");
    if (image && !image->empty()) {
      auto* buf = static_cast<unsigned char*>(sqlite3_malloc64(image->size()));
      std::memcpy(buf, image->data(), image->size());
      const int rc = sqlite3_deserialize(db, "main", buf, static_cast<sqlite3_int64>(image->size()),
                                         static_cast<sqlite3_int64>(image->size()),
                                         SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE);
      ensure(rc == SQLITE_OK, "deserialize");
    }
    exec("CREATE TABLE IF NOT EXISTS assets (name TEXT PRIMARY KEY, size INTEGER)");
  }
  ~sqlite_db() { sqlite3_close(db); }
  sqlite_db(const sqlite_db&) = delete;
  sqlite_db& operator=(const sqlite_db&) = delete;
  void exec(const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    const std::string msg = sql + ": " + (err ? err : "");
    sqlite3_free(err);
    ensure(rc == SQLITE_OK, msg);
  }
  std::string image() {
    sqlite3_int64 size = 0;
    unsigned char* p = sqlite3_serialize(db, "main", &size, 0);
    ensure(p != nullptr, "serialize");
    std::string out(reinterpret_cast<char*>(p), static_cast<std::size_t>(size));
    sqlite3_free(p);
    return out;
  }
  bool has(const std::string& name) { return names().count(name) > 0; }
  std::set<std::string> names() {
    std::set<std::string> out;
    sqlite3_stmt* st = nullptr;
    ensure(sqlite3_prepare_v2(db, "SELECT name FROM assets", -1, &st, nullptr) == SQLITE_OK, "prepare");
    while (sqlite3_step(st) == SQLITE_ROW)
      out.insert(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
    return out;
  }
};

// store(): the location DB with one more asset row. Each call writes a new image (unique rows).
inline auto add_asset(const std::string& name) {
  return [name](const std::optional<std::string>& image) -> noclobber::update<std::string> {
    sqlite_db db(image);
    db.exec("INSERT INTO assets VALUES ('" + name + "', " + std::to_string(name.size()) + ")");
    return db.image();
  };
}

}  // namespace nc_sqlite
