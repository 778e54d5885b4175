#!/bin/sh
# A compiler launcher (tests/CMakeLists.txt, NOCLOBBER_SERVER_TESTS_SYNTAX_ONLY):
#   syntax_only.sh COMPILER ARGS...   runs COMPILER ARGS... -fsyntax-only (every diagnostic, no
#                                     code; the dependency file is still written) and, when that
#                                     passes, leaves an empty file at -o's path for the build tool.
out=
prev=
for arg in "$@"; do
  [ "$prev" = -o ] && out=$arg
  prev=$arg
done
"$@" -fsyntax-only || exit
[ -z "$out" ] || : >"$out"
