// noclobber/adapters/postgres/table_statements.hpp — the SQL of postgres::table_store.
//
// Every conditional write is ONE statement that also says why it did not apply: a CTE locks the
// row (`SELECT … FOR UPDATE`), the UPDATE / DELETE joins it with the token, guard and cap
// checks in its WHERE clause, and the outer SELECT returns one status row built from the locked
// row (no row: the key is absent):
//
//   WITH cur AS (SELECT <token>::text AS nc_tok, <guard checks>, <old JSON of merged columns>
//                FROM t AS nc_t WHERE <key> FOR UPDATE),
//        [nxt AS (SELECT cur.*, (old || $set::jsonb) - ARRAY(…$removed…) AS nc_new_j FROM cur),]
//        upd AS (UPDATE t AS nc_t SET … FROM cur WHERE <key> AND cur.nc_tok = $token AND <guards>
//                AND <caps> RETURNING <new token>)
//   SELECT cur.nc_tok, (SELECT * FROM upd), <guard results>, <extras>, <change report> FROM cur
//
// In READ COMMITTED the CTE's FOR UPDATE waits for a concurrent writer and then sees its row;
// the UPDATE re-checks its WHERE against that same row version (the lock is ours until the
// statement ends), so the status row and the write describe one row state.
//
// Parameters are numbered ($N) as in the SQLite store: keys, values, the token, guards, then
// a patch's own. All are sent as text and cast to the column's own type (format_type from the
// catalog), except bytea, which is sent and read in binary.
//
// Thread safety: a table_sql is immutable after construction.
#pragma once

#include <libpq-fe.h>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "noclobber/adapters/postgres.hpp"
#include "noclobber/adapters/postgres/table_schema.hpp"
#include "noclobber/adapters/record_mapping.hpp"
#include "noclobber/adapters/table_patch.hpp"
#include "noclobber/adapters/table_spec.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::postgres::detail {

/// $1 … $N of one statement: field values, sent as text (bytea in binary, NULL as NULL).
class pg_params {
 public:
  /// False (and `e`) for a value PostgreSQL cannot take as text (a NUL byte in text).
  bool put(int index, field_value v, store_error& e) {
    if (v.kind == field_value::type::text && v.bytes.find('\0') != std::string::npos) {
      e = {std::string(codec_error_code),
           "a text value contains a NUL byte, which PostgreSQL text cannot hold"};
      return false;
    }
    const auto i = static_cast<std::size_t>(index - 1);
    if (values_.size() <= i) values_.resize(i + 1);
    values_[i] = std::move(v);
    return true;
  }
  void put_text(int index, std::string s) {
    store_error ignored;
    (void)put(index, field_value::of_text(std::move(s)), ignored);
  }
  [[nodiscard]] const field_value& at(int index) const {
    return values_.at(static_cast<std::size_t>(index - 1));
  }

  /// The libpq parameters; valid until the next call or the end of this object.
  std::span<const param> view() {
    text_.clear();
    params_.clear();
    for (const field_value& v : values_) {
      switch (v.kind) {
        case field_value::type::null:
          params_.push_back(param{{}, false, true});
          break;
        case field_value::type::integer:
          text_.push_back(std::to_string(v.integer));
          params_.push_back(param{text_.back()});
          break;
        case field_value::type::real: {
          char buf[64];
          const auto r = std::to_chars(buf, buf + sizeof buf, v.real);
          text_.emplace_back(buf, r.ptr);
          params_.push_back(param{text_.back()});
          break;
        }
        case field_value::type::text:
          params_.push_back(param{v.bytes});
          break;
        case field_value::type::blob:
          params_.push_back(param{v.bytes, true});
          break;
      }
    }
    return params_;
  }

 private:
  std::vector<field_value> values_;
  std::deque<std::string> text_;  // a deque: the views in params_ stay valid as it grows
  std::vector<param> params_;
};

/// A column the status row reports after the token and guards.
struct status_extra {
  enum class what : unsigned char { object_check, size } kind = what::size;
  std::string column;
  std::size_t cap = 0;
};

/// One mapped column: its quoted name, the type to cast parameters to, and its kind.
struct pg_field {
  std::string name, quoted, cast;
  field_kind kind = field_kind::text;
  bool nullable = false;
  std::size_t cap = 0;
  [[nodiscard]] bool bytea() const noexcept { return kind == field_kind::blob; }
  /// How a SELECT reads it: bytea raw (binary results), everything else as text.
  [[nodiscard]] std::string select(const std::string& alias) const {
    return bytea() ? alias + "." + quoted : alias + "." + quoted + "::text";
  }
  [[nodiscard]] std::string size_of(const std::string& expr) const {
    return bytea() ? "octet_length(" + expr + ")" : "octet_length((" + expr + ")::text)";
  }
};

