// noclobber/adapters/postgres/table_store.hpp — a PostgreSQL table you already have, as a store.
//
// Overview
// --------
// `postgres::table_store<Value, Key>` reads and writes rows of an existing table through a
// table_spec (adapters/table_spec.hpp) — the same description the SQLite table store takes —
// and fulfils the whole store contract (read_modify_write, patch_if_unchanged, the race
// harness):
//
//   struct stack { std::string status; std::map<std::string, std::string> env; };
//   auto spec = noclobber::table_spec<stack>("stacks").key("slug")
//                   .column("status", &stack::status)
//                   .column("env", &stack::env, noclobber::json::codec<env_map>{})   // jsonb
//                   .xmin()                                    // no version column needed
//                   .require_not("status", "deleting")
//                   .max_bytes("env", 64 * 1024);
//   noclobber::postgres::table_store<stack> stacks(conninfo, spec);   // checks the catalog now
//
//   noclobber::table_patch p;                                   // PATCH /stacks/web/env
//   p.merge("env").set_string("REGION", "eu-west-1").remove("DEBUG");
//   noclobber::change_report report;
//   p.report_to(&report);
//   auto r = noclobber::patch_if_unchanged(stacks, "web", token, p, noclobber::patch_conflict::retry);
//
// Tokens: an integer version column (version(column): every write sets old + 1), or the system
// column xmin (xmin(): no schema change; 32-bit, compared for equality only).
//
// Every conditional write is ONE statement (table_statements.hpp): a CTE locks the row, the
// UPDATE / DELETE carries the token, guard and cap checks in its WHERE clause, and the statement
// returns a status row that says what happened — applied (the new token), conflict, absent, or
// permanent with code "guard", "not_object" or "too_large". A patch merges JSON keys on the
// server (`col || $set - $removed`) and its status row carries the change report (added,
// changed, unchanged, deleted, absent_delete per key), computed from the row it changed.
//
// Errors: SQLSTATEs as postgres.hpp classifies them (40001/40P01 restart, a lost connection
// after sending is indeterminate), except that a unique violation is `permanent` here: the key's
// own conflict is handled by ON CONFLICT, so 23505 can only come from another constraint.
//
// Construction checks the spec against the catalog (table_schema.hpp) and throws
// std::invalid_argument for a misfit; std::runtime_error when the server cannot be reached.
//
// Thread safety: one table_store is one libpq connection: one thread at a time; give each writer
// its own. Mapping codecs run on the calling thread; nothing locks in-process.
#pragma once

#include <libpq-fe.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "noclobber/adapters/postgres.hpp"
#include "noclobber/adapters/postgres/table_schema.hpp"
#include "noclobber/adapters/postgres/table_statements.hpp"
#include "noclobber/adapters/record_mapping.hpp"
#include "noclobber/adapters/table_patch.hpp"
#include "noclobber/adapters/table_spec.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::postgres {

/// See the overview.
template <class Value, class Key = std::string>
class table_store {
 public:
  using key_type = Key;
  using value_type = Value;
  using token_type = table_token;
  using patch_type = table_patch;
  using spec_type = table_spec<Value, Key>;
  using read_result_type = read_result<Value, table_token>;
  using write_result_type = write_result<table_token>;

  table_store(std::string conninfo, spec_type spec) : spec_(std::move(spec)), conn_(std::move(conninfo)) {
    const auto columns = check_table(conn_, spec_);
    sql_ = std::make_unique<detail::table_sql>(conn_, spec_, columns);
    read_sql_ = sql_->read();
    update_sql_ = sql_->update();
    insert_sql_ = sql_->insert();
    upsert_sql_ = sql_->upsert();
    erase_sql_ = sql_->erase();
  }

  table_store(table_store&&) noexcept = default;
  table_store& operator=(table_store&&) noexcept = default;

  [[nodiscard]] connection& conn() noexcept { return conn_; }
  [[nodiscard]] const spec_type& spec() const noexcept { return spec_; }

  read_result_type read(const Key& key) {
    detail::pg_params params;
    if (auto e = bind_key(key, params))
      return read_result_type::make_failed(read_status::permanent, std::move(*e));
    exec_result r = conn_.exec(read_sql_.c_str(), params.view(), false);
    if (!r.ok()) {
      return read_result_type::make_failed(
          r.failure == write_status::permanent ? read_status::permanent : read_status::transient,
          std::move(r.error));
    }
    if (r.rows() == 0) return read_result_type::make_absent();
    const auto& fields = sql_->values();
    std::vector<field_value> values(fields.size());
    store_error e;
    Value v{};
    bool ok = true;
    for (std::size_t i = 0; i < fields.size() && ok; ++i) {
      ok = detail::to_field(r, 0, static_cast<int>(i), fields[i].kind, values[i], e);
    }
    if (ok) ok = spec_.values().decode(values, v, e);
    if (!ok) {
      e.message = sql_->key_text(params) + ": " + e.message;
      return read_result_type::make_failed(read_status::permanent, std::move(e));
    }
    const int tok = static_cast<int>(fields.size());
    if (r.is_null(0, tok)) {
      return read_result_type::make_failed(
          read_status::permanent,
          {std::string(codec_error_code), sql_->key_text(params) + ": the version column is NULL"});
    }
    return read_result_type::make_found(std::move(v), detail::table_sql::parse_token(r.bytes(0, tok)));
  }

