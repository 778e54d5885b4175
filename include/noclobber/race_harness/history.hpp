// noclobber/race_harness/history.hpp — what a race harness run recorded, and the checker.
//
// Overview
// --------
// The race harness (noclobber/race_harness.hpp) records every read and every write attempt its
// writers make. This header brings the records (`race_history`, race_harness/records.hpp) and the
// checker that turns them into verdicts (`check_race_history`, race_harness/checker.hpp, which
// states the rules), and adds the history's text form. It is separate from the harness so that
// histories gathered elsewhere (other processes, a log) can be checked too, and so the checker
// can be benchmarked on its own:
//
//   race_history h;                          // one process per writer group:
//   append_history(h, text_from_process_1);  //   serialize_history(its_history)
//   append_history(h, text_from_process_2);
//   h.keys = ...; h.initial_versions = ...; h.final_versions = ...;
//   race_check c = check_race_history(h);
//
// Thread safety: plain values and pure functions. Nothing here locks or calls user code.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "noclobber/race_harness/checker.hpp"
#include "noclobber/race_harness/records.hpp"

namespace noclobber {

/// One line per record ("w writer op attempt key read_from written outcome kind invoke complete",
/// "r writer op key version found invoke complete"), for runs spread over several processes:
/// each process serialises its history, one process merges them (append_history) and checks.
/// Keys and the initial/final versions are not included: the checking process knows them.
[[nodiscard]] inline std::string serialize_history(const race_history& h) {
  std::string out;
  out.reserve(h.writes.size() * 64 + h.reads.size() * 48);
  auto num = [&out](std::uint64_t n) {
    out += std::to_string(n);
    out += ' ';
  };
  for (const race_write& w : h.writes) {
    out += "w ";
    num(w.writer), num(w.op), num(w.attempt), num(w.key), num(w.read_from), num(w.written);
    num(static_cast<unsigned>(w.outcome)), num(static_cast<unsigned>(w.kind)), num(w.invoke), num(w.complete);
    out.back() = '\n';
  }
  for (const race_read& r : h.reads) {
    out += "r ";
    num(r.writer), num(r.op), num(r.key), num(r.version), num(r.found ? 1 : 0), num(r.invoke),
        num(r.complete);
    out.back() = '\n';
  }
  return out;
}

/// Appends the records of serialize_history's text to `h`. Throws std::invalid_argument naming
/// the first line it cannot read: an unknown record letter, a missing or extra field, anything
/// but spaces between the numbers, or a number out of its field's range (a writer, op, attempt or
/// key past 2^32 - 1, an outcome or kind past 2, `found` other than 0 or 1) — never coerced.
/// Lines may end in "\r\n".
inline void append_history(race_history& h, std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    std::uint64_t f[10] = {};
    const bool is_write = line[0] == 'w';
    const std::size_t want = is_write ? 10 : line[0] == 'r' ? 7 : 0;
    const char* p = line.data() + 1;
    const char* last = line.data() + line.size();
    std::size_t got = 0;
    bool ok = want != 0;
    while (ok) {
      while (p < last && *p == ' ') ++p;
      if (p == last) break;
      if (got == want) {
        ok = false;  // an extra field
        break;
      }
      auto [next, ec] = std::from_chars(p, last, f[got]);
      ok = ec == std::errc{} && (next == last || *next == ' ');
      p = next;
      ++got;
    }
    constexpr std::uint64_t u32_max = 0xFFFFFFFFu;
    if (ok && got == want) {
      ok = f[0] <= u32_max && f[1] <= u32_max && f[2] <= u32_max &&
           (is_write ? f[3] <= u32_max && f[6] <= 2 && f[7] <= 2 : f[4] <= 1);
    }
    if (!ok || got != want) {
      throw std::invalid_argument("noclobber: cannot read history line '" + std::string(line) + "'");
    }
    auto u32 = [](std::uint64_t v) { return static_cast<std::uint32_t>(v); };
    if (is_write) {
      h.writes.push_back({u32(f[0]), u32(f[1]), u32(f[2]), u32(f[3]), f[4], f[5],
                          static_cast<op_outcome>(f[6]), static_cast<write_kind>(f[7]), f[8], f[9]});
    } else {
      h.reads.push_back({u32(f[0]), u32(f[1]), u32(f[2]), f[3], f[4] != 0, f[5], f[6]});
    }
  }
}

}  // namespace noclobber
