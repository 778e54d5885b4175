#!/usr/bin/env bash
# Start / stop a throwaway etcd 3.4 with v3 auth enabled, on free loopback ports, for noclobber's
# etcd auth server tests (tests/servers/test_server_etcd_auth.cpp). Users: root (to enable auth)
# and `app` with read-write on every key; random passwords made at start; auth tokens live 2 s
# (--auth-token-ttl), so the tests see a token expire.
#
#   scripts/servers/etcd_auth.sh start STATE_DIR   # prints the exports below
#   scripts/servers/etcd_auth.sh stop  STATE_DIR
#
#   NOCLOBBER_ETCD_AUTH_URL=http://127.0.0.1:PORT  NOCLOBBER_ETCD_AUTH_USER=app
#   NOCLOBBER_ETCD_AUTH_PASSWORD=...               NOCLOBBER_ETCD_AUTH_ROOT_PASSWORD=...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

cmd=${1:?usage: etcd_auth.sh start|stop STATE_DIR}
state=${2:?usage: etcd_auth.sh start|stop STATE_DIR}
mkdir -p "$state/etcd_auth"

case "$cmd" in
  start)
    env=$(NOCLOBBER_ETCD_ARGS="--auth-token-ttl 2" "$here/etcd.sh" start "$state/etcd_auth")
    url=$(eval "$env"; echo "$NOCLOBBER_ETCD_URL")
    root=$(openssl rand -hex 16)
    app=$(openssl rand -hex 16)
    ctl() { ETCDCTL_API=3 etcdctl --endpoints="$url" "$@" >/dev/null; }
    ctl user add "root:$root"
    ctl user add "app:$app"
    ctl role add noclobber_rw
    ctl role grant-permission noclobber_rw --prefix=true readwrite ''
    ctl user grant-role app noclobber_rw
    # etcdctl logs a retry while it gives root its role: kept out of the test log unless it fails.
    ctl auth enable 2>"$state/etcd_auth/auth-enable.log" || { cat "$state/etcd_auth/auth-enable.log" >&2; exit 1; }
    echo "export NOCLOBBER_ETCD_AUTH_URL=$url NOCLOBBER_ETCD_AUTH_USER=app" \
         "NOCLOBBER_ETCD_AUTH_PASSWORD=$app NOCLOBBER_ETCD_AUTH_ROOT_PASSWORD=$root"
    ;;
  stop) "$here/etcd.sh" stop "$state/etcd_auth" ;;
  *) echo "etcd_auth.sh: unknown command '$cmd' (start|stop)" >&2; exit 2 ;;
esac
