// noclobber/ostream.hpp — outcomes and results as text: to_text() and operator<<.
//
// Overview
// --------
// Log lines and test failures want the outcome of a call in words. This header gives every
// outcome and result type a `to_text(x)` (a std::string) and an `operator<<` that writes it:
//
//   write_status, read_status, stop_reason, rmw_outcome   their names ("conflict", "deadline")
//   store_error             `SQLITE_BUSY: database is locked` (empty: nothing)
//   write_result<T>         `applied (token 7)`, `conflict`, `transient (SQLITE_BUSY: ...)`
//   read_result<V, T>       `found 41 (token 3)`, `absent`, `permanent (42P01: ...)`
//   retry_counts / stats    `applied after 3 attempts (2 conflicts; slept 1.5ms)`, with the
//                           last error when there is one
//   rmw_result<V, T>        `applied 42 (token 9) after 2 attempts (1 conflict)`, `unchanged`,
//                           `aborted: quota exceeded`, `gave up: ...`; an unknown outcome is said
//                           in words ("our write's outcome is unknown: it may or may not be stored")
//
// Values and tokens are printed with their own operator<< when they have one, else as `<value>`
// / `<token>`. Counts are written in words with the right number ("1 conflict", "2 conflicts");
// counters that are zero are left out.
//
// Formatting libraries: noclobber/fmt/ostream.hpp gives each of these types an fmt::formatter
// that writes the same to_text (component noclobber::fmt). g++ 12's libstdc++ has no <format>, so
// no std::formatter is provided.
//
// Thread safety: plain functions of their arguments; nothing locks and no user code runs except
// the operator<< of Value and Token.
#pragma once

#include <chrono>
#include <cstdio>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>

#include "noclobber/cas_retry.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_modify_write.hpp"
#include "noclobber/retry_controller.hpp"

