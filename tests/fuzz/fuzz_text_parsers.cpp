// Fuzz target: every small text parser and codec in the harness and the adapters. The first byte
// picks one; the rest of the input is its text.
//
//   0 race_options::apply_replay   refuses with std::invalid_argument or sets exactly the numbers
//                                   written (no sign, no wrap, no truncation to unsigned) and the
//                                   written-out schedule (priority / preempt / run lists); the
//                                   report's replay() line of the result applies back to it
//   1 append_history               refuses with std::invalid_argument or reads every field as
//                                   written (no truncation, no out-of-range outcome or kind);
//                                   serialize_history of what it read reads back the same
//   2 decode_ledger_entry          never crashes; what decodes re-encodes to a text that decodes
//                                   the same; encode -> decode is the identity; ledger_key injective
//   3 parse_write_id / tag_text    the id after the last '#' (a reference parse); tag round trip;
//     parse_race_mode              parse(to_string(m)) == m, anything else refused
//   4 redis::parse_address         "host:port" with port 1..65535 (a reference parse), else
//                                   std::invalid_argument; never overflows
//   5 detail::http                 base URL / resource URL / strong and weak ETag / Lock-Token
//     (HTTP ETag, WebDAV LOCK)     checks against reference rules; read and write answers
//                                   classified as documented
//   6 postgres / sqlite details    SQLSTATE classification, identifier checks, int8 codec
//   7 nemesis_options::apply_replay refuses with std::invalid_argument or sets exactly what is
//                                   written (decimal digits within each field's type; clock
//                                   time / operations); its replay_line() applies back to it
//
// Detail functions fuzzed here (re-point them when they move): detail::http::{checked_base_url,
// resource_url, is_strong_etag, check_strong_etag, is_weak_etag, is_lock_token, read_answer,
// write_answer, retryable} (adapters/detail/http.hpp), postgres::detail::{be_int64,
// read_be_int64, check_identifier}, sqlite::detail::valid_identifier.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_support.hpp"
#include "noclobber/adapters/http_etag.hpp"
#include "noclobber/adapters/postgres.hpp"
#include "noclobber/adapters/redis.hpp"
#include "noclobber/adapters/sqlite.hpp"
#include "noclobber/idempotency_ledger.hpp"
#include "noclobber/race_harness.hpp"
#include "noclobber/race_harness/nemesis.hpp"

namespace {

using u64 = std::uint64_t;

/// strtoull's base-0 reading of a whole token (0x hex, leading-0 octal, else decimal), with no
/// sign or space; nullopt when it is not one number or does not fit 64 bits.
std::optional<u64> base0(std::string_view t) {
  if (t.empty()) return std::nullopt;
  unsigned base = 10;
  std::size_t i = 0;
  if (t.size() >= 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
    base = 16;
    i = 2;
    if (i == t.size()) return std::nullopt;
  } else if (t[0] == '0') {
    base = 8;
  }
  __int128 v = 0;
  for (; i < t.size(); ++i) {
    const char c = t[i];
    unsigned d;
    if (c >= '0' && c <= '9')
      d = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = static_cast<unsigned>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      d = static_cast<unsigned>(c - 'A' + 10);
    else
      return std::nullopt;
    if (d >= base) return std::nullopt;
    v = v * base + d;
    if (v > std::numeric_limits<u64>::max()) return std::nullopt;
  }
  return static_cast<u64>(v);
}

// ---- 0: replay lines ---------------------------------------------------------------------------

/// A written-out schedule token's value: items separated by ',', each `parts` decimal numbers
/// separated by '.', each fitting 32 bits; empty text is an empty list. nullopt when malformed.
std::optional<std::vector<std::vector<std::uint32_t>>> tuples(std::string_view t, std::size_t parts) {
  std::vector<std::vector<std::uint32_t>> out;
  if (t.empty()) return out;
  std::size_t i = 0;
  for (;;) {
    std::vector<std::uint32_t> item;
    for (std::size_t k = 0; k < parts; ++k) {
      if (k > 0) {
        if (i == t.size() || t[i] != '.') return std::nullopt;
        ++i;
      }
      u64 v = 0;
      const std::size_t start = i;
      while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
        v = v * 10 + static_cast<u64>(t[i] - '0');
        if (v > 0xFFFFFFFFu) return std::nullopt;
        ++i;
      }
      if (i == start) return std::nullopt;
      item.push_back(static_cast<std::uint32_t>(v));
    }
    out.push_back(std::move(item));
    if (i == t.size()) return out;
    if (t[i] != ',') return std::nullopt;
    ++i;
  }
}

