// noclobber/adapters/table_patch.hpp — a sparse patch of a table row, and what it changed.
//
// Overview
// --------
// A `table_patch` is what the table stores' patch_if_match sends as ONE conditional statement
// at a token (adapters/sqlite/table_store.hpp, adapters/postgres/table_store.hpp): nothing of
// the record is read back to the client and rewritten, so a patch can only touch what it
// names.
//
//   noclobber::table_patch p;
//   p.set("backing_sql", noclobber::field_value::of_text(sql));   // a column, as a whole
//   p.merge("env").set_string("REGION", "eu-west-1")              // keys of a JSON object
//                 .set_json("REPLICAS", "3")
//                 .remove("DEBUG");
//   noclobber::change_report report;
//   p.report_to(&report);                                          // filled when it applies
//
// A merge sets and removes top-level keys of a JSON object column (PostgreSQL: `col || set -
// removed`; SQLite: json_patch), leaving every other key alone; a NULL column counts as {}.
// Values are JSON texts (set_string quotes a string for you); a value may not be JSON null (a
// merge patch cannot store null: RFC 7396 reads it as "remove"), and a key may be named once.
//
// The change report says, per key, what the statement did — from the row as it was under the
// write, so an audit line can be honest:
//   added          the key was absent and is now set
//   changed        the key held another value
//   unchanged      the key already held this value (a set that changed nothing)
//   deleted        the key was present and is gone
//   absent_delete  a remove of a key that was not there: a no-op, not a delete
// For a column `set`, the entry's key is empty and the kind is changed or unchanged.
// The report is written only when the patch applied; on any other outcome it is left empty.
//
// Thread safety: plain values. `report_to` stores a pointer: the report must outlive the call
// that applies the patch, and a patch shared by threads must not carry one.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <deque>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "noclobber/adapters/record_mapping.hpp"

namespace noclobber {

/// The store_error codes of a table store's own permanent outcomes.
namespace table_error {
inline constexpr std::string_view too_large = "too_large";    ///< a size cap refused the new value
inline constexpr std::string_view guard = "guard";            ///< a guard column refused the write
inline constexpr std::string_view not_object = "not_object";  ///< a merge target is not a JSON object
}  // namespace table_error

enum class change_kind : unsigned char { added, changed, unchanged, deleted, absent_delete };

[[nodiscard]] constexpr std::string_view to_string(change_kind k) noexcept {
  switch (k) {
    case change_kind::added:
      return "added";
    case change_kind::changed:
      return "changed";
    case change_kind::unchanged:
      return "unchanged";
    case change_kind::deleted:
      return "deleted";
    case change_kind::absent_delete:
      return "absent_delete";
  }
  return "?";
}

/// What an applied patch did, key by key.
struct change_report {
  struct entry {
    std::string column;
    std::string key;  // empty for a whole-column set
    change_kind kind = change_kind::unchanged;
    friend bool operator==(const entry&, const entry&) = default;
  };
  std::vector<entry> entries;

  [[nodiscard]] std::size_t count(change_kind k) const noexcept {
    return static_cast<std::size_t>(
        std::count_if(entries.begin(), entries.end(), [k](const entry& e) { return e.kind == k; }));
  }
  /// Keys whose value the patch stored anew (added + changed): the honest "keys set".
  [[nodiscard]] std::size_t keys_set() const noexcept {
    return count(change_kind::added) + count(change_kind::changed);
  }
  /// Keys that existed and were removed (absent_delete is not counted).
  [[nodiscard]] std::size_t keys_deleted() const noexcept { return count(change_kind::deleted); }
  void clear() noexcept { entries.clear(); }
};

namespace detail {
/// `s` as a JSON string literal (RFC 8259: quote, backslash and control characters escaped).
inline std::string json_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}
}  // namespace detail

/// See the overview.
class table_patch {
 public:
  struct column_set {
    std::string column;
    field_value value;
  };

  /// Sets and removes of the top-level keys of one JSON object column.
  class json_merge {
   public:
    explicit json_merge(std::string column) : column_(std::move(column)) {}

    /// Sets `key` to the JSON text `json` (an object, array, number, string literal, true/false).
    json_merge& set_json(std::string key, std::string json) {
      check_new(key);
      const auto first = json.find_first_not_of(" \t\r\n");
      const auto last = json.find_last_not_of(" \t\r\n");
      if (first == std::string::npos) {
        throw std::invalid_argument("noclobber::table_patch: the value of key '" + key + "' is empty");
      }
      if (std::string_view(json).substr(first, last - first + 1) == "null") {
        throw std::invalid_argument(
            "noclobber::table_patch: key '" + key +
            "' set to JSON null (a merge patch cannot store null; remove the key instead)");
      }
      sets_.emplace_back(std::move(key), std::move(json));
      return *this;
    }
    /// Sets `key` to the JSON string `value`.
    json_merge& set_string(std::string key, std::string_view value) {
      return set_json(std::move(key), detail::json_quote(value));
    }
    /// Removes `key` (a remove of an absent key is reported as absent_delete).
    json_merge& remove(std::string key) {
      check_new(key);
      removes_.push_back(std::move(key));
      return *this;
    }

