#!/usr/bin/env bash
# Start / stop a throwaway s3rver (npm's fake S3 server, Node.js) on a free loopback port, for
# noclobber's S3 adapter tests: objects in a folder under STATE_DIR, one bucket.
#
#   scripts/servers/s3rver.sh start STATE_DIR   # prints the exports below
#   scripts/servers/s3rver.sh stop  STATE_DIR
#
#   NOCLOBBER_S3RVER_ENDPOINT=http://127.0.0.1:PORT   NOCLOBBER_S3RVER_BUCKET=noclobber
#   NOCLOBBER_S3RVER_ACCESS_KEY=S3RVER                 NOCLOBBER_S3RVER_SECRET_KEY=S3RVER
# Virtual-host addressing works as http://BUCKET.s3.localhost:PORT (--service-endpoint localhost).
#
# s3rver itself is installed with npm (pinned version) the first time, into
# $NOCLOBBER_TOOLS_DIR/s3rver-VERSION (default: build-tools/ in the repository, git-ignored), and
# reused afterwards. Needs node and npm (on the machine; Debian's nodejs/npm packages work too).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/common.sh"

version=3.7.1
cmd=${1:?usage: s3rver.sh start|stop STATE_DIR}
state=${2:?usage: s3rver.sh start|stop STATE_DIR}
dir="$state/s3rver"
tools=${NOCLOBBER_TOOLS_DIR:-$root/build-tools}
prefix="$tools/s3rver-$version"
bin="$prefix/node_modules/s3rver/bin/s3rver.js"

install_s3rver() {
  [ -f "$bin" ] && return 0
  command -v npm >/dev/null || { echo "s3rver.sh: npm not found (apt-get install npm)" >&2; return 1; }
  mkdir -p "$prefix"
  (
    flock 9  # two runs at once install once
    if [ ! -f "$bin" ]; then
      npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error "s3rver@$version" >&2
    fi
  ) 9>"$tools/.s3rver-install.lock"
  [ -f "$bin" ] || { echo "s3rver.sh: npm install s3rver@$version left no $bin" >&2; return 1; }
}

case "$cmd" in
  start)
    install_s3rver
    mkdir -p "$dir/data"
    port=$(free_port)
    node "$bin" -d "$dir/data" -a 127.0.0.1 -p "$port" --silent --service-endpoint localhost \
      --configure-bucket noclobber >"$dir/s3rver.log" 2>&1 &
    echo $! >"$dir/pid"
    wait_for curl -sf -o /dev/null "http://127.0.0.1:$port/noclobber" ||
      { cat "$dir/s3rver.log" >&2; stop_pid "$dir/pid"; exit 1; }
    echo "export NOCLOBBER_S3RVER_ENDPOINT=http://127.0.0.1:$port"
    echo "export NOCLOBBER_S3RVER_BUCKET=noclobber"
    echo "export NOCLOBBER_S3RVER_ACCESS_KEY=S3RVER"
    echo "export NOCLOBBER_S3RVER_SECRET_KEY=S3RVER"
    ;;
  stop)
    stop_pid "$dir/pid"
    ;;
  *) echo "s3rver.sh: unknown command '$cmd' (start|stop)" >&2; exit 2 ;;
esac
