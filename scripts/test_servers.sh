#!/usr/bin/env bash
# Runs noclobber's server tests (ctest label `server`) against real PostgreSQL, Redis, etcd and
# Apache mod_dav servers started on free loopback ports, then the adapter examples. Every server
# is stopped on exit, also on failure.
#
#   scripts/test_servers.sh BUILD_DIR [extra ctest args...]
set -euo pipefail
build=${1:?usage: scripts/test_servers.sh BUILD_DIR [ctest args...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" && pwd)
state=$(mktemp -d /tmp/noclobber-servers.XXXXXX)
chmod 0755 "$state"

servers=(postgres redis etcd apache)
stop_all() {
  for s in "${servers[@]}"; do "$here/servers/$s.sh" stop "$state" || true; done
  rm -rf "$state"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

for s in "${servers[@]}"; do
  eval "$("$here/servers/$s.sh" start "$state")"
done
export NOCLOBBER_PG_CONNINFO NOCLOBBER_REDIS_ADDR NOCLOBBER_ETCD_URL NOCLOBBER_DAV_URL
echo "servers: pg [$NOCLOBBER_PG_CONNINFO] redis $NOCLOBBER_REDIS_ADDR etcd $NOCLOBBER_ETCD_URL dav $NOCLOBBER_DAV_URL"

ctest --test-dir "$build" -L server --no-tests=error --output-on-failure "$@"

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
