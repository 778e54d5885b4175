#!/usr/bin/env bash
# Builds and runs every noclobber test. The README's test command and what .ci/run calls.
#
#   bash scripts/test.sh              every stage (what CI runs)
#   bash scripts/test.sh gcc tsan     only the named stages, in the order below
#
# Stages, in order; the first that fails stops the run and is named:
#   deps        install the missing Debian packages of scripts/apt-packages.txt (as root)
#   format      clang-format --dry-run -Werror on include/ tests/ bench/ examples/ test_package/
#   generated   single header and umbrella fresh, versions and packaging agree, doc examples = files,
#               every file and section the docs name exists
#   gcc         g++ -O2 Release: tests, benchmarks, examples and server tests (-Og), header
#               self-containment; ctest -LE server
#   flake       the concurrency tests 3 times under load, on the gcc build (scripts/flake_hunt.sh)
#   tsan        ThreadSanitizer, g++ -Og: the tests (not the server and cluster fault tests, which
#               need servers and run in `servers` and `faults`; not the examples, which gcc and asan
#               run); ctest -LE server
#   asan        AddressSanitizer + UBSan, clang++ -O0: the tests; also clang's warning build
#               (-Wall -Wextra -Wpedantic -Werror -Wthread-safety; clang warns from its front end,
#               at any -O), which checks the examples and the server and cluster fault tests with
#               -fsyntax-only (they run on the gcc build); ctest -LE server
#   fuzz        scripts/fuzz.sh, 25 s per libFuzzer target (two at a time; 12 targets: 6 rounds)
#   consumers   install + find_package, add_subdirectory, FetchContent, pkg-config, Conan
#               test_package, single header (scripts/check_consumers.sh)
#   bench       every benchmark once with a tiny min time, JSON into a temp folder; a program
#               running past 180 s fails the stage (a complexity regression, not a slow machine)
#   servers     scripts/test_servers.sh (real PostgreSQL/Redis/etcd/Apache), when it exists
#   faults      scripts/test_faults.sh (clusters under faults, ctest -L fault; ≤ 6 min), when it exists
#               (servers and faults run side by side, as one stage `servers+faults`, when both run)
# Each build folder is built once; later stages reuse it (flake, bench, servers and faults use gcc's).
# The build stages compile each test folder as a few unity executables (NOCLOBBER_TEST_BUNDLES,
# cmake/NoclobberTestBundles.cmake): the same ctest tests, about half the compile time.
# The summary's last line counts stages: `N passed, N failed`.
#
# Build folders go under $NOCLOBBER_BUILD_ROOT (default build-ci/) and are reused between runs.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build_root=${NOCLOBBER_BUILD_ROOT:-build-ci}
mkdir -p "$build_root"
build_root=$(cd "$build_root" && pwd)
jobs=2

export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
export ASAN_OPTIONS="detect_leaks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export CTEST_OUTPUT_ON_FAILURE=1

names=() results=() seconds=() cpu=() notes=()
run_start=$(date +%s)

# CPU seconds (user + sys) used so far by finished children: with other work on the machine,
# wall time says little, and CPU / 2 is what the stage would take alone on 2 cores.
children_cpu() { # sets $cpu_now; `times` must run in this shell, not in a $(...) subshell
  times >"$build_root/.times"
  cpu_now=$(tail -n 1 "$build_root/.times" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } printf "%d", t }')
}

summary() {
  local total=$(($(date +%s) - run_start)) passed=0 failed=0 i
  children_cpu
  echo
  echo "==== scripts/test.sh summary (stages; wall time ${total}s, CPU ${cpu_now}s)"
  printf '  %-20s %-6s %6s %6s  %s\n' stage result wall cpu note
  for i in "${!names[@]}"; do
    printf '  %-20s %-6s %5ss %5ss  %s\n' "${names[$i]}" "${results[$i]}" "${seconds[$i]}" "${cpu[$i]}" "${notes[$i]}"
    case "${results[$i]}" in pass) passed=$((passed + 1)) ;; FAIL) failed=$((failed + 1)) ;; esac
  done
  echo "$passed passed, $failed failed"
}

