// noclobber/race_harness/records.hpp — the records of a race harness run: write ids, one write
// attempt, one read, and a run's whole history.
//
// Overview
// --------
// Versions are named by the write that produced them. Every value the harness writes is unique and
// carries its `write_id`, so "the version a write read" is simply the id of the write whose value
// it read, and version 0 means "whatever the key held before the run" (absent, or a value the
// harness did not write). Values the harness saw but did not write get ids with bit 63 set, told
// apart by their version token.
//
//   race_write    one write attempt: who, which op and attempt, which key, the version it
//                 replaced (read_from), the version it was conditional on (expected), the value
//                 it wrote, how it ended, logical ticks
//   race_read     one read: who, which key, the version it saw, logical ticks
//   race_history  every record of a run, plus each key's version before and after it
//
// The checker (race_harness/checker.hpp) turns a history into verdicts; race_harness/history.hpp
// also has its text form for runs spread over several processes.
//
// Thread safety: plain values. Nothing here locks or calls user code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace noclobber {

/// Identifies one value written by the harness. Layout: bit 63 clear; writer (20 bits); a run
/// nonce (20 bits, so that runs on the same store don't reuse ids); a per-writer sequence number
/// (23 bits). 0 is "the key's state before the run". Ids with bit 63 set name values the
/// harness did not write but saw (told apart by their version token).
using write_id = std::uint64_t;

inline constexpr write_id initial_version = 0;
inline constexpr write_id foreign_version_bit = write_id{1} << 63;
/// "Not known": race_write::expected of a write that named no version the recorder could match.
inline constexpr write_id unknown_version = ~write_id{0};
inline constexpr std::uint32_t max_race_writer = (1u << 20) - 1;
inline constexpr std::uint64_t max_race_sequence = (std::uint64_t{1} << 23) - 1;

[[nodiscard]] constexpr write_id make_write_id(std::uint32_t writer, std::uint32_t run_nonce,
                                               std::uint64_t sequence) noexcept {
  return (static_cast<write_id>(writer & max_race_writer) << 43) |
         (static_cast<write_id>(run_nonce & 0xFFFFFu) << 23) | (sequence & max_race_sequence);
}
[[nodiscard]] constexpr std::uint32_t writer_of(write_id id) noexcept {
  return static_cast<std::uint32_t>((id & ~foreign_version_bit) >> 43) & max_race_writer;
}

/// How one write attempt ended, as the checker sees it.
enum class op_outcome : unsigned char {
  ok,       ///< the store said applied
  failed,   ///< the store said it did not apply (conflict, absent, exists, transient, permanent)
  unknown,  ///< indeterminate: it may or may not have landed
};

[[nodiscard]] constexpr std::string_view to_string(op_outcome o) noexcept {
  switch (o) {
    case op_outcome::ok:
      return "ok";
    case op_outcome::failed:
      return "failed";
    case op_outcome::unknown:
      return "unknown";
  }
  return "?";
}

/// Which store call a write attempt was.
enum class write_kind : unsigned char { write_if_match, create_if_absent, overwrite };

[[nodiscard]] constexpr std::string_view to_string(write_kind k) noexcept {
  switch (k) {
    case write_kind::write_if_match:
      return "write_if_match";
    case write_kind::create_if_absent:
      return "create_if_absent";
    case write_kind::overwrite:
      return "overwrite";
  }
  return "?";
}

/// One write attempt. Writers are numbered from 1; `op` from 0; `attempt` counts the calls of
/// the harness's value function within the op (1 = first computation).
struct race_write {
  std::uint32_t writer = 0;
  std::uint32_t op = 0;
  std::uint32_t attempt = 0;
  std::uint32_t key = 0;  ///< index into race_history::keys
  write_id read_from = initial_version;
  write_id written = initial_version;
  op_outcome outcome = op_outcome::failed;
  write_kind kind = write_kind::write_if_match;
  std::uint64_t invoke = 0;    ///< logical tick when the call started
  std::uint64_t complete = 0;  ///< logical tick when it returned
  /// The version the store was asked to find current (write_if_match: the version this writer's
  /// op read with the token it passed), or unknown_version. Usually read_from; a strategy that
  /// computes from one read and conditions on another makes them differ. An applied write says
  /// the store held this version when the write arrived: evidence the checker uses (vanished).
  write_id expected = unknown_version;
};

/// One read.
struct race_read {
  std::uint32_t writer = 0;
  std::uint32_t op = 0;
  std::uint32_t key = 0;
  write_id version = initial_version;  ///< the write whose value was read (0: initial or absent)
  bool found = false;
  std::uint64_t invoke = 0;
  std::uint64_t complete = 0;
};

/// Everything one run recorded, plus what each key held before and after it.
struct race_history {
  std::vector<std::string> keys;           ///< printable key names, by index
  std::vector<race_write> writes;          ///< in any order
  std::vector<race_read> reads;            ///< in any order (only needed for traces)
  std::vector<write_id> initial_versions;  ///< per key: the version the run started from
  std::vector<write_id> final_versions;    ///< per key: the version the store holds at the end
  /// An op writes several values in turn (a claim, then a completion): two of its values on a
  /// final chain are steps, not an update applied twice, so the checker does not judge `doubled`.
  bool ops_write_in_steps = false;
};

namespace detail {

inline std::string describe_write(const race_write& w) {
  return "W" + std::to_string(w.writer) + " op " + std::to_string(w.op) + " attempt " +
         std::to_string(w.attempt);
}

struct id_hash {
  std::size_t operator()(write_id id) const noexcept {
    // splitmix64 finaliser: ids are structured (writer in the high bits), so mix them.
    id ^= id >> 30;
    id *= 0xbf58476d1ce4e5b9ULL;
    id ^= id >> 27;
    id *= 0x94d049bb133111ebULL;
    id ^= id >> 31;
    return static_cast<std::size_t>(id);
  }
};

}  // namespace detail

}  // namespace noclobber
