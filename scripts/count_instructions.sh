#!/usr/bin/env bash
# Instructions per uncontended update (callgrind): read_modify_write, the hand-written read +
# write_if_match loop and the naive blind write, on memory_store<std::string, long>. Instruction
# counts do not depend on machine load, so this is the cost figure to compare between commits.
#
#   bash scripts/count_instructions.sh [BUILD_DIR]
#
# BUILD_DIR (default build-bench) is configured in Release (g++ -O3 -DNDEBUG) when it does not
# exist. Needs valgrind. Each mode runs twice (10 000 and 30 000 updates); the difference divided
# by 20 000 is the cost of one update, start-up excluded.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-bench}
command -v valgrind >/dev/null || { echo "count_instructions.sh: valgrind is not installed" >&2; exit 1; }
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNOCLOBBER_BUILD_TESTS=OFF \
    -DNOCLOBBER_BUILD_EXAMPLES=OFF -DNOCLOBBER_BUILD_BENCHMARKS=ON
fi
cmake --build "$build" -j 2 --target instructions_read_modify_write
bin="$build/bench/callgrind/instructions_read_modify_write"

collected() { # MODE N -> instructions of the whole run
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
hand=0
for mode in hand rmw naive; do
  small=$(collected "$mode" 10000)
  large=$(collected "$mode" 30000)
  per=$(((large - small) / 20000))
  [ "$mode" = hand ] && hand=$per
  if [ "$mode" = hand ]; then
    printf '%-6s %5d instructions per update\n' "$mode" "$per"
  else
    printf '%-6s %5d instructions per update (%d.%02dx the hand-written loop)\n' "$mode" "$per" \
      $((per / hand)) $(((per * 100 / hand) % 100))
  fi
done
