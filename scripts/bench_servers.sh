#!/usr/bin/env bash
# Runs the benchmarks against real servers (bench/servers/) with the same setup as
# scripts/test_servers.sh: every server on a free loopback port, stopped on exit.
#
#   scripts/bench_servers.sh BUILD_DIR [benchmark args...]   (build with -DCMAKE_BUILD_TYPE=Release)
# Results go to stdout; add --benchmark_format=json --benchmark_out=FILE to keep them.
set -euo pipefail
build=${1:?usage: scripts/bench_servers.sh BUILD_DIR [benchmark args...]}
shift
build=$(cd "$build" && pwd)
. "$(dirname "$0")/servers/all.sh"
export NOCLOBBER_ETCD_DISK=1        # etcd's data on disk, as deployed (tests use tmpfs)
start_all_servers noclobber-bench  # stopped on exit, also on failure and Ctrl-C

shopt -s nullglob
found=0
for b in "$build"/bench/servers/bench_*; do
  [ -x "$b" ] || continue
  echo "=== $(basename "$b")"
  "$b" "$@"
  found=$((found + 1))
done
[ "$found" -gt 0 ] || { echo "bench_servers.sh: no bench/servers binaries under $build" >&2; exit 1; }
