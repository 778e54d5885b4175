// noclobber/adapters/record_mapping.hpp — struct members <-> named fields (columns, hash fields).
//
// Overview
// --------
// A `record_mapping<Record>` says, in a few declarative lines, which member of a struct lives in
// which named field of a store, and how it is converted. The SQLite and PostgreSQL table stores
// (adapters/sqlite/table_store.hpp, adapters/postgres/table_store.hpp) use it for columns, the
// Redis hash store (adapters/redis/hash_store.hpp) for hash fields: one design for all three.
//
//   noclobber::record_mapping<model> m;
//   m.column("description", &model::description)          // std::string        -> text
//    .column("revision_note", &model::note)               // std::optional<...> -> NULL allowed
//    .column("columns", &model::columns, noclobber::json::codec<std::vector<std::string>>{})
//    .column("weight", &model::weight);                    // double             -> real
//
// Member types and the kind of field they need:
//
//   std::string                      text (`.column(name, member, field_kind::blob)`: bytes,
//                                    `field_kind::json`: JSON text you encode yourself)
//   bool                             boolean (0/1 where the store has no boolean)
//   integral types (int64 etc.)      integer; a stored value outside the member's range is an error
//   float, double                    real
//   std::optional<any of the above>  the same kind; NULL (a missing hash field) <-> nullopt
//   any M, with a codec for M        json: the codec's text (noclobber/codec.hpp)
//
// `whole(name)` maps the record itself to one field (a std::string record, an integer key), or
// through a codec (`whole(name, json::codec<model>{})`: the record as one JSON column).
//
// Conversions never guess: a field holding a value of another type (text in an integer
// column, NULL in a non-optional member) is an error naming the field, reported by the stores
// as a `permanent` read with code "codec" — the record is not replaced.
//
// Thread safety: a mapping is built once and then only read; reading it from many threads is
// safe. Codecs given to `column` run on the calling thread.
#pragma once

#include <any>
#include <charconv>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "noclobber/codec.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber {

/// One field's value as a database holds it.
struct field_value {
  enum class type : unsigned char { null, integer, real, text, blob };
  type kind = type::null;
  std::int64_t integer = 0;
  double real = 0.0;
  std::string bytes;  // text or blob

  [[nodiscard]] static field_value null_value() { return {}; }
  [[nodiscard]] static field_value of_integer(std::int64_t v) { return {type::integer, v, 0.0, {}}; }
  [[nodiscard]] static field_value of_real(double v) { return {type::real, 0, v, {}}; }
  [[nodiscard]] static field_value of_text(std::string v) { return {type::text, 0, 0.0, std::move(v)}; }
  [[nodiscard]] static field_value of_blob(std::string v) { return {type::blob, 0, 0.0, std::move(v)}; }
  [[nodiscard]] bool is_null() const noexcept { return kind == type::null; }

  /// "NULL", "integer 5", "text 'abc'" (cut at 40 bytes), "blob of 12 bytes": for messages.
  [[nodiscard]] std::string describe() const {
    switch (kind) {
      case type::null:
        return "NULL";
      case type::integer:
        return "integer " + std::to_string(integer);
      case type::real:
        return "real " + std::to_string(real);
      case type::text:
        return "text '" + (bytes.size() > 40 ? bytes.substr(0, 40) + "…" : bytes) + "'";
      case type::blob:
        return "blob of " + std::to_string(bytes.size()) + " bytes";
    }
    return "?";
  }
  friend bool operator==(const field_value&, const field_value&) = default;
};

/// The kind of field a member needs.
enum class field_kind : unsigned char { integer, boolean, real, text, blob, json };

[[nodiscard]] constexpr std::string_view to_string(field_kind k) noexcept {
  switch (k) {
    case field_kind::integer:
      return "integer";
    case field_kind::boolean:
      return "boolean";
    case field_kind::real:
      return "real";
    case field_kind::text:
      return "text";
    case field_kind::blob:
      return "blob";
    case field_kind::json:
      return "json";
  }
  return "?";
}

