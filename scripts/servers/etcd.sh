#!/usr/bin/env bash
# Start / stop a throwaway single-member etcd 3.4 on free loopback ports, for noclobber's server
# tests. The adapter talks to its JSON gateway (POST /v3/kv/...).
#
#   scripts/servers/etcd.sh start STATE_DIR   # prints `export NOCLOBBER_ETCD_URL=http://127.0.0.1:PORT`
#   scripts/servers/etcd.sh stop  STATE_DIR
#
# The data directory goes on /dev/shm (tmpfs: etcd's fsync per write is then nearly free, which
# keeps the tests fast) unless NOCLOBBER_ETCD_DISK=1, which keeps it under STATE_DIR on disk, as a
# real deployment would (scripts/bench_servers.sh does that). NOCLOBBER_ETCD_ARGS: more etcd flags
# (scripts/servers/etcd_auth.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

cmd=${1:?usage: etcd.sh start|stop STATE_DIR}
state=${2:?usage: etcd.sh start|stop STATE_DIR}
dir="$state/etcd"

case "$cmd" in
  start)
    mkdir -p "$dir"
    data=$(etcd_data_dir "$dir")
    port=$(free_port)
    peer=$(free_port)
    while [ "$peer" = "$port" ]; do peer=$(free_port); done
    etcd --data-dir "$data" --name noclobber \
      --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "noclobber=http://127.0.0.1:$peer" ${NOCLOBBER_ETCD_ARGS:-} \
      >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    wait_for sh -c "curl -sf http://127.0.0.1:$port/health | grep -q '\"health\":\"true\"'" ||
      { tail -n 30 "$dir/server.log" >&2; exit 1; }
    echo "export NOCLOBBER_ETCD_URL=http://127.0.0.1:$port"
    ;;
  stop)
    stop_pid "$dir/pid"
    etcd_remove_data "$dir"
    ;;
  *) echo "etcd.sh: unknown command '$cmd' (start|stop)" >&2; exit 2 ;;
esac
