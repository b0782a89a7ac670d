"""`python -m bench`: a thin command line over the library modules."""
from __future__ import annotations

import argparse
import importlib
import pathlib
import signal
import sys

from bench.errors import BenchError, UsageError

#: Modules that add their own subcommands through register_cli(subparsers).
PLUGINS = ("bench.measure.kernel", "bench.measure.package", "bench.measure.vm", "bench.measure.rfc", "bench.commands.report", "bench.commands.regression",
           "bench.commands.anatomy", "bench.commands.prices", "bench.commands.mainjob")


class Parser(argparse.ArgumentParser):
    """Bad input is one line and exit status 2, never a usage dump."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def _list_of(kind, choices=None):
    def parse(text: str):
        try:
            items = [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a comma-separated list of {kind.__name__}: {text!r}")
        bad = [x for x in items if (choices and x not in choices) or (kind is int and x < 0)]
        if bad or not items:
            allowed = f" (choose from {', '.join(choices)})" if choices else ""
            raise argparse.ArgumentTypeError(f"invalid value {bad[0] if bad else text!r}{allowed}")
        return items
    return parse


def number(kind, low, high, *, above=False):
    """An argparse type: a kind from low (excluded if above) to high; nan and inf are in no such range."""
    def parse(text: str):
        try:
            x = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if not ((low < x) if above else (low <= x)) or not x <= high:
            raise argparse.ArgumentTypeError(f"must be {'>' if above else '>='} {low:g} and <= {high:g}, not {text}")
        return x
    return parse


#: Upper bounds of the run's options: beyond them a run would not end in any useful time.
MAX_PROCESSES = MAX_VALUES = 1000
MAX_TIMEOUT_S = 86400.0
#: The recorded command and the tags are pyperf metadata, which may not hold a newline.
NEWLINES = ("\n", "\r")


def parse_tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier() or not value.strip() or any(c in value for c in NEWLINES):
        raise argparse.ArgumentTypeError(f"tags are KEY=VALUE on one line, not {text!r}")
    return key, value


def _cmd_list(args) -> int:
    import tracers

    for b in tracers.all_backends():
        why = b.unavailable()
        state = "available" if why is None else f"unavailable: {why}"
        print(f"{b.name:24} {b.kind:16} {state}\n{'':24} {b.description}")
    return 0


def _cmd_run(args) -> int:
    import tracers.driver

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
        backends=args.backends, pins=list(dict.fromkeys(args.pin)), pages=args.pages,
        parallel=args.parallel, cpus=tuple(args.cpus) if args.cpus else None,
        mode="fast" if args.fast else "rigorous" if args.rigorous else "normal",
        output=args.output, tags=dict(args.tag), processes=args.processes, values=args.values,
        min_time=args.min_time,
        keep_going=not args.stop_on_failure, timeout=args.timeout)
    outcome = runner.run(opts)
    print(summary.table(outcome.path))
    for case, reason in outcome.unavailable.items():
        print(f"{case}: unavailable: {reason}")
    print(f"results: {outcome.path}")
    if outcome.failed:
        raise BenchError(f"{len(outcome.failed)} case(s) failed (recorded in the results' metadata): "
                         + "; ".join(f"{k}: {v}" for k, v in outcome.failed.items()))
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="python -m bench", description=__doc__)
    # Not required=True: argparse would then answer `bench --bogus` with "required: command", not the bad option.
    sub = parser.add_subparsers(dest="command", parser_class=Parser)

    p = sub.add_parser("list", help="show every backend and whether it can run here")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("run", help="time every available backend with pyperf")
    p.add_argument("--backends", type=_list_of(str), help="comma-separated names (default: all)")
    p.add_argument("--pin", type=_list_of(str, ("same", "cross", "none")), default=["same", "cross"],
                   help="tracer/tracee placement: same CPU, different CPUs, or unpinned (default: same,cross)")
    p.add_argument("--cpus", type=_list_of(int), help="the two CPUs to use, TRACER,TRACEE (default: first two)")
    p.add_argument("--pages", type=_list_of(int), default=[0],
                   help="pages the tracee writes between syscalls, e.g. 0,1,16,256,4096")
    p.add_argument("--parallel", type=_list_of(int), default=[1],
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
    p.add_argument("--stop-on-failure", action="store_true",
                   help="measure nothing if any case fails its check (default: measure the others)")
    p.set_defaults(func=_cmd_run)

    for name in PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        if hasattr(module, "register_cli"):
            module.register_cli(sub)
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (a CI runner's cancel, `timeout`) unwinds like Ctrl-C, so every command's clean-up runs
    # (a guest's QEMU, a child run, temporary files); SIGINT too where it was inherited as ignored
    # (a script's background job).  `bench run` installs its own handlers for the measurement.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.error("a command is required (see --help)")
        return args.func(args)
    except BenchError as e:
        print(f"bench: {'error' if e.exit_status == 2 else 'failed'}: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
