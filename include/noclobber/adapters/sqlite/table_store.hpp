// noclobber/adapters/sqlite/table_store.hpp — an SQLite table you already have, as a store.
//
// Overview
// --------
// `sqlite::table_store<Value, Key>` reads and writes rows of an existing table through a
// table_spec (adapters/table_spec.hpp): key column(s), the value as one column or as several
// columns mapped to struct members, and a token (an integer version column, or — with no
// schema change — the mapped columns' previous values compared in the WHERE clause). It fulfils
// the whole store contract, so read_modify_write, patch_if_unchanged and the race harness run
// on it:
//
//   struct model { std::string description; std::optional<std::string> backing_sql; };
//   auto spec = noclobber::table_spec<model>("models").key("name")
//                   .column("description", &model::description)
//                   .column("backing_sql", &model::backing_sql)
//                   .version("revision");
//   noclobber::sqlite::table_store<model> models("app.db", spec);   // checks the schema now
//   auto r = noclobber::read_modify_write(models, "qb", [](const std::optional<model>& m) { ... });
//
// Construction checks the spec against the table (table_schema.hpp) and throws
// std::invalid_argument for a misfit: no such table or column, an affinity that does not fit a
// member, a key that is not unique, a version column that is not an INTEGER.
//
// Each write is one statement inside BEGIN IMMEDIATE … COMMIT (sqlite.hpp's transaction rule),
// with every condition in its WHERE clause:
//
//   read              SELECT <values>[, version] FROM t WHERE <key>
//   write_if_match    UPDATE t SET <values>[, version = version + 1]
//                     WHERE <key> AND <token> AND <guards> AND <caps> RETURNING <token>
//                     <token> is `version = ?`, or `c1 IS ? AND c2 IS ? …` (compare_values)
//   create_if_absent  INSERT … SELECT … WHERE <caps> ON CONFLICT (<key>) DO NOTHING RETURNING
//   erase_if_match    DELETE … WHERE <key> AND <token> AND <guards>
//   patch_if_match    UPDATE t SET c = ?, m = json_patch(json_patch(coalesce(m,'{}'), <nulls>),
//                     <sets>)[, version = version + 1] WHERE <key> AND <token> AND <guards> AND
//                     json_type(coalesce(m,'{}')) = 'object' AND <caps of the new values>
//                     (the change report is read in the same transaction, just before)
//   overwrite         INSERT … ON CONFLICT (<key>) DO UPDATE … (the naive negative control: no
//                     token, guard or cap)
//
// When an UPDATE or DELETE matches no row, one SELECT in the same transaction says why: absent,
// conflict (the token moved), or permanent with code "guard" (a guard column refused),
// "not_object" (a merge target holds JSON that is not an object) or "too_large" (a cap). A
// create that inserts nothing is `exists`, or "too_large".
//
// A stored value the mapping cannot decode is a `permanent` read, code "codec", naming the
// key and column; a constraint the table enforces itself (NOT NULL, CHECK, FOREIGN KEY) is
// `permanent` with SQLite's message.
//
// Thread safety: one table_store is one connection (SQLITE_OPEN_NOMUTEX): one thread at a
// time; give each writer its own, on the same file. Mapping codecs run on the calling thread;
// no other user code runs, and no in-process lock is taken.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "noclobber/adapters/record_mapping.hpp"
#include "noclobber/adapters/sqlite.hpp"
#include "noclobber/adapters/sqlite/table_schema.hpp"
#include "noclobber/adapters/sqlite/table_statements.hpp"
#include "noclobber/adapters/table_patch.hpp"
#include "noclobber/adapters/table_spec.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::sqlite {

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

  /// Opens `path` (store_options as for version_store; its `table` is not used) and checks
  /// `spec` against the table: std::invalid_argument for a misfit, std::runtime_error when
  /// SQLite refuses.
  table_store(const std::string& path, spec_type spec, store_options options = {})
      : spec_(std::move(spec)), db_(detail::open_connection(path, options)) {
    check_table(db_.get(), spec_);
    sql_ = std::make_unique<detail::table_sql>(spec_);
    auto p = [this](const std::string& s) { return detail::prepare(db_.get(), s); };
    read_ = p(sql_->read());
    update_ = p(sql_->update());
    insert_ = p(sql_->insert());
    upsert_ = p(sql_->upsert());
    erase_ = p(sql_->erase());
    probe_write_ = p(sql_->probe(sql_->value_cap_sizes()));
    probe_erase_ = p(sql_->probe({}));
    tx_ = std::make_unique<detail::transaction_statements>(db_.get());
  }

  table_store(table_store&&) noexcept = default;
  table_store& operator=(table_store&&) noexcept = default;

  [[nodiscard]] sqlite3* handle() const noexcept { return db_.get(); }
  [[nodiscard]] const spec_type& spec() const noexcept { return spec_; }

  read_result_type read(const Key& key) {
    detail::bound_params params;
    if (auto e = bind_key(key, params))
      return read_result_type::make_failed(read_status::permanent, std::move(*e));
    detail::stmt_use s(read_.get());
    params.bind_to(s.get());
    const int rc = sqlite3_step(s.get());
    if (rc == SQLITE_DONE) return read_result_type::make_absent();
    if (rc != SQLITE_ROW) {
      const write_status w = classify(rc, false);
      return read_result_type::make_failed(
          w == write_status::transient || w == write_status::transient_restart ? read_status::transient
                                                                               : read_status::permanent,
          detail::error_of(db_.get(), rc));
    }
    std::vector<field_value> values = detail::row_values(s.get(), 0, sql_->value_count());
    table_token token;
    Value v{};
    store_error e;
    if (!sql_->token_from_row(s.get(), values, token, e) || !spec_.values().decode(values, v, e)) {
      e.message = sql_->key_text(params) + ": " + e.message;
      return read_result_type::make_failed(read_status::permanent, std::move(e));
    }
    return read_result_type::make_found(std::move(v), std::move(token));
  }

  write_result_type write_if_match(const Key& key, const table_token& token, const Value& value) {
    detail::bound_params params;
    if (auto e = bind_key(key, params); e || (e = bind_value(value, params))) return permanent(std::move(*e));
    sql_->bind_token(token, params);
    sql_->bind_guards(params);
    return tx_->run(db_.get(), [&] {
      return changed_row(update_.get(), probe_write_.get(), params, token, sql_->value_cap_sizes());
    });
  }

  write_result_type create_if_absent(const Key& key, const Value& value) {
    detail::bound_params params;
    if (auto e = bind_key(key, params); e || (e = bind_value(value, params))) return permanent(std::move(*e));
    return tx_->run(db_.get(), [&]() -> write_result_type {
      {
        detail::stmt_use s(insert_.get());
        params.bind_to(s.get());
        const int rc = sqlite3_step(s.get());
        if (rc == SQLITE_ROW) return write_result_type::make_applied(sql_->token_from_returning(s.get()));
        if (rc != SQLITE_DONE) return failed(rc);
      }
      // Nothing inserted: the key exists, or a cap refused the value.
      detail::stmt_use probe(probe_write_.get());
      params.bind_to(probe.get());
      const int rc = sqlite3_step(probe.get());
      if (rc == SQLITE_ROW) return write_result_type::make_exists();
      if (rc != SQLITE_DONE) return failed(rc);
      return sql_->cap_failure(params, sql_->value_cap_sizes());
    });
  }

  /// The blind UPSERT: the naive negative control only (no token, guard or cap).
  write_result_type overwrite(const Key& key, const Value& value) {
    detail::bound_params params;
    if (auto e = bind_key(key, params); e || (e = bind_value(value, params))) return permanent(std::move(*e));
    return tx_->run(db_.get(), [&]() -> write_result_type {
      detail::stmt_use s(upsert_.get());
      params.bind_to(s.get());
      const int rc = sqlite3_step(s.get());
      if (rc == SQLITE_ROW) return write_result_type::make_applied(sql_->token_from_returning(s.get()));
      return failed(rc);
    });
  }

  write_result_type erase_if_match(const Key& key, const table_token& token) {
    detail::bound_params params;
    if (auto e = bind_key(key, params)) return permanent(std::move(*e));
    sql_->bind_token(token, params);
    sql_->bind_guards(params);
    return tx_->run(db_.get(), [&]() -> write_result_type {
      auto w = changed_row(erase_.get(), probe_erase_.get(), params, token, {});
      if (w.ok()) w.token.reset();  // the row is gone: no new token
      return w;
    });
  }

  /// One conditional UPDATE for `patch` (see table_patch.hpp), at `token`.
  write_result_type patch_if_match(const Key& key, const table_token& token, const table_patch& patch) {
    if (patch.report() != nullptr) patch.report()->clear();
    detail::bound_params params;
    if (auto e = bind_key(key, params)) return permanent(std::move(*e));
    sql_->bind_token(token, params);
    sql_->bind_guards(params);
    detail::patch_plan plan =
        sql_->plan_patch(patch, params);  // throws for a patch that names no mapped column
    detail::patch_statements& st = patch_statements(plan);
    change_report report;
    auto w = tx_->run(db_.get(), [&]() -> write_result_type {
      if (const int rc = detail::read_report(st, plan, params, report); rc != SQLITE_OK) return failed(rc);
      return changed_row(st.update.get(), st.probe.get(), params, token, plan.extras);
    });
    if (w.ok() && patch.report() != nullptr) *patch.report() = std::move(report);
    return w;
  }

 private:
  // Runs an UPDATE / DELETE with RETURNING; when it matched no row, the probe says why.
  write_result_type changed_row(sqlite3_stmt* statement, sqlite3_stmt* probe,
                                const detail::bound_params& params, const table_token& token,
                                const std::vector<detail::probe_extra>& extras) {
    {
      detail::stmt_use s(statement);
      params.bind_to(s.get());
      const int rc = sqlite3_step(s.get());
      if (rc == SQLITE_ROW) return write_result_type::make_applied(sql_->token_from_returning(s.get()));
      if (rc != SQLITE_DONE) return failed(rc);
    }
    detail::stmt_use p(probe);
    params.bind_to(p.get());
    const int rc = sqlite3_step(p.get());
    if (rc == SQLITE_DONE) return write_result_type::make_absent();
    if (rc != SQLITE_ROW) return failed(rc);
    return sql_->diagnose(p.get(), token, params, extras);
  }

  detail::patch_statements& patch_statements(const detail::patch_plan& plan) {
    for (auto& entry : patch_cache_) {
      if (entry.update_sql == plan.update_sql) return entry;
    }
    if (patch_cache_.size() >= 32) patch_cache_.clear();  // a bounded cache of statement shapes
    patch_cache_.push_back(detail::prepare_patch(db_.get(), plan));
    return patch_cache_.back();
  }

  std::optional<store_error> bind_key(const Key& key, detail::bound_params& params) const {
    store_error e;
    std::vector<field_value> values;
    if (!spec_.keys().encode(key, values, e)) return e;
    for (std::size_t i = 0; i < values.size(); ++i) params.put(sql_->key_param(i), std::move(values[i]));
    return std::nullopt;
  }
  std::optional<store_error> bind_value(const Value& value, detail::bound_params& params) const {
    store_error e;
    std::vector<field_value> values;
    if (!spec_.values().encode(value, values, e)) return e;
    for (std::size_t i = 0; i < values.size(); ++i) params.put(sql_->value_param(i), std::move(values[i]));
    return std::nullopt;
  }
  write_result_type failed(int rc) const {
    return write_result_type::make_failed(classify(rc, false), detail::error_of(db_.get(), rc));
  }
  static write_result_type permanent(store_error e) {
    return write_result_type::make_failed(write_status::permanent, std::move(e));
  }

  spec_type spec_;
  detail::db_ptr db_;  // declared before the statements: outlives them
  std::unique_ptr<detail::table_sql> sql_;
  detail::stmt_ptr read_, update_, insert_, upsert_, erase_, probe_write_, probe_erase_;
  std::vector<detail::patch_statements> patch_cache_;
  std::unique_ptr<detail::transaction_statements> tx_;
};

}  // namespace noclobber::sqlite
