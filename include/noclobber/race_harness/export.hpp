// noclobber/race_harness/export.hpp — a race history in Jepsen/Elle's and Porcupine's formats,
// and back into the checker.
//
// Overview
// --------
//   to_elle_edn(history)          a Jepsen history (EDN): Elle's rw-register transactions
//   to_porcupine_json(history)    a JSON array of Porcupine operations
//   from_elle_edn(text)           a race_history for check_race_history
//   from_porcupine_json(text)     the same from Porcupine's JSON: noclobber/json/porcupine.hpp
//                                 (it parses JSON with nlohmann/json; this header needs only the
//                                 standard library)
//
// The mapping (docs/race_harness.md shows an example of each):
//
//   harness                        Elle (EDN)                              Porcupine (JSON)
//   writer W                       :process W                              "ClientId": W
//   write attempt: read v, wrote u :f :txn :value [[:r k v] [:w k u]]      "Input":
//   {"op":"rmw","key":k,"read":v,"write":u}
//     outcome ok/failed/unknown    completion :type :ok / :fail / :info    "Output":
//     {"outcome":"ok"/"failed"/"unknown"}
//   read of v                      :value [[:r k v]], :type :ok            "Input": {"op":"read","key":k},
//   "Output": {"value":v} invoke / complete ticks        :time of the :invoke / completion       "Call" /
//   "Return" each key's final version       a read by process 0 after everything    a read by ClientId 0
//   after everything version before the run         nil                                     null version by
//   write id            the id (integer)                        the id as a string (JSON numbers are doubles)
//   version written outside        "outside-<key index>-<n>"               the same string
//
// An Elle history has an :invoke and a completion per operation (:index counts both, in tick
// order); the import takes the values from the completion and the invoke tick from the matching
// :invoke. Imported writes get op numbers in their process's order and attempt 1; keys are
// numbered in order of first appearance; every key starts at nil (initial_version) and ends at
// its last final read (process / ClientId 0). A write without a read of its key is refused (the
// checker needs the version each write read), as is anything the import cannot read:
// std::invalid_argument names what and where.
//
// Thread safety: pure functions.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "noclobber/race_harness/records.hpp"
#include "noclobber/race_harness/report.hpp"

