// Fuzz target: the Redis adapter's handling of what a server answers, end to end through hiredis.
//
// A server thread in this process listens on a loopback port and speaks RESP: it reads each
// command the store sends (arrays of bulk strings, as hiredis writes them) and answers it from
// the input's script, one reply per command; with the script used up it closes the connection
// without answering (the store then reconnects on its next call). Each input gets its own
// listener (on the same port). Nothing leaves the machine.
//
// Input: one byte picks the write method (WATCH/MULTI/EXEC or the Lua compare-and-set), then up
// to 16 operation bytes (read, create_if_absent, write_if_match, erase_if_match, overwrite, and a
// malformed token), then the server's script: per reply one byte picks either the reply a real
// Redis would give (OK, QUEUED, the stored value with the caller's stamp, [OK], the script's sha,
// 2) or another: nil, nil array, an error with one of Redis's prefixes, an integer, a stamped or
// raw bulk string, an array, or raw bytes (after which replies and commands may no longer pair:
// the exact checks stop for that input).
//
// Checked, for every call: no crash, leak or undefined behaviour; results as documented (a found
// read has a 32-hex-digit stamp; an applied write's token is the stamp it sent, and only writes
// of a value have one; failures carry the store's words); a malformed token is refused before
// anything is sent. While replies pair with commands:
//   - the unknown-outcome rule, against a model of what the scripted server did: a write the
//     server may have carried out (its reply lost or not a refusal) is never reported as not
//     applied (conflict, absent, exists, transient, permanent); indeterminate is always allowed;
//   - no WATCH outlives a call (the overview's promise that makes pooling safe): after each call
//     the connection is closed or the server's WATCH is cleared (EXEC after a MULTI that was
//     accepted, or UNWATCH; a refused MULTI leaves EXEC and DISCARD without effect, as in Redis);
//   - reads: nil -> absent, an error -> transient for LOADING/BUSY/TRYAGAIN/MASTERDOWN/READONLY/
//     OOM/CLUSTERDOWN/NOREPLICAS else permanent, a bulk string with a stamp -> found with exactly the
//     stamp and the rest, anything else -> permanent.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fuzz_support.hpp"
#include "noclobber/adapters/redis.hpp"
#include "resp_server.hpp"

