#!/usr/bin/env bash
# Builds and runs tests/cmake_consumer/consumer.cpp every way a user takes noclobber:
#
#   install      cmake --install into a prefix, then the prefix is moved (relocatable install)
#   find_package find_package(noclobber 0.1 CONFIG COMPONENTS sqlite postgres) from the moved prefix
#   components   the installed config's answers: an unknown component and a component whose
#                library is missing fail with a message naming them; OPTIONAL_COMPONENTS do not
#   test_package the Conan test_package/ CMake project against that prefix (no Conan needed)
#   pkg-config   the installed noclobber.pc, compiled by hand
#   add_subdirectory, FetchContent (FETCHCONTENT_SOURCE_DIR_NOCLOBBER + FULLY_DISCONNECTED, and a
#                real git clone of this checkout when it is one)
# Every CMake way builds two programs: consumer.cpp (noclobber::noclobber) and adapter_consumer.cpp
# (noclobber::sqlite + noclobber::postgres, which must carry SQLite and libpq).
#   single header  single_include/ alone, no CMake: the core program; every companion header
#                (adapters, asio, catch2, race_harness extras) compiled on its own; all of them in
#                two translation units linked together and run; adapter_consumer.cpp on the
#                sqlite and postgres companions, run
#
#   bash scripts/check_consumers.sh WORK_DIR      (CXX picks the compiler; default g++)
#
# After the install, the ways are independent of each other and run NOCLOBBER_CONSUMER_JOBS at a
# time (default 2: most of each is single-threaded CMake configuring, or one compiler process);
# each way's output is printed when all have finished, in the order below, with its seconds.
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
jobs_max=${NOCLOBBER_CONSUMER_JOBS:-2}
job_dir="$work/jobs"
mkdir -p "$job_dir"
job_names=()

