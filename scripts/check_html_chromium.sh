#!/usr/bin/env bash
# Renders race report pages in headless Chromium and checks each: the page's script ran to its
# end (body data-rendered="yes"), raised no error (no data-errors, empty #errors), and shows one
# red mark per lost write (data-lost-marks equals the count the page was written with).
#
#   bash scripts/check_html_chromium.sh PAGES_PROGRAM     writes the pages with it, then checks
#   bash scripts/check_html_chromium.sh --page FILE N     checks one page that lost N writes
#
# Needs Debian's chromium (apt-get install chromium); $NOCLOBBER_CHROMIUM names another binary.
# ctest runs it as race_html_chromium where chromium is installed.
#
# Time: the pages' script is synchronous (no timers), so the virtual-time budget is never what a
# run waits for; the wall time is Chromium's start (~15 s each on a 2-core machine at load 15)
# and parsing, laying out and dumping the 5 MB 64 x 100 page (~65 s there; 3 s idle). Each page
# is bounded by $NOCLOBBER_CHROMIUM_PAGE_TIMEOUT seconds (default 240) and its time is printed,
# so a slow machine shows as a named slow page, not as ctest killing the whole check.
set -euo pipefail
chromium=${NOCLOBBER_CHROMIUM:-chromium}
page_timeout=${NOCLOBBER_CHROMIUM_PAGE_TIMEOUT:-240}
command -v "$chromium" >/dev/null || { echo "check_html_chromium: $chromium not found" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check_page() { # FILE LOST
  local file=$1 lost=$2 dom body rc=0 started=$SECONDS
  dom="$work/$(basename "$file").dom"
  # --virtual-time-budget lets a timer the page might start fire before the DOM is dumped.
  timeout --kill-after=10 "$page_timeout" "$chromium" --headless --no-sandbox --disable-gpu \
    --user-data-dir="$work/profile" --virtual-time-budget=20000 --dump-dom "file://$(realpath "$file")" \
    >"$dom" 2>"$work/stderr" || rc=$?
  if [ "$rc" != 0 ]; then
    tail -n 20 "$work/stderr" >&2
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      echo "check_html_chromium: chromium did not finish $file in ${page_timeout} s" >&2
    else
      echo "check_html_chromium: chromium failed on $file (exit $rc)" >&2
    fi
    return 1
  fi
  echo "  $(basename "$file"): rendered in $((SECONDS - started)) s" 
  body=$(grep -o '<body[^>]*>' "$dom" | head -n 1)
  local ok=1
  [[ $body == *'data-rendered="yes"'* ]] || { echo "  $file: the script did not finish ($body)"; ok=0; }
  [[ $body != *'data-errors'* ]] || { echo "  $file: script errors: $(grep -o '<pre id="errors">[^<]*' "$dom")"; ok=0; }
  [[ $body == *"data-lost-marks=\"$lost\""* ]] || { echo "  $file: expected $lost lost marks ($body)"; ok=0; }
  if [ "$lost" -gt 0 ] && ! grep -q 'class="m write ok lost"' "$dom"; then
    echo "  $file: no lost write mark in the rendered DOM"
    ok=0
  fi
  [ "$ok" = 1 ] && echo "  ok: $file ($body)"
  [ "$ok" = 1 ]
}

if [ "${1:-}" = "--page" ]; then
  check_page "$2" "$3"
  exit
fi
pages=$("$1" "$work/pages")
failed=0
while read -r file lost; do
  check_page "$file" "$lost" || failed=1
done <<<"$pages"
exit "$failed"
