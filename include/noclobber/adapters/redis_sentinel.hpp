// noclobber/adapters/redis_sentinel.hpp — a redis::store that finds the primary through Sentinel.
//
// Overview
// --------
// `redis::sentinel_store` is a `redis::store` (see redis.hpp: version stamps, WATCH/MULTI/EXEC or
// the Lua CAS) on the connection to whichever node the Sentinels name as primary now:
//
//   1. ask the Sentinels in turn `SENTINEL get-master-addr-by-name NAME`; the first answer wins;
//   2. connect to that address and check with `ROLE` that it calls itself a master (a Sentinel's
//      view lags a failover by a moment; a replica would answer READONLY anyway);
//   3. use that connection until a call fails with an I/O error (a dead or paused primary, a
//      dropped connection) or READONLY / MASTERDOWN (the node was demoted): the connection is
//      closed and the next call starts again at 1.
//
// The call that failed keeps its own answer: an I/O error on EXEC stays `indeterminate` (the
// write may have run on the old primary), never re-sent here; read_modify_write resolves it by
// reading back. No Sentinel answering, or its primary not answering as one, is `transient`.
//
// Replication is asynchronous in Redis: an acknowledged write the replicas have not received yet
// vanishes when a replica is promoted. `wait_replicas = N` sends `WAIT N wait_timeout` after each
// applied write; when fewer than N replicas confirm in time, the write is reported
// `indeterminate` instead of applied (it is on the primary and may or may not survive a failover),
// and the connection is dropped, so that the read-back resolving it asks the Sentinels first.
// WAIT does not make Redis strongly consistent (a failover may still pick a replica that missed
// the write, and a read-back may see it on the old primary); docs/faults.md measures what it does.
//
// Thread safety: a sentinel_store is one connection (and one at a time to a Sentinel): one thread
// at a time, like redis::store. No user callback runs inside it.
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "noclobber/adapters/redis.hpp"
#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"

namespace noclobber::redis {

/// How a sentinel_store finds its primary and what it waits for after a write.
struct sentinel_options {
  std::vector<std::string> sentinels;  ///< "host:port" of each Sentinel, asked in this order
  std::string master_name;             ///< the name the Sentinels monitor the primary under
  method write_method = method::watch_multi_exec;
  /// Connect and reply timeout, for the Sentinels and the primary.
  std::chrono::milliseconds timeout = std::chrono::seconds(5);
  /// After each applied write: WAIT for this many replicas (0: don't wait).
  int wait_replicas = 0;
  std::chrono::milliseconds wait_timeout = std::chrono::seconds(1);
};

/// Splits "h:p,h:p,..." (what scripts/clusters/redis.sh prints) into addresses, each checked by
/// parse_address; std::invalid_argument when one is malformed or the list is empty.
inline std::vector<std::string> split_addresses(std::string_view list) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= list.size()) {
    std::size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string_view one = list.substr(pos, comma - pos);
    (void)parse_address(one);  // throws when malformed
    out.emplace_back(one);
    pos = comma + 1;
  }
  return out;
}

/// A redis::store on the primary the Sentinels name; see the overview. Not thread-safe.
class sentinel_store {
 public:
  using key_type = store::key_type;
  using value_type = store::value_type;
  using token_type = store::token_type;

  /// Checks the options (std::invalid_argument naming the bad one); connects on the first call.
  explicit sentinel_store(sentinel_options options) : options_(std::move(options)) {
    if (options_.sentinels.empty())
      throw std::invalid_argument("noclobber::redis::sentinel_store: no Sentinel address given");
    for (const std::string& a : options_.sentinels) (void)parse_address(a);
    if (options_.master_name.empty())
      throw std::invalid_argument("noclobber::redis::sentinel_store: master_name is empty");
    if (options_.timeout.count() <= 0 || options_.wait_timeout.count() < 0 || options_.wait_replicas < 0) {
      throw std::invalid_argument(
          "noclobber::redis::sentinel_store: timeout must be positive, wait_timeout and wait_replicas "
          "not negative (got " +
          std::to_string(options_.timeout.count()) + " ms, " + std::to_string(options_.wait_timeout.count()) +
          " ms, " + std::to_string(options_.wait_replicas) + ")");
    }
  }

  /// "host:port" of the primary this store is connected to; empty while it is not.
  [[nodiscard]] std::string primary() const {
    return primary_ ? primary_addr_.first + ":" + std::to_string(primary_addr_.second) : std::string();
  }
  /// How many times it connected to a primary (1 + the reconnects after failures).
  [[nodiscard]] std::size_t connects() const noexcept { return connects_; }

  read_result<value_type, token_type> read(const key_type& key) {
    using rr = read_result<value_type, token_type>;
    store_error e;
    if (!ensure_primary(e)) return rr::make_failed(read_status::transient, std::move(e));
    auto r = primary_->read(key);
    if (r.status == read_status::transient) forget_if_gone(r.error);
    return r;
  }