  write_result_type write_if_match(const Key& key, const table_token& token, const Value& value) {
    detail::pg_params params;
    if (auto e = bind_key(key, params); e || (e = bind_value(value, params))) return permanent(std::move(*e));
    sql_->bind_token_and_guards(token, params, true);
    exec_result r = conn_.exec(update_sql_.c_str(), params.view(), true);
    if (!r.ok()) return failed(std::move(r));
    return sql_->outcome(r, token, sql_->value_sizes());
  }

  write_result_type create_if_absent(const Key& key, const Value& value) {
    detail::pg_params params;
    if (auto e = bind_key(key, params); e || (e = bind_value(value, params))) return permanent(std::move(*e));
    exec_result r = conn_.exec(insert_sql_.c_str(), params.view(), true);
    if (!r.ok()) return failed(std::move(r));
    return sql_->created(r);
  }

  /// The blind upsert: the naive negative control only (no token, guard or cap).
  write_result_type overwrite(const Key& key, const Value& value) {
    detail::pg_params params;
    if (auto e = bind_key(key, params); e || (e = bind_value(value, params))) return permanent(std::move(*e));
    exec_result r = conn_.exec(upsert_sql_.c_str(), params.view(), true);
    if (!r.ok()) return failed(std::move(r));
    return write_result_type::make_applied(detail::table_sql::parse_token(r.bytes(0, 0)));
  }

  write_result_type erase_if_match(const Key& key, const table_token& token) {
    detail::pg_params params;
    if (auto e = bind_key(key, params)) return permanent(std::move(*e));
    sql_->bind_token_and_guards(token, params, false);
    exec_result r = conn_.exec(erase_sql_.c_str(), params.view(), true);
    if (!r.ok()) return failed(std::move(r));
    auto w = sql_->outcome(r, token, {});
    if (w.ok()) w.token.reset();  // the row is gone: no new token
    return w;
  }

  /// One conditional statement for `patch` (see table_patch.hpp), at `token`.
  write_result_type patch_if_match(const Key& key, const table_token& token, const table_patch& patch) {
    if (patch.report() != nullptr) patch.report()->clear();
    detail::pg_params params;
    if (auto e = bind_key(key, params)) return permanent(std::move(*e));
    sql_->bind_token_and_guards(token, params, false);
    detail::table_sql::patch_plan plan;
    store_error e;
    if (!sql_->plan_patch(patch, params, plan, e)) return permanent(std::move(e));
    exec_result r = conn_.exec(plan.sql.c_str(), params.view(), true);
    if (!r.ok()) return failed(std::move(r));
    auto w = sql_->outcome(r, token, plan.extras);
    if (w.ok() && patch.report() != nullptr) *patch.report() = sql_->report(r, plan);
    return w;
  }

 private:
  std::optional<store_error> bind_key(const Key& key, detail::pg_params& params) const {
    store_error e;
    std::vector<field_value> values;
    if (!spec_.keys().encode(key, values, e)) return e;
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (!params.put(sql_->key_param(i), std::move(values[i]), e)) return e;
    }
    return std::nullopt;
  }
  std::optional<store_error> bind_value(const Value& value, detail::pg_params& params) const {
    store_error e;
    std::vector<field_value> values;
    if (!spec_.values().encode(value, values, e)) return e;
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (!params.put(sql_->value_param(i), std::move(values[i]), e)) return e;
    }
    return std::nullopt;
  }

  static write_result_type failed(exec_result&& r) {
    // ON CONFLICT handles the key's own uniqueness: a unique violation here is another constraint's.
    const write_status s = r.error.code == "23505" ? write_status::permanent : r.failure;
    return write_result_type::make_failed(s, std::move(r.error));
  }
  static write_result_type permanent(store_error e) {
    return write_result_type::make_failed(write_status::permanent, std::move(e));
  }

  spec_type spec_;
  connection conn_;
  std::unique_ptr<detail::table_sql> sql_;
  std::string read_sql_, update_sql_, insert_sql_, upsert_sql_, erase_sql_;
};

}  // namespace noclobber::postgres
