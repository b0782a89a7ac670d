"""The `report`, `compare` and `check` commands: a thin layer over bench.report and bench.analysis.

Kept apart from them so that every other command starts without importing
pandas and matplotlib.
"""
from __future__ import annotations

import argparse
import math
import pathlib

from .errors import BenchError, UsageError


def _cmd_report(args) -> int:
    from . import results
    from .report import write_report

    paths = args.results or results.newest()
    written = write_report(paths, args.output or results.directory() / "report")
    print(written["report.md"].read_text().splitlines()[0])     # the verdict
    plots = [name for name in written if name.endswith((".png", ".svg"))]
    print(f"report: {written['report.md']} and {written['report.html']} ({len(plots)} plot files, "
          f"every case in {written['cases.csv'].name})")
    return 0


def _cmd_compare(args) -> int:
    from . import analysis as A
    from .report import format_compare

    a, b = A.load([args.a]), A.load([args.b])
    c = A.compare(a, b)
    if c.empty:
        raise UsageError(f"{args.a} and {args.b} have no case in common")
    print(format_compare(c, a["run_id"].iloc[0], b["run_id"].iloc[0]))
    print(f"change = B median / A median; significance at 95%: {A.WELCH.removesuffix(' (95%)')} where values "
          f"vary, an exact comparison where both runs are deterministic (icount)")
    return 0


def _cmd_check(args) -> int:
    from . import analysis as A

    df = A.load([args.result])
    for name in (args.backend, args.baseline):
        if name not in set(df["backend"]):
            raise UsageError(f"{args.result}: no {name!r} results (has: {', '.join(sorted(df['backend'].unique()))})")
    r = A.ratios(df, args.backend, args.baseline)
    if args.pin:
        r = r[r["pin"] == args.pin]
    if r.empty:
        raise UsageError(f"{args.result}: {args.backend} and {args.baseline} were not measured at a common pinning"
                         + (f" {args.pin}" if args.pin else ""))
    bad = []
    for _, row in r.iterrows():
        over = row["ratio"] > args.max_ratio
        print(f"{args.backend} / {args.baseline} (pin={row['pin']}): {row['ratio']:.3f} "
              f"(95% CI {row['ratio_low']:.3f}–{row['ratio_high']:.3f}), limit {args.max_ratio:g}: "
              + ("FAIL" if over else "ok"))
        bad += [row["pin"]] if over else []
    if bad:
        raise BenchError(f"{args.backend} costs more than {args.max_ratio:g}x {args.baseline} "
                         f"(pin={', '.join(bad)})")
    return 0


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("report", help="write report.md, report.html and plots from results")
    p.add_argument("results", nargs="*", type=pathlib.Path, metavar="RESULT",
                   help="pyperf suites and RFC-replica files (default: the newest host run, guest run "
                        "and RFC replica in the results directory, ./results or $VMEXEC_RESULTS_DIR)")
    p.add_argument("--output", type=pathlib.Path,
                   help="directory for the report (default: report/ in the results directory)")
    p.set_defaults(func=_cmd_report)

    c = subparsers.add_parser("compare", help="per-case change between two runs, with significance")
    c.add_argument("a", type=pathlib.Path, metavar="A.json")
    c.add_argument("b", type=pathlib.Path, metavar="B.json")
    c.set_defaults(func=_cmd_compare)

    k = subparsers.add_parser("check", help="fail (exit 1) if BACKEND costs more than R x BASELINE in one run")
    k.add_argument("result", type=pathlib.Path, metavar="RESULT")
    k.add_argument("--backend", required=True)
    k.add_argument("--baseline", default="ptrace-sysemu")
    k.add_argument("--max-ratio", type=_positive, required=True,
                   help="largest allowed median(BACKEND) / median(BASELINE)")
    k.add_argument("--pin", help="only this pinning (default: every pinning both were measured at)")
    k.set_defaults(func=_cmd_check)