  write_result<token_type> create_if_absent(const key_type& key, const value_type& value) {
    return write([&](store& s) { return s.create_if_absent(key, value); });
  }
  write_result<token_type> write_if_match(const key_type& key, const token_type& token,
                                          const value_type& value) {
    return write([&](store& s) { return s.write_if_match(key, token, value); });
  }
  write_result<token_type> erase_if_match(const key_type& key, const token_type& token) {
    return write([&](store& s) { return s.erase_if_match(key, token); });
  }
  /// The unconditional SET that loses updates (negative control only).
  write_result<token_type> overwrite(const key_type& key, const value_type& value) {
    return write([&](store& s) { return s.overwrite(key, value); });
  }

 private:
  template <class Call>
  write_result<token_type> write(Call&& call) {
    using wr = write_result<token_type>;
    store_error e;
    if (!ensure_primary(e)) return wr::make_failed(write_status::transient, std::move(e));
    wr r = call(*primary_);
    if (!r.ok()) {
      forget_if_gone(r.error);
      return r;
    }
    return options_.wait_replicas > 0 ? wait_for_replicas(std::move(r)) : r;
  }

  /// WAIT after an applied write: fewer replicas than asked → indeterminate (see the overview).
  write_result<token_type> wait_for_replicas(write_result<token_type> applied) {
    using wr = write_result<token_type>;
    const std::string n = std::to_string(options_.wait_replicas);
    const std::string ms = std::to_string(options_.wait_timeout.count());
    redisContext* c = primary_->native_handle();
    detail::reply_ptr w = c ? detail::command(c, {"WAIT", n, ms}) : nullptr;
    if (!w || w->type != REDIS_REPLY_INTEGER) {
      store_error e{"WAIT", w && w->type == REDIS_REPLY_ERROR ? std::string(w->str)
                                                              : std::string(c ? c->errstr : "not connected")};
      primary_.reset();  // the connection is in an unknown state
      return wr::make_failed(write_status::indeterminate, std::move(e));
    }
    if (w->integer < options_.wait_replicas) {
      // A primary short of replicas may be one the Sentinels replaced while it was cut off or
      // paused: the read-back that resolves this answer must ask them again, not read the
      // write back from this node.
      primary_.reset();
      return wr::make_failed(
          write_status::indeterminate,
          {"WAIT", "the primary applied the write but " + std::to_string(w->integer) + " of " + n +
                       " replicas confirmed it within " + ms + " ms: it may vanish on a failover"});
    }
    return applied;
  }

  /// After a failed call: an I/O error or a demoted node means the primary may have moved.
  void forget_if_gone(const store_error& e) {
    const std::string_view m = e.message;
    if (e.code == "IO" || m.starts_with("READONLY") || m.starts_with("MASTERDOWN")) primary_.reset();
  }

  bool ensure_primary(store_error& e) {
    if (primary_ && primary_->native_handle() != nullptr) return true;
    primary_.reset();
    std::optional<std::pair<std::string, int>> addr = ask_sentinels(e);
    if (!addr) return false;
    try {
      store s(addr->first, addr->second, options_.write_method, options_.timeout);
      detail::reply_ptr role = detail::command(s.native_handle(), {"ROLE"});
      if (!role || role->type != REDIS_REPLY_ARRAY || role->elements == 0 ||
          role->element[0]->type != REDIS_REPLY_STRING ||
          std::string_view(role->element[0]->str) != "master") {
        e = {"SENTINEL", "the Sentinels name " + addr->first + ":" + std::to_string(addr->second) +
                             " as primary, but it does not answer ROLE as a master (yet)"};
        return false;
      }
      primary_.emplace(std::move(s));
    } catch (const std::runtime_error& x) {
      e = {"IO", x.what()};
      return false;
    }
    primary_addr_ = std::move(*addr);
    ++connects_;
    return true;
  }

  /// The primary's address from the first Sentinel that names one.
  std::optional<std::pair<std::string, int>> ask_sentinels(store_error& e) {
    e = {"SENTINEL", "no Sentinel named a primary for '" + options_.master_name + "'"};
    for (const std::string& a : options_.sentinels) {
      const auto [host, port] = parse_address(a);
      store_error ce;
      write_status failure{};
      connect_options o;
      o.host = host;
      o.port = port;
      o.timeout = options_.timeout;
      detail::context_ptr c = detail::connect(o, ce, failure);
      if (!c) {
        e = {"SENTINEL", "Sentinel " + a + ": " + ce.message};
        continue;
      }
      detail::reply_ptr r =
          detail::command(c.get(), {"SENTINEL", "get-master-addr-by-name", options_.master_name});
      if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
          r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
        continue;
      try {
        return parse_address(std::string(r->element[0]->str) + ":" + r->element[1]->str);
      } catch (const std::invalid_argument& x) {
        e = {"SENTINEL", "Sentinel " + a + ": " + x.what()};
      }
    }
    return std::nullopt;
  }

  sentinel_options options_;
  std::optional<store> primary_;
  std::pair<std::string, int> primary_addr_;
  std::size_t connects_ = 0;
};

static_assert(check_conditional_writer<sentinel_store>());

}  // namespace noclobber::redis
