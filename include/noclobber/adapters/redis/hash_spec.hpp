// noclobber/adapters/redis/hash_spec.hpp — which struct member lives in which field of a Redis
// hash, which field holds the version, and how each member is written as hash text.
//
// Overview
// --------
// A `redis::hash_spec<Record>` is the Redis form of a table_spec (adapters/table_spec.hpp): the
// members of a struct mapped to fields of one hash (record_mapping.hpp, the same declarative
// lines as for table columns), plus the field that holds the record's version:
//
//   auto sessions = noclobber::redis::hash_spec<session>()
//                       .field("user", &session::user)                     // text
//                       .field("items", &session::items)                   // integer
//                       .field("cart", &session::cart, noclobber::json::codec<cart>{})  // JSON
//                       .field("coupon", &session::coupon)                 // optional: HDEL when empty
//                       .version("version");                               // the default name
//
// Redis keeps every hash field as a string, so each kind has one text form:
//   integer, boolean   decimal ("0"/"1" for a boolean), read back with std::from_chars: the
//                      whole text must be a number that fits the member
//   real               the shortest text that reads back to the same double (std::to_chars)
//   text, json, blob   the bytes themselves
//   NULL               no field: an empty std::optional member is HDEL'd, a missing field reads
//                      back as nullopt (and as an error for a member that is not optional)
// The version field holds a decimal integer written only by noclobber (old + 1 on every write,
// `first` on a create); a version field that holds anything else is an error, not a guess.
// Fields of the hash that the spec does not map are left alone by every write but erase (DEL).
//
// Thread safety: a spec is built once, then only read (and copied into each store).
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "noclobber/adapters/record_mapping.hpp"
#include "noclobber/adapters/table_patch.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::redis {

/// See the overview.
template <class Record>
class hash_spec {
 public:
  using value_type = Record;

  /// A field; the arguments are record_mapping::column's (a member, and a kind or a codec).
  template <class... A>
  hash_spec& field(A&&... a) {
    values_.column(std::forward<A>(a)...);
    return *this;
  }
  /// The whole record in one field; the arguments are record_mapping::whole's.
  template <class... A>
  hash_spec& whole(A&&... a) {
    values_.whole(std::forward<A>(a)...);
    return *this;
  }
  /// The field that holds the version (default "version"), and the version a create writes.
  hash_spec& version(std::string field, std::int64_t first = 1) {
    if (field.empty())
      throw std::invalid_argument("noclobber::redis::hash_spec: the version field name is empty");
    version_field_ = std::move(field);
    first_version_ = first;
    return *this;
  }

  [[nodiscard]] const record_mapping<Record>& values() const noexcept { return values_; }
  [[nodiscard]] const std::string& version_field() const noexcept { return version_field_; }
  [[nodiscard]] std::int64_t first_version() const noexcept { return first_version_; }

  /// Adds to `p` the set of `member`'s field to `v`, converted as the mapping says.
  // clang-format off
  template <class M, class V, class R = Record>
  requires std::is_class_v<R>
  table_patch& set(table_patch& p, M R::*member, V&& v) const {
    // clang-format on
    auto [name, value] = values_.member_field(member, std::forward<V>(v), "noclobber::redis::hash_spec::set");
    return p.set(std::move(name), std::move(value));
  }

  /// Throws std::invalid_argument (naming `who`) when the spec maps nothing, or maps the version
  /// field as a member.
  void check(std::string_view who) const {
    if (values_.empty()) {
      throw std::invalid_argument(std::string(who) + ": the hash_spec maps no field (hash_spec::field)");
    }
    if (values_.find(version_field_) != nullptr) {
      throw std::invalid_argument(std::string(who) + ": the version field '" + version_field_ +
                                  "' is also a member's field");
    }
  }

 private:
  record_mapping<Record> values_;
  std::string version_field_ = "version";
  std::int64_t first_version_ = 1;
};

namespace detail {

/// A field value as hash text; nullopt for NULL (the field is removed).
inline std::optional<std::string> to_hash_text(const field_value& v) {
  switch (v.kind) {
    case field_value::type::null:
      return std::nullopt;
    case field_value::type::integer:
      return std::to_string(v.integer);
    case field_value::type::real: {
      char buf[64];
      const auto r = std::to_chars(buf, buf + sizeof buf, v.real);
      return std::string(buf, r.ptr);
    }
    case field_value::type::text:
    case field_value::type::blob:
      return v.bytes;
  }
  return std::nullopt;
}

/// Hash text (nullopt: no such field) as a value of `kind`; false with `e` (code "codec", naming
/// the field) when the text is not of that kind.
inline bool from_hash_text(const std::optional<std::string_view>& text, field_kind kind,
                           std::string_view name, field_value& out, store_error& e) {
  if (!text) {
    out = field_value::null_value();
    return true;
  }
  const char* first = text->data();
  const char* last = first + text->size();
  auto whole_number = [&](auto& x) {
    const auto r = std::from_chars(first, last, x);
    return r.ec == std::errc() && r.ptr == last;
  };
  switch (kind) {
    case field_kind::integer:
    case field_kind::boolean: {
      std::int64_t x = 0;
      if (!whole_number(x)) {
        return noclobber::detail::field_failed(
            e, name, "holds '" + std::string(text->substr(0, 40)) + "', expected an integer");
      }
      out = field_value::of_integer(x);
      return true;
    }
    case field_kind::real: {
      double x = 0;
      if (!whole_number(x)) {
        return noclobber::detail::field_failed(
            e, name, "holds '" + std::string(text->substr(0, 40)) + "', expected a number");
      }
      out = field_value::of_real(x);
      return true;
    }
    case field_kind::blob:
      out = field_value::of_blob(std::string(*text));
      return true;
    case field_kind::text:
    case field_kind::json:
      out = field_value::of_text(std::string(*text));
      return true;
  }
  return noclobber::detail::field_failed(e, name, "has an unknown kind");
}

/// The version field's text as a version: a canonical decimal int64 (what noclobber writes).
inline std::optional<std::int64_t> parse_version(std::string_view text) {
  std::int64_t v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size() || std::to_string(v) != text)
    return std::nullopt;
  return v;
}

}  // namespace detail
}  // namespace noclobber::redis