namespace detail {

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {
  using inner = T;
};

template <class T>
concept plain_scalar = std::same_as<T, std::string> || std::same_as<T, bool> ||
                       (std::integral<T> && !std::same_as<T, char>) ||
                       std::floating_point<T>;

template <class T>
constexpr field_kind natural_kind() {
  if constexpr (std::same_as<T, std::string>) {
    return field_kind::text;
  } else if constexpr (std::same_as<T, bool>) {
    return field_kind::boolean;
  } else if constexpr (std::integral<T>) {
    return field_kind::integer;
  } else {
    return field_kind::real;
  }
}

inline std::string field_message(std::string_view field, std::string_view what) {
  return "field '" + std::string(field) + "': " + std::string(what);
}

inline bool field_failed(store_error& e, std::string_view field, std::string_view what) {
  e.code = std::string(codec_error_code);
  e.message = field_message(field, what);
  return false;
}

/// A plain scalar -> its field value.
template <class T>
field_value scalar_to_field(const T& v, field_kind kind) {
  if constexpr (std::same_as<T, std::string>) {
    return kind == field_kind::blob ? field_value::of_blob(v) : field_value::of_text(v);
  } else if constexpr (std::same_as<T, bool>) {
    return field_value::of_integer(v ? 1 : 0);
  } else if constexpr (std::integral<T>) {
    if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(std::int64_t)) {
      if (v > static_cast<T>(std::numeric_limits<std::int64_t>::max())) {
        throw codec_error("value " + std::to_string(v) + " does not fit a 64-bit signed integer");
      }
    }
    return field_value::of_integer(static_cast<std::int64_t>(v));
  } else {
    return field_value::of_real(static_cast<double>(v));
  }
}

/// A field value -> a plain scalar; false (and `e`) when the stored value is of another type.
template <class T>
bool field_to_scalar(const field_value& f, T& out, std::string_view name, store_error& e) {
  if constexpr (std::same_as<T, std::string>) {
    if (f.kind != field_value::type::text && f.kind != field_value::type::blob) {
      return field_failed(e, name, "holds " + f.describe() + ", expected text");
    }
    out = f.bytes;
    return true;
  } else if constexpr (std::same_as<T, bool>) {
    if (f.kind != field_value::type::integer || (f.integer != 0 && f.integer != 1)) {
      return field_failed(e, name, "holds " + f.describe() + ", expected a boolean (0 or 1)");
    }
    out = f.integer == 1;
    return true;
  } else if constexpr (std::integral<T>) {
    if (f.kind != field_value::type::integer) {
      return field_failed(e, name, "holds " + f.describe() + ", expected an integer");
    }
    if (!std::in_range<T>(f.integer)) {
      return field_failed(e, name, "holds " + f.describe() + ", which does not fit the member's type");
    }
    out = static_cast<T>(f.integer);
    return true;
  } else {
    if (f.kind == field_value::type::real) {
      out = static_cast<T>(f.real);
    } else if (f.kind == field_value::type::integer) {
      out = static_cast<T>(f.integer);
    } else {
      return field_failed(e, name, "holds " + f.describe() + ", expected a number");
    }
    return true;
  }
}

}  // namespace detail

/// Which member of Record lives in which named field, and how it converts. See the overview.
template <class Record>
class record_mapping {
 public:
  using record_type = Record;

  struct field {
    std::string name;
    field_kind kind = field_kind::text;
    bool nullable = false;  // the member is a std::optional
    /// member -> field value; false with `e` set when it cannot be encoded.
    std::function<bool(const Record&, field_value&, store_error&)> get;
    /// field value -> member; false with `e` set when the stored value does not fit.
    std::function<bool(const field_value&, Record&, store_error&)> set;
    std::any member;  // the member pointer (find(member)); empty for whole()
  };

