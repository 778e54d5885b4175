#!/usr/bin/env python3
"""Instructions per call of the kmm_cycle_* and peer_cycle<...> functions of bench_keyed_mutex_map,
from callgrind.

  valgrind --tool=callgrind --callgrind-out-file=cg.out \\
      BUILD/bench/keyed_mutex_map/bench_keyed_mutex_map --benchmark_filter='BM_kmm|BM_cycle' --benchmark_min_time=0.01
  python3 bench/keyed_mutex_map/callgrind_cost.py cg.out

Prints, per benchmark (the caller) and cycle function (the callee): calls, and the callee's
inclusive instruction count divided by its calls. Instruction counts do not depend on the load of
the machine, unlike nanoseconds, so before/after comparisons of one path hold on a shared machine.
"""
import re
import sys
from collections import defaultdict

NAME_RE = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")


def short(name):
    return re.sub(r"\(.*", "", name.replace("(anonymous namespace)::", ""))


def parse(path):
    names = {}
    totals = defaultdict(lambda: [0, 0])  # (caller, callee) -> [calls, inclusive Ir]
    fn = callee = None
    pending_calls = None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            m = NAME_RE.match(line)
            if m:
                kind, ident, name = m.groups()
                if name:
                    names[ident] = name
                if kind == "fn":
                    fn = names.get(ident, ident)
                else:
                    callee = names.get(ident, ident)
                continue
            if line.startswith("calls="):
                pending_calls = int(line.split("=", 1)[1].split()[0])
                continue
            if pending_calls is not None:
                fields = line.split()
                cost = int(fields[1]) if len(fields) > 1 else 0
                if callee and ("kmm_cycle_" in callee or "peer_cycle<" in callee):
                    t = totals[(short(fn), short(callee))]
                    t[0] += pending_calls
                    t[1] += cost
                pending_calls = None
    return totals


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    totals = parse(sys.argv[1])
    if not totals:
        sys.exit("no kmm_cycle_* or peer_cycle<...> calls in " + sys.argv[1])
    print(f"{'benchmark':<28} {'cycle function':<24} {'calls':>10} {'instructions/call':>18}")
    for (caller, callee), (calls, cost) in sorted(totals.items()):
        print(f"{caller:<28} {callee:<24} {calls:>10} {cost / calls:>18.1f}")


if __name__ == "__main__":
    main()
