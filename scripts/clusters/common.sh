# shellcheck shell=bash
# Shared helpers for scripts/clusters/*.sh (sourced, never run): the state folder of one cluster,
# the processes started in it, and the network namespaces of clusters that need them.
#
# Every cluster lives in one state folder, /dev/shm/ncf-<tag> (or /tmp when /dev/shm is not
# writable), named in the NOCLOBBER_CLUSTER_STATE line `start` prints. The folder records the pid
# of the process that started it (`owner`): scripts/clusters/sweep.sh removes the clusters whose
# owner is gone (a test killed before it could stop them). Every server process is started with
# NCF_STATE=<folder> in its environment, and runs with its working directory inside the folder
# (a server that rewrites its process title, like Redis or PostgreSQL, may overwrite
# /proc/PID/environ: its working directory still names the cluster); namespaces, veth links and
# the bridge are named ncf<tag>…, so nothing a crashed run left behind escapes the sweep.
nc_clusters_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$nc_clusters_dir/../servers/common.sh"

# ncf_state_new [BASE]: create a fresh state folder, print its path. The owner is the process that
# ran the script (NCF_OWNER overrides it). BASE /tmp puts it on disk (a cluster whose fsyncs
# should cost what they cost on a disk); else /dev/shm when writable.
ncf_state_new() {
  local base=/dev/shm dir tag
  case "${1:-}" in
    /tmp) base=/tmp ;;
    '') ;;
    *) echo "ncf_state_new: BASE is /tmp or nothing, not '$1' (sweep.sh looks nowhere else)" >&2; return 1 ;;
  esac
  [ -d "$base" ] && [ -w "$base" ] || base=/tmp
  for _ in $(seq 1 50); do
    tag=$(od -An -N2 -tx2 /dev/urandom | tr -d ' \n')
    dir="$base/ncf-$tag"
    if mkdir "$dir" 2>/dev/null; then
      chmod 0755 "$dir"
      echo "${NCF_OWNER:-$PPID}" >"$dir/owner"
      echo "$tag" >"$dir/tag"
      echo "$dir"
      return 0
    fi
  done
  echo "ncf_state_new: cannot create a state folder under $base" >&2
  return 1
}

ncf_tag() { cat "${1:?state}/tag"; }

# ncf_remove_unless_started STATE: for `trap ... EXIT` in a start command: removes the half-made
# cluster unless ncf_started is 1 (set it when start succeeded).
ncf_started=0
ncf_remove_unless_started() {
  if [ "$ncf_started" != 1 ]; then ncf_state_remove "$1"; fi
}

# ncf_spawn STATE LOG CMD...: start CMD in the background with NCF_STATE set, print its pid.
ncf_spawn() {
  local state=$1 log=$2
  shift 2
  NCF_STATE=$state setsid "$@" >"$log" 2>&1 </dev/null &
  echo $!
}

# ncf_state_of PID: the state folder a process belongs to (its NCF_STATE, else the ncf-* folder
# its working directory is in, deleted or not); nothing when it belongs to none.
ncf_state_of() {
  local p=/proc/$1 st cwd
  st=$(tr '\0' '\n' 2>/dev/null <"$p/environ" | sed -n 's/^NCF_STATE=//p' | head -n 1)
  if [ -z "$st" ]; then
    cwd=$(readlink "$p/cwd" 2>/dev/null) || return 0
    st=$(echo "$cwd" | grep -oE '^(/dev/shm|/tmp)/ncf-[0-9a-f]+' || true)
  fi
  [ -n "$st" ] && echo "$st"
  return 0
}

# ncf_cluster_pids [STATE]: the processes of STATE (of any cluster without it): NCF_STATE in
# their environment, or their working directory inside the folder. One grep and one find for
# all of /proc (a loop over every process is slow on a loaded machine).
ncf_cluster_pids() {
  local env_pat find_args=() d
  if [ -n "${1:-}" ]; then
    env_pat="NCF_STATE=$1"
    for d in "$1" "$1/*"; do find_args+=(-o -lname "$d" -o -lname "$d (deleted)"); done
  else
    env_pat='NCF_STATE=.*'
    find_args=(-o -lname '/dev/shm/ncf-*' -o -lname '/tmp/ncf-*') # find's * matches '/' too
  fi
  {
    grep -lzx -- "$env_pat" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3
    find /proc -mindepth 2 -maxdepth 2 -name cwd \( -false "${find_args[@]}" \) 2>/dev/null | cut -d/ -f3
  } | sort -un || true
}

