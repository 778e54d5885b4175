#!/usr/bin/env bash
# Start / stop a throwaway Apache httpd 2.4 with mod_dav on a free loopback port, for noclobber's
# HTTP ETag adapter tests. `FileETag Digest` makes ETags strong content hashes, so If-Match works
# right after a write (without it Apache hands out weak ETags for about a second).
#
#   scripts/servers/apache.sh start STATE_DIR   # prints `export NOCLOBBER_DAV_URL=http://127.0.0.1:PORT/dav/`
#   scripts/servers/apache.sh stop  STATE_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

cmd=${1:?usage: apache.sh start|stop STATE_DIR}
state=${2:?usage: apache.sh start|stop STATE_DIR}
dir="$state/apache"
mods=/usr/lib/apache2/modules

case "$cmd" in
  start)
    mkdir -p "$dir/www/dav" "$dir/lock" "$dir/run" "$dir/logs"
    chmod 0755 "$state" "$dir"
    port=$(free_port)
    user_lines=""
    if [ "$(id -u)" = 0 ]; then
      chown -R www-data:www-data "$dir/www/dav" "$dir/lock"
      user_lines=$'User www-data\nGroup www-data'
    fi
    cat >"$dir/httpd.conf" <<CONF
ServerRoot "$dir"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile "$dir/run/httpd.pid"
ErrorLog "$dir/logs/error.log"
LogLevel warn
$user_lines
LoadModule mpm_event_module $mods/mod_mpm_event.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule dav_module $mods/mod_dav.so
LoadModule dav_fs_module $mods/mod_dav_fs.so
StartServers 2
ServerLimit 4
ThreadsPerChild 32
MaxRequestWorkers 128
KeepAlive On
MaxKeepAliveRequests 0
DavLockDB "$dir/lock/DavLock"
DocumentRoot "$dir/www"
<Directory "$dir/www/dav">
  Dav On
  FileETag Digest
  Require all granted
</Directory>
CONF
    apache2 -f "$dir/httpd.conf" -DFOREGROUND >"$dir/logs/stdout.log" 2>&1 &
    echo $! >"$dir/pid"
    wait_for curl -sf -o /dev/null -X OPTIONS "http://127.0.0.1:$port/dav/" ||
      { cat "$dir/logs/stdout.log" "$dir/logs/error.log" >&2; exit 1; }
    echo "export NOCLOBBER_DAV_URL=http://127.0.0.1:$port/dav/"
    ;;
  stop)
    stop_pid "$dir/pid"
    ;;
  *) echo "apache.sh: unknown command '$cmd' (start|stop)" >&2; exit 2 ;;
esac
