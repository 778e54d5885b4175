// noclobber/adapters/sqlite/table_schema.hpp — what an existing SQLite table looks like, and
// whether a table_spec fits it.
//
// Overview
// --------
// `sqlite::check_table(db, spec)` reads the table's schema (pragma_table_info, pragma_index_list,
// pragma_index_info; the table name is a bound parameter, never spliced into SQL) and throws
// std::invalid_argument naming the first thing that does not fit:
//
//   * no such table (or a view);
//   * no such column (key, value, version, guard or cap column);
//   * a column whose declared type's affinity does not fit the member (SQLite's affinity rules,
//     https://sqlite.org/datatype3.html §3.1): integers and booleans need INTEGER or NUMERIC
//     affinity (or no declared type), reals REAL or NUMERIC, text TEXT (or none: a numeric
//     affinity would turn "007" into 7), blobs BLOB or TEXT, JSON text TEXT, none, or a declared
//     type containing "JSON";
//   * key columns that are not exactly the primary key or a (non-partial) UNIQUE index;
//   * a version column without INTEGER affinity;
//   * a token SQLite has no use for (xmin is PostgreSQL's);
//   * a cap on a column that is not text, blob or json.
//
// `quote_identifier` quotes a name with sqlite3_mprintf("%w"); every identifier a table store
// writes into SQL goes through it.
//
// Thread safety: functions of one connection, which one thread uses at a time.
#pragma once

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "noclobber/adapters/sqlite.hpp"
#include "noclobber/adapters/table_spec.hpp"

