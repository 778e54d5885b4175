#!/usr/bin/env bash
# Regenerates docs/img/backoff_writes.svg and docs/img/backoff_completion.svg (writes and
# completion time against clients, per strategy) from the JSON output of bench_backoff_sim, and
# prints the Markdown tables of docs/backoff.md: the numbers, the ratios to full jitter, and
# where the writes go (writes by attempt number).
#
#   bash scripts/plot_backoff.sh [SIM_JSON]
#
# Without SIM_JSON it builds bench_backoff_sim in BUILD_DIR (default build-bench, configured in
# Release when missing) and runs it. Needs jq and gnuplot (both in scripts/apt-packages.txt).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
json=${1:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -z "$json" ]; then
  build=${BUILD_DIR:-$root/build-bench}
  if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNOCLOBBER_BUILD_TESTS=OFF \
      -DNOCLOBBER_BUILD_EXAMPLES=OFF -DNOCLOBBER_BUILD_BENCHMARKS=ON >/dev/null
  fi
  cmake --build "$build" --target bench_backoff_sim -j 2 >/dev/null
  json=$tmp/sim.json
  "$build/bench/bench_backoff_sim" --benchmark_out="$json" --benchmark_out_format=json >/dev/null
fi

strategies=$(jq -r '.benchmarks[].name | select(startswith("sim/")) | split("/")[1]' "$json" | awk '!seen[$0]++')
[ -n "$strategies" ] || { echo "plot_backoff.sh: no sim/ benchmarks in $json" >&2; exit 1; }

for s in $strategies; do
  jq -r --arg s "$s" '.benchmarks[] | select(.name | startswith("sim/" + $s + "/"))
    | "\(.clients) \(.writes) \(.completion_ms) \(.attempt_1) \(.attempt_2) \(.attempt_3) \(.attempt_4) \(.attempt_5) \(.attempt_6) \(.bound)"' \
    "$json" | sort -n >"$tmp/$s.dat"
done
[ -f "$tmp/full_jitter.dat" ] || { echo "plot_backoff.sh: no sim/full_jitter in $json" >&2; exit 1; }

# Markdown table: one row per strategy, writes / completion (ms) per N.
ns=$(cut -d' ' -f1 "$tmp/$(echo "$strategies" | head -1).dat" | tr '\n' ' ')
printf '| strategy |'; for n in $ns; do printf ' N=%s writes | N=%s ms |' "$n" "$n"; done; echo
printf '|---|'; for _ in $ns; do printf -- '---:|---:|'; done; echo
for s in $strategies; do
  printf '| %s |' "$s"
  while read -r _ w c _; do printf ' %.0f | %.0f |' "$w" "$c"; done <"$tmp/$s.dat"
  echo
done

# Ratios to full jitter (the issue's yardstick): writes x / completion x per N.
echo
printf '| strategy |'; for n in $ns; do printf ' N=%s |' "$n"; done; echo
printf '|---|'; for _ in $ns; do printf -- '---:|'; done; echo
for s in $strategies; do
  printf '| %s |' "$s"
  paste -d' ' "$tmp/$s.dat" "$tmp/full_jitter.dat" |
    awk '{ printf " %.2f / %.2f |", $2 / $12, $3 / $13 } END { print "" }'
done

# Where the writes go: writes by attempt number at the smallest and largest N.
echo
echo '| strategy | N | attempt 1 | 2 | 3 | 4 | 5 | 6 and later | writes | bound |'
echo '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
for s in $strategies; do
  for n in $(cut -d' ' -f1 "$tmp/$s.dat" | sed -n '3p;$p'); do
    awk -v s="$s" -v n="$n" '$1 == n { printf "| %s | %d | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f | %.0f |\n", s, n, $4, $5, $6, $7, $8, $9, $2, $10 }' "$tmp/$s.dat"
  done
done

mkdir -p "$root/docs/img"
plot_list() {  # $1: column
  local first=1
  for s in $strategies; do
    [ $first -eq 1 ] || printf ', '
    first=0
    printf '"%s" using 1:%s with linespoints lw 2 title "%s"' "$tmp/$s.dat" "$1" "$s"
  done
}
gnuplot <<EOF
set terminal svg size 900,520 dynamic noenhanced font "sans,12" background rgb "white"
set key outside right top
set grid
set logscale xy
set xlabel "clients contending for one row"
set xtics (2, 5, 10, 20, 50, 100)
set xrange [1.7:120]
set output "$root/docs/img/backoff_writes.svg"
set title "Total conditional writes until every client succeeded (mean of 100 seeded runs)"
set ylabel "writes"
plot $(plot_list 2)
set output "$root/docs/img/backoff_completion.svg"
set title "Time until the last client succeeded (virtual time, ~5 ms one-way network)"
set ylabel "completion (ms)"
plot $(plot_list 3)
EOF
echo "plot_backoff.sh: wrote docs/img/backoff_writes.svg and docs/img/backoff_completion.svg" >&2
