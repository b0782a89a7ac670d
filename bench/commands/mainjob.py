"""`bench main`: the main job of ./run.sh, KVM first wherever it boots.

The job is a first answer (every C backend, same CPU, host then guest, and a report of its own
in results/first-answer/), then the full run (every backend on the host, the guest, the RFC's
programs) and the report.  Which clock the guest runs take is decided here, once, in Python:

* KVM wall clock, when a probe boot under KVM of the kernel the KVM steps boot runs a command
  (bench.measure.kvmprobe: bounded, no QEMU left behind, remembered for the machine).  The guest then
  boots the `kvm` kernel variant (the mitigations kernel, which keeps the TSC as a KVM guest) with the
  CPU's own defaults (no forced mitigation options: under `-cpu host` the guest sees the host CPU's
  bugs and picks what it needs), and each vCPU thread is pinned to its own host CPU, so that
  --pin same|cross in the guest means the same on the host.  The icount run of the full job is still made: the anatomy and
  the regression check are built on it.
* TCG with icount otherwise, with the probe's reason.

It prints which clock it took and why in one line, then runs each step as `python -m bench ...`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.anatomy.guest import default_backends
from bench.measure import guardian, kernel
from bench.commands.options import strip_dashes
from bench.errors import BenchError, Interrupted, UsageError



def first_answer_backends() -> str:
    """The first answer's backends: every C mechanism of the driver (they are cheap), the set the full
    run measures at the same pinning, so that the distortion bracket and the composed estimate of the
    first answer calibrate on the same mechanisms as the full run's and cannot disagree with it on one
    host (issue 18: four mechanisms here gave "reproduced", all of them "neither")."""
    return ",".join(default_backends())

FIRST_ANSWER_DIR = "results/first-answer"
#: The kernel a KVM guest boots, unless asked otherwise (--kvm-variant).
KVM_VARIANT = "kvm"
CLOCK_CHOICES = ("auto", "kvm", "icount")
#: Seconds from the job's interruption to the step's SIGINT (the step leads a process group of its own,
#: which a terminal's Ctrl-C does not reach), and then to the SIGKILL of its group (a guest run kills its
#: QEMU in that time).
STEP_GRACE = (0.0, 60.0)
#: Seconds a step of a job that died (SIGKILL, SIGHUP) has from its SIGINT to clean up (the job's guardian
#: sends it) before its group is killed: nobody waits for it any more.
ORPHAN_GRACE = 5.0


@dataclasses.dataclass(frozen=True)
class Decision:
    clock: str                  # "kvm" (KVM wall clock) or "icount" (TCG with icount)
    reason: str                 # why, one line
    kvm_variant: str | None     # the kernel variant the KVM guest boots
    cpu_model: str = "host"     # QEMU's -cpu under KVM (a fallback model if -cpu host did not boot)

    @property
    def line(self) -> str:
        what = (f"KVM wall clock (kernel variant {self.kvm_variant}, -cpu {self.cpu_model}, vCPUs pinned)"
                if self.clock == "kvm" else "TCG with icount (a path-length clock)")
        return f"main job: clock: {what}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class Step:
    what: str
    argv: tuple[str, ...]           # after `python -m bench`
    results_dir: str | None = None  # VMEXEC_RESULTS for the step (a directory); None: the default
    own_results: bool = False       # a report: argv is followed by the result files this job wrote there

    def directory(self) -> Path:
        from bench import results
        return results.directory(Path(self.results_dir) if self.results_dir else None)


def probe_kvm(kvm_variant: str = KVM_VARIANT):
    """Whether a probe boot under KVM runs a command here (a bench.measure.kvmprobe.Probe), or why not.

    It boots what the KVM steps boot: the kernel variant, its command line under KVM and the guest's
    default vCPUs and memory (built and cached on first use); kvmprobe bounds it, tries fallback CPU
    models, kills QEMU's whole session whatever happens and remembers the answer for the machine.
    """
    from bench.measure import kvmprobe, vm

    why_not = vm._kvm_usable()      # no /dev/kvm: no kernel build just to find out
    if why_not:
        return why_not
    kb = kernel.build(log=lambda msg: print(f"kernel: {msg}", file=sys.stderr, flush=True), variant=kvm_variant)
    # what the KVM steps boot (_kvm_guest): as many vCPUs as can be pinned, one on a one-CPU machine
    return kvmprobe.probe(kb.bzimage, "kvm", cpus=vm.pinnable_vcpus(), kernel_args=kernel.boot_args(kvm_variant, "kvm"))


def decide(requested: str = "auto", kvm_variant: str = KVM_VARIANT, probe=None) -> Decision:
    """Which clock the main job's guest runs take, and why (probe: returns why KVM cannot boot, or None)."""
    if requested not in CLOCK_CHOICES:
        raise UsageError(f"--clock must be one of {', '.join(CLOCK_CHOICES)}, not {requested!r}")
    if kvm_variant not in kernel.VARIANTS:
        raise UsageError(f"--kvm-variant must be one of {', '.join(sorted(kernel.VARIANTS))}, not {kvm_variant!r}")
    if requested == "icount":
        return Decision("icount", "asked for (--clock icount)", None)
    answer = probe() if probe else probe_kvm(kvm_variant)
    why_not, cpu_model = getattr(answer, "why_not", answer), getattr(answer, "cpu_model", "host")
    if why_not is None:
        when = f", remembered from {answer.cached}" if getattr(answer, "cached", "") else ""
        return Decision("kvm", "a probe boot under KVM ran a command" + (" (--clock kvm)" if requested == "kvm" else "")
                        + when, kvm_variant, cpu_model)
    why_not = " ".join(str(why_not).split())       # one line, whatever the console said
    if requested == "kvm":
        raise BenchError(f"--clock kvm: KVM cannot boot a guest here: {why_not}")
    return Decision("icount", f"KVM cannot boot a guest here: {why_not}", None)


