// Fuzz target: the Redis lease backend's reading of what a server answers (adapters/redis_lease.hpp:
// the AUTH / SELECT of every connect, the acquire script's SET NX PX + INCR, the compare-and-extend
// and compare-and-delete scripts), end to end through hiredis against a scripted loopback server
// (resp_server.hpp).
//
// Input: one byte picks the connect options (a password, a username, a database), then up to 12
// operation bytes (try_acquire, extend and release, of the last grant or of a made-up one), then
// the server's script: per command one byte picks the reply a real Redis gives (+OK to AUTH and
// SELECT, the next fence number to the acquire script, 1 to extend and release) or another: nil,
// a nil array, an error with one of Redis's codes (NOREPLICAS, READONLY, MASTERDOWN, NOSCRIPT,
// WRONGPASS, BUSYKEY...) and text that may repeat the password, an integer (0, 1, -1, an edgy one),
// a bulk or status string, an array, or raw bytes (the connection then closes, and replies may no
// longer pair with commands: the exact checks stop for that input).
//
// Checked, for every call: no crash, leak or undefined behaviour; no password (nor user:password)
// in any error, last_error() or constructor message; acquired only with a token > 0, an owner and
// no error; failed always with the store's words. While replies pair with commands, against a
// reference written here:
//   - the constructor throws exactly when AUTH or SELECT got an error reply or none, saying
//     "permanent" exactly when the error's code is not one of LOADING, BUSY, TRYAGAIN, MASTERDOWN,
//     READONLY, OOM, CLUSTERDOWN, NOREPLICAS (the first word of the reply, compared whole);
//   - the script sent is the right one, with the lock key, the fence key, the owner and the TTL;
//   - try_acquire: an integer n > 0 -> acquired with token n, the owner it sent and the TTL asked;
//     0 -> busy; anything else (an error, a negative integer, another type, no answer, a refused
//     reconnect) -> failed, an error reply's text kept as the store's words;
//   - extend / release: integer 1 -> held, another integer -> lost, anything else -> unknown.
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_support.hpp"
#include "noclobber/adapters/redis_lease.hpp"
#include "resp_server.hpp"

namespace {

using noclobber::lease_check;
using noclobber::lease_status;
namespace redis = noclobber::redis;

const std::string user = "fuzz-user";
const std::string password = "Pw-fuzz-9b7e1c";

// ---- replies ----------------------------------------------------------------------------------------

enum class reply_kind { status, nil, error, integer, bulk, array, raw };

struct reply {
  reply_kind kind = reply_kind::status;
  std::string text;  // status, error, bulk
  long long integer = 0;
  std::string wire;
};

/// A line of RESP text from the input (no CR or LF; no NUL either: an exception's what() would
/// end there), sometimes with the password in it.
std::string line_text(nc_fuzz::reader& in) {
  std::string s = in.short_string();
  for (char& c : s)
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  const std::uint8_t leak = in.u8();
  if (leak % 4 == 1) s += " " + password;
  if (leak % 4 == 2) s = user + ":" + password + " " + s;
  return s;
}

reply integer_reply(long long v) {
  return {reply_kind::integer, {}, v, ":" + std::to_string(v) + "\r\n"};
}

struct server_state {
  struct entry {
    std::vector<std::string> command;
    std::optional<reply> answer;  // none: the connection was closed instead
  };
  nc_fuzz::reader in{nullptr, 0};
  long long next_fence = 1;
  std::vector<entry> log;  // this call's commands
  bool unpaired = false;   // raw bytes were sent: replies and commands may not pair any more

  reply usual(const std::vector<std::string>& cmd) {
    if (cmd.size() >= 2 && cmd[0] == "EVAL" && cmd[1] == redis::detail::lease_acquire_script)
      return integer_reply(next_fence++);
    if (!cmd.empty() && cmd[0] == "EVAL") return integer_reply(1);
    return {reply_kind::status, "OK", 0, "+OK\r\n"};
  }

