#!/usr/bin/env bash
# PostgreSQL for the fault tests (Debian's postgresql): one node, or a primary with a streaming
# replica (asynchronous, or synchronous with synchronous_commit = remote_apply) that the nemesis
# promotes. On loopback; see scripts/clusters/common.sh for the state folder and the sweep.
#
#   postgres.sh start [--replica async|sync]
#        prints `export NOCLOBBER_CLUSTER_STATE=DIR` and `export NOCLOBBER_PG_CONNINFO='…'`: one
#        host, or libpq's multi-host form for both nodes with target_session_attrs=read-write
#   postgres.sh stop DIR
#   postgres.sh pids DIR NODE       the postmaster and its children (NODE: 1 or 2)
#   postgres.sh primary DIR         the node that takes writes now
#   postgres.sh restart DIR NODE    start NODE again on its data (after a kill: crash recovery)
#   postgres.sh failover DIR        SIGKILL every process of the primary, promote the replica,
#                                   wait until it takes writes (the old primary stays down)
#   postgres.sh promote DIR         the same without the kill (the caller killed the primary)
#   postgres.sh terminate DIR       pg_terminate_backend() every client connection on the primary
#   postgres.sh psql DIR NODE SQL   run SQL on NODE
#
# fsync stays on (data on tmpfs when /dev/shm is writable: a SIGKILL keeps the page cache, so
# these faults test the commit and replication protocol, not the disk).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$bin/pg_ctl" ] || { echo "postgres.sh: no PostgreSQL server found (apt-get install postgresql)" >&2; exit 1; }
cmd=${1:?usage: postgres.sh start [--replica async|sync] | stop|pids|primary|restart|failover|terminate|psql DIR ...}

