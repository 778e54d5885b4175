// noclobber/idempotency_ledger.hpp — run an operation once per (source, content hash).
//
// Overview
// --------
// The import retried after a crash: a check-then-insert let two requests both start the same
// import, and a background task that crashed half-way re-applied everything when it was retried.
// The fix is a ledger keyed by (source, content hash) whose entries move through
//
//     (absent) --claim--> pending --complete--> completed      (never run again)
//                            |  \--fail------> failed          (a retry claims it again)
//                            \--lease expires: a retry takes it over (the owner crashed)
//
// Every transition is a conditional write on a store that fulfils conditional_writer.hpp
// (create_if_absent for the first claim, so two claimants can't both win; write_if_match for
// the others), made through read_modify_write.
//
//     noclobber::memory_store<std::string, noclobber::ledger_entry> store;
//     noclobber::idempotency_ledger ledger(store);
//     auto r = ledger.run("blocklist:spamhaus", sha256_of(body), [&] {
//       apply_bans(body);                       // the side effect, at most once per content
//       return std::string("1432 bans");        // recorded as the entry's result
//     });
//     // r.outcome: ran, already_completed (r.result is the recorded result), in_progress,
//     // failed (op threw: recorded, rethrown), lost_claim, gave_up
//
// What a crash leaves, and why a retry is safe: a crash before the claim leaves nothing; after
// the claim, a `pending` entry with a lease. Until the lease expires, other callers get
// `in_progress` (retry later); after it, the next caller takes the entry over (`runs` counts
// the starts) and runs the operation again. So: completed operations never run again, and
// two callers never run it at the same time while a lease is valid — but an operation that
// crashed part-way *is* run again, so it must be safe to re-run on its own partial effects
// (the blocklist import: INSERT … ON CONFLICT DO NOTHING for each ban), and must finish within the lease
// (or the caller sees `lost_claim`: somebody took over, and the operation may have run twice).
// Leases compare times from `ledger_options::clock` (system_clock by default, so that several
// processes agree; their clocks must be roughly in sync).
//
// Values: the store's value_type is either `ledger_entry` or `std::string` (entries encoded by
// encode_ledger_entry / decode_ledger_entry, for SQL or HTTP stores). Its key_type must be
// constructible from std::string (see ledger_key). Each write carries a fresh claim id, so the
// values are unique per write, as read_modify_write's indeterminate rule requires.
//
// Thread safety: a ledger object may be used from any number of threads at once (it holds no
// mutable state but an atomic claim counter); the operation runs on the calling thread under
// no lock; the clock is called on the calling thread.
#pragma once

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "noclobber/cas_retry.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/duration.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_modify_write.hpp"

namespace noclobber {

enum class ledger_state : unsigned char { pending, completed, failed };

[[nodiscard]] constexpr std::string_view to_string(ledger_state s) noexcept {
  switch (s) {
    case ledger_state::pending:
      return "pending";
    case ledger_state::completed:
      return "completed";
    case ledger_state::failed:
      return "failed";
  }
  return "unknown";
}

/// One ledger record.
struct ledger_entry {
  ledger_state state = ledger_state::pending;
  std::string claim;                // who holds (or last held) it: unique per claim
  std::int64_t lease_until_ns = 0;  // pending: presumed crashed after this (clock's ns since epoch)
  std::uint32_t runs = 0;           // how many times the operation was started
  std::string result;               // completed: the operation's result; failed: the error

  friend bool operator==(const ledger_entry&, const ledger_entry&) = default;
};

/// Text form for stores whose values are strings: "nc-ledger1 <state> <lease> <runs> <claim
/// length> <claim><result>". decode returns nullopt for anything else.
[[nodiscard]] inline std::string encode_ledger_entry(const ledger_entry& e) {
  std::string out = "nc-ledger1 ";
  out += std::to_string(static_cast<unsigned>(e.state));
  out += ' ';
  out += std::to_string(e.lease_until_ns);
  out += ' ';
  out += std::to_string(e.runs);
  out += ' ';
  out += std::to_string(e.claim.size());
  out += ' ';
  out += e.claim;
  out += e.result;
  return out;
}

[[nodiscard]] inline std::optional<ledger_entry> decode_ledger_entry(std::string_view text) {
  constexpr std::string_view magic = "nc-ledger1 ";
  if (text.substr(0, magic.size()) != magic) return std::nullopt;
  text.remove_prefix(magic.size());
  auto number = [&text](auto& out) {
    const char* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data(), end, out);
    if (ec != std::errc{} || p == end || *p != ' ') return false;
    text.remove_prefix(static_cast<std::size_t>(p - text.data()) + 1);
    return true;
  };
  unsigned state = 0;
  std::size_t claim_len = 0;
  ledger_entry e;
  if (!number(state) || state > 2 || !number(e.lease_until_ns) || !number(e.runs) || !number(claim_len)) {
    return std::nullopt;
  }
  if (claim_len > text.size()) return std::nullopt;
  e.state = static_cast<ledger_state>(state);
  e.claim.assign(text.substr(0, claim_len));
  e.result.assign(text.substr(claim_len));
  return e;
}

