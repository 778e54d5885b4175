// noclobber/adapters/redis/hash_store.hpp — a record as a Redis hash: mapped fields plus a
// version field, written under WATCH/MULTI/EXEC or by one Lua script.
//
// Overview
// --------
// `redis::hash_store<Record>` keeps each record in one hash, one field per mapped member
// (hash_spec.hpp), and a version field that every write moves on. It fulfils the whole store
// contract (conditional_writer.hpp), so read_modify_write, patch_if_unchanged and the race
// harness run on it:
//
//   struct session { std::string user; std::int64_t items = 0; std::optional<std::string> coupon; };
//   auto spec = noclobber::redis::hash_spec<session>()
//                   .field("user", &session::user).field("items", &session::items)
//                   .field("coupon", &session::coupon);                  // version field "version"
//   noclobber::redis::hash_store<session> sessions("127.0.0.1:6379", spec);
//   auto r = noclobber::read_modify_write(sessions, "session:42",
//       [](const std::optional<session>& s) -> noclobber::update<session> { ... });
//
// The token is the version (an int64): a create writes `first` (1), every write old + 1.
//
//   read              MULTI; HMGET k version f1…fn; EXISTS k; EXEC  (one round trip, one snapshot)
//   write_if_match    method::watch_multi_exec (default), two round trips:
//                       WATCH k + HMGET k version [+ the patched fields] + EXISTS k, compare;
//                       MULTI + HSET k version v+1 <fields> [+ HDEL k <empty optionals>] + EXEC
//                       (EXEC nil = a watched key changed: conflict)
//                     method::lua_compare_and_set: one EVALSHA of a script that compares the
//                       version and writes in one step (loaded once per connection)
//   create_if_absent  the same, on EXISTS k = 0 (else exists); the version field = first
//   erase_if_match    the same compare, then DEL k (the whole hash, unmapped fields included)
//   patch_if_match    a table_patch of whole fields (table_patch::set / hash_spec::set): only
//                     the named fields and the version are written; the change report says which
//                     fields changed (read in the same WATCH or script). JSON merges are the
//                     table stores' (std::invalid_argument here).
//   overwrite         MULTI; HINCRBY k version 1; HSET …; EXEC — no compare: the naive negative
//                     control only
//
// Outcomes: no hash → absent (a create: applied); another version → conflict; a hash without
// the version field, a version field that is not a decimal integer, or a key of another type
// (WRONGTYPE) → permanent, naming the key; a field the mapping cannot read → permanent with
// code "codec". A version does repeat after an erase and a create (ABA); read_modify_write is
// not hurt by it (it recomputes from what is there), a caller that keeps tokens across an
// erase should know it.
//
// WATCH hygiene and errors are those of redis::store (adapters/redis.hpp): every path out of a
// conditional write has run EXEC, UNWATCH or dropped the connection; an EXEC or EVALSHA whose
// answer was lost is `indeterminate`; LOADING, BUSY… replies are transient.
//
// Thread safety: a hash_store is one connection: one thread at a time; give each writer its own.
// Mapping codecs run on the calling thread; no other user code runs and no lock is taken.
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "noclobber/adapters/record_mapping.hpp"
#include "noclobber/adapters/redis/connection.hpp"
#include "noclobber/adapters/redis/hash_spec.hpp"
#include "noclobber/adapters/table_patch.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::redis {

namespace detail {
// KEYS[1] = key. ARGV: [1] version field, [2] expected version ('' = create), [3] new version
// ('' = delete the key), [4] r = fields to report, [5] s = field/value pairs to set, then the r
// reported field names, the s pairs, and the fields to remove. Returns {0} absent, {1} conflict
// (a create: exists), {3} a hash without the version field, or {2, old values of the reported
// fields (nil where absent)}.
inline constexpr const char* hash_cas_script = R"lua(
local key, vf = KEYS[1], ARGV[1]
local cur = redis.call('HGET', key, vf)
if ARGV[2] == '' then
  if redis.call('EXISTS', key) == 1 then return {1} end
elseif not cur then
  if redis.call('EXISTS', key) == 0 then return {0} end
  return {3}
elseif cur ~= ARGV[2] then
  return {1}
end
local nr, ns = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {2}
if nr > 0 then
  local old = redis.call('HMGET', key, unpack(ARGV, 6, 5 + nr))
  for i = 1, nr do out[i + 1] = old[i] end
end
if ARGV[3] == '' then
  redis.call('DEL', key)
else
  redis.call('HSET', key, vf, ARGV[3], unpack(ARGV, 6 + nr, 5 + nr + 2 * ns))
  if #ARGV > 5 + nr + 2 * ns then redis.call('HDEL', key, unpack(ARGV, 6 + nr + 2 * ns)) end
end
return out
)lua";

