#!/usr/bin/env bash
# Installs the Debian packages noclobber's scripts need, but only those that are missing.
#
#   bash scripts/check_deps.sh              every package in scripts/apt-packages.txt
#   bash scripts/check_deps.sh PKG...       just these (scripts/demo.sh passes its subset)
#
# As root it runs `apt-get update` (only when something is missing) and `apt-get install`.
# Without root, or without apt/dpkg (not Debian/Ubuntu), it names what is missing and exits 1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ "$#" -gt 0 ]; then
  wanted=("$@")
else
  mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$here/apt-packages.txt" | grep -v '^$')
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "check_deps.sh: no dpkg-query (not Debian/Ubuntu?); make sure these are installed: ${wanted[*]}" >&2
  exit 0
fi

missing=()
for pkg in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "check_deps.sh: all ${#wanted[@]} Debian packages present"
  exit 0
fi

echo "check_deps.sh: missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "check_deps.sh: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
