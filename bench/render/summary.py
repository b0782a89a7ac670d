"""The table `bench run` prints: ns per syscall per case, from the suite it wrote."""
from __future__ import annotations

import pathlib

import pyperf

from bench.render.document import table as _table, to_text


def table(path: pathlib.Path) -> str:
    suite = pyperf.BenchmarkSuite.load(str(path))
    rows = []
    for bench in suite.get_benchmarks():
        median, stdev = bench.median() * 1e9, (bench.stdev() * 1e9 if bench.get_nvalue() > 1 else 0.0)
        rows.append((bench.get_name(), f"{median:,.1f}", f"± {stdev:,.1f}", f"{100 * stdev / median:.1f}%"))
    return to_text([_table(("case", "ns/syscall", "std dev", "rel. std"), rows)])