/// The ledger key of (source, content hash): unambiguous for any two strings.
[[nodiscard]] inline std::string ledger_key(std::string_view source, std::string_view content_hash) {
  std::string key = "ledger/";
  key += std::to_string(source.size());
  key += ':';
  key += source;
  key += '/';
  key += content_hash;
  return key;
}

struct ledger_options {
  /// A pending claim older than this is presumed crashed and may be taken over. Must be > 0.
  /// Any duration converts without overflow: hours::max() means a lease that never expires.
  saturating_ns lease = std::chrono::seconds(30);
  /// Names this ledger's claims (in logs and in the entry); empty: a random id.
  std::string owner;
  /// The clock leases are measured on; null: std::chrono::system_clock::now.
  std::function<std::chrono::system_clock::time_point()> clock;
  /// Retries for each ledger write (claim, complete, fail).
  retry_policy policy;
};

enum class ledger_outcome : unsigned char {
  ran,                // we claimed it, ran the operation and recorded it completed
  already_completed,  // completed before: not run; `result` is the recorded result
  in_progress,        // another claim holds a valid lease: not run; retry later
  failed,             // the operation threw: recorded as failed (run() rethrows)
  lost_claim,         // the operation ran, but our lease had expired and someone took over
  gave_up,            // a ledger read or write failed (see reason, last_error); `indeterminate` says
                      // whether our last ledger write may have landed
};

[[nodiscard]] constexpr std::string_view to_string(ledger_outcome o) noexcept {
  switch (o) {
    case ledger_outcome::ran:
      return "ran";
    case ledger_outcome::already_completed:
      return "already_completed";
    case ledger_outcome::in_progress:
      return "in_progress";
    case ledger_outcome::failed:
      return "failed";
    case ledger_outcome::lost_claim:
      return "lost_claim";
    case ledger_outcome::gave_up:
      return "gave_up";
  }
  return "unknown";
}

/// The outcome of a ledger call. Its retry_stats base is the last ledger write's loop (reason
/// decided for already_completed, in_progress and lost_claim: the entry said so).
struct ledger_result : retry_stats {
  ledger_outcome outcome = ledger_outcome::gave_up;
  std::string result;                 // ran / already_completed: the result; failed: the error
  std::optional<ledger_entry> entry;  // the entry as last seen or written
  bool indeterminate = false;

  /// ran or already_completed: the operation's effect is in place.
  [[nodiscard]] bool ok() const noexcept {
    return outcome == ledger_outcome::ran || outcome == ledger_outcome::already_completed;
  }
  explicit operator bool() const noexcept { return ok(); }
};

/// A claim held by this caller (from claim()); pass it to complete() or fail().
struct ledger_claim {
  std::string key;
  std::string id;
  ledger_entry entry;  // the pending entry we wrote
};

template <class Store>
class idempotency_ledger {
 public:
  using store_type = Store;
  using key_type = store_key_t<Store>;
  using value_type = store_value_t<Store>;
  static constexpr bool encoded = std::is_same_v<value_type, std::string>;
  static_assert(std::is_same_v<value_type, ledger_entry> || encoded,
                "noclobber: idempotency_ledger needs a store whose value_type is noclobber::ledger_entry or "
                "std::string (entries encoded with encode_ledger_entry)");
  static_assert(
      std::is_constructible_v<key_type, std::string>,
      "noclobber: idempotency_ledger needs a store whose key_type is constructible from std::string");

  explicit idempotency_ledger(Store& store, ledger_options options = {})
      : store_(store), options_(std::move(options)) {
    if (options_.lease.get() <= std::chrono::nanoseconds::zero()) {
      throw std::invalid_argument("noclobber::idempotency_ledger: lease = " +
                                  std::to_string(options_.lease.count()) + "ns must be positive");
    }
    options_.policy.validate();
    if (options_.owner.empty()) {
      std::random_device rd;
      options_.owner = "ledger-" + std::to_string((std::uint64_t{rd()} << 32) ^ rd());
    }
  }

  /// Claims (source, content_hash), runs `op` if the claim succeeded, and records the outcome.
  /// `op()` returns a std::string (recorded as the result) or void. If `op` throws, the entry
  /// is recorded as failed and the exception is rethrown (a retry will claim it again).
  template <class Op>
  ledger_result run(std::string_view source, std::string_view content_hash, Op&& op) {
    auto claimed = claim(source, content_hash);
    if (!claimed.first) return std::move(claimed.second);
    ledger_claim c = std::move(*claimed.first);
    std::string result;
    try {
      if constexpr (std::is_void_v<std::invoke_result_t<Op&>>) {
        std::invoke(op);
      } else {
        result = std::string(std::invoke(op));
      }
    } catch (const std::exception& e) {
      (void)fail(c, e.what());
      throw;
    } catch (...) {
      (void)fail(c, "unknown exception");
      throw;
    }
    return complete(c, std::move(result));
  }

