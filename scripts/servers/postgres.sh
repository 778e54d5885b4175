#!/usr/bin/env bash
# Start / stop a throwaway PostgreSQL 15 on a free loopback port, for noclobber's server tests.
#
#   scripts/servers/postgres.sh start STATE_DIR   # prints `export NOCLOBBER_PG_CONNINFO=...`
#   scripts/servers/postgres.sh stop  STATE_DIR
#
# Runs as root or as a normal user: as root, initdb/pg_ctl run through `runuser -u postgres`
# (PostgreSQL refuses to run as root) with data and socket folders owned by postgres.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

cmd=${1:?usage: postgres.sh start|stop STATE_DIR}
state=${2:?usage: postgres.sh start|stop STATE_DIR}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$bin/pg_ctl" ] || { echo "postgres.sh: no PostgreSQL server found (apt-get install postgresql)" >&2; exit 1; }
dir="$state/postgres"

as_pg() {
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    chmod 0755 "$state" "$dir"
    mkdir -p "$dir/data" "$dir/sock"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
    chmod 0700 "$dir/data"
    as_pg "$bin/initdb" -D "$dir/data" --auth=trust --username=postgres --encoding=UTF8 --locale=C \
      --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    port=$(free_port)
    as_pg "$bin/pg_ctl" -D "$dir/data" -w -t 30 -l "$dir/server.log" \
      -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres "$bin/psql" -q -d postgres -c 'CREATE DATABASE noclobber' >/dev/null
    echo "export NOCLOBBER_PG_CONNINFO='host=127.0.0.1 port=$port user=postgres dbname=noclobber'"
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    ;;
  *) echo "postgres.sh: unknown command '$cmd' (start|stop)" >&2; exit 2 ;;
esac
