// noclobber/outcome.hpp — what a store said: the result types every layer speaks.
//
// Overview
// --------
// A conditional write against a real store ends in one of a small number of ways, and a retry
// loop that wants to be correct has to keep them apart (see docs/conditional_writer.md):
//
//   applied            the write took effect; `token` holds the new version when the store
//                      returns one (an ETag, a mod_revision, a version column).
//   conflict           the version moved since we read it: re-read, recompute, retry.
//   absent             write-if-match hit a key that no longer exists: re-read (and create).
//   exists             create-if-absent lost: somebody created the key first: re-read.
//   transient          nothing happened, try the very same request again (SQLITE_BUSY, 503).
//   transient_restart  nothing happened, but the whole transaction must restart from the read
//                      (SQLSTATE 40001 / 40P01, SQLITE_BUSY_SNAPSHOT).
//   indeterminate      the request was sent and we don't know whether it landed (a timeout, a
//                      dropped connection during EXEC). Never a conflict: resolve by re-reading.
//   permanent          give up and report (a bad request, a size cap, a missing table).
//
// A read is `found` (value and token), `absent` (a normal answer, not an error), `transient`
// or `permanent`.
//
// Thread safety: these are plain values. Nothing here locks or calls user code.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace noclobber {

/// How a conditional write ended.
enum class write_status : unsigned char {
  applied,
  conflict,
  absent,
  exists,
  transient,
  transient_restart,
  indeterminate,
  permanent,
};

/// How a read ended.
enum class read_status : unsigned char {
  found,
  absent,
  transient,
  permanent,
};

[[nodiscard]] constexpr std::string_view to_string(write_status s) noexcept {
  switch (s) {
    case write_status::applied:
      return "applied";
    case write_status::conflict:
      return "conflict";
    case write_status::absent:
      return "absent";
    case write_status::exists:
      return "exists";
    case write_status::transient:
      return "transient";
    case write_status::transient_restart:
      return "transient_restart";
    case write_status::indeterminate:
      return "indeterminate";
    case write_status::permanent:
      return "permanent";
  }
  return "unknown";
}

[[nodiscard]] constexpr std::string_view to_string(read_status s) noexcept {
  switch (s) {
    case read_status::found:
      return "found";
    case read_status::absent:
      return "absent";
    case read_status::transient:
      return "transient";
    case read_status::permanent:
      return "permanent";
  }
  return "unknown";
}

/// True for the outcomes after which re-reading and recomputing is the right move: the state
/// changed under us (conflict, absent, exists) or the store asked for a restart.
[[nodiscard]] constexpr bool needs_reread(write_status s) noexcept {
  return s == write_status::conflict || s == write_status::absent || s == write_status::exists ||
         s == write_status::transient_restart;
}

/// The store's own words for a failure: a code (`"SQLITE_BUSY"`, `"40001"`, `"412"`) and a
/// message. Both empty on success; short strings stay in the small-string buffer.
struct store_error {
  std::string code;
  std::string message;

  [[nodiscard]] bool empty() const noexcept { return code.empty() && message.empty(); }
  friend bool operator==(const store_error&, const store_error&) = default;
};

/// The result of a conditional write (write-if-match, create-if-absent, erase, patch).
/// `token` is set only for `applied`, and only when the store returns the new version.
template <class Token>
struct write_result {
  using token_type = Token;

  write_status status = write_status::permanent;
  std::optional<Token> token;
  store_error error;

  [[nodiscard]] bool ok() const noexcept { return status == write_status::applied; }
  explicit operator bool() const noexcept { return ok(); }

  // Factories are make_*, as on read_result; the bare words are predicates (ok()).
  [[nodiscard]] static write_result make_applied() { return {write_status::applied, std::nullopt, {}}; }
  [[nodiscard]] static write_result make_applied(Token new_token) {
    return {write_status::applied, std::optional<Token>(std::move(new_token)), {}};
  }
  [[nodiscard]] static write_result make_conflict() { return {write_status::conflict, std::nullopt, {}}; }
  [[nodiscard]] static write_result make_absent() { return {write_status::absent, std::nullopt, {}}; }
  [[nodiscard]] static write_result make_exists() { return {write_status::exists, std::nullopt, {}}; }
  /// Any non-applied status with the store's words attached.
  [[nodiscard]] static write_result make_failed(write_status s, store_error e = {}) {
    return {s, std::nullopt, std::move(e)};
  }

  // The names before 0.2, kept for one release.
  [[deprecated("use write_result::make_applied")]] [[nodiscard]] static write_result applied() {
    return make_applied();
  }
  [[deprecated("use write_result::make_applied")]] [[nodiscard]] static write_result applied(
      Token new_token) {
    return make_applied(std::move(new_token));
  }
  [[deprecated("use write_result::make_conflict")]] [[nodiscard]] static write_result conflict() {
    return make_conflict();
  }
  [[deprecated("use write_result::make_absent")]] [[nodiscard]] static write_result absent() {
    return make_absent();
  }
  [[deprecated("use write_result::make_exists")]] [[nodiscard]] static write_result exists() {
    return make_exists();
  }
  [[deprecated("use write_result::make_failed")]] [[nodiscard]] static write_result failed(
      write_status s, store_error e = {}) {
    return make_failed(s, std::move(e));
  }
};

/// The result of a read. `value` and `token` are meaningful only when `status == found`;
/// Value and Token must therefore be default-constructible.
template <class Value, class Token>
struct read_result {
  using value_type = Value;
  using token_type = Token;

  read_status status = read_status::permanent;
  Value value{};
  Token token{};
  store_error error;

  [[nodiscard]] bool found() const noexcept { return status == read_status::found; }
  [[nodiscard]] bool absent() const noexcept { return status == read_status::absent; }
  [[nodiscard]] bool failed() const noexcept {
    return status == read_status::transient || status == read_status::permanent;
  }

  [[nodiscard]] static read_result make_found(Value v, Token t) {
    return {read_status::found, std::move(v), std::move(t), {}};
  }
  [[nodiscard]] static read_result make_absent() { return {read_status::absent, Value{}, Token{}, {}}; }
  [[nodiscard]] static read_result make_failed(read_status s, store_error e = {}) {
    return {s, Value{}, Token{}, std::move(e)};
  }
};

/// Maps a failed read onto the write status a retry loop acts on.
[[nodiscard]] constexpr write_status as_write_status(read_status s) noexcept {
  switch (s) {
    case read_status::found:
      return write_status::applied;
    case read_status::absent:
      return write_status::absent;
    case read_status::transient:
      return write_status::transient;
    case read_status::permanent:
      return write_status::permanent;
  }
  return write_status::permanent;
}

}  // namespace noclobber
