// One fault run for the fault tests and scripts/fault_matrix.sh: W writers race through
// read_modify_write (the harness's stress mode) while a nemesis applies its schedule, then the
// run is classified the way issue 19's results matrix counts it:
//
//   acknowledged  ops whose read_modify_write ended `applied` (the user was told "done")
//   lost          acknowledged updates missing from the final value because a concurrent writer
//                 read the same version (a stale-read race: a strategy or CAS bug)
//   vanished      acknowledged updates missing from the final value although a read that began
//                 after the acknowledgement saw the state from before them (the store forgot
//                 them: a durability or failover loss, not a strategy bug)
//   doubled       ops whose update is in the final chain twice (applied twice)
//   indeterminate ops that met a write with an unknown outcome; resolved (read_modify_write found
//                 out) or unresolved (it gave up with `indeterminate`)
//   misreported   the checker's anomalies (say, a value the store called not applied is in the
//                 final chain)
//   errors        ops that did not end applied (gave up, threw)
//   recover_ms    the longest stretch without any acknowledged write that overlaps a fault
//                 (from its start to 10 s after its heal), in milliseconds
//
// lost, vanished, doubled and misreported (the checker's anomalies) come from the race harness's
// checker (race_report.check); acknowledged, errors and the indeterminate counts from each op's
// read_modify_write result.
//
// The strategy (the matrix's third axis) is how each writer updates: `cas` (read_modify_write)
// or `locked-cas` (locked_read_modify_write: a per-key lock shared by the run's writers in front
// of the same loop; race_harness/strategies.hpp's locked_cas_strategy), or `lease-fenced`
// (fenced_read_modify_write under each writer's own lease lock on the server: faults/fault_lease.hpp,
// which also defines the lease counts a run adds to its row), or `row-lock` (a store's own
// pessimistic path, given as fault_case::own_op: PostgreSQL's update_under_row_lock).
//
// Thread safety: the strategy is called from every writer thread; its records are per writer.
#pragma once

#include <noclobber/fenced_read_modify_write.hpp>
#include <noclobber/keyed_mutex_map.hpp>
#include <noclobber/locked_read_modify_write.hpp>
#include <noclobber/race_harness.hpp>
#include <noclobber/race_harness/nemesis.hpp>
#include <noclobber/read_modify_write.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "faults/fault_lease.hpp"

namespace nc_faults {

using clock_type = std::chrono::steady_clock;

/// An environment variable as a number, or `fallback` when unset (the long runs of
/// scripts/fault_matrix.sh set NOCLOBBER_FAULT_WRITERS / _OPS / _FAULTS / _SEED).
inline std::uint64_t env_number(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::stoull(v);
}

/// What the user saw of one op.
struct op_record {
  std::uint32_t writer = 0;
  std::uint32_t op = 0;
  noclobber::rmw_outcome outcome = noclobber::rmw_outcome::gave_up;
  bool indeterminate_seen = false;  // a write of this op answered indeterminate
  bool unresolved = false;          // gave up with indeterminate = true
  bool threw = false;
  noclobber::write_id applied_id = noclobber::initial_version;
  clock_type::time_point done{};
  std::string error;
  std::string key;
  lease_note lease;  // lease-fenced only
};

/// A store view that notes indeterminate write answers, around the harness's race_store.
template <class Inner>
class noting_store {
 public:
  using key_type = typename Inner::key_type;
  using value_type = typename Inner::value_type;
  using token_type = typename Inner::token_type;

  noting_store(Inner& inner, bool& indeterminate) : inner_(&inner), indeterminate_(&indeterminate) {}

  noclobber::read_result<value_type, token_type> read(const key_type& k) { return inner_->read(k); }
  noclobber::write_result<token_type> write_if_match(const key_type& k, const token_type& t,
                                                     const value_type& v) {
    return note(inner_->write_if_match(k, t, v));
  }
  noclobber::write_result<token_type> create_if_absent(const key_type& k, const value_type& v) {
    return note(inner_->create_if_absent(k, v));
  }