using options = noclobber::race_options<std::string, std::string>;

void fuzz_replay(std::string_view line) {
  options o;
  o.schedule.reset();
  bool accepted = true;
  try {
    o.apply_replay(line);
  } catch (const std::invalid_argument&) {
    accepted = false;
  }
  // Reference: space-separated key=value tokens; the last of each key wins.
  bool ok = true;
  options want;
  for (std::size_t pos = 0; pos < line.size();) {
    while (pos < line.size() && line[pos] == ' ') ++pos;
    const std::size_t end = std::min(line.find(' ', pos), line.size());
    if (end == pos) break;
    const std::string_view token = line.substr(pos, end - pos);
    pos = end;
    const auto eq = token.find('=');
    if (eq == std::string_view::npos) {
      ok = false;
      break;
    }
    const std::string_view name = token.substr(0, eq), value = token.substr(eq + 1);
    if (name == "priority" || name == "preempt" || name == "run") {  // a written-out schedule
      const auto items = tuples(value, name == "priority" ? 1 : name == "preempt" ? 3 : 2);
      if (!items) {
        ok = false;
        break;
      }
      if (name == "priority") {
        want.plan.priority.clear();
        for (const auto& x : *items) want.plan.priority.push_back(x[0]);
      } else if (name == "preempt") {
        want.plan.preemptions.clear();
        for (const auto& x : *items) want.plan.preemptions.push_back({x[0], x[1], x[2]});
      } else {
        want.plan.ops.clear();
        for (const auto& x : *items) want.plan.ops.push_back({x[0], x[1]});
      }
      continue;
    }
    if (name == "mode") {
      if (value == "forced")
        want.mode = noclobber::race_mode::forced;
      else if (value == "explore")
        want.mode = noclobber::race_mode::explore;
      else if (value == "stress")
        want.mode = noclobber::race_mode::stress;
      else
        ok = false;
      if (!ok) break;
      continue;
    }
    const std::optional<u64> n = base0(value);
    const bool narrow = name == "writers" || name == "ops" || name == "depth" || name == "iterations";
    if (!n || (narrow && *n > std::numeric_limits<unsigned>::max())) {
      ok = false;
      break;
    }
    if (name == "writers")
      want.writers = static_cast<unsigned>(*n);
    else if (name == "ops")
      want.ops_per_writer = static_cast<unsigned>(*n);
    else if (name == "seed")
      want.seed = *n;
    else if (name == "depth")
      want.depth = static_cast<unsigned>(*n);
    else if (name == "schedule")
      want.schedule = *n;
    else if (name == "iterations")
      want.iterations = static_cast<unsigned>(*n);
    else {
      ok = false;
      break;
    }
  }
  const std::string shown = "replay line '" + std::string(line) + "'";
  NC_FUZZ_CHECK(accepted == ok, shown + (accepted ? " accepted" : " refused") + ", the reference " +
                                    (ok ? "accepts" : "refuses"));
  if (!accepted) return;
  NC_FUZZ_CHECK(o.mode == want.mode && o.writers == want.writers && o.ops_per_writer == want.ops_per_writer &&
                    o.seed == want.seed && o.depth == want.depth && o.schedule == want.schedule &&
                    o.iterations == want.iterations && o.plan.priority == want.plan.priority &&
                    o.plan.preemptions == want.plan.preemptions && o.plan.ops == want.plan.ops,
                shown + " set other values than it says");
  // The report's replay line for these options applies back to the same options.
  noclobber::race_report r;
  r.mode = o.mode;
  r.writers = o.writers;
  r.ops_per_writer = o.ops_per_writer;
  r.seed = o.seed;
  r.depth = o.depth;
  r.schedule_seed = o.schedule;
  r.plan = o.plan;
  r.planned = !o.plan.empty();
  options back;
  back.apply_replay(r.replay());
  NC_FUZZ_CHECK(back.mode == o.mode && back.writers == o.writers && back.ops_per_writer == o.ops_per_writer &&
                    back.seed == o.seed,
                "replay() does not apply back: " + r.replay());
  if (o.mode == noclobber::race_mode::explore && r.planned) {
    NC_FUZZ_CHECK(back.depth == o.depth && back.plan.priority == o.plan.priority &&
                      back.plan.preemptions == o.plan.preemptions && back.plan.ops == o.plan.ops,
                  "planned explore replay: " + r.replay());
  } else if (o.mode == noclobber::race_mode::explore) {
    NC_FUZZ_CHECK(back.depth == o.depth && back.schedule == o.schedule, "explore replay: " + r.replay());
  }
}

