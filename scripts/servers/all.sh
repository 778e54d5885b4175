# shellcheck shell=bash
# Starts every server the server tests and benchmarks use, and stops them all on exit. Sourced
# (never run) by scripts/test_servers.sh and scripts/bench_servers.sh:
#
#   . scripts/servers/all.sh
#   start_all_servers NAME   # PostgreSQL, Redis, etcd, Apache on free loopback ports, state in a
#                            # fresh /tmp/NAME.XXXXXX; exports NOCLOBBER_PG_CONNINFO,
#                            # NOCLOBBER_REDIS_ADDR, NOCLOBBER_ETCD_URL, NOCLOBBER_DAV_URL
#
# start_all_servers sets an EXIT trap that stops every server and removes the state: on success,
# on failure (set -e, a server that does not start), and on Ctrl-C or TERM (which exit 130).
nc_servers_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
nc_servers=(postgres redis etcd apache)
nc_servers_state=

stop_all_servers() {
  [ -n "$nc_servers_state" ] || return 0
  local s
  for s in "${nc_servers[@]}"; do "$nc_servers_dir/$s.sh" stop "$nc_servers_state" || true; done
  rm -rf "$nc_servers_state"
  nc_servers_state=
}

start_all_servers() {
  local s env
  nc_servers_state=$(mktemp -d "/tmp/${1:?usage: start_all_servers NAME}.XXXXXX")
  chmod 0755 "$nc_servers_state"
  trap stop_all_servers EXIT
  trap 'exit 130' INT TERM
  for s in "${nc_servers[@]}"; do
    env=$("$nc_servers_dir/$s.sh" start "$nc_servers_state")  # fails the caller (set -e) if it fails
    eval "$env"
  done
  export NOCLOBBER_PG_CONNINFO NOCLOBBER_REDIS_ADDR NOCLOBBER_ETCD_URL NOCLOBBER_DAV_URL
  echo "servers: pg [$NOCLOBBER_PG_CONNINFO] redis $NOCLOBBER_REDIS_ADDR etcd $NOCLOBBER_ETCD_URL" \
       "dav $NOCLOBBER_DAV_URL" >&2
}
