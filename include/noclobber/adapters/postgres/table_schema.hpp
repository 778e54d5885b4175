// noclobber/adapters/postgres/table_schema.hpp — what an existing PostgreSQL table looks like,
// and whether a table_spec fits it.
//
// Overview
// --------
// `postgres::check_table(conn, spec)` reads the catalog (pg_class, pg_attribute, pg_type,
// pg_index; the table is found by to_regclass of its quoted name, passed as a parameter) and
// throws std::invalid_argument naming the first misfit:
//
//   * no such table (a view or another kind of relation is refused too);
//   * no such column (key, value, version or guard column);
//   * a column type that does not fit the member: integers need int2/int4/int8, booleans
//     boolean, reals float4/float8/numeric, text a string type (text, varchar, char, name…),
//     JSON members json, jsonb or a string type, blobs bytea;
//   * key columns that are not exactly the primary key or the columns of a UNIQUE index without
//     a predicate or expressions;
//   * a version column that is not int2/int4/int8;
//   * compare_values(), an SQLite token (PostgreSQL has xmin, which needs no schema change).
//
// It returns each mapped column's type as PostgreSQL prints it (format_type), which the table
// store uses to cast its parameters. `quote_identifier` quotes a name with PQescapeIdentifier.
//
// Thread safety: functions of one connection, which one thread uses at a time.
#pragma once

#include <libpq-fe.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "noclobber/adapters/postgres.hpp"
#include "noclobber/adapters/table_spec.hpp"

