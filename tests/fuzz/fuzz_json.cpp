// Fuzz target: the etcd adapter's JSON (nlohmann/json through noclobber/adapters/etcd.hpp's
// detail::etcd::parse_answer, which reads with noclobber/json/members.hpp's parse_text, and
// members.hpp's int64_member) and base64 (noclobber/adapters/detail/base64.hpp).
//
//   parse         never crashes; accepts exactly what a reference validator written here from
//                 RFC 8259's grammar accepts (strings well-formed UTF-8, an escaped lone surrogate
//                 refused, a leading UTF-8 byte order mark skipped, a number that overflows a
//                 double refused: nlohmann/json's documented rules; text with a NUL byte
//                 refused, where nlohmann/json alone stops as at the end: parse_text's rule);
//                 what it accepts dumps back to JSON that parses to the same value
//   int64_member  equals a reference computed in __int128 from the text (a JSON string, or a
//                 number token, of an optional '-' and digits that fits in int64), on the input as
//                 a number token and as a string, and on every string member of what parsed
//   base64        decode(encode(x)) == x; what decodes has the length its padding says, and
//                 re-encodes to the input when the input is canonical
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_support.hpp"
#include "noclobber/adapters/detail/base64.hpp"
#include "noclobber/adapters/etcd.hpp"
#include "noclobber/json/members.hpp"

namespace {

using json = nlohmann::json;

// ---- reference validator (RFC 8259) ------------------------------------------------------------

struct validator {
  std::string_view s;
  std::size_t i = 0;

  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  }
  bool digit() const { return i < s.size() && s[i] >= '0' && s[i] <= '9'; }
  bool number() {
    const std::size_t start = i;
    if (!number_token()) return false;
    // nlohmann/json refuses a number that overflows a double ("number overflow", error 406).
    const std::string token(s.substr(start, i - start));
    return std::isfinite(std::strtod(token.c_str(), nullptr));
  }
  bool number_token() {
    if (i < s.size() && s[i] == '-') ++i;
    if (!digit()) return false;
    if (s[i] == '0') {
      ++i;
    } else {
      while (digit()) ++i;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      if (!digit()) return false;
      while (digit()) ++i;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      if (!digit()) return false;
      while (digit()) ++i;
    }
    return true;
  }
  bool hex4(unsigned& cp) {
    if (i + 4 > s.size()) return false;
    cp = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s[i++];
      cp <<= 4;
      if (c >= '0' && c <= '9')
        cp |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        cp |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        cp |= static_cast<unsigned>(c - 'A' + 10);
      else
        return false;
    }
    return true;
  }
  bool string() {
    if (i >= s.size() || s[i] != '"') return false;
    ++i;
    const std::size_t first = i;
    while (i < s.size()) {
      const unsigned char c = static_cast<unsigned char>(s[i++]);
      if (c == '"') return nc_fuzz::valid_utf8(s.substr(first, i - 1 - first));  // escapes are ASCII
      if (c < 0x20) return false;
      if (c != '\\') continue;
      if (i >= s.size()) return false;
      const char e = s[i++];
      if (e == 'u') {
        unsigned cp = 0;
        if (!hex4(cp)) return false;
        if (cp >= 0xDC00 && cp < 0xE000) return false;  // a low surrogate first
        if (cp >= 0xD800 && cp < 0xDC00) {
          unsigned lo = 0;
          if (i + 2 > s.size() || s[i] != '\\' || s[i + 1] != 'u') return false;
          i += 2;
          if (!hex4(lo) || lo < 0xDC00 || lo >= 0xE000) return false;
        }
        continue;
      }
      if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't')
        return false;
    }
    return false;
  }
  bool literal(std::string_view w) {
    if (s.substr(i, w.size()) != w) return false;
    i += w.size();
    return true;
  }
  bool value() {
    ws();
    if (i >= s.size()) return false;
    switch (s[i]) {
      case '{':
        ++i;
        ws();
        if (i < s.size() && s[i] == '}') {
          ++i;
          return true;
        }
        for (;;) {
          ws();
          if (!string()) return false;
          ws();
          if (i >= s.size() || s[i++] != ':') return false;
          if (!value()) return false;
          ws();
          if (i < s.size() && s[i] == ',') {
            ++i;
            continue;
          }
          return i < s.size() && s[i++] == '}';
        }
      case '[':
        ++i;
        ws();
        if (i < s.size() && s[i] == ']') {
          ++i;
          return true;
        }
        for (;;) {
          if (!value()) return false;
          ws();
          if (i < s.size() && s[i] == ',') {
            ++i;
            continue;
          }
          return i < s.size() && s[i++] == ']';
        }
      case '"':
        return string();
      case 't':
        return literal("true");
      case 'f':
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return number();
    }
  }
};