  // clang-format off
  /// A member of a plain type (or std::optional of one), in its natural kind.
  template <class M, class R = Record>
  requires std::is_class_v<R> &&
           (detail::plain_scalar<M> || detail::plain_scalar<typename detail::is_optional<M>::inner>)
  record_mapping& column(std::string name, M R::*member) {
    return add(std::move(name), member, [member](auto& r) -> auto& { return r.*member; }, natural<M>());
  }

  /// A std::string member (or optional) stored as `kind`: text, blob or json.
  template <class M, class R = Record>
  requires std::is_class_v<R> && (std::same_as<M, std::string> || std::same_as<M, std::optional<std::string>>)
  record_mapping& column(std::string name, M R::*member, field_kind kind) {
    if (kind != field_kind::text && kind != field_kind::blob && kind != field_kind::json) {
      throw std::invalid_argument("noclobber::record_mapping: field '" + name +
                                  "': a string member is text, blob or json, not " + std::string(to_string(kind)));
    }
    return add(std::move(name), member, [member](auto& r) -> auto& { return r.*member; }, kind);
  }

  /// A member of any type, as the text of `c` (a codec<C, M>, e.g. json::codec<M>): kind json.
  template <class M, class C, class R = Record>
  requires std::is_class_v<R> && codec<C, M, std::string>
  record_mapping& column(std::string name, M R::*member, C c) {
    return add_coded(std::move(name), member, [member](auto& r) -> auto& { return r.*member; }, std::move(c));
  }
  // clang-format on

  /// The record itself is the field: a plain Record (std::string, an integer).
  record_mapping& whole(std::string name) requires detail::plain_scalar<Record> {
    return add(
        std::move(name), std::any(), [](auto& r) -> auto& { return r; }, natural<Record>());
  }
  record_mapping& whole(std::string name, field_kind kind) requires std::same_as<Record, std::string> {
    return add(
        std::move(name), std::any(), [](auto& r) -> auto& { return r; }, kind);
  }
  /// The record itself, through a codec (the whole record as one JSON/text field).
  template <class C>
  requires codec<C, Record, std::string> record_mapping& whole(std::string name, C c) {
    return add_coded(
        std::move(name), std::any(), [](auto& r) -> auto& { return r; }, std::move(c));
  }

  [[nodiscard]] const std::vector<field>& fields() const noexcept { return fields_; }
  [[nodiscard]] bool empty() const noexcept { return fields_.empty(); }

  /// The field a member is mapped to, or nullptr.
  template <class M, class R = Record>
  requires std::is_class_v<R>
  [[nodiscard]] const field* find(M R::*member) const {
    for (const field& f : fields_) {
      if (const auto* p = std::any_cast<M R::*>(&f.member); p != nullptr && *p == member) return &f;
    }
    return nullptr;
  }
  [[nodiscard]] const field* find(std::string_view name) const {
    for (const field& f : fields_) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }

  /// The field `member` is mapped to, and `v` converted as the mapping says: what a sparse patch
  /// of that member sets. std::invalid_argument (naming `who`) when the member is not mapped or
  /// `v` cannot be converted.
  // clang-format off
  template <class M, class V, class R = Record>
  requires std::is_class_v<R>
  [[nodiscard]] std::pair<std::string, field_value> member_field(M R::*member, V&& v,
                                                                 std::string_view who) const {
    // clang-format on
    const field* f = find(member);
    if (f == nullptr) {
      throw std::invalid_argument(std::string(who) + ": that member of the value is not mapped to a field");
    }
    Record record{};
    record.*member = std::forward<V>(v);
    field_value out;
    store_error e;
    if (!f->get(record, out, e)) throw std::invalid_argument(std::string(who) + ": " + e.message);
    return {f->name, std::move(out)};
  }

  /// Every field of `r`, in order; false (and `e`) when one cannot be encoded.
  bool encode(const Record& r, std::vector<field_value>& out, store_error& e) const {
    out.clear();
    out.reserve(fields_.size());
    for (const field& f : fields_) {
      out.emplace_back();
      if (!f.get(r, out.back(), e)) return false;
    }
    return true;
  }

