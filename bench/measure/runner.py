"""`bench run`: time every case with pyperf and write one suite to results/.

The main process validates each case with a short checked run, then lets
pyperf spawn worker processes (bench.measure.worker) that register the same cases and
time the one they are asked for.  The suite is written to a hidden temporary
file and renamed into place only when complete, so an interrupted run leaves
no half-written result and never touches an earlier one.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import pathlib
import shutil
import signal
import socket
import sys
import tempfile
import time

import pyperf

import tracers
from tracers import BackendFailed, BackendUnavailable
from tracers.driver import TEST_KNOBS

from bench.measure import environment
from bench.measure import plan
from bench.measure.partial import Partial, identity
from bench import outputs, results
from bench.errors import BenchError, Interrupted, UsageError, writable_directory

#: Short checked run that validates each case before it is timed.
PREFLIGHT_SYSCALLS = 2000
#: Why a guest in icount time cannot measure the parallel sweep (its run is tagged timing=icount).
ICOUNT_SERIAL = ("icount: every vCPU advances one instruction clock in turn, so M pairs time-slice "
                 "and throughput is unmeasurable; measure it on the host or under KVM")


def pyperf_parser() -> argparse.ArgumentParser:
    """pyperf's own options plus the plan, parsed alike by manager and workers."""
    parser = argparse.ArgumentParser(prog="python -m bench.measure.worker")
    parser.add_argument("--plan", required=True, help=argparse.SUPPRESS)
    return parser


def make_runner() -> pyperf.Runner:
    def forward_plan(cmd: list[str], args: argparse.Namespace) -> None:
        cmd.extend(["--plan", args.plan])

    return pyperf.Runner(_argparser=pyperf_parser(),
                         program_args=("-m", "bench.measure.worker"), add_cmdline_args=forward_plan)


def quiet_checks(runner: pyperf.Runner) -> None:
    """pyperf's 8-line 'may be unstable' warning, printed after each case, left out: `bench run` counts
    them once at its end (bench.render.summary.warnings_line).  A private method: pyproject pins the
    pyperf this is tested with (tests/test_run_output.py)."""
    display = getattr(runner, "_display_result", None)
    if display is not None:
        runner._display_result = lambda bench, checks=True: display(bench, checks=False)


def time_case(loops: int, case: plan.Case) -> float:
    """pyperf's time function: seconds for `loops` syscalls of each tracee."""
    result = tracers.get_backend(case.backend).run(case.spec(loops))
    return result.elapsed_ns / 1e9


def register(runner: pyperf.Runner, cases: list[plan.Case], on_failure=None, before=None) -> None:
    """Every case, in order (the workers register the same list); before(k, case) runs before case k."""
    for k, case in enumerate(cases):
        if before:
            before(k, case)
        try:
            # inner_loops: with P pairs, each loop is P syscalls (throughput).
            runner.bench_time_func(case.name, time_case, case, inner_loops=case.parallel,
                                   metadata=case.metadata())
        except RuntimeError as e:       # a worker died: pyperf names only its exit code
            if on_failure is None:
                raise
            on_failure(case, f"worker failed during measurement ({e})")
            # pyperf skips this when a benchmark raises; without it the next case's workers would
            # time the wrong case.  A private counter: pyproject pins the pyperf this is tested with
            # (tests/test_reliability.py, a worker that fails mid-measurement).
            runner._worker_task += 1


@dataclasses.dataclass
class RunOptions:
    backends: list[str] | None
    pins: list[str] | None          # None: DEFAULT_PINS, as many as the CPUs allow
    pages: list[int]
    parallel: list[int]
    cpus: tuple[int, int] | None
    mode: str                       # fast | normal | rigorous
    output: pathlib.Path | None
    tags: dict[str, str]
    processes: int | None = None
    values: int | None = None
    min_time: float | None = None    # seconds per pyperf value
    keep_going: bool = True
    timeout: float | None = None    # seconds for one backend run; None: the driver's default
    quiet: bool = False             # pyperf --quiet: no dots, one line per case
    resume: bool = False            # keep the cases an interrupted run of the same cases measured (Partial)


