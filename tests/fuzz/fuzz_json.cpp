// Fuzz target: the etcd adapter's JSON and base64 (noclobber/adapters/detail/json_lite.hpp).
//
//   parse        never crashes; accepts exactly what a reference validator written here from
//                RFC 8259's grammar accepts (nesting up to 64; an escaped lone surrogate is refused,
//                as nlohmann/json, json_lite's planned replacement, does); what it accepts prints
//                back to JSON that parses to the same tree
//   find_int64   equals a reference computed in __int128 (a JSON string or number of optional
//                '-' and digits that fits in int64)
//   base64       decode(encode(x)) == x; what decodes has the length its padding says, and
//                re-encodes to the input when the input is canonical
//
// json_lite is reached only through this one header (the parser the etcd adapter uses); point
// `json_header` below elsewhere when it moves.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "noclobber/adapters/detail/json_lite.hpp"  // json_header

namespace {

namespace json = noclobber::detail::json;

// ---- reference validator (RFC 8259) ------------------------------------------------------------

struct validator {
  std::string_view s;
  std::size_t i = 0;

  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  }
  bool digit() const { return i < s.size() && s[i] >= '0' && s[i] <= '9'; }
  bool number() {
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
    while (i < s.size()) {
      const unsigned char c = static_cast<unsigned char>(s[i++]);
      if (c == '"') return true;
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
  bool value(int depth) {
    if (depth > 64) return false;
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
          if (!value(depth + 1)) return false;
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
          if (!value(depth + 1)) return false;
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
  validator v{text};
  if (!v.value(1)) return false;
  v.ws();
  return v.i == text.size();
}

// ---- printing a parsed tree back -----------------------------------------------------------------

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      static const char hex[] = "0123456789abcdef";
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string print(const json::value& v) {
  using kind = json::value::kind;
  switch (v.type) {
    case kind::null:
      return "null";
    case kind::boolean:
      return v.boolean ? "true" : "false";
    case kind::number:
      return v.text;
    case kind::string:
      return quote(v.text);
    case kind::array: {
      std::string s = "[";
      for (std::size_t i = 0; i < v.items.size(); ++i) s += (i ? "," : "") + print(v.items[i]);
      return s + "]";
    }
    case kind::object: {
      std::string s = "{";
      for (std::size_t i = 0; i < v.names.size(); ++i)
        s += (i ? "," : "") + quote(v.names[i]) + ":" + print(v.members[i]);
      return s + "}";
    }
  }
  return "?";
}

bool same(const json::value& a, const json::value& b) {
  if (a.type != b.type || a.boolean != b.boolean || a.text != b.text || a.items.size() != b.items.size() ||
      a.names != b.names || a.members.size() != b.members.size())
    return false;
  for (std::size_t i = 0; i < a.items.size(); ++i)
    if (!same(a.items[i], b.items[i])) return false;
  for (std::size_t i = 0; i < a.members.size(); ++i)
    if (!same(a.members[i], b.members[i])) return false;
  return true;
}

// ---- find_int64 reference ------------------------------------------------------------------------

std::optional<std::int64_t> reference_int64(const json::value& obj, std::string_view key) {
  const json::value* m = obj.find(key);
  if (m == nullptr || (m->type != json::value::kind::string && m->type != json::value::kind::number))
    return {};
  const std::string& t = m->text;
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

void check_int64_members(const json::value& v) {
  if (v.type == json::value::kind::object) {
    for (const std::string& name : v.names) {
      const auto got = json::find_int64(v, name);
      const auto want = reference_int64(v, name);
      NC_FUZZ_CHECK(got == want, "find_int64(\"" + name + "\") = " + (got ? std::to_string(*got) : "none") +
                                     ", reference " + (want ? std::to_string(*want) : "none"));
    }
  }
  for (const auto& item : v.items) check_int64_members(item);
  for (const auto& member : v.members) check_int64_members(member);
}

void fuzz_parse(std::string_view text) {
  const std::optional<json::value> v = json::parse(text);
  const bool reference = reference_accepts(text);
  NC_FUZZ_CHECK(v.has_value() == reference, std::string("parse ") + (v ? "accepted" : "refused") + " '" +
                                                std::string(text) + "', the reference " +
                                                (reference ? "accepts" : "refuses"));
  if (!v) return;
  const std::string printed = print(*v);
  const std::optional<json::value> again = json::parse(printed);
  NC_FUZZ_CHECK(again && same(*v, *again), "print/parse round trip: '" + printed + "'");
  check_int64_members(*v);
}

void fuzz_base64(std::string_view bytes) {
  const std::string enc = json::base64_encode(bytes);
  NC_FUZZ_CHECK(enc.size() == (bytes.size() + 2) / 3 * 4, "encoded length");
  const auto dec = json::base64_decode(enc);
  NC_FUZZ_CHECK(dec && *dec == bytes, "base64 round trip");
  // The bytes as base64 text: whatever decodes has the length its padding says.
  const auto d2 = json::base64_decode(bytes);
  if (d2) {
    std::size_t pad = 0;
    if (!bytes.empty() && bytes.back() == '=') ++pad;
    if (bytes.size() >= 2 && bytes[bytes.size() - 2] == '=') ++pad;
    NC_FUZZ_CHECK(bytes.size() % 4 == 0 && d2->size() == bytes.size() / 4 * 3 - pad, "decoded length");
    const std::string back = json::base64_encode(*d2);
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
