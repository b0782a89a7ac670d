"""The `check`, `baseline` and `history` commands: a thin layer over bench.regression.

Kept apart from it so that every other command starts without importing pandas.
"""
from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile

from .errors import BenchError, UsageError

FORMATS = ("text", "json", "markdown")


def _run_now(rerun: list[str], directory: pathlib.Path) -> pathlib.Path:
    """Repeat the baseline's run (`python -m bench RERUN`) into directory; the new results file."""
    if rerun[:2] == ["vm", "run"]:
        split = rerun.index("--")
        command = [*rerun[:split], "--results", str(directory), *rerun[split:]]
    else:
        command = [*rerun, "--output", str(directory / "current.json")]
    print(f"check: running python -m bench {' '.join(command)}", file=sys.stderr, flush=True)
    # The run's own output goes to stderr: stdout carries only the check's table.
    proc = subprocess.run([sys.executable, "-m", "bench", *command], stdout=sys.stderr)
    found = sorted(directory.glob("*.json"))
    if proc.returncode or not found:
        raise BenchError(f"the run to check failed (exit status {proc.returncode}); nothing was compared")
    return found[0]


def _cmd_check(args) -> int:
    from . import analysis as A
    from . import regression as R

    if args.baseline_window is not None and args.current is None:
        raise UsageError("--baseline-window needs --current: the runs before it form the baseline")
    with tempfile.TemporaryDirectory(prefix="vmexec-check-") as tmp:
        if args.baseline_window is not None:
            baseline = R.from_window(args.current, args.baseline_window)
        else:
            baseline = R.load(args.baseline)
        current = args.current or _run_now(baseline.rerun, pathlib.Path(tmp))
        df = A.load([current])
        elsewhere = R.differences(R.machine(baseline.values), R.machine(df))
        table = R.check(baseline, df, force=args.force or args.warn_only)
    print(R.render(table, baseline, args.format))
    named = R.regressed_backends(table)
    if named and args.warn_only:
        print(f"check: warning only: regression in {', '.join(named)}"
              + (f" (the baseline was taken on another machine: {elsewhere})" if elsewhere else ""), file=sys.stderr)
        return 0
    if named:
        raise BenchError(f"regression in {', '.join(named)}")
    return 0


def _cmd_baseline(args) -> int:
    from . import regression as R

    written = R.write(args.runs, args.output, force=args.force)
    b = R.load(written)
    print(f"baseline: {written} ({len(b.runs)} run(s); "
          + (f"noise measured for {len(b.noise)} ratios" if b.noise else "noise not measured: one run") + ")")
    return 0


def _cmd_history(args) -> int:
    from . import plots, results
    from . import regression as R
    from .errors import writable_directory

    paths = args.results or [p for p in sorted(results.directory().glob("*.json"))
                             if results.classify(results.read_json(p)) != "rfc"]
    if not paths:
        raise UsageError(f"no results in {results.directory()}")
    h = R.history(paths)
    out = args.output or results.directory() / "history"
    writable_directory(out, create=True)
    h.to_csv(out / "history.csv", index=False, float_format="%.6g")
    plots.save(plots.plot_history(h), out, "history")
    for (where, case), g in h.groupby(["machine", "case"], sort=True):
        series = " → ".join(f"{r:.3g}" for r in g["ratio"])
        print(f"{where:20} {case:60} {series}")
    print(f"history: {out / 'history.csv'}, {out / 'history.png'} ({h['run_id'].nunique()} runs)")
    return 0


def _count(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    if k < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {k}")
    return k


def register_cli(subparsers) -> None:
    k = subparsers.add_parser("check", help="judge a run against a baseline (exit 1 on a regression)")
    source = k.add_mutually_exclusive_group(required=True)
    source.add_argument("--baseline", type=pathlib.Path, metavar="FILE", help="a baseline (bench baseline)")
    source.add_argument("--baseline-window", type=_count, metavar="K",
                        help="the last K earlier runs of the current run's machine in the results directory")
    k.add_argument("--current", type=pathlib.Path, metavar="FILE",
                   help="the run to judge (default: run now, with the baseline's options)")
    k.add_argument("--format", choices=FORMATS, default="text",
                   help="text, json, or markdown (for a CI job summary)")
    k.add_argument("--force", action="store_true", help="judge even if the baseline was taken on another machine")
    k.add_argument("--warn-only", action="store_true",
                   help="judge (on any machine) but only warn: exit 0 even on a regression")
    k.set_defaults(func=_cmd_check)

    b = subparsers.add_parser("baseline", help="write a baseline from runs of the same code on one machine")
    b.add_argument("runs", nargs="+", type=pathlib.Path, metavar="RUN",
                   help="results files; two or more measure each ratio's run-to-run noise")
    b.add_argument("--output", type=pathlib.Path, required=True, metavar="FILE")
    b.add_argument("--force", action="store_true", help="replace a baseline taken on another machine")
    b.set_defaults(func=_cmd_baseline)

    h = subparsers.add_parser("history", help="each backend's ratio to ptrace-sysemu across runs")
    h.add_argument("results", nargs="*", type=pathlib.Path, metavar="RESULT",
                   help="results files (default: every run in the results directory)")
    h.add_argument("--output", type=pathlib.Path, help="directory (default: history/ in the results directory)")
    h.set_defaults(func=_cmd_history)