  /// Step one alone: claim the entry. On success, first holds the claim; otherwise second says
  /// why not (already_completed with the result, in_progress, or gave_up).
  std::pair<std::optional<ledger_claim>, ledger_result> claim(std::string_view source,
                                                              std::string_view content_hash) {
    check_args(source, content_hash);
    ledger_claim c;
    c.key = ledger_key(source, content_hash);
    c.id = options_.owner + "#" + std::to_string(next_claim_.fetch_add(1, std::memory_order_relaxed));
    const std::int64_t now = now_ns();
    const std::int64_t lease_until = saturating_add(std::chrono::nanoseconds(now), options_.lease).count();
    ledger_result out;
    auto r = read_modify_write(
        store_, key_type(c.key),
        [&](const std::optional<value_type>& stored) -> update<value_type> {
          std::optional<ledger_entry> current;
          if (stored) {
            current = decode(*stored);
            if (!current) return abort("corrupt ledger entry");
          }
          out.entry = current;
          ledger_entry next;
          if (current) {
            if (current->state == ledger_state::completed) return abort("completed");
            if (current->state == ledger_state::pending && current->lease_until_ns > now)
              return abort("in_progress");
            next.runs = current->runs;  // failed, or pending with an expired lease: take it over
          }
          next.state = ledger_state::pending;
          next.claim = c.id;
          next.lease_until_ns = lease_until;
          next.runs += 1;
          c.entry = next;
          return encode(next);
        },
        options_.policy);
    static_cast<retry_stats&>(out) = r;  // the ledger write's statistics
    if (r.outcome == rmw_outcome::applied) {
      out.entry = c.entry;
      return {std::move(c), std::move(out)};
    }
    if (r.outcome == rmw_outcome::aborted && r.abort_reason == "completed") {
      out.outcome = ledger_outcome::already_completed;
      out.result = out.entry->result;
    } else if (r.outcome == rmw_outcome::aborted && r.abort_reason == "in_progress") {
      out.outcome = ledger_outcome::in_progress;
    } else {
      fill_failure(out, r);
    }
    return {std::nullopt, std::move(out)};
  }

  /// Records a claim completed with `result`. lost_claim if the entry no longer holds our claim.
  ledger_result complete(const ledger_claim& c, std::string result) {
    return finish(c, ledger_state::completed, std::move(result));
  }

  /// Records a claim failed with `error` (a later run() claims it again).
  ledger_result fail(const ledger_claim& c, std::string error) {
    return finish(c, ledger_state::failed, std::move(error));
  }

  /// The entry for (source, content_hash), or nullopt when there is none (or it is unreadable).
  std::optional<ledger_entry> lookup(std::string_view source, std::string_view content_hash) {
    check_args(source, content_hash);
    auto r = store_traits<Store>::read(store_, key_type(ledger_key(source, content_hash)));
    if (!r.found()) return std::nullopt;
    return decode(r.value);
  }

  [[nodiscard]] const ledger_options& options() const noexcept { return options_; }

 private:
  ledger_result finish(const ledger_claim& c, ledger_state state, std::string text) {
    ledger_result out;
    ledger_entry next = c.entry;
    next.state = state;
    next.result = std::move(text);
    auto r = read_modify_write(
        store_, key_type(c.key),
        [&](const std::optional<value_type>& stored) -> update<value_type> {
          std::optional<ledger_entry> current = stored ? decode(*stored) : std::nullopt;
          out.entry = current;
          if (!current || current->claim != c.id || current->state != ledger_state::pending) {
            return abort("lost_claim");
          }
          return encode(next);
        },
        options_.policy);
    static_cast<retry_stats&>(out) = r;  // the ledger write's statistics
    if (r.outcome == rmw_outcome::applied) {
      out.entry = next;
      out.outcome = state == ledger_state::completed ? ledger_outcome::ran : ledger_outcome::failed;
      out.result = next.result;
    } else if (r.outcome == rmw_outcome::aborted) {
      out.outcome = ledger_outcome::lost_claim;
      out.result = next.result;
    } else {
      fill_failure(out, r);
    }
    return out;
  }

  // The statistics are in `out` already.
  template <class R>
  static void fill_failure(ledger_result& out, const R& r) {
    out.outcome = ledger_outcome::gave_up;
    out.indeterminate = r.indeterminate;
    if (r.outcome == rmw_outcome::aborted) out.last_error = {"corrupt", r.abort_reason};
  }

  static void check_args(std::string_view source, std::string_view content_hash) {
    if (source.empty()) throw std::invalid_argument("noclobber::idempotency_ledger: source is empty");
    if (content_hash.empty()) {
      throw std::invalid_argument("noclobber::idempotency_ledger: content hash for source '" +
                                  std::string(source) + "' is empty");
    }
  }

  static std::optional<ledger_entry> decode(const value_type& v) {
    if constexpr (encoded) {
      return decode_ledger_entry(v);
    } else {
      return v;
    }
  }
  static value_type encode(const ledger_entry& e) {
    if constexpr (encoded) {
      return encode_ledger_entry(e);
    } else {
      return e;
    }
  }

  std::int64_t now_ns() const {
    const auto t = options_.clock ? options_.clock() : std::chrono::system_clock::now();
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }

  Store& store_;
  ledger_options options_;
  std::atomic<std::uint64_t> next_claim_{1};
};

}  // namespace noclobber
