// noclobber/adapters/sqlite/table_statements.hpp — the SQL of sqlite::table_store: statement
// text from a table_spec (every identifier quoted by quote_identifier), the numbering of
// parameters, tokens from rows, the change report of a patch, and why a write matched no row.
//
// Parameters are numbered (?N) once per store and shared by a write and the probe that may
// follow it, so one set of bound values serves both:
//   ?1 … ?K          key columns
//   ?K+1 … ?K+V      value columns (writes)
//   then the token   1 (a version) or V (compare_values: the values as read)
//   then the guards  one per guard
//   then a patch's own values
//
// Thread safety: a table_sql is immutable after construction; the functions taking a
// statement are for the one thread that uses the connection.
#pragma once

#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "noclobber/adapters/record_mapping.hpp"
#include "noclobber/adapters/sqlite.hpp"
#include "noclobber/adapters/sqlite/table_schema.hpp"
#include "noclobber/adapters/table_patch.hpp"
#include "noclobber/adapters/table_spec.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::sqlite::detail {

/// Values for ?1 … ?N, bound by reference (SQLITE_STATIC): keep it alive while the statement runs.
class bound_params {
 public:
  void put(int index, field_value v) {
    if (static_cast<std::size_t>(index) > values_.size()) values_.resize(static_cast<std::size_t>(index));
    values_[static_cast<std::size_t>(index - 1)] = std::move(v);
  }
  [[nodiscard]] const field_value& at(int index) const {
    return values_.at(static_cast<std::size_t>(index - 1));
  }
  [[nodiscard]] int size() const noexcept { return static_cast<int>(values_.size()); }

  /// Binds every parameter the statement has (it may use fewer than were put).
  void bind_to(sqlite3_stmt* s) const {
    const int n = std::min(sqlite3_bind_parameter_count(s), size());
    for (int i = 1; i <= n; ++i) {
      const field_value& v = values_[static_cast<std::size_t>(i - 1)];
      switch (v.kind) {
        case field_value::type::null:
          sqlite3_bind_null(s, i);
          break;
        case field_value::type::integer:
          sqlite3_bind_int64(s, i, v.integer);
          break;
        case field_value::type::real:
          sqlite3_bind_double(s, i, v.real);
          break;
        case field_value::type::text:
          sqlite3_bind_text(s, i, v.bytes.data(), static_cast<int>(v.bytes.size()), SQLITE_STATIC);
          break;
        case field_value::type::blob:
          if (v.bytes.empty()) {
            sqlite3_bind_zeroblob(s, i, 0);  // a null pointer would bind NULL
          } else {
            sqlite3_bind_blob(s, i, v.bytes.data(), static_cast<int>(v.bytes.size()), SQLITE_STATIC);
          }
          break;
      }
    }
  }

 private:
  std::vector<field_value> values_;
};

/// Column i of the current row, exactly as stored.
[[nodiscard]] inline field_value column_value(sqlite3_stmt* s, int i) {
  switch (sqlite3_column_type(s, i)) {
    case SQLITE_INTEGER:
      return field_value::of_integer(sqlite3_column_int64(s, i));
    case SQLITE_FLOAT:
      return field_value::of_real(sqlite3_column_double(s, i));
    case SQLITE_TEXT:
      return field_value::of_text(text_column(s, i));
    case SQLITE_BLOB: {
      const auto* p = static_cast<const char*>(sqlite3_column_blob(s, i));
      return field_value::of_blob(
          std::string(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(s, i))));
    }
    default:
      return field_value::null_value();
  }
}

/// Columns first … first + n − 1 of the current row.
[[nodiscard]] inline std::vector<field_value> row_values(sqlite3_stmt* s, int first, std::size_t n) {
  std::vector<field_value> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) out.push_back(column_value(s, first + static_cast<int>(i)));
  return out;
}

/// A column a probe adds after the token and guards (or, for `param_size`, a check made here).
struct probe_extra {
  enum class what : unsigned char { object_check, sql_size, param_size } kind = what::param_size;
  std::string column;
  std::size_t cap = 0;
  std::string sql;  // object_check, sql_size: the expression
  int param = 0;    // param_size: the parameter holding the new value
};

/// The statements of one patch shape (which columns it sets and merges).
struct patch_plan {
  std::string update_sql, probe_sql, sets_report_sql;
  std::vector<std::string> merge_report_sql;
  std::vector<std::string> set_columns, merge_columns;
  std::vector<probe_extra> extras;
};

struct patch_statements {
  std::string update_sql;
  stmt_ptr update, probe, sets_report;
  std::vector<stmt_ptr> merge_reports;
};

