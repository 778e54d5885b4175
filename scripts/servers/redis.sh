#!/usr/bin/env bash
# Start / stop a throwaway redis-server on a free loopback port, for noclobber's server tests.
#
#   scripts/servers/redis.sh start STATE_DIR   # prints `export NOCLOBBER_REDIS_ADDR=127.0.0.1:PORT`
#   scripts/servers/redis.sh stop  STATE_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

cmd=${1:?usage: redis.sh start|stop STATE_DIR}
state=${2:?usage: redis.sh start|stop STATE_DIR}
dir="$state/redis"

case "$cmd" in
  start)
    mkdir -p "$dir"
    port=$(free_port)
    (cd "$dir" && exec redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize no --dir "$dir" --maxclients 1000 >"$dir/server.log" 2>&1) &
    echo $! >"$dir/pid"
    echo "$port" >"$dir/port"
    wait_for sh -c "redis-cli -p $port ping | grep -q PONG" || { cat "$dir/server.log" >&2; exit 1; }
    echo "export NOCLOBBER_REDIS_ADDR=127.0.0.1:$port"
    ;;
  stop)
    if [ -f "$dir/port" ]; then
      redis-cli -p "$(cat "$dir/port")" shutdown nosave >/dev/null 2>&1 || true
    fi
    stop_pid "$dir/pid"
    ;;
  *) echo "redis.sh: unknown command '$cmd' (start|stop)" >&2; exit 2 ;;
esac
