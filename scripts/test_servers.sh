#!/usr/bin/env bash
# Runs noclobber's server tests (ctest label `server`) against real PostgreSQL, Redis, etcd,
# Apache mod_dav, radosgw (Ceph) and s3rver servers started on free loopback ports, then the
# adapter examples. Every server is stopped on exit, also on failure.
#
#   scripts/test_servers.sh BUILD_DIR [extra ctest args...]
set -euo pipefail
build=${1:?usage: scripts/test_servers.sh BUILD_DIR [ctest args...]}
shift
build=$(cd "$build" && pwd)
. "$(dirname "$0")/servers/all.sh"
start_all_servers noclobber-servers  # stopped on exit, also on failure and Ctrl-C

ctest --test-dir "$build" -L server -LE fault --no-tests=error --output-on-failure "$@"  # fault: test_faults.sh

# The adapter examples from docs/adapters/*.md: each must run and exit 0 against the servers.
shopt -s nullglob
ran=0
for ex in "$build"/examples/adapters/example_adapters_*; do
  [ -x "$ex" ] || continue
  echo "--- $(basename "$ex")"
  "$ex"
  ran=$((ran + 1))
done
echo "test_servers.sh: server tests passed; $ran adapter examples ran"
