#!/usr/bin/env bash
# Builds and runs the race demo (target `race_demo`, examples/race_demo/): several writers race
# on one store, naive read-modify-write loses updates, noclobber's strategies lose none.
#
#   bash scripts/demo.sh [race_demo arguments...]     (arguments are passed through)
#
# Installs the few Debian packages it lacks (as root), configures build-demo/ (Release, no tests,
# no benchmarks) and runs the demo. Knob: NOCLOBBER_DEMO_BUILD_DIR (default build-demo).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${NOCLOBBER_DEMO_BUILD_DIR:-build-demo}

bash scripts/check_deps.sh build-essential cmake ninja-build pkg-config libsqlite3-dev nlohmann-json3-dev

not_built() {
  echo "demo.sh: the race harness demo is not built yet: there is no CMake target 'race_demo'" >&2
  echo "demo.sh: (it will live in examples/race_demo/); nothing was run." >&2
  exit 2
}
[ -f examples/race_demo/CMakeLists.txt ] || not_built

# Only the demo's example folder: the others may need libraries the demo does not install.
mkdir -p "$build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNOCLOBBER_BUILD_TESTS=OFF \
  -DNOCLOBBER_BUILD_BENCHMARKS=OFF -DNOCLOBBER_BUILD_EXAMPLES=ON -DNOCLOBBER_INSTALL=OFF \
  -DNOCLOBBER_EXAMPLE_SUBDIRS=race_demo >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log" >&2; echo "demo.sh: configuring failed (log above)" >&2; exit 1; }

cmake --build "$build" --target help 2>/dev/null | grep -qE '^race_demo(:|$)' || not_built
cmake --build "$build" --target race_demo -j 2
demo=$(find "$build" -type f -name race_demo -perm -u+x | head -n 1)
[ -n "$demo" ] || { echo "demo.sh: built race_demo but cannot find the executable under $build" >&2; exit 1; }
exec "$demo" "$@"