namespace noclobber {
namespace detail {

/// A version as both formats write it: nil, an id, or "outside-<key>-<n>"; `quote_ids` writes
/// ids as strings (JSON).
inline std::string export_version(const race_history& h, std::uint32_t key, write_id v, bool quote_ids,
                                  std::string_view nil) {
  if (v == initial_version || (key < h.initial_versions.size() && v == h.initial_versions[key]))
    return std::string(nil);
  if (v & foreign_version_bit)
    return "\"outside-" + std::to_string(key) + "-" + std::to_string(v & 0xFFFFFFFFu) + "\"";
  return quote_ids ? "\"" + std::to_string(v) + "\"" : std::to_string(v);
}

/// One operation of either format, in tick order.
struct export_op {
  std::uint64_t invoke, complete;
  std::uint32_t process;
  const race_write* write;  // or
  const race_read* read;
  std::uint32_t key;
  write_id final_version;  // for the final reads (process 0)
};

inline std::vector<export_op> export_ops(const race_history& h) {
  std::vector<export_op> ops;
  std::uint64_t last = 0;
  for (const race_write& w : h.writes) {
    ops.push_back({w.invoke, w.complete, w.writer, &w, nullptr, w.key, 0});
    last = std::max(last, w.complete);
  }
  for (const race_read& r : h.reads) {
    ops.push_back({r.invoke, r.complete, r.writer, nullptr, &r, r.key, 0});
    last = std::max(last, r.complete);
  }
  std::sort(ops.begin(), ops.end(),
            [](const export_op& a, const export_op& b) { return a.invoke < b.invoke; });
  for (std::uint32_t k = 0; k < h.final_versions.size(); ++k)
    ops.push_back({last + 1 + 2 * k, last + 2 + 2 * k, 0, nullptr, nullptr, k, h.final_versions[k]});
  return ops;
}

}  // namespace detail

/// The history as a Jepsen history of Elle rw-register transactions (see the overview).
[[nodiscard]] inline std::string to_elle_edn(const race_history& h) {
  struct event {
    std::uint64_t tick;
    std::string text;
  };
  std::vector<event> events;
  for (const detail::export_op& op : detail::export_ops(h)) {
    const std::string key = detail::json_escape(detail::key_name(h, op.key));
    std::string invoke_value, value, type = "ok";
    if (op.write != nullptr) {
      const race_write& w = *op.write;
      const std::string wrote = detail::export_version(h, w.key, w.written, false, "nil");
      invoke_value = "[[:r " + key + " nil] [:w " + key + " " + wrote + "]]";
      value = "[[:r " + key + " " + detail::export_version(h, w.key, w.read_from, false, "nil") + "] [:w " +
              key + " " + wrote + "]]";
      type = w.outcome == op_outcome::ok ? "ok" : w.outcome == op_outcome::failed ? "fail" : "info";
    } else {
      const write_id v = op.read != nullptr ? op.read->version : op.final_version;
      invoke_value = "[[:r " + key + " nil]]";
      value = "[[:r " + key + " " + detail::export_version(h, op.key, v, false, "nil") + "]]";
    }
    const std::string process = std::to_string(op.process);
    events.push_back({op.invoke, "{:type :invoke, :f :txn, :value " + invoke_value + ", :process " + process +
                                     ", :time " + std::to_string(op.invoke)});
    events.push_back({op.complete, "{:type :" + type + ", :f :txn, :value " + value + ", :process " +
                                       process + ", :time " + std::to_string(op.complete)});
  }
  std::stable_sort(events.begin(), events.end(),
                   [](const event& a, const event& b) { return a.tick < b.tick; });
  std::string out = "[";
  for (std::size_t i = 0; i < events.size(); ++i)
    out += (i ? "\n " : "") + events[i].text + ", :index " + std::to_string(i) + "}";
  return out + "]\n";
}

/// The history as a JSON array of Porcupine operations (see the overview).
[[nodiscard]] inline std::string to_porcupine_json(const race_history& h) {
  std::string out = "[";
  bool first = true;
  for (const detail::export_op& op : detail::export_ops(h)) {
    const std::string key = detail::json_escape(detail::key_name(h, op.key));
    std::string input, output;
    if (op.write != nullptr) {
      const race_write& w = *op.write;
      input = "{\"op\":\"rmw\",\"key\":" + key +
              ",\"read\":" + detail::export_version(h, w.key, w.read_from, true, "null") +
              ",\"write\":" + detail::export_version(h, w.key, w.written, true, "null") + "}";
      output = "{\"outcome\":\"" + std::string(to_string(w.outcome)) + "\"}";
    } else {
      const write_id v = op.read != nullptr ? op.read->version : op.final_version;
      input = "{\"op\":\"read\",\"key\":" + key + "}";
      output = "{\"value\":" + detail::export_version(h, op.key, v, true, "null") + "}";
    }
    out += std::string(first ? "" : ",\n ") + "{\"ClientId\":" + std::to_string(op.process) +
           ",\"Input\":" + input + ",\"Call\":" + std::to_string(op.invoke) + ",\"Output\":" + output +
           ",\"Return\":" + std::to_string(op.complete) + "}";
    first = false;
  }
  return out + "]\n";
}

namespace detail {

/// What both imports build: keys by name, writes and reads, final reads by process 0.
class history_builder {
 public:
  std::uint32_t key(const std::string& name) {
    auto [it, inserted] = keys_.emplace(name, static_cast<std::uint32_t>(h_.keys.size()));
    if (inserted) h_.keys.push_back(name);
    return it->second;
  }
  /// A version: nil → initial, a number → that id, "outside-k-n" → a foreign id.
  [[nodiscard]] write_id version(std::optional<std::string> text, const std::string& where) const {
    if (!text) return initial_version;
    const std::string& t = *text;
    if (t.rfind("outside-", 0) == 0) {
      const auto dash = t.find('-', 8);
      try {
        return foreign_version_bit | (std::stoull(t.substr(8, dash - 8)) << 32) |
               std::stoull(t.substr(dash + 1));
      } catch (const std::exception&) {
        throw std::invalid_argument("noclobber: " + where + ": cannot read version '" + t + "'");
      }
    }
    write_id v = 0;
    const auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc{} || p != t.data() + t.size() || (v & foreign_version_bit))
      throw std::invalid_argument("noclobber: " + where + ": cannot read version '" + t + "'");
    return v;
  }
  void write(std::uint32_t process, std::uint32_t key, write_id read_from, write_id written, op_outcome o,
             std::uint64_t invoke, std::uint64_t complete) {
    race_write w;
    w.writer = process;
    w.op = next_op_[process]++;
    w.attempt = 1;
    w.key = key;
    w.read_from = read_from;
    w.written = written;
    w.outcome = o;
    w.invoke = invoke;
    w.complete = complete;
    h_.writes.push_back(w);
  }
  void read(std::uint32_t process, std::uint32_t key, write_id v, std::uint64_t invoke,
            std::uint64_t complete) {
    if (process == 0) {
      final_[key] = v;
      return;
    }
    h_.reads.push_back({process, next_op_[process]++, key, v, v != initial_version, invoke, complete});
  }
  [[nodiscard]] race_history finish(std::string_view format) {
    h_.initial_versions.assign(h_.keys.size(), initial_version);
    for (std::uint32_t k = 0; k < h_.keys.size(); ++k) {
      auto it = final_.find(k);
      if (it == final_.end()) {
        throw std::invalid_argument("noclobber: " + std::string(format) + ": no final read of key " +
                                    h_.keys[k] +
                                    " by process 0 (the checker needs each key's final version)");
      }
      h_.final_versions.push_back(it->second);
    }
    return std::move(h_);
  }