// ---- 1: history lines --------------------------------------------------------------------------

void fuzz_history_text(std::string_view text) {
  noclobber::race_history h;
  bool accepted = true;
  try {
    noclobber::append_history(h, text);
  } catch (const std::invalid_argument&) {
    accepted = false;
  }
  // Reference: per non-empty line (a final '\r' dropped), 'w' + 10 or 11 (the condition, optional)
  // or 'r' + 7 decimal numbers
  // separated by spaces (spaces may also follow the letter and end the line), each within its
  // field's type; outcome and kind 0..2; found 0 or 1.
  bool ok = true;
  std::size_t writes = 0, reads = 0;
  std::vector<u64> expected;  // per write: its condition, or unknown_version when it has none
  for (std::size_t pos = 0; pos < text.size() && ok;) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // a CRLF file
    if (line.empty()) continue;
    const bool w = line[0] == 'w';
    if (!w && line[0] != 'r') {
      ok = false;
      break;
    }
    std::vector<u64> f;
    std::size_t i = 1;
    const std::size_t last = line.size();
    while (i < last) {
      while (i < last && line[i] == ' ') ++i;
      if (i == last) break;
      std::size_t j = i;
      while (j < last && line[j] >= '0' && line[j] <= '9') ++j;
      if (j == i || (j < last && line[j] != ' ')) {
        ok = false;
        break;
      }
      __int128 v = 0;
      for (std::size_t k = i; k < j && v <= std::numeric_limits<u64>::max(); ++k)
        v = v * 10 + (line[k] - '0');
      if (v > std::numeric_limits<u64>::max()) {
        ok = false;
        break;
      }
      f.push_back(static_cast<u64>(v));
      i = j;
    }
    if (!ok) break;
    const u64 u32max = std::numeric_limits<std::uint32_t>::max();
    if (w) {
      ok = (f.size() == 10 || f.size() == 11) && f[0] <= u32max && f[1] <= u32max && f[2] <= u32max &&
           f[3] <= u32max && f[6] <= 2 && f[7] <= 2;
      expected.push_back(f.size() == 11 ? f[10] : noclobber::unknown_version);
      ++writes;
    } else {
      ok = f.size() == 7 && f[0] <= u32max && f[1] <= u32max && f[2] <= u32max && f[4] <= 1;
      ++reads;
    }
  }
  NC_FUZZ_CHECK(accepted == ok, std::string("history text ") + (accepted ? "accepted" : "refused") +
                                    ", the reference " + (ok ? "accepts" : "refuses") + ":\n" +
                                    std::string(text));
  if (!accepted) return;
  NC_FUZZ_CHECK(h.writes.size() == writes && h.reads.size() == reads, "record counts");
  for (std::size_t i = 0; i < writes; ++i)
    NC_FUZZ_CHECK(h.writes[i].expected == expected[i], "a write's condition");
  // What was read serialises and reads back the same.
  noclobber::race_history back;
  const std::string again = noclobber::serialize_history(h);
  noclobber::append_history(back, again);
  NC_FUZZ_CHECK(noclobber::serialize_history(back) == again, "serialize / append is not stable");
}

// ---- 2: ledger entries --------------------------------------------------------------------------

