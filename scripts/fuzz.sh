#!/usr/bin/env bash
# Builds noclobber's libFuzzer targets (tests/fuzz) with clang and runs each for a bounded time.
#
#   scripts/fuzz.sh BUILD_DIR [SECONDS_PER_TARGET] [TARGET...]
#
#   BUILD_DIR           configured (clang, -DNOCLOBBER_BUILD_FUZZERS=ON) and built here; reused
#   SECONDS_PER_TARGET  -max_total_time of each run (default 30)
#   TARGET...           fuzz_* names (default: every tests/fuzz/fuzz_*.cpp)
#
# Each target runs on a copy of its committed seed corpus (tests/fuzz/corpus/<target>/, never
# written to) with its dictionary (tests/fuzz/<target>.dict) when there is one. Printed per
# target: seconds run, runs, runs/s, coverage (cov: edges, ft: features, libFuzzer's final
# figures), the corpus size it ended with (corp: inputs) and whether it crashed. A crash, leak,
# timeout or out-of-memory input is kept under BUILD_DIR/fuzz-findings/<target>/ and its path
# printed; the script then exits 1 (after running the remaining targets). Inputs libFuzzer reports as slow (over 10 s once: on a busy machine a
# stall alone does it) are kept there too and counted, but are not findings.
#
# Environment:
#   NOCLOBBER_FUZZ_TIMEOUT   -timeout per input, seconds (default 25)
#   NOCLOBBER_FUZZ_RSS_MB    -rss_limit_mb (default 2048)
#   NOCLOBBER_FUZZ_JOBS      targets run at the same time (default 1); the build uses -j2
#   NOCLOBBER_FUZZ_KEEP      a folder: keep each run's grown corpus there (<folder>/<target>/),
#                            to merge new seeds by hand (fuzzer -merge=1); default: discarded
#   NOCLOBBER_FUZZ_LOGS      a folder: keep each run's full libFuzzer log there (<folder>/<target>.log)
#   NOCLOBBER_FUZZ_ARGS      extra libFuzzer flags for every run (e.g. -seed=1)
#
# Needs clang++ with libFuzzer (Debian: clang, libclang-rt-14-dev), CMake, and the adapters'
# client libraries (libcurl4-openssl-dev, libhiredis-dev, libpq-dev, libsqlite3-dev): all in
# scripts/apt-packages.txt.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: scripts/fuzz.sh BUILD_DIR [SECONDS_PER_TARGET] [TARGET...]}
seconds=${2:-30}
shift $(($# >= 2 ? 2 : 1))
case $seconds in '' | *[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET must be a number, got '$seconds'" >&2; exit 2 ;; esac
timeout_s=${NOCLOBBER_FUZZ_TIMEOUT:-25}
rss_mb=${NOCLOBBER_FUZZ_RSS_MB:-2048}
jobs=${NOCLOBBER_FUZZ_JOBS:-1}
keep=${NOCLOBBER_FUZZ_KEEP:-}
logs=${NOCLOBBER_FUZZ_LOGS:-}
read -r -a extra <<<"${NOCLOBBER_FUZZ_ARGS:-}"

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for src in "$root"/tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi
for t in "${targets[@]}"; do
  [ -f "$root/tests/fuzz/$t.cpp" ] || { echo "fuzz.sh: no target '$t' (tests/fuzz/$t.cpp)" >&2; exit 2; }
done
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }

# ---- build -----------------------------------------------------------------------------------
mkdir -p "$build"
build=$(cd "$build" && pwd)
generator=()
if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null; then generator=(-G Ninja); fi
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DNOCLOBBER_BUILD_FUZZERS=ON -DNOCLOBBER_BUILD_TESTS=OFF -DNOCLOBBER_BUILD_BENCHMARKS=OFF \
  -DNOCLOBBER_BUILD_EXAMPLES=OFF -DNOCLOBBER_INSTALL=OFF >/dev/null
build_start=$(date +%s)
cmake --build "$build" -j 2 --target "${targets[@]}"
echo "fuzz.sh: built ${#targets[@]} target(s) in $(($(date +%s) - build_start)) s"

# ---- run -------------------------------------------------------------------------------------
export ASAN_OPTIONS="detect_leaks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
work=$(mktemp -d "${TMPDIR:-/tmp}/noclobber-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
findings="$build/fuzz-findings"

run_target() { # TARGET: one bounded run; writes $work/<target>.result
  local t=$1 dir="$work/$1" bin
  bin=$(find "$build" -type f -name "$t" -perm -u+x | head -n 1)
  mkdir -p "$dir/corpus" "$dir/artifacts"
  rm -rf "${findings:?}/$t"
  if [ -d "$root/tests/fuzz/corpus/$t" ]; then cp -R "$root/tests/fuzz/corpus/$t/." "$dir/corpus/"; fi
  local args=("$dir/corpus" "-max_total_time=$seconds" "-timeout=$timeout_s" "-rss_limit_mb=$rss_mb"
    -print_final_stats=1 "-artifact_prefix=$dir/artifacts/" "${extra[@]}")
  if [ -f "$root/tests/fuzz/$t.dict" ]; then args+=("-dict=$root/tests/fuzz/$t.dict"); fi
  local status=0
  "$bin" "${args[@]}" >"$dir/log" 2>&1 || status=$?
  local runs rate cov ft corp secs slow=0 found=""
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$dir/log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+' "$dir/log" | tail -n 1 | cut -d' ' -f2 || true)
  ft=$(grep -oE 'ft: [0-9]+' "$dir/log" | tail -n 1 | cut -d' ' -f2 || true)
  corp=$(grep -oE 'corp: [0-9]+' "$dir/log" | tail -n 1 | cut -d' ' -f2 || true)
  for a in "$dir"/artifacts/*; do
    [ -f "$a" ] || continue
    mkdir -p "$findings/$t"
    cp "$a" "$findings/$t/"
    case $(basename "$a") in
      # An input that once took longer than libFuzzer's -report_slow_units (10 s): kept to look
      # at, not a finding (a busy machine alone can stall one); a hang is a timeout-* finding.
      slow-unit-*) slow=$((slow + 1)) ;;
      *) found+=" $findings/$t/$(basename "$a")" ;;
    esac
  done
  if [ "$status" -ne 0 ] && [ -z "$found" ]; then found=" (exit status $status, no input saved: see the log below)"; fi
  if [ -n "$keep" ]; then mkdir -p "$keep/$t" && cp -R "$dir/corpus/." "$keep/$t/"; fi
  if [ -n "$logs" ]; then mkdir -p "$logs" && cp "$dir/log" "$logs/$t.log"; fi
  printf '%s %s %s %s %s %s %s %s %s\n' "$t" "${secs:-?}" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$slow" \
    "${found:- none}" >"$dir/result"
  if [ "$slow" -gt 0 ]; then echo "fuzz.sh: $t: $slow input(s) once slower than 10 s (not a finding) kept under $findings/$t/"; fi
  if [ -n "$found" ]; then
    echo "==== $t: FINDING$found (reproduce: $bin INPUT)"
    grep -vE '^#[0-9]+ +(NEW|REDUCE|pulse|INITED|DONE)' "$dir/log" | tail -n 60 || true
  fi
}

echo "fuzz.sh: ${#targets[@]} target(s), ${seconds} s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
  run_target "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

crashed=0
printf '\n%-22s %7s %12s %9s %7s %8s %6s %5s  %s\n' target seconds runs 'runs/s' cov ft corpus slow finding
for t in "${targets[@]}"; do
  read -r name secs runs rate cov ft corp slow found <"$work/$t/result" ||
    { name=$t secs='?' runs='?' rate='?' cov='?' ft='?' corp='?' slow='?' found='(no result)'; }
  printf '%-22s %7s %12s %9s %7s %8s %6s %5s  %s\n' "$name" "$secs" "$runs" "$rate" "$cov" "$ft" "$corp" "$slow" "$found"
  [ "$found" = none ] || crashed=1
done
if [ "$crashed" -ne 0 ]; then
  echo "fuzz.sh: FINDINGS above (inputs kept under $findings/)" >&2
  exit 1
fi
echo "fuzz.sh: no findings"