namespace noclobber::postgres {

/// `name` as a quoted identifier, by PQescapeIdentifier. Throws std::invalid_argument when libpq
/// refuses it (a NUL byte, invalid encoding).
[[nodiscard]] inline std::string quote_identifier(connection& c, std::string_view name) {
  if (name.find('\0') != std::string_view::npos) {
    throw std::invalid_argument("noclobber::postgres: an identifier contains a NUL byte");
  }
  std::unique_ptr<char, decltype(&PQfreemem)> q(
      PQescapeIdentifier(c.native_handle(), name.data(), name.size()), &PQfreemem);
  if (!q) {
    throw std::invalid_argument("noclobber::postgres: cannot quote identifier '" + std::string(name) +
                                "': " + PQerrorMessage(c.native_handle()));
  }
  return std::string(q.get());
}

/// A column of an existing table, as the catalog describes it.
struct pg_column {
  int number = 0;         // attnum
  std::string type;       // format_type: "jsonb", "character varying(40)", "bigint"
  std::string type_name;  // pg_type.typname: "jsonb", "varchar", "int8"
  char category = 'X';    // pg_type.typcategory: 'S' string, 'N' numeric, 'B' boolean…
};

/// Whether a column of this type holds a member of kind `k` without conversion.
[[nodiscard]] inline bool fits(field_kind k, const pg_column& c) {
  const std::string& t = c.type_name;
  switch (k) {
    case field_kind::integer:
      return t == "int2" || t == "int4" || t == "int8";
    case field_kind::boolean:
      return t == "bool";
    case field_kind::real:
      return t == "float4" || t == "float8" || t == "numeric";
    case field_kind::text:
      return c.category == 'S';
    case field_kind::json:
      return t == "json" || t == "jsonb" || c.category == 'S';
    case field_kind::blob:
      return t == "bytea";
  }
  return false;
}

namespace detail {

[[noreturn]] inline void misfit(const std::string& quoted_table, const std::string& what) {
  throw std::invalid_argument("noclobber::postgres::table_store: table " + quoted_table + ": " + what);
}

inline exec_result catalog_query(connection& c, const char* sql, const std::string& quoted_table) {
  exec_result r = c.exec(sql, {param{quoted_table}}, false);
  if (!r.ok()) {
    throw std::runtime_error("noclobber::postgres::table_store: reading the catalog failed: " +
                             r.error.message);
  }
  return r;
}

}  // namespace detail

/// Checks `spec` against the table; returns the mapped columns by name. Throws std::invalid_argument
/// for a misfit, std::runtime_error when the catalog cannot be read.
template <class Value, class Key>
std::map<std::string, pg_column> check_table(connection& c, const table_spec<Value, Key>& spec) {
  spec.check("noclobber::postgres::table_store");
  const std::string table = quote_identifier(c, spec.table());
  auto fail = [&](const std::string& what) { detail::misfit(table, what); };
  if (spec.token() == table_token_kind::compare_values) {
    fail("compare_values() is an SQLite token; on PostgreSQL use version(column) or xmin()");
  }
  exec_result kind =
      detail::catalog_query(c, "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", table);
  if (kind.rows() == 0 || kind.is_null(0, 0)) {
    throw std::invalid_argument("noclobber::postgres::table_store: no such table: " + table);
  }
  const std::string relkind = kind.bytes(0, 0);
  if (relkind != "r" && relkind != "p") fail("is not a table (relkind '" + relkind + "')");

  std::map<std::string, pg_column> all;
  exec_result cols = detail::catalog_query(
      c,
      "SELECT a.attnum::text, a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text, "
      "t.typcategory::text FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = "
      "to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
      table);
  for (int i = 0; i < cols.rows(); ++i) {
    const std::string category = cols.bytes(i, 4);
    all[cols.bytes(i, 1)] = {std::stoi(cols.bytes(i, 0)), cols.bytes(i, 2), cols.bytes(i, 3),
                             category.empty() ? 'X' : category[0]};
  }
  std::map<std::string, pg_column> used;
  auto column = [&](const std::string& name, std::string_view role) -> const pg_column& {
    auto it = all.find(name);
    if (it == all.end())
      fail("no such column " + quote_identifier(c, name) + " (the " + std::string(role) + ")");
    used[name] = it->second;
    return it->second;
  };
  auto check_fields = [&](const auto& mapping, std::string_view role) {
    for (const auto& f : mapping.fields()) {
      const pg_column& col = column(f.name, role);
      if (!fits(f.kind, col)) {
        fail("column " + quote_identifier(c, f.name) + " is of type " + col.type + ", which does not fit a " +
             std::string(to_string(f.kind)) + " member");
      }
    }
  };
  check_fields(spec.keys(), "key");
  check_fields(spec.values(), "value");

  std::vector<int> key_numbers;
  for (const auto& f : spec.keys().fields()) key_numbers.push_back(used[f.name].number);
  std::sort(key_numbers.begin(), key_numbers.end());
  exec_result idx =
      detail::catalog_query(c,
                            "SELECT indkey::text FROM pg_index WHERE indrelid = to_regclass($1) AND "
                            "indisunique AND indpred IS NULL AND indexprs IS NULL",
                            table);
  bool unique = false;
  for (int i = 0; i < idx.rows() && !unique; ++i) {
    std::vector<int> numbers;
    const std::string text = idx.bytes(i, 0);
    std::size_t pos = 0;
    while (pos < text.size()) {
      const std::size_t end = std::min(text.find(' ', pos), text.size());
      if (end > pos) numbers.push_back(std::stoi(text.substr(pos, end - pos)));
      pos = end + 1;
    }
    std::sort(numbers.begin(), numbers.end());
    unique = numbers == key_numbers;
  }
  if (!unique) {
    std::string list;
    for (const auto& f : spec.keys().fields())
      list += (list.empty() ? "" : ", ") + quote_identifier(c, f.name);
    fail("the key (" + list +
         ") is neither the primary key nor a UNIQUE index: one key could name several rows");
  }
  if (spec.token() == table_token_kind::version_column) {
    const pg_column& v = column(spec.version_column(), "version column");
    if (!fits(field_kind::integer, v)) {
      fail("the version column " + quote_identifier(c, spec.version_column()) + " is of type " + v.type +
           "; a version column must be an integer (smallint, integer, bigint)");
    }
  }
  for (const auto& g : spec.guards()) (void)column(g.column, "guard column");
  for (const auto& cap : spec.caps()) {
    const auto* f = spec.values().find(cap.column);
    if (f->kind != field_kind::text && f->kind != field_kind::blob && f->kind != field_kind::json) {
      fail("max_bytes on " + quote_identifier(c, cap.column) + ", a " + std::string(to_string(f->kind)) +
           " column: caps are for text, blob and json columns");
    }
  }
  return used;
}

}  // namespace noclobber::postgres
