#!/usr/bin/env bash
# Removes what fault tests left behind, and checks that nothing is left.
#
#   scripts/clusters/sweep.sh           remove every cluster whose owner process is gone (a test
#                                       killed before it could stop its cluster), and namespaces,
#                                       links and nftables rules named ncf… without a cluster
#   scripts/clusters/sweep.sh --all     remove every cluster, owner alive or not
#   scripts/clusters/sweep.sh --check   remove nothing; list what is left (state folders,
#                                       processes, namespaces, links, the nemesis's nftables
#                                       table in the host namespace) and exit 1 if anything is
#
# What belongs to a cluster: see scripts/clusters/common.sh (state folders /dev/shm/ncf-* and
# /tmp/ncf-*, processes with NCF_STATE in their environment, namespaces/links named ncf<tag>…).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

mode=${1:-sweep}
case "$mode" in sweep | --all | --check) ;; *) echo "usage: sweep.sh [--all|--check]" >&2; exit 2 ;; esac

states() { ls -d /dev/shm/ncf-* /tmp/ncf-* 2>/dev/null | grep -E '/ncf-[0-9a-f]+$' || true; }
namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep '^ncf' || true; }
links() { ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^ncf' || true; }
state_processes() {
  local pid p
  for pid in $(ncf_cluster_pids); do
    p=/proc/$pid
    grep -q '^State:.*Z' "$p/status" 2>/dev/null || echo "$pid $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null | cut -c1-80)"
  done
}

if [ "$mode" = --check ]; then
  left=0
  for s in $(states); do echo "left: state folder $s (owner $(cat "$s/owner" 2>/dev/null))"; left=1; done
  while read -r line; do [ -n "$line" ] && { echo "left: process $line"; left=1; }; done < <(state_processes)
  for ns in $(namespaces); do echo "left: network namespace $ns"; left=1; done
  for l in $(links); do echo "left: link $l"; left=1; done
  # The nemesis adds its nftables table only inside a member's namespace, never here.
  if nft list tables 2>/dev/null | grep -q noclobber_nemesis; then echo "left: nftables table noclobber_nemesis in the host namespace"; left=1; fi
  [ "$left" = 0 ] && echo "sweep.sh --check: nothing left (no cluster, process, namespace, link or nft table)"
  exit "$left"
fi

removed=0
for s in $(states); do
  owner=$(cat "$s/owner" 2>/dev/null || echo 0)
  if [ "$mode" = --all ] || ! kill -0 "$owner" 2>/dev/null; then
    echo "sweep: removing $s (owner $owner gone)"
    ncf_state_remove "$s"
    removed=$((removed + 1))
  fi
done
# Namespaces and links whose cluster folder is gone.
live_tags=" $(for s in $(states); do cat "$s/tag" 2>/dev/null; done | tr '\n' ' ') "
for name in $(namespaces) $(links); do
  tag=$(echo "$name" | sed -E 's/^ncf([0-9a-f]{4}).*/\1/')
  if [[ "$live_tags" != *" $tag "* ]]; then
    echo "sweep: removing $name (no cluster)"
    ip netns pids "$name" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ncf_netns_down_tag "$tag"
    removed=$((removed + 1))
  fi
done
# Processes of a cluster whose folder is gone.
while read -r pid _; do
  [ -n "$pid" ] || continue
  st=$(ncf_state_of "$pid")
  if [ -n "$st" ] && [ ! -d "$st" ]; then
    echo "sweep: killing $pid (cluster $st gone)"
    kill -CONT "$pid" 2>/dev/null
    kill -KILL "$pid" 2>/dev/null || true
    removed=$((removed + 1))
  fi
done < <(state_processes)
echo "sweep.sh: removed $removed leftover(s)"
