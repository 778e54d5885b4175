#!/usr/bin/env bash
# Builds and runs tests/cmake_consumer/consumer.cpp every way a user takes noclobber:
#
#   install      cmake --install into a prefix, then the prefix is moved (relocatable install)
#   find_package find_package(noclobber 0.1 CONFIG) from the moved prefix
#   test_package the Conan test_package/ CMake project against that prefix (no Conan needed)
#   pkg-config   the installed noclobber.pc, compiled by hand
#   add_subdirectory, FetchContent (FETCHCONTENT_SOURCE_DIR_NOCLOBBER + FULLY_DISCONNECTED, and a
#                real git clone of this checkout when it is one)
#   single header  single_include/ alone, no CMake
#
#   bash scripts/check_consumers.sh WORK_DIR      (CXX picks the compiler; default g++)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:?usage: scripts/check_consumers.sh WORK_DIR}
cxx=${CXX:-g++}
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
version=$(sed -n 's/^#define NOCLOBBER_VERSION_STRING "\(.*\)"/\1/p' "$root/include/noclobber/version.hpp")
consumers="$root/tests/cmake_consumer"
gen=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx")
passed=()

step() { echo "--- consumer: $1"; }
quiet() { # run a command, show its output only when it fails
  local log="$work/last.log"
  "$@" >"$log" 2>&1 || { cat "$log" >&2; return 1; }
}
build_and_run() { # NAME SOURCE_DIR [cmake args...]
  local name=$1 src=$2
  shift 2
  quiet cmake -S "$src" -B "$work/$name" "${gen[@]}" "$@"
  quiet cmake --build "$work/$name" -j 2
  local exe="$work/$name/consumer"
  [ -x "$exe" ] || exe="$work/$name/test_package"
  "$exe"
  # As a subproject noclobber must add none of its own tests, benchmarks or examples.
  local sub
  for sub in "$work/$name/noclobber" "$work/$name/_deps/noclobber-build"; do
    if [ -d "$sub/tests" ] || [ -d "$sub/bench" ] || [ -d "$sub/examples" ]; then
      echo "$name: noclobber added its own tests/benchmarks/examples as a subproject ($sub)" >&2
      return 1
    fi
  done
  passed+=("$name")
}

step "install (cmake --install, then the prefix is moved)"
quiet cmake -S "$root" -B "$work/noclobber-build" "${gen[@]}" -DNOCLOBBER_BUILD_TESTS=OFF \
  -DNOCLOBBER_BUILD_BENCHMARKS=OFF -DNOCLOBBER_BUILD_EXAMPLES=OFF -DNOCLOBBER_INSTALL=ON
quiet cmake --install "$work/noclobber-build" --prefix "$work/prefix"
mv "$work/prefix" "$work/moved-prefix"
prefix="$work/moved-prefix"
config_path=$(sed -n 's/.*CONFIG_PATH \([^ )]*\).*/\1/p' "$root/ports/noclobber/portfile.cmake")
for f in "$config_path/noclobberConfig.cmake" "$config_path/noclobberConfigVersion.cmake" \
  share/pkgconfig/noclobber.pc include/noclobber/noclobber.hpp include/noclobber/version.hpp; do
  [ -f "$prefix/$f" ] || { echo "install: $f missing from the prefix" >&2; exit 1; }
done
libs=$(cd "$prefix" && find . -path './lib*' -type f)
[ -z "$libs" ] || { echo "install: a header-only install put files under lib/: $libs" >&2; exit 1; }
passed+=(install)

step "find_package from the moved prefix"
build_and_run find_package "$consumers/find_package" -DCMAKE_PREFIX_PATH="$prefix"

step "Conan test_package/ against the prefix"
build_and_run test_package "$root/test_package" -DCMAKE_PREFIX_PATH="$prefix"

step "pkg-config"
pc_flags=$(PKG_CONFIG_PATH="$prefix/share/pkgconfig" pkg-config --cflags --libs "noclobber = $version")
# shellcheck disable=SC2086
"$cxx" -std=c++20 -O1 "$consumers/consumer.cpp" $pc_flags -o "$work/pkg_config_consumer"
"$work/pkg_config_consumer"
passed+=(pkg-config)

step "add_subdirectory"
build_and_run add_subdirectory "$consumers/add_subdirectory" -DNOCLOBBER_SOURCE_DIR="$root"

step "FetchContent (FETCHCONTENT_SOURCE_DIR_NOCLOBBER, fully disconnected)"
build_and_run fetchcontent_source_dir "$consumers/fetchcontent" -DFETCHCONTENT_SOURCE_DIR_NOCLOBBER="$root" \
  -DFETCHCONTENT_FULLY_DISCONNECTED=ON

if head=$(git -C "$root" rev-parse HEAD 2>/dev/null); then
  step "FetchContent (git clone of this checkout at HEAD $head)"
  build_and_run fetchcontent_git "$consumers/fetchcontent" -DNOCLOBBER_GIT_REPOSITORY="$root" \
    -DNOCLOBBER_GIT_TAG="$head"
fi

step "single header (single_include/ only, no CMake)"
"$cxx" -std=c++20 -O1 -Wall -Wextra -Wpedantic -Werror -pthread -DNOCLOBBER_EXPECT_SINGLE_HEADER \
  -I "$root/single_include" "$consumers/consumer.cpp" -o "$work/single_header_consumer"
"$work/single_header_consumer"
passed+=(single-header)

echo "check_consumers.sh: ${#passed[@]} consumer paths passed: ${passed[*]}"
