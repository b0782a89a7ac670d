"""`bench events`, `bench events-table` and `bench stop-prices` (issue 26, items 2 and 3).

events: the kernel events per intercepted call of every C mechanism, on this machine (tracefs
tracepoints, bench.measure.events) or, with --kernel-variant, inside a TCG guest of that cached kernel
build (the twin: the host's own configuration) by the same command.  events-table: host and twin side
by side (bench.render.events).  stop-prices: a ptrace stop's parts priced (bench.measure.stops).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from bench import outputs, results
from bench.commands.options import list_of, number
from bench.errors import BenchError, UsageError, writable_directory
from bench.measure import events, kernel

#: The results' place under the results directory.
DIRECTORY = events.DIRECTORY


def _stamp(doc: dict) -> str:
    return doc["started"].replace("-", "").replace(":", "").replace("+0000", "")[:15]


def _publish(doc: dict, requested: Path | None, prefix: str) -> Path:
    final = requested if requested is not None else results.directory() / DIRECTORY / f"{prefix}-{_stamp(doc)}.json"
    results.check_new(final, create=requested is None)
    return results.publish(final, lambda staged: staged.write_text(json.dumps(doc, indent=1) + "\n"),
                           exists="fail" if requested is not None else "rename")


def _twin_build(variant: str) -> tuple[Path, dict]:
    """A cached kernel build of variant (bzImage, build.json with a twin's host_config_sha256 from its
    carry-over.json), never a new build: one takes hours here."""
    try:
        home = kernel.cache_root() / "kernel" / kernel.cache_key(variant)
    except (OSError, BenchError) as e:       # no kernel source here, no host configuration for a twin
        raise UsageError(f"cannot find a {variant} kernel build: {e}") from None
    meta, bzimage = home / "build.json", home / "bzImage"
    if not (meta.exists() and bzimage.exists()):
        raise UsageError(f"no cached {variant} kernel for these inputs ({home}): build it first with "
                         f"`python -m bench kernel build --kernel-variant {variant}`")
    return bzimage, {**json.loads(meta.read_text()), "host_config_sha256": kernel.twin_origin(home)}


def _host_config_sha256() -> str:
    """The sha256 of this machine's kernel configuration, the one a twin built here copies ("" if unreadable)."""
    try:
        return kernel.host_config().sha256
    except BenchError:
        return ""


def _check_calls(calls: list[int]) -> None:
    if len(calls) != 2 or not 0 < calls[0] < calls[1]:
        raise UsageError(f"--calls takes two loop lengths N1,N2 with 0 < N1 < N2, not {','.join(map(str, calls))}")


def _in_guest(args) -> int:
    from bench.measure.environment import cpu_model
    from bench.measure.vm import console_tail, hidden_in_guest, qemu_version, run_in_guest

    _check_calls(args.calls)
    if hidden_in_guest(Path(sys.executable)):
        raise UsageError(f"{sys.executable} is under /run, which the guest replaces with tmpfs")
    if args.output is not None:
        results.check_new(args.output)
    bzimage, meta = _twin_build(args.kernel_variant)
    with outputs.scratch("events") as share:    # a SIGKILLed run's tree goes at the next start
        inner = share / "events.json"
        command = [sys.executable, "-m", "bench", "events", "--output", str(inner), "--runs", str(args.runs),
                   "--calls", ",".join(map(str, args.calls)), "--cpu", str(args.cpu),
                   *(a for c in args.case or () for a in ("--case", c))]
        print(f"events: booting the {args.kernel_variant} kernel {meta['release']} under TCG", file=sys.stderr)
        run = run_in_guest(command, kernel=bzimage, accel="tcg", timing="wall", cpus=2,
                           kernel_args=kernel.boot_args(args.kernel_variant, "tcg"), output_dir=share,
                           cpu_model=kernel.cpu_model(args.kernel_variant, "tcg"),
                           run_timeout=args.run_timeout, echo=lambda line: print(f"guest: {line}", file=sys.stderr))
        if run.exit_status or not inner.exists():
            raise BenchError(f"the guest's events run failed (status {run.exit_status}); console tail: "
                             f"{console_tail(run.console)}")
        doc = json.loads(inner.read_text())
    # What the guest cannot see of its machine: the build it booted and the host under the emulator.
    doc["machine"].update({"role": args.kernel_variant, "accelerator": "tcg", "qemu": qemu_version(),
                           "twin_config_sha256": meta.get("config_sha256", ""), "kernel_build": meta.get("release"),
                           "host_config_sha256": meta["host_config_sha256"],
                           "host_cpu_model": cpu_model(), "host_kernel": events.machine()["kernel"],
                           "qemu_cpu": run.cpu_model})
    # named after the machine that ran the emulator: a guest has no hostname of its own ("(none)")
    path = _publish(doc, args.output, f"events-{args.kernel_variant}-{events.machine()['hostname']}")
    print(f"events: {path}")
    return _failures(doc)


