#!/usr/bin/env bash
# Flake hunt: runs every concurrency test (ctest label `concurrency`, i.e. Catch2 tag
# [concurrency]) N times while the machine is kept busy, and counts failures per test.
#
#   bash scripts/flake_hunt.sh [N] [--build DIR] [--no-build] [--servers] [--no-load]
#                              [--jobs J] [--max-minutes M] [--logs DIR]
#
#   N              rounds (default 20); each round runs every selected test once (ctest -j J)
#   --build DIR    a configured build folder to reuse (default: build-flake, configured here as a
#                  g++ Release build of the tests); it is built once, before the first round
#   --no-build     do not build at all: DIR must already hold the built tests (CI's flake stage)
#   --servers      start PostgreSQL, Redis, etcd and Apache (scripts/servers/all.sh) for the run
#                  and include the server concurrency tests. Without it, a server's concurrency
#                  tests run only when its variable (NOCLOBBER_PG_CONNINFO, NOCLOBBER_REDIS_ADDR,
#                  NOCLOBBER_ETCD_URL, NOCLOBBER_DAV_URL) is set; the others are left out.
#   --no-load      no background load (to compare)
#   --jobs J       tests run at once (default 2)
#   --max-minutes M  start no new round after M minutes (default 120); rounds not run are reported
#                  and make the hunt fail, so a time-out never reads as a pass
#   --logs DIR     where the output of failing rounds is kept (default DIR/flake-hunt)
#
# The load: `stress-ng --cpu W` (W = NOCLOBBER_FLAKE_LOAD, default 2, one per core here), or W
# shell busy loops when stress-ng is missing. It is stopped on exit, also on failure and Ctrl-C.
# Output: one line per round, a table per test (runs, failures, slowest run; also in
# LOGS/results.tsv), the failures per test, and last `N passed, N failed` (test runs);
# the exit status is non-zero when any run failed (or rounds were left out).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

rounds=20 build= do_build=1 servers=0 load=1 jobs=2 max_minutes=120 logs=
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=${2:?--build needs a folder}; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --servers) servers=1; shift ;;
    --no-load) load=0; shift ;;
    --jobs) jobs=${2:?--jobs needs a number}; shift 2 ;;
    --max-minutes) max_minutes=${2:?--max-minutes needs a number}; shift 2 ;;
    --logs) logs=${2:?--logs needs a folder}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    [0-9]*) rounds=$1; shift ;;
    *) echo "flake_hunt.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "flake_hunt.sh: N must be a positive number, got '$rounds'" >&2; exit 2; }

# ---- the build (once) ---------------------------------------------------------------------------
if [ -z "$build" ]; then
  build=$root/build-flake
  if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ \
      -DNOCLOBBER_BUILD_TESTS=ON -DNOCLOBBER_BUILD_EXAMPLES=OFF -DNOCLOBBER_BUILD_BENCHMARKS=OFF \
      -DNOCLOBBER_CHECK_HEADERS=OFF >/dev/null
  fi
fi
[ -f "$build/CMakeCache.txt" ] || { echo "flake_hunt.sh: $build is not a configured build folder" >&2; exit 2; }
build=$(cd "$build" && pwd)
logs=${logs:-$build/flake-hunt}
if [ "$do_build" = 1 ]; then
  cmake --build "$build" -j 2
fi