/// What one write does to a hash.
struct hash_plan {
  std::vector<std::string> sets;                  // field, text, field, text, …
  std::vector<std::string> removes;               // fields to HDEL (empty optionals)
  bool erase = false;                             // DEL the hash
  std::vector<std::string> reported;              // fields whose old value the report needs
  std::vector<std::optional<std::string>> after;  // their new values, in the same order
};
}  // namespace detail

/// See the overview.
template <class Record>
class hash_store {
 public:
  using key_type = std::string;
  using value_type = Record;
  using token_type = std::int64_t;
  using patch_type = table_patch;
  using spec_type = hash_spec<Record>;

  /// Connects at once. std::invalid_argument for a spec that maps nothing (or maps the version
  /// field), a bad port or timeout; std::runtime_error when the server cannot be reached.
  hash_store(std::string host, int port, spec_type spec, method m = method::watch_multi_exec,
             std::chrono::milliseconds timeout = std::chrono::seconds(5))
      : spec_(checked(std::move(spec))), conn_(std::move(host), port, timeout, "hash_store"), method_(m) {}
  /// `addr` is "host:port".
  hash_store(std::string_view addr, spec_type spec, method m = method::watch_multi_exec)
      : hash_store(parse_address(addr).first, parse_address(addr).second, std::move(spec), m) {}

  hash_store(hash_store&&) noexcept = default;
  hash_store& operator=(hash_store&&) noexcept = default;

  [[nodiscard]] const spec_type& spec() const noexcept { return spec_; }
  [[nodiscard]] method write_method() const noexcept { return method_; }
  /// The raw connection (nullptr while disconnected). Leave it with no WATCH or MULTI pending.
  [[nodiscard]] redisContext* native_handle() const noexcept { return conn_.native_handle(); }

  read_result<Record, token_type> read(const key_type& key) {
    using rr = read_result<Record, token_type>;
    if (!conn_.ensure_connected()) return rr::make_failed(read_status::transient, conn_.error());
    detail::command_args hmget{"HMGET", key, spec_.version_field()};
    for (const auto& f : spec_.values().fields()) hmget.push_back(f.name);
    std::optional<detail::multi_refusal> refused;
    detail::reply_ptr exec = conn_.transaction({hmget, {"EXISTS", key}}, refused);
    if (refused) {  // the reads ran one by one: no snapshot of the hash and its version
      return rr::make_failed(refused->status == write_status::indeterminate
                                 ? read_status::permanent
                                 : detail::as_read(refused->status),
                             std::move(refused->error));
    }
    if (!exec) return rr::make_failed(read_status::transient, conn_.error());
    if (exec->type == REDIS_REPLY_ERROR) {
      return rr::make_failed(detail::as_read(detail::error_status(exec.get())), detail::error_of(exec.get()));
    }
    if (exec->type != REDIS_REPLY_ARRAY || exec->elements != 2 ||
        exec->element[1]->type != REDIS_REPLY_INTEGER) {
      return rr::make_failed(read_status::permanent, {"EXEC", "unexpected EXEC reply to a read"});
    }
    const redisReply* got = exec->element[0];
    if (got->type == REDIS_REPLY_ERROR) {
      return rr::make_failed(detail::as_read(detail::error_status(got)),
                             with_key(key, detail::error_of(got)));
    }
    if (got->type != REDIS_REPLY_ARRAY || got->elements != hmget.size() - 2) {
      return rr::make_failed(read_status::permanent, {"HMGET", "unexpected HMGET reply"});
    }
    const bool exists = exec->element[1]->integer == 1;
    token_type version = 0;
    if (auto bad = check_version(key, got->element[0], exists, version)) {
      if (bad->code.empty()) return rr::make_absent();
      return rr::make_failed(read_status::permanent, std::move(*bad));
    }
    Record value{};
    store_error e;
    if (!decode(got, value, e)) return rr::make_failed(read_status::permanent, with_key(key, std::move(e)));
    return rr::make_found(std::move(value), version);
  }

  write_result<token_type> write_if_match(const key_type& key, const token_type& token, const Record& value) {
    detail::hash_plan plan;
    store_error e;
    if (!plan_record(value, plan, e)) return failed(write_status::permanent, with_key(key, std::move(e)));
    return conditional(key, token, plan, nullptr);
  }