 private:
  race_history h_;
  std::map<std::string, std::uint32_t> keys_;
  std::map<std::uint32_t, std::uint32_t> next_op_;
  std::map<std::uint32_t, write_id> final_;
};

/// Just enough EDN for Jepsen histories: vectors, lists, maps, keywords, integers, strings, nil,
/// booleans; commas are whitespace.
struct edn_value {
  enum class kind : unsigned char { nil, boolean, integer, string, keyword, vector, map } type = kind::nil;
  std::string text;              // integer, string or keyword (without ':')
  std::vector<edn_value> items;  // vector; map: key, value, key, value …
  [[nodiscard]] const edn_value* find(std::string_view keyword) const {
    for (std::size_t i = 0; i + 1 < items.size(); i += 2)
      if (items[i].type == kind::keyword && items[i].text == keyword) return &items[i + 1];
    return nullptr;
  }
};

class edn_reader {
 public:
  explicit edn_reader(std::string_view s) : s_(s) {}
  edn_value read(int depth = 0) {
    skip();
    if (i_ >= s_.size()) fail("unexpected end");
    if (depth > 64) fail("nested too deep");
    edn_value v;
    const char c = s_[i_];
    if (c == '[' || c == '(' || c == '{') {
      const char close = c == '[' ? ']' : c == '(' ? ')' : '}';
      v.type = c == '{' ? edn_value::kind::map : edn_value::kind::vector;
      ++i_;
      for (skip(); i_ < s_.size() && s_[i_] != close; skip()) v.items.push_back(read(depth + 1));
      if (i_ >= s_.size()) fail(std::string("missing '") + close + "'");
      ++i_;
      if (v.type == edn_value::kind::map && v.items.size() % 2) fail("a map with an odd number of forms");
    } else if (c == '"') {
      v.type = edn_value::kind::string;
      for (++i_; i_ < s_.size() && s_[i_] != '"'; ++i_) {
        if (s_[i_] == '\\') {
          escape(v.text);
        } else {
          v.text += s_[i_];
        }
      }
      if (i_++ >= s_.size()) fail("unterminated string");
    } else {
      const std::size_t start = i_;
      while (i_ < s_.size() && !is_space(s_[i_]) &&
             std::string_view("[](){}\"").find(s_[i_]) == std::string_view::npos)
        ++i_;
      const std::string_view tok = s_.substr(start, i_ - start);
      if (tok.empty()) fail("unexpected '" + std::string(1, c) + "'");
      if (tok == "nil") {
        v.type = edn_value::kind::nil;
      } else if (tok == "true" || tok == "false") {
        v.type = edn_value::kind::boolean;
        v.text = std::string(tok);
      } else if (tok[0] == ':') {
        v.type = edn_value::kind::keyword;
        v.text = std::string(tok.substr(1));
      } else if ((tok[0] >= '0' && tok[0] <= '9') || (tok[0] == '-' && tok.size() > 1)) {
        v.type = edn_value::kind::integer;
        v.text = std::string(tok.back() == 'N' ? tok.substr(0, tok.size() - 1) : tok);
      } else {
        fail("cannot read '" + std::string(tok) + "'");
      }
    }
    return v;
  }
  void expect_end() {
    skip();
    if (i_ != s_.size()) fail("text after the history");
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::invalid_argument("noclobber: EDN history at offset " + std::to_string(i_) + ": " + what);
  }