  reply scripted(const std::vector<std::string>& cmd) {
    const std::uint8_t pick = in.u8();
    if (pick < 128) return usual(cmd);
    static const char* const codes[] = {"ERR",        "LOADING",   "BUSY",      "TRYAGAIN",
                                        "MASTERDOWN", "READONLY",  "OOM",       "CLUSTERDOWN",
                                        "NOREPLICAS", "NOSCRIPT",  "WRONGTYPE", "WRONGPASS",
                                        "NOAUTH",     "EXECABORT", "BUSYKEY",   "NOPERM"};
    switch (pick % 10) {
      case 0:
        return {reply_kind::nil, {}, 0, "$-1\r\n"};
      case 1:
        return {reply_kind::nil, {}, 0, "*-1\r\n"};
      case 2:
      case 3: {
        const std::string code = codes[in.u8() % 16];
        const std::uint8_t how = in.u8();
        const std::string text = how % 4 == 0 ? code : code + (how % 4 == 1 ? "" : " ") + line_text(in);
        return {reply_kind::error, text, 0, "-" + text + "\r\n"};
      }
      case 4: {
        const std::uint8_t k = in.u8();
        return integer_reply(k % 4 == 3 ? in.edgy_i64() : static_cast<long long>(k % 4) - 1);
      }
      case 5: {
        const std::string s = in.short_string();
        return {reply_kind::bulk, s, 0, "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"};
      }
      case 6: {
        const std::string s = line_text(in);
        return {reply_kind::status, s, 0, "+" + s + "\r\n"};
      }
      case 7:
        return {reply_kind::array, {}, 0, "*1\r\n:1\r\n"};
      case 8:
        return {reply_kind::array, {}, 0, "*0\r\n"};
      default:
        return {reply_kind::raw, {}, 0, in.bytes(in.u8())};
    }
  }

