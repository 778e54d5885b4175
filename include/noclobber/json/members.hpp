// noclobber/json/members.hpp — strict reads of JSON that comes from elsewhere (a server's answer,
// a history file, a stored record), and of its members, over nlohmann/json 3.11.
//
// Overview
// --------
//   parse_text(text)                the JSON value, or nullopt when `text` is not RFC 8259 JSON
//   parse_strict(text)              the same, throwing: nlohmann's parse_error, or
//                                   std::invalid_argument for a NUL byte
//                                   nlohmann/json stops reading at a NUL byte as at the end of the
//                                   input, so "{}\0anything" would parse as {}; a NUL is never
//                                   part of JSON text (no whitespace; inside a string it must be
//                                   escaped), so both refuse text that has one.
//   int64_member(obj, "revision")   an int64: a JSON integer, or a JSON string of an optional '-'
//                                   and digits (how etcd's gateway and other proto3 JSON send
//                                   int64); nullopt for anything else — a fraction, an exponent, a
//                                   sign '+', an empty string, a value outside int64's range —
//                                   never a rounded or wrapped number
//   string_member(obj, "message")   a pointer to the string, or nullptr when it is absent or not a
//                                   string
// Both answer "not there" for an `obj` that is not an object.
//
// Used by the etcd adapter (adapters/etcd.hpp), the Porcupine import (json/porcupine.hpp) and
// the JSON codec (json/codec.hpp).
// Link noclobber::json (CMake), which brings nlohmann_json::nlohmann_json.
//
// Thread safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace noclobber::json {

/// `text` as JSON, or nullopt when it is not RFC 8259 JSON (see the overview).
[[nodiscard]] inline std::optional<nlohmann::json> parse_text(std::string_view text) {
  if (text.find('\0') != std::string_view::npos) return std::nullopt;
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded()) return std::nullopt;
  return doc;
}

/// `text` as JSON; nlohmann's parse_error (saying where and what) for text that is not JSON,
/// std::invalid_argument for text with a NUL byte (see the overview).
[[nodiscard]] inline nlohmann::json parse_strict(std::string_view text) {
  if (const auto at = text.find('\0'); at != std::string_view::npos) {
    throw std::invalid_argument("not JSON text: a NUL byte at offset " + std::to_string(at));
  }
  return nlohmann::json::parse(text);
}

/// Member `key` of `obj` as an int64 (see the overview).
[[nodiscard]] inline std::optional<std::int64_t> int64_member(const nlohmann::json& obj,
                                                              std::string_view key) {
  if (!obj.is_object()) return std::nullopt;
  const auto it = obj.find(key);
  if (it == obj.end()) return std::nullopt;
  if (it->is_number_unsigned()) {
    const auto u = it->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (!it->is_string()) return std::nullopt;
  const std::string& text = it->get_ref<const std::string&>();
  const char* first = text.data();
  const char* last = first + text.size();
  const char* digits = first != last && *first == '-' ? first + 1 : first;
  if (digits == last) return std::nullopt;
  for (const char* c = digits; c != last; ++c) {
    if (*c < '0' || *c > '9') return std::nullopt;
  }
  std::int64_t v = 0;
  const auto r = std::from_chars(first, last, v);
  if (r.ec != std::errc() || r.ptr != last) return std::nullopt;  // outside int64
  return v;
}

/// Member `key` of `obj` when it is a JSON string, else nullptr.
[[nodiscard]] inline const std::string* string_member(const nlohmann::json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
}

}  // namespace noclobber::json
