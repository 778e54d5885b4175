// noclobber/json/members.hpp — strict reads of members of JSON that comes from elsewhere (a
// server's answer, a history file), over nlohmann/json 3.11.
//
// Overview
// --------
//   int64_member(obj, "revision")   an int64: a JSON integer, or a JSON string of an optional '-'
//                                   and digits (how etcd's gateway and other proto3 JSON send
//                                   int64); nullopt for anything else — a fraction, an exponent, a
//                                   sign '+', an empty string, a value outside int64's range —
//                                   never a rounded or wrapped number
//   string_member(obj, "message")   a pointer to the string, or nullptr when it is absent or not a
//                                   string
// Both answer "not there" for an `obj` that is not an object.
//
// Used by the etcd adapter (adapters/etcd.hpp) and the Porcupine import (json/porcupine.hpp).
// Link noclobber::json (CMake), which brings nlohmann_json::nlohmann_json.
//
// Thread safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace noclobber::json {

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
