// noclobber/json/porcupine.hpp — a Porcupine history (JSON) back into the race harness's checker.
//
// Overview
// --------
// `from_porcupine_json(text)` reads a JSON array of Porcupine operations — what
// `to_porcupine_json` (race_harness/export.hpp, std-only) writes, or a history from elsewhere in
// the same mapping (docs/race_harness.md) — into a race_history for check_race_history:
//
//   const auto h = noclobber::from_porcupine_json(text);
//   const auto verdict = noclobber::check_race_history(h);
//
// Each operation needs ClientId, Call and Return (integers) and Input and Output objects;
// versions are strings (write ids, "outside-<key>-<n>") or null (the version before the run).
// Anything else throws std::invalid_argument naming the operation and what is wrong: text that is
// not a JSON array, a member that is missing or of another type, an op other than "read" or
// "rmw", an outcome other than "ok", "failed" or "unknown". The rules the Elle import follows
// apply too (a write needs a read of its key; a key needs a final read by ClientId 0).
//
// The JSON is parsed by nlohmann/json 3.11 (link noclobber::json), so the core headers stay
// free of a JSON parser.
//
// Thread safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "noclobber/json/members.hpp"
#include "noclobber/race_harness/export.hpp"
#include "noclobber/race_harness/records.hpp"

namespace noclobber {

/// Reads a JSON array of Porcupine operations into a race_history (see the overview).
[[nodiscard]] inline race_history from_porcupine_json(std::string_view text) {
  const std::optional<nlohmann::json> parsed = json::parse_text(text);
  if (!parsed || !parsed->is_array())
    throw std::invalid_argument("noclobber: Porcupine history: not a JSON array");
  const nlohmann::json& doc = *parsed;
  detail::history_builder b;
  for (std::size_t n = 0; n < doc.size(); ++n) {
    const nlohmann::json& op = doc[n];
    const std::string where = "Porcupine history, operation " + std::to_string(n);
    auto object = [&](const nlohmann::json& of, const char* name) -> const nlohmann::json* {
      if (!of.is_object()) return nullptr;
      const auto it = of.find(name);
      return it != of.end() && it->is_object() ? &*it : nullptr;
    };
    const nlohmann::json* input = object(op, "Input");
    const nlohmann::json* output = object(op, "Output");
    const auto client = json::int64_member(op, "ClientId");
    const auto call = json::int64_member(op, "Call");
    const auto ret = json::int64_member(op, "Return");
    if (input == nullptr || output == nullptr || !client || !call || !ret || *client < 0 || *call < 0 ||
        *ret < 0)
      throw std::invalid_argument("noclobber: " + where + ": needs ClientId, Input, Call, Output, Return");
    auto text_of = [&](const nlohmann::json& of, const char* name, const char* what) -> const std::string& {
      const std::string* s = json::string_member(of, name);
      if (s == nullptr) throw std::invalid_argument("noclobber: " + where + ": " + what + " is not a string");
      return *s;
    };
    auto version_of = [&](const nlohmann::json& of, const char* name, const char* what) {
      const auto it = of.find(name);
      if (it == of.end()) throw std::invalid_argument("noclobber: " + where + ": no " + what);
      if (it->is_null()) return initial_version;
      return b.version(text_of(of, name, what), where);
    };
    const std::string& kind = text_of(*input, "op", "Input.op");
    const std::uint32_t key = b.key(text_of(*input, "key", "Input.key"));
    const auto process = static_cast<std::uint32_t>(*client);
    if (kind == "read") {
      b.read(process, key, version_of(*output, "value", "Output.value"), static_cast<std::uint64_t>(*call),
             static_cast<std::uint64_t>(*ret));
    } else if (kind == "rmw") {
      const std::string& o = text_of(*output, "outcome", "Output.outcome");
      if (o != "ok" && o != "failed" && o != "unknown")
        throw std::invalid_argument("noclobber: " + where + ": Output.outcome '" + o +
                                    "' (expected ok, failed or unknown)");
      b.write(process, key, version_of(*input, "read", "Input.read"),
              version_of(*input, "write", "Input.write"),
              o == "ok"       ? op_outcome::ok
              : o == "failed" ? op_outcome::failed
                              : op_outcome::unknown,
              static_cast<std::uint64_t>(*call), static_cast<std::uint64_t>(*ret));
    } else {
      throw std::invalid_argument("noclobber: " + where + ": Input.op '" + kind + "' (expected read or rmw)");
    }
  }
  return b.finish("Porcupine history");
}

}  // namespace noclobber