 private:
  noclobber::write_result<token_type> note(noclobber::write_result<token_type> r) {
    if (r.status == noclobber::write_status::indeterminate) *indeterminate_ = true;
    return r;
  }
  Inner* inner_;
  bool* indeterminate_;
};

/// The retry policy of the fault runs: ride out an outage of many seconds.
inline noclobber::retry_policy fault_retry_policy() {
  noclobber::retry_policy p;
  p.backoff =
      noclobber::backoff_policy::full_jitter(std::chrono::milliseconds(1), std::chrono::milliseconds(200));
  p.max_attempts = 100000;
  p.timeout = std::chrono::seconds(40);
  return p;
}

/// The lease options of the fault runs: a TTL of 5 s, longer than a fault's effect on one op
/// (max_hold 3 s, a 1.5 s request timeout), so that a lease the server takes back early shows as
/// the fault's doing; a waiter rides out ~60 failures in a row (an unreachable lock server for
/// tens of seconds) before lease_error.
inline noclobber::lease_lock_options<std::string> fault_lease_options() {
  noclobber::lease_lock_options<std::string> o;
  o.ttl = std::chrono::seconds(5);
  o.max_consecutive_failures = 60;
  return o;
}

/// The classified result of one run (see the file's overview).
struct fault_counts {
  std::size_t operations = 0, acknowledged = 0, lost = 0, vanished = 0, doubled = 0;
  std::size_t indeterminate_resolved = 0, indeterminate_unresolved = 0, misreported = 0, errors = 0;
  std::size_t unresolved_landed = 0;  // of the unresolved, how many the final chain shows landed
  std::size_t faults = 0;             // faults the nemesis injected without an error
  // lease-fenced only (faults/fault_lease.hpp): ops run under a grant, and what the lease did.
  std::size_t lease_ops = 0, lease_lost_local = 0, lease_lost_server = 0, lease_unknown = 0;
  std::size_t lease_overlaps = 0, lease_errors = 0;
  double recover_ms = 0;
  std::vector<std::string> examples;  // the first few findings, in words

