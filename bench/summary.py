"""The table `bench run` prints: ns per syscall per case, from the suite it wrote."""
from __future__ import annotations

import pathlib

import pyperf


def table(path: pathlib.Path) -> str:
    suite = pyperf.BenchmarkSuite.load(str(path))
    rows = [("case", "ns/syscall", "std dev", "rel. std")]
    for bench in suite.get_benchmarks():
        median, stdev = bench.median() * 1e9, (bench.stdev() * 1e9 if bench.get_nvalue() > 1 else 0.0)
        rows.append((bench.get_name(), f"{median:,.1f}", f"± {stdev:,.1f}", f"{100 * stdev / median:.1f}%"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