  /// `values` (one per field, in order) into `r`; false (and `e`) at the first that does not fit.
  bool decode(const std::vector<field_value>& values, Record& r, store_error& e) const {
    if (values.size() != fields_.size()) {
      e = {std::string(codec_error_code),
           "expected " + std::to_string(fields_.size()) + " fields, got " + std::to_string(values.size())};
      return false;
    }
    for (std::size_t i = 0; i < fields_.size(); ++i) {
      if (!fields_[i].set(values[i], r, e)) return false;
    }
    return true;
  }

 private:
  template <class M>
  static constexpr field_kind natural() {
    if constexpr (detail::is_optional<M>::value) {
      return detail::natural_kind<typename detail::is_optional<M>::inner>();
    } else {
      return detail::natural_kind<M>();
    }
  }

  void check_new(const std::string& name) const {
    if (name.empty()) throw std::invalid_argument("noclobber::record_mapping: a field name is empty");
    if (find(name) != nullptr) {
      throw std::invalid_argument("noclobber::record_mapping: field '" + name + "' is mapped twice");
    }
  }

  // A plain (or optional plain) member reached through `access(record) -> M&`.
  template <class Access>
  record_mapping& add(std::string name, std::any member, Access access, field_kind kind) {
    check_new(name);
    using M = std::remove_cvref_t<decltype(access(std::declval<Record&>()))>;
    field f;
    f.name = name;
    f.kind = kind;
    f.nullable = detail::is_optional<M>::value;
    f.member = std::move(member);
    f.get = [access, kind, name](const Record& r, field_value& out, store_error& e) {
      const M& m = access(const_cast<Record&>(r));  // read only
      try {
        if constexpr (detail::is_optional<M>::value) {
          out = m ? detail::scalar_to_field(*m, kind) : field_value::null_value();
        } else {
          out = detail::scalar_to_field(m, kind);
        }
      } catch (const codec_error& x) {
        return detail::field_failed(e, name, x.what());
      }
      return true;
    };
    f.set = [access, name](const field_value& v, Record& r, store_error& e) {
      M& m = access(r);
      if constexpr (detail::is_optional<M>::value) {
        if (v.is_null()) {
          m.reset();
          return true;
        }
        typename detail::is_optional<M>::inner inner{};
        if (!detail::field_to_scalar(v, inner, name, e)) return false;
        m = std::move(inner);
        return true;
      } else {
        if (v.is_null())
          return detail::field_failed(e, name, "is NULL, but the member is not a std::optional");
        return detail::field_to_scalar(v, m, name, e);
      }
    };
    fields_.push_back(std::move(f));
    return *this;
  }

  // A member of any type through codec `c` (text).
  template <class Access, class C>
  record_mapping& add_coded(std::string name, std::any member, Access access, C c) {
    check_new(name);
    using M = std::remove_cvref_t<decltype(access(std::declval<Record&>()))>;
    field f;
    f.name = name;
    f.kind = field_kind::json;
    f.member = std::move(member);
    f.get = [access, c, name](const Record& r, field_value& out, store_error& e) {
      const M& m = access(const_cast<Record&>(r));  // read only
      std::optional<std::string> text = run_encode<std::string>(c, m, e, "field '" + name + "'");
      if (!text) return false;
      out = field_value::of_text(std::move(*text));
      return true;
    };
    f.set = [access, c, name](const field_value& v, Record& r, store_error& e) {
      if (v.kind != field_value::type::text && v.kind != field_value::type::blob) {
        return detail::field_failed(e, name, "holds " + v.describe() + ", expected text for the codec");
      }
      std::optional<M> m = run_decode<M>(c, v.bytes, e, "field '" + name + "'");
      if (!m) return false;
      access(r) = std::move(*m);
      return true;
    };
    fields_.push_back(std::move(f));
    return *this;
  }

  std::vector<field> fields_;
};

}  // namespace noclobber