/// A text (or bytea) result cell of kind `k` as a field value; false (and `e`) when malformed.
inline bool to_field(const exec_result& r, int row, int col, field_kind k, field_value& out, store_error& e) {
  if (r.is_null(row, col)) {
    out = field_value::null_value();
    return true;
  }
  std::string text = r.bytes(row, col);
  switch (k) {
    case field_kind::integer: {
      std::int64_t v = 0;
      const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc{} || p != text.data() + text.size()) break;
      out = field_value::of_integer(v);
      return true;
    }
    case field_kind::boolean:
      if (text != "true" && text != "false") break;
      out = field_value::of_integer(text == "true" ? 1 : 0);
      return true;
    case field_kind::real: {
      double v = 0;
      const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc{} || p != text.data() + text.size()) break;
      out = field_value::of_real(v);
      return true;
    }
    case field_kind::blob:
      out = field_value::of_blob(std::move(text));
      return true;
    case field_kind::text:
    case field_kind::json:
      out = field_value::of_text(std::move(text));
      return true;
  }
  e = {std::string(codec_error_code), "cannot read '" + text + "' as " + std::string(to_string(k))};
  return false;
}

/// The SQL of one table_spec, and the reading of its status rows.
class table_sql {
 public:
  template <class V, class K>
  table_sql(connection& c, const table_spec<V, K>& spec, const std::map<std::string, pg_column>& columns)
      : token_(spec.token()), first_version_(spec.first_version()) {
    table_ = quote_identifier(c, spec.table());
    auto add = [&](const auto& mapping, std::vector<pg_field>& out) {
      for (const auto& f : mapping.fields()) {
        out.push_back({f.name, quote_identifier(c, f.name), columns.at(f.name).type, f.kind, f.nullable,
                       spec.cap_of(f.name)});
      }
    };
    add(spec.keys(), keys_);
    add(spec.values(), values_);
    if (token_ == table_token_kind::version_column) version_ = quote_identifier(c, spec.version_column());
    for (const auto& g : spec.guards()) {
      guards_.push_back(
          {g.column, quote_identifier(c, g.column), columns.at(g.column).type, field_kind::text, true, 0});
      guard_values_.push_back(g.value);
      guard_equal_.push_back(g.must_equal);
    }
  }

  [[nodiscard]] const std::vector<pg_field>& values() const noexcept { return values_; }
  [[nodiscard]] int key_param(std::size_t i) const noexcept { return 1 + static_cast<int>(i); }
  [[nodiscard]] int value_param(std::size_t i) const noexcept {
    return 1 + static_cast<int>(keys_.size() + i);
  }
  // PostgreSQL refuses a parameter that the statement text never uses (its type is unknown), so
  // a statement without value parameters (erase, patch) numbers its token right after the keys.
  [[nodiscard]] int token_param(bool with_values) const noexcept {
    return with_values ? value_param(values_.size()) : key_param(keys_.size());
  }
  [[nodiscard]] int guard_param(std::size_t i, bool with_values) const noexcept {
    return token_param(with_values) + 1 + static_cast<int>(i);
  }
  [[nodiscard]] int first_free_param(bool with_values) const noexcept {
    return guard_param(guards_.size(), with_values);
  }

  /// The token and the guards' values; `with_values`: the statement also has value parameters.
  void bind_token_and_guards(const table_token& t, pg_params& params, bool with_values) const {
    params.put_text(token_param(with_values), std::to_string(t.number));
    for (std::size_t i = 0; i < guards_.size(); ++i)
      params.put_text(guard_param(i, with_values), guard_values_[i]);
  }

  [[nodiscard]] std::string read() const {
    std::string cols;
    for (const auto& v : values_) cols += v.select("nc_t") + ", ";
    return "SELECT " + cols + token("nc_t") + " FROM " + table_ + " AS nc_t WHERE " + key_condition("nc_t");
  }

