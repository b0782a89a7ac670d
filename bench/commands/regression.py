"""The `check`, `baseline` and `history` commands: a thin layer over bench.regression and
bench.render.regression.

Kept apart from it so that every other command starts without importing pandas.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import sys

from bench import outputs
from bench.commands.options import strip_dashes
from bench.errors import BenchError, UsageError, writable_directory
from bench.measure import kernel
from bench.measure.continuous import DEFAULT_RUN, REPEAT_TIMED
from bench.results import warn_if_busy

FORMATS = ("text", "json", "markdown")


def _refuse_before_importing(args, forced: bool) -> None:
    """`check --baseline FILE` with nothing to judge yet: another machine's baseline is refused first,
    from its metadata and what a run would record here, before pandas and the rest are imported
    (bench.machine): the refusal takes a fraction of a second, not the imports' seconds."""
    from bench import machine as M
    from bench import results
    from bench.measure import continuous

    data = results.read_json(args.baseline)
    meta = M.baseline_metadata(args.baseline, data)
    M.refuse_foreign(args.baseline, M.of_suite(args.baseline, data), continuous.machine_for(meta["rerun"]),
                     meta["rerun"], force=forced)


def _cmd_check(args) -> int:
    measured_now = args.against is not None or args.kernel_a is not None
    if args.baseline_window is not None and args.current is None:
        raise UsageError("--baseline-window needs --current: the runs before it form the baseline")
    if (args.kernel_a is None) != (args.kernel_b is None):
        raise UsageError("--kernel-a and --kernel-b go together: the baseline kernel and the one judged against it")
    if args.command and not measured_now:
        raise UsageError("a command after -- is what --against measures (or --kernel-a/-b); with a baseline its "
                         "own run is repeated")
    if args.results is not None and not measured_now:
        raise UsageError("--results keeps the two runs of --against or --kernel-a/-b")
    if args.repeat is not None and not measured_now:
        raise UsageError("--repeat says how many runs of each tree --against makes (of each kernel, --kernel-a/-b)")
    if args.against is not None and args.current is not None:
        raise UsageError("--against measures both trees now: it takes no --current")
    if args.kernel_a is not None and args.current is not None:
        raise UsageError("--kernel-a/-b measure both kernels now: they take no --current")
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if args.kernel_a is not None:
        _guest_command_for_kernels(args.command or list(DEFAULT_RUN))
    forced = args.force or args.warn_only
    if args.baseline is not None and args.current is None:
        _refuse_before_importing(args, forced)

    from bench.measure import continuous
    from bench import regression as R
    from bench.render.regression import render, stated_power

    with outputs.scratch("check") as tmp:       # a killed check's tree goes at the next command's start
        if args.kernel_a is not None:
            baseline, references, currents = _kernels(args, pathlib.Path(tmp))
        elif args.against is not None:
            baseline, references, currents = _against(args, pathlib.Path(tmp))
        else:
            references = []
            baseline = R.from_window(args.current, args.baseline_window) if args.baseline_window is not None \
                else R.load(args.baseline)
            current = args.current
            if current is None:
                # Up front, before the run: what this baseline can catch, and the doubts it carries.
                for line in [*stated_power(baseline, R.preview(baseline), args.threshold), *_busy_now()]:
                    print(f"check: {line}", file=sys.stderr, flush=True)
                # Another machine's baseline was refused above (_refuse_before_importing), before any run.
                current = continuous.run_bench(baseline.rerun, pathlib.Path(tmp) / "current")
            currents = [current]
        df = R.merged(currents)
        busy = warn_if_busy([*references, *currents])
        a, b = R.machine(baseline.values), R.machine(df)
        if args.kernel_a is not None:       # two kernels: their releases differ by design, nothing else may
            a, b = ({k: v for k, v in m.items() if k != "kernel"} for m in (a, b))
        elsewhere = R.differences(a, b)
        table = R.check(baseline, df, force=forced or measured_now, fixed=args.threshold,
                        # Interleaved runs share the load, and still a busy host's timed move is held back;
                        # against a stored baseline the load is this run's alone: said, and the power says the rest.
                        busy=bool(busy) and measured_now, current_runs=len(currents))
    rendered = render(table, baseline, args.format, fixed=args.threshold, busy=busy, elsewhere=elsewhere)
    print(_naming_kernels(rendered, args) if args.kernel_a is not None else rendered)
    if elsewhere and measured_now:
        print(f"check: note: the two sides' runs differ in {elsewhere}", file=sys.stderr)
    named, absent = R.regressed_backends(table), R.missing_backends(table)
    found = "; ".join([*([f"regression in {', '.join(named)}"] if named else []),
                       *([f"missing: {', '.join(absent)} (not measured by this run)"] if absent else [])])
    if found and args.warn_only:
        print(f"check: warning only: {found}"
              + (f" (the baseline was taken on another machine: {elsewhere})" if elsewhere else ""), file=sys.stderr)
        return 0
    if named:
        raise BenchError(found)
    if absent:
        print(f"bench: failed: {found}", file=sys.stderr)
    return R.exit_status(table)