def output_path(requested: pathlib.Path | None) -> pathlib.Path:
    return results.output(requested, socket.gethostname())


def choose_cpus(requested: tuple[int, int] | None) -> tuple[int, int]:
    usable = environment.usable_cpus()
    if requested is None:
        return (usable[0], usable[1]) if len(usable) > 1 else (usable[0], usable[0])
    for cpu in requested:
        if cpu not in usable:
            raise UsageError(f"CPU {cpu} does not exist or is not usable here (usable: {usable})")
    return requested


#: The pinnings a run measures unless told: the RFC's (same CPU) and the other CPU's.
DEFAULT_PINS = ("same", "cross")


def pins_for(requested: list[str] | None, cpus: tuple[int, int]) -> list[str]:
    """The pinnings to measure: those asked for, which the CPUs must honour (cross needs two: a "cross"
    case on one CPU would be recorded as what it is not), else DEFAULT_PINS as far as they can."""
    if requested is None:
        return [p for p in DEFAULT_PINS if p != "cross" or cpus[0] != cpus[1]]
    if "cross" in requested and cpus[0] == cpus[1]:
        raise UsageError(f"--pin cross needs two different CPUs, and this run has only CPU {cpus[0]} "
                         "(give --cpus TRACER,TRACEE with two, or --pin same|none)")
    return requested


def select_backends(names: list[str] | None) -> list[tracers.Backend]:
    known = tracers.all_backends()
    if not names:
        return known
    by_name = {b.name: b for b in known}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UsageError(f"unknown backend {unknown[0]!r} (known: {', '.join(by_name)})")
    return [by_name[n] for n in names]


def preflight(cases: list[plan.Case], log, first_calls: dict[str, int] | None = None
              ) -> tuple[list[plan.Case], dict[str, str], dict[str, str]]:
    """Run each case once, checked; split into runnable, unavailable and failed.  first_calls, if given,
    receives the first-call cost (ns) the binary rewriting backends that patch at a trap report."""
    ok, unavailable, failed = [], {}, {}
    for case in cases:
        backend = tracers.get_backend(case.backend)
        try:
            result = backend.run(case.spec(PREFLIGHT_SYSCALLS))
            if result.pages != case.pages:     # a sweep point must measure what its label says
                raise BackendFailed(f"{case.backend}: asked to write {case.pages} pages between calls, "
                                    f"its tracee wrote {result.pages}")
        except BackendUnavailable as e:
            unavailable[case.name] = str(e)
            log(f"  {case.name}: unavailable: {e}")
        except BackendFailed as e:
            failed[case.name] = str(e)
            log(f"  {case.name}: FAILED: {e}")
        else:
            ok.append(case)
            if first_calls is not None and result.first_call_ns:
                first_calls[case.name] = result.first_call_ns
    return ok, unavailable, failed


class _Interrupt:
    """SIGINT, SIGTERM or SIGHUP to the main process ends the run, whatever disposition it inherited.

    A background job of a script starts with SIGINT ignored, and Python then
    installs no handler of its own: `kill -INT` (as `timeout -s INT` or a CI
    runner's cancel sends it) would be swallowed.  pyperf turns the
    KeyboardInterrupt raised here into sys.exit(1); the signal received tells
    that exit apart from pyperf's others.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.received: str | None = None
        self.partial: Partial | None = None        # what an interrupt leaves, said in its message

    def __enter__(self):
        self._previous = {sig: signal.signal(sig, self._raise) for sig in self.SIGNALS}
        return self

    def _raise(self, signum, frame):
        self.received = signal.Signals(signum).name
        raise KeyboardInterrupt

    def __exit__(self, kind, exc, tb):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if kind is KeyboardInterrupt or (kind is SystemExit and self.received):
            kept = self.partial.said() if self.partial else "no results written"
            raise Interrupted(f"interrupted{f' by {self.received}' if self.received else ''}: {kept}") from None
        return False


class Progress:
    """'case k of N: NAME (T so far, about R left)', timed by this process's clock from case 1 on."""

    def __init__(self, total: int, clock=time.monotonic):
        self.total, self.start, self.clock = total, None, clock

    def line(self, k: int, name: str) -> str:
        """The line for case k (counted from 0)."""
        now = self.clock()
        if self.start is None:
            self.start = now
        spent = now - self.start
        left = f", about {_minutes(spent / k * (self.total - k))} left" if k else ""
        return f"case {k + 1} of {self.total}: {name} ({_minutes(spent)} so far{left})"


