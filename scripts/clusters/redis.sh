#!/usr/bin/env bash
# Redis for the fault tests (Debian's redis-server and redis-sentinel): a primary, 2 replicas
# (asynchronous replication) and 3 Sentinels watching them (quorum 2), on loopback. The nemesis
# kills or pauses the primary and the Sentinels promote a replica. No persistence (no RDB, no
# AOF): a node keeps its data only in memory, which is what replication has to protect.
# Or (--single) one node alone, without Sentinels, optionally with an append-only file.
# See scripts/clusters/common.sh for the state folder and the sweep.
#
#   redis.sh start [--min-replicas N]
#        prints `export NOCLOBBER_CLUSTER_STATE=DIR`, `export NOCLOBBER_REDIS_SENTINELS=h:p,h:p,h:p`
#        and `export NOCLOBBER_REDIS_MASTER=NAME`. --min-replicas N sets min-replicas-to-write N
#        (min-replicas-max-lag 2) on every node: a primary refuses writes (NOREPLICAS) unless N
#        replicas acknowledged its stream within the last 2 s
#   redis.sh start --single [--appendfsync always|everysec]
#        node 1 alone; prints `export NOCLOBBER_CLUSTER_STATE=DIR` and `export
#        NOCLOBBER_REDIS_ADDR=127.0.0.1:PORT`. Without --appendfsync no persistence (a restart
#        comes back empty); with it `appendonly yes` and that fsync policy, and the state folder
#        on disk (/tmp, not tmpfs: an fsync costs what a disk's does), so `restart` reloads the AOF
#   redis.sh stop DIR
#   redis.sh primary DIR            the node the Sentinels name as primary (1, 2 or 3)
#   redis.sh pid DIR NODE           the redis-server process of NODE
#   redis.sh port DIR NODE
#   redis.sh wait-failover DIR NODE wait until the Sentinels name a primary other than NODE and it
#                                   answers as one; prints "promoted nM"
#   redis.sh wait-settled DIR       wait until every running node replicates from the primary
#                                   (--single: until the node answers PING, its AOF loaded)
#   redis.sh restart DIR NODE       start NODE again (empty: no persistence) as a replica of the
#                                   primary the Sentinels name now (--single: on its port and
#                                   folder, alone; it reloads its AOF when it has one)
#   redis.sh cli DIR NODE ARGS...   redis-cli on NODE
#
# The sentinels notice a primary down after 1 s (down-after-milliseconds) and fail over within a
# few seconds. Every wait polls for its condition until a deadline in seconds of wall time (not a
# count of tries: on a loaded machine each try is slow). A node or Sentinel that cannot bind its
# port (another process took it between the pick and the bind) is started again on a new one;
# readiness is checked against the process started here (INFO's process_id), never whatever
# answers on the port.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

master=ncfmaster
cmd=${1:?usage: redis.sh start [--min-replicas N | --single [--appendfsync always|everysec]] | stop|primary|pid|port|wait-failover|wait-settled|restart|cli DIR ...}
command -v redis-server >/dev/null || { echo "redis.sh: redis-server missing (apt-get install redis-server)" >&2; exit 1; }
command -v redis-sentinel >/dev/null || { echo "redis.sh: redis-sentinel missing (apt-get install redis-sentinel)" >&2; exit 1; }

