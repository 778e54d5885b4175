# Shared helpers for scripts/servers/*.sh (sourced, never run).
# reserve_port PORT: claim PORT for this script; fails when another script claimed it in the last
# 10 minutes. Scripts run side by side (CI's server and fault stages), and a port picked as free is
# free only until its server binds it: a claim is a folder $NOCLOBBER_PORT_DIR/PORT (default
# /tmp/noclobber-ports; mkdir is atomic). An older claim is stale: cleared for later picks, never
# taken over in this one.
reserve_port() {
  local dir=${NOCLOBBER_PORT_DIR:-/tmp/noclobber-ports}
  mkdir -p "$dir"
  mkdir "$dir/$1" 2>/dev/null && return 0
  find "$dir/$1" -maxdepth 0 -mmin +10 -exec rmdir {} \; 2>/dev/null
  return 1
}
# free_port: print a TCP port on 127.0.0.1 that nothing is bound to right now, claimed with
# reserve_port, chosen at random below the kernel's ephemeral range: a port from that range (what
# bind to port 0 gives) can be taken as the source port of any outgoing connection before the
# server binds it, such as one etcd member dialing another while the next member starts.
# NOCLOBBER_PORT_RANGE=LOW-HIGH picks from another range.
free_port() {
  local candidates port
  candidates=$(python3 - <<'PY'
import os, random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
low, high = 10000, max(lo, 10001) - 1
if os.environ.get("NOCLOBBER_PORT_RANGE"):
    low, high = (int(x) for x in os.environ["NOCLOBBER_PORT_RANGE"].split("-"))
print(f"{low}-{high}")
ports = list(range(low, high + 1))
random.shuffle(ports)
for port in ports[:1000]:  # those free to bind now
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        print(port)
    except OSError:
        pass
    finally:
        s.close()
PY
  ) || return 1
  for port in $(tail -n +2 <<<"$candidates"); do
    reserve_port "$port" && { echo "$port"; return 0; }
  done
  echo "free_port: no free, unreserved port in $(head -n 1 <<<"$candidates") (claims: ${NOCLOBBER_PORT_DIR:-/tmp/noclobber-ports})" >&2
  return 1
}
# wait_for CMD...: retry CMD for up to ~15 s.
wait_for() {
  local i
  for i in $(seq 1 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}
# stop_pid PIDFILE: TERM the process, wait up to 10 s, then KILL.
stop_pid() {
  local pidfile=$1 pid i
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}
# make_ca DIR: a throwaway certificate authority, DIR/ca.crt and DIR/ca.key (EC P-256, 2 days).
make_ca() {
  local dir=${1:?usage: make_ca DIR}
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=noclobber test CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" >/dev/null 2>&1
  chmod 0600 "$dir/ca.key"
}
# make_cert DIR NAME CN [SAN...]: DIR/NAME.crt and DIR/NAME.key (mode 0600) signed by DIR/ca.*
# (make_ca), good for TLS servers and clients; each SAN as openssl writes it (IP:127.0.0.1,
# DNS:localhost).
make_cert() {
  local dir=${1:?usage: make_cert DIR NAME CN [SAN...]} name=${2:?NAME} cn=${3:?CN} san=""
  shift 3
  local s
  for s in "$@"; do san="${san:+$san,}$s"; done
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$cn" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" >/dev/null 2>&1
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/$name.ext" -out "$dir/$name.crt" >/dev/null 2>&1
  chmod 0600 "$dir/$name.key"
  rm -f "$dir/$name.csr" "$dir/$name.ext"
}

# postgres_bin SCRIPT: the newest installed PostgreSQL server's bin directory (SCRIPT names the
# caller in the error when there is none).
postgres_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -x "$bin/pg_ctl" ] || { echo "$1: no PostgreSQL server found (apt-get install postgresql)" >&2; return 1; }
  echo "$bin"
}

# as_postgres CMD...: runs CMD as the postgres user when root (PostgreSQL refuses to run as root).
as_postgres() {
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# etcd_data_dir DIR: a fresh etcd data directory, on /dev/shm (tmpfs: etcd's fsync per write is
# then nearly free) unless NOCLOBBER_ETCD_DISK=1 (DIR/data, on disk); recorded in DIR/datadir for
# etcd_remove_data, and printed.
etcd_data_dir() {
  local data
  if [ "${NOCLOBBER_ETCD_DISK:-0}" != 1 ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    data=$(mktemp -d /dev/shm/noclobber-etcd.XXXXXX)
  else
    data="$1/data"
  fi
  echo "$data" >"$1/datadir"
  echo "$data"
}

# etcd_remove_data DIR: removes the tmpfs data directory etcd_data_dir made for DIR.
etcd_remove_data() {
  local data
  [ -f "$1/datadir" ] || return 0
  data=$(cat "$1/datadir")
  case "$data" in /dev/shm/noclobber-etcd.*) rm -rf "$data" ;; esac
  rm -f "$1/datadir"
}