bool reference_accepts(std::string_view text) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // a UTF-8 byte order mark
  validator v{text};
  if (!v.value()) return false;
  v.ws();
  return v.i == text.size();
}

// ---- int64_member reference --------------------------------------------------------------------

/// '-'? digits within int64, from the text itself.
std::optional<std::int64_t> reference_int64(std::string_view t) {
  const bool negative = !t.empty() && t[0] == '-';
  const std::size_t first = negative ? 1 : 0;
  if (first == t.size()) return {};
  __int128 x = 0;
  for (std::size_t j = first; j < t.size(); ++j) {
    if (t[j] < '0' || t[j] > '9') return {};
    x = x * 10 + (t[j] - '0');
    if (x > (static_cast<__int128>(1) << 64)) return {};  // far out of range already
  }
  if (negative) x = -x;
  if (x > INT64_MAX || x < INT64_MIN) return {};
  return static_cast<std::int64_t>(x);
}

std::string show(const std::optional<std::int64_t>& v) {
  return v ? std::to_string(*v) : "none";
}

/// Every string member of every object in `v`: int64_member reads it as its text says.
void check_string_members(const json& v) {
  if (v.is_object()) {
    for (const auto& [name, m] : v.items()) {
      if (!m.is_string()) continue;
      const auto got = noclobber::json::int64_member(v, name);
      const auto want = reference_int64(m.get_ref<const std::string&>());
      NC_FUZZ_CHECK(got == want,
                    "int64_member(\"" + name + "\") = " + show(got) + ", reference " + show(want));
    }
  }
  if (v.is_structured()) {
    for (const auto& item : v) check_string_members(item);
  }
}

/// The input as a number token and as a string member.
void check_int64_probes(std::string_view text) {
  validator v{text};
  if (v.number() && v.i == text.size()) {
    const auto doc = noclobber::detail::etcd::parse_answer("{\"k\":" + std::string(text) + "}");
    NC_FUZZ_CHECK(doc.has_value(), "a number token the reference accepts, refused in an object");
    const auto got = noclobber::json::int64_member(*doc, "k");
    const auto want = reference_int64(text);
    NC_FUZZ_CHECK(got == want, "int64_member of the number " + std::string(text) + " = " + show(got) +
                                   ", reference " + show(want));
  }
  if (nc_fuzz::valid_utf8(text)) {
    const json doc = {{"k", std::string(text)}};
    const auto got = noclobber::json::int64_member(doc, "k");
    const auto want = reference_int64(text);
    NC_FUZZ_CHECK(got == want, "int64_member of the string '" + std::string(text) + "' = " + show(got) +
                                   ", reference " + show(want));
  }
}

void fuzz_parse(std::string_view text) {
  const std::optional<json> v = noclobber::detail::etcd::parse_answer(text);
  const bool reference = reference_accepts(text);
  NC_FUZZ_CHECK(v.has_value() == reference, std::string("parse ") + (v ? "accepted" : "refused") + " '" +
                                                std::string(text) + "', the reference " +
                                                (reference ? "accepts" : "refuses"));
  check_int64_probes(text);
  if (!v) return;
  const std::string printed = v->dump();
  const std::optional<json> again = noclobber::detail::etcd::parse_answer(printed);
  NC_FUZZ_CHECK(again && *again == *v, "dump/parse round trip: '" + printed + "'");
  check_string_members(*v);
}

void fuzz_base64(std::string_view bytes) {
  const std::string enc = noclobber::detail::base64_encode(bytes);
  NC_FUZZ_CHECK(enc.size() == (bytes.size() + 2) / 3 * 4, "encoded length");
  const auto dec = noclobber::detail::base64_decode(enc);
  NC_FUZZ_CHECK(dec && *dec == bytes, "base64 round trip");
  // The bytes as base64 text: whatever decodes has the length its padding says.
  const auto d2 = noclobber::detail::base64_decode(bytes);
  if (d2) {
    std::size_t pad = 0;
    if (!bytes.empty() && bytes.back() == '=') ++pad;
    if (bytes.size() >= 2 && bytes[bytes.size() - 2] == '=') ++pad;
    NC_FUZZ_CHECK(bytes.size() % 4 == 0 && d2->size() == bytes.size() / 4 * 3 - pad, "decoded length");
    const std::string back = noclobber::detail::base64_encode(*d2);
    NC_FUZZ_CHECK(back.size() == bytes.size(), "re-encoded length");
    // Equal unless the input set bits that the padding drops (non-canonical, accepted).
    if (back != bytes)
      NC_FUZZ_CHECK(pad > 0 && back.substr(0, back.size() - 4) == bytes.substr(0, bytes.size() - 4),
                    "re-encoding differs");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  fuzz_parse(text);
  fuzz_base64(text);
  return 0;
}