def _kvm_guest(decision: Decision, subcommand: str) -> tuple[str, ...]:
    from bench.measure import vm

    # each vCPU is pinned to a host CPU of its own: fewer than the default where fewer may be used
    vcpus = vm.pinnable_vcpus()
    return ("vm", subcommand, "--accel", "kvm", "--timing", "wall", "--kernel-variant", decision.kvm_variant,
            "--pin-vcpus", *(("--vcpus", str(vcpus)) if vcpus != vm.DEFAULT_VCPUS else ()))


def _icount_guest(subcommand: str) -> tuple[str, ...]:
    return ("vm", subcommand, "--accel", "tcg", "--timing", "icount")


def plan(decision: Decision, run_args: list[str] | tuple[str, ...] = ()) -> list[Step]:
    """The main job's steps; run_args go to the full host run (`bench run --scaling RUN_ARGS`)."""
    same = ("--pin", "same", "--backends", first_answer_backends())
    # The first answer composes nothing: prices measured in its few seconds were not admissible (issue 26:
    # native composed -49% off, printed as an estimate); the full run measures them (`host: prices`).
    # --resume: a host run interrupted before keeps the cases it completed (bench.measure.partial).
    steps = [Step("first answer: host", ("run", "--fast", *same, "--resume"), FIRST_ANSWER_DIR)]
    if decision.clock == "kvm":
        steps.append(Step("first answer: KVM guest", (*_kvm_guest(decision, "run"), "--", "--fast", *same),
                          FIRST_ANSWER_DIR))
    else:
        steps.append(Step("first answer: icount guest",
                          (*_icount_guest("run"), "--", *same, "--processes", "1", "--values", "3"),
                          FIRST_ANSWER_DIR))
    # Reports name the files this job wrote: `bench report` alone would take the newest guest run, which on
    # KVM is the icount one, and might take an older run's files.
    steps.append(Step("first answer: report", ("report",), FIRST_ANSWER_DIR, own_results=True))
    # Host: every backend, both pinnings, both scaling sweeps.
    steps.append(Step("host: every backend", ("run", "--scaling", "--resume", *run_args)))
    steps.append(Step("host: prices", ("prices",)))
    if decision.clock == "kvm":
        steps.append(Step("KVM guest: every backend", (*_kvm_guest(decision, "run"), "--", "--scaling")))
    # The icount guest, made on every machine: the anatomy and the regression check build on it.  Its
    # parallel sweep is reported unmeasurable there (one instruction clock serves every vCPU); icount
    # repeats itself, so few workers suffice.
    steps.append(Step("icount guest: every backend",
                      (*_icount_guest("run"), "--", "--scaling", "--processes", "2", "--values", "3")))
    steps.append(Step("RFC's programs", _kvm_guest(decision, "rfc") if decision.clock == "kvm"
                      else _icount_guest("rfc")))
    steps.append(Step("report", ("report",), own_results=True))
    return steps


