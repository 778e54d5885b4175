#!/usr/bin/env python3
"""Every file and section the docs point at exists.

In README.md and docs/**/*.md (outside fenced code blocks):
  * a relative Markdown link `[text](target)` or `![alt](target)` must name a file or folder
    that exists (relative to the page), and a `#section` must be a heading of that page (GitHub's
    anchor rules: lower case, punctuation dropped, spaces to hyphens);
  * a file name in the text or in `code` (`tests/test_race_harness.cpp`, `race_harness/history.hpp`,
    `bench_read_modify_write.cpp`, `scripts/demo.sh`) must name a tracked file: a path is taken
    relative to the repository root, to `include/`, to the page's folder, or as the tail of a
    tracked path (`race_harness/history.hpp`); a bare name must be the name of some tracked file.
Names that are not meant as this repository's files (a user's `app.cpp`) are listed in NOT_OURS.
Exits 1 naming each page, line and reference that points nowhere.
"""
import pathlib
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from check_doc_examples import ROOT, doc_pages, prose_lines, report  # noqa: E402

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# A file name with one of our extensions, optionally with folders; not part of a URL or a longer word.
FILE = re.compile(r"(?<![\w./:-])((?:[\w.-]+/)*[\w.-]*\w\.(?:cpp|hpp|md|py|sh|txt|cmake|json|svg))(?![\w/])")
NOT_OURS = {
    "app.cpp",  # README: the user's program in a compile command
    "../consumer.cpp",  # building.md: relative to a consumer project's CMakeLists.txt
    "noclobberConfig.cmake",  # building.md: files the install generates
    "noclobberTargets.cmake",
    "noclobberConfigVersion.cmake",
}


def tracked_files():
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
        return [p for p in out.splitlines() if p]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file under ROOT
        return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]


def slug(heading):
    """GitHub's anchor for a heading text."""
    text = re.sub(r"`|\*|_(?=\W)|(?<=\W)_", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        seen, found = {}, set()
        for _, line in prose_lines(path):
            m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if not m:
                continue
            base = slug(m.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        cache[path] = found
    return cache[path]


def main():
    files = tracked_files()
    file_set = set(files)
    names = {pathlib.PurePosixPath(p).name for p in files}
    errors, checked = [], 0

    def file_exists(ref, page_dir):
        ref = ref.rstrip(".")
        if "/" not in ref:
            return ref in names
        candidates = [ref, "include/" + ref, str((page_dir / ref).resolve().relative_to(ROOT)) if
                      (page_dir / ref).resolve().is_relative_to(ROOT) else ref]
        if any(c in file_set or (ROOT / c).is_dir() for c in candidates):
            return True
        return any(p.endswith("/" + ref) for p in files)

    for doc in doc_pages():
        rel = doc.relative_to(ROOT)
        page_dir = doc.parent
        for n, line in prose_lines(doc):
            where = f"{rel}:{n}"
            plain = CODE_SPAN.sub(" ", line)
            for m in LINK.finditer(plain):
                target = m.group(1)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                checked += 1
                path_part, _, anchor = target.partition("#")
                dest = (page_dir / path_part).resolve() if path_part else doc
                if not dest.exists():
                    errors.append(f"{where}: link to {target}: {path_part} does not exist")
                elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    errors.append(f"{where}: link to {target}: {dest.relative_to(ROOT)} has no section '#{anchor}'")
            # File names in prose and in code spans (links were checked above: drop their targets).
            text = LINK.sub(lambda m: m.group(0).split("](")[0], line)
            for m in FILE.finditer(text):
                ref = m.group(1)
                if ref in NOT_OURS:
                    continue
                if ref.startswith("../") or ref.startswith("./"):
                    ref_path = (page_dir / ref).resolve()
                    ok = ref_path.exists()
                else:
                    ok = file_exists(ref, page_dir)
                checked += 1
                if not ok:
                    errors.append(f"{where}: names {ref}, which is not a file in this repository")
    return report("check_doc_links.py", "links and file names", checked, errors)


if __name__ == "__main__":
    sys.exit(main())