def _busy_now() -> list[str]:
    """A line saying the host is busy before the run (the 1-minute load above its CPUs), or none."""
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load <= cpus:
        return []
    return [f"the host is busy now (load {load:.1f} on {cpus} CPUs): if it stays so, its times are inflated and "
            "noisier, so a slowdown may be missed or mimicked by the load; run the check on an idle host"]


def _against(args, tmp: pathlib.Path):
    """(a baseline of the comparison commit's runs, their files, this tree's runs), measured now, interleaved."""
    from bench.measure import continuous
    from bench import regression as R

    revision = continuous.resolve(args.against)
    command = list(args.command or DEFAULT_RUN)
    repeat = args.repeat or continuous.default_repeat(command)
    where = args.results or tmp
    with _kept_results(args.results):
        reference, current, seconds = continuous.against(revision, command, where, repeat)
    print(f"check: the {f'{repeat} pairs' if repeat > 1 else 'pair'} of runs took {sum(seconds.values()):.0f} s "
          f"({revision.asked} {revision.short}: {seconds['reference']:.0f} s, export and driver build included; "
          f"this tree: {seconds['current']:.0f} s)" + (f"; all kept in {where}" if args.results else ""),
          file=sys.stderr)
    baseline = R.from_runs(reference, command, f"{revision.asked} ({revision.short}) measured now"
                           + (f", {repeat} runs interleaved with this tree's" if repeat > 1 else ""))
    return baseline, reference, current


def _guest_command_for_kernels(command: list[str]) -> None:
    """--kernel-a/-b boot each kernel in the guest: the run must be a `vm run` that chooses no kernel itself."""
    if command[:2] != ["vm", "run"]:
        raise UsageError(f"--kernel-a/-b measure a guest run (`vm run ...`), not `{' '.join(command[:2])}`")
    own = command[:command.index("--")] if "--" in command else command
    if any(a == "--kernel-variant" or a.startswith("--kernel-variant=") for a in own):
        raise UsageError("the run after -- chooses no kernel: --kernel-a and --kernel-b do")


def _kernels(args, tmp: pathlib.Path):
    """(a baseline of kernel a's runs, their files, kernel b's runs): the same guest run booting each, this
    tree, this QEMU, measured now, interleaved; both kernels built (or found in the cache) first."""
    from bench.measure import continuous, kernel
    from bench import regression as R

    command = list(args.command or DEFAULT_RUN)
    repeat = args.repeat or continuous.default_repeat(command)
    where = args.results or tmp
    kernels = {"a": _named_if_the_same(args.kernel_a, "a"), "b": _named_if_the_same(args.kernel_b, "b")}
    with _kept_results(args.results):
        for side, variant in kernels.items():
            print(f"check: building kernel {side}, {kernel.get_variant(variant).description} (or finding it "
                  "in the cache)", file=sys.stderr, flush=True)
            built = kernel.build(log=lambda msg, side=side: print(f"check: kernel {side}: {msg}", file=sys.stderr,
                                                                  flush=True), variant=variant)
            print(f"check: kernel {side}: {built.release}, {built.bzimage}", file=sys.stderr, flush=True)
        sides = tuple(continuous.Side(f"kernel {side}", where / f"kernel-{side}", vm_options=("--kernel-variant", v))
                      for side, v in kernels.items())
        (reference, current), seconds = continuous.interleaved(sides, command, repeat)
    print(f"check: the {f'{repeat} pairs' if repeat > 1 else 'pair'} of runs took {sum(seconds):.0f} s "
          f"(kernel a: {seconds[0]:.0f} s; kernel b: {seconds[1]:.0f} s)"
          + (f"; all kept in {where}" if args.results else ""), file=sys.stderr)
    baseline = R.from_runs(reference, continuous.with_vm_options(command, ("--kernel-variant", kernels["a"])),
                           f"kernel a ({args.kernel_a}) measured now"
                           + (f", {repeat} runs interleaved with kernel b's" if repeat > 1 else ""))
    return baseline, reference, current


