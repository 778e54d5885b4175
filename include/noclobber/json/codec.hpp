// noclobber/json/codec.hpp — a JSON codec for user structs (nlohmann/json 3.11).
//
// Overview
// --------
// `noclobber::json::codec<T>` fulfils the codec concept (noclobber/codec.hpp) for any T that
// nlohmann/json can convert: standard containers and scalars out of the box, your structs with
// one line of nlohmann's own macros next to them:
//
//   struct model {
//     std::string name, description;
//     std::int64_t revision = 0;
//     std::map<std::string, std::string> env;
//   };
//   NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(model, name, description, revision, env)
//
//   auto models = noclobber::typed<model>(store, noclobber::json::codec<model>{});
//
// encode   nlohmann::json(value).dump(): compact by default (`indent` for pretty), object keys
//          sorted (nlohmann::json keeps objects in a std::map), so equal values encode to equal
//          text. A string that is not valid UTF-8 is an error (type_error.316), not replaced.
// decode   json::parse_strict(text).get<T>() (json/members.hpp: text with a NUL byte is not
//          JSON, although nlohmann/json alone reads up to it). Malformed JSON, a missing member
//          (NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE requires every member; the _WITH_DEFAULT form fills
//          absent ones from a default-constructed T) or a wrong type throws nlohmann's
//          json::exception, whose what() becomes the permanent store_error's message, e.g.
//          "key 'qb': [json.exception.type_error.302] type must be number, but is string".
//          Compile with JSON_DIAGNOSTICS=1 and the message names the member too: "(/revision)".
//
// Why nlohmann/json and not Boost.JSON + Boost.Describe (both in Debian 12): it is header-only
// (Boost.JSON 1.81 is a compiled library, or its whole source in one of your TUs), its
// macros need nothing but the member list, and its error messages say what was expected and
// found (Boost.JSON reports a missing member as "array size does not match target size"). It
// is slower to compile than most headers; docs/records.md has the figures.
//
// Link noclobber::json (CMake), which brings nlohmann_json::nlohmann_json.
//
// Thread safety: encode and decode are const and share nothing: call them from any thread.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "noclobber/json/members.hpp"

namespace noclobber::json {

/// JSON text <-> T through nlohmann/json's conversions (to_json / from_json, or its macros).
template <class T>
struct codec {
  /// -1: compact text (the default); n >= 0: pretty-printed with n spaces.
  int indent = -1;

  [[nodiscard]] std::string encode(const T& value) const {
    return nlohmann::json(value).dump(indent, ' ', false, nlohmann::json::error_handler_t::strict);
  }

  [[nodiscard]] T decode(std::string_view text) const { return parse_strict(text).template get<T>(); }
};

}  // namespace noclobber::json