only=("$@")
selected() { # NAME: nothing was named, or every part of NAME (parts joined by +) was
  local part
  [ "${#only[@]}" -eq 0 ] && return 0
  for part in ${1//+/ }; do [[ " ${only[*]} " == *" $part "* ]] || return 1; done
}
stage() { # NAME FUNCTION: run one stage, time it, stop everything on failure
  local name=$1 fn=$2 start cpu_start
  selected "$name" || return 0
  start=$(date +%s)
  children_cpu
  cpu_start=$cpu_now
  echo
  echo "==== stage $name"
  rm -f "$build_root/.note"
  (set -e; "$fn") # not inside `if`: there bash would ignore set -e
  local status=$?
  children_cpu
  names+=("$name") seconds+=($(($(date +%s) - start))) cpu+=($((cpu_now - cpu_start)))
  notes+=("$(cat "$build_root/.note" 2>/dev/null)")
  if [ "$status" -eq 0 ]; then
    results+=(pass)
  else
    results+=(FAIL)
    echo "scripts/test.sh: stage '$name' FAILED (output above)" >&2
    summary
    exit 1
  fi
}
say() { echo "$*" >"${note_file:-$build_root/.note}"; } # one-line note for the summary

stage_deps() { bash scripts/check_deps.sh; }

stage_format() {
  # Tracked files in a git checkout (someone's uncommitted draft is not CI's business), else all.
  local dirs=(include tests bench examples test_package) files bad
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files -- "${dirs[@]}" | grep -E '\.(hpp|cpp|h|cc)$')
  else
    mapfile -t files < <(find "${dirs[@]}" -type f \( -name '*.hpp' -o -name '*.cpp' -o -name '*.h' -o -name '*.cc' \) 2>/dev/null | sort)
  fi
  bad=$(clang-format --dry-run -Werror "${files[@]}" 2>&1 | grep -oE '^[^:]+:[0-9]+:[0-9]+: error' | cut -d: -f1 | sort -u || true)
  if [ -n "$bad" ]; then
    echo "not clang-formatted (fix: clang-format -i FILE):"
    echo "$bad" | sed 's/^/  /'
    return 1
  fi
  say "${#files[@]} files clang-formatted"
}

stage_generated() {
  python3 scripts/amalgamate.py --check
  python3 scripts/check_packaging.py
  python3 scripts/check_doc_examples.py
  python3 scripts/check_doc_links.py
}

# cmake_build_and_test DIR ARGS...: configure (reusing DIR), build everything, run ctest -LE server.
# ARGS come after the defaults, so they may override them.
cmake_build_and_test() {
  local dir="$build_root/$1"
  shift
  cmake -S "$root" -B "$dir" -G Ninja -DNOCLOBBER_BUILD_TESTS=ON -DNOCLOBBER_BUILD_EXAMPLES=ON \
    -DNOCLOBBER_BUILD_SERVER_TESTS=ON -DNOCLOBBER_TEST_BUNDLES=ON "$@" >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs" -- -k 0 # every broken target in one run; the stage still fails
  local log="$dir.ctest.log"
  local status=0
  ctest --test-dir "$dir" -LE server -j "$jobs" --timeout 600 2>&1 | tee "$log" || status=$?
  say "$(grep -E 'tests passed|tests failed' "$log" | tail -n 1)"
  return "$status"
}

# -O2, not CMake's -O3: the level distributions build with, strict aliasing included; -O3 only adds
# more inlining and vectorizing, and took a fifth more compile time (the benchmark stage is a smoke
# run; the figures in the docs come from CMake Release builds, -O3). The examples and the server
# and fault test programs at -Og: the examples are built and run for what they show, the server
# tests spend their time waiting on servers, and -Og keeps the warnings that need the optimizer's
# data flow. -Og compiles them in about four fifths of -O1's time (same file, one after the other:
# test_fault_etcd.cpp 18.0 -> 14.3 s, race_demo.cpp 36.0 -> 27.2 s); built so, servers+faults took
# 200 s (233 s in the last fresh-clone run at -O1) and the examples' tests ran as long as before.
stage_gcc() {
  cmake_build_and_test gcc -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" \
    -DNOCLOBBER_BUILD_BENCHMARKS=ON -DNOCLOBBER_EXAMPLES_COMPILE_OPTIONS=-Og -DNOCLOBBER_SERVER_TESTS_COMPILE_OPTIONS=-Og
}
stage_flake() { # reuses the gcc stage's build; no servers here, so no server tests
  local log="$build_root/flake.log"
  bash scripts/flake_hunt.sh 3 --build "$build_root/gcc" --no-build --logs "$build_root/flake-logs" | tee "$log"
  say "$(tail -n 1 "$log") test runs, 3 rounds under load"
}
# Header self-containment is checked once, in the gcc stage (both compilers use libstdc++).
# Line tables only (-g1): sanitizer reports keep file:line, the builds skip full debug info.
sanitizer_args=(-DCMAKE_BUILD_TYPE=Debug -DNOCLOBBER_BUILD_BENCHMARKS=OFF -DNOCLOBBER_CHECK_HEADERS=OFF)
# -Og: TSan instruments every memory access at any level; -Og built the stage's tests in 138 s
# against -O1's 176 s (both from scratch, one after the other) and they ran in 51 s against 44 s.
stage_tsan() {
  cmake_build_and_test tsan -DCMAKE_CXX_COMPILER=g++ "${sanitizer_args[@]}" "-DCMAKE_CXX_FLAGS_DEBUG=-g1 -Og" \
    -DNOCLOBBER_SANITIZE=thread -DNOCLOBBER_BUILD_EXAMPLES=OFF -DNOCLOBBER_BUILD_SERVER_TESTS=OFF
}
stage_asan() {
  # -O0: ASan and UBSan find the same errors as at -O1 (UBSan's object-size check needs -O1, and
  # ASan covers what it would catch), and clang compiles about 3x faster; the tests run slower.
  # The server tests and the examples only for clang's diagnostics: no code, no links
  # (NOCLOBBER_SERVER_TESTS_SYNTAX_ONLY, NOCLOBBER_EXAMPLES_SYNTAX_ONLY); the gcc build runs them.
  cmake_build_and_test asan -DCMAKE_CXX_COMPILER=clang++ "${sanitizer_args[@]}" \
    "-DCMAKE_CXX_FLAGS_DEBUG=-gline-tables-only -O0" -DNOCLOBBER_SANITIZE=address,undefined \
    -DNOCLOBBER_SERVER_TESTS_SYNTAX_ONLY=ON -DNOCLOBBER_EXAMPLES_SYNTAX_ONLY=ON
}