def _named_if_the_same(variant: str, side: str) -> str:
    """The named variant whose inputs (cache key) a kernel given by path has, else the path: a copy of
    kernel/patches is the benchmark kernel, and its build is used, not redone under the same key with
    another release name)."""
    from bench.measure import kernel

    key = kernel.cache_key(variant, own_entry=False)
    same = next((name for name in kernel.VARIANTS if name != variant and kernel.cache_key(name) == key), None)
    if same is None:
        return variant
    print(f"check: kernel {side}: {variant} has the inputs of variant {same!r}: its build is used",
          file=sys.stderr, flush=True)
    return same


def _naming_kernels(rendered: str, args) -> str:
    """The check's output, its first line naming the two kernels (in json: a "kernels" entry, first)."""
    import json

    if args.format == "json":
        return json.dumps({"kernels": {"a": args.kernel_a, "b": args.kernel_b}, **json.loads(rendered)},
                          indent=1, ensure_ascii=False)
    line = f"kernel b ({args.kernel_b}) judged against kernel a ({args.kernel_a}), the baseline"
    return "\n".join([f"**{line}**" if args.format == "markdown" else line, *([""] if args.format == "markdown" else []),
                      rendered])


def _doubts(paths: list[pathlib.Path]) -> list[str]:
    """Why runs make a doubtful baseline: the busy-host warning's own test, pyperf's instability."""
    from bench.render.summary import pyperf_warnings
    from bench.results import busy_warning

    found = []
    for path in paths:
        if busy_warning([path]):
            found.append(f"{path.name}: host busy")
        unstable = next((names for kind, names in pyperf_warnings(path).items() if kind.startswith("unstable")), [])
        if unstable:
            found.append(f"{path.name}: pyperf calls {len(unstable)} case{'s' if len(unstable) != 1 else ''} unstable")
    return found


def _kept_results(directory: pathlib.Path | None):
    """--output-dir of check --against: a new or empty directory, this check's alone while it runs (a
    second check there, or an earlier check's files, are refused before anything is exported or built)."""
    if directory is None:
        return contextlib.nullcontext()
    writable_directory(directory, create=True)
    return outputs.claim_empty(directory)


def _cmd_baseline(args) -> int:
    from bench import regression as R

    from bench import stats

    stats.load(args.runs)           # bad input first: one line, before the runs' quality is read
    doubts = _doubts(args.runs)
    if doubts and not args.force:
        raise UsageError(f"refusing a baseline of doubtful runs ({'; '.join(doubts)}): its thresholds would "
                         "come from a busy host's noise; measure again on an idle host, or --force to accept "
                         "them (the baseline is marked, and every check says so)")
    with outputs.exclusive(args.output, wait=False, what="baseline"):     # a concurrent one is refused
        written = R.write(args.runs, args.output, force=args.force, doubts=doubts)
    b = R.load(written)
    print(f"baseline: {written} ({len(b.runs)} run(s); "
          + (f"noise measured for {len(b.noise)} ratios" if b.noise else "noise not measured: one run")
          + (f"; marked doubtful: {'; '.join(doubts)}" if doubts else "") + ")")
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
    for where, m in h.groupby("machine", sort=False):
        print(f"{where} ({m['run_id'].nunique()} runs):")
        for case, g in m.groupby("case", sort=True):
            print(f"  {case:60} {' → '.join(f'{r:.3g}x' for r in g['speedup'])}")
    machines = h["machine"].nunique()
    print(f"history: {out / 'history.csv'}, {out / 'history.png'} ({h['run_id'].nunique()} runs; "
          f"{machines} machine{'s' if machines != 1 else ''}, one series each)")
    return 0


