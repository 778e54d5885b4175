// tests/fuzz/fuzz_support.hpp — what every fuzz target shares: a reader that turns the fuzzer's
// bytes into values (from the front, so that hand-written seeds stay readable), and a check that
// aborts with a message (libFuzzer then saves the input as a crash).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>

namespace nc_fuzz {

[[noreturn]] inline void fail(const char* file, int line, const char* cond, const std::string& what) {
  std::fprintf(stderr, "\n%s:%d: fuzz check failed: %s\n  %s\n", file, line, cond, what.c_str());
  std::fflush(stderr);
  std::abort();
}

/// An __int128 in decimal (for messages about exact references).
inline std::string num(__int128 v) {
  if (v == 0) return "0";
  const bool neg = v < 0;
  std::string s;
  while (v != 0) {
    const int d = static_cast<int>(v % 10);
    s.insert(s.begin(), static_cast<char>('0' + (d < 0 ? -d : d)));
    v /= 10;
  }
  return neg ? "-" + s : s;
}

/// Reads the input front to back. Past the end every read returns zeros (a short input is a
/// valid, short program).
/// Whether `s` is well-formed UTF-8 (Unicode 15, table 3-7: no overlong forms, no surrogates,
/// nothing past U+10FFFF), as RFC 8259 requires of JSON text.
inline bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  auto in = [&](std::size_t k, unsigned lo, unsigned hi) {
    return k < s.size() && static_cast<unsigned char>(s[k]) >= lo && static_cast<unsigned char>(s[k]) <= hi;
  };
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
    } else if (c >= 0xC2 && c <= 0xDF && in(i + 1, 0x80, 0xBF)) {
      i += 2;
    } else if ((c == 0xE0 && in(i + 1, 0xA0, 0xBF)) || ((c >= 0xE1 && c <= 0xEC) && in(i + 1, 0x80, 0xBF)) ||
               (c == 0xED && in(i + 1, 0x80, 0x9F)) || ((c >= 0xEE && c <= 0xEF) && in(i + 1, 0x80, 0xBF))) {
      if (!in(i + 2, 0x80, 0xBF)) return false;
      i += 3;
    } else if ((c == 0xF0 && in(i + 1, 0x90, 0xBF)) || ((c >= 0xF1 && c <= 0xF3) && in(i + 1, 0x80, 0xBF)) ||
               (c == 0xF4 && in(i + 1, 0x80, 0x8F))) {
      if (!in(i + 2, 0x80, 0xBF) || !in(i + 3, 0x80, 0xBF)) return false;
      i += 4;
    } else {
      return false;
    }
  }
  return true;
}

class reader {
 public:
  reader(const std::uint8_t* data, std::size_t size) noexcept : p_(data), left_(size) {}

  [[nodiscard]] bool empty() const noexcept { return left_ == 0; }
  [[nodiscard]] std::size_t left() const noexcept { return left_; }

  std::uint8_t u8() noexcept {
    if (left_ == 0) return 0;
    --left_;
    return *p_++;
  }
  template <class T>
  T integer() noexcept {
    static_assert(std::is_integral_v<T>);
    std::make_unsigned_t<T> v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
      v = static_cast<std::make_unsigned_t<T>>(v | (static_cast<std::make_unsigned_t<T>>(u8()) << (8 * i)));
    T out;
    std::memcpy(&out, &v, sizeof out);
    return out;
  }
  std::uint16_t u16() noexcept { return integer<std::uint16_t>(); }
  std::uint32_t u32() noexcept { return integer<std::uint32_t>(); }
  std::uint64_t u64() noexcept { return integer<std::uint64_t>(); }
  std::int64_t i64() noexcept { return integer<std::int64_t>(); }
  bool flag() noexcept { return (u8() & 1) != 0; }
  /// A value in [0, n) (n > 0).
  std::size_t below(std::size_t n) noexcept { return n <= 256 ? u8() % n : u32() % n; }
  double f64() noexcept {
    const std::uint64_t bits = u64();
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }

  /// An int64 that is interesting more often than a uniform one: a tag byte picks one of the
  /// limits, a small value, a power of two near a boundary, or 8 raw bytes.
  std::int64_t edgy_i64() noexcept {
    constexpr std::int64_t max = std::numeric_limits<std::int64_t>::max();
    constexpr std::int64_t min = std::numeric_limits<std::int64_t>::min();
    const std::uint8_t tag = u8();
    switch (tag % 8) {
      case 0:
        return max - static_cast<std::int64_t>(u8());
      case 1:
        return min + static_cast<std::int64_t>(u8());
      case 2:
        return static_cast<std::int64_t>(u8()) - 128;
      case 3: {
        const int shift = u8() % 63;
        return (std::int64_t{1} << shift) + static_cast<std::int8_t>(u8());
      }
      case 4:
        return -(std::int64_t{1} << (u8() % 63));
      case 5:
        return static_cast<std::int64_t>(u16());
      default:
        return i64();
    }
  }

  /// Up to `max` bytes as a string.
  std::string bytes(std::size_t max) {
    const std::size_t n = max < left_ ? max : left_;
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    left_ -= n;
    return s;
  }
  /// A string whose length comes first (one byte).
  std::string short_string() { return bytes(u8()); }
  /// Everything left.
  std::string rest() { return bytes(left_); }

 private:
  const std::uint8_t* p_;
  std::size_t left_;
};

}  // namespace nc_fuzz

#define NC_FUZZ_CHECK(cond, what)                                    \
  do {                                                               \
    if (!(cond)) ::nc_fuzz::fail(__FILE__, __LINE__, #cond, (what)); \
  } while (0)