inline patch_statements prepare_patch(sqlite3* db, const patch_plan& plan) {
  patch_statements st;
  st.update_sql = plan.update_sql;
  st.update = prepare(db, plan.update_sql);
  st.probe = prepare(db, plan.probe_sql);
  if (!plan.sets_report_sql.empty()) st.sets_report = prepare(db, plan.sets_report_sql);
  for (const auto& sql : plan.merge_report_sql) st.merge_reports.push_back(prepare(db, sql));
  return st;
}

/// Fills `report` from the row as it is now (inside the patch's transaction). SQLITE_OK or an error.
inline int read_report(patch_statements& st, const patch_plan& plan, const bound_params& params,
                       change_report& report) {
  if (st.sets_report) {
    stmt_use s(st.sets_report.get());
    params.bind_to(s.get());
    const int rc = sqlite3_step(s.get());
    if (rc == SQLITE_ROW) {
      for (std::size_t i = 0; i < plan.set_columns.size(); ++i) {
        const bool same = sqlite3_column_int(s.get(), static_cast<int>(i)) != 0;
        report.entries.push_back(
            {plan.set_columns[i], {}, same ? change_kind::unchanged : change_kind::changed});
      }
    } else if (rc != SQLITE_DONE) {
      return rc;
    }
  }
  for (std::size_t m = 0; m < st.merge_reports.size(); ++m) {
    stmt_use s(st.merge_reports[m].get());
    params.bind_to(s.get());
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
      const bool removal = sqlite3_column_int(s.get(), 1) != 0;
      const bool present = sqlite3_column_int(s.get(), 2) != 0;
      const bool same = sqlite3_column_int(s.get(), 3) != 0;
      const change_kind kind = removal    ? (present ? change_kind::deleted : change_kind::absent_delete)
                               : !present ? change_kind::added
                               : same     ? change_kind::unchanged
                                          : change_kind::changed;
      report.entries.push_back({plan.merge_columns[m], text_column(s.get(), 0), kind});
    }
    if (rc != SQLITE_DONE) return rc;
  }
  return SQLITE_OK;
}

/// The SQL of one table_spec, and what goes with it.
class table_sql {
 public:
  template <class V, class K>
  explicit table_sql(const table_spec<V, K>& spec)
      : token_(spec.token()), first_version_(spec.first_version()) {
    table_ = quote_identifier(spec.table());
    for (const auto& f : spec.keys().fields()) keys_.push_back(quote_identifier(f.name));
    for (const auto& f : spec.values().fields()) {
      values_.push_back(quote_identifier(f.name));
      value_names_.push_back(f.name);
      value_kinds_.push_back(f.kind);
      value_nullable_.push_back(f.nullable);
      caps_.push_back(spec.cap_of(f.name));
    }
    if (token_ == table_token_kind::version_column) version_ = quote_identifier(spec.version_column());
    for (const auto& g : spec.guards()) {
      guards_.push_back(quote_identifier(g.column));
      guard_names_.push_back(g.column);
      guard_values_.push_back(g.value);
      guard_equal_.push_back(g.must_equal);
    }
  }

  [[nodiscard]] std::size_t value_count() const noexcept { return values_.size(); }
  [[nodiscard]] int key_param(std::size_t i) const noexcept { return 1 + static_cast<int>(i); }
  [[nodiscard]] int value_param(std::size_t i) const noexcept {
    return 1 + static_cast<int>(keys_.size() + i);
  }
  [[nodiscard]] int token_param(std::size_t i) const noexcept {
    return value_param(values_.size()) + static_cast<int>(i);
  }
  [[nodiscard]] int guard_param(std::size_t i) const noexcept {
    const std::size_t token_params = token_ == table_token_kind::compare_values ? values_.size() : 1;
    return token_param(token_params) + static_cast<int>(i);
  }
  [[nodiscard]] int first_free_param() const noexcept { return guard_param(guards_.size()); }