def _count(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    if k < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {k}")
    return k


def _percent(text: str) -> float:
    """A threshold in percent (0 < PCT <= 1000), as a fraction."""
    try:
        pct = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of percent: {text!r}")
    if not 0 < pct <= 1000:         # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1000 (percent), not {text}")
    return pct / 100


def register_cli(subparsers) -> None:
    k = subparsers.add_parser(
        "check", help="judge a run against a baseline or another commit (exit 1 on a regression, 3 on a missing ratio)",
        description="Judge interception costs, ratio by ratio, against a baseline file, the last runs of this "
                    "machine, or another commit measured now on this machine (--against: no stored baseline "
                    "needed). Make your own baseline first: a baseline holds on the machine it was made on "
                    "only, and another machine's is refused before anything runs. Not pyperf's `check`, "
                    "which checks one suite's stability.",
        epilog="exit status: 0 nothing regressed and nothing missing; 1 a ratio regressed (a missing one "
               "too, then); 3 no ratio regressed but some the baseline has were not measured by this run "
               "(missing: a backend that failed or was not run); 2 bad input, nothing comparable, or a "
               "baseline from another machine (refused before any run); with --warn-only 0 after a "
               "warning on stderr instead of 1 or 3.")
    source = k.add_mutually_exclusive_group(required=True)
    source.add_argument("--baseline", type=pathlib.Path, metavar="FILE",
                        help="a baseline (bench baseline); refused before any run if taken on another machine")
    source.add_argument("--baseline-window", type=_count, metavar="K",
                        help="the last K earlier runs of the current run's machine in the results directory")
    source.add_argument("--against", metavar="REV",
                        help="a git commit (e.g. HEAD^, origin/main): its tree and this one make the same run now, "
                             "here, and this one is judged against it; the run after -- (default: "
                             f"the icount guest, `{' '.join(DEFAULT_RUN)}`, about 7 minutes for the pair)")
    source.add_argument("--kernel-a", type=kernel.variant_arg, metavar="VARIANT|PATH",
                        help="with --kernel-b: two kernels compared as --against compares two trees: the same guest "
                             "run (after --, default as for --against) boots kernel a (the baseline) and kernel b, "
                             "interleaved, this tree and QEMU; each a variant name, a patch series directory (its "
                             "`series` file), a kernel source tree, or a config fragment file; both built first")
    k.add_argument("--kernel-b", type=kernel.variant_arg, metavar="VARIANT|PATH",
                   help="the kernel judged against --kernel-a")
    k.add_argument("--threshold", type=_percent, metavar="PCT",
                   help="judge every ratio against this fixed change in percent (as asv's --factor) instead of "
                        "thresholds from the baseline's measured noise; the check names the ratios whose noise "
                        "is too large to catch it")
    k.add_argument("--repeat", type=_count, metavar="K",
                   help="with --against or --kernel-a/-b: K runs of each side, interleaved (base, head, base, head ...) so that "
                        "the host's drift falls on both and their spread is measured (default: 1 for an icount "
                        f"guest run, deterministic; {REPEAT_TIMED} for a timed run)")
    k.add_argument("--output-dir", "--results", dest="results", type=pathlib.Path, metavar="DIR",
                   help="with --against or --kernel-a/-b: keep both sides' results files here (default: removed)")
    k.add_argument("command", nargs=argparse.REMAINDER,
                   help="with --against or --kernel-a/-b: -- then the `python -m bench` command both sides run (run ... or vm run ...)")
    k.add_argument("--current", type=pathlib.Path, metavar="FILE",
                   help="the run to judge (default: run now, with the baseline's options)")
    k.add_argument("--format", choices=FORMATS, default="text",
                   help="text, json, or markdown (for a CI job summary)")
    k.add_argument("--force", action="store_true", help="judge even if the baseline was taken on another machine")
    k.add_argument("--warn-only", action="store_true",
                   help="judge (on any machine) but only warn: exit 0 even on a regression")
    k.set_defaults(func=_cmd_check, nested=lambda a: [strip_dashes(a.command)] if a.command else [])

    b = subparsers.add_parser("baseline", help="write a baseline from runs of the same code on one machine")
    b.add_argument("runs", nargs="+", type=pathlib.Path, metavar="RUN",
                   help="results files; two or more measure each ratio's run-to-run noise")
    b.add_argument("--output", type=pathlib.Path, required=True, metavar="FILE")
    b.add_argument("--force", action="store_true",
                   help="replace a baseline taken on another machine; accept runs of a busy host or that pyperf "
                        "calls unstable (refused otherwise), marking the baseline so that every check says so")
    b.set_defaults(func=_cmd_baseline)

    h = subparsers.add_parser("history", help="each backend's speed-up over ptrace-sysemu (its ns ÷ the backend's, "
                                              "as in the report) across runs, one series per machine")
    h.add_argument("results", nargs="*", type=pathlib.Path, metavar="RESULT",
                   help="results files (default: every run in the results directory)")
    h.add_argument("--output-dir", "--output", dest="output", type=pathlib.Path, metavar="DIR",
                   help="directory (default: history/ in the results directory)")
    h.set_defaults(func=_cmd_history)