namespace noclobber {

namespace detail {

/// "1 conflict", "2 conflicts" (plural: noun + "s" unless given).
inline std::string count_words(unsigned n, std::string_view singular, std::string_view plural = {}) {
  std::string out = std::to_string(n) + ' ';
  if (n == 1) {
    out += singular;
  } else if (!plural.empty()) {
    out += plural;
  } else {
    out += singular;
    out += 's';
  }
  return out;
}

/// A duration for people: 0s, 850ns, 12us, 1.5ms, 2.25s (three significant digits at most).
inline std::string human_duration(std::chrono::nanoseconds d) {
  const double ns = static_cast<double>(d.count());
  const char* unit = "ns";
  double v = ns;
  if (ns >= 1e9) {
    v = ns / 1e9, unit = "s";
  } else if (ns >= 1e6) {
    v = ns / 1e6, unit = "ms";
  } else if (ns >= 1e3) {
    v = ns / 1e3, unit = "us";
  }
  if (d.count() == 0) return "0s";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g%s", v, unit);
  return buf;
}

/// `x` through its operator<<, or `fallback` when it has none.
template <class T>
std::string streamed(const T& x, std::string_view fallback) {
  if constexpr (requires(std::ostream & os) { os << x; }) {
    std::ostringstream os;
    os << x;
    return std::move(os).str();
  } else {
    return std::string(fallback);
  }
}

}  // namespace detail

[[nodiscard]] inline std::string to_text(write_status s) {
  return std::string(to_string(s));
}
[[nodiscard]] inline std::string to_text(read_status s) {
  return std::string(to_string(s));
}
[[nodiscard]] inline std::string to_text(stop_reason r) {
  return std::string(to_string(r));
}
[[nodiscard]] inline std::string to_text(rmw_outcome o) {
  return std::string(to_string(o));
}

/// `code: message`, or whichever is not empty; empty for no error.
[[nodiscard]] inline std::string to_text(const store_error& e) {
  if (e.code.empty()) return e.message;
  if (e.message.empty()) return e.code;
  return e.code + ": " + e.message;
}

template <class Token>
[[nodiscard]] std::string to_text(const write_result<Token>& w) {
  std::string out = to_text(w.status);
  if (w.token) out += " (token " + detail::streamed(*w.token, "<token>") + ')';
  if (!w.error.empty()) out += " (" + to_text(w.error) + ')';
  return out;
}

template <class Value, class Token>
[[nodiscard]] std::string to_text(const read_result<Value, Token>& r) {
  std::string out = to_text(r.status);
  if (r.found()) {
    out +=
        ' ' + detail::streamed(r.value, "<value>") + " (token " + detail::streamed(r.token, "<token>") + ')';
  }
  if (!r.error.empty()) out += " (" + to_text(r.error) + ')';
  return out;
}

/// `after N attempts (2 conflicts, 1 transient error, 1 unknown outcome resolved; slept 1.5ms)`:
/// what the loop did, without why it stopped; zero counters are left out.
[[nodiscard]] inline std::string describe_attempts(const retry_counts& c) {
  std::string out = "after " + detail::count_words(c.attempts, "attempt");
  std::string parts;
  const auto item = [&parts](unsigned n, std::string_view singular, std::string_view plural = {}) {
    if (n == 0) return;
    if (!parts.empty()) parts += ", ";
    parts += detail::count_words(n, singular, plural);
  };
  item(c.conflicts, "conflict");
  item(c.transient_errors, "transient error");
  item(c.indeterminate_resolved, "unknown outcome resolved", "unknown outcomes resolved");
  if (c.slept > std::chrono::nanoseconds::zero()) {
    parts += (parts.empty() ? "slept " : "; slept ") + detail::human_duration(c.slept);
  }
  if (!parts.empty()) out += " (" + parts + ')';
  return out;
}

/// `applied after 3 attempts (2 conflicts; slept 1.5ms)`.
[[nodiscard]] inline std::string to_text(const retry_counts& c) {
  return to_text(c.reason) + ' ' + describe_attempts(c);
}

/// retry_counts' text, then `, last status conflict (code: message)` when the loop failed.
[[nodiscard]] inline std::string to_text(const retry_stats& s) {
  std::string out = to_text(static_cast<const retry_counts&>(s));
  if (s.reason != stop_reason::applied && s.reason != stop_reason::decided && s.attempts > 0) {
    out += ", last status " + to_text(s.last_status);
    if (!s.last_error.empty()) out += " (" + to_text(s.last_error) + ')';
  }
  return out;
}

template <class Value, class Token>
[[nodiscard]] std::string to_text(const rmw_result<Value, Token>& r) {
  std::string out;
  switch (r.outcome) {
    case rmw_outcome::applied:
      out = r.created ? "applied (created) " : "applied ";
      out += r.value ? detail::streamed(*r.value, "<value>") : "<none>";
      if (r.token) out += " (token " + detail::streamed(*r.token, "<token>") + ')';
      return out + ' ' + describe_attempts(r);
    case rmw_outcome::unchanged:
      return "unchanged " + describe_attempts(r);
    case rmw_outcome::aborted:
      return "aborted: " + r.abort_reason + ' ' + describe_attempts(r);
    case rmw_outcome::gave_up:
      break;
  }
  out = "gave up (" + to_text(r.reason) + ") ";
  if (r.indeterminate) out = "gave up: our write's outcome is unknown: it may or may not be stored; ";
  out += describe_attempts(r);
  if (r.attempts > 0) out += ", last status " + to_text(r.last_status);
  if (!r.last_error.empty()) out += " (" + to_text(r.last_error) + ')';
  return out;
}

/// retry_stats' text (the loop's outcome R is not printed).
template <class R>
[[nodiscard]] std::string to_text(const retry_result<R>& r) {
  return to_text(static_cast<const retry_stats&>(r));
}

inline std::ostream& operator<<(std::ostream& os, write_status s) {
  return os << to_string(s);
}
inline std::ostream& operator<<(std::ostream& os, read_status s) {
  return os << to_string(s);
}
inline std::ostream& operator<<(std::ostream& os, stop_reason r) {
  return os << to_string(r);
}
inline std::ostream& operator<<(std::ostream& os, rmw_outcome o) {
  return os << to_string(o);
}
inline std::ostream& operator<<(std::ostream& os, const store_error& e) {
  return os << to_text(e);
}
inline std::ostream& operator<<(std::ostream& os, const retry_counts& c) {
  return os << to_text(c);
}
inline std::ostream& operator<<(std::ostream& os, const retry_stats& s) {
  return os << to_text(s);
}
template <class Token>
std::ostream& operator<<(std::ostream& os, const write_result<Token>& w) {
  return os << to_text(w);
}
template <class Value, class Token>
std::ostream& operator<<(std::ostream& os, const read_result<Value, Token>& r) {
  return os << to_text(r);
}
template <class Value, class Token>
std::ostream& operator<<(std::ostream& os, const rmw_result<Value, Token>& r) {
  return os << to_text(r);
}
template <class R>
std::ostream& operator<<(std::ostream& os, const retry_result<R>& r) {
  return os << to_text(r);
}

}  // namespace noclobber
