#!/usr/bin/env bash
# Runs the benchmarks against real servers (bench/servers/) with the same setup as
# scripts/test_servers.sh: every server on a free loopback port, stopped on exit.
#
#   scripts/bench_servers.sh BUILD_DIR [benchmark args...]   (build with -DCMAKE_BUILD_TYPE=Release)
# Results go to stdout; add --benchmark_format=json --benchmark_out=FILE to keep them.
set -euo pipefail
build=${1:?usage: scripts/bench_servers.sh BUILD_DIR [benchmark args...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" && pwd)
state=$(mktemp -d /tmp/noclobber-bench.XXXXXX)
chmod 0755 "$state"

servers=(postgres redis etcd apache)
stop_all() {
  for s in "${servers[@]}"; do "$here/servers/$s.sh" stop "$state" || true; done
  rm -rf "$state"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

export NOCLOBBER_ETCD_DISK=1  # etcd's data on disk, as deployed (tests use tmpfs)
for s in "${servers[@]}"; do
  eval "$("$here/servers/$s.sh" start "$state")"
done
export NOCLOBBER_PG_CONNINFO NOCLOBBER_REDIS_ADDR NOCLOBBER_ETCD_URL NOCLOBBER_DAV_URL

shopt -s nullglob
found=0
for b in "$build"/bench/servers/bench_*; do
  [ -x "$b" ] || continue
  echo "=== $(basename "$b")"
  "$b" "$@"
  found=$((found + 1))
done
[ "$found" -gt 0 ] || { echo "bench_servers.sh: no bench/servers binaries under $build" >&2; exit 1; }