stage_fuzz() { # 25 s per target, two at a time (12 targets: 6 rounds, 150 s after the build)
  local log="$build_root/fuzz-run.log"
  NOCLOBBER_FUZZ_JOBS="${NOCLOBBER_FUZZ_JOBS:-2}" bash scripts/fuzz.sh "$build_root/fuzz" "${NOCLOBBER_FUZZ_SECONDS:-25}" | tee "$log"
  say "$(grep -m1 '^fuzz.sh: built' "$log" | sed 's/^fuzz.sh: //'); $(tail -n 1 "$log" | sed 's/^ *fuzz.sh: *//')"
}

stage_consumers() {
  bash scripts/check_consumers.sh "$build_root/consumers" | tee "$build_root/consumers.log"
  say "$(tail -n 1 "$build_root/consumers.log" | sed 's/^check_consumers.sh: //')"
}

stage_bench() { # reuses the gcc stage's Release build when there is one
  local out dir="$build_root/gcc"
  [ -f "$dir/CMakeCache.txt" ] || dir="$build_root/bench"
  out=$(mktemp -d /tmp/noclobber-bench-smoke.XXXXXX)
  NOCLOBBER_BENCH_MIN_TIME=0.01 NOCLOBBER_BENCH_TIMEOUT=180 bash scripts/run_benchmarks.sh "$dir" "$out" | tee "$build_root/bench.log"
  say "$(find "$out" -name '*.json' | wc -l) benchmark programs ran"
  rm -rf "$out"
}

stage_servers() { bash scripts/test_servers.sh "$build_root/gcc" -j 2; } # the tests use their own keys and tables
stage_faults() { bash scripts/test_faults.sh "$build_root/gcc"; }

# servers and faults run at once, as one stage (`servers+faults`). Both mostly wait on their servers
# (alone: 204 s wall for ~50 CPU-s, 197 s for ~40) and touch nothing of each other's: own ports
# (free_port reserves them), own state folders, and the fault stage's sweep only takes clusters
# (scripts/clusters/) whose owner is gone. Each log is printed whole after both ended, a failed one
# last (the end of a log is what gets read). fuzz is not among them: beside them even at idle
# priority (SCHED_IDLE, nice 19) it slowed the CPU-bound WebDAV forced-window test from ~50 s to
# its 300 s timeout in a CI run.
side_by_side() { # STAGE...: run stage_STAGE for each at once; fails if any failed
  local parts=("$@") name pids=() failed=() passed=() notes_all=() rc i
  for name in "$@"; do
    (
      note_file="$build_root/.note-$name"
      rm -f "$note_file"
      set -e
      "stage_$name"
    ) >"$build_root/$name.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    name=${parts[$i]}
    rc=0
    wait "${pids[$i]}" || rc=$?
    if [ "$rc" = 0 ]; then passed+=("$name"); else failed+=("$name"); fi
    notes_all+=("$name: $(cat "$build_root/.note-$name" 2>/dev/null ||
      grep -E '^[0-9]+% tests passed' "$build_root/$name.log" | tail -n 1 | grep . || echo "exit $rc")")
  done
  for name in "${passed[@]}" "${failed[@]}"; do
    echo "---- $name ($([[ " ${failed[*]} " == *" $name "* ]] && echo FAILED || echo passed))"
    cat "$build_root/$name.log"
  done
  local joined="" note
  for note in "${notes_all[@]}"; do joined+="${joined:+; }$note"; done
  say "$joined"
  [ "${#failed[@]}" -eq 0 ]
}

stage deps stage_deps
stage format stage_format
stage generated stage_generated
stage gcc stage_gcc
stage flake stage_flake
stage tsan stage_tsan
stage asan stage_asan
stage fuzz stage_fuzz
stage consumers stage_consumers
stage bench stage_bench
server_stages=()
for name in servers faults; do selected "$name" && server_stages+=("$name"); done
if [ "${#server_stages[@]}" -ge 2 ]; then
  stage_server_stages() { side_by_side "${server_stages[@]}"; }
  stage "$(IFS=+; echo "${server_stages[*]}")" stage_server_stages
elif [ "${#server_stages[@]}" -eq 1 ]; then
  stage "${server_stages[0]}" "stage_${server_stages[0]}"
fi
summary
