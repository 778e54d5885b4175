#!/usr/bin/env bash
# Start / stop a throwaway redis-server that requires authentication, on a free loopback port, for
# noclobber's AUTH server tests (tests/servers/test_server_redis_auth.cpp). Passwords are random,
# made at start: the default user's (legacy `AUTH password`, `requirepass`) and an ACL user's
# (`AUTH app password`, Redis 6+).
#
#   scripts/servers/redis_auth.sh start STATE_DIR   # prints the exports below
#   scripts/servers/redis_auth.sh stop  STATE_DIR
#
#   NOCLOBBER_REDIS_AUTH_ADDR=127.0.0.1:PORT  NOCLOBBER_REDIS_AUTH_USER=app
#   NOCLOBBER_REDIS_AUTH_PASSWORD=...          NOCLOBBER_REDIS_AUTH_ADMIN_PASSWORD=... (default user)
#
# TLS is not configured: redis-server 7.0 (Debian 12) could serve it, but hiredis 0.14, the
# client library the adapter uses, has no TLS (docs/adapters/redis.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

cmd=${1:?usage: redis_auth.sh start|stop STATE_DIR}
state=${2:?usage: redis_auth.sh start|stop STATE_DIR}
dir="$state/redis_auth"

case "$cmd" in
  start)
    mkdir -p "$dir"
    chmod 0700 "$dir"
    port=$(free_port)
    admin=$(openssl rand -hex 16)
    app=$(openssl rand -hex 16)
    umask 077
    cat >"$dir/redis.conf" <<CONF
port $port
bind 127.0.0.1
save ""
appendonly no
daemonize no
dir $dir
maxclients 1000
requirepass $admin
user app on >$app ~* &* +@all
CONF
    (cd "$dir" && exec redis-server "$dir/redis.conf" >"$dir/server.log" 2>&1) &
    echo $! >"$dir/pid"
    echo "$port" >"$dir/port"
    echo "$admin" >"$dir/admin"
    wait_for sh -c "REDISCLI_AUTH=$admin redis-cli -p $port ping | grep -q PONG" || { cat "$dir/server.log" >&2; exit 1; }
    echo "export NOCLOBBER_REDIS_AUTH_ADDR=127.0.0.1:$port NOCLOBBER_REDIS_AUTH_USER=app" \
         "NOCLOBBER_REDIS_AUTH_PASSWORD=$app NOCLOBBER_REDIS_AUTH_ADMIN_PASSWORD=$admin"
    ;;
  stop)
    if [ -f "$dir/port" ] && [ -f "$dir/admin" ]; then
      REDISCLI_AUTH=$(cat "$dir/admin") redis-cli -p "$(cat "$dir/port")" shutdown nosave >/dev/null 2>&1 || true
    fi
    stop_pid "$dir/pid"
    ;;
  *) echo "redis_auth.sh: unknown command '$cmd' (start|stop)" >&2; exit 2 ;;
esac
