#!/usr/bin/env bash
# The long, repeated fault runs behind docs/faults.md's results matrix: every fault cell
# (tests/faults/test_fault_*.cpp, one TEST_CASE per store × fault) run REPS times with its own
# seed, 16 writers, and 2,000 (etcd), 4,000 (PostgreSQL, one Redis node), 8,000 (Redis Sentinel) or
# 640 (radosgw: ~25 ops/s under contention) operations per run (read_modify_write, or
# locked_read_modify_write in the `[locked]` cells, fenced_read_modify_write under a lease lock in the
# `[lease]` cells, postgres::update_under_row_lock in the `[row_lock]` cells);
# prints one markdown row per cell (sums over the runs; recovery: the longest stretch without an
# acknowledged write around a fault, median and worst over the runs) and keeps every raw
# FAULT-ROW line in OUT (default fault_matrix.rows), with the FAULT-NOTE lines a cell prints about
# its run (say, what became of the leader it slowed).
#
#   scripts/fault_matrix.sh BUILD_DIR [REPS=5] [OUT]
#   NOCLOBBER_FAULT_CELLS=REGEX scripts/fault_matrix.sh ...   only the cells whose line matches
#                                                            (e.g. 'test_fault_redis')
#
# Needs what scripts/test_faults.sh needs (root, ip, nft, etcd, PostgreSQL, Redis, Ceph). Leaves nothing behind
# (sweep.sh --check at the end).
set -uo pipefail
build=${1:?usage: scripts/fault_matrix.sh BUILD_DIR [REPS] [OUT]}
reps=${2:-5}
out=${3:-fault_matrix.rows}
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" && pwd)
: >"$out"
trap 'bash "$here/clusters/sweep.sh" >/dev/null' EXIT

# binary, Catch test spec, ops per writer
cells=(
  "test_fault_etcd|[etcd][kill]~[locked]~[lease]|125"
  "test_fault_etcd|[etcd][kill][locked]|125"
  "test_fault_etcd|[etcd][kill][lease]|125"
  "test_fault_etcd|[etcd][pause]~[locked]~[lease]|125"
  "test_fault_etcd|[etcd][pause][locked]|125"
  "test_fault_etcd|[etcd][pause][lease]|125"
  "test_fault_etcd|[etcd][partition]~[lease]~[locked]|125"
  "test_fault_etcd|[etcd][partition][locked]|125"
  "test_fault_etcd|[etcd][partition][lease]|125"
  "test_fault_etcd|[etcd][latency]|125"
  "test_fault_etcd|[etcd][peer_latency]|125"
  "test_fault_postgres|[postgres][kill]~[row_lock]~[locked]|250"
  "test_fault_postgres|[postgres][kill][locked]|250"
  "test_fault_postgres|[postgres][kill][row_lock]|250"
  "test_fault_postgres|[postgres][drop]~[row_lock]~[locked]|250"
  "test_fault_postgres|[postgres][drop][locked]|250"
  "test_fault_postgres|[postgres][drop][row_lock]|250"
  "test_fault_postgres|[postgres][pause]~[row_lock]~[locked]|250"
  "test_fault_postgres|[postgres][pause][locked]|250"
  "test_fault_postgres|[postgres][pause][row_lock]|250"
  "test_fault_postgres|[failover][sync]~[locked]~[lease]~[row_lock]|250"
  "test_fault_postgres|[failover][sync][locked]|250"
  "test_fault_postgres|[failover][sync][lease]|250"
  "test_fault_postgres|[failover][sync][row_lock]|250"
  "test_fault_postgres|[failover][async]~[locked]~[row_lock]~[lease]|250"
  "test_fault_postgres|[failover][async][locked]|250"
  "test_fault_postgres|[failover][async][row_lock]|250"
  "test_fault_postgres|[failover][async][lease]|250"
  "test_fault_postgres|[postgres][latency]|250"
  "test_fault_s3|[s3][kill]|40"
  "test_fault_redis|[redis][kill][async]|500"
  "test_fault_redis|[redis][kill][wait1]|500"
  "test_fault_redis|[redis][kill][min_replicas]|500"
  "test_fault_redis|[redis][pause][async]|500"
  "test_fault_redis|[redis][pause][wait1]|500"
  "test_fault_redis|[redis][pause][min_replicas]|500"
  "test_fault_redis|[redis][latency]|500"
  "test_fault_redis_single|[single][drop]|250"
  "test_fault_redis_single|[single][always]~[locked]|250"
  "test_fault_redis_single|[single][locked]|250"
  "test_fault_redis_single|[single][everysec]|250"
)
failed=0
for cell in "${cells[@]}"; do
  [[ "$cell" =~ ${NOCLOBBER_FAULT_CELLS:-.} ]] || continue
  IFS='|' read -r bin spec ops <<<"$cell"
  for rep in $(seq 1 "$reps"); do
    log=$(NOCLOBBER_FAULT_WRITERS=16 NOCLOBBER_FAULT_OPS=$ops NOCLOBBER_FAULT_SEED=$rep \
      timeout 300 "$build/tests/faults/$bin" -r compact "$spec" 2>&1)
    rc=$?
    row=$(echo "$log" | grep -m1 '^FAULT-ROW')
    if [ -z "$row" ]; then
      echo "fault_matrix.sh: $bin '$spec' seed $rep gave no row (exit $rc):" >&2
      echo "$log" | tail -n 20 >&2
      failed=1
      continue
    fi
    echo "$row seed=$rep test_exit=$rc" | tee -a "$out" >&2
    echo "$log" | grep '^FAULT-NOTE' | sed "s/\$/ seed=$rep/" | tee -a "$out" >&2
    [ "$rc" = 0 ] || failed=1
  done