void fuzz_ledger(nc_fuzz::reader& in) {
  // An entry from the input encodes and decodes to itself.
  noclobber::ledger_entry e;
  e.state = static_cast<noclobber::ledger_state>(in.u8() % 3);
  e.lease_until_ns = in.edgy_i64();
  e.runs = in.u32();
  e.claim = in.short_string();
  e.result = in.short_string();
  const std::string enc = noclobber::encode_ledger_entry(e);
  const auto dec = noclobber::decode_ledger_entry(enc);
  NC_FUZZ_CHECK(dec && *dec == e, "ledger entry round trip: " + enc);
  // ledger_key: different (source, hash) pairs never share a key.
  const std::string s1 = in.short_string(), h1 = in.short_string();
  NC_FUZZ_CHECK(noclobber::ledger_key(s1, h1) != noclobber::ledger_key(e.claim, e.result) ||
                    (s1 == e.claim && h1 == e.result),
                "ledger_key collision");
  // Arbitrary text: decodes or not, and what decodes is stable.
  const std::string text = in.rest();
  if (const auto d = noclobber::decode_ledger_entry(text)) {
    NC_FUZZ_CHECK(static_cast<unsigned>(d->state) <= 2, "state out of range");
    const auto again = noclobber::decode_ledger_entry(noclobber::encode_ledger_entry(*d));
    NC_FUZZ_CHECK(again && *again == *d, "decode / encode / decode is not stable: " + text);
  }
}

// ---- 3: write ids and race modes ----------------------------------------------------------------

void fuzz_ids(nc_fuzz::reader& in) {
  const noclobber::write_tag t{in.u32(), in.u32(), in.u32(), in.u64()};
  const std::string tag = noclobber::tag_text(t);
  NC_FUZZ_CHECK(noclobber::parse_write_id(tag) == t.id, "tag_text / parse_write_id: " + tag);
  const std::string text = in.rest();
  // Reference: the digits right after the last '#', as many as there are; 0 when none or too big.
  noclobber::write_id want = 0;
  const auto hash = text.rfind('#');
  if (hash != std::string::npos) {
    __int128 v = 0;
    std::size_t i = hash + 1;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
      v = v * 10 + (text[i] - '0');
      if (v > std::numeric_limits<u64>::max()) break;
    }
    if (i > hash + 1 && v <= std::numeric_limits<u64>::max()) want = static_cast<u64>(v);
  }
  NC_FUZZ_CHECK(noclobber::parse_write_id(text) == want, "parse_write_id('" + text + "')");
  // Race modes: the three names, nothing else.
  using noclobber::race_mode;
  for (race_mode m : {race_mode::forced, race_mode::explore, race_mode::stress})
    NC_FUZZ_CHECK(noclobber::parse_race_mode(noclobber::to_string(m)) == m, "race mode round trip");
  const bool known = text == "forced" || text == "explore" || text == "stress";
  bool parsed = true;
  try {
    (void)noclobber::parse_race_mode(text);
  } catch (const std::invalid_argument&) {
    parsed = false;
  }
  NC_FUZZ_CHECK(parsed == known, "parse_race_mode('" + text + "')");
}

// ---- 4: redis addresses ---------------------------------------------------------------------------

void fuzz_redis_address(std::string_view addr) {
  std::optional<std::pair<std::string, int>> got;
  try {
    got = noclobber::redis::parse_address(addr);
  } catch (const std::invalid_argument&) {
  }
  // Reference: host = everything before the last ':' (non-empty), port = decimal digits, 1..65535.
  std::optional<std::pair<std::string, int>> want;
  const auto colon = addr.rfind(':');
  if (colon != std::string_view::npos && colon > 0 && colon + 1 < addr.size()) {
    __int128 port = 0;
    bool digits = true;
    for (char c : addr.substr(colon + 1)) {
      digits = digits && c >= '0' && c <= '9';
      if (digits && port <= 65535) port = port * 10 + (c - '0');
    }
    if (digits && port >= 1 && port <= 65535)
      want = {std::string(addr.substr(0, colon)), static_cast<int>(port)};
  }
  NC_FUZZ_CHECK(got == want, "parse_address('" + std::string(addr) + "')");
  if (got) {
    const auto again = noclobber::redis::parse_address(got->first + ":" + std::to_string(got->second));
    NC_FUZZ_CHECK(again == got, "parse_address round trip");
  }
}

// ---- 5: HTTP ETag adapter details -------------------------------------------------------------------

namespace he = noclobber::detail::http;
namespace curl = noclobber::detail::curl;

bool key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '~';
}

