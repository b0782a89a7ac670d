"""`bench list` and `bench run`: the backends on this host, and timing them (bench.measure.runner)."""
from __future__ import annotations

import pathlib
import sys

from bench.commands.options import NEWLINES, list_of, number, parse_tag
from bench.errors import BenchError, UsageError

#: Upper bounds of the run's options: beyond them a run would not end in any useful time.
MAX_PROCESSES = MAX_VALUES = 1000
MAX_TIMEOUT_S = 86400.0


def _cmd_list(args) -> int:
    import tracers

    for b in tracers.all_backends():
        why = b.unavailable()
        state = "available" if why is None else f"unavailable: {why}"
        print(f"{b.name:24} {b.kind:16} {state}\n{'':24} {b.description}")
    return 0


def _cmd_run(args) -> int:
    import tracers.driver

    from bench import results
    from bench.measure import runner
    from bench.render import summary

    if args.scaling:
        args.pages = sorted(set(args.pages) | {0, 1, 16, 256, 4096})
        args.parallel = sorted(set(args.parallel) | {1, 2, 4})
    limits = tracers.driver.constants()
    if not all(1 <= m <= limits["max_parallel"] for m in args.parallel):
        raise UsageError(f"--parallel takes pair counts from 1 to {limits['max_parallel']}")
    if not all(k <= limits["max_pages"] for k in args.pages):
        raise UsageError(f"--pages takes page counts from 0 to {limits['max_pages']}")
    # Checked before measuring: at the end, pyperf would refuse to record them.
    for arg in sys.argv[1:]:
        if any(c in arg for c in NEWLINES):
            raise UsageError(f"argument {arg!r} holds a newline, which the results' metadata cannot record")
    if args.cpus and len(args.cpus) != 2:
        raise UsageError("--cpus takes two CPUs: TRACER,TRACEE for cross-CPU pinning")
    opts = runner.RunOptions(
        backends=args.backends, pins=list(dict.fromkeys(args.pin)) if args.pin else None, pages=args.pages,
        parallel=args.parallel, cpus=tuple(args.cpus) if args.cpus else None,
        mode="fast" if args.fast else "rigorous" if args.rigorous else "normal",
        output=args.output, tags=dict(args.tag), processes=args.processes, values=args.values,
        min_time=args.min_time,
        keep_going=not args.stop_on_failure, timeout=args.timeout, quiet=args.quiet, resume=args.resume)
    outcome = runner.run(opts)
    print(summary.table(outcome.path))
    print("(pyperf's lines above give the mean; this table, the report and every ratio use the median)")
    for case, reason in outcome.unavailable.items():
        print(f"{case}: unavailable: {reason}")
    print(summary.summary(outcome.path))
    warned = summary.warnings_line(outcome.path)
    if warned:
        print(warned)
    results.warn_if_busy([outcome.path], sys.stdout)
    print(f"results: {outcome.path}")
    if outcome.failed:
        raise BenchError(f"{len(outcome.failed)} case(s) failed (recorded in the results' metadata): "
                         + "; ".join(f"{k}: {v}" for k, v in outcome.failed.items()))
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("list", help="show every backend and whether it can run here")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("run", help="time every available backend with pyperf")
    p.add_argument("--backends", type=list_of(str), help="comma-separated names (default: all)")
    p.add_argument("--pin", type=list_of(str, ("same", "cross", "none")),
                   help="tracer/tracee placement: same CPU, different CPUs, or unpinned (default: same,cross; "
                        "same alone on one CPU)")
    p.add_argument("--cpus", type=list_of(int), help="the two CPUs to use, TRACER,TRACEE (default: first two)")
    p.add_argument("--pages", type=list_of(int), default=[0],
                   help="pages the tracee writes between syscalls, e.g. 0,1,16,256,4096")
    p.add_argument("--parallel", type=list_of(int), default=[1],
                   help="tracer/tracee pairs at once, e.g. 1,2,4 (throughput)")
    p.add_argument("--scaling", action="store_true", help="shortcut: --pages 0,1,16,256,4096 --parallel 1,2,4")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--fast", action="store_true", help="pyperf --fast: rough answers quickly")
    mode.add_argument("--rigorous", action="store_true", help="pyperf --rigorous: more worker processes")
    p.add_argument("--processes", type=number(int, 1, MAX_PROCESSES),
                   help="pyperf worker processes per case (overrides the mode)")
    p.add_argument("--values", type=number(int, 1, MAX_VALUES),
                   help="pyperf values per worker process (overrides the mode)")
    p.add_argument("--min-time", type=number(float, 0, 60, above=True),
                   help="pyperf: seconds each value lasts at least (default 0.1); "
                   "longer values average out a noisy host")
    p.add_argument("--output", type=pathlib.Path, help="results file (default: results/HOST-TIME.json)")
    p.add_argument("--tag", type=parse_tag, action="append", default=[], help="KEY=VALUE recorded in the metadata")
    p.add_argument("--timeout", type=number(float, 0, MAX_TIMEOUT_S, above=True),
                   help="seconds one backend run may take before it is killed and reported "
                        "(default: the driver's, 'tracers/vmexec constants')")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="pyperf --quiet: no progress dots, one line per case (pyperf's warnings are always "
                        "counted once at the end, never repeated per case)")
    p.add_argument("--resume", action="store_true",
                   help="keep the cases an interrupted run of the same cases, options, code and kernel "
                        "completed (its hidden .run-ID.partial file beside the results) and measure only the rest")
    p.add_argument("--stop-on-failure", action="store_true",
                   help="measure nothing if any case fails its check (default: measure the others)")
    p.set_defaults(func=_cmd_run)