  [[nodiscard]] double error_rate() const {
    return operations == 0 ? 0.0 : static_cast<double>(errors) / static_cast<double>(operations);
  }
  /// One line scripts/fault_matrix.sh parses: "FAULT-ROW key=value ...".
  [[nodiscard]] std::string row(const std::string& store, const std::string& fault,
                                const std::string& strategy) const {
    char rate[32];
    std::snprintf(rate, sizeof rate, "%.4f", error_rate());
    char rec[32];
    std::snprintf(rec, sizeof rec, "%.0f", recover_ms);
    return "FAULT-ROW store=" + store + " fault=" + fault + " strategy=" + strategy +
           " faults=" + std::to_string(faults) + " ops=" + std::to_string(operations) +
           " acked=" + std::to_string(acknowledged) + " lost=" + std::to_string(lost) +
           " vanished=" + std::to_string(vanished) + " doubled=" + std::to_string(doubled) +
           " indet_resolved=" + std::to_string(indeterminate_resolved) +
           " indet_unresolved=" + std::to_string(indeterminate_unresolved) +
           " unresolved_landed=" + std::to_string(unresolved_landed) +
           " misreported=" + std::to_string(misreported) + " errors=" + std::to_string(errors) +
           " error_rate=" + rate + " recover_ms=" + rec + lease_fields();
  }
  [[nodiscard]] std::string lease_fields() const {
    if (lease_ops == 0 && lease_errors == 0) return {};
    return " lease_ops=" + std::to_string(lease_ops) +
           " lease_lost_local=" + std::to_string(lease_lost_local) +
           " lease_lost_server=" + std::to_string(lease_lost_server) +
           " lease_unknown=" + std::to_string(lease_unknown) +
           " lease_overlaps=" + std::to_string(lease_overlaps) +
           " lease_errors=" + std::to_string(lease_errors);
  }
};

/// Classifies a run: the checker's verdicts (race_check: lost to a stale read, vanished, doubled,
/// indeterminate), each op's read_modify_write result, the nemesis's timeline.
inline fault_counts classify(const noclobber::race_report& report, const std::vector<op_record>& ops,
                             const std::vector<noclobber::fault_event>& faults,
                             clock_type::time_point nemesis_start) {
  const noclobber::race_check& check = report.check;
  fault_counts c;
  c.operations = ops.size();
  c.lost = check.lost.size();
  c.vanished = check.vanished.size();
  c.doubled = check.doubled.size();
  c.misreported = check.anomalies.size();
  auto example = [&c](std::string line) {
    if (c.examples.size() < 12) c.examples.push_back(std::move(line));
  };
  for (const auto& l : check.lost)
    example("lost: W" + std::to_string(l.lost.writer) + " op " + std::to_string(l.lost.op) + " (stale read)");
  for (const auto& v : check.vanished) example("vanished: " + v.trace);
  for (const auto& d : check.doubled) example("doubled: " + d.trace);
  for (const auto& a : check.anomalies) example("anomaly: " + a);

  // What each op's writer was told; an unresolved op whose update is on a final chain landed.
  std::set<std::pair<std::uint32_t, std::uint32_t>> landed_unknown;
  for (const auto& u : check.indeterminate) {
    if (u.landed) landed_unknown.insert({u.write.writer, u.write.op});
  }
  for (const op_record& o : ops) {
    if (o.outcome == noclobber::rmw_outcome::applied) {
      ++c.acknowledged;
    } else {
      ++c.errors;
    }
    if (o.indeterminate_seen) ++(o.unresolved ? c.indeterminate_unresolved : c.indeterminate_resolved);
    if (o.unresolved && landed_unknown.count({o.writer, o.op})) ++c.unresolved_landed;
    if (o.lease.error) ++c.lease_errors;
    if (!o.lease.used) continue;
    ++c.lease_ops;
    if (o.lease.lost_local) ++c.lease_lost_local;
    if (o.lease.released && o.lease.release == noclobber::lease_check::lost) ++c.lease_lost_server;
    if (o.lease.released && o.lease.release == noclobber::lease_check::unknown) ++c.lease_unknown;
  }

  // Two holders of one key at once: a grant that came back before an earlier holder of the key
  // began its release (grants in the order they came back; a release never sent is skipped).
  std::map<std::string, std::vector<const lease_note*>> grants;
  for (const op_record& o : ops) {
    if (o.lease.used) grants[o.key].push_back(&o.lease);
  }
  for (auto& [key, g] : grants) {
    std::sort(g.begin(), g.end(),
              [](const lease_note* a, const lease_note* b) { return a->granted_at < b->granted_at; });
    std::optional<clock_type::time_point> last_release;
    for (const lease_note* n : g) {
      if (last_release && n->granted_at < *last_release) ++c.lease_overlaps;
      if (n->released) last_release = std::max(last_release.value_or(n->released_at), n->released_at);
    }
  }

  // Time to recover: the longest stretch without an acknowledgement overlapping a fault window.
  std::vector<clock_type::time_point> acks;
  for (const op_record& o : ops) {
    if (o.outcome == noclobber::rmw_outcome::applied) acks.push_back(o.done);
  }
  std::sort(acks.begin(), acks.end());
  for (const noclobber::fault_event& f : faults) {
    if (f.error.empty()) ++c.faults;
    const auto from = nemesis_start + f.inject_began_at;
    const auto to = nemesis_start + (f.healed_yet() ? f.healed_at : f.injected_at) + std::chrono::seconds(10);
    auto prev = from;
    auto it = std::lower_bound(acks.begin(), acks.end(), from);
    if (it != acks.begin()) prev = *std::prev(it);
    for (; it != acks.end() && prev < to; ++it) {
      const double gap = std::chrono::duration<double, std::milli>(*it - std::max(prev, from)).count();
      c.recover_ms = std::max(c.recover_ms, gap);
      prev = *it;
    }
  }
  return c;
}

/// How each writer updates (see the file's overview).
enum class rmw_strategy { cas, locked_cas, lease_fenced, row_lock };

inline std::string to_string(rmw_strategy s) {
  switch (s) {
    case rmw_strategy::cas:
      return "cas";
    case rmw_strategy::locked_cas:
      return "locked-cas";
    case rmw_strategy::lease_fenced:
      return "lease-fenced";
    case rmw_strategy::row_lock:
      return "row-lock";
  }
  return "?";
}

/// What a fault test describes: the writers, their stores, the nemesis, and what to do once the
/// writers are done (the nemesis is stopped and every fault healed before `settle` runs, and the
/// harness reads the final values after it).
template <class Store>
struct fault_case {
  std::string store_name, fault_name;
  rmw_strategy strategy = rmw_strategy::cas;
  unsigned writers = 16;
  unsigned ops_per_writer = 25;
  std::size_t keys = 8;
  std::function<std::unique_ptr<Store>(unsigned writer)> make_store;
  std::vector<std::shared_ptr<noclobber::fault_action>> actions;
  noclobber::nemesis_options nemesis;
  std::function<void()> settle;  // wait until the system serves again (after the heals)
  noclobber::retry_policy policy = fault_retry_policy();
  // lease-fenced: writer i's own lease backend (made before the run), and the leases' options.
  std::function<std::unique_ptr<any_lease_backend>(unsigned writer)> make_lease;
  noclobber::lease_lock_options<std::string> lease = fault_lease_options();
  // row-lock: one op, made through the view (its inner() store, each write recorded with
  // race_store::record_inner_write), answering as read_modify_write would; it sets
  // `indeterminate_seen` when a write's outcome was unknown.
  std::function<noclobber::store_rmw_result_t<Store>(
      noclobber::race_store<Store>& view, const std::string& key,
      noclobber::race_modify<noclobber::store_value_t<Store>>& fn, bool& indeterminate_seen,
      const noclobber::retry_policy& policy)>
      own_op;
};

/// Writers, ops and the nemesis schedule from the environment (scripts/fault_matrix.sh sets
/// NOCLOBBER_FAULT_WRITERS / _OPS (per writer) / _FAULTS / _SEED), else the short CI form. The
/// schedule runs on the operations clock: gaps and holds of total / (4 × faults) ops each, so it
/// fits in 3/4 of the run while the store keeps up; max_hold bounds a fault that stops all ops.
template <class Store>
void size_from_env(fault_case<Store>& fc, unsigned ops_per_writer = 40, unsigned faults = 2,
                   std::chrono::milliseconds max_hold = std::chrono::seconds(3)) {
  fc.writers = static_cast<unsigned>(env_number("NOCLOBBER_FAULT_WRITERS", 16));
  fc.ops_per_writer = static_cast<unsigned>(env_number("NOCLOBBER_FAULT_OPS", ops_per_writer));
  const std::uint64_t total = std::uint64_t{fc.writers} * fc.ops_per_writer;
  fc.nemesis.clock = noclobber::nemesis_clock::operations;
  fc.nemesis.seed = env_number("NOCLOBBER_FAULT_SEED", 1);
  fc.nemesis.faults = static_cast<unsigned>(env_number("NOCLOBBER_FAULT_FAULTS", faults));
  fc.nemesis.gap = std::max<std::uint64_t>(1, total / (4 * fc.nemesis.faults));
  fc.nemesis.hold = fc.nemesis.gap;
  fc.nemesis.max_hold = max_hold;
}

struct fault_result {
  noclobber::race_report report;
  std::vector<op_record> ops;
  std::vector<noclobber::fault_event> timeline;
  std::string nemesis_text;
  fault_counts counts;
  std::string row;