 private:
  static bool is_space(char c) { return c == ' ' || c == ',' || c == '\n' || c == '\r' || c == '\t'; }

  /// The escape at i_ (a backslash) into `out`, leaving i_ on its last character: \t \r \n \b
  /// \f \" \\ \/ and \uXXXX (UTF-8; a surrogate pair as one code point), what to_elle_edn's
  /// strings use (json_escape).
  void escape(std::string& out) {
    if (++i_ >= s_.size()) fail("unterminated string");
    switch (s_[i_]) {
      case 't':
        out += '\t';
        return;
      case 'r':
        out += '\r';
        return;
      case 'n':
        out += '\n';
        return;
      case 'b':
        out += '\b';
        return;
      case 'f':
        out += '\f';
        return;
      case '"':
      case '\\':
      case '/':
        out += s_[i_];
        return;
      case 'u':
        break;
      default:
        fail(std::string("unknown escape '\\") + s_[i_] + "'");
    }
    std::uint32_t cp = hex4();
    if (cp >= 0xDC00 && cp < 0xE000) fail("a low surrogate without its high one");
    if (cp >= 0xD800 && cp < 0xDC00) {
      if (i_ + 2 >= s_.size() || s_[i_ + 1] != '\\' || s_[i_ + 2] != 'u') fail("a high surrogate alone");
      i_ += 2;
      const std::uint32_t lo = hex4();
      if (lo < 0xDC00 || lo >= 0xE000) fail("a high surrogate alone");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
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
  /// The four hex digits after the 'u' at i_; i_ ends on the last.
  std::uint32_t hex4() {
    std::uint32_t cp = 0;
    for (int k = 0; k < 4; ++k) {
      if (++i_ >= s_.size()) fail("unterminated string");
      const char h = s_[i_];
      const int d = h >= '0' && h <= '9'   ? h - '0'
                    : h >= 'a' && h <= 'f' ? h - 'a' + 10
                    : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                           : -1;
      if (d < 0) fail("a \\u escape needs four hex digits");
      cp = cp * 16 + static_cast<std::uint32_t>(d);
    }
    return cp;
  }
  void skip() {
    while (i_ < s_.size()) {
      if (is_space(s_[i_])) {
        ++i_;
      } else if (s_[i_] == ';') {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      } else {
        break;
      }
    }
  }
  std::string_view s_;
  std::size_t i_ = 0;
};

inline std::uint64_t edn_number(const edn_value* v, const std::string& what) {
  if (v == nullptr || v->type != edn_value::kind::integer || v->text[0] == '-')
    throw std::invalid_argument("noclobber: EDN history: " + what + " is not a non-negative integer");
  return std::stoull(v->text);
}

}  // namespace detail

/// Reads a Jepsen history of Elle rw-register transactions (as to_elle_edn writes it) into a
/// race_history. Throws std::invalid_argument naming what it cannot read.
[[nodiscard]] inline race_history from_elle_edn(std::string_view text) {
  detail::edn_reader reader(text);
  const detail::edn_value history = reader.read();
  reader.expect_end();
  using kind = detail::edn_value::kind;
  if (history.type != kind::vector) reader.fail("a history is a vector of operations");
  detail::history_builder b;
  std::map<std::uint64_t, std::uint64_t> invoked;  // process -> invoke time
  for (std::size_t n = 0; n < history.items.size(); ++n) {
    const detail::edn_value& op = history.items[n];
    const std::string where = "EDN history, operation " + std::to_string(n);
    const detail::edn_value* type = op.find("type");
    if (op.type != kind::map || type == nullptr || type->type != kind::keyword)
      throw std::invalid_argument("noclobber: " + where + ": not a map with a :type");
    const auto process = detail::edn_number(op.find("process"), where + " :process");
    const detail::edn_value* time = op.find("time");
    const std::uint64_t tick = time != nullptr ? detail::edn_number(time, where + " :time") : n;
    if (type->text == "invoke") {
      invoked[process] = tick;
      continue;
    }
    const op_outcome outcome = type->text == "ok"     ? op_outcome::ok
                               : type->text == "fail" ? op_outcome::failed
                                                      : op_outcome::unknown;
    if (type->text != "ok" && type->text != "fail" && type->text != "info")
      throw std::invalid_argument("noclobber: " + where + ": :type :" + type->text +
                                  " (expected :invoke, :ok, :fail or :info)");
    const detail::edn_value* value = op.find("value");
    if (value == nullptr || value->type != kind::vector || value->items.empty())
      throw std::invalid_argument("noclobber: " + where + ": :value is not a vector of micro-ops");
    const std::uint64_t invoke = invoked.count(process) ? invoked[process] : tick;
    // [[:r k v]] or [[:r k v] [:w k u]]
    auto micro = [&](std::size_t i, std::string_view f) {
      const detail::edn_value& m = value->items[i];
      if (m.type != kind::vector || m.items.size() != 3 || m.items[0].type != kind::keyword ||
          m.items[0].text != f)
        throw std::invalid_argument("noclobber: " + where + ": micro-op " + std::to_string(i) +
                                    " is not [:" + std::string(f) + " key value]");
      const detail::edn_value& k = m.items[1];
      const std::uint32_t key = b.key(k.type == kind::keyword ? ":" + k.text : k.text);
      const detail::edn_value& x = m.items[2];
      std::optional<std::string> v;
      if (x.type == kind::integer || x.type == kind::string)
        v = x.text;
      else if (x.type != kind::nil)
        throw std::invalid_argument("noclobber: " + where + ": a version is nil, an integer or a string");
      return std::pair{key, b.version(v, where)};
    };
    if (value->items.size() == 1) {
      if (value->items[0].items.size() == 3 && value->items[0].items[0].text == "w")
        throw std::invalid_argument(
            "noclobber: " + where +
            ": a write without a read of its key (the checker needs the version each write read)");
      const auto [key, v] = micro(0, "r");
      if (outcome == op_outcome::ok) b.read(static_cast<std::uint32_t>(process), key, v, invoke, tick);
    } else if (value->items.size() == 2) {
      const auto [key, read_from] = micro(0, "r");
      const auto [wkey, written] = micro(1, "w");
      if (wkey != key)
        throw std::invalid_argument("noclobber: " + where + ": the read and the write name different keys");
      b.write(static_cast<std::uint32_t>(process), key, read_from, written, outcome, invoke, tick);
    } else {
      throw std::invalid_argument("noclobber: " + where +
                                  ": a transaction is [[:r k v]] or [[:r k v] [:w k u]]");
    }
  }
  return b.finish("EDN history");
}

}  // namespace noclobber