  nc_fuzz::resp_answer respond(const std::vector<std::string>& cmd) {
    if (in.empty()) {
      log.push_back({cmd, std::nullopt});
      return {};
    }
    reply r = scripted(cmd);
    log.push_back({cmd, r});
    if (r.kind == reply_kind::raw) {
      unpaired = true;
      return {r.wire, true};
    }
    return {r.wire, false};
  }
};

// ---- the reference ----------------------------------------------------------------------------------

/// Redis's error code is the reply's first word.
bool transient_code(std::string_view text) {
  const std::string_view code = text.substr(0, text.find(' '));
  for (std::string_view c :
       {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "OOM", "CLUSTERDOWN", "NOREPLICAS"})
    if (code == c) return true;
  return false;
}

/// The password of this input's connect options ("" when it sets none: nothing to hide).
std::string secret;

bool has_secret(std::string_view text) {
  return !secret.empty() && text.find(secret) != std::string_view::npos;
}

void check_no_secret(std::string_view text, const std::string& where) {
  NC_FUZZ_CHECK(!has_secret(text), "the password in " + where + ": " + std::string(text));
}

/// How the connect of this call ended: fine, or refused (with the reply that refused it).
struct handshake_outcome {
  bool refused = false;
  const server_state::entry* refusal = nullptr;  // the AUTH / SELECT that failed
  std::size_t next = 0;                          // the first entry after the handshake
};

handshake_outcome handshake_of(const std::vector<server_state::entry>& log) {
  handshake_outcome h;
  while (h.next < log.size() && (log[h.next].command[0] == "AUTH" || log[h.next].command[0] == "SELECT")) {
    const auto& e = log[h.next++];
    if (!e.answer || e.answer->kind == reply_kind::error) {
      h.refused = true;
      h.refusal = &e;
      return h;
    }
  }
  return h;
}

void check_eval(const std::vector<std::string>& got, const std::vector<std::string>& want) {
  NC_FUZZ_CHECK(got == want,
                "the script sent is not the one expected (" + std::to_string(got.size()) + " args)");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nc_fuzz::reader in(data, size);
  const std::uint8_t cfg = in.u8();
  redis::connect_options opts;
  opts.host = "127.0.0.1";
  opts.timeout = std::chrono::milliseconds(2000);
  if (cfg & 1) opts.password = password;
  secret = opts.password;
  if (cfg & 2) opts.username = user;
  if (cfg & 4) opts.db = 1 + (cfg >> 4);
  const std::string ops = in.bytes(in.u8() % 13);
  const std::string script = in.rest();

  server_state state;
  state.in = nc_fuzz::reader(reinterpret_cast<const std::uint8_t*>(script.data()), script.size());
  nc_fuzz::resp_server server({[&](const std::vector<std::string>& c) { return state.respond(c); }, [] {},
                               [&] { return state.unpaired ? 50 : 5000; }});
  opts.port = server.port();
  const auto paired = [&] { return server.locked([&] { return !state.unpaired; }); };
  const auto take_log = [&] { return server.locked([&] { return std::exchange(state.log, {}); }); };

  std::optional<redis::lease_backend> backend;
  try {
    backend.emplace(opts, "lk:");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    check_no_secret(what, "the constructor's message");
    const auto log = take_log();
    if (paired()) {
      const handshake_outcome h = handshake_of(log);
      NC_FUZZ_CHECK(h.refused, "the constructor threw after a handshake that succeeded: " + what);
      const bool permanent = h.refusal->answer && !transient_code(h.refusal->answer->text);
      NC_FUZZ_CHECK((what.find("(permanent") != std::string::npos) == permanent,
                    "the refusal's classification: " + what);
    }
    return 0;
  }
  if (paired()) {
    const handshake_outcome h = handshake_of(take_log());
    NC_FUZZ_CHECK(!h.refused, "the constructor succeeded after a refused handshake");
  }

  const std::string key = "k";
  const std::string lock_key = backend->lock_key(key), fence_key = backend->fence_key(key);
  std::optional<noclobber::lease_grant> grant;
  for (const char op_char : ops) {
    const auto op = static_cast<std::uint8_t>(op_char);
    (void)take_log();
    const auto ttl = std::chrono::milliseconds(1 + (op >> 2) * 97);
    const noclobber::lease_grant g =
        grant && (op & 0x80) == 0 ? *grant : noclobber::lease_grant{7, "made-up", ttl};
    const std::string what = op % 3 == 0 ? "try_acquire" : op % 3 == 1 ? "extend" : "release";
    std::optional<noclobber::lease_attempt> a;
    lease_check c = lease_check::unknown;
    if (op % 3 == 0) {
      a = backend->try_acquire(key, ttl);
      check_no_secret(a->error.code + " " + a->error.message, "try_acquire's error");
      if (a->status == lease_status::acquired) {
        NC_FUZZ_CHECK(a->grant.token > 0 && !a->grant.owner.empty() && a->error.empty(), "a bad grant");
        grant = a->grant;
      } else if (a->status == lease_status::busy) {
        NC_FUZZ_CHECK(a->error.empty(), "busy with an error");
      } else {
        NC_FUZZ_CHECK(a->status == lease_status::failed && !a->error.empty(),
                      "failed without the store's words");
      }
    } else {
      c = op % 3 == 1 ? backend->extend(key, g, ttl) : backend->release(key, g);
      NC_FUZZ_CHECK(static_cast<unsigned>(c) <= 2, "lease_check out of range");
    }
    check_no_secret(backend->last_error().code + " " + backend->last_error().message, "last_error()");
    const auto log = take_log();
    if (!paired()) continue;

    // The reference.
    const handshake_outcome h = handshake_of(log);
    const server_state::entry* eval = nullptr;
    if (!h.refused) {
      NC_FUZZ_CHECK(h.next + 1 == log.size(), what + ": not one command after the handshake");
      eval = &log[h.next];
    }
    if (op % 3 == 0) {
      if (eval) {
        check_eval(eval->command,
                   {"EVAL", redis::detail::lease_acquire_script, "2", lock_key, fence_key,
                    eval->command.size() == 7 ? eval->command[5] : "?", std::to_string(ttl.count())});
      }
      const reply* r = eval && eval->answer ? &*eval->answer : nullptr;
      const lease_status want = r == nullptr                                        ? lease_status::failed
                                : r->kind == reply_kind::integer && r->integer > 0  ? lease_status::acquired
                                : r->kind == reply_kind::integer && r->integer == 0 ? lease_status::busy
                                                                                    : lease_status::failed;
      NC_FUZZ_CHECK(a->status == want, what + ": status " + std::to_string(static_cast<int>(a->status)) +
                                           ", reference " + std::to_string(static_cast<int>(want)));
      if (want == lease_status::acquired) {
        NC_FUZZ_CHECK(a->grant.token == static_cast<noclobber::fencing_token>(r->integer) &&
                          a->grant.owner == eval->command[5] && a->grant.ttl == ttl,
                      "the grant is not what the server granted");
      }
      if (r != nullptr && r->kind == reply_kind::error && r->text.find(password) == std::string::npos &&
          r->text.find(user) == std::string::npos) {
        NC_FUZZ_CHECK(a->error.message == r->text, "the server's words were not kept: " + a->error.message);
      }
    } else {
      if (eval) {
        std::vector<std::string> want_cmd = {
            "EVAL", op % 3 == 1 ? redis::detail::lease_extend_script : redis::detail::lease_release_script,
            "1", lock_key, g.owner};
        if (op % 3 == 1) want_cmd.push_back(std::to_string(ttl.count()));
        check_eval(eval->command, want_cmd);
      }
      const reply* r = eval && eval->answer ? &*eval->answer : nullptr;
      const lease_check want = r == nullptr || r->kind != reply_kind::integer ? lease_check::unknown
                               : r->integer == 1                              ? lease_check::held
                                                                              : lease_check::lost;
      NC_FUZZ_CHECK(c == want, what + ": " + to_string(c) + ", reference " + to_string(want));
    }
  }
  backend.reset();  // the backend's connection closes before the server stops
  return 0;
}