  [[nodiscard]] std::string describe() const {
    std::string out = row + "\n" + nemesis_text;
    for (const std::string& e : counts.examples) out += "  " + e + "\n";
    if (!report.first_error.empty()) out += "  first error: " + report.first_error + "\n";
    return out;
  }
};

/// Runs a fault_case; see the file's overview.
template <class Store>
fault_result run_fault_case(fault_case<Store>& fc) {
  noclobber::nemesis n(fc.actions, fc.nemesis);
  const std::size_t total = std::size_t{fc.writers} * fc.ops_per_writer;
  std::vector<std::vector<op_record>> per_writer(fc.writers);
  std::atomic<std::size_t> finished{0};
  std::atomic<bool> settled{false};

  // The last op to finish stops the nemesis (healing everything) and waits for the system to
  // serve again, so the harness's final reads see the settled state.
  auto finish_run = [&] {
    n.stop();
    if (fc.settle) fc.settle();
    settled.store(true);
  };
  noclobber::keyed_mutex_map<std::string> locks;  // locked-cas: one per run, shared by the writers
  std::vector<std::unique_ptr<any_lease_backend>> lease_backends;  // lease-fenced: one per writer
  std::vector<std::unique_ptr<lease_map>> leases;
  if (fc.strategy == rmw_strategy::lease_fenced) {
    for (unsigned w = 0; w < fc.writers; ++w) {
      lease_backends.push_back(fc.make_lease(w));
      leases.push_back(std::make_unique<lease_map>(*lease_backends.back(), fc.lease));
    }
  }
  auto strategy = [&](auto& view, const std::string& key, auto& fn) {
    op_record rec;
    rec.writer = view.writer();
    rec.key = key;
    try {
      noting_store<std::remove_reference_t<decltype(view)>> noted(view, rec.indeterminate_seen);
      auto run = [&]() -> noclobber::store_rmw_result_t<decltype(noted)> {
        if (fc.strategy == rmw_strategy::locked_cas)
          return noclobber::locked_read_modify_write(locks, noted, key, fn, fc.policy);
        if (fc.strategy == rmw_strategy::row_lock)
          return fc.own_op(view, key, fn, rec.indeterminate_seen, fc.policy);
        if (fc.strategy == rmw_strategy::lease_fenced) {
          noting_leases held(*leases[rec.writer - 1], rec.lease);
          return noclobber::fenced_read_modify_write(held, noted, key, fn, fc.policy);
        }
        return noclobber::read_modify_write(noted, key, fn, fc.policy);
      };
      auto r = run();
      rec.outcome = r.outcome;
      rec.unresolved = r.outcome == noclobber::rmw_outcome::gave_up && r.indeterminate;
      if (r.outcome == noclobber::rmw_outcome::applied && r.value)
        rec.applied_id = noclobber::parse_write_id(*r.value);
      if (!r.ok()) rec.error = std::string(noclobber::to_string(r.last_status)) + " " + r.last_error.message;
    } catch (const noclobber::lease_error& e) {
      rec.threw = true;
      rec.lease.error = true;
      rec.error = e.what();
    } catch (const std::exception& e) {
      rec.threw = true;
      rec.error = e.what();
    }
    rec.done = clock_type::now();
    const unsigned w = rec.writer - 1;
    rec.op = static_cast<std::uint32_t>(per_writer[w].size());
    per_writer[w].push_back(std::move(rec));
    n.on_operation();
    if (finished.fetch_add(1) + 1 == total) finish_run();
  };

  noclobber::race_options<std::string, std::string> o;
  o.mode = noclobber::race_mode::stress;
  o.writers = fc.writers;
  o.ops_per_writer = fc.ops_per_writer;
  o.seed = fc.nemesis.seed;
  o.store_name = fc.store_name;
  o.strategy_name = to_string(fc.strategy);
  static std::atomic<unsigned> run_counter{0};
  const std::string prefix =
      "f" + std::to_string(::getpid()) + "_" + std::to_string(run_counter.fetch_add(1)) + "_";
  for (std::size_t k = 0; k < fc.keys; ++k) o.keys.push_back(prefix + std::to_string(k));

  const auto nemesis_start = clock_type::now();
  n.start();
  fault_result out;
  out.report = noclobber::run_race_per_writer([&](unsigned i) { return fc.make_store(i); }, strategy, o);
  if (!settled.load()) finish_run();  // ops that threw past the counter, or writers that stopped early
  out.timeline = n.timeline();
  out.nemesis_text = n.to_text();
  for (auto& v : per_writer)
    for (auto& r : v) out.ops.push_back(std::move(r));
  out.counts = classify(out.report, out.ops, out.timeline, nemesis_start);
  if (std::getenv("NOCLOBBER_FAULT_ACK_TIMES") != nullptr) {
    // Acknowledgements per 100 ms since the nemesis started, for reading an outage by eye.
    std::map<long, int> per;
    for (const op_record& r : out.ops) {
      if (r.outcome == noclobber::rmw_outcome::applied)
        ++per[std::chrono::duration_cast<std::chrono::milliseconds>(r.done - nemesis_start).count() / 100];
    }
    for (const auto& [slot, n] : per)
      out.nemesis_text += "  acks " + std::to_string(slot * 100) + "ms: " + std::to_string(n) + "\n";
  }
  out.row = out.counts.row(fc.store_name, fc.fault_name, to_string(fc.strategy));
  return out;
}

}  // namespace nc_faults