def _cmd_events(args) -> int:
    from tracers.driver import VMEXEC

    if args.kernel_variant:
        return _in_guest(args)
    _check_calls(args.calls)
    if args.output is not None:
        results.check_new(args.output)
    else:
        writable_directory(results.directory() / DIRECTORY, create=True)
    selected = events.select(events.cases(str(VMEXEC), args.cpu), args.case)
    doc = events.measure(selected, tuple(args.calls), args.runs, log=lambda m: print(m, file=sys.stderr))
    doc["machine"].update({"role": "host", "host_config_sha256": _host_config_sha256()})
    path = _publish(doc, args.output, f"events-host-{doc['machine']['hostname']}")
    from bench.render.events import to_markdown
    print(to_markdown(doc), end="")
    print(f"events: {path}", file=sys.stderr)
    return _failures(doc)


def _failures(doc: dict) -> int:
    """1 if a case failed (its file is kept: it says which), else 0."""
    failed = {n: c["errors"][0] for n, c in doc["cases"].items() if c.get("errors")}
    for name, error in failed.items():
        print(f"events: {name} failed: {error}", file=sys.stderr)
    return 1 if failed else 0


def _read(path: Path, kind: str) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise UsageError(f"{path} is not a {kind} document")
    return doc


def _cmd_table(args) -> int:
    from bench.render.events import to_markdown

    host = _read(args.host, "vmexec-events")
    twin = _read(args.twin, "vmexec-events") if args.twin else None
    stops = _read(args.stops, "vmexec-stop-prices") if args.stops else None
    text = to_markdown(host, twin, stops)
    if args.output:
        results.publish(results.check_new(args.output), lambda staged: staged.write_text(text))
    print(text, end="")
    return 0


def _cmd_stop_prices(args) -> int:
    from bench.measure import stops
    from bench.render.events import stop_blocks
    from bench.render.document import to_markdown
    from tracers.driver import VMEXEC

    if args.output is not None:
        results.check_new(args.output)
    doc = stops.measure(str(VMEXEC), args.runs, args.iterations, args.cpu, log=lambda m: print(m, file=sys.stderr))
    path = _publish(doc, args.output, f"stops-{doc['machine']['hostname']}")
    print(to_markdown(stop_blocks(doc)), end="")
    worst = max(float(doc[k].split()[0]) for k in ("load_before", "load_after"))
    if worst > 0.5 * (os.cpu_count() or 1):     # counts survive load, times do not
        print(f"stop-prices: warning: the machine was busy (load {worst:.1f} on {os.cpu_count()} CPUs): these times "
              "are not for publication; run on a quiet machine", file=sys.stderr)
    print(f"stop-prices: {path}", file=sys.stderr)
    return 0


def register_cli(subparsers) -> None:
    STOP_RUNS, DEFAULT_ITERATIONS = 20, 20000      # bench.measure.stops's (not imported here: numpy)
    cpu = dict(type=number(int, 0, 4095), default=0, help="the CPU tracer and tracee are pinned to (default 0)")
    p = subparsers.add_parser("events", help="kernel events per intercepted call of every C mechanism (tracefs), "
                                             "on this machine or in a guest of the twin kernel")
    p.add_argument("--calls", type=list_of(int), default=list(events.DEFAULT_CALLS), metavar="N1,N2",
                   help="the two loop lengths whose difference is counted (default %(default)s)")
    p.add_argument("--runs", type=number(int, 1, 1000), default=events.DEFAULT_RUNS,
                   help=f"runs of every case at both lengths, interleaved (default {events.DEFAULT_RUNS})")
    p.add_argument("--cpu", **cpu)
    p.add_argument("--case", action="append", metavar="NAME",
                   help="only this case (repeatable): a backend, 'price PART' or 'stop VARIANT' (default: all)")
    p.add_argument("--kernel-variant", choices=sorted(kernel.VARIANTS), default=None,
                   help="count inside a TCG guest of this cached kernel build (twin: the host's own configuration) "
                        "instead of on this machine")
    p.add_argument("--run-timeout", type=number(float, 1, 86400), default=7200, metavar="S",
                   help="the guest's time limit for the command (default 7200 s)")
    p.add_argument("--output", type=Path, metavar="FILE",
                   help=f"the results file (default: {DIRECTORY}/events-ROLE-HOST-TIME.json in the results directory)")
    p.set_defaults(func=_cmd_events)
    t = subparsers.add_parser("events-table", help="host and twin event counts side by side (Markdown)")
    t.add_argument("host", type=Path, help="a `bench events` file of the host")
    t.add_argument("twin", type=Path, nargs="?", help="a `bench events --kernel-variant twin` file")
    t.add_argument("--stops", type=Path, metavar="FILE", help="a `bench stop-prices` file, rendered below")
    t.add_argument("--output", type=Path, metavar="FILE", help="also write the Markdown here (never overwritten)")
    t.set_defaults(func=_cmd_table)
    s = subparsers.add_parser("stop-prices", help="what a ptrace stop costs beyond a round trip: its parts "
                                                  "priced by loops that differ by one (vmexec stop)")
    s.add_argument("--runs", type=number(int, 5, 10000), default=STOP_RUNS,
                   help=f"interleaved rounds of every variant (default {STOP_RUNS})")
    s.add_argument("--iterations", type=number(int, 100, 10**8), default=DEFAULT_ITERATIONS,
                   help=f"stops per run (default {DEFAULT_ITERATIONS})")
    s.add_argument("--cpu", **cpu)
    s.add_argument("--output", type=Path, metavar="FILE",
                   help=f"the results file (default: {DIRECTORY}/stops-HOST-TIME.json in the results directory)")
    s.set_defaults(func=_cmd_stop_prices)
