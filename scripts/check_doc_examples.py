#!/usr/bin/env python3
"""Every code example in the docs is a real file that CI compiles and runs.

A fenced block in README.md or docs/**/*.md whose first line is `// example: examples/<file>`
(C++) or `# example: <path>` (CMake: the consumer projects under tests/cmake_consumer/ and
test_package/) must equal that file byte for byte; the file itself starts with the same comment
line. Exits 1 naming each block that differs or names a missing file.

The pages, their fenced blocks and the report are shared with scripts/check_doc_links.py.
"""
import difflib
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARK = re.compile(r"^(?://|#) example: ((?:examples|tests/cmake_consumer|test_package)/\S+)$")
FENCE = re.compile(r"^(\s*)(```+|~~~+)(.*)$")


def doc_pages():
    """README.md and every docs/**/*.md page."""
    return [p for p in [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md")) if p.is_file()]


def prose_lines(path):
    """(line number, text) of each line outside fenced code blocks."""
    fence = None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = FENCE.match(line)
        if m and fence is None:
            fence = m.group(2)
        elif m and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            yield n, line


def report(script, what, checked, errors):
    """Prints the errors and a summary line; the exit status."""
    for e in errors:
        print(f"{script}: {e}", file=sys.stderr)
    print(f"{script}: {checked} {what} checked, {len(errors)} problems")
    return 1 if errors else 0


def blocks(path):
    """(line number, first line, body text) of each fenced block."""
    lines = path.read_text().splitlines(keepends=True)
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i].rstrip("\n"))
        if not m:
            i += 1
            continue
        indent, fence = m.group(1), m.group(2)
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].rstrip("\n").strip().startswith(fence):
            j += 1
        body = [l[len(indent):] if l.startswith(indent) else l for l in lines[start:j]]
        yield start + 1, "".join(body)
        i = j + 1


def main():
    errors, checked = [], 0
    for doc in doc_pages():
        rel_doc = doc.relative_to(ROOT)
        for line_no, body in blocks(doc):
            first = body.split("\n", 1)[0]
            m = MARK.match(first)
            if not m:
                continue
            checked += 1
            target = ROOT / m.group(1)
            where = f"{rel_doc}:{line_no}"
            if not target.is_file():
                errors.append(f"{where}: names {m.group(1)}, which does not exist")
                continue
            text = target.read_text()
            if text != body:
                diff = "".join(difflib.unified_diff(text.splitlines(True), body.splitlines(True),
                                                    m.group(1), f"{where} (doc block)", n=1))
                errors.append(f"{where}: block differs from {m.group(1)}:\n{diff}")
    return report("check_doc_examples.py", "doc examples", checked, errors)


if __name__ == "__main__":
    sys.exit(main())