  [[nodiscard]] std::string read() const {
    return "SELECT " + list(values_) + (version_.empty() ? "" : ", " + version_) + " FROM " + table_ +
           " WHERE " + key_condition();
  }
  [[nodiscard]] std::string update() const {
    std::string set;
    for (std::size_t i = 0; i < values_.size(); ++i) {
      set += (i ? ", " : "") + values_[i] + " = " + p(value_param(i));
    }
    return "UPDATE " + table_ + " SET " + set + version_bump() + " WHERE " + conditions() + value_caps() +
           " RETURNING " + returning();
  }
  [[nodiscard]] std::string insert() const {
    std::string select;
    for (std::size_t i = 0; i < keys_.size(); ++i) select += (i ? ", " : "") + p(key_param(i));
    for (std::size_t i = 0; i < values_.size(); ++i) select += ", " + p(value_param(i));
    std::string where = value_caps();
    where = where.empty() ? "1" : where.substr(5);  // drop the leading " AND "
    return "INSERT INTO " + table_ + " (" + list(keys_) + ", " + list(values_) +
           (version_.empty() ? "" : ", " + version_) + ") SELECT " + select +
           (version_.empty() ? "" : ", " + std::to_string(first_version_)) + " WHERE " + where +
           " ON CONFLICT (" + list(keys_) + ") DO NOTHING RETURNING " + returning();
  }
  [[nodiscard]] std::string upsert() const {
    std::string vals, set;
    for (std::size_t i = 0; i < keys_.size(); ++i) vals += (i ? ", " : "") + p(key_param(i));
    for (std::size_t i = 0; i < values_.size(); ++i) {
      vals += ", " + p(value_param(i));
      set += (i ? ", " : "") + values_[i] + " = excluded." + values_[i];
    }
    return "INSERT INTO " + table_ + " (" + list(keys_) + ", " + list(values_) +
           (version_.empty() ? "" : ", " + version_) + ") VALUES (" + vals +
           (version_.empty() ? "" : ", " + std::to_string(first_version_)) + ") ON CONFLICT (" + list(keys_) +
           ") DO UPDATE SET " + set + version_bump() + " RETURNING " + returning();
  }
  [[nodiscard]] std::string erase() const {
    return "DELETE FROM " + table_ + " WHERE " + conditions() + " RETURNING 1";
  }
  /// SELECT <token columns>, per guard (passes, value), <extras with SQL> FROM t WHERE <key>.
  [[nodiscard]] std::string probe(const std::vector<probe_extra>& extras) const {
    std::string cols = version_.empty() ? list(values_) : version_;
    for (std::size_t i = 0; i < guards_.size(); ++i) cols += ", " + guard_check(i) + ", " + guards_[i];
    for (const auto& x : extras) {
      if (x.kind != probe_extra::what::param_size) cols += ", " + x.sql;
    }
    return "SELECT " + cols + " FROM " + table_ + " WHERE " + key_condition();
  }

  /// The caps of value columns, checked on the bound new values.
  [[nodiscard]] std::vector<probe_extra> value_cap_sizes() const {
    std::vector<probe_extra> out;
    for (std::size_t i = 0; i < values_.size(); ++i) {
      if (caps_[i] != 0) {
        out.push_back({probe_extra::what::param_size, value_names_[i], caps_[i], {}, value_param(i)});
      }
    }
    return out;
  }

  void bind_token(const table_token& t, bound_params& params) const {
    if (token_ == table_token_kind::compare_values) {
      for (std::size_t i = 0; i < values_.size(); ++i) {
        params.put(token_param(i), i < t.image.size() ? t.image[i] : field_value::null_value());
      }
    } else {
      params.put(token_param(0), field_value::of_integer(t.number));
    }
  }
  void bind_guards(bound_params& params) const {
    for (std::size_t i = 0; i < guards_.size(); ++i)
      params.put(guard_param(i), field_value::of_text(guard_values_[i]));
  }

  /// A read row's token (the version after the values, or the values themselves).
  bool token_from_row(sqlite3_stmt* s, const std::vector<field_value>& values, table_token& t,
                      store_error& e) const {
    if (token_ == table_token_kind::compare_values) {
      t.image = values;
      return true;
    }
    const int col = static_cast<int>(values_.size());
    if (sqlite3_column_type(s, col) != SQLITE_INTEGER) {
      e = {std::string(codec_error_code), "the version column " + version_ + " holds " +
                                              column_value(s, col).describe() + ", not an integer"};
      return false;
    }
    t.number = sqlite3_column_int64(s, col);
    return true;
  }
  /// The new token from a RETURNING row.
  [[nodiscard]] table_token token_from_returning(sqlite3_stmt* s) const {
    table_token t;
    if (token_ == table_token_kind::compare_values) {
      t.image = row_values(s, 0, values_.size());
    } else {
      t.number = sqlite3_column_int64(s, 0);
    }
    return t;
  }

