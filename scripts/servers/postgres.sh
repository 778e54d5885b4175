#!/usr/bin/env bash
# Start / stop a throwaway PostgreSQL 15 on a free loopback port, for noclobber's server tests.
#
#   scripts/servers/postgres.sh start STATE_DIR   # prints `export NOCLOBBER_PG_CONNINFO=...`
#                                                 # and NOCLOBBER_PG_AUTH_CONNINFO / _PASSWORD
#   scripts/servers/postgres.sh stop  STATE_DIR
#
# NOCLOBBER_PG_CONNINFO's user `postgres` is trusted; members of role `nc_password_roles` (`nc_auth`,
# and roles tests make) must give their password
# (scram-sha-256 on 127.0.0.1; random, made at start): NOCLOBBER_PG_AUTH_CONNINFO has no password,
# NOCLOBBER_PG_AUTH_PASSWORD is it (the auth tests add `password=...` themselves).
#
# Runs as root or as a normal user: as root, initdb/pg_ctl run through `runuser -u postgres`
# (PostgreSQL refuses to run as root) with data and socket folders owned by postgres.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

cmd=${1:?usage: postgres.sh start|stop STATE_DIR}
state=${2:?usage: postgres.sh start|stop STATE_DIR}
bin=$(postgres_bin postgres.sh)
dir="$state/postgres"

case "$cmd" in
  start)
    mkdir -p "$dir"
    chmod 0755 "$state" "$dir"
    mkdir -p "$dir/data" "$dir/sock"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
    chmod 0700 "$dir/data"
    as_postgres "$bin/initdb" -D "$dir/data" --auth=trust --username=postgres --encoding=UTF8 --locale=C \
      --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    # The password-checked role first: pg_hba.conf takes the first line that matches.
    { echo "host all +nc_password_roles 127.0.0.1/32 scram-sha-256"; cat "$dir/data/pg_hba.conf"; } >"$dir/pg_hba.tmp"
    mv "$dir/pg_hba.tmp" "$dir/data/pg_hba.conf"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/data/pg_hba.conf"
    chmod 0600 "$dir/data/pg_hba.conf"
    auth_password=$(openssl rand -hex 16)
    port=$(free_port)
    as_postgres "$bin/pg_ctl" -D "$dir/data" -w -t 30 -l "$dir/server.log" \
      -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres "$bin/psql" -q -d postgres -c 'CREATE DATABASE noclobber' >/dev/null
    PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres "$bin/psql" -q -d noclobber \
      -c "CREATE ROLE nc_password_roles NOLOGIN" -c "CREATE ROLE nc_auth LOGIN PASSWORD '$auth_password' IN ROLE nc_password_roles" \
      -c 'GRANT CREATE ON SCHEMA public TO nc_password_roles' >/dev/null
    echo "export NOCLOBBER_PG_CONNINFO='host=127.0.0.1 port=$port user=postgres dbname=noclobber'" \
         "NOCLOBBER_PG_AUTH_CONNINFO='host=127.0.0.1 port=$port user=nc_auth dbname=noclobber'" \
         "NOCLOBBER_PG_AUTH_PASSWORD=$auth_password"
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_postgres "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    ;;
  *) echo "postgres.sh: unknown command '$cmd' (start|stop)" >&2; exit 2 ;;
esac