# ncf_state_pids STATE: every process of this state folder.
ncf_state_pids() { ncf_cluster_pids "$1"; }

# ncf_kill_state STATE: SIGCONT (a paused server cannot die) and SIGKILL every process of the
# state folder and of its namespaces; wait until they are gone.
ncf_kill_state() {
  local state=$1 tag ns pids i
  tag=$(cat "$state/tag" 2>/dev/null || true)
  for i in 1 2 3; do
    pids=$(ncf_state_pids "$state")
    if [ -n "$tag" ]; then
      for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^ncf${tag}" || true); do
        pids="$pids $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
      done
    fi
    pids=$(echo "$pids" | tr ' ' '\n' | { grep -v '^$' || true; } | sort -u | tr '\n' ' ')
    [ -n "${pids// /}" ] || return 0
    kill -CONT $pids 2>/dev/null || true
    kill -KILL $pids 2>/dev/null || true
    for _ in $(seq 1 100); do
      local alive=0 p
      for p in $pids; do
        if [ -e "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then alive=1; fi
      done
      [ "$alive" = 0 ] && break
      sleep 0.05
    done
  done
}

# --- network namespaces ------------------------------------------------------------------------
# ncf_netns_up STATE COUNT: a bridge ncf<tag>br with 10.231.<n>.254/24 in this namespace and COUNT
# namespaces ncf<tag>m<i> (i = 1..COUNT), each with eth0 = 10.231.<n>.<i> on a veth to the bridge.
# Writes STATE/subnet ("10.231.<n>").
ncf_netns_up() {
  local state=$1 count=$2 tag n i used subnet
  tag=$(ncf_tag "$state")
  {
    flock 9
    used=$(ip -4 -o addr show 2>/dev/null | { grep -oE '10\.231\.[0-9]+\.' || true; } | cut -d. -f3 | sort -u)
    for n in $(seq 1 250); do
      echo "$used" | grep -qx "$n" || break
    done
    subnet="10.231.$n"
    echo "$subnet" >"$state/subnet"
    ip link add "ncf${tag}br" type bridge
    ip addr add "$subnet.254/24" dev "ncf${tag}br"
    ip link set "ncf${tag}br" up
  } 9>/tmp/ncf-netns.lock
  for i in $(seq 1 "$count"); do
    ip netns add "ncf${tag}m$i"
    ip link add "ncf${tag}v$i" type veth peer name eth0 netns "ncf${tag}m$i"
    ip link set "ncf${tag}v$i" master "ncf${tag}br" up
    ip -n "ncf${tag}m$i" addr add "$subnet.$i/24" dev eth0
    ip -n "ncf${tag}m$i" link set eth0 up
    ip -n "ncf${tag}m$i" link set lo up
  done
}
ncf_netns_name() { echo "ncf$(ncf_tag "$1")m$2"; }
ncf_member_ip() { echo "$(cat "$1/subnet").$2"; }
ncf_bridge_ip() { echo "$(cat "$1/subnet").254"; }

# ncf_netns_down_tag TAG: delete the namespaces, veths and bridge named ncf<TAG>…
ncf_netns_down_tag() {
  local tag=$1 ns link
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^ncf${tag}" || true); do
    ip netns delete "$ns" 2>/dev/null || true
  done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^ncf${tag}" || true); do
    ip link delete "$link" 2>/dev/null || true
  done
}

# ncf_state_remove STATE: kill every process of the cluster, remove its namespaces and folder.
ncf_state_remove() {
  local state=$1 tag
  [ -d "$state" ] || return 0
  tag=$(cat "$state/tag" 2>/dev/null || true)
  ncf_kill_state "$state"
  [ -n "$tag" ] && ncf_netns_down_tag "$tag"
  case "$state" in
    /dev/shm/ncf-* | /tmp/ncf-*) rm -rf "$state" ;;
  esac
}

# ncf_in STATE I CMD...: run CMD in member I's namespace when the cluster has namespaces, else here.
ncf_in() {
  local state=$1 i=$2
  shift 2
  if [ -f "$state/subnet" ]; then
    ip netns exec "$(ncf_netns_name "$state" "$i")" "$@"
  else
    "$@"
  fi
}