  write_result<token_type> create_if_absent(const key_type& key, const Record& value) {
    detail::hash_plan plan;
    store_error e;
    if (!plan_record(value, plan, e)) return failed(write_status::permanent, with_key(key, std::move(e)));
    return conditional(key, std::nullopt, plan, nullptr);
  }

  write_result<token_type> erase_if_match(const key_type& key, const token_type& token) {
    detail::hash_plan plan;
    plan.erase = true;
    return conditional(key, token, plan, nullptr);
  }

  /// A sparse patch of whole fields at `token` (see the overview). std::invalid_argument for a
  /// JSON merge, a field the spec does not map, the version field, or a value of the wrong kind.
  write_result<token_type> patch_if_match(const key_type& key, const token_type& token,
                                          const table_patch& patch) {
    detail::hash_plan plan = plan_patch(patch);
    return conditional(key, token, plan, patch.report());
  }

  /// The unconditional write that loses updates (the naive negative control only).
  write_result<token_type> overwrite(const key_type& key, const Record& value) {
    using wr = write_result<token_type>;
    detail::hash_plan plan;
    store_error e;
    if (!plan_record(value, plan, e)) return failed(write_status::permanent, with_key(key, std::move(e)));
    if (!conn_.ensure_connected()) return failed(write_status::transient, conn_.error());
    std::optional<detail::multi_refusal> refused;
    detail::reply_ptr exec = conn_.transaction(write_commands(key, "", plan, true), refused);
    if (refused) return failed(refused->status, std::move(refused->error));
    if (!exec) return failed(write_status::indeterminate, conn_.error());
    if (auto bad = exec_failure(exec.get())) return *bad;
    if (exec->element[0]->type != REDIS_REPLY_INTEGER) return wr::make_applied();
    return wr::make_applied(static_cast<token_type>(exec->element[0]->integer));
  }

 private:
  using wr = write_result<token_type>;

  static spec_type checked(spec_type spec) {
    spec.check("noclobber::redis::hash_store");
    return spec;
  }
  static wr failed(write_status s, store_error e) { return wr::make_failed(s, std::move(e)); }
  static store_error with_key(const key_type& key, store_error e) {
    e.message = "key '" + key + "': " + e.message;
    return e;
  }

  // The version reply of a hash: nullopt with `version` set; an error with an empty code for
  // "no hash" (absent); a permanent error for a hash without a usable version field.
  std::optional<store_error> check_version(const key_type& key, const redisReply* v, bool exists,
                                           token_type& version) const {
    if (v->type == REDIS_REPLY_NIL) {
      if (!exists) return store_error{};
      return store_error{
          "format", "key '" + key + "' is a hash without the version field '" + spec_.version_field() + "'"};
    }
    const auto parsed =
        v->type == REDIS_REPLY_STRING ? detail::parse_version(detail::text_of(v)) : std::nullopt;
    if (!parsed) {
      return store_error{"format", "key '" + key + "': the version field '" + spec_.version_field() +
                                       "' does not hold a decimal integer"};
    }
    version = *parsed;
    return std::nullopt;
  }

  // HMGET's replies after the version, one per mapped field, into `out`.
  bool decode(const redisReply* got, Record& out, store_error& e) const {
    const auto& fields = spec_.values().fields();
    std::vector<field_value> values(fields.size());
    for (std::size_t i = 0; i < fields.size(); ++i) {
      const redisReply* r = got->element[i + 1];
      std::optional<std::string_view> text;
      if (r->type == REDIS_REPLY_STRING) text = detail::text_of(r);
      if (!detail::from_hash_text(text, fields[i].kind, fields[i].name, values[i], e)) return false;
    }
    return spec_.values().decode(values, out, e);
  }

  bool plan_record(const Record& value, detail::hash_plan& plan, store_error& e) const {
    std::vector<field_value> values;
    if (!spec_.values().encode(value, values, e)) return false;
    const auto& fields = spec_.values().fields();
    for (std::size_t i = 0; i < fields.size(); ++i)
      add_field(plan, fields[i].name, detail::to_hash_text(values[i]));
    return true;
  }