namespace noclobber::sqlite {

/// "name" with embedded quotes doubled, by sqlite3_mprintf("%w"). Throws for a name with a NUL.
[[nodiscard]] inline std::string quote_identifier(std::string_view name) {
  if (name.find('\0') != std::string_view::npos) {
    throw std::invalid_argument("noclobber::sqlite: an identifier contains a NUL byte");
  }
  const std::string s(name);
  std::unique_ptr<char, decltype(&sqlite3_free)> q(sqlite3_mprintf("\"%w\"", s.c_str()), &sqlite3_free);
  if (!q) throw std::bad_alloc();
  return std::string(q.get());
}

enum class affinity : unsigned char { integer, text, blob, real, numeric };

/// SQLite's rules for the affinity of a declared column type.
[[nodiscard]] inline affinity affinity_of(std::string_view declared) {
  std::string t(declared);
  std::transform(t.begin(), t.end(), t.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  auto has = [&t](std::string_view w) { return t.find(w) != std::string::npos; };
  if (has("INT")) return affinity::integer;
  if (has("CHAR") || has("CLOB") || has("TEXT")) return affinity::text;
  if (has("BLOB") || t.empty()) return affinity::blob;
  if (has("REAL") || has("FLOA") || has("DOUB")) return affinity::real;
  return affinity::numeric;
}

[[nodiscard]] inline std::string_view to_string(affinity a) noexcept {
  switch (a) {
    case affinity::integer:
      return "INTEGER";
    case affinity::text:
      return "TEXT";
    case affinity::blob:
      return "BLOB";
    case affinity::real:
      return "REAL";
    case affinity::numeric:
      return "NUMERIC";
  }
  return "?";
}

/// Whether a column declared `declared` can hold a member of kind `k` without conversion.
[[nodiscard]] inline bool fits(field_kind k, std::string_view declared) {
  const affinity a = affinity_of(declared);
  switch (k) {
    case field_kind::integer:
    case field_kind::boolean:
      return a == affinity::integer || a == affinity::numeric || a == affinity::blob;
    case field_kind::real:
      return a == affinity::real || a == affinity::numeric || a == affinity::blob;
    case field_kind::text:
      return a == affinity::text || a == affinity::blob;
    case field_kind::blob:
      return a == affinity::blob || a == affinity::text;
    case field_kind::json: {
      std::string t(declared);
      std::transform(t.begin(), t.end(), t.begin(),
                     [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
      return a == affinity::text || a == affinity::blob || t.find("JSON") != std::string::npos;
    }
  }
  return false;
}

struct column_info {
  std::string name;
  std::string declared;  // the declared type, as written in CREATE TABLE
  bool not_null = false;
  int pk = 0;  // position in the primary key (1-based), 0 when not part of it
};

namespace detail {

inline bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && sqlite3_strnicmp(a.data(), b.data(), static_cast<int>(a.size())) == 0;
}

// Runs `sql` with ?1 = `arg`, calling row(stmt) for each row; throws on an error.
template <class Row>
void each_row(sqlite3* db, const std::string& sql, const std::string& arg, Row&& row) {
  stmt_ptr s = prepare(db, sql);
  sqlite3_bind_text(s.get(), 1, arg.data(), static_cast<int>(arg.size()), SQLITE_TRANSIENT);
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) row(s.get());
  if (rc != SQLITE_DONE) {
    throw std::runtime_error("noclobber::sqlite: reading the schema failed: " +
                             std::string(sqlite3_errmsg(db)));
  }
}

[[noreturn]] inline void misfit(const std::string& table, const std::string& what) {
  throw std::invalid_argument("noclobber::sqlite::table_store: table " + quote_identifier(table) + ": " +
                              what);
}

inline std::string text_column(sqlite3_stmt* s, int i) {
  const auto* p = sqlite3_column_text(s, i);
  return p ? std::string(reinterpret_cast<const char*>(p),
                         static_cast<std::size_t>(sqlite3_column_bytes(s, i)))
           : std::string();
}

}  // namespace detail

/// The columns of `table` (empty when there is no such table).
[[nodiscard]] inline std::vector<column_info> table_columns(sqlite3* db, const std::string& table) {
  std::vector<column_info> out;
  detail::each_row(db, "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)", table,
                   [&](sqlite3_stmt* s) {
                     out.push_back({detail::text_column(s, 0), detail::text_column(s, 1),
                                    sqlite3_column_int(s, 2) != 0, sqlite3_column_int(s, 3)});
                   });
  return out;
}

/// Whether `columns` are exactly the primary key or the columns of a non-partial UNIQUE index.
[[nodiscard]] inline bool is_unique_key(sqlite3* db, const std::string& table,
                                        const std::vector<column_info>& all,
                                        const std::vector<std::string>& columns) {
  auto same_set = [&](const std::vector<std::string>& names) {
    if (names.size() != columns.size()) return false;
    return std::all_of(columns.begin(), columns.end(), [&](const std::string& c) {
      return std::any_of(names.begin(), names.end(),
                         [&](const std::string& n) { return detail::same_name(n, c); });
    });
  };
  std::vector<std::string> pk;
  for (const auto& c : all) {
    if (c.pk > 0) pk.push_back(c.name);
  }
  if (same_set(pk)) return true;
  std::vector<std::string> unique_indexes;
  detail::each_row(db, "SELECT name FROM pragma_index_list(?1) WHERE \"unique\" = 1 AND partial = 0", table,
                   [&](sqlite3_stmt* s) { unique_indexes.push_back(detail::text_column(s, 0)); });
  for (const auto& index : unique_indexes) {
    std::vector<std::string> names;
    bool expression = false;
    detail::each_row(db, "SELECT name FROM pragma_index_info(?1)", index, [&](sqlite3_stmt* s) {
      if (sqlite3_column_type(s, 0) == SQLITE_NULL) expression = true;
      names.push_back(detail::text_column(s, 0));
    });
    if (!expression && same_set(names)) return true;
  }
  return false;
}

/// Checks `spec` against the table in `db`; throws std::invalid_argument naming the misfit.
template <class Value, class Key>
void check_table(sqlite3* db, const table_spec<Value, Key>& spec) {
  constexpr std::string_view who = "noclobber::sqlite::table_store";
  spec.check(who);
  const std::string& table = spec.table();
  auto fail = [&](const std::string& what) { detail::misfit(table, what); };
  if (spec.token() == table_token_kind::xmin) {
    fail("xmin() is a PostgreSQL token; on SQLite use version(column) or compare_values()");
  }
  std::string type;
  detail::each_row(db, "SELECT type FROM sqlite_schema WHERE name = ?1 COLLATE NOCASE", table,
                   [&](sqlite3_stmt* s) { type = detail::text_column(s, 0); });
  if (type.empty())
    throw std::invalid_argument(std::string(who) + ": no such table: " + quote_identifier(table));
  if (type != "table") fail("is a " + type + ", not a table");
  const std::vector<column_info> columns = table_columns(db, table);
  auto column = [&](const std::string& name, std::string_view role) -> const column_info& {
    for (const auto& c : columns) {
      if (detail::same_name(c.name, name)) return c;
    }
    detail::misfit(table, "no such column " + quote_identifier(name) + " (the " + std::string(role) + ")");
  };
  auto check_fields = [&](const auto& mapping, std::string_view role) {
    for (const auto& f : mapping.fields()) {
      const column_info& c = column(f.name, role);
      if (!fits(f.kind, c.declared)) {
        fail("column " + quote_identifier(f.name) + " is declared '" + c.declared + "' (" +
             std::string(to_string(affinity_of(c.declared))) + " affinity), which does not fit a " +
             std::string(to_string(f.kind)) + " member");
      }
    }
  };
  check_fields(spec.keys(), "key");
  check_fields(spec.values(), "value");
  std::vector<std::string> key_names;
  for (const auto& f : spec.keys().fields()) key_names.push_back(f.name);
  if (!is_unique_key(db, table, columns, key_names)) {
    std::string list;
    for (const auto& k : key_names) list += (list.empty() ? "" : ", ") + quote_identifier(k);
    fail("the key (" + list +
         ") is neither the primary key nor a UNIQUE index: one key could name several rows");
  }
  if (spec.token() == table_token_kind::version_column) {
    const column_info& v = column(spec.version_column(), "version column");
    if (affinity_of(v.declared) != affinity::integer) {
      fail("the version column " + quote_identifier(v.name) + " is declared '" + v.declared +
           "'; a version column must be an INTEGER");
    }
  }
  for (const auto& g : spec.guards()) (void)column(g.column, "guard column");
  for (const auto& cap : spec.caps()) {
    const auto* f = spec.values().find(cap.column);
    if (f->kind != field_kind::text && f->kind != field_kind::blob && f->kind != field_kind::json) {
      fail("max_bytes on " + quote_identifier(cap.column) + ", a " + std::string(to_string(f->kind)) +
           " column: caps are for text, blob and json columns");
    }
  }
}

}  // namespace noclobber::sqlite