  /// Why a conditional write matched no row, from its probe's row.
  [[nodiscard]] write_result<table_token> diagnose(sqlite3_stmt* s, const table_token& token,
                                                   const bound_params& params,
                                                   const std::vector<probe_extra>& extras) const {
    using wr = write_result<table_token>;
    int col = 0;
    if (token_ == table_token_kind::compare_values) {
      if (row_values(s, 0, values_.size()) != token.image) return wr::make_conflict();
      col = static_cast<int>(values_.size());
    } else {
      if (sqlite3_column_type(s, 0) != SQLITE_INTEGER || sqlite3_column_int64(s, 0) != token.number) {
        return wr::make_conflict();
      }
      col = 1;
    }
    for (std::size_t i = 0; i < guards_.size(); ++i, col += 2) {
      if (sqlite3_column_int(s, col) == 0) {
        return wr::make_failed(
            write_status::permanent,
            {std::string(table_error::guard),
             "column " + guards_[i] + " holds " + column_value(s, col + 1).describe() + " (the write " +
                 (guard_equal_[i] ? "requires '" : "is refused while it is '") + guard_values_[i] + "')"});
      }
    }
    std::vector<probe_extra> sized;
    for (const auto& x : extras) {
      if (x.kind == probe_extra::what::object_check) {
        if (sqlite3_column_int(s, col++) == 0) {
          return wr::make_failed(
              write_status::permanent,
              {std::string(table_error::not_object),
               "column " + quote_identifier(x.column) + " does not hold a JSON object: a merge needs one"});
        }
      } else if (x.kind == probe_extra::what::sql_size) {
        const auto size = static_cast<std::size_t>(sqlite3_column_int64(s, col++));
        if (size > x.cap) return too_large(x, size);
      } else {
        sized.push_back(x);
      }
    }
    auto cap = cap_failure(params, sized);
    if (cap.status == write_status::permanent) return cap;
    return wr::make_failed(
        write_status::permanent,
        {"no_match", "the write matched no row, yet the key, token, guards and caps all pass"});
  }

  /// `too_large` for the first capped bound value over its cap; else `exists` (a create's answer).
  [[nodiscard]] write_result<table_token> cap_failure(const bound_params& params,
                                                      const std::vector<probe_extra>& sized) const {
    for (const auto& x : sized) {
      const std::size_t size = params.at(x.param).bytes.size();
      if (size > x.cap) return too_large(x, size);
    }
    return write_result<table_token>::make_exists();
  }