  detail::hash_plan plan_patch(const table_patch& patch) const {
    auto fail = [](const std::string& what) {
      throw std::invalid_argument("noclobber::redis::hash_store::patch_if_match: " + what);
    };
    if (!patch.merges().empty())
      fail("a JSON merge (table_patch::merge) is for the table stores; set whole fields");
    detail::hash_plan plan;
    for (const auto& s : patch.sets()) {
      const auto* f = spec_.values().find(s.column);
      if (f == nullptr) fail("field '" + s.column + "' is not mapped by the hash_spec");
      if (s.value.is_null() && !f->nullable)
        fail("field '" + s.column + "' is set to NULL, but its member is not optional");
      std::optional<std::string> text = detail::to_hash_text(s.value);
      field_value back;
      store_error e;
      if (text &&
          !detail::from_hash_text(std::optional<std::string_view>(*text), f->kind, f->name, back, e)) {
        fail(e.message);
      }
      if (patch.report() != nullptr) {
        plan.reported.push_back(s.column);
        plan.after.push_back(text);
      }
      add_field(plan, s.column, std::move(text));
    }
    return plan;
  }

  static void add_field(detail::hash_plan& plan, const std::string& name, std::optional<std::string> text) {
    if (text) {
      plan.sets.push_back(name);
      plan.sets.push_back(std::move(*text));
    } else {
      plan.removes.push_back(name);
    }
  }

  // The queued commands of a write: HSET (version `next`, or HINCRBY when `bump`), HDEL; or DEL.
  std::vector<detail::command_args> write_commands(const key_type& key, std::string_view next,
                                                   const detail::hash_plan& plan, bool bump) const {
    std::vector<detail::command_args> out;
    if (plan.erase) {
      out.push_back({"DEL", key});
      return out;
    }
    if (bump) out.push_back({"HINCRBY", key, spec_.version_field(), "1"});
    if (!bump || !plan.sets.empty()) {
      detail::command_args hset{"HSET", key};
      if (!bump) {
        hset.push_back(spec_.version_field());
        hset.push_back(next);
      }
      hset.insert(hset.end(), plan.sets.begin(), plan.sets.end());
      out.push_back(std::move(hset));
    }
    if (!plan.removes.empty()) {
      detail::command_args hdel{"HDEL", key};
      hdel.insert(hdel.end(), plan.removes.begin(), plan.removes.end());
      out.push_back(std::move(hdel));
    }
    return out;
  }

  // A write's EXEC answer as a failure (error reply: nothing ran; an error inside; another shape:
  // the write may have run, indeterminate), or nullopt.
  static std::optional<wr> exec_failure(const redisReply* exec) {
    if (exec->type == REDIS_REPLY_ERROR) return failed(detail::error_status(exec), detail::error_of(exec));
    if (exec->type != REDIS_REPLY_ARRAY || exec->elements == 0) {
      return failed(write_status::indeterminate, {"EXEC", "unexpected EXEC reply"});
    }
    for (std::size_t i = 0; i < exec->elements; ++i) {
      const redisReply* r = exec->element[i];
      if (r->type == REDIS_REPLY_ERROR) return failed(detail::error_status(r), detail::error_of(r));
    }
    return std::nullopt;
  }

  // The version a write at `expected` (nullopt: a create) writes.
  std::optional<token_type> next_version(const std::optional<token_type>& expected) const {
    if (!expected) return spec_.first_version();
    if (*expected == std::numeric_limits<token_type>::max()) return std::nullopt;
    return *expected + 1;
  }

  wr conditional(const key_type& key, const std::optional<token_type>& expected,
                 const detail::hash_plan& plan, change_report* report) {
    const auto next = next_version(expected);
    if (!next)
      return failed(write_status::permanent, {"version", "key '" + key + "': the version is at its maximum"});
    if (!conn_.ensure_connected()) return failed(write_status::transient, conn_.error());
    const std::string expected_text = expected ? std::to_string(*expected) : std::string();
    const std::string next_text = plan.erase ? std::string() : std::to_string(*next);
    std::vector<std::optional<std::string>> before;
    wr out = method_ == method::lua_compare_and_set ? lua_write(key, expected_text, next_text, plan, before)
                                                    : watch_write(key, expected, next_text, plan, before);
    if (!out.ok()) return out;
    if (report != nullptr) fill_report(*report, plan, before);
    return plan.erase ? wr::make_applied() : wr::make_applied(*next);
  }

