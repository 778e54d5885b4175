#!/usr/bin/env bash
# The bounded fault stage (issue 19): the ctest label `fault` — real clusters (etcd 3 members,
# PostgreSQL one node and primary + replica, single-node Ceph with radosgw) under kill / pause /
# partition / terminated connections / failover, and the nemesis's network actions in namespaces
# the tests create. Every test starts and stops its own cluster (scripts/clusters/*.sh) on loopback
# or in its own network namespaces; each is limited to 60 s by ctest (radosgw's, whose start alone
# takes 15-60 s: 240 s), the whole stage to 6 minutes. Afterwards nothing
# may be left: no cluster folder, server process, namespace, link or nftables table
# (scripts/clusters/sweep.sh --check), else the stage fails.
#
#   scripts/test_faults.sh BUILD_DIR [extra ctest args...]
#
# Needs root (namespaces, nft), ip, nft, etcd, PostgreSQL, Ceph (ceph-mon, ceph-osd, radosgw):
# scripts/apt-packages.txt. The long, repeated runs behind docs/faults.md are
# scripts/fault_matrix.sh.
set -uo pipefail
build=${1:?usage: scripts/test_faults.sh BUILD_DIR [ctest args...]}
shift
build=$(cd "$build" && pwd)
here=$(cd "$(dirname "$0")" && pwd)

[ "$(id -u)" = 0 ] || { echo "test_faults.sh: needs root (network namespaces, nft)" >&2; exit 1; }
for tool in ip nft etcd jq curl; do
  command -v "$tool" >/dev/null || { echo "test_faults.sh: '$tool' missing (scripts/apt-packages.txt)" >&2; exit 1; }
done

bash "$here/clusters/sweep.sh" # what an earlier, killed run left
cleanup() {
  bash "$here/clusters/sweep.sh" # a test process that died left its cluster: its owner is gone now
}
trap cleanup EXIT

status=0
timeout --kill-after=10 360 ctest --test-dir "$build" -L fault --no-tests=error --output-on-failure --timeout 60 "$@" ||
  status=$?
[ "$status" = 124 ] && echo "test_faults.sh: the stage ran past 6 minutes" >&2
cleanup
trap - EXIT
if ! bash "$here/clusters/sweep.sh" --check; then
  echo "test_faults.sh: fault tests left something behind (listed above)" >&2
  status=1
fi
exit "$status"
