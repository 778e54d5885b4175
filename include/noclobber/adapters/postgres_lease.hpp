// noclobber/adapters/postgres_lease.hpp — a lease_backend (noclobber/lease_lock.hpp) on
// PostgreSQL advisory locks (libpq, PostgreSQL 14 or later).
//
// Overview
// --------
// An advisory lock belongs to a session (scope::session: held until pg_advisory_unlock or the
// session ends) or to a transaction (scope::transaction: held until COMMIT / ROLLBACK). The lock
// id is hashtextextended(KEY, 0), a 64-bit hash: two keys that collide share one lock (more
// waiting, never less exclusion).
//
// PostgreSQL has no lease: a lock lives as long as its session. This backend makes the session
// the lease. While a grant is held, the server ends the session when it has been idle longer
// than the TTL — `idle_session_timeout` (scope::session) or `idle_in_transaction_session_timeout`
// (scope::transaction), set on the holder's session at the grant — and the lock goes with the
// session. So a holder that is paused (SIGSTOP, GC) past the TTL loses the lock like a Redis or
// etcd lease, and one that is killed loses it at once (its socket closes, the server ends the
// session). `extend` is a statement on the session (it resets the idle timer) that checks the
// session is still the one that was granted the lock.
//
//   try_acquire  session:      one statement: pg_try_advisory_lock(id); if got, nextval of the
//                              fence sequence and set_config('idle_session_timeout', ttl)
//                transaction:  BEGIN; the same with pg_try_advisory_xact_lock and
//                              idle_in_transaction_session_timeout (ROLLBACK when busy)
//   extend       SELECT pg_backend_pid() on the session: same pid -> held; session gone -> lost
//   release      session: pg_advisory_unlock(id) (false -> lost) and the timeout back to 0;
//                transaction: COMMIT (session gone -> lost)
//
// The fencing token is nextval('noclobber_lease_fence'): one sequence for every key, so tokens
// only grow (sequences never go back on one server; after a crash they jump ahead). The grant's
// owner is the session's backend pid.
//
// What it survives, and what not: a killed holder (lock freed at once), a paused holder (freed
// after the TTL of idleness), a restart of the server (every lock is gone with every session:
// the holders find out on their next statement). Advisory locks are not replicated: after a
// failover to a standby every lock is free at once while the old holders may still believe they
// hold them, and an asynchronous standby can lack the last nextval (a token can repeat). As with
// every lease lock here, safety comes from the conditional write behind it.
//
// scope::transaction holds the lock in an open transaction on the backend's own connection;
// your writes go through your store's connection (another session), so the transaction only
// carries the lock.
//
// Errors: a statement that fails is `failed` (try_acquire) or, when the session broke, `lost`
// (extend, release: a session that is gone holds no lock). An answer of another shape than the
// statement's (no row, a missing column, NULL, another type: exec_result reads only an int8 or a
// bool of exactly its size) is `failed` (try_acquire; a lock it got is unlocked again) or
// `unknown` (extend, release). The session reconnects on the next try_acquire. A server older
// than 14 (no idle_session_timeout) fails the grant with its error.
//
// Thread safety: one backend is one libpq connection: one thread at a time (lease_lock_map
// serialises its calls under its own mutex). No user code runs inside.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "noclobber/adapters/postgres.hpp"
#include "noclobber/lease_lock.hpp"

namespace noclobber::postgres {

/// Lease locks on PostgreSQL advisory locks; see the overview. Not thread-safe.
class advisory_lease_backend {
 public:
  using key_type = std::string;
  enum class scope : unsigned char { session, transaction };

  /// Connects at once and creates the fence sequence if missing; std::runtime_error on failure.
  explicit advisory_lease_backend(std::string conninfo, scope s = scope::session)
      : conn_(std::move(conninfo)), scope_(s) {
    exec_result r = conn_.exec_simple(
        "SET client_min_messages = warning; CREATE SEQUENCE IF NOT EXISTS noclobber_lease_fence; "
        "RESET client_min_messages",
        true);
    if (!r.ok() && r.error.code != "23505" && r.error.code != "42P07") {
      throw std::runtime_error(
          "noclobber::postgres::advisory_lease_backend: cannot create the fence sequence: " +
          r.error.message);
    }
  }

