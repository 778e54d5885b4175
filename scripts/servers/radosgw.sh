#!/usr/bin/env bash
# Start / stop a throwaway single-node Ceph with radosgw (the S3 API) on free loopback ports, for
# noclobber's S3 adapter tests: one monitor, one OSD on memstore (objects in RAM), radosgw with the
# beast frontend, a user with random keys and one bucket. Debian 12: ceph-mon, ceph-osd, radosgw
# 16.2. Takes ~15-20 s to answer S3 (up to ~60 s while other work loads the machine) and
# ~150-300 MB of memory.
#
#   scripts/servers/radosgw.sh start STATE_DIR     # prints the exports below
#   scripts/servers/radosgw.sh stop  STATE_DIR
#   scripts/servers/radosgw.sh restart STATE_DIR   # radosgw alone again after it was killed (the
#                                                  # objects live in the OSD); waits until it answers
#   scripts/servers/radosgw.sh rgw-pid STATE_DIR   # radosgw's pid
#
#   NOCLOBBER_RGW_ENDPOINT=http://127.0.0.1:PORT   NOCLOBBER_RGW_BUCKET=noclobber
#   NOCLOBBER_RGW_ACCESS_KEY=...                   NOCLOBBER_RGW_SECRET_KEY=...
# Virtual-host addressing works as http://BUCKET.localhost:PORT (rgw dns name = localhost).
#
# Notes: cephx is off (loopback only); msgr2 is off, so the monitor gets a v1 address in its
# monmap (else the OSD cannot reach it); `ceph-osd --mkfs` runs with --no-mon-config; the OSD's
# start-up updates of its CRUSH location and device class are off (they fail here with 'wrong
# fsid' when cephx is off) and it is placed in the CRUSH map by hand.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

cmd=${1:?usage: radosgw.sh start|stop|restart|rgw-pid STATE_DIR}
state=${2:?usage: radosgw.sh start|stop|restart|rgw-pid STATE_DIR}
dir="$state/radosgw"
conf="$dir/ceph.conf"

# Runs a Ceph command line against this cluster, quietly, failing after 30 s.
ceph_cmd() { timeout 30 "$@" -c "$conf" >>"$dir/log/commands.log" 2>&1; }

show_logs() {
  local f
  for f in "$dir"/log/*; do
    [ -f "$f" ] || continue
    echo "--- $f" >&2
    tail -n 30 "$f" >&2
  done
}

# The cluster is thrown away: KILL (a TERMed memstore OSD first writes its objects to disk).
stop_all() {
  local d pid i
  for d in rgw osd mon; do
    [ -f "$dir/$d.pid" ] || continue
    pid=$(cat "$dir/$d.pid")
    kill -9 "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -f "$dir/$d.pid"
  done
}

# Starts radosgw on this cluster's configuration and waits (up to 120 s: 15-20 s on an idle
# machine for a first start, up to ~60 s on a busy one; ~2 s for a restart) until it answers S3.
start_rgw() {
  local port ready=''
  port=$(cat "$dir/rgw.port")
  radosgw -c "$conf" -n client.rgw.a -f >>"$dir/log/rgw.out" 2>&1 &
  echo $! >"$dir/rgw.pid"
  for _ in $(seq 1 1200); do
    if curl -sf -o /dev/null "http://127.0.0.1:$port/"; then ready=1; break; fi
    kill -0 "$(cat "$dir/rgw.pid")" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$ready" ] || { echo "radosgw.sh: radosgw did not answer on 127.0.0.1:$port within 120 s" >&2; return 1; }
}

# What failed, for the ERR traps (set -e alone exits without a word).
failed() { echo "radosgw.sh: '$BASH_COMMAND' failed (exit $1, line ${BASH_LINENO[0]})" >&2; }

case "$cmd" in
  start)
    trap 'failed $?' ERR
    for tool in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph-authtool ceph; do
      command -v "$tool" >/dev/null || { echo "radosgw.sh: $tool not found (apt-get install ceph-mon ceph-osd radosgw)" >&2; exit 1; }
    done
    mkdir -p "$dir"/{mon,osd,run,log,rgw}
    mon_port=$(free_port)
    rgw_port=$(free_port)
    fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
    access=$(python3 -c 'import secrets; print("NC" + secrets.token_hex(9).upper())')
    secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(30))')
    cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
ms bind msgr2 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
keyring = $dir/keyring
mon data avail warn = 1
mon data avail crit = 0
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd objectstore = memstore
memstore device bytes = 1073741824
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd crush update on start = false
osd class update on start = false
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw dns name = localhost
rgw data = $dir/rgw
CONF
    trap 'failed $?; show_logs; stop_all' ERR
    # Monitor.
    ceph_cmd ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *'
    timeout 30 monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$mon_port]" "$dir/monmap" >>"$dir/log/commands.log" 2>&1
    ceph_cmd ceph-mon --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
    ceph-mon -c "$conf" -i a -f >"$dir/log/mon.out" 2>&1 &
    echo $! >"$dir/mon.pid"
    # OSD (memstore), placed in the CRUSH map by hand.
    osd_uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
    osd_id=$(timeout 30 ceph -c "$conf" osd new "$osd_uuid" 2>>"$dir/log/commands.log")
    mkdir -p "$dir/osd/ceph-$osd_id"
    ceph_cmd ceph-osd -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" --no-mon-config
    ceph_cmd ceph osd crush add "osd.$osd_id" 1.0 root=default
    ceph-osd -c "$conf" -i "$osd_id" -f >"$dir/log/osd.out" 2>&1 &
    echo $! >"$dir/osd.pid"
    # radosgw: creates its pools once the OSD is up, then answers S3 (anonymous GET / -> 200).
    echo "$rgw_port" >"$dir/rgw.port"
    start_rgw
    ceph_cmd radosgw-admin user create --uid=noclobber --display-name=noclobber \
      --access-key="$access" --secret-key="$secret"
    status=$(curl -s -o "$dir/log/bucket.out" -w '%{http_code}' -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" \
      --user "$access:$secret" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "http://127.0.0.1:$rgw_port/noclobber")
    [ "$status" = 200 ] || { echo "radosgw.sh: creating the bucket answered $status" >&2; false; }
    trap - ERR
    echo "export NOCLOBBER_RGW_ENDPOINT=http://127.0.0.1:$rgw_port"
    echo "export NOCLOBBER_RGW_BUCKET=noclobber"
    echo "export NOCLOBBER_RGW_ACCESS_KEY=$access"
    echo "export NOCLOBBER_RGW_SECRET_KEY=$secret"
    ;;
  stop)
    stop_all
    ;;
  restart)
    pid=$(cat "$dir/rgw.pid")
    kill -9 "$pid" 2>/dev/null || true  # gone already after a kill fault; its port must be free
    for _ in $(seq 1 200); do
      if [ ! -e "/proc/$pid" ] || grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then break; fi
      sleep 0.05
    done
    start_rgw || { tail -n 30 "$dir/log/rgw.out" >&2; exit 1; }
    ;;
  rgw-pid) cat "$dir/rgw.pid" ;;
  *) echo "radosgw.sh: unknown command '$cmd' (start|stop|restart|rgw-pid)" >&2; exit 2 ;;
esac