  // WATCH k + HMGET k version <reported> + EXISTS k; compare; MULTI … EXEC.
  wr watch_write(const key_type& key, const std::optional<token_type>& expected, const std::string& next_text,
                 const detail::hash_plan& plan, std::vector<std::optional<std::string>>& before) {
    detail::command_args hmget{"HMGET", key, spec_.version_field()};
    hmget.insert(hmget.end(), plan.reported.begin(), plan.reported.end());
    conn_.append({"WATCH", key});
    conn_.append(hmget);
    conn_.append({"EXISTS", key});
    detail::reply_ptr w = conn_.get_reply();
    detail::reply_ptr got = w ? conn_.get_reply() : nullptr;
    detail::reply_ptr ex = got ? conn_.get_reply() : nullptr;
    if (!ex) return failed(write_status::transient, conn_.error());  // nothing was written
    for (const redisReply* r : {w.get(), got.get(), ex.get()}) {
      if (r->type == REDIS_REPLY_ERROR) {
        return conn_.unwatch_and(failed(detail::error_status(r), with_key(key, detail::error_of(r))));
      }
    }
    if (got->type != REDIS_REPLY_ARRAY || got->elements != hmget.size() - 2 ||
        ex->type != REDIS_REPLY_INTEGER) {
      return conn_.unwatch_and(failed(write_status::permanent, {"HMGET", "unexpected reply"}));
    }
    const bool exists = ex->integer == 1;
    if (!expected) {
      if (exists) return conn_.unwatch_and(wr::make_exists());
    } else {
      token_type current = 0;
      if (auto bad = check_version(key, got->element[0], exists, current)) {
        if (bad->code.empty()) return conn_.unwatch_and(wr::make_absent());
        return conn_.unwatch_and(failed(write_status::permanent, std::move(*bad)));
      }
      if (current != *expected) return conn_.unwatch_and(wr::make_conflict());
    }
    for (std::size_t i = 0; i < plan.reported.size(); ++i)
      before.push_back(optional_text(got->element[i + 1]));
    std::optional<detail::multi_refusal> refused;
    detail::reply_ptr exec = conn_.transaction(write_commands(key, next_text, plan, false), refused);
    if (refused) return failed(refused->status, with_key(key, std::move(refused->error)));
    if (!exec) return failed(write_status::indeterminate, conn_.error());  // EXEC may have run
    if (exec->type == REDIS_REPLY_NIL) return expected ? wr::make_conflict() : wr::make_exists();
    if (auto bad = exec_failure(exec.get())) return *bad;
    return wr::make_applied();
  }

  // One EVALSHA of hash_cas_script.
  wr lua_write(const key_type& key, const std::string& expected_text, const std::string& next_text,
               const detail::hash_plan& plan, std::vector<std::optional<std::string>>& before) {
    const std::string reported = std::to_string(plan.reported.size());
    const std::string pairs = std::to_string(plan.sets.size() / 2);
    detail::command_args args{"1", key, spec_.version_field(), expected_text, next_text, reported, pairs};
    args.insert(args.end(), plan.reported.begin(), plan.reported.end());
    args.insert(args.end(), plan.sets.begin(), plan.sets.end());
    args.insert(args.end(), plan.removes.begin(), plan.removes.end());
    write_status status = write_status::permanent;
    store_error error;
    auto r = script_.run(conn_, args, write_status::indeterminate, status, error);
    if (!r) return failed(status, with_key(key, std::move(error)));
    const redisReply* a = r->get();
    // Anything but the script's answers: the script (or something else) ran; it may have written.
    if (a->type != REDIS_REPLY_ARRAY || a->elements == 0 || a->element[0]->type != REDIS_REPLY_INTEGER) {
      return failed(write_status::indeterminate, {"EVALSHA", "unexpected reply"});
    }
    switch (a->element[0]->integer) {
      case 0:
        return wr::make_absent();
      case 1:
        return expected_text.empty() ? wr::make_exists() : wr::make_conflict();
      case 3:
        return failed(write_status::permanent,
                      {"format", "key '" + key + "' is a hash without the version field '" +
                                     spec_.version_field() + "'"});
      case 2:
        break;
      default:
        return failed(write_status::indeterminate, {"EVALSHA", "unexpected reply"});
    }
    for (std::size_t i = 1; i < a->elements && before.size() < plan.reported.size(); ++i) {
      before.push_back(optional_text(a->element[i]));
    }
    return wr::make_applied();
  }

  static std::optional<std::string> optional_text(const redisReply* r) {
    if (r->type != REDIS_REPLY_STRING) return std::nullopt;
    return std::string(detail::text_of(r));
  }

  static void fill_report(change_report& report, const detail::hash_plan& plan,
                          const std::vector<std::optional<std::string>>& before) {
    report.clear();
    for (std::size_t i = 0; i < plan.reported.size(); ++i) {
      const bool same = i < before.size() && before[i] == plan.after[i];
      report.entries.push_back({plan.reported[i], "", same ? change_kind::unchanged : change_kind::changed});
    }
  }

  spec_type spec_;
  detail::connection conn_;
  method method_ = method::watch_multi_exec;
  detail::lua_script script_{detail::hash_cas_script};
};

}  // namespace noclobber::redis