  /// UPDATE of every value column at a token; status row: tok, new tok, guards, value sizes.
  [[nodiscard]] std::string update() const {
    std::string set;
    for (std::size_t i = 0; i < values_.size(); ++i) {
      set += (i ? ", " : "") + values_[i].quoted + " = " + cast_param(value_param(i), values_[i]);
    }
    std::string sizes;
    for (const auto& [expr, cap] : value_cap_exprs()) sizes += ", " + expr + "::text";
    return conditional("cur", set, value_caps(), "", "", sizes, true);
  }
  [[nodiscard]] std::vector<status_extra> value_sizes() const {
    std::vector<status_extra> out;
    for (const auto& v : values_) {
      if (v.cap != 0) out.push_back({status_extra::what::size, v.name, v.cap});
    }
    return out;
  }

  /// INSERT … ON CONFLICT DO NOTHING; status row: new tok, value sizes.
  [[nodiscard]] std::string insert() const {
    std::string cols, select, sizes, where;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      cols += (i ? ", " : "") + keys_[i].quoted;
      select += (i ? ", " : "") + cast_param(key_param(i), keys_[i]);
    }
    for (std::size_t i = 0; i < values_.size(); ++i) {
      cols += ", " + values_[i].quoted;
      select += ", " + cast_param(value_param(i), values_[i]);
    }
    if (!version_.empty()) {
      cols += ", " + version_;
      select += ", " + std::to_string(first_version_);
    }
    for (const auto& [expr, cap] : value_cap_exprs()) {
      sizes += ", " + expr + "::text";
      where += (where.empty() ? " WHERE " : " AND ") + expr + " <= " + std::to_string(cap);
    }
    return "WITH ins AS (INSERT INTO " + table_ + " AS nc_t (" + cols + ") SELECT " + select + where +
           " ON CONFLICT (" + key_list() + ") DO NOTHING RETURNING " + token("nc_t") +
           ") SELECT (SELECT * FROM ins)" + sizes;
  }

  /// The blind upsert (the naive negative control); returns the new token.
  [[nodiscard]] std::string upsert() const {
    std::string cols, vals, set;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      cols += (i ? ", " : "") + keys_[i].quoted;
      vals += (i ? ", " : "") + cast_param(key_param(i), keys_[i]);
    }
    for (std::size_t i = 0; i < values_.size(); ++i) {
      cols += ", " + values_[i].quoted;
      vals += ", " + cast_param(value_param(i), values_[i]);
      set += (i ? ", " : "") + values_[i].quoted + " = EXCLUDED." + values_[i].quoted;
    }
    if (!version_.empty()) {
      cols += ", " + version_;
      vals += ", " + std::to_string(first_version_);
      set += ", " + version_ + " = nc_t." + version_ + " + 1";
    }
    return "INSERT INTO " + table_ + " AS nc_t (" + cols + ") VALUES (" + vals + ") ON CONFLICT (" +
           key_list() + ") DO UPDATE SET " + set + " RETURNING " + token("nc_t");
  }

  /// DELETE at a token; status row: tok, '1' when deleted, guards.
  [[nodiscard]] std::string erase() const {
    return "WITH cur AS (" + locked_row("", false) + "), upd AS (DELETE FROM " + table_ +
           " AS nc_t USING cur WHERE " + key_condition("nc_t") +
           " AND cur.nc_tok = " + p(token_param(false)) + guard_conditions("cur") +
           " RETURNING '1'::text) SELECT cur.nc_tok, (SELECT * FROM upd)" + guard_results("cur") +
           " FROM cur";
  }

  /// The patch statement; `extras` and `report` tell how to read its status row.
  struct patch_plan {
    std::string sql;
    std::vector<status_extra> extras;
    std::vector<std::string> set_columns;                // one 'same' boolean each, after the extras
    std::vector<const table_patch::json_merge*> merges;  // one code string each, after those
  };
  /// The patch as one statement. Throws std::invalid_argument for a patch that names a column
  /// the spec does not map, or sets a value of the wrong type; false (and `e`) for a value
  /// PostgreSQL cannot take.
  bool plan_patch(const table_patch& patch, pg_params& params, patch_plan& plan, store_error& e) const {
    if (patch.empty()) throw std::invalid_argument("noclobber::postgres::table_store: the patch is empty");
    int next = first_free_param(false);
    std::string set, cur_more, nxt_more, where_more, select_more, report;
    auto sep = [](const std::string& s) { return s.empty() ? "" : ", "; };
    for (const auto& s : patch.sets()) {
      const pg_field& f = mapped(s.column);
      check_kind(f, s.value);
      const int n = next++;
      if (!params.put(n, s.value, e)) return false;
      const std::string id = std::to_string(plan.set_columns.size());
      set += sep(set) + f.quoted + " = " + cast_param(n, f);
      cur_more +=
          ", (nc_t." + f.quoted + " IS NOT DISTINCT FROM " + cast_param(n, f) + ")::text AS nc_same" + id;
      report += ", nxt.nc_same" + id;
      if (f.cap != 0) {
        const std::string size = f.size_of(cast_param(n, f));
        where_more += " AND " + size + " <= " + std::to_string(f.cap);
        select_more += ", " + size + "::text";
        plan.extras.push_back({status_extra::what::size, f.name, f.cap});
      }
      plan.set_columns.push_back(s.column);
    }
    for (const auto& m : patch.merges()) {
      const pg_field& f = mapped(m.column());
      if (f.kind != field_kind::json && f.kind != field_kind::text) {
        throw std::invalid_argument("noclobber::postgres::table_store: column '" + m.column() +
                                    "' is not a json or text column: it cannot take a merge");
      }
      const int sets = next++, removes = next++, keys = next++;
      params.put_text(sets, m.sets_document());
      params.put_text(removes, m.removes_document());
      std::string all_keys = "[";
      for (const auto& kv : m.sets()) all_keys += (all_keys.size() > 1 ? "," : "") + json_key(kv.first);
      for (const auto& k : m.removes()) all_keys += (all_keys.size() > 1 ? "," : "") + json_key(k);
      params.put_text(keys, all_keys + "]");
      const std::string j = std::to_string(plan.merges.size());
      const std::string old_j = "nxt.nc_old" + j, new_j = "nxt.nc_new" + j + "::" + f.cast;
      cur_more += ", coalesce(nc_t." + f.quoted + "::jsonb, '{}'::jsonb) AS nc_old" + j;
      nxt_more += ", ((cur.nc_old" + j + " || " + p(sets) +
                  "::jsonb) - ARRAY(SELECT jsonb_array_elements_text(" + p(removes) + "::jsonb))) AS nc_new" +
                  j;
      set += sep(set) + f.quoted + " = " + new_j;
      where_more += " AND jsonb_typeof(" + old_j + ") = 'object'";
      select_more += ", (jsonb_typeof(" + old_j + ") = 'object')::text";
      plan.extras.push_back({status_extra::what::object_check, f.name, 0});
      if (f.cap != 0) {
        const std::string size = f.size_of(new_j);
        where_more += " AND " + size + " <= " + std::to_string(f.cap);
        select_more += ", " + size + "::text";
        plan.extras.push_back({status_extra::what::size, f.name, f.cap});
      }
      // One letter per key named, in the patch's order: a(dded) c(hanged) u(nchanged) d(eleted)
      // n (a remove of an absent key).
      report += ", (SELECT string_agg(CASE WHEN r.i > " + std::to_string(m.sets().size()) +
                " THEN CASE WHEN " + old_j + " ? r.k THEN 'd' ELSE 'n' END WHEN NOT " + old_j +
                " ? r.k THEN 'a' WHEN " + old_j + " -> r.k = " + p(sets) +
                "::jsonb -> r.k THEN 'u' ELSE 'c' END, '' ORDER BY r.i) FROM " +
                "jsonb_array_elements_text(" + p(keys) + "::jsonb) WITH ORDINALITY AS r(k, i))";
      plan.merges.push_back(&m);
    }
    plan.sql = conditional("nxt", set, where_more, cur_more, nxt_more, select_more + report, false);
    return true;
  }

  /// The change report from an applied patch's status row.
  [[nodiscard]] change_report report(const exec_result& r, const patch_plan& plan) const {
    change_report out;
    int col = 2 + 2 * static_cast<int>(guards_.size()) + static_cast<int>(plan.extras.size());
    for (const auto& c : plan.set_columns) {
      out.entries.push_back(
          {c, {}, r.bytes(0, col++) == "true" ? change_kind::unchanged : change_kind::changed});
    }
    for (const auto* m : plan.merges) {
      const std::string codes = r.is_null(0, col) ? std::string() : r.bytes(0, col);
      ++col;
      std::size_t i = 0;
      auto kind = [&codes](std::size_t at) {
        switch (at < codes.size() ? codes[at] : '?') {
          case 'a':
            return change_kind::added;
          case 'c':
            return change_kind::changed;
          case 'u':
            return change_kind::unchanged;
          case 'd':
            return change_kind::deleted;
          default:
            return change_kind::absent_delete;
        }
      };
      for (const auto& kv : m->sets()) out.entries.push_back({m->column(), kv.first, kind(i++)});
      for (const auto& k : m->removes()) out.entries.push_back({m->column(), k, kind(i++)});
    }
    return out;
  }

  /// The outcome a status row (row 0 of `r`) says; `token` is the one the write was sent at.
  [[nodiscard]] write_result<table_token> outcome(const exec_result& r, const table_token& token,
                                                  const std::vector<status_extra>& extras) const {
    using wr = write_result<table_token>;
    if (r.rows() == 0) return wr::make_absent();
    if (!r.is_null(0, 1)) return wr::make_applied(parse_token(r.bytes(0, 1)));
    if (r.is_null(0, 0) || r.bytes(0, 0) != std::to_string(token.number)) return wr::make_conflict();
    int col = 2;
    for (std::size_t i = 0; i < guards_.size(); ++i, col += 2) {
      if (r.bytes(0, col) != "true") {
        const std::string held = r.is_null(0, col + 1) ? "NULL" : "'" + r.bytes(0, col + 1) + "'";
        return wr::make_failed(
            write_status::permanent,
            {std::string(table_error::guard),
             "column " + guards_[i].quoted + " holds " + held + " (the write " +
                 (guard_equal_[i] ? "requires '" : "is refused while it is '") + guard_values_[i] + "')"});
      }
    }
    for (const auto& x : extras) {
      const std::string v = r.is_null(0, col) ? "" : r.bytes(0, col);
      ++col;
      if (x.kind == status_extra::what::object_check) {
        if (v != "true") {
          return wr::make_failed(write_status::permanent, {std::string(table_error::not_object),
                                                           "column \"" + x.column +
                                                               "\" does not hold a JSON object: a "
                                                               "merge needs one"});
        }
      } else if (!v.empty() && std::stoull(v) > x.cap) {
        return wr::make_failed(write_status::permanent, {std::string(table_error::too_large),
                                                         "column \"" + x.column + "\": " + v +
                                                             " bytes > cap of " + std::to_string(x.cap)});
      }
    }
    return wr::make_failed(
        write_status::permanent,
        {"no_match", "the write matched no row, yet the key, token, guards and caps all pass"});
  }

  /// A create's status row: new token, or `exists`, or too_large.
  [[nodiscard]] write_result<table_token> created(const exec_result& r) const {
    using wr = write_result<table_token>;
    if (r.rows() == 1 && !r.is_null(0, 0)) return wr::make_applied(parse_token(r.bytes(0, 0)));
    int col = 1;
    for (const auto& x : value_sizes()) {
      const std::string v = r.bytes(0, col++);
      if (std::stoull(v) > x.cap) {
        return wr::make_failed(write_status::permanent, {std::string(table_error::too_large),
                                                         "column \"" + x.column + "\": " + v +
                                                             " bytes > cap of " + std::to_string(x.cap)});
      }
    }
    return wr::make_exists();
  }

  [[nodiscard]] static table_token parse_token(const std::string& text) {
    table_token t;
    std::from_chars(text.data(), text.data() + text.size(), t.number);
    return t;
  }

  /// "key (\"name\" = text 'qb')": the key for messages.
  [[nodiscard]] std::string key_text(const pg_params& params) const {
    std::string out = "key (";
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      out += (i ? ", " : "") + keys_[i].quoted + " = " + params.at(key_param(i)).describe();
    }
    return out + ")";
  }

  /// WITH cur AS (locked row + cur_more) [, nxt AS (SELECT cur.*, nxt_more FROM cur)],
  /// upd AS (UPDATE … SET set FROM <from> WHERE key AND token AND guards AND where_more RETURNING token)
  /// SELECT tok, new tok, guards, select_more FROM <from>.
  [[nodiscard]] std::string conditional(const std::string& from, const std::string& set,
                                        const std::string& where_more, const std::string& cur_more,
                                        const std::string& nxt_more, const std::string& select_more,
                                        bool with_values) const {
    std::string sql = "WITH cur AS (" + locked_row(cur_more, with_values) + ")";
    if (from == "nxt") sql += ", nxt AS (SELECT cur.*" + nxt_more + " FROM cur)";
    std::string version_set = version_.empty() ? "" : ", " + version_ + " = nc_t." + version_ + " + 1";
    sql += ", upd AS (UPDATE " + table_ + " AS nc_t SET " + set + version_set + " FROM " + from + " WHERE " +
           key_condition("nc_t") + " AND " + from + ".nc_tok = " + p(token_param(with_values)) +
           guard_conditions(from) + where_more + " RETURNING " + token("nc_t") + ")";
    sql += " SELECT " + from + ".nc_tok, (SELECT * FROM upd)" + guard_results(from) + select_more + " FROM " +
           from;
    return sql;
  }

 private:
  static std::string p(int n) { return "$" + std::to_string(n); }
  static std::string json_key(const std::string& k) { return noclobber::detail::json_quote(k); }

  const pg_field& mapped(const std::string& column) const {
    for (const auto& v : values_) {
      if (v.name == column) return v;
    }
    throw std::invalid_argument("noclobber::postgres::table_store: the patch names column '" + column +
                                "', which is not a value column of the spec");
  }
  static void check_kind(const pg_field& f, const field_value& v) {
    using t = field_value::type;
    const field_kind k = f.kind;
    const bool ok = v.kind == t::null                                      ? f.nullable
                    : k == field_kind::integer || k == field_kind::boolean ? v.kind == t::integer
                    : k == field_kind::real ? (v.kind == t::real || v.kind == t::integer)
                    : k == field_kind::blob ? v.kind == t::blob
                                            : v.kind == t::text;
    if (!ok) {
      throw std::invalid_argument("noclobber::postgres::table_store: the patch sets " +
                                  std::string(to_string(k)) + " column '" + f.name + "' to " + v.describe());
    }
  }
  static std::string cast_param(int n, const pg_field& f) { return p(n) + "::" + f.cast; }

  // The token of alias's row, as text: the version column or the system column xmin.
  std::string token(const std::string& alias) const {
    return (version_.empty() ? alias + ".xmin" : alias + "." + version_) + "::text";
  }
  std::string key_list() const {
    std::string out;
    for (const auto& k : keys_) out += (out.empty() ? "" : ", ") + k.quoted;
    return out;
  }
  std::string key_condition(const std::string& alias) const {
    std::string out;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      out += (i ? " AND " : "") + alias + "." + keys_[i].quoted + " = " + cast_param(key_param(i), keys_[i]);
    }
    return out;
  }
  // SELECT token, guard results … FROM t WHERE key FOR UPDATE (plus `more` columns).
  std::string locked_row(const std::string& more, bool with_values) const {
    std::string cols = token("nc_t") + " AS nc_tok";
    for (std::size_t i = 0; i < guards_.size(); ++i) {
      cols += ", (nc_t." + guards_[i].quoted +
              (guard_equal_[i] ? " IS NOT DISTINCT FROM " : " IS DISTINCT FROM ") +
              cast_param(guard_param(i, with_values), guards_[i]) + ") AS nc_g" + std::to_string(i) +
              ", nc_t." + guards_[i].quoted + "::text AS nc_gv" + std::to_string(i);
    }
    return "SELECT " + cols + more + " FROM " + table_ + " AS nc_t WHERE " + key_condition("nc_t") +
           " FOR UPDATE";
  }
  std::string guard_conditions(const std::string& from) const {
    std::string out;
    for (std::size_t i = 0; i < guards_.size(); ++i) out += " AND " + from + ".nc_g" + std::to_string(i);
    return out;
  }
  std::string guard_results(const std::string& from) const {
    std::string out;
    for (std::size_t i = 0; i < guards_.size(); ++i) {
      out += ", " + from + ".nc_g" + std::to_string(i) + "::text, " + from + ".nc_gv" + std::to_string(i);
    }
    return out;
  }
  std::vector<std::pair<std::string, std::size_t>> value_cap_exprs() const {
    std::vector<std::pair<std::string, std::size_t>> out;
    for (std::size_t i = 0; i < values_.size(); ++i) {
      if (values_[i].cap != 0)
        out.emplace_back(values_[i].size_of(cast_param(value_param(i), values_[i])), values_[i].cap);
    }
    return out;
  }
  std::string value_caps() const {
    std::string out;
    for (const auto& [expr, cap] : value_cap_exprs()) out += " AND " + expr + " <= " + std::to_string(cap);
    return out;
  }

  table_token_kind token_;
  std::int64_t first_version_;
  std::string table_, version_;
  std::vector<pg_field> keys_, values_, guards_;
  std::vector<std::string> guard_values_;
  std::vector<char> guard_equal_;
};

}  // namespace noclobber::postgres::detail
