#!/usr/bin/env bash
# A single-node Ceph with radosgw (scripts/servers/radosgw.sh: one monitor, one memstore OSD,
# radosgw) as a fault-test cluster: its state lives in a scripts/clusters/common.sh state folder
# and every daemon carries NCF_STATE, so scripts/clusters/sweep.sh finds what a crashed test left.
#
#   radosgw.sh start            prints `export NOCLOBBER_CLUSTER_STATE=DIR` and the
#                               NOCLOBBER_RGW_* exports of scripts/servers/radosgw.sh
#   radosgw.sh stop DIR         stops every daemon, removes DIR
#   radosgw.sh restart DIR      starts radosgw again after it was killed (the monitor and the OSD,
#                               which holds the objects, keep running); waits until it answers
#   radosgw.sh pids DIR         radosgw's pid
#
# Start-up takes 15-20 s on an idle machine (up to ~60 s on a busy one); a restart ~2 s.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

server="$here/../servers/radosgw.sh"
cmd=${1:?usage: radosgw.sh start | stop|restart|pids DIR}

case "$cmd" in
  start)
    state=$(ncf_state_new)
    trap 'ncf_remove_unless_started "$state"' EXIT
    # First, so that a caller can stop the cluster even when this script is killed half-way.
    echo "export NOCLOBBER_CLUSTER_STATE=$state"
    NCF_STATE=$state bash "$server" start "$state"
    ncf_started=1
    ;;
  stop) ncf_state_remove "${2:?DIR}" ;;
  restart)
    state=${2:?DIR}
    NCF_STATE=$state bash "$server" restart "$state" >&2
    ;;
  pids) bash "$server" rgw-pid "${2:?DIR}" ;;
  *) echo "radosgw.sh: unknown command '$cmd'" >&2; exit 2 ;;
esac
