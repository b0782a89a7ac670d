"""What `bench run` prints at its end: ns per syscall per case, each backend's speed-up over PTRACE_SYSEMU
(in the manner of hyperfine's summary) and, once, what pyperf warned about."""
from __future__ import annotations

import pathlib

import numpy as np
import pyperf

from bench import stats
from bench.render.document import table as _table, to_text

#: The table's columns: the median (what the report and every ratio use), not pyperf's mean.
COLUMNS = ("case", "median ns/syscall", "std dev (ns)", "std dev / median")


def table(path: pathlib.Path) -> str:
    suite = pyperf.BenchmarkSuite.load(str(path))
    rows = []
    for bench in suite.get_benchmarks():
        median, stdev = bench.median() * 1e9, (bench.stdev() * 1e9 if bench.get_nvalue() > 1 else 0.0)
        rows.append((bench.get_name(), f"{median:,.1f}", f"± {stdev:,.1f}", f"{100 * stdev / median:.1f}%"))
    return to_text([_table(COLUMNS, rows)])


def _times(n: float, error: float) -> str:
    return f"{n:.2f} ± {error:.2f}" if n < 100 else f"{n:,.0f} ± {error:,.0f}"


def speedups(path: pathlib.Path, reference: str = stats.SYSEMU) -> list[str]:
    """'X ran N.NN ± e times faster than ptrace-sysemu' for every backend measured beside the reference at the
    same pinning (an in-process backend: at the preferred one), no pages, one pair; [] without the reference.

    N is median(reference) / median(X) in this run; e is the standard deviation of the bootstrap speed-ups
    (workers resampled, bench.stats.paired_ratios) and the bracket their 95% interval.
    """
    df = stats.load([path])
    if reference not in set(df["backend"]):
        return []
    lines = []
    for backend in df["backend"].unique():
        if backend == reference:
            continue
        pairs = list(stats.paired_ratios(df, backend, reference))
        if any(p.numerator_pin != stats.IN_PROCESS for p in pairs):
            pairs = [p for p in pairs if p.numerator_pin == p.denominator_pin]
        else:       # an in-process backend: once, against the preferred pinning of the reference
            pairs = pairs[:1]
        for p in pairs:
            boot = 1 / p.boot
            speedup, error = 1 / p.ratio, float(np.std(boot, ddof=1))
            low, high = np.percentile(boot, [2.5, 97.5])
            slower = speedup < 1
            n, e = (1 / speedup, error / speedup ** 2) if slower else (speedup, error)
            interval = "–".join(f"{x:.3g}" for x in ((1 / high, 1 / low) if slower else (low, high)))
            where = f"pin={p.pin}" if p.numerator_pin == p.denominator_pin else f"against pin={p.denominator_pin}"
            lines.append(f"  {backend} ran {_times(n, e)} times {'slower' if slower else 'faster'} "
                         f"than {reference} ({where}; 95% CI {interval})")
    return lines


def summary(path: pathlib.Path, reference: str = stats.SYSEMU) -> str:
    """The speed-up lines under a heading, or one line saying why there are none."""
    lines = speedups(path, reference)
    if not lines:
        return f"summary: no {reference} case in this run, so no speed-up over it"
    return (f"summary (speed-up = median {reference} / median backend, same run, same pinning; "
            f"± the bootstrap standard deviation):\n" + "\n".join(lines))


#: pyperf's warnings (pyperf._cli.format_checks), by the start of their text, and the word they are counted under.
WARNING_KINDS = (("the standard deviation", "unstable (std dev >= 10% of the mean)"),
                 ("Not enough samples", "too few samples for 1% precision"),
                 ("the minimum", "outliers (min or max 50% from the mean)"),
                 ("the maximum", "outliers (min or max 50% from the mean)"),
                 ("the shortest raw value", "values under 1 ms"))


def pyperf_warnings(path: pathlib.Path) -> dict[str, list[str]]:
    """The cases pyperf would have warned about, by kind of warning (WARNING_KINDS), from the written suite."""
    from pyperf._cli import format_checks      # what pyperf prints under 'WARNING: ... may be unstable'

    found: dict[str, list[str]] = {}
    for bench in pyperf.BenchmarkSuite.load(str(path)).get_benchmarks():
        for line in format_checks(bench):
            if not line.startswith("* "):
                continue
            kind = next((k for start, k in WARNING_KINDS if line[2:].startswith(start)), line[2:])
            if bench.get_name() not in found.setdefault(kind, []):
                found[kind].append(bench.get_name())
    return found


def warnings_line(path: pathlib.Path) -> str | None:
    """'pyperf warned about N of M cases: K unstable ..., (see python -m pyperf check PATH)', or None."""
    found = pyperf_warnings(path)
    if not found:
        return None
    cases = {c for names in found.values() for c in names}
    total = len(pyperf.BenchmarkSuite.load(str(path)).get_benchmarks())
    kinds = "; ".join(f"{len(names)} {kind}" for kind, names in found.items())
    return (f"pyperf warned about {len(cases)} of {total} cases: {kinds} "
            f"(details: python -m pyperf check {path})")