def _progress(total: int, log):
    """before() for register(): a Progress line before each case."""
    progress = Progress(total)
    return lambda k, case: log(progress.line(k, case.name))


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


@dataclasses.dataclass
class RunOutcome:
    path: pathlib.Path
    unavailable: dict[str, str]     # case name -> reason
    failed: dict[str, str]


def _say(message: str) -> None:
    print(message, flush=True)     # pyperf's own dots and lines are flushed: keep the order


def run(opts: RunOptions, log=_say) -> RunOutcome:
    backends = select_backends(opts.backends)
    cpus = choose_cpus(opts.cpus)
    final = output_path(opts.output)
    writable_directory(pathlib.Path(tempfile.gettempdir()))     # where pyperf writes the suite first
    opts = dataclasses.replace(opts, timeout=opts.timeout or tracers.driver.constants()["default_timeout_s"])
    cases = plan.build_plan(backends, pins_for(opts.pins, cpus), opts.pages, opts.parallel, cpus, opts.timeout)

    with _Interrupt() as interrupt:
        return _run(opts, cases, cpus, final, log, interrupt)


def _partial(opts: RunOptions, cases: list[plan.Case], final: pathlib.Path, commit: str, log) -> Partial:
    """This run's partial file (bench.measure.partial), with an interrupted attempt's cases if --resume."""
    options = {k: getattr(opts, k) for k in ("mode", "processes", "values", "min_time", "tags")}
    keep = Partial(final.parent, identity(plan.dumps(cases), options, commit))
    if opts.resume:
        log(keep.load())
    elif keep.path.is_file():
        log(f"note: an interrupted run of these cases left {keep.path}; --resume would keep its cases, "
            "this run measures every case and replaces it")
    return keep