step() { echo "--- consumer: $1"; }
quiet() { # run a command, show its output only when it fails
  local log
  log=$(mktemp "$work/quiet.XXXXXX") # one per call: the ways run at the same time
  "$@" >"$log" 2>&1 || { cat "$log" >&2; return 1; }
}
# job NAME FUNCTION [ARGS...]: run FUNCTION (under set -e) in the background, at most $jobs_max at
# once; its output goes to $job_dir/NAME.out, its status and seconds to $job_dir/NAME.rc.
job() {
  local name=$1
  shift
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  (
    set +e
    start=$SECONDS
    (set -e; "$@") >"$job_dir/$name.out" 2>&1
    echo "$? $((SECONDS - start))" >"$job_dir/$name.rc"
  ) &
  job_names+=("$name")
}
# finish_jobs: wait for every job, print each one's output in order; fails when any failed.
finish_jobs() {
  wait
  local name rc secs failed=()
  for name in "${job_names[@]}"; do
    read -r rc secs <"$job_dir/$name.rc"
    cat "$job_dir/$name.out"
    echo "    ($name: ${secs}s, exit $rc)"
    if [ "$rc" = 0 ]; then passed+=("$name"); else failed+=("$name"); fi
  done
  if [ "${#failed[@]}" -gt 0 ]; then
    echo "check_consumers.sh: failed: ${failed[*]} (passed: ${passed[*]})" >&2
    return 1
  fi
}
build_and_run() { # NAME SOURCE_DIR [cmake args...]
  local name=$1 src=$2
  shift 2
  quiet cmake -S "$src" -B "$work/$name" "${gen[@]}" "$@"
  quiet cmake --build "$work/$name" -j 2
  local exe="$work/$name/consumer"
  [ -x "$exe" ] || exe="$work/$name/test_package"
  "$exe"
  [ ! -x "$work/$name/adapter_consumer" ] || "$work/$name/adapter_consumer"
  # As a subproject noclobber must add none of its own tests, benchmarks or examples.
  local sub
  for sub in "$work/$name/noclobber" "$work/$name/_deps/noclobber-build"; do
    if [ -d "$sub/tests" ] || [ -d "$sub/bench" ] || [ -d "$sub/examples" ]; then
      echo "$name: noclobber added its own tests/benchmarks/examples as a subproject ($sub)" >&2
      return 1
    fi
  done
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

way_find_package() {
  step "find_package from the moved prefix"
  build_and_run find_package "$consumers/find_package" -DCMAKE_PREFIX_PATH="$prefix"
}

expect_configure() { # NAME yes|no PATTERN cmake args...: configure components_probe, check its result and output
  local name=$1 want=$2 pattern=$3 got=yes
  shift 3
  cmake -S "$consumers/components_probe" -B "$work/$name" "${gen[@]}" -DCMAKE_PREFIX_PATH="$prefix" "$@" \
    >"$work/$name.log" 2>&1 || got=no
  if [ "$got" != "$want" ] || ! grep -q -- "$pattern" "$work/$name.log"; then
    cat "$work/$name.log" >&2
    echo "components ($name): configure succeeded=$got (want $want), output lacks: $pattern" >&2
    return 1
  fi
}
way_components() {
step "components: unknown, library missing, optional"
expect_configure probe_all yes "probe: asio found=TRUE target=yes" -DNC_REQUIRED="json;sqlite;postgres;redis;etcd;http;asio;fmt"
expect_configure probe_unknown no "has no component 'sqlit'; its components are: json sqlite" -DNC_REQUIRED="sqlit"
# libpq hidden: find_dependency() forwards REQUIRED, so FindPostgreSQL itself stops the configure.
expect_configure probe_missing_lib no "Could NOT find PostgreSQL" -DNC_REQUIRED="sqlite;postgres" \
  -DCMAKE_IGNORE_PATH="/usr/include/postgresql"
expect_configure probe_optional yes "probe: postgres found=FALSE target=no" -DNC_REQUIRED=sqlite \
  -DNC_OPTIONAL="postgres;nosuch" -DCMAKE_DISABLE_FIND_PACKAGE_PostgreSQL=ON
expect_configure probe_hiredis_fallback yes "probe: redis found=TRUE target=yes" -DNC_REQUIRED=redis \
  -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON
# etcd carries json (nlohmann/json): asked for etcd alone, json comes along; optional etcd without
# nlohmann/json is not found (its JSON target would be missing), and nothing fails.
expect_configure probe_etcd_uses_json yes "probe: etcd found=TRUE target=yes" -DNC_REQUIRED=etcd
expect_configure probe_etcd_without_json yes "probe: etcd found=FALSE target=no" -DNC_OPTIONAL=etcd \
  -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON
}

way_test_package() {
  step "Conan test_package/ against the prefix"
  build_and_run test_package "$root/test_package" -DCMAKE_PREFIX_PATH="$prefix"
}

way_pkg_config() {
step "pkg-config"
pc_flags=$(PKG_CONFIG_PATH="$prefix/share/pkgconfig" pkg-config --cflags --libs "noclobber = $version")
# shellcheck disable=SC2086
"$cxx" -std=c++20 -O1 "$consumers/consumer.cpp" $pc_flags -o "$work/pkg_config_consumer"
"$work/pkg_config_consumer"
}

way_add_subdirectory() {
  step "add_subdirectory"
  build_and_run add_subdirectory "$consumers/add_subdirectory" -DNOCLOBBER_SOURCE_DIR="$root"
}

way_fetchcontent_source_dir() {
  step "FetchContent (FETCHCONTENT_SOURCE_DIR_NOCLOBBER, fully disconnected)"
  build_and_run fetchcontent_source_dir "$consumers/fetchcontent" -DFETCHCONTENT_SOURCE_DIR_NOCLOBBER="$root" \
    -DFETCHCONTENT_FULLY_DISCONNECTED=ON
}

way_fetchcontent_git() {
  step "FetchContent (git clone of this checkout at HEAD $head)"
  build_and_run fetchcontent_git "$consumers/fetchcontent" -DNOCLOBBER_GIT_REPOSITORY="$root" \
    -DNOCLOBBER_GIT_TAG="$head"
}

way_readme_fetchcontent() {
  # The README's FetchContent line as written, its URL swapped for a clone of this repository. The
  # release tag v<version> is used as it is when the repository has it (its version.hpp must say
  # that version); where it has none yet, the tag is made in the clone at HEAD.
  tag="v$version"
  step "the README's FetchContent line, GIT_TAG $tag, against a clone"
  clone="$work/clone.git"
  quiet git clone --quiet --bare --no-local "$root" "$clone"
  quiet git -C "$clone" fetch --quiet "$root" "$head"
  if git -C "$clone" rev-parse --quiet --verify "refs/tags/$tag^{commit}" >/dev/null; then
    tagged=$(git -C "$clone" show "$tag:include/noclobber/version.hpp" |
      sed -n 's/^#define NOCLOBBER_VERSION_STRING "\(.*\)"/\1/p')
    if [ "$tagged" != "$version" ]; then
      echo "tag $tag exists, but its include/noclobber/version.hpp says '$tagged'" >&2
      exit 1
    fi
    echo "tag $tag: the repository's own, at $(git -C "$clone" rev-parse --short "$tag^{commit}")"
  else
    git -C "$clone" tag "$tag" "$head"
    echo "tag $tag: not in the repository yet; made in the clone at HEAD"
  fi
  readme_line=$(grep -o 'FetchContent_Declare(noclobber GIT_REPOSITORY [^)]*)' "$root/README.md" | head -n 1)
  readme_url=$(echo "$readme_line" | sed 's/.*GIT_REPOSITORY \([^ ]*\) .*/\1/')
  [[ "$readme_line" == *"GIT_TAG $tag)"* ]] || {
    echo "README.md's FetchContent line does not pin GIT_TAG $tag: $readme_line" >&2
    exit 1
  }
  mkdir -p "$work/readme_fetchcontent_src"
  cat >"$work/readme_fetchcontent_src/CMakeLists.txt" <<EOF_CMAKE
cmake_minimum_required(VERSION 3.21)
project(consumer LANGUAGES CXX)
include(FetchContent)
${readme_line//$readme_url/$clone}
FetchContent_MakeAvailable(noclobber)
add_executable(consumer "$consumers/consumer.cpp")
target_link_libraries(consumer PRIVATE noclobber::noclobber)
EOF_CMAKE
  build_and_run readme_fetchcontent "$work/readme_fetchcontent_src"
}

way_single_header() {
step "single header (single_include/ only, no CMake)"
"$cxx" -std=c++20 -O1 -Wall -Wextra -Wpedantic -Werror -pthread -DNOCLOBBER_EXPECT_SINGLE_HEADER \
  -I "$root/single_include" "$consumers/consumer.cpp" -o "$work/single_header_consumer"
"$work/single_header_consumer"
}

way_single_header_companions() {
step "single header + each companion header (single_include/ only, no CMake)"
single="$root/single_include"
mapfile -t companions < <(cd "$single" && find noclobber -name '*.hpp' ! -path noclobber/noclobber.hpp | sort)
# The client libraries of every companion; Boost and Catch2 are header-only in /usr/include.
# shellcheck disable=SC2207
lib_cflags=($(pkg-config --cflags sqlite3 libpq hiredis libcurl benchmark fmt))
# shellcheck disable=SC2207
lib_libs=($(pkg-config --libs sqlite3 libpq hiredis libcurl benchmark fmt))
strict=(-std=c++20 -O1 -Wall -Wextra -Wpedantic -Werror -pthread -I "$single" "${lib_cflags[@]}")
tus="$work/companions"
mkdir -p "$tus"
only_single='#if __has_include(<noclobber/outcome.hpp>)
#error "include/ is on the include path: this build must see only single_include/"
#endif'
for c in "${companions[@]}"; do
  printf '#include <noclobber/noclobber.hpp>\n#include <%s>\n%s\n' "$c" "$only_single" >"$tus/$(echo "$c" | tr / _).cpp"
done
# Each on its own (syntax only: the all-in-one build below compiles and links them). The single
# header is 13,800 lines, parsed once into a precompiled header that each check takes in first
# (-include); the check's own #include of it is then skipped by its #pragma once, as in any
# program that includes it twice. (g++: a check 4.5 -> 2.7 s; a compiler that cannot use the
# precompiled header parses the header instead.)
printf '#include <noclobber/noclobber.hpp>\n' >"$tus/single.hpp"
"$cxx" "${strict[@]}" -x c++-header "$tus/single.hpp" -o "$tus/single.hpp.gch"
printf '%s\0' "$tus"/*.cpp | xargs -0 -P 2 -I{} "$cxx" "${strict[@]}" -Winvalid-pch -include "$tus/single.hpp" -fsyntax-only {}
# All together, in both orders, in two translation units linked into one program.
{ printf '#include <%s>\n' "${companions[@]}"; echo "$only_single"; } >"$tus/all_a.cpp.in"
{ printf '#include <%s>\n' "${companions[@]}" | tac; echo "int main() { return 0; }"; } >"$tus/all_b.cpp.in"
"$cxx" "${strict[@]}" -x c++ "$tus/all_a.cpp.in" -x c++ "$tus/all_b.cpp.in" "${lib_libs[@]}" -o "$work/all_companions"
"$work/all_companions"
# The component consumer program on the sqlite and postgres companions.
"$cxx" "${strict[@]}" "$consumers/adapter_consumer.cpp" $(pkg-config --libs sqlite3 libpq) -o "$work/single_adapter_consumer"
"$work/single_adapter_consumer"
echo "${#companions[@]} companions: ${companions[*]}"
}

# The longest first, so that the last to start are short.
job single-header-companions way_single_header_companions
job find_package way_find_package
job components way_components
job test_package way_test_package
job pkg-config way_pkg_config
job add_subdirectory way_add_subdirectory
job fetchcontent_source_dir way_fetchcontent_source_dir
if head=$(git -C "$root" rev-parse HEAD 2>/dev/null); then
  job fetchcontent_git way_fetchcontent_git
  job readme_fetchcontent way_readme_fetchcontent
fi
job single-header way_single_header
finish_jobs

echo "check_consumers.sh: ${#passed[@]} consumer paths passed: ${passed[*]}"
