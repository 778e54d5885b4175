#!/usr/bin/env bash
# Runs every benchmark executable (bench_* under BUILD_DIR/bench/, one per block) with JSON output
# into a results folder: RESULTS_DIR/<bench name>.json, plus the console table on stdout.
# Benchmarks against real servers (bench/servers/) need the servers: scripts/bench_servers.sh.
#
#   bash scripts/run_benchmarks.sh [BUILD_DIR] [RESULTS_DIR] [benchmark args...]
#
# BUILD_DIR defaults to build-bench (configured and built in Release when it does not exist);
# RESULTS_DIR to results/<UTC timestamp>. NOCLOBBER_BENCH_MIN_TIME (seconds, e.g. 0.01) sets
# --benchmark_min_time for a quick smoke run; for real figures leave it unset.
# NOCLOBBER_BENCH_TIMEOUT (seconds, default 600) bounds each program.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-bench}
results=${2:-$root/results/$(date -u +%Y%m%dT%H%M%SZ)}
shift $(($# > 2 ? 2 : $#))

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNOCLOBBER_BUILD_TESTS=OFF \
    -DNOCLOBBER_BUILD_EXAMPLES=OFF -DNOCLOBBER_BUILD_BENCHMARKS=ON
fi
type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
[ "$type" = "Release" ] || echo "run_benchmarks.sh: warning: $build is a '$type' build, not Release" >&2
cmake --build "$build" -j 2

# A program running past NOCLOBBER_BENCH_TIMEOUT seconds (default 600) fails the run: a
# complexity regression (the checker once went quadratic, 1M records for an hour) must not
# quietly eat CI's time limit.
limit=${NOCLOBBER_BENCH_TIMEOUT:-600}
extra=()
[ -n "${NOCLOBBER_BENCH_MIN_TIME:-}" ] && extra+=("--benchmark_min_time=$NOCLOBBER_BENCH_MIN_TIME")

mkdir -p "$results"
ran=0
while IFS= read -r bin; do
  name=$(basename "$bin")
  echo "=== $name"
  status=0
  timeout "$limit" "$bin" --benchmark_out="$results/$name.json" --benchmark_out_format=json "${extra[@]}" "$@" || status=$?
  if [ "$status" -eq 124 ]; then
    echo "run_benchmarks.sh: $name ran past ${limit}s: a benchmark slowed down by orders of magnitude" >&2
    exit 1
  elif [ "$status" -ne 0 ]; then
    exit "$status"
  fi
  ran=$((ran + 1))
done < <(find "$build/bench" -path "$build/bench/servers" -prune -o -type f -name 'bench_*' -perm -u+x -print 2>/dev/null | sort)

if [ "$ran" -eq 0 ]; then
  echo "run_benchmarks.sh: no benchmarks built under $build/bench yet" >&2
  exit 0
fi
echo "run_benchmarks.sh: $ran benchmark programs, JSON in $results"