def _default_sigint() -> None:
    """In the step's process: SIGINT ends it through KeyboardInterrupt (and a guest run's clean-up), even
    if the job was started with SIGINT ignored (a background job of a script)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


#: The signals that end the job cleanly (SIGHUP: its terminal or its ssh session went away).
JOB_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def needs_page_zero(argv: list[str]) -> bool:
    """A host run (`python -m bench run ...`): zpoline and lazypoline map their trampoline at address 0.
    Guest runs have their own kernel, reports and prices no such backend."""
    return argv[1:4] == ["-m", "bench", "run"]


def run_step(argv: list[str], env: dict[str, str]) -> int:
    """argv's exit status.  The step leads a process group of its own, which a guardian process ends if
    the job dies, however (SIGKILL included): no step outlives the job.  SIGINT, SIGTERM or SIGHUP to the
    job is passed on to the step as SIGINT at once (a guest run then kills its QEMU), and the step's group
    is killed STEP_GRACE[1] s later (ORPHAN_GRACE s, if the job died); then Interrupted.  A host run, and
    only it, gets vm.mmap_min_addr=0."""
    received: list[str] = []

    def note(signum, frame):
        received.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, note) for sig in JOB_SIGNALS}
    try:
        with guardian.Guardian() as guard, \
                (mmap_min_addr_zero(guard=guard) if needs_page_zero(argv) else contextlib.nullcontext()):
            proc = guardian.popen_group(argv, guard, grace=ORPHAN_GRACE, env=env, preexec_fn=_default_sigint,
                                        stdin=subprocess.DEVNULL)
            escalation = iter([(STEP_GRACE[0], proc.pid, signal.SIGINT), (STEP_GRACE[1], proc.pid, signal.SIGKILL)])
            since = None
            while True:
                try:
                    status = proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if received and since is None:
                    since, (grace, pgid, sig) = time.monotonic(), next(escalation)
                if since is not None and time.monotonic() - since >= grace:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pgid, sig)
                    since, (grace, pgid, sig) = time.monotonic(), next(escalation, (float("inf"), None, None))
            # What the step left in its group (a worker it did not wait for) ends with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            guard.forget(proc.pid)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise Interrupted(f"main job: interrupted by {received[0]}")
    return status


def _results_in(directory: Path) -> set[Path]:
    return {p.resolve() for p in directory.glob("*.json") if p.is_file()}


def execute(steps: list[Step], run=None, state=None) -> None:
    """Runs the steps in order, each as `python -m bench ...` (run: run_step); stops at the first that fails.
    A report step is given the result files the job's earlier steps wrote in its directory.  state
    (bench.commands.jobstate.JobState): the steps it records as completed are skipped, each one it runs is recorded."""
    run = run or run_step
    written: dict[Path, list[Path]] = {}
    for i, step in enumerate(steps, 1):
        done = state.done(step) if state else None
        if done is not None:
            written.setdefault(step.directory().resolve(), []).extend(done)
            print(f"main job: step {i} of {len(steps)}: {step.what}: completed before, not redone", flush=True)
            continue
        env = dict(os.environ)
        if step.results_dir:
            env["VMEXEC_RESULTS"] = step.results_dir
        where = step.directory().resolve()
        argv = [*step.argv, *map(str, written.get(where, []))] if step.own_results else list(step.argv)
        print(f"main job: step {i} of {len(steps)}: {step.what}: bench {' '.join(argv)}", flush=True)
        before = _results_in(where)
        status = run([sys.executable, "-m", "bench", *argv], env)
        new = sorted(_results_in(where) - before)
        written.setdefault(where, []).extend(new)
        if status:
            raise BenchError(f"main job: step {i} ({step.what}) failed with exit status {status}"
                             + ("; rerun the job to resume from it" if state else ""))
        if state:
            state.mark(step, new)


#: zpoline's and lazypoline's trampoline lives at address 0 (issue 22).  The file is a knob for the tests
#: only: they must not change the real sysctl on a shared machine.
MMAP_MIN_ADDR = os.environ.get("VMEXEC_MMAP_MIN_ADDR_FILE", "/proc/sys/vm/mmap_min_addr")
#: Where the value to put back is kept while the sysctl is 0: in /run, which a reboot (that resets the
#: sysctl too) empties.  A test's stand-in file keeps it beside itself.
STATE_FILE = Path("/run/vmexec-bench.vm.mmap_min_addr")


def _state_file(path: str) -> Path:
    return STATE_FILE if path.startswith("/proc/") else Path(path + ".original")


def _value_to_restore(current: str, state: Path) -> str:
    """The administrator's value: the current one, unless it is 0 and a job that died with page 0 open
    recorded the value before it (its guardian normally puts it back; this covers a guardian killed too)."""
    try:
        recorded = state.read_text().strip()
    except OSError:
        recorded = ""
    return recorded if current == "0" and recorded.isdigit() else current


@contextlib.contextmanager
def mmap_min_addr_zero(path: str | None = None, guard: guardian.Guardian | None = None):
    """vm.mmap_min_addr=0 for the block (a host run's step: run_step), and the old value back afterwards,
    always: at its end, and within a second however the job dies (SIGKILL of its PID or of its process
    group included), by a guardian process that outlives it.  The old value is kept in a state file
    first, so a job after a crash puts back the true original, not 0.  If the administrator set 0, or it
    cannot be set, nothing changes (zpoline and lazypoline then say why they are unavailable)."""
    path = path or MMAP_MIN_ADDR
    file, state = Path(path), _state_file(path)
    try:
        old = _value_to_restore(file.read_text().strip(), state)
    except OSError:
        yield
        return
    if old == "0":
        yield
        return
    with contextlib.ExitStack() as stack:
        guard = guard or stack.enter_context(guardian.Guardian())
        try:
            state.write_text(old + "\n")
            guard.restore_on_death(path, old, state)
            file.write_text("0\n")
        except OSError as e:
            print(f"main job: vm.mmap_min_addr stays {file.read_text().strip()} ({e.strerror}): zpoline and "
                  "lazypoline will say they are unavailable", flush=True)
            _put_back(file, state, old)
            yield
            return
        # SIGINT/SIGTERM/SIGHUP unwind the block, unless a handler of the caller's sees to them (run_step's).
        previous = {sig: signal.signal(sig, _interrupted) for sig in JOB_SIGNALS
                    if not callable(h := signal.getsignal(sig)) or h is signal.default_int_handler}
        try:
            print(f"main job: vm.mmap_min_addr set to 0 for this step (was {old}; put back at its end)", flush=True)
            yield
        finally:
            # First, so a second signal cannot stop the restore; then the old handlers.
            ignored = {sig: signal.signal(sig, signal.SIG_IGN) for sig in JOB_SIGNALS}
            try:
                _put_back(file, state, old)
            finally:
                for sig, handler in {**ignored, **previous}.items():
                    signal.signal(sig, handler)


def _interrupted(signum, frame):
    raise Interrupted(f"main job: interrupted by {signal.Signals(signum).name}")


def _put_back(file: Path, state: Path, old: str) -> None:
    if file.read_text().strip() != old:
        file.write_text(old + "\n")
    state.unlink(missing_ok=True)


def _first_answer(steps: list[Step]) -> list[Step]:
    return [s for s in steps if s.results_dir == FIRST_ANSWER_DIR]


def first_decision(requested: str, kvm_variant: str, probe=None) -> tuple[Decision, bool]:
    """The first answer's clock: the smallest kernel it needs (TCG with icount on the benchmark kernel),
    decided before the KVM probe, which on a fresh machine builds a kernel of its own first (issue 29: the
    first line came 18 min 55 s in); KVM where asked for (--clock kvm) or where the probe's kernel is built
    already.  Returns (the decision, whether it is the job's own: the probe made it)."""
    if requested == "kvm" or (requested == "auto" and _kvm_kernel_cached(kvm_variant)):
        return decide(requested, kvm_variant, probe), True     # no build to wait for: the first answer may take KVM
    return Decision("icount", "the first answer takes the smallest kernel; the KVM probe comes after it", None), False


def _kvm_kernel_cached(kvm_variant: str) -> bool:
    """Whether /dev/kvm is there and the kernel the KVM probe boots is built already (a later run here)."""
    from bench.measure import vm

    try:
        if vm._kvm_usable():
            return False
        return kernel.cached_build(kernel.cache_root() / "kernel" / kernel.cache_key(kvm_variant), kvm_variant)[0] \
            is not None
    except (OSError, BenchError):
        return False


def job(first: Decision, decision: Decision, run_args) -> list[Step]:
    """The job's steps: the first answer's on its own clock, then the rest of plan() on the decided one."""
    rest = plan(decision, run_args)
    return [*_first_answer(plan(first, run_args)), *(s for s in rest if s not in _first_answer(rest))]


def _cmd_main(args) -> int:
    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
    from bench.measure import kvmprobe
    kvmprobe.set_probe_timeout(args.probe_timeout)      # the steps' own `vm` commands inherit it
    first, decided = first_decision(args.clock, args.kvm_variant)
    if args.dry_run:
        decision = first if decided else decide(args.clock, args.kvm_variant)
        print(decision.line, flush=True)
        print(first.line.replace("main job: clock:", "main job: first answer's clock:"), flush=True)
        for step in job(first, decision, run_args):
            where = f"VMEXEC_RESULTS={step.results_dir} " if step.results_dir else ""
            own = " (the result files the steps above wrote)" if step.own_results else ""
            print(f"{where}python -m bench {' '.join(step.argv)}{own}")
        return 0
    from bench import results
    from bench.commands.jobstate import JobState, identity

    # The job as asked (its clock option, not the decision a probe makes later) is what a rerun resumes.
    state = JobState.open(results.directory(), identity(args.clock, args.kvm_variant, run_args), args.restart)
    print(first.line.replace("main job: clock:", "main job: first answer's clock:"), flush=True)
    steps = _first_answer(plan(first, run_args))
    execute(steps, state=state)
    decision = first if decided else decide(args.clock, args.kvm_variant)
    print(decision.line, flush=True)
    execute(job(first, decision, run_args)[len(steps):], state=state)   # each host run with page 0 open, only it
    state.finish()
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("main", help="the main job of ./run.sh: a first answer, the full run and the "
                                           "report, on the KVM wall clock where KVM boots, else TCG+icount")
    p.add_argument("--clock", choices=CLOCK_CHOICES, default=os.environ.get("VMEXEC_CLOCK", "auto"),
                   help="auto (default, or $VMEXEC_CLOCK): KVM's wall clock if a probe boot works, else "
                        "TCG+icount; kvm: fail if KVM does not boot; icount: never try KVM")
    p.add_argument("--kvm-variant", choices=sorted(kernel.VARIANTS),
                   default=os.environ.get("VMEXEC_KVM_VARIANT", KVM_VARIANT),
                   help=f"the kernel variant a KVM guest boots (default {KVM_VARIANT}, or $VMEXEC_KVM_VARIANT)")
    p.add_argument("--probe-timeout", type=float, default=None, metavar="S",
                   help="how long the KVM probe boot may take to boot, and to run its command (default: grows "
                        "with vCPUs, memory and nesting; or $VMEXEC_PROBE_TIMEOUT)")
    p.add_argument("--dry-run", action="store_true", help="decide the clock, print the steps, run nothing")
    p.add_argument("--restart", action="store_true",
                   help="redo every step, even those an interrupted or failed run of the same job completed "
                        "(by default they are not redone: main-job.state in the results directory)")
    p.add_argument("run_args", nargs="...", help="-- then options for the full host run (bench run --scaling ...)")
    p.set_defaults(func=_cmd_main, nested=lambda a: [["run", "--scaling", *strip_dashes(a.run_args)]])