void fuzz_http(nc_fuzz::reader& in) {
  const std::string base = in.short_string();
  const std::string key = in.short_string();
  const std::string etag = in.short_string();
  // Base URL: http(s)://, at least 9 characters; a '/' is added when missing.
  std::optional<std::string> b;
  try {
    b = he::checked_base_url(base, "fuzz");
  } catch (const std::invalid_argument&) {
  }
  const bool base_ok = (base.starts_with("http://") || base.starts_with("https://")) && base.size() >= 9;
  NC_FUZZ_CHECK(b.has_value() == base_ok, "checked_base_url('" + base + "')");
  if (b) NC_FUZZ_CHECK(*b == (base.ends_with('/') ? base : base + "/"), "checked_base_url result");
  // Resource URL: '/'-separated segments of [A-Za-z0-9._~-], none empty, "." or "..".
  bool key_ok = !key.empty();
  std::size_t seg = 0;
  for (std::size_t i = 0; i <= key.size() && key_ok; ++i) {
    if (i == key.size() || key[i] == '/') {
      const std::string_view s(key.data() + seg, i - seg);
      key_ok = !s.empty() && s != "." && s != "..";
      seg = i + 1;
    } else {
      key_ok = key_char(key[i]);
    }
  }
  std::optional<std::string> url;
  try {
    url = he::resource_url("http://h/", key, "fuzz");
  } catch (const std::invalid_argument&) {
  }
  NC_FUZZ_CHECK(url.has_value() == key_ok, "resource_url key '" + key + "'");
  if (url) NC_FUZZ_CHECK(*url == "http://h/" + key, "resource_url result");
  // Strong ETag: a quoted string.
  bool strong = true;
  try {
    he::check_strong_etag(etag, "fuzz");
  } catch (const std::invalid_argument&) {
    strong = false;
  }
  NC_FUZZ_CHECK(strong == (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"'),
                "check_strong_etag");
  NC_FUZZ_CHECK(he::is_strong_etag(etag) == strong, "is_strong_etag");
  NC_FUZZ_CHECK(he::is_weak_etag(etag) == (etag.size() >= 2 && etag[0] == 'W' && etag[1] == '/'),
                "is_weak_etag");
  // A Lock-Token value: a Coded-URL, "<" something ">" (RFC 4918 §10.5).
  NC_FUZZ_CHECK(he::is_lock_token(etag) == (etag.size() >= 3 && etag.front() == '<' && etag.back() == '>'),
                "is_lock_token");

  // Answers, as the adapters classify them (the table in adapters/detail/http.hpp).
  curl::response r;
  const std::uint8_t t = in.u8();
  r.code = t % 4 == 0 ? static_cast<CURLcode>(in.u8() % 100) : CURLE_OK;
  r.sent = (t & 0x10) != 0;
  r.status = in.u8() % 2 ? static_cast<long>(in.u16() % 700) : static_cast<long>(in.i64());
  r.etag = etag;
  r.body = in.rest();
  // libcurl's error text; with OpenSSL's alert words a handshake failure is the server's refusal.
  r.error = (t & 0x20) != 0 ? "error:0A000412:SSL routines::sslv3 alert bad certificate" : "e";
  using noclobber::read_status;
  using noclobber::write_status;
  const curl::response copy = r;
  const auto w = he::write_answer(r);
  const auto rd = he::read_answer(curl::response(copy), "k");
  if (!r.transport_ok()) {
    // "Could the request have left?": a malformed request never; nothing sent -> transient; sent
    // without an answer -> indeterminate for a write, transient for a read. A TLS refusal (the
    // certificate, key or CA file, or the server's certificate alert in the handshake) is
    // permanent: no request was read, and trying again meets the same refusal.
    const bool malformed = r.code == CURLE_URL_MALFORMAT || r.code == CURLE_UNSUPPORTED_PROTOCOL ||
                           r.code == CURLE_BAD_FUNCTION_ARGUMENT;
    const bool alert = r.error.find("alert bad certificate") != std::string::npos;
    const bool tls_refused = r.code == CURLE_PEER_FAILED_VERIFICATION || r.code == CURLE_SSL_CERTPROBLEM ||
                             r.code == CURLE_SSL_CACERT_BADFILE || r.code == CURLE_SSL_CIPHER ||
                             r.code == CURLE_SSL_ISSUER_ERROR || r.code == CURLE_SSL_CRL_BADFILE ||
                             r.code == CURLE_SSL_PINNEDPUBKEYNOTMATCH ||
                             r.code == CURLE_SSL_ENGINE_NOTFOUND || r.code == CURLE_SSL_ENGINE_SETFAILED ||
                             r.code == CURLE_SSL_ENGINE_INITFAILED ||
                             ((r.code == CURLE_SSL_CONNECT_ERROR || r.code == CURLE_RECV_ERROR) && alert);
    const bool permanent = malformed || tls_refused;
    const write_status want = permanent ? write_status::permanent
                              : r.sent  ? write_status::indeterminate
                                        : write_status::transient;
    NC_FUZZ_CHECK(w.status == want, "write after a transport failure");
    NC_FUZZ_CHECK(rd.status == (permanent ? read_status::permanent : read_status::transient),
                  "read transport");
    return;
  }
  const long s = r.status;
  const bool strong_etag = etag.size() >= 2 && etag.front() == '"' && etag.back() == '"';
  if (s >= 200 && s < 300) {
    NC_FUZZ_CHECK(w.status == write_status::applied, "2xx write");
    NC_FUZZ_CHECK(w.token.has_value() == strong_etag, "2xx token");
  } else if (s == 408 || s == 429 || s == 503) {
    NC_FUZZ_CHECK(w.status == write_status::transient, "retryable write");
  } else if (s == 500 || s == 502 || s == 504) {
    NC_FUZZ_CHECK(w.status == write_status::indeterminate, "5xx write");
  } else {
    NC_FUZZ_CHECK(w.status == write_status::permanent, "other write status " + std::to_string(s));
  }
  if (!w.ok())
    NC_FUZZ_CHECK(w.error.code == std::to_string(s) && w.error.message.size() <= 200, "write error");
  if (s == 404 || s == 410) {
    NC_FUZZ_CHECK(rd.status == read_status::absent, "read absent");
  } else if (s == 200) {
    if (!strong_etag) {
      NC_FUZZ_CHECK(rd.status == read_status::permanent, "read without a strong ETag");
    } else {
      NC_FUZZ_CHECK(rd.status == read_status::found && rd.token == etag && rd.value == copy.body,
                    "read found");
    }
  } else {
    NC_FUZZ_CHECK(rd.status == (he::retryable(s) ? read_status::transient : read_status::permanent),
                  "read status");
  }
}

// ---- 6: PostgreSQL and SQLite details -----------------------------------------------------------------

void fuzz_sql(nc_fuzz::reader& in) {
  const std::int64_t x = in.edgy_i64();
  const std::string be = noclobber::postgres::detail::be_int64(x);
  NC_FUZZ_CHECK(be.size() == 8 && noclobber::postgres::detail::read_be_int64(be.data()) == x, "int8 codec");
  const bool sent = in.flag();
  const std::string text = in.rest();
  using noclobber::write_status;
  const write_status c = noclobber::postgres::classify_sqlstate(text, sent);
  write_status want = write_status::permanent;
  if (text == "40001" || text == "40P01")
    want = write_status::transient_restart;
  else if (text == "55P03" || text == "57014" || text == "57P03" || text.starts_with("53"))
    want = write_status::transient;
  else if (text == "23505")
    want = write_status::exists;
  else if (text.starts_with("08") || text == "57P01" || text == "57P02")
    want = sent ? write_status::indeterminate : write_status::transient;
  NC_FUZZ_CHECK(c == want, "classify_sqlstate('" + text + "')");
  // Identifiers: postgres [a-z_][a-z0-9_]{0,47}; sqlite [A-Za-z_][A-Za-z0-9_]{0,63}.
  bool pg_ok = !text.empty() && text.size() <= 48 && (text[0] == '_' || (text[0] >= 'a' && text[0] <= 'z'));
  for (char ch : text) pg_ok = pg_ok && (ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'));
  bool pg = true;
  try {
    noclobber::postgres::detail::check_identifier("table", text);
  } catch (const std::invalid_argument&) {
    pg = false;
  }
  NC_FUZZ_CHECK(pg == pg_ok, "postgres check_identifier('" + text + "')");
  bool lite_ok = !text.empty() && text.size() <= 64;
  for (std::size_t i = 0; i < text.size() && lite_ok; ++i) {
    const char ch = text[i];
    lite_ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
              (i > 0 && ch >= '0' && ch <= '9');
  }
  NC_FUZZ_CHECK(noclobber::sqlite::detail::valid_identifier(text) == lite_ok, "sqlite valid_identifier");
}

// ---- 7: nemesis replay lines -------------------------------------------------------------------

/// Decimal digits only, at most `max`; nullopt otherwise.
std::optional<u64> decimal(std::string_view t, u64 max) {
  if (t.empty()) return std::nullopt;
  u64 v = 0;
  for (const char c : t) {
    if (c < '0' || c > '9') return std::nullopt;
    const u64 d = static_cast<u64>(c - '0');
    if (v > (max - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

void fuzz_nemesis_replay(std::string_view line) {
  // The reference: space-separated tokens ("nemesis" and empty ones skipped), each key=value.
  noclobber::nemesis_options want;
  bool ok = true;
  std::size_t pos = 0;
  while (ok && pos < line.size()) {
    const std::size_t end = std::min(line.find(' ', pos), line.size());
    const std::string_view token = line.substr(pos, end - pos);
    pos = end + 1;
    if (token.empty() || token == "nemesis") continue;
    const std::size_t eq = token.find('=');
    if (eq == std::string_view::npos) {
      ok = false;
      break;
    }
    const std::string_view name = token.substr(0, eq), value = token.substr(eq + 1);
    if (name == "clock") {
      ok = value == "time" || value == "operations";
      if (ok)
        want.clock = value == "time" ? noclobber::nemesis_clock::time : noclobber::nemesis_clock::operations;
      continue;
    }
    const u64 max = name == "faults"     ? std::numeric_limits<unsigned>::max()
                    : name == "max_hold" ? u64{1} << 40
                                         : std::numeric_limits<u64>::max();
    const std::optional<u64> v = decimal(value, max);
    if (!v) {
      ok = false;
    } else if (name == "seed") {
      want.seed = *v;
    } else if (name == "faults") {
      want.faults = static_cast<unsigned>(*v);
    } else if (name == "gap") {
      want.gap = *v;
    } else if (name == "hold") {
      want.hold = *v;
    } else if (name == "max_hold") {
      want.max_hold = std::chrono::milliseconds(static_cast<std::int64_t>(*v));
    } else {
      ok = false;
    }
  }
  noclobber::nemesis_options got;
  try {
    got.apply_replay(line);
  } catch (const std::invalid_argument&) {
    NC_FUZZ_CHECK(!ok, "nemesis apply_replay refused a valid line: " + std::string(line));
    return;
  }
  NC_FUZZ_CHECK(ok, "nemesis apply_replay accepted an invalid line: " + std::string(line));
  NC_FUZZ_CHECK(got.replay_line() == want.replay_line(),
                "nemesis apply_replay read " + got.replay_line() + ", reference " + want.replay_line());
  noclobber::nemesis_options back;
  back.apply_replay(got.replay_line());
  NC_FUZZ_CHECK(back.replay_line() == got.replay_line(), "nemesis replay line does not apply back");
  try {
    got.validate();
    NC_FUZZ_CHECK(got.faults >= 1 && got.faults <= 10000 && got.hold >= 1, "validate() passed bad options");
  } catch (const std::invalid_argument&) {
    NC_FUZZ_CHECK(got.faults == 0 || got.faults > 10000 || got.hold == 0 || got.max_hold.count() <= 0,
                  "validate() refused good options");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nc_fuzz::reader in(data, size);
  const std::uint8_t which = in.u8();
  switch (which % 8) {
    case 0:
      fuzz_replay(in.rest());
      break;
    case 1:
      fuzz_history_text(in.rest());
      break;
    case 2:
      fuzz_ledger(in);
      break;
    case 3:
      fuzz_ids(in);
      break;
    case 4:
      fuzz_redis_address(in.rest());
      break;
    case 5:
      fuzz_http(in);
      break;
    case 6:
      fuzz_sql(in);
      break;
    default:
      fuzz_nemesis_replay(in.rest());
  }
  return 0;
}