def _run(opts: RunOptions, cases: list[plan.Case], cpus: tuple[int, int], final: pathlib.Path,
         log, interrupt: _Interrupt) -> RunOutcome:
    icount = environment.where_facts()["vmexec_timing"] == "icount"     # the guest's clock, never a tag
    unmeasurable = {c.name: ICOUNT_SERIAL for c in cases if c.parallel > 1 and icount}
    for name, why in unmeasurable.items():
        log(f"  {name}: unavailable: {why}")
    log(f"checking {len(cases) - len(unmeasurable)} cases ({PREFLIGHT_SYSCALLS} syscalls each) ...")
    first_calls: dict[str, int] = {}
    runnable, unavailable, failed = preflight([c for c in cases if c.name not in unmeasurable], log, first_calls)
    unavailable = {**unmeasurable, **unavailable}
    if not runnable:
        raise BenchError("no case could be measured: " + "; ".join(
            f"{k}: {v}" for k, v in {**unavailable, **failed}.items()))
    if failed and not opts.keep_going:
        raise BenchError(f"{len(failed)} case(s) failed their check; not measuring (--stop-on-failure)")

    metadata = environment.run_metadata()
    metadata.update({f"vmexec_tag_{k}": v for k, v in opts.tags.items()})
    metadata["vmexec_cpus_used"] = f"{cpus[0]},{cpus[1]}"
    metadata["vmexec_command"] = " ".join(sys.argv) or "bench run"
    if kernel_config():     # pyperf records no empty value
        metadata["vmexec_kernel_config"] = kernel_config()
    if first_calls:
        metadata["vmexec_first_call_ns"] = json.dumps(first_calls, sort_keys=True)
    keep = interrupt.partial = _partial(opts, cases, final, metadata["vmexec_commit"], log)
    kept = [c for c in runnable if c.name in keep.kept]
    keep.kept = {c.name: keep.kept[c.name] for c in kept}       # not a case that cannot run now
    to_measure = [c for c in runnable if c.name not in keep.kept]
    if kept:
        metadata["vmexec_resumed"] = ",".join(c.name for c in kept)
    # In progress outside results/: even a SIGKILLed run leaves nothing half-written there (and the next
    # command removes its tree).
    workdir = outputs.make_scratch(WORKDIR_KIND)
    tmp = workdir / "suite.json"
    # pyperf kills a worker that outlives every backend run it could make.
    argv = ["--output", str(tmp), "--plan", plan.dumps(to_measure), "--timeout", str(int(opts.timeout * 2 + 60)),
            "--inherit-environ", ",".join(TEST_KNOBS)]
    if opts.mode != "normal":
        argv.append(f"--{opts.mode}")
    if opts.min_time:
        argv += ["--min-time", str(opts.min_time)]
    if opts.quiet:
        argv.append("--quiet")

    try:
        runner = make_runner()
        runner.parse_args(argv)
        quiet_checks(runner)
        # Set after parsing: pyperf's --fast and --rigorous replace any --processes and --values given with them.
        for option in ("processes", "values"):
            if getattr(opts, option):
                setattr(runner.args, option, getattr(opts, option))
        log(f"measuring {len(to_measure)} cases with pyperf ({opts.mode})"
            + (f", {len(kept)} kept from the interrupted run" if kept else "") + " ...")

        def on_failure(case, reason):
            failed[case.name] = reason
            log(f"  {case.name}: FAILED: {reason}")
        progress = _progress(len(to_measure), log)

        def before(k, case):
            keep.save(tmp)      # every case completed so far, before the next begins
            progress(k, case)
        try:
            register(runner, to_measure, on_failure, before=before)
        except BaseException:
            _save_quietly(keep, tmp)
            raise
        if not tmp.exists() and not kept:
            raise BenchError("every case failed during measurement: " + "; ".join(failed.values()))
        measured = Partial.write(keep.benchmarks(tmp), workdir / "merged.json")
        final = finish(measured, final, {**metadata, "vmexec_unavailable": json.dumps(unavailable, sort_keys=True),
                            "vmexec_failed": json.dumps(failed, sort_keys=True)},
                       exists="fail" if opts.output else "rename")
        keep.discard()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return RunOutcome(final, unavailable, failed)


@functools.cache
def kernel_config() -> str:
    """The running kernel's configuration, hashed (16 hex digits of its sha256); "" where it is not readable.
    Cached: the configuration of a running kernel does not change."""
    from bench.measure import kernel

    if os.environ.get("VMEXEC_TWIN_CONFIG"):       # a file named for a twin build, not this kernel's own
        return ""
    try:
        return kernel.host_config().sha256[:16]
    except BenchError:
        return ""


def _save_quietly(keep: Partial, tmp: pathlib.Path) -> None:
    """keep.save(tmp) on the way out of an interrupt: pyperf may have been stopped writing tmp."""
    try:
        keep.save(tmp)
    except Exception:       # a damaged tmp: the copy made before this case began stays
        pass


#: A run's temporary directory: vmexec-bench-pidPID-random (bench.outputs.scratch).
WORKDIR_KIND = "bench"


def finish(tmp: pathlib.Path, final: pathlib.Path, metadata: dict, exists: str = "fail") -> pathlib.Path:
    """Add the run's metadata (and what could not be measured) to every benchmark, then publish atomically
    (results.publish: where it went, never over another file)."""
    suite = pyperf.BenchmarkSuite.load(str(tmp))
    metadata = {**metadata, "vmexec_busy": results.busy_metadata(tmp)}    # the report reads it (busy_warning)
    for bench in suite.get_benchmarks():
        bench.update_metadata(metadata)
    return results.publish(final, lambda staged: suite.dump(str(staged)), exists=exists)
