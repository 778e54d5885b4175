#!/bin/sh
# A compiler and linker launcher for diagnostics-only builds (NOCLOBBER_SERVER_TESTS_SYNTAX_ONLY in
# tests/CMakeLists.txt, NOCLOBBER_EXAMPLES_SYNTAX_ONLY in examples/CMakeLists.txt):
#   syntax_only.sh COMPILER ARGS...            runs COMPILER ARGS... -fsyntax-only (every diagnostic,
#                                              no code; the dependency file is still written) and,
#                                              when that passes, leaves an empty file at -o's path
#   syntax_only.sh --no-link LINKER ARGS...    links nothing; leaves an empty file at -o's path
# The empty files are only there so that the build tool sees its outputs and does not redo them.
link=yes
if [ "$1" = --no-link ]; then
  link=no
  shift
fi
out=
prev=
for arg in "$@"; do
  [ "$prev" = -o ] && out=$arg
  prev=$arg
done
if [ "$link" = yes ]; then
  "$@" -fsyntax-only || exit
fi
[ -z "$out" ] || : >"$out"
