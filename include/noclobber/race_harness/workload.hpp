// noclobber/race_harness/workload.hpp — the values a race harness run writes.
//
// Overview
// --------
// The checker can only tell which write a value came from if every written value is unique and
// says who wrote it (Elle's rule; duplicates give false alarms). A `race_workload<Value>` is the
// pair of functions that makes that so for one value type:
//
//   next_value(current, tag) -> Value   the new value an op writes, computed from what it read
//                                       (`current` is empty when the key is absent); it must
//                                       embed `tag.id` so that...
//   id_of(value) -> write_id            ...gives it back (0 for a value the harness did not write).
//
// `append_workload()` is the default for std::string values: each write appends an entry
// `w<writer>.<op>.<attempt>#<id>;` (keeping the last few, so values stay small), which also makes
// a store's final value readable by eye. Scenario-specific workloads (a map merge, a flag) wrap
// their own content the same way; `tag_text(tag)` and `parse_write_id(text)` help.
//
// Thread safety: the functions are called concurrently from every writer thread; they must not
// share mutable state (the provided ones don't).
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "noclobber/race_harness/history.hpp"

namespace noclobber {

/// Who is writing: writer (from 1), op (from 0), attempt (from 1: the number of times this op has
/// computed a value) and the unique id the value must carry.
struct write_tag {
  std::uint32_t writer = 0;
  std::uint32_t op = 0;
  std::uint32_t attempt = 0;
  write_id id = initial_version;
};

/// "w3.17.1#3298534883346": readable, and parse_write_id() gets the id back.
[[nodiscard]] inline std::string tag_text(const write_tag& t) {
  std::string s = "w";
  s += std::to_string(t.writer);
  s += '.';
  s += std::to_string(t.op);
  s += '.';
  s += std::to_string(t.attempt);
  s += '#';
  s += std::to_string(t.id);
  return s;
}

/// The id after the last '#' in `text` (digits up to the next non-digit), or 0 when there is none.
[[nodiscard]] inline write_id parse_write_id(std::string_view text) noexcept {
  const auto hash = text.rfind('#');
  if (hash == std::string_view::npos) return initial_version;
  write_id id = 0;
  const char* first = text.data() + hash + 1;
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, id);
  if (ec != std::errc{} || ptr == first) return initial_version;
  return id;
}

/// How the harness makes unique values of type Value and recognises them.
template <class Value>
struct race_workload {
  std::function<Value(const std::optional<Value>& current, const write_tag& tag)> next_value;
  std::function<write_id(const Value&)> id_of;

  [[nodiscard]] bool empty() const noexcept { return !next_value || !id_of; }
};

/// String values as an append-only log of tags, trimmed to the last `keep_last` entries.
[[nodiscard]] inline race_workload<std::string> append_workload(std::size_t keep_last = 16) {
  race_workload<std::string> w;
  w.next_value = [keep_last](const std::optional<std::string>& current, const write_tag& tag) {
    std::string v = current.value_or(std::string{});
    if (keep_last > 0) {
      // Drop the oldest entries beyond keep_last - 1 so the new one makes keep_last.
      std::size_t entries = 0;
      for (char c : v) entries += c == ';';
      while (entries + 1 > keep_last) {
        const auto semi = v.find(';');
        if (semi == std::string::npos) break;
        v.erase(0, semi + 1);
        --entries;
      }
    }
    v += tag_text(tag);
    v += ';';
    return v;
  };
  w.id_of = [](const std::string& v) { return parse_write_id(v); };
  return w;
}

}  // namespace noclobber