port_of() { cat "$state/n$1/port"; }
# A loopback port nobody listens on, below Linux's ephemeral range (32768-60999) so no client
# socket holds it, claimed with reserve_port (free_port's python start takes seconds on a loaded
# machine: 6 ports here).
quick_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && reserve_port "$p"; then
      echo "$p"
      return 0
    fi
  done
  free_port
}
sport_of() { cat "$state/s$1/port"; }
cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
# until_deadline SECONDS CMD...: run CMD every 0.1 s until it succeeds (0) or SECONDS have passed (1).
until_deadline() {
  local end=$((SECONDS + $1))
  shift
  while :; do
    "$@" >/dev/null 2>&1 && return 0
    [ "$SECONDS" -ge "$end" ] && return 1
    sleep 0.1
  done
}
# serves PIDFILE PORT: the process in PIDFILE is alive and is the one answering on PORT.
serves() {
  local pid
  pid=$(cat "$1") || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  timeout 2 redis-cli -h 127.0.0.1 -p "$2" INFO server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid"
}
# spawn_ready DIR PORTFILE PIDFILE LOG CMD...: start CMD (its port read from PORTFILE) and wait up
# to 30 s until it serves; 0 ready, 2 when it could not bind its port, 1 otherwise (log printed).
spawn_ready() {
  local dir=$1 portfile=$2 pidfile=$3 log=$4 end
  shift 4
  ncf_spawn "$state" "$log" "$@" >"$pidfile"
  end=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$end" ]; do
    serves "$pidfile" "$(cat "$portfile")" && return 0
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      grep -q 'Address already in use' "$log" && return 2
      break
    fi
    sleep 0.1
  done
  echo "redis.sh: $1 did not come up in $dir (port $(cat "$portfile")):" >&2
  tail -n 30 "$log" >&2
  return 1
}
# The primary's port as the first Sentinel that answers names it.
sentinel_primary_port() {
  local s out
  for s in 1 2 3; do
    out=$(timeout 2 redis-cli -h 127.0.0.1 -p "$(sport_of "$s")" SENTINEL get-master-addr-by-name "$master" 2>/dev/null | sed -n 2p) || true
    if [ -n "$out" ]; then echo "$out"; return 0; fi
  done
  return 1
}
node_of_port() {
  local n
  for n in 1 2 3; do [ "$(port_of "$n")" = "$1" ] && { echo "$n"; return 0; }; done
  return 1
}
# start_node NODE [replicaof args...]: on its port (a restart keeps it: the Sentinels know it).
# set-proc-title no keeps the NCF_STATE environment readable in /proc (see common.sh).
start_node() {
  local n=$1
  shift
  local args=(--port "$(port_of "$n")" --bind 127.0.0.1 --save '' --daemonize no
    --dir "$state/n$n" --maxclients 1000 --repl-diskless-sync no --set-proc-title no)
  if [ -f "$state/appendfsync" ]; then
    args+=(--appendonly yes --appendfsync "$(cat "$state/appendfsync")")
  else
    args+=(--appendonly no)
  fi
  if [ -f "$state/min_replicas" ]; then
    args+=(--min-replicas-to-write "$(cat "$state/min_replicas")" --min-replicas-max-lag 2)
  fi
  spawn_ready "$state/n$n" "$state/n$n/port" "$state/n$n/pid" "$state/n$n/server.log" redis-server "${args[@]}" "$@"
}
# start_new_node NODE [replicaof args...]: a new node on a fresh port, another one if it clashes.
start_new_node() {
  local n=$1 rc
  for _ in 1 2 3; do
    quick_port >"$state/n$n/port"
    rc=0
    start_node "$@" || rc=$?
    [ "$rc" = 2 ] || return "$rc"
    echo "redis.sh: port $(port_of "$n") taken, n$n tries another" >&2
  done
  return 1
}
# Each Sentinel sees the primary up, both replicas and the 2 other Sentinels, and can reach the
# quorum and the majority a failover needs (SENTINEL CKQUORUM).
sentinels_ready() {
  local s info
  for s in 1 2 3; do
    info=$(timeout 2 redis-cli -h 127.0.0.1 -p "$(sport_of "$s")" SENTINEL master "$master" 2>/dev/null |
      paste - - | tr '\t' ' ') || return 1
    echo "$info" | grep -qx 'flags master' || return 1
    echo "$info" | grep -qx 'num-slaves 2' || return 1
    echo "$info" | grep -qx 'num-other-sentinels 2' || return 1
    timeout 2 redis-cli -h 127.0.0.1 -p "$(sport_of "$s")" SENTINEL CKQUORUM "$master" 2>/dev/null | grep -q '^OK' ||
      return 1
  done
}
# start_sentinel S: Sentinel S on a fresh port, another one if it clashes.
start_sentinel() {
  local s=$1 rc
  mkdir -p "$state/s$s"
  for _ in 1 2 3; do
    quick_port >"$state/s$s/port"
    # A Sentinel rewrites its file: each try writes it afresh.
    cat >"$state/s$s/sentinel.conf" <<EOF
port $(sport_of "$s")
bind 127.0.0.1
daemonize no
set-proc-title no
dir $state/s$s
sentinel resolve-hostnames no
sentinel monitor $master 127.0.0.1 $(port_of 1) 2
sentinel down-after-milliseconds $master 1000
sentinel failover-timeout $master 6000
sentinel parallel-syncs $master 2
EOF
    rc=0
    spawn_ready "$state/s$s" "$state/s$s/port" "$state/s$s/pid" "$state/s$s/sentinel.log" \
      redis-sentinel "$state/s$s/sentinel.conf" || rc=$?
    [ "$rc" = 2 ] || return "$rc"
    echo "redis.sh: port $(sport_of "$s") taken, Sentinel s$s tries another" >&2
  done
  return 1
}

