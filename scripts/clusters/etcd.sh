#!/usr/bin/env bash
# A 3-member etcd cluster for the fault tests, from Debian's etcd-server, on loopback or with each
# member in its own network namespace (for partitions). See scripts/clusters/common.sh for where
# its state lives and how scripts/clusters/sweep.sh finds it after a crash.
#
#   etcd.sh start [--netns | --peer-proxies L1:A1,L2:A2,L3:A3]
#                                prints `export NOCLOBBER_CLUSTER_STATE=DIR` and
#                                `export NOCLOBBER_ETCD_ENDPOINTS=http://A,http://B,http://C`;
#                                --peer-proxies (loopback): member I listens for its peers on
#                                127.0.0.1:LI and advertises 127.0.0.1:AI, a port where the caller
#                                runs a proxy to LI (running before start: the members' raft
#                                traffic goes through it, so start waits for it)
#   etcd.sh stop DIR             stops every member, removes namespaces and DIR
#   etcd.sh kill DIR I           SIGKILL member I (1..3)
#   etcd.sh restart DIR I        starts member I again on its data (after kill), waits for health
#   etcd.sh pids DIR I           member I's pid
#   etcd.sh leader DIR           the leader's member number, as the members answer
#   etcd.sh netns DIR I          member I's namespace and address ("NAME IP"), --netns only
#
# Members use the default heartbeat (100 ms) and election timeout (1000 ms); data on tmpfs when
# /dev/shm is writable (a SIGKILL does not lose the page cache: these faults test the protocol,
# not the disk).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

members=3
cmd=${1:?usage: etcd.sh start [--netns | --peer-proxies L1:A1,L2:A2,L3:A3] | stop|kill|restart|pids|leader|netns DIR [I]}

member_env() { # DIR I: sets ip cport pport (listened on) aport (advertised) for member I
  local state=$1 i=$2
  ip=$(sed -n "s/^ip$i=//p" "$state/cluster.env")
  cport=$(sed -n "s/^cport$i=//p" "$state/cluster.env")
  pport=$(sed -n "s/^pport$i=//p" "$state/cluster.env")
  aport=$(sed -n "s/^aport$i=//p" "$state/cluster.env")
  aport=${aport:-$pport}
}

start_member() { # DIR I new|existing
  local state=$1 i=$2 how=$3 cluster="" k pid
  for k in $(seq 1 $members); do
    member_env "$state" "$k"
    cluster+="${cluster:+,}m$k=http://$ip:$aport"
  done
  member_env "$state" "$i"
  local run=()
  [ -f "$state/subnet" ] && run=(ip netns exec "$(ncf_netns_name "$state" "$i")")
  pid=$(ncf_spawn "$state" "$state/m$i.log" "${run[@]}" etcd --name "m$i" --data-dir "$state/m$i" \
    --listen-client-urls "http://$ip:$cport" --advertise-client-urls "http://$ip:$cport" \
    --listen-peer-urls "http://$ip:$pport" --initial-advertise-peer-urls "http://$ip:$aport" \
    --initial-cluster "$cluster" --initial-cluster-state "$how" --initial-cluster-token "ncf-$(ncf_tag "$state")")
  echo "$pid" >"$state/m$i.pid"
}

healthy() { # DIR I
  member_env "$1" "$2"
  curl -sf --max-time 1 "http://$ip:$cport/health" | grep -q '"health":"true"'
}

case "$cmd" in
  start)
    state=$(ncf_state_new)
    trap 'ncf_remove_unless_started "$state"' EXIT
    # First, so that a caller can stop the cluster even when this script is killed half-way.
    echo "export NOCLOBBER_CLUSTER_STATE=$state"
    : >"$state/cluster.env"
    if [ "${2:-}" = --peer-proxies ]; then
      proxies=${3:?etcd.sh start --peer-proxies L1:A1,L2:A2,L3:A3}
      [[ "$proxies" =~ ^[0-9]+:[0-9]+,[0-9]+:[0-9]+,[0-9]+:[0-9]+$ ]] ||
        { echo "etcd.sh: --peer-proxies wants L1:A1,L2:A2,L3:A3, not '$proxies'" >&2; exit 2; }
      IFS=, read -r -a pairs <<<"$proxies"
      for i in $(seq 1 $members); do
        { echo "ip$i=127.0.0.1"; echo "cport$i=$(free_port)"; echo "pport$i=${pairs[i-1]%%:*}"
          echo "aport$i=${pairs[i-1]##*:}"; } >>"$state/cluster.env"
      done
    elif [ "${2:-}" = --netns ]; then
      ncf_netns_up "$state" $members
      for i in $(seq 1 $members); do
        echo "ip$i=$(ncf_member_ip "$state" "$i")" >>"$state/cluster.env"
        echo "cport$i=2379" >>"$state/cluster.env"
        echo "pport$i=2380" >>"$state/cluster.env"
      done
    else
      for i in $(seq 1 $members); do
        { echo "ip$i=127.0.0.1"; echo "cport$i=$(free_port)"; echo "pport$i=$(free_port)"; } >>"$state/cluster.env"
      done
    fi
    for i in $(seq 1 $members); do start_member "$state" "$i" new; done
    for i in $(seq 1 $members); do
      wait_for healthy "$state" "$i" || { tail -n 20 "$state/m$i.log" >&2; false; }
    done
    endpoints=""
    for i in $(seq 1 $members); do member_env "$state" "$i"; endpoints+="${endpoints:+,}http://$ip:$cport"; done
    ncf_started=1
    echo "export NOCLOBBER_ETCD_ENDPOINTS=$endpoints"
    ;;
  stop) ncf_state_remove "${2:?DIR}" ;;
  kill)
    state=${2:?DIR}
    i=${3:?I}
    pid=$(cat "$state/m$i.pid")
    kill -CONT "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do [ -e "/proc/$pid" ] || break; sleep 0.02; done
    ;;
  restart)
    state=${2:?DIR}
    i=${3:?I}
    start_member "$state" "$i" existing
    wait_for healthy "$state" "$i" || { tail -n 20 "$state/m$i.log" >&2; exit 1; }
    ;;
  pids) cat "${2:?DIR}/m${3:?I}.pid" ;;
  leader)
    state=${2:?DIR}
    for i in $(seq 1 $members); do
      member_env "$state" "$i"
      out=$(curl -sf --max-time 1 -X POST -d '{}' "http://$ip:$cport/v3/maintenance/status" 2>/dev/null) || continue
      me=$(echo "$out" | jq -r '.header.member_id')
      lead=$(echo "$out" | jq -r '.leader')
      if [ -n "$me" ] && [ "$me" = "$lead" ]; then echo "$i"; exit 0; fi
    done
    echo "etcd.sh leader: no member says it leads" >&2
    exit 1
    ;;
  netns)
    state=${2:?DIR}
    i=${3:?I}
    [ -f "$state/subnet" ] || { echo "etcd.sh netns: this cluster runs on loopback" >&2; exit 1; }
    echo "$(ncf_netns_name "$state" "$i") $(ncf_member_ip "$state" "$i")"
    ;;
  *) echo "etcd.sh: unknown command '$cmd'" >&2; exit 2 ;;
esac
