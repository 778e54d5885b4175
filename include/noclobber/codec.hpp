// noclobber/codec.hpp — how a typed value becomes the bytes a store keeps, and back.
//
// Overview
// --------
// Stores keep bytes (a string, a blob, a JSON column); programs keep structs. A codec is the
// pair of functions between them:
//
//   c.encode(const T&)      -> Bytes   (convertible to the store's value type, std::string)
//   c.decode(const Bytes&)  -> T       (throws on input it cannot read)
//
//   struct point_codec {                                  // a hand-written codec
//     std::string encode(const point& p) const { return std::to_string(p.x) + "," + ...; }
//     point decode(const std::string& s) const {
//       ...
//       if (bad) throw noclobber::codec_error("point: expected 'x,y', got '" + s + "'");
//     }
//   };
//   static_assert(noclobber::codec<point_codec, point>);
//
// A codec reports bad input by throwing (codec_error or any std::exception). Whoever runs it
// through `run_decode` / `run_encode` gets the failure back as a `store_error` whose code is
// `codec_error_code` ("codec") and whose message is the codec's own `what()` — typed_store.hpp
// turns that into a `permanent` read or write, so a corrupt stored value stops a
// read-modify-write with the codec's words; it never crashes, and it is never silently
// replaced by a default value. std::bad_alloc is not a verdict on the input and propagates.
//
// noclobber/json/codec.hpp has a JSON codec for user structs (nlohmann/json).
//
// Thread safety: `encode` and `decode` are const; a codec shared by several threads (a shared
// typed_store) must allow concurrent calls. Nothing here locks.
#pragma once

#include <concepts>
#include <exception>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "noclobber/outcome.hpp"

namespace noclobber {

/// Codec C turns T into Bytes (encode) and back (decode, which throws on bad input).
template <class C, class T, class Bytes = std::string>
concept codec = std::copy_constructible<C> && requires(const C& c, const T& value, const Bytes& bytes) {
  { c.encode(value) } -> std::convertible_to<Bytes>;
  { c.decode(bytes) } -> std::convertible_to<T>;
};

/// What a codec may throw for input it cannot decode or a value it cannot encode.
class codec_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// store_error::code of a failure reported by a codec.
inline constexpr std::string_view codec_error_code = "codec";

namespace detail {
inline void codec_failed(store_error& error, std::string_view context, std::string_view what) {
  error.code = std::string(codec_error_code);
  error.message = context.empty() ? std::string(what) : std::string(context) + ": " + std::string(what);
}

/// `run()`'s result; on any exception but std::bad_alloc: nullopt, and `error` says what.
template <class R, class Run>
[[nodiscard]] std::optional<R> run_codec(Run&& run, store_error& error, std::string_view context) {
  try {
    return std::optional<R>(std::in_place, run());
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    codec_failed(error, context, e.what());
  } catch (...) {
    codec_failed(error, context, "the codec threw an exception that is not a std::exception");
  }
  return std::nullopt;
}
}  // namespace detail

/// Decodes `bytes` with `c`. On failure: nullopt, and `error` holds {"codec", what()}.
/// `context` (a key, a column) is put in front of the codec's message when not empty.
template <class T, class C, class Bytes>
requires codec<C, T, Bytes>
[[nodiscard]] std::optional<T> run_decode(const C& c, const Bytes& bytes, store_error& error,
                                          std::string_view context = {}) {
  return detail::run_codec<T>([&]() -> T { return c.decode(bytes); }, error, context);
}

/// Encodes `value` with `c`. On failure: nullopt, and `error` holds {"codec", what()}.
template <class Bytes, class C, class T>
requires codec<C, T, Bytes>
[[nodiscard]] std::optional<Bytes> run_encode(const C& c, const T& value, store_error& error,
                                              std::string_view context = {}) {
  return detail::run_codec<Bytes>([&]() -> Bytes { return c.encode(value); }, error, context);
}

}  // namespace noclobber