as_pg() { # runs as postgres when root (PostgreSQL refuses root), keeping NCF_STATE
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- env NCF_STATE="$state" "$@"); else NCF_STATE="$state" "$@"; fi
}
port_of() { cat "$state/n$1/port"; }
pg() { # NODE SQL...: psql on NODE
  local node=$1
  shift
  PGCONNECT_TIMEOUT=2 "$bin/psql" -X -q -At -h 127.0.0.1 -p "$(port_of "$node")" -U postgres -d postgres "$@"
}
start_node() { # NODE
  as_pg "$bin/pg_ctl" -D "$state/n$1/data" -w -t 60 -l "$state/n$1/server.log" \
    -o "-p $(port_of "$1") -k $state/n$1 -c listen_addresses=127.0.0.1" start >/dev/null ||
    { tail -n 30 "$state/n$1/server.log" >&2; return 1; }
}
postmaster_pid() { head -n1 "$state/n$1/data/postmaster.pid" 2>/dev/null; }
node_pids() { # NODE: postmaster and children
  local pm
  pm=$(postmaster_pid "$1") || return 0
  [ -n "$pm" ] || return 0
  echo "$pm"
  pgrep -P "$pm" || true
}
takes_writes() { [ "$(pg "$1" -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; }

case "$cmd" in
  start)
    mode=none
    if [ "${2:-}" = --replica ]; then mode=${3:?--replica async|sync}; fi
    case "$mode" in none | async | sync) ;; *) echo "postgres.sh: --replica async or sync, not '$mode'" >&2; exit 2 ;; esac
    state=$(ncf_state_new)
    trap 'ncf_remove_unless_started "$state"' EXIT
    # First, so that a caller can stop the cluster even when this script is killed half-way.
    echo "export NOCLOBBER_CLUSTER_STATE=$state"
    mkdir -p "$state/n1"
    free_port >"$state/n1/port"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$state/n1"
    as_pg "$bin/initdb" -D "$state/n1/data" --auth=trust --username=postgres --encoding=UTF8 --locale=C \
      >"$state/n1/initdb.log" 2>&1 || { cat "$state/n1/initdb.log" >&2; exit 1; }
    {
      echo "max_connections = 200"
      echo "dynamic_shared_memory_type = mmap"  # no /dev/shm segment outlives a SIGKILL
      echo "wal_level = replica"
      echo "max_wal_senders = 4"
      echo "wal_keep_size = '256MB'"
      echo "hot_standby = on"
    } >>"$state/n1/data/postgresql.conf"
    echo "host replication postgres 127.0.0.1/32 trust" >>"$state/n1/data/pg_hba.conf"
    start_node 1
    pg 1 -c 'CREATE DATABASE noclobber'
    echo 1 >"$state/primary"
    conninfo="host=127.0.0.1 port=$(port_of 1) user=postgres dbname=noclobber connect_timeout=2"
    if [ "$mode" != none ]; then
      mkdir -p "$state/n2"
      free_port >"$state/n2/port"
      [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$state/n2"
      as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$(port_of 1)" -U postgres -D "$state/n2/data" -R -X stream -c fast \
        >"$state/n2/basebackup.log" 2>&1 || { cat "$state/n2/basebackup.log" >&2; exit 1; }
      # The standby names itself in primary_conninfo, so synchronous_standby_names = '*' picks it.
      echo "primary_conninfo = 'host=127.0.0.1 port=$(port_of 1) user=postgres application_name=n2'" \
        >>"$state/n2/data/postgresql.auto.conf"
      start_node 2
      wait_for sh -c "[ \"\$(PGCONNECT_TIMEOUT=2 $bin/psql -X -At -h 127.0.0.1 -p $(port_of 1) -U postgres -d postgres -c \"SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'\")\" = 1 ]" ||
        { tail -n 30 "$state/n2/server.log" >&2; exit 1; }
      if [ "$mode" = sync ]; then # only now: with no standby yet, every commit would wait
        pg 1 -c "ALTER SYSTEM SET synchronous_standby_names = '*'" -c "ALTER SYSTEM SET synchronous_commit = remote_apply" \
          -c 'SELECT pg_reload_conf()' >/dev/null
        # The replica carries the same settings for after its promotion.
        pg 2 -c "ALTER SYSTEM SET synchronous_commit = remote_apply" >/dev/null 2>&1 || true
      fi
      conninfo="host=127.0.0.1,127.0.0.1 port=$(port_of 1),$(port_of 2) user=postgres dbname=noclobber"
      conninfo+=" target_session_attrs=read-write connect_timeout=2"
    fi
    echo "$mode" >"$state/mode"
    ncf_started=1
    echo "export NOCLOBBER_PG_CONNINFO='$conninfo'"
    ;;
  stop)
    state=${2:?DIR}
    for n in 1 2; do
      [ -f "$state/n$n/data/postmaster.pid" ] &&
        as_pg "$bin/pg_ctl" -D "$state/n$n/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
    done
    ncf_state_remove "$state"
    ;;
  pids) state=${2:?DIR}; node_pids "${3:?NODE}" ;;
  primary) state=${2:?DIR}; cat "$state/primary" ;;
  restart)
    state=${2:?DIR}
    node=${3:?NODE}
    # A killed postmaster may linger as a zombie until its new parent reaps it, and PostgreSQL
    # then takes its lock file for a running server: wait for it to go, else drop the stale file.
    old=$(postmaster_pid "$node" || true)
    if [ -n "$old" ]; then
      for _ in $(seq 1 100); do [ -e "/proc/$old" ] || break; sleep 0.05; done
      if [ -e "/proc/$old" ] && grep -q '^State:.*Z' "/proc/$old/status" 2>/dev/null; then
        rm -f "$state/n$node/data/postmaster.pid"
      fi
    fi
    start_node "$node"
    ;;
  failover | promote)
    state=${2:?DIR}
    old=$(cat "$state/primary")
    new=$((3 - old))
    [ -d "$state/n$new/data" ] || { echo "postgres.sh $cmd: no replica" >&2; exit 1; }
    if [ "$cmd" = failover ]; then
      pids=$(node_pids "$old")
      [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
      for _ in $(seq 1 200); do # gone, or a zombie nobody reaps yet
        alive=0
        for p in $pids; do
          if [ -e "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then alive=1; fi
        done
        [ "$alive" = 0 ] && break
        sleep 0.02
      done
    fi
    as_pg "$bin/pg_ctl" -D "$state/n$new/data" -w -t 60 promote >/dev/null
    wait_for takes_writes "$new" || { echo "postgres.sh failover: n$new does not take writes" >&2; exit 1; }
    echo "$new" >"$state/primary"
    echo "promoted n$new"
    ;;
  terminate)
    state=${2:?DIR}
    p=$(cat "$state/primary")
    n=$(pg "$p" -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = 'noclobber' AND pid <> pg_backend_pid()")
    echo "terminated $n backends on n$p"
    ;;
  psql)
    state=${2:?DIR}
    node=${3:?NODE}
    pg "$node" -c "${4:?SQL}"
    ;;
  *) echo "postgres.sh: unknown command '$cmd'" >&2; exit 2 ;;
esac
