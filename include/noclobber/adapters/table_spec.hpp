// noclobber/adapters/table_spec.hpp — a table the user already has, as a store: one description
// shared by the SQLite and PostgreSQL table stores.
//
// Overview
// --------
// A `table_spec<Value, Key>` names an existing table, its key column(s), how the value maps
// onto columns (record_mapping.hpp), and what serves as the version token:
//
//   auto models = noclobber::table_spec<model>("models")
//                     .key("name")                                   // Key = std::string
//                     .column("description", &model::description)
//                     .column("columns", &model::columns, noclobber::json::codec<std::vector<std::string>>{})
//                     .column("backing_sql", &model::backing_sql)
//                     .version("revision");                          // an integer column
//
//   noclobber::table_spec<run, run_key>("import_runs")               // a composite key
//       .key("source_id", &run_key::source_id).key("content_hash", &run_key::content_hash)
//       .column("state", &run::state) ...
//
// Tokens (pick one):
//   version(column, first = 1)  an integer column; every write sets it to old + 1 (a create to
//                               `first`). Tokens repeat if a row is erased and created again.
//   xmin()                      PostgreSQL only: the row's system column xmin (the id of the
//                               transaction that wrote it): no schema change. 32-bit, it wraps
//                               after 2^32 transactions, so it is compared for equality only.
//   compare_values()            SQLite only (a table with no version column and no schema change):
//                               the token is the mapped columns' values as read, and a write
//                               applies only if every one is still the same (`IS`, so NULLs
//                               compare). A value changed and changed back is not seen (ABA):
//                               harmless for read-modify-write, which then computed from the
//                               value that is there.
//
// Guards and caps, checked by the database under every conditional write, in its WHERE clause:
//   require_not(column, value)  the write applies only while `column` is not `value` (compared
//   require(column, value)      as the column's own type); otherwise `permanent`, code "guard"
//                               (a stack mid-teardown refuses the patch)
//   max_bytes(column, n)        the column's new value may not exceed n bytes (the database's own
//                               text of it: jsonb is measured as PostgreSQL prints it);
//                               otherwise `permanent`, code "too_large"
//
// Nothing is checked here but the spec's own consistency; the stores check it against the
// database when they are constructed (no such table or column, a type that does not fit, a key
// that is not unique, a version column that is not an integer) and throw std::invalid_argument
// naming what is wrong — never at the first write.
//
// Thread safety: a spec is built once, then only read (and copied into each store).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "noclobber/adapters/record_mapping.hpp"
#include "noclobber/adapters/table_patch.hpp"

namespace noclobber {

/// What serves as a table row's version token.
enum class table_token_kind : unsigned char { none, version_column, xmin, compare_values };

/// A table store's token: a version (a version column, or PostgreSQL's xmin), or the mapped
/// columns' values as read (compare_values).
struct table_token {
  std::int64_t number = 0;
  std::vector<field_value> image;
  friend bool operator==(const table_token&, const table_token&) = default;
};

/// A condition on a column checked under every write: `column` = value (require) or not.
struct column_guard {
  std::string column;
  std::string value;
  bool must_equal = false;
};

struct column_cap {
  std::string column;
  std::size_t max_bytes = 0;
};

/// See the overview.
template <class Value, class Key = std::string>
class table_spec {
 public:
  using value_type = Value;
  using key_type = Key;

  explicit table_spec(std::string table) : table_(std::move(table)) {
    if (table_.empty()) throw std::invalid_argument("noclobber::table_spec: the table name is empty");
  }

  /// The one key column, for a plain Key (std::string, an integer).
  table_spec& key(std::string column) requires detail::plain_scalar<Key> {
    keys_.whole(std::move(column));
    return *this;
  }
  /// One column of a composite key: a member of Key.
  // clang-format off
  template <class M, class K = Key>
  requires std::is_class_v<K>
  table_spec& key(std::string column, M K::*member) {
    // clang-format on
    keys_.column(std::move(column), member);
    return *this;
  }