done

python3 - "$out" <<'PY'
import collections, statistics, sys
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    if not line.startswith("FAULT-ROW "):
        continue
    kv = dict(p.split("=", 1) for p in line.split()[1:])
    rows.setdefault((kv["store"], kv["fault"], kv["strategy"]), []).append(kv)
print("| store | fault | strategy | runs | faults | ops | acknowledged | lost | vanished | doubled |"
      " indeterminate resolved / unresolved (landed) | error rate | recovery ms median / max | tests passed |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for (store, fault, strategy), rs in rows.items():
    s = lambda k: sum(int(r[k]) for r in rs)
    rec = [float(r["recover_ms"]) for r in rs]
    print(f"| {store} | {fault} | {strategy} | {len(rs)} | {s('faults')} | {s('ops')} | {s('acked')} | {s('lost')} |"
          f" {s('vanished')} | {s('doubled')} | {s('indet_resolved')} / {s('indet_unresolved')}"
          f" ({s('unresolved_landed')}) | {100.0 * s('errors') / max(1, s('ops')):.2f} % |"
          f" {statistics.median(rec):.0f} / {max(rec):.0f} | {sum(r['test_exit'] == '0' for r in rs)}/{len(rs)} |")
# The lease cells' counts (tests/faults/fault_lease.hpp), summed, and per run where a grant was lost.
for (store, fault, strategy), rs in rows.items():
    if "lease_ops" not in rs[0]:
        continue
    s = lambda k: sum(int(r[k]) for r in rs)
    print(f"lease {store} {fault} {strategy}: ops under a grant {s('lease_ops')}, lost at release"
          f" {s('lease_lost_server')} (per run {', '.join(r['lease_lost_server'] for r in rs)}), expired locally"
          f" {s('lease_lost_local')}, release unanswered {s('lease_unknown')}, two holders at once"
          f" {s('lease_overlaps')} (per run {', '.join(r['lease_overlaps'] for r in rs)}), lease errors {s('lease_errors')}")
PY
bash "$here/clusters/sweep.sh" >/dev/null
bash "$here/clusters/sweep.sh" --check || failed=1
exit "$failed"
