// noclobber/fmt/ostream.hpp — {fmt} formatters for outcomes and results (component noclobber::fmt).
//
// Every type that noclobber/ostream.hpp prints gets an fmt::formatter that writes exactly what its
// operator<< writes: both call the same to_text(x), so there is one text per type.
//
//   fmt::print("{}\n", store.write_if_unchanged(key, value, token));  // applied (token 8)
//   fmt::format("{:>12}", write_status::conflict);                     // "    conflict"
//
// Types: write_status, read_status, stop_reason, rmw_outcome, store_error, retry_counts,
// retry_stats, write_result<Token>, read_result<Value, Token>, rmw_result<Value, Token> and
// retry_result<R>. The format spec is fmt's string spec (fill, alignment, width, precision as
// maximum length): the text is formatted as a string.
//
// Needs {fmt} 9 or later (Debian: libfmt-dev); link noclobber::fmt, which carries fmt::fmt.
// No std::formatter: g++ 12's libstdc++ has no <format>.
//
// Thread safety: formatting is a plain function of its argument, like to_text; nothing locks and
// no user code runs except the operator<< of Value and Token.
#pragma once

#include <string_view>

#include <fmt/format.h>

#include "noclobber/ostream.hpp"

namespace noclobber::detail {

/// fmt's string formatter over to_text(x): width, fill and alignment apply to the whole text.
template <class T>
struct text_formatter : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(const T& x, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(to_text(x), ctx);
  }
};

}  // namespace noclobber::detail

template <>
struct fmt::formatter<noclobber::write_status> : noclobber::detail::text_formatter<noclobber::write_status> {
};
template <>
struct fmt::formatter<noclobber::read_status> : noclobber::detail::text_formatter<noclobber::read_status> {};
template <>
struct fmt::formatter<noclobber::stop_reason> : noclobber::detail::text_formatter<noclobber::stop_reason> {};
template <>
struct fmt::formatter<noclobber::rmw_outcome> : noclobber::detail::text_formatter<noclobber::rmw_outcome> {};
template <>
struct fmt::formatter<noclobber::store_error> : noclobber::detail::text_formatter<noclobber::store_error> {};
template <>
struct fmt::formatter<noclobber::retry_counts> : noclobber::detail::text_formatter<noclobber::retry_counts> {
};
template <>
struct fmt::formatter<noclobber::retry_stats> : noclobber::detail::text_formatter<noclobber::retry_stats> {};
template <class Token>
struct fmt::formatter<noclobber::write_result<Token>>
    : noclobber::detail::text_formatter<noclobber::write_result<Token>> {};
template <class Value, class Token>
struct fmt::formatter<noclobber::read_result<Value, Token>>
    : noclobber::detail::text_formatter<noclobber::read_result<Value, Token>> {};
template <class Value, class Token>
struct fmt::formatter<noclobber::rmw_result<Value, Token>>
    : noclobber::detail::text_formatter<noclobber::rmw_result<Value, Token>> {};
template <class R>
struct fmt::formatter<noclobber::retry_result<R>>
    : noclobber::detail::text_formatter<noclobber::retry_result<R>> {};