# ---- cleanup: the load and the servers stop on every exit ---------------------------------------
load_pids=()
stop_load() {
  local pid
  for pid in "${load_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${load_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  load_pids=()
}
cleanup() {
  stop_load
  if declare -F stop_all_servers >/dev/null; then stop_all_servers; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- servers ----------------------------------------------------------------------------------
if [ "$servers" = 1 ]; then
  . "$root/scripts/servers/all.sh"
  start_all_servers noclobber-flake-servers
  trap cleanup EXIT # start_all_servers set its own EXIT trap; cleanup stops the servers too
  trap 'exit 130' INT TERM
fi
# A server's tests carry its tag: leave out those whose server is not there.
missing=()
[ -n "${NOCLOBBER_PG_CONNINFO:-}" ] || missing+=(postgres)
[ -n "${NOCLOBBER_REDIS_ADDR:-}" ] || missing+=(redis)
[ -n "${NOCLOBBER_ETCD_URL:-}" ] || missing+=(etcd)
[ -n "${NOCLOBBER_DAV_URL:-}" ] || missing+=(http webdav)
# The [fault] tests start clusters and need root: scripts/test_faults.sh runs them, never this hunt.
exclude=(fault)
if [ "${#missing[@]}" -eq 5 ]; then
  exclude+=(server)
  server_note="no servers (server tests left out)"
elif [ "${#missing[@]}" -gt 0 ]; then
  exclude+=("${missing[@]}")
  server_note="server tests left out: ${missing[*]}"
else
  server_note="every server"
fi
select=(-L '^concurrency$' -LE "^($(IFS='|'; echo "${exclude[*]}"))\$")

mapfile -t tests < <(ctest --test-dir "$build" -N "${select[@]}" | sed -n 's/^ *Test *#[0-9]*: //p')
if [ "${#tests[@]}" -eq 0 ]; then
  echo "flake_hunt.sh: no concurrency tests in $build (ctest ${select[*]})" >&2
  exit 2
fi

# ---- the load -----------------------------------------------------------------------------------
workers=${NOCLOBBER_FLAKE_LOAD:-2}
if [ "$load" = 1 ]; then
  if command -v stress-ng >/dev/null 2>&1; then
    stress-ng --cpu "$workers" --timeout "$((max_minutes * 60 + 3600))s" --quiet &
    load_pids+=($!)
    how="stress-ng --cpu $workers"
  else
    for _ in $(seq "$workers"); do
      bash -c 'while :; do :; done' &
      load_pids+=($!)
    done
    how="$workers busy loops (no stress-ng)"
  fi
else
  how="none"
fi
echo "flake_hunt.sh: ${#tests[@]} concurrency tests x $rounds rounds in $build; load: $how; $server_note"

# ---- the rounds ---------------------------------------------------------------------------------
declare -A failures=()
mkdir -p "$logs"
results=$logs/results.tsv # one line per test run: name, result, seconds
: >"$results"
start=$(date +%s)
deadline=$((start + max_minutes * 60))
done_rounds=0 runs=0 failed_runs=0
for round in $(seq "$rounds"); do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "flake_hunt.sh: time limit ($max_minutes min) reached after $done_rounds of $rounds rounds"
    break
  fi
  log="$logs/round-$round.log"
  t0=$(date +%s)
  ctest --test-dir "$build" "${select[@]}" -j "$jobs" --timeout 600 --output-on-failure >"$log" 2>&1 || true
  failed_now=()
  mapfile -t failed_now < <(sed -n '/The following tests FAILED:/,$ s/^[[:space:]]*[0-9]* - \(.*\) ([A-Za-z ]*)$/\1/p' "$log")
  ran_now=$(sed -n 's/.*tests passed, [0-9]* tests failed out of \([0-9]*\)$/\1/p' "$log" | tail -n 1)
  if [ -z "$ran_now" ]; then # ctest itself failed: count every test of the round as failed
    ran_now=${#tests[@]}
    failed_now=("(ctest did not run: see $log)")
  fi
  for t in "${failed_now[@]}"; do failures[$t]=$((${failures[$t]:-0} + 1)); done
  # Per-test results of the round (name, result, seconds), for the table at the end.
  python3 -c 'import re, sys
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\s*\d+/\d+\s+Test\s+#\d+: (.*?) \.{3,}\s*(?:\*\*\*)?(.+?)\s+([\d.]+) sec$", line)
    if m: print("\t".join(m.groups()))' "$log" >>"$results"
  runs=$((runs + ran_now))
  failed_runs=$((failed_runs + ${#failed_now[@]}))
  done_rounds=$round
  printf 'round %d/%d: %d tests, %d failed (%ds)%s\n' "$round" "$rounds" "$ran_now" "${#failed_now[@]}" \
    "$(($(date +%s) - t0))" "${failed_now[*]:+: ${failed_now[*]}}"
  [ "${#failed_now[@]}" -gt 0 ] || rm -f "$log"
done
stop_load

echo
echo "==== flake hunt: $done_rounds of $rounds rounds, ${#tests[@]} tests each, load: $how, $(($(date +%s) - start))s"
echo "per test: runs, failed, slowest run (s)"
awk -F '\t' '{ runs[$1]++; if ($2 != "Passed") bad[$1]++; if ($3 + 0 > slow[$1]) slow[$1] = $3 + 0 }
  END { for (t in runs) printf "  %4d %4d %8.2f  %s\n", runs[t], bad[t], slow[t], t }' "$results" | sort -k4
if [ "${#failures[@]}" -gt 0 ]; then
  echo "failures per test (logs in $logs):"
  for t in "${!failures[@]}"; do printf '  %3d of %d  %s\n' "${failures[$t]}" "$done_rounds" "$t"; done | sort -rn
fi
echo "$((runs - failed_runs)) passed, $failed_runs failed"
[ "$failed_runs" -eq 0 ] && [ "$done_rounds" -eq "$rounds" ]