namespace {

using noclobber::read_status;
using noclobber::write_status;
namespace redis = noclobber::redis;
constexpr std::size_t stamp_size = 32;

bool is_stamp(std::string_view s) {
  if (s.size() < stamp_size) return false;
  for (std::size_t i = 0; i < stamp_size; ++i) {
    const char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return s;
}

// ---- replies ----------------------------------------------------------------------------------------

/// What a scripted reply was, as far as the model needs it.
enum class reply_kind { status, nil, error, integer, bulk, array, raw };

struct reply {
  reply_kind kind = reply_kind::status;
  std::string text;                   // status text, error text, bulk bytes
  long long integer = 0;              // integer replies
  std::optional<reply_kind> element;  // first element of an array, if any
  std::string wire;                   // the bytes sent
};

std::string bulk(std::string_view s) {
  return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n";
}

reply status_reply(std::string text) {
  return {reply_kind::status, text, 0, std::nullopt, "+" + text + "\r\n"};
}
reply error_reply(std::string text) {
  return {reply_kind::error, text, 0, std::nullopt, "-" + text + "\r\n"};
}
reply integer_reply(long long v) {
  return {reply_kind::integer, {}, v, std::nullopt, ":" + std::to_string(v) + "\r\n"};
}
reply bulk_reply(std::string s) {
  std::string w = bulk(s);
  return {reply_kind::bulk, std::move(s), 0, std::nullopt, std::move(w)};
}
reply nil_reply() {
  return {reply_kind::nil, {}, 0, std::nullopt, "$-1\r\n"};
}

/// A line of RESP text from the input: no CR or LF inside.
std::string line_text(nc_fuzz::reader& in) {
  std::string s = in.short_string();
  for (char& c : s)
    if (c == '\r' || c == '\n') c = ' ';
  return s;
}

std::string hex_stamp(nc_fuzz::reader& in) {
  static const char digits[] = "0123456789abcdef";
  std::string s(stamp_size, '0');
  for (char& c : s) c = digits[in.u8() % 16];
  return s;
}

/// The reply a real Redis gives to `cmd` when all goes well. `stamp` is the caller's token (GET
/// then answers a value carrying it, so compares match).
reply usual_reply(const std::vector<std::string>& cmd, const std::string& stamp, bool in_multi) {
  const std::string name = upper(cmd.empty() ? std::string() : cmd[0]);
  if (in_multi && name != "EXEC" && name != "DISCARD" && name != "MULTI") return status_reply("QUEUED");
  if (name == "GET") return bulk_reply(stamp + "value");
  if (name == "EXEC") {
    reply r{reply_kind::array, {}, 0, reply_kind::status, "*1\r\n+OK\r\n"};
    return r;
  }
  if (name == "SCRIPT") return bulk_reply("0123456789abcdef0123456789abcdef01234567");
  if (name == "EVALSHA") return integer_reply(2);
  if (name == "DEL") return integer_reply(1);
  return status_reply("OK");
}

reply scripted_reply(nc_fuzz::reader& in, const std::vector<std::string>& cmd, const std::string& stamp,
                     bool in_multi) {
  const std::uint8_t pick = in.u8();
  if (pick < 128) return usual_reply(cmd, stamp, in_multi);
  static const char* const prefixes[] = {"ERR",        "LOADING",   "BUSY",       "TRYAGAIN",
                                         "MASTERDOWN", "READONLY",  "OOM",        "EXECABORT",
                                         "NOSCRIPT",   "WRONGTYPE", "CLUSTERDOWN"};
  switch (pick % 11) {
    case 0:
      return nil_reply();
    case 1:
      return {reply_kind::nil, {}, 0, std::nullopt, "*-1\r\n"};
    case 2:
    case 3: {
      // 242 = 22 * 11: bytes below it pick as before (the committed seeds keep their meaning).
      static const char* const more[] = {"NOREPLICAS", "NOSCRIPT", "NOPERM"};
      const std::uint8_t c = in.u8();
      return error_reply(std::string(c < 242 ? prefixes[c % 11] : more[(c - 242) % 3]) + " " + line_text(in));
    }
    case 4: {
      const std::uint8_t k = in.u8();
      return integer_reply(k % 4 == 3 ? in.edgy_i64() : k % 4);
    }
    case 5:
      return bulk_reply((in.flag() ? stamp : hex_stamp(in)) + in.short_string());
    case 6:
      return bulk_reply(in.short_string());
    case 7:
      return status_reply(line_text(in));
    case 8: {  // an array of up to 3 simple elements
      const std::size_t n = in.u8() % 4;
      reply r{reply_kind::array, {}, 0, std::nullopt, "*" + std::to_string(n) + "\r\n"};
      for (std::size_t i = 0; i < n; ++i) {
        reply e = in.flag() ? error_reply("ERR " + line_text(in)) : status_reply("OK");
        if (i == 0) r.element = e.kind;
        r.wire += e.wire;
      }
      return r;
    }
    case 9:
      return {reply_kind::array, {}, 0, reply_kind::integer, "*1\r\n:1\r\n"};
    default: {
      reply r{reply_kind::raw, {}, 0, std::nullopt, in.bytes(in.u8())};
      return r;
    }
  }
}

// ---- the scripted server ----------------------------------------------------------------------------

/// What the server saw during one call, for the model.
struct call_log {
  std::size_t commands = 0;
  bool may_have_written = false;   // a write the server may have carried out
  std::string stamp_written;       // the stamp of the last value a write sent
  bool get_sent = false;           // a GET arrived
  std::optional<reply> get_reply;  // and this was its reply (none: the connection was closed)
};

class resp_server {
 public:
  explicit resp_server(std::string script)
      : script_(std::move(script)),
        in_(reinterpret_cast<const std::uint8_t*>(script_.data()), script_.size()),
        server_({[this](const std::vector<std::string>& cmd) { return respond(cmd); },
                 [this] { end_connection_state(); },
                 // After raw bytes the client may wait for a reply that never completes: end it soon.
                 [this] { return unpaired_ ? 50 : 5000; }}) {}

  [[nodiscard]] int port() const noexcept { return server_.port(); }

  /// Starts a call: `stamp` is the caller's token (GET's usual reply carries it).
  void begin_call(const std::string& stamp) {
    server_.locked([&] {
      stamp_ = stamp;
      log_ = {};
    });
  }
  [[nodiscard]] call_log log() {
    return server_.locked([&] { return log_; });
  }
  /// Replies and commands pair one to one (no raw bytes were sent).
  [[nodiscard]] bool paired() {
    return server_.locked([&] { return !unpaired_; });
  }
  [[nodiscard]] bool watch_armed() {
    return server_.locked([&] { return watching_; });
  }

 private:
  // The model: what a Redis that gave these replies did with this command (called with the
  // command and the reply sent, or no reply when the connection was closed instead).
  void account(const std::vector<std::string>& cmd, const reply* r) {
    const std::string name = upper(cmd.empty() ? std::string() : cmd[0]);
    ++log_.commands;
    if (name == "GET") {
      log_.get_sent = true;
      if (r != nullptr) log_.get_reply = *r;
    }
    if (r == nullptr || r->kind == reply_kind::raw) {  // what the client makes of it is unknown
      if (r != nullptr) unpaired_ = true;
      if (name == "SET" || name == "DEL" || name == "EVALSHA" || (name == "EXEC" && multi_write_)) {
        log_.may_have_written = true;
      }
      if (r == nullptr) end_connection_state();
      if (name == "SET" && cmd.size() >= 3) log_.stamp_written = cmd[2].substr(0, stamp_size);
      if (name == "EVALSHA" && cmd.size() >= 6) log_.stamp_written = cmd[5].substr(0, stamp_size);
      return;
    }
    const bool refused = r->kind == reply_kind::error;
    if (name == "WATCH") {
      if (!refused) watching_ = true;
    } else if (name == "UNWATCH") {
      watching_ = false;
    } else if (name == "MULTI") {
      in_multi_ = !refused;
      multi_write_ = false;
      multi_aborted_ = false;
    } else if (name == "EXEC" || name == "DISCARD") {
      if (in_multi_) {  // without MULTI, Redis answers an error and leaves WATCH as it was
        watching_ = false;
        const bool ran = name == "EXEC" && multi_write_ && !multi_aborted_ && r->kind != reply_kind::nil &&
                         !refused && !(r->kind == reply_kind::array && r->element == reply_kind::error);
        if (ran) log_.may_have_written = true;
      }
      in_multi_ = false;
      multi_write_ = false;
    } else if (name == "SET" || name == "DEL") {
      if (name == "SET" && cmd.size() >= 3) log_.stamp_written = cmd[2].substr(0, stamp_size);
      if (in_multi_) {
        if (refused)
          multi_aborted_ = true;  // EXEC will abort the transaction
        else
          multi_write_ = true;
      } else if (!refused && r->kind != reply_kind::nil) {
        log_.may_have_written = true;  // ran at once (no transaction)
      }
    } else if (name == "EVALSHA") {
      if (cmd.size() >= 6) log_.stamp_written = cmd[5].substr(0, stamp_size);
      if (in_multi_) {
        if (!refused) multi_write_ = true;
      } else if (!refused && !(r->kind == reply_kind::integer && (r->integer == 0 || r->integer == 1))) {
        log_.may_have_written = true;
      }
    }
  }

  void end_connection_state() {
    watching_ = false;  // a closed connection takes its WATCH and MULTI with it
    in_multi_ = false;
    multi_write_ = false;
    multi_aborted_ = false;
  }

  // Called by server_ under its mutex: the next scripted reply to `cmd` (none: close).
  nc_fuzz::resp_answer respond(const std::vector<std::string>& cmd) {
    std::optional<reply> r;
    if (!in_.empty()) r = scripted_reply(in_, cmd, stamp_, in_multi_);
    account(cmd, r ? &*r : nullptr);
    if (!r) return {};  // the script is used up: close without answering
    return {r->wire, false};
  }

  const std::string script_;
  nc_fuzz::reader in_;           // guarded by server_'s mutex
  std::string stamp_;            // guarded by server_'s mutex
  call_log log_;                 // guarded by server_'s mutex
  bool unpaired_ = false;        // guarded by server_'s mutex
  bool watching_ = false;        // guarded by server_'s mutex
  bool in_multi_ = false;        // guarded by server_'s mutex
  bool multi_write_ = false;     // guarded by server_'s mutex: a write queued in the open MULTI
  bool multi_aborted_ = false;   // guarded by server_'s mutex: a queued command was refused
  nc_fuzz::resp_server server_;  // last: its thread uses the state above, under its mutex
};

// ---- checks -----------------------------------------------------------------------------------------

bool transient_prefix(std::string_view e) {
  for (std::string_view p :
       {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "OOM", "CLUSTERDOWN", "NOREPLICAS"})
    if (e.starts_with(p)) return true;
  return false;
}

void check_write(const noclobber::write_result<std::string>& w, resp_server& server, bool writes_value,
                 const char* what) {
  const std::string got = std::string(what) + ": " + std::string(to_string(w.status)) + " (" + w.error.code +
                          " " + w.error.message + ")";
  NC_FUZZ_CHECK(static_cast<unsigned>(w.status) <= 7, "write status out of range");
  if (w.ok()) {
    NC_FUZZ_CHECK(w.error.empty(), "an error on an applied write: " + got);
    NC_FUZZ_CHECK(w.token.has_value() == writes_value, "applied token presence: " + got);
  } else {
    NC_FUZZ_CHECK(!w.token.has_value(), "a token on a write that did not apply: " + got);
    NC_FUZZ_CHECK(!w.error.empty() || w.status == write_status::conflict ||
                      w.status == write_status::absent || w.status == write_status::exists,
                  "a failure without the store's words: " + got);
  }
  if (!server.paired()) return;
  const call_log log = server.log();
  if (w.ok() && w.token) {
    NC_FUZZ_CHECK(
        *w.token == log.stamp_written && is_stamp(*w.token),
        "applied token '" + *w.token + "' is not the stamp sent ('" + log.stamp_written + "'): " + got);
  }
  const bool says_not_applied = !w.ok() && w.status != write_status::indeterminate;
  NC_FUZZ_CHECK(!(says_not_applied && log.may_have_written),
                "the server may have carried out the write, the adapter says " + got);
  NC_FUZZ_CHECK(!(w.ok() && log.commands == 0), "applied without a command: " + got);
}

void check_no_watch_left(redis::store& st, resp_server& server, const char* what) {
  if (!server.paired() || st.native_handle() == nullptr) return;
  NC_FUZZ_CHECK(!server.watch_armed(), std::string("a WATCH outlived the call: ") + what);
}

void check_read(const noclobber::read_result<std::string, std::string>& r, resp_server& server) {
  NC_FUZZ_CHECK(static_cast<unsigned>(r.status) <= 3, "read status out of range");
  if (r.failed()) NC_FUZZ_CHECK(!r.error.empty(), "a failed read without the store's words");
  if (r.found()) NC_FUZZ_CHECK(r.token.size() == stamp_size && is_stamp(r.token), "found without a stamp");
  if (!server.paired()) return;
  const call_log log = server.log();
  const std::string got =
      " (got " + std::string(to_string(r.status)) + ": " + r.error.code + " " + r.error.message + ")";
  if (!log.get_sent || !log.get_reply) {  // never sent, or no answer
    NC_FUZZ_CHECK(r.status == read_status::transient, "a read without an answer" + got);
    return;
  }
  const reply& g = *log.get_reply;
  switch (g.kind) {
    case reply_kind::nil:
      NC_FUZZ_CHECK(r.status == read_status::absent, "GET nil" + got);
      break;
    case reply_kind::error:
      NC_FUZZ_CHECK(r.status == (transient_prefix(g.text) ? read_status::transient : read_status::permanent),
                    "GET error '" + g.text + "'" + got);
      break;
    case reply_kind::bulk:
      if (is_stamp(g.text)) {
        NC_FUZZ_CHECK(
            r.found() && r.token == g.text.substr(0, stamp_size) && r.value == g.text.substr(stamp_size),
            "GET of a stamped value" + got);
      } else {
        NC_FUZZ_CHECK(r.status == read_status::permanent, "GET of a value without a stamp" + got);
      }
      break;
    default:
      NC_FUZZ_CHECK(r.status == read_status::permanent, "GET answered with another type" + got);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nc_fuzz::reader in(data, size);
  const redis::method m = in.flag() ? redis::method::lua_compare_and_set : redis::method::watch_multi_exec;
  const std::string ops = in.bytes(in.u8() % 17);
  resp_server server(in.rest());
  {
    std::optional<redis::store> st;
    try {
      st.emplace("127.0.0.1", server.port(), m, std::chrono::milliseconds(2000));
    } catch (const std::runtime_error&) {
      NC_FUZZ_CHECK(false, "cannot connect to the loopback server");
    }
    std::string token = "00000000000000000000000000000000";
    for (const char op_char : ops) {
      const auto op = static_cast<std::uint8_t>(op_char);
      server.begin_call(token);
      switch (op % 6) {
        case 0: {
          const auto r = st->read("k");
          check_read(r, server);
          if (r.found()) token = r.token;
          break;
        }
        case 1: {
          const auto w = st->create_if_absent("k", "v");
          check_write(w, server, true, "create_if_absent");
          if (w.token) token = *w.token;
          break;
        }
        case 2: {
          const auto w = st->write_if_match("k", token, "v");
          check_write(w, server, true, "write_if_match");
          if (w.token) token = *w.token;
          break;
        }
        case 3:
          check_write(st->erase_if_match("k", token), server, false, "erase_if_match");
          break;
        case 4: {
          const auto w = st->overwrite("k", "v");
          check_write(w, server, true, "overwrite");
          if (w.token) token = *w.token;
          break;
        }
        default: {
          bool refused = false;
          try {
            (void)st->write_if_match("k", token.substr(0, op % stamp_size), "v");
          } catch (const std::invalid_argument&) {
            refused = true;
          }
          NC_FUZZ_CHECK(refused && server.log().commands == 0, "a malformed token was not refused up front");
        }
      }
      check_no_watch_left(*st, server, "after an operation");
    }
  }  // the store's connection closes before the server stops
  return 0;
}