# single_ready: node 1 of a --single cluster answers PING (not LOADING: its AOF is loaded).
single_ready() { [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$(port_of 1)" PING 2>/dev/null)" = PONG ]; }

case "$cmd" in
  start)
    min=0 single=0 fsync=""
    shift
    while [ $# -gt 0 ]; do
      case "$1" in
        --min-replicas) min=${2:?--min-replicas N}; shift 2 ;;
        --single) single=1; shift ;;
        --appendfsync) fsync=${2:?--appendfsync always|everysec}; shift 2 ;;
        *) echo "redis.sh start: unknown option '$1'" >&2; exit 2 ;;
      esac
    done
    case "$fsync" in '' | always | everysec) ;; *) echo "redis.sh: --appendfsync always or everysec, not '$fsync'" >&2; exit 2 ;; esac
    if [ -n "$fsync" ] && [ "$single" != 1 ]; then echo "redis.sh: --appendfsync needs --single" >&2; exit 2; fi
    if [ "$single" = 1 ] && [ "$min" != 0 ]; then echo "redis.sh: --min-replicas needs replicas, not --single" >&2; exit 2; fi
    if [ -n "$fsync" ]; then state=$(ncf_state_new /tmp); else state=$(ncf_state_new); fi
    trap 'ncf_remove_unless_started "$state"' EXIT
    echo "export NOCLOBBER_CLUSTER_STATE=$state" # first: a caller can stop a half-made cluster
    if [ "$single" = 1 ]; then
      touch "$state/single"
      [ -n "$fsync" ] && echo "$fsync" >"$state/appendfsync"
      mkdir -p "$state/n1"
      start_new_node 1
      ncf_started=1
      echo "export NOCLOBBER_REDIS_ADDR=127.0.0.1:$(port_of 1)"
      exit 0
    fi
    [ "$min" != 0 ] && echo "$min" >"$state/min_replicas"
    for n in 1 2 3; do mkdir -p "$state/n$n"; done
    start_new_node 1
    start_new_node 2 --replicaof 127.0.0.1 "$(port_of 1)"
    start_new_node 3 --replicaof 127.0.0.1 "$(port_of 1)"
    # Both replicas connected and in sync (INFO's slaveN lines say state=online).
    until_deadline 30 sh -c "redis-cli -h 127.0.0.1 -p $(port_of 1) INFO replication | grep -c 'state=online' | grep -qx 2" ||
      { echo "redis.sh: the replicas did not connect in 30 s" >&2; exit 1; }
    sentinels=""
    for s in 1 2 3; do
      start_sentinel "$s"
      sentinels+="${sentinels:+,}127.0.0.1:$(sport_of "$s")"
    done
    # The Sentinels find each other through hello messages, every 2 s, on the primary.
    if ! until_deadline 40 sentinels_ready; then
      for s in 1 2 3; do
        echo "Sentinel s$s (port $(sport_of "$s")) sees:" $(cli "$(sport_of "$s")" SENTINEL master "$master" 2>&1 |
          paste - - | grep -E '^(flags|num-slaves|num-other-sentinels|ip|port)' | tr '\t' '=') >&2
      done
      echo "redis.sh: the Sentinels did not find each other" >&2
      exit 1
    fi
    ncf_started=1
    echo "export NOCLOBBER_REDIS_SENTINELS=$sentinels"
    echo "export NOCLOBBER_REDIS_MASTER=$master"
    ;;
  stop)
    state=${2:?DIR}
    ncf_state_remove "$state"
    ;;
  primary)
    state=${2:?DIR}
    [ -f "$state/single" ] && { echo 1; exit 0; }
    node_of_port "$(sentinel_primary_port)"
    ;;
  pid) state=${2:?DIR}; cat "$state/n${3:?NODE}/pid" ;;
  port) state=${2:?DIR}; port_of "${3:?NODE}" ;;
  wait-failover)
    state=${2:?DIR}
    old=$(port_of "${3:?NODE}")
    end=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$end" ]; do
      p=$(sentinel_primary_port || true)
      if [ -n "$p" ] && [ "$p" != "$old" ] &&
        timeout 2 redis-cli -h 127.0.0.1 -p "$p" ROLE 2>/dev/null | head -n1 | grep -qx master; then
        echo "promoted n$(node_of_port "$p")"
        exit 0
      fi
      sleep 0.05
    done
    echo "redis.sh wait-failover: no new primary after 30 s" >&2
    exit 1
    ;;
  wait-settled)
    # After the heals: the Sentinels' primary answers as one, and every other running node
    # replicates from it with its link up (a demoted primary has resynced: reads agree).
    # A Sentinel demotes a resumed old primary only after it reported the master role for 8 s
    # (4 hello periods), so this takes 10-15 s after a pause.
    state=${2:?DIR}
    if [ -f "$state/single" ]; then
      until_deadline 45 single_ready || { echo "redis.sh wait-settled: n1 did not answer PING in 45 s" >&2; exit 1; }
      echo "settled: n1 answers"
      exit 0
    fi
    end=$((SECONDS + 45))
    while [ "$SECONDS" -lt "$end" ]; do
      p=$(sentinel_primary_port || true)
      ok=0
      if [ -n "$p" ] && timeout 2 redis-cli -h 127.0.0.1 -p "$p" ROLE 2>/dev/null | head -n1 | grep -qx master; then
        ok=1
        for n in 1 2 3; do
          np=$(port_of "$n")
          [ "$np" = "$p" ] && continue
          kill -0 "$(cat "$state/n$n/pid")" 2>/dev/null || continue
          info=$(timeout 2 redis-cli -h 127.0.0.1 -p "$np" INFO replication 2>/dev/null | tr -d '\r')
          if ! echo "$info" | grep -qx "master_port:$p" || ! echo "$info" | grep -qx 'master_link_status:up'; then
            ok=0
            break
          fi
        done
      fi
      [ "$ok" = 1 ] && { echo "settled: primary n$(node_of_port "$p")"; exit 0; }
      sleep 0.1
    done
    echo "redis.sh wait-settled: the nodes did not settle in 45 s" >&2
    exit 1
    ;;
  restart)
    state=${2:?DIR}
    node=${3:?NODE}
    if [ -f "$state/single" ]; then
      start_node "$node"
      echo "n$node restarted$([ -f "$state/appendfsync" ] && echo ", its AOF reloaded")"
      exit 0
    fi
    p=$(sentinel_primary_port)
    if [ "$p" = "$(port_of "$node")" ]; then
      # Still the primary by the Sentinels' word: come back empty as a primary would wipe the
      # replicas (they resync from it). Refuse instead.
      echo "redis.sh restart: n$node is still the primary; wait for the failover first" >&2
      exit 1
    fi
    start_node "$node" --replicaof 127.0.0.1 "$p"
    echo "n$node restarted as a replica of port $p"
    ;;
  cli)
    state=${2:?DIR}
    node=${3:?NODE}
    shift 3
    cli "$(port_of "$node")" "$@"
    ;;
  *) echo "redis.sh: unknown command '$cmd'" >&2; exit 2 ;;
esac
