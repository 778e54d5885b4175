#!/usr/bin/env bash
# Start / stop a throwaway single-member etcd 3.4 that REQUIRES TLS with a client certificate, on
# free loopback ports, for noclobber's TLS server tests (tests/servers/test_server_etcd_tls.cpp)
# and examples/adapters/etcd_tls.cpp. A fresh CA (scripts/servers/common.sh make_ca) signs the
# server's certificate (SAN IP:127.0.0.1, DNS:localhost) and a client certificate; etcd serves
# https only (--cert-file, --key-file) and refuses a client without a certificate that CA signed
# (--client-cert-auth, --trusted-ca-file). A second CA, which etcd does not trust, signs another
# client certificate (the "wrong" files, for the refusal tests).
#
#   scripts/servers/etcd_tls.sh start STATE_DIR   # prints the exports below
#   scripts/servers/etcd_tls.sh stop  STATE_DIR
#
#   NOCLOBBER_ETCD_TLS_URL=https://127.0.0.1:PORT
#   NOCLOBBER_ETCD_TLS_CA, _CERT, _KEY              the CA file, the client certificate and its key
#   NOCLOBBER_ETCD_TLS_WRONG_CA, _WRONG_CERT, _WRONG_KEY   the same from a CA etcd does not trust
#
# The data directory goes on /dev/shm, as scripts/servers/etcd.sh (NOCLOBBER_ETCD_DISK=1: on disk).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

cmd=${1:?usage: etcd_tls.sh start|stop STATE_DIR}
state=${2:?usage: etcd_tls.sh start|stop STATE_DIR}
dir="$state/etcd_tls"
tls="$dir/tls"

case "$cmd" in
  start)
    mkdir -p "$dir"
    make_ca "$tls"
    make_cert "$tls" server localhost IP:127.0.0.1 DNS:localhost
    make_cert "$tls" client noclobber-client
    make_ca "$tls/wrong"
    make_cert "$tls/wrong" client noclobber-client
    data=$(etcd_data_dir "$dir")
    port=$(free_port)
    peer=$(free_port)
    while [ "$peer" = "$port" ]; do peer=$(free_port); done
    etcd --data-dir "$data" --name noclobber \
      --listen-client-urls "https://127.0.0.1:$port" --advertise-client-urls "https://127.0.0.1:$port" \
      --cert-file "$tls/server.crt" --key-file "$tls/server.key" \
      --client-cert-auth --trusted-ca-file "$tls/ca.crt" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "noclobber=http://127.0.0.1:$peer" >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    wait_for sh -c "curl -sf --cacert '$tls/ca.crt' --cert '$tls/client.crt' --key '$tls/client.key' \
      https://127.0.0.1:$port/health | grep -q '\"health\":\"true\"'" ||
      { tail -n 30 "$dir/server.log" >&2; exit 1; }
    echo "export NOCLOBBER_ETCD_TLS_URL=https://127.0.0.1:$port NOCLOBBER_ETCD_TLS_CA=$tls/ca.crt" \
         "NOCLOBBER_ETCD_TLS_CERT=$tls/client.crt NOCLOBBER_ETCD_TLS_KEY=$tls/client.key" \
         "NOCLOBBER_ETCD_TLS_WRONG_CA=$tls/wrong/ca.crt NOCLOBBER_ETCD_TLS_WRONG_CERT=$tls/wrong/client.crt" \
         "NOCLOBBER_ETCD_TLS_WRONG_KEY=$tls/wrong/client.key"
    ;;
  stop)
    stop_pid "$dir/pid"
    etcd_remove_data "$dir"
    ;;
  *) echo "etcd_tls.sh: unknown command '$cmd' (start|stop)" >&2; exit 2 ;;
esac
