#!/usr/bin/env bash
# Start / stop a throwaway PostgreSQL 15 that REQUIRES TLS, on a free loopback port, for
# noclobber's TLS server tests (tests/servers/test_server_postgres_tls.cpp) and
# examples/adapters/postgres_tls.cpp. A fresh CA (scripts/servers/common.sh make_ca) signs the
# server's certificate (SAN IP:127.0.0.1, DNS:localhost); pg_hba.conf lets TCP clients in only
# over TLS with a scram-sha-256 password (`hostssl`), and refuses every other TCP connection
# (`hostnossl … reject`); the setup goes through the Unix socket.
#
#   scripts/servers/postgres_tls.sh start STATE_DIR   # prints the exports below
#   scripts/servers/postgres_tls.sh stop  STATE_DIR
#
#   NOCLOBBER_PG_TLS_CONNINFO='host=127.0.0.1 port=P user=nc_tls dbname=noclobber
#                              sslmode=verify-full sslrootcert=STATE_DIR/postgres_tls/tls/ca.crt'
#                              (no password: the tests add `password=…`)
#   NOCLOBBER_PG_TLS_PASSWORD=…      nc_tls's password (random, made at start)
#   NOCLOBBER_PG_TLS_WRONG_CA=…      a CA that did not sign the server's certificate
#
# Runs as root or as a normal user (as root through `runuser -u postgres`, like postgres.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

cmd=${1:?usage: postgres_tls.sh start|stop STATE_DIR}
state=${2:?usage: postgres_tls.sh start|stop STATE_DIR}
bin=$(postgres_bin postgres_tls.sh)
dir="$state/postgres_tls"

case "$cmd" in
  start)
    mkdir -p "$dir/data" "$dir/sock" "$dir/tls" "$dir/tls/wrong"
    chmod 0755 "$state" "$dir" "$dir/tls" "$dir/tls/wrong"
    make_ca "$dir/tls"
    make_cert "$dir/tls" server localhost IP:127.0.0.1 DNS:localhost
    make_ca "$dir/tls/wrong"
    chmod 0644 "$dir/tls/ca.crt" "$dir/tls/wrong/ca.crt"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
    chmod 0700 "$dir/data"
    as_postgres "$bin/initdb" -D "$dir/data" --auth=trust --username=postgres --encoding=UTF8 --locale=C \
      --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    # The server's key must belong to the server's user, mode 0600.
    cp "$dir/tls/server.crt" "$dir/tls/server.key" "$dir/data/"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/data/server.crt" "$dir/data/server.key"
    chmod 0600 "$dir/data/server.key"
    # First matching line wins: the socket (setup) is trusted; TCP only over TLS with a password.
    printf '%s\n' "local all all trust" \
      "hostssl all all 127.0.0.1/32 scram-sha-256" \
      "hostnossl all all 127.0.0.1/32 reject" >"$dir/data/pg_hba.conf"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/data/pg_hba.conf"
    chmod 0600 "$dir/data/pg_hba.conf"
    password=$(openssl rand -hex 16)
    port=$(free_port)
    as_postgres "$bin/pg_ctl" -D "$dir/data" -w -t 30 -l "$dir/server.log" \
      -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100 -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    PGHOST=$dir/sock PGPORT=$port PGUSER=postgres "$bin/psql" -q -d postgres -c 'CREATE DATABASE noclobber' >/dev/null
    PGHOST=$dir/sock PGPORT=$port PGUSER=postgres "$bin/psql" -q -d noclobber \
      -c "CREATE ROLE nc_tls LOGIN PASSWORD '$password'" -c 'GRANT CREATE ON SCHEMA public TO nc_tls' >/dev/null
    echo "export NOCLOBBER_PG_TLS_CONNINFO='host=127.0.0.1 port=$port user=nc_tls dbname=noclobber sslmode=verify-full sslrootcert=$dir/tls/ca.crt'" \
         "NOCLOBBER_PG_TLS_PASSWORD=$password NOCLOBBER_PG_TLS_WRONG_CA=$dir/tls/wrong/ca.crt"
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_postgres "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    ;;
  *) echo "postgres_tls.sh: unknown command '$cmd' (start|stop)" >&2; exit 2 ;;
esac
