// noclobber/adapters/detail/json_lite.hpp — just enough JSON and base64 for etcd's v3 JSON
// gateway: a strict parser into a small tree (numbers kept as their text), object lookup, and
// standard base64 both ways. Not a general JSON library; its input is etcd's answers.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace noclobber::detail::json {

struct value {
  enum class kind : unsigned char { null, boolean, number, string, array, object } type = kind::null;
  bool boolean = false;
  std::string text;                // string contents, or a number's text
  std::vector<value> items;        // array elements
  std::vector<std::string> names;  // object member names, parallel to `members`
  std::vector<value> members;      // object member values

  /// The member named `key`, or nullptr (also when this is not an object).
  [[nodiscard]] const value* find(std::string_view key) const noexcept {
    if (type != kind::object) return nullptr;
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (names[i] == key) return &members[i];
    }
    return nullptr;
  }
};

namespace parse_detail {
struct parser {
  std::string_view s;
  std::size_t i = 0;
  int depth = 0;

  void ws() noexcept {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
  }
  bool lit(std::string_view w) noexcept {
    if (s.substr(i, w.size()) != w) return false;
    i += w.size();
    return true;
  }
  static void put_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  bool hex4(std::uint32_t& cp) noexcept {
    if (i + 4 > s.size()) return false;
    cp = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s[i++];
      cp <<= 4;
      if (c >= '0' && c <= '9')
        cp |= static_cast<std::uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        cp |= static_cast<std::uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        cp |= static_cast<std::uint32_t>(c - 'A' + 10);
      else
        return false;
    }
    return true;
  }
  bool string(std::string& out) {
    if (i >= s.size() || s[i] != '"') return false;
    ++i;
    while (i < s.size()) {
      const char c = s[i++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i >= s.size()) return false;
      switch (s[i++]) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          std::uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xDC00 && cp < 0xE000) return false;  // a low surrogate without its high one
          if (cp >= 0xD800 && cp < 0xDC00) {
            std::uint32_t lo = 0;
            if (!lit("\\u") || !hex4(lo) || lo < 0xDC00 || lo >= 0xE000) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          put_utf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool digit() const noexcept { return i < s.size() && s[i] >= '0' && s[i] <= '9'; }
  bool digits() noexcept {
    if (!digit()) return false;
    while (digit()) ++i;
    return true;
  }
  // RFC 8259: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
  bool number(std::string& out) {
    const std::size_t start = i;
    if (i < s.size() && s[i] == '-') ++i;
    if (i < s.size() && s[i] == '0') {
      ++i;
    } else if (!digits()) {
      return false;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      if (!digits()) return false;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      if (!digits()) return false;
    }
    out.assign(s.substr(start, i - start));
    return true;
  }
  bool parse(value& v) {
    if (++depth > 64) return false;
    ws();
    if (i >= s.size()) return false;
    bool ok = true;
    switch (s[i]) {
      case '{': {
        v.type = value::kind::object;
        ++i;
        ws();
        if (i < s.size() && s[i] == '}') {
          ++i;
          break;
        }
        while (ok) {
          std::string name;
          value member;
          ws();
          ok = string(name);
          ws();
          ok = ok && i < s.size() && s[i++] == ':' && parse(member);
          if (!ok) break;
          v.names.push_back(std::move(name));
          v.members.push_back(std::move(member));
          ws();
          if (i < s.size() && s[i] == ',') {
            ++i;
            continue;
          }
          ok = i < s.size() && s[i++] == '}';
          break;
        }
        break;
      }
      case '[': {
        v.type = value::kind::array;
        ++i;
        ws();
        if (i < s.size() && s[i] == ']') {
          ++i;
          break;
        }
        while (ok) {
          value item;
          ok = parse(item);
          if (!ok) break;
          v.items.push_back(std::move(item));
          ws();
          if (i < s.size() && s[i] == ',') {
            ++i;
            continue;
          }
          ok = i < s.size() && s[i++] == ']';
          break;
        }
        break;
      }
      case '"':
        v.type = value::kind::string;
        ok = string(v.text);
        break;
      case 't':
        v.type = value::kind::boolean;
        v.boolean = true;
        ok = lit("true");
        break;
      case 'f':
        v.type = value::kind::boolean;
        ok = lit("false");
        break;
      case 'n':
        ok = lit("null");
        break;
      default:
        v.type = value::kind::number;
        ok = number(v.text);
    }
    --depth;
    return ok;
  }
};
}  // namespace parse_detail

/// Parses a whole document; nullopt when it is not valid JSON (or nests deeper than 64).
[[nodiscard]] inline std::optional<value> parse(std::string_view text) {
  parse_detail::parser p{text};
  value v;
  if (!p.parse(v)) return std::nullopt;
  p.ws();
  if (p.i != text.size()) return std::nullopt;
  return v;
}

/// A member that is an integer, given as a JSON string or number (etcd sends int64 as strings).
[[nodiscard]] inline std::optional<std::int64_t> find_int64(const value& obj, std::string_view key) noexcept {
  const value* m = obj.find(key);
  if (m == nullptr || (m->type != value::kind::string && m->type != value::kind::number) || m->text.empty()) {
    return std::nullopt;
  }
  // An optional '-' and digits, nothing else (from_chars takes no '+' or spaces), within int64.
  const std::string& t = m->text;
  std::int64_t x = 0;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), x);
  if (ec != std::errc{} || end != t.data() + t.size()) return std::nullopt;
  return x;
}

inline std::string base64_encode(std::string_view in) {
  static constexpr char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const std::uint32_t n = (static_cast<unsigned char>(in[i]) << 16) |
                            (static_cast<unsigned char>(in[i + 1]) << 8) |
                            static_cast<unsigned char>(in[i + 2]);
    out += tbl[(n >> 18) & 63];
    out += tbl[(n >> 12) & 63];
    out += tbl[(n >> 6) & 63];
    out += tbl[n & 63];
  }
  if (i + 1 == in.size()) {
    const std::uint32_t n = static_cast<unsigned char>(in[i]) << 16;
    out += tbl[(n >> 18) & 63];
    out += tbl[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const std::uint32_t n =
        (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += tbl[(n >> 18) & 63];
    out += tbl[(n >> 12) & 63];
    out += tbl[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

/// nullopt on a character outside the standard alphabet or a bad length.
[[nodiscard]] inline std::optional<std::string> base64_decode(std::string_view in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = in[i + static_cast<std::size_t>(k)];
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        v[k] = 0;
        ++pad;
      } else {
        if (pad != 0) return std::nullopt;
        v[k] = val(c);
        if (v[k] < 0) return std::nullopt;
      }
    }
    const std::uint32_t n = (static_cast<std::uint32_t>(v[0]) << 18) |
                            (static_cast<std::uint32_t>(v[1]) << 12) |
                            (static_cast<std::uint32_t>(v[2]) << 6) | static_cast<std::uint32_t>(v[3]);
    out += static_cast<char>((n >> 16) & 0xFF);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(n & 0xFF);
  }
  return out;
}

}  // namespace noclobber::detail::json