  lease_attempt try_acquire(const key_type& key, std::chrono::milliseconds ttl) {
    check_key(key);
    const bool xact = scope_ == scope::transaction;
    if (xact) {
      exec_result b = conn_.exec_simple("BEGIN", false);
      if (!b.ok()) return {lease_status::failed, {}, b.error};
    }
    const std::string ms = std::to_string(ttl.count());
    // MATERIALIZED: the lock function runs exactly once, before set_config looks at its result.
    exec_result r = conn_.exec(
        xact ? "WITH s AS MATERIALIZED (SELECT CASE WHEN pg_try_advisory_xact_lock(hashtextextended($1, 0)) "
               "THEN nextval('noclobber_lease_fence') ELSE 0 END AS t) "
               "SELECT t, CASE WHEN t > 0 THEN set_config('idle_in_transaction_session_timeout', $2, true) "
               "END, "
               "pg_backend_pid()::bigint FROM s"
             : "WITH s AS MATERIALIZED (SELECT CASE WHEN pg_try_advisory_lock(hashtextextended($1, 0)) "
               "THEN nextval('noclobber_lease_fence') ELSE 0 END AS t) "
               "SELECT t, CASE WHEN t > 0 THEN set_config('idle_session_timeout', $2, false) END, "
               "pg_backend_pid()::bigint FROM s",
        {param{key}, param{ms}}, true);
    const std::optional<std::int64_t> token = r.ok() && r.rows() == 1 ? r.int64(0, 0) : std::nullopt;
    const std::optional<std::int64_t> pid = r.ok() && r.rows() == 1 ? r.int64(0, 2) : std::nullopt;
    if (token && *token <= 0) {
      if (xact) (void)conn_.exec_simple("ROLLBACK", false);
      return {lease_status::busy, {}, {}};
    }
    if (!token || !pid) {  // an error, or an answer that is not (bigint, text, bigint) in one row
      if (xact) {
        (void)conn_.exec_simple("ROLLBACK", false);
      } else if (token) {
        (void)conn_.exec(unlock_sql, {param{key}}, false);  // got the lock but cannot name its owner
      }
      return {lease_status::failed, {}, r.ok() ? store_error{"SQL", "unexpected answer"} : r.error};
    }
    return {lease_status::acquired,
            lease_grant{static_cast<fencing_token>(*token), std::to_string(*pid), ttl},
            {}};
  }

  lease_check extend(const key_type& key, const lease_grant& g, std::chrono::milliseconds /*ttl*/) {
    check_key(key);
    if (!same_session(g)) return lease_check::lost;
    exec_result r = conn_.exec("SELECT pg_backend_pid()::bigint", {}, false);
    if (!r.ok()) return gone() ? lease_check::lost : lease_check::unknown;
    const std::optional<std::int64_t> pid = r.rows() == 1 ? r.int64(0, 0) : std::nullopt;
    if (!pid) return lease_check::unknown;  // an answer that is not one bigint
    return std::to_string(*pid) == g.owner ? lease_check::held : lease_check::lost;
  }

  lease_check release(const key_type& key, const lease_grant& g) {
    check_key(key);
    if (!same_session(g)) return lease_check::lost;
    if (scope_ == scope::transaction) {
      exec_result c = conn_.exec_simple("COMMIT", false);
      if (c.ok()) return lease_check::held;
      return gone() ? lease_check::lost : lease_check::unknown;
    }
    exec_result r = conn_.exec(unlock_sql, {param{key}}, false);
    if (!r.ok()) return gone() ? lease_check::lost : lease_check::unknown;
    const std::optional<bool> unlocked = r.rows() == 1 ? r.boolean(0, 0) : std::nullopt;
    if (!unlocked) return lease_check::unknown;  // an answer that does not start with one bool
    return *unlocked ? lease_check::held : lease_check::lost;
  }

  /// The session's connection (for tests: backend_pid, pg_terminate_backend).
  [[nodiscard]] connection& session() noexcept { return conn_; }

 private:
  static constexpr const char* unlock_sql =
      "SELECT pg_advisory_unlock(hashtextextended($1, 0)), set_config('idle_session_timeout', '0', false)";

  static void check_key(const key_type& key) {
    if (key.empty())
      throw std::invalid_argument("noclobber::postgres::advisory_lease_backend: empty lock key");
  }
  // The session that was granted `g` is still this connection's (no reset happened since).
  bool same_session(const lease_grant& g) const {
    return PQstatus(conn_.native_handle()) == CONNECTION_OK && std::to_string(conn_.backend_pid()) == g.owner;
  }
  bool gone() const { return PQstatus(conn_.native_handle()) != CONNECTION_OK; }

  connection conn_;
  scope scope_;
};

static_assert(noclobber::lease_backend<advisory_lease_backend>);

}  // namespace noclobber::postgres
