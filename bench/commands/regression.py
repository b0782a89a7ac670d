"""The `check`, `baseline` and `history` commands: a thin layer over bench.regression and
bench.render.regression.

Kept apart from it so that every other command starts without importing pandas.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

from bench.errors import BenchError, UsageError, writable_directory

FORMATS = ("text", "json", "markdown")


def _cmd_check(args) -> int:
    from bench import stats
    from bench.measure import continuous
    from bench import regression as R
    from bench.render.regression import render

    if args.baseline_window is not None and args.current is None:
        raise UsageError("--baseline-window needs --current: the runs before it form the baseline")
    if args.command and args.against is None:
        raise UsageError("a command after -- is what --against measures; with a baseline its own run is repeated")
    if args.results is not None and args.against is None:
        raise UsageError("--results keeps the two runs of --against")
    if args.against is not None and args.current is not None:
        raise UsageError("--against measures both trees now: it takes no --current")
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    forced = args.force or args.warn_only
    with tempfile.TemporaryDirectory(prefix="vmexec-check-") as tmp:
        if args.against is not None:
            baseline, current = _against(args, pathlib.Path(tmp))
        else:
            baseline = R.from_window(args.current, args.baseline_window) if args.baseline_window is not None \
                else R.load(args.baseline)
            current = args.current
            if current is None:
                # Refused before anything is measured: what the run would record here, against the baseline.
                R.refuse_foreign(baseline, continuous.machine_for(baseline.rerun), force=forced)
                current = continuous.run_bench(baseline.rerun, pathlib.Path(tmp) / "current")
        df = stats.load([current])
        __import__("bench.results").results.warn_if_busy([current])
        elsewhere = R.differences(R.machine(baseline.values), R.machine(df))
        table = R.check(baseline, df, force=forced or args.against is not None)
    print(render(table, baseline, args.format))
    if elsewhere and args.against is not None:
        print(f"check: note: the two trees' runs differ in {elsewhere}", file=sys.stderr)
    named = R.regressed_backends(table)
    if named and args.warn_only:
        print(f"check: warning only: regression in {', '.join(named)}"
              + (f" (the baseline was taken on another machine: {elsewhere})" if elsewhere else ""), file=sys.stderr)
        return 0
    if named:
        raise BenchError(f"regression in {', '.join(named)}")
    return 0


def _against(args, tmp: pathlib.Path):
    """(one-run baseline from the comparison commit, this tree's results file), both measured now."""
    from bench.measure import continuous
    from bench import regression as R

    revision = continuous.resolve(args.against)
    command = list(args.command or continuous.DEFAULT_RUN)
    where = args.results or tmp
    if args.results is not None:
        writable_directory(args.results, create=True)
    reference, current, seconds = continuous.against(revision, command, where)
    print(f"check: the pair of runs took {sum(seconds.values()):.0f} s ({revision.asked} "
          f"{revision.short}: {seconds['reference']:.0f} s, export and driver build included; "
          f"this tree: {seconds['current']:.0f} s)" + (f"; both kept in {where}" if args.results else ""),
          file=sys.stderr)
    baseline = R.from_run(reference, command, f"{revision.asked} ({revision.short}) measured now")
    return baseline, current


def _cmd_baseline(args) -> int:
    from bench import regression as R

    written = R.write(args.runs, args.output, force=args.force)
    b = R.load(written)
    print(f"baseline: {written} ({len(b.runs)} run(s); "
          + (f"noise measured for {len(b.noise)} ratios" if b.noise else "noise not measured: one run") + ")")
    return 0


def _runs_in(directory: pathlib.Path):
    """The runs (pyperf suites of this harness) in a results directory; other files are skipped, as
    `report` skips them: the directory may hold anything."""
    from bench import stats
    from bench import results

    for path in sorted(directory.glob("*.json")):
        try:
            if results.classify(results.read_json(path)) != "rfc":
                stats.load([path])
                yield path
        except UsageError:
            continue


def _cmd_history(args) -> int:
    from bench.render import plots
    from bench import results
    from bench import regression as R

    paths = args.results or list(_runs_in(results.directory()))
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
    k = subparsers.add_parser(
        "check", help="judge a run against a baseline or another commit (exit 1 on a regression)",
        description="Judge interception costs, ratio by ratio, against a baseline file, the last runs of this "
                    "machine, or another commit measured now on this machine (--against: no stored baseline "
                    "needed). Not pyperf's `check`, which checks one suite's stability.")
    source = k.add_mutually_exclusive_group(required=True)
    source.add_argument("--baseline", type=pathlib.Path, metavar="FILE",
                        help="a baseline (bench baseline); refused before any run if taken on another machine")
    source.add_argument("--baseline-window", type=_count, metavar="K",
                        help="the last K earlier runs of the current run's machine in the results directory")
    source.add_argument("--against", metavar="REV",
                        help="a git commit (e.g. HEAD^, origin/main): its tree and this one make the same run now, "
                             "here, and this one is judged against it; the run after -- (default: "
                             "the icount guest, `vm run --timing icount --accel tcg -- --backends "
                             "native,ptrace-sysemu,process-vm-exec,seccomp-trace,seccomp-trap --pin same,cross "
                             "--processes 2 --values 3`, about 6 minutes for the pair)")
    k.add_argument("--output-dir", "--results", dest="results", type=pathlib.Path, metavar="DIR",
                   help="with --against: keep both runs' results files here (default: removed)")
    k.add_argument("command", nargs=argparse.REMAINDER,
                   help="with --against: -- then the `python -m bench` command both trees run (run ... or vm run ...)")
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
    h.add_argument("--output-dir", "--output", dest="output", type=pathlib.Path, metavar="DIR",
                   help="directory (default: history/ in the results directory)")
    h.set_defaults(func=_cmd_history)