  /// "key (name = text 'qb')": the key for messages.
  [[nodiscard]] std::string key_text(const bound_params& params) const {
    std::string out = "key (";
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      out += (i ? ", " : "") + keys_[i] + " = " + params.at(key_param(i)).describe();
    }
    return out + ")";
  }

  /// The statements and parameters of `patch`; throws std::invalid_argument for a patch that
  /// names a column the spec does not map, or sets a value of the wrong type.
  patch_plan plan_patch(const table_patch& patch, bound_params& params) const {
    if (patch.empty()) throw std::invalid_argument("noclobber::sqlite::table_store: the patch is empty");
    patch_plan plan;
    int next = first_free_param();
    std::string set, report;
    std::vector<probe_extra> caps;
    for (const auto& s : patch.sets()) {
      const std::size_t i = mapped(s.column);
      check_kind(i, s.value);
      const int n = next++;
      params.put(n, s.value);
      set += (set.empty() ? "" : ", ") + values_[i] + " = " + p(n);
      report += (report.empty() ? "" : ", ") + values_[i] + " IS " + p(n);
      plan.set_columns.push_back(s.column);
      if (caps_[i] != 0) caps.push_back({probe_extra::what::param_size, s.column, caps_[i], {}, n});
    }
    std::string objects;
    for (const auto& m : patch.merges()) {
      const std::size_t i = mapped(m.column());
      if (value_kinds_[i] != field_kind::json && value_kinds_[i] != field_kind::text) {
        throw std::invalid_argument("noclobber::sqlite::table_store: column '" + m.column() +
                                    "' is not a json or text column: it cannot take a merge");
      }
      const int nulls = next++, sets = next++, doc = next++;
      params.put(nulls, field_value::of_text(m.nulls_document()));
      params.put(sets, field_value::of_text(m.sets_document()));
      params.put(doc, field_value::of_text(m.merge_document()));
      const std::string& c = values_[i];
      const std::string current = "coalesce(" + c + ", '{}')";
      const std::string merged = "json_patch(json_patch(" + current + ", " + p(nulls) + "), " + p(sets) + ")";
      set += (set.empty() ? "" : ", ") + c + " = " + merged;
      const std::string object = "(json_type(" + current + ") = 'object')";
      objects += " AND " + object;
      plan.extras.push_back({probe_extra::what::object_check, m.column(), 0, object, 0});
      if (caps_[i] != 0) {
        caps.push_back({probe_extra::what::sql_size, m.column(), caps_[i],
                        "coalesce(length(CAST(" + merged + " AS BLOB)), 0)", 0});
      }
      plan.merge_columns.push_back(m.column());
      plan.merge_report_sql.push_back(
          "SELECT p.key, p.type = 'null', o.key IS NOT NULL, (o.type IS p.type AND o.value IS p.value) FROM "
          "json_each(" +
          p(doc) + ") AS p LEFT JOIN json_each((SELECT " + current + " FROM " + table_ + " WHERE " +
          key_condition() + ")) AS o ON o.key = p.key");
    }
    std::string cap_sql;
    for (const auto& x : caps) {
      cap_sql += " AND " + (x.kind == probe_extra::what::sql_size ? x.sql : size_of(p(x.param))) +
                 " <= " + std::to_string(x.cap);
      plan.extras.push_back(x);
    }
    plan.update_sql = "UPDATE " + table_ + " SET " + set + version_bump() + " WHERE " + conditions() +
                      objects + cap_sql + " RETURNING " + returning();
    plan.probe_sql = probe(plan.extras);
    if (!report.empty())
      plan.sets_report_sql = "SELECT " + report + " FROM " + table_ + " WHERE " + key_condition();
    return plan;
  }

 private:
  static std::string p(int n) { return "?" + std::to_string(n); }
  static std::string list(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
  }
  static std::string size_of(const std::string& expr) {
    return "coalesce(length(CAST(" + expr + " AS BLOB)), 0)";
  }
  static write_result<table_token> too_large(const probe_extra& x, std::size_t size) {
    return write_result<table_token>::make_failed(
        write_status::permanent, {std::string(table_error::too_large),
                                  "column " + quote_identifier(x.column) + ": " + std::to_string(size) +
                                      " bytes > cap of " + std::to_string(x.cap)});
  }

  std::string key_condition() const {
    std::string out;
    for (std::size_t i = 0; i < keys_.size(); ++i)
      out += (i ? " AND " : "") + keys_[i] + " = " + p(key_param(i));
    return out;
  }
  std::string guard_check(std::size_t i) const {
    return "(" + guards_[i] + (guard_equal_[i] ? " IS " : " IS NOT ") + p(guard_param(i)) + ")";
  }
  // <key> AND <token> AND <guards>
  std::string conditions() const {
    std::string out = key_condition();
    if (token_ == table_token_kind::compare_values) {
      for (std::size_t i = 0; i < values_.size(); ++i)
        out += " AND " + values_[i] + " IS " + p(token_param(i));
    } else {
      out += " AND " + version_ + " = " + p(token_param(0));
    }
    for (std::size_t i = 0; i < guards_.size(); ++i) out += " AND " + guard_check(i);
    return out;
  }
  std::string value_caps() const {
    std::string out;
    for (std::size_t i = 0; i < values_.size(); ++i) {
      if (caps_[i] != 0) out += " AND " + size_of(p(value_param(i))) + " <= " + std::to_string(caps_[i]);
    }
    return out;
  }
  std::string version_bump() const {
    return version_.empty() ? "" : ", " + version_ + " = " + version_ + " + 1";
  }
  std::string returning() const { return version_.empty() ? list(values_) : version_; }

  std::size_t mapped(const std::string& column) const {
    for (std::size_t i = 0; i < value_names_.size(); ++i) {
      if (value_names_[i] == column) return i;
    }
    throw std::invalid_argument("noclobber::sqlite::table_store: the patch names column '" + column +
                                "', which is not a value column of the spec");
  }
  void check_kind(std::size_t i, const field_value& v) const {
    using t = field_value::type;
    const field_kind k = value_kinds_[i];
    const bool ok = v.kind == t::null                                      ? value_nullable_[i]
                    : k == field_kind::integer || k == field_kind::boolean ? v.kind == t::integer
                    : k == field_kind::real ? (v.kind == t::real || v.kind == t::integer)
                    : k == field_kind::blob ? (v.kind == t::blob || v.kind == t::text)
                                            : v.kind == t::text;
    if (!ok) {
      throw std::invalid_argument("noclobber::sqlite::table_store: the patch sets " +
                                  std::string(to_string(k)) + " column '" + value_names_[i] + "' to " +
                                  v.describe());
    }
  }

  table_token_kind token_;
  std::int64_t first_version_;
  std::string table_, version_;
  std::vector<std::string> keys_, values_, value_names_, guards_, guard_names_, guard_values_;
  std::vector<field_kind> value_kinds_;
  std::vector<char> value_nullable_, guard_equal_;
  std::vector<std::size_t> caps_;
};

}  // namespace noclobber::sqlite::detail