  /// A value column; the arguments are record_mapping::column's.
  template <class... A>
  table_spec& column(A&&... a) {
    values_.column(std::forward<A>(a)...);
    return *this;
  }
  /// The whole value in one column; the arguments are record_mapping::whole's.
  template <class... A>
  table_spec& whole(A&&... a) {
    values_.whole(std::forward<A>(a)...);
    return *this;
  }

  table_spec& version(std::string column, std::int64_t first = 1) {
    set_token(table_token_kind::version_column);
    version_column_ = std::move(column);
    first_version_ = first;
    return *this;
  }
  table_spec& xmin() {
    set_token(table_token_kind::xmin);
    return *this;
  }
  table_spec& compare_values() {
    set_token(table_token_kind::compare_values);
    return *this;
  }

  table_spec& require_not(std::string column, std::string value) {
    guards_.push_back({std::move(column), std::move(value), false});
    return *this;
  }
  table_spec& require(std::string column, std::string value) {
    guards_.push_back({std::move(column), std::move(value), true});
    return *this;
  }
  table_spec& max_bytes(std::string column, std::size_t bytes) {
    if (bytes == 0) throw std::invalid_argument("noclobber::table_spec: max_bytes of '" + column + "' is 0");
    caps_.push_back({std::move(column), bytes});
    return *this;
  }

  [[nodiscard]] const std::string& table() const noexcept { return table_; }
  [[nodiscard]] const record_mapping<Key>& keys() const noexcept { return keys_; }
  [[nodiscard]] const record_mapping<Value>& values() const noexcept { return values_; }
  [[nodiscard]] table_token_kind token() const noexcept { return token_; }
  [[nodiscard]] const std::string& version_column() const noexcept { return version_column_; }
  [[nodiscard]] std::int64_t first_version() const noexcept { return first_version_; }
  [[nodiscard]] const std::vector<column_guard>& guards() const noexcept { return guards_; }
  [[nodiscard]] const std::vector<column_cap>& caps() const noexcept { return caps_; }

  /// The cap of `column`, or 0 when it has none.
  [[nodiscard]] std::size_t cap_of(const std::string& column) const noexcept {
    for (const column_cap& c : caps_) {
      if (c.column == column) return c.max_bytes;
    }
    return 0;
  }

  /// Adds to `p` the set of `member`'s column to `v`, converted as the mapping says.
  // clang-format off
  template <class M, class V, class R = Value>
  requires std::is_class_v<R>
  table_patch& set(table_patch& p, M R::*member, V&& v) const {
    // clang-format on
    auto [name, value] = values_.member_field(member, std::forward<V>(v), "noclobber::table_spec::set");
    return p.set(std::move(name), std::move(value));
  }

  /// Throws std::invalid_argument when the spec itself is incomplete or contradictory.
  void check(std::string_view who) const {
    auto fail = [&](const std::string& what) {
      throw std::invalid_argument(std::string(who) + ": table '" + table_ + "': " + what);
    };
    if (keys_.empty()) fail("no key column (table_spec::key)");
    if (values_.empty()) fail("no value column (table_spec::column or ::whole)");
    if (token_ == table_token_kind::none) fail("no token (table_spec::version, ::xmin or ::compare_values)");
    for (const auto& f : values_.fields()) {
      if (keys_.find(f.name) != nullptr) fail("column '" + f.name + "' is both a key and a value column");
      if (token_ == table_token_kind::version_column && f.name == version_column_) {
        fail("the version column '" + f.name + "' is also a value column");
      }
    }
    for (const auto& c : caps_) {
      if (values_.find(c.column) == nullptr)
        fail("max_bytes names '" + c.column + "', which is not a value column");
    }
  }

 private:
  void set_token(table_token_kind k) {
    if (token_ != table_token_kind::none) {
      throw std::invalid_argument("noclobber::table_spec: table '" + table_ + "' is given two tokens");
    }
    token_ = k;
  }

  std::string table_;
  record_mapping<Key> keys_;
  record_mapping<Value> values_;
  table_token_kind token_ = table_token_kind::none;
  std::string version_column_;
  std::int64_t first_version_ = 1;
  std::vector<column_guard> guards_;
  std::vector<column_cap> caps_;
};

}  // namespace noclobber
