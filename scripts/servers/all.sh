# shellcheck shell=bash
# Starts every server the server tests and benchmarks use, and stops them all on exit. Sourced
# (never run) by scripts/test_servers.sh and scripts/bench_servers.sh:
#
#   . scripts/servers/all.sh
#   start_all_servers NAME   # PostgreSQL, Redis, etcd, Apache, radosgw (Ceph) and s3rver on free
#                            # loopback ports, state in a fresh /tmp/NAME.XXXXXX; exports
#                            # NOCLOBBER_PG_CONNINFO, NOCLOBBER_REDIS_ADDR, NOCLOBBER_REDIS_AUTH_*
#                            # (a Redis that requires AUTH),
#                            # NOCLOBBER_PG_AUTH_* (a role that must give its password), NOCLOBBER_ETCD_URL,
#                            # NOCLOBBER_ETCD_AUTH_* (an etcd with v3 auth enabled),
#                            # NOCLOBBER_PG_TLS_* and NOCLOBBER_ETCD_TLS_* (a PostgreSQL and an
#                            # etcd that require TLS; etcd a client certificate too),
#                            # NOCLOBBER_DAV_URL, NOCLOBBER_RGW_* and NOCLOBBER_S3RVER_*
#
# radosgw needs ~15-20 s before it answers (up to ~60 s on a busy machine): it starts first, in the
# background, while the others start one after the other; the times are printed.
# start_all_servers sets an EXIT trap that stops every server and removes the state: on success,
# on failure (set -e, a server that does not start), and on Ctrl-C or TERM (which exit 130).
nc_servers_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
nc_servers=(postgres postgres_tls redis redis_auth etcd etcd_auth etcd_tls apache s3rver)
nc_servers_background=(radosgw)
nc_servers_jobs=()  # the background starts still running
nc_servers_state=

stop_all_servers() {
  [ -n "$nc_servers_state" ] || return 0
  local s j
  for j in "${nc_servers_jobs[@]}"; do wait "$j" 2>/dev/null || true; done  # let them finish first
  nc_servers_jobs=()
  for s in "${nc_servers[@]}" "${nc_servers_background[@]}"; do
    "$nc_servers_dir/$s.sh" stop "$nc_servers_state" || true
  done
  rm -rf "$nc_servers_state"
  nc_servers_state=
}

start_all_servers() {
  local s env
  nc_servers_state=$(mktemp -d "/tmp/${1:?usage: start_all_servers NAME}.XXXXXX")
  chmod 0755 "$nc_servers_state"
  trap stop_all_servers EXIT
  trap 'exit 130' INT TERM
  local started=$SECONDS timings=""
  for s in "${nc_servers_background[@]}"; do
    { # its start-up time (whole seconds) goes to STATE/NAME.seconds
      "$nc_servers_dir/$s.sh" start "$nc_servers_state" >"$nc_servers_state/$s.env" || exit
      echo $((SECONDS - started)) >"$nc_servers_state/$s.seconds"
    } &
    nc_servers_jobs+=($!)
  done
  for s in "${nc_servers[@]}"; do
    env=$("$nc_servers_dir/$s.sh" start "$nc_servers_state")  # fails the caller (set -e) if it fails
    eval "$env"
  done
  timings="the others in $((SECONDS - started)) s"
  local i rc
  for i in "${!nc_servers_background[@]}"; do
    s=${nc_servers_background[$i]}
    rc=0
    wait "${nc_servers_jobs[$i]}" || rc=$?
    if [ "$rc" != 0 ]; then
      # Once in a CI run its start ended at exit status != 0 with no message (what says why is
      # printed now); a server that does not start is not what the tests test: one more try, in
      # a fresh folder.
      echo "servers: $s did not start (exit $rc$([ "$rc" -gt 128 ] && echo ", signal $((rc - 128))")); trying once more" >&2
      "$nc_servers_dir/$s.sh" stop "$nc_servers_state" || true
      rm -rf "${nc_servers_state:?}/$s"
      "$nc_servers_dir/$s.sh" start "$nc_servers_state" >"$nc_servers_state/$s.env" ||
        { echo "servers: $s did not start" >&2; return 1; }
      echo $((SECONDS - started)) >"$nc_servers_state/$s.seconds"
    fi
    eval "$(cat "$nc_servers_state/$s.env")"
    timings="$s in $(cat "$nc_servers_state/$s.seconds") s, $timings"
  done
  nc_servers_jobs=()
  export NOCLOBBER_PG_CONNINFO NOCLOBBER_REDIS_ADDR NOCLOBBER_ETCD_URL NOCLOBBER_DAV_URL
  export NOCLOBBER_REDIS_AUTH_ADDR NOCLOBBER_REDIS_AUTH_USER NOCLOBBER_REDIS_AUTH_PASSWORD
  export NOCLOBBER_REDIS_AUTH_ADMIN_PASSWORD NOCLOBBER_PG_AUTH_CONNINFO NOCLOBBER_PG_AUTH_PASSWORD
  export NOCLOBBER_ETCD_AUTH_URL NOCLOBBER_ETCD_AUTH_USER NOCLOBBER_ETCD_AUTH_PASSWORD NOCLOBBER_ETCD_AUTH_ROOT_PASSWORD
  export NOCLOBBER_PG_TLS_CONNINFO NOCLOBBER_PG_TLS_PASSWORD NOCLOBBER_PG_TLS_WRONG_CA
  export NOCLOBBER_ETCD_TLS_URL NOCLOBBER_ETCD_TLS_CA NOCLOBBER_ETCD_TLS_CERT NOCLOBBER_ETCD_TLS_KEY
  export NOCLOBBER_ETCD_TLS_WRONG_CA NOCLOBBER_ETCD_TLS_WRONG_CERT NOCLOBBER_ETCD_TLS_WRONG_KEY
  export NOCLOBBER_RGW_ENDPOINT NOCLOBBER_RGW_BUCKET NOCLOBBER_RGW_ACCESS_KEY NOCLOBBER_RGW_SECRET_KEY
  export NOCLOBBER_S3RVER_ENDPOINT NOCLOBBER_S3RVER_BUCKET NOCLOBBER_S3RVER_ACCESS_KEY NOCLOBBER_S3RVER_SECRET_KEY
  echo "servers: pg [$NOCLOBBER_PG_CONNINFO] redis $NOCLOBBER_REDIS_ADDR redis+auth $NOCLOBBER_REDIS_AUTH_ADDR etcd $NOCLOBBER_ETCD_URL etcd+tls $NOCLOBBER_ETCD_TLS_URL" \
       "dav $NOCLOBBER_DAV_URL radosgw $NOCLOBBER_RGW_ENDPOINT s3rver $NOCLOBBER_S3RVER_ENDPOINT" >&2
  echo "servers: started ($timings; all answering after $((SECONDS - started)) s)" >&2
}