    [[nodiscard]] const std::string& column() const noexcept { return column_; }
    [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& sets() const noexcept {
      return sets_;
    }
    [[nodiscard]] const std::vector<std::string>& removes() const noexcept { return removes_; }

    /// {"k": value, ...} — the sets.
    [[nodiscard]] std::string sets_document() const {
      std::string out = "{";
      for (const auto& [k, v] : sets_) {
        if (out.size() > 1) out += ',';
        out += detail::json_quote(k);
        out += ':';
        out += v;
      }
      return out + "}";
    }
    /// ["k", ...] — the removes.
    [[nodiscard]] std::string removes_document() const {
      std::string out = "[";
      for (const auto& k : removes_) {
        if (out.size() > 1) out += ',';
        out += detail::json_quote(k);
      }
      return out + "]";
    }
    /// {"k": null, ...} for each remove, and for each set whose value is an object: applied
    /// first, it makes a set of an object replace the old value instead of merging into it
    /// (RFC 7396 merges objects recursively).
    [[nodiscard]] std::string nulls_document() const {
      std::string out = "{";
      auto add = [&out](const std::string& k) {
        if (out.size() > 1) out += ',';
        out += detail::json_quote(k);
        out += ":null";
      };
      for (const auto& [k, v] : sets_) {
        if (v[v.find_first_not_of(" \t\r\n")] == '{') add(k);
      }
      for (const auto& k : removes_) add(k);
      return out + "}";
    }
    /// The RFC 7396 merge patch: sets, and null for each remove.
    [[nodiscard]] std::string merge_document() const {
      std::string out = sets_document();
      out.pop_back();
      for (const auto& k : removes_) {
        if (out.size() > 1) out += ',';
        out += detail::json_quote(k);
        out += ":null";
      }
      return out + "}";
    }

   private:
    void check_new(const std::string& key) const {
      const bool named =
          std::any_of(sets_.begin(), sets_.end(), [&](const auto& kv) { return kv.first == key; }) ||
          std::find(removes_.begin(), removes_.end(), key) != removes_.end();
      if (named) {
        throw std::invalid_argument("noclobber::table_patch: key '" + key + "' of column '" + column_ +
                                    "' is named twice in one merge");
      }
    }

    std::string column_;
    std::vector<std::pair<std::string, std::string>> sets_;
    std::vector<std::string> removes_;
  };

  /// Sets a whole column. A column may appear once, in a set or in a merge.
  table_patch& set(std::string column, field_value value) {
    check_new(column);
    sets_.push_back({std::move(column), std::move(value)});
    return *this;
  }
  /// The merge of JSON object column `column` (created on first use).
  json_merge& merge(const std::string& column) {
    for (json_merge& m : merges_) {
      if (m.column() == column) return m;
    }
    check_new(column);
    merges_.emplace_back(column);
    return merges_.back();
  }
  /// Where the store writes the change report when the patch applies (nullptr: nowhere).
  table_patch& report_to(change_report* report) noexcept {
    report_ = report;
    return *this;
  }

  [[nodiscard]] const std::vector<column_set>& sets() const noexcept { return sets_; }
  [[nodiscard]] const std::deque<json_merge>& merges() const noexcept { return merges_; }
  [[nodiscard]] change_report* report() const noexcept { return report_; }
  [[nodiscard]] bool empty() const noexcept {
    return sets_.empty() && std::all_of(merges_.begin(), merges_.end(), [](const json_merge& m) {
             return m.sets().empty() && m.removes().empty();
           });
  }

 private:
  void check_new(const std::string& column) const {
    const bool named =
        std::any_of(sets_.begin(), sets_.end(), [&](const column_set& s) { return s.column == column; }) ||
        std::any_of(merges_.begin(), merges_.end(),
                    [&](const json_merge& m) { return m.column() == column; });
    if (named) throw std::invalid_argument("noclobber::table_patch: column '" + column + "' is named twice");
  }

  std::vector<column_set> sets_;
  std::deque<json_merge> merges_;  // a deque: references from merge() stay valid
  change_report* report_ = nullptr;
};

}  // namespace noclobber
