"""Boot the patched kernel in QEMU over the host's root file system and run one command.  Its command
(`bench vm`) is bench.commands.vm.

The guest sees the host's / read-only over virtio-9p (so the repository,
Python and the built driver are there at the same paths, /tmp included),
tmpfs on /run (/run/tmp is TMPDIR and HOME), and one writable 9p share: the
output directory, mounted at its host path.  kernel/guest-init.sh is PID 1; it runs the command and prints
an end marker with its exit status on the serial console, then reboots,
which ends QEMU (-no-reboot).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from bench import outputs
from bench.argtypes import number
from bench.measure import accelerators
from bench.measure import guardian
from bench.measure import kernel
from bench.measure.environment import GUEST_CMDLINE, REPO, asset
from bench.errors import BenchError, UsageError

#: A guest's vCPUs unless asked otherwise: two, so that a tracer and its tracee can run on CPUs of their own.
DEFAULT_VCPUS = 2

GUEST_INIT = asset("kernel/guest-init.sh")
QEMU = "qemu-system-x86_64"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TAIL_LINES = 25
#: How long QEMU may take to answer on its QMP socket (vCPU pinning).
QMP_TIMEOUT = 10.0
#: The guest's clock source, which the command script reads before the command (GuestRun.clocksource).
CLOCKSOURCE_FILE = "/sys/devices/system/clocksource/clocksource0/current_clocksource"
#: The clock sources a wall-clock run may measure on: the TSC, read without leaving the guest (kvm-clock
#: reads it too, scaled by what KVM publishes).  On hpet or acpi_pm every clock read is an exit.
WALL_CLOCKSOURCES = ("tsc", "kvm-clock")


@dataclasses.dataclass(frozen=True)
class GuestRun:
    exit_status: int
    output: str             # what the command printed on the console
    accel: str              # 'kvm' or 'tcg'
    timing: str             # 'wall' or 'icount'
    boot_seconds: float     # QEMU start to the command's start
    qemu_cmdline: list[str]
    console: str            # the whole console log, for diagnosis
    vcpu_pins: dict = dataclasses.field(default_factory=dict)   # vCPU index -> (host thread id, host CPU)
    clocksource: str = ""   # the guest's current_clocksource when the command started ("" if not read)
    cpu_model: str = ""     # QEMU's -cpu

    def check(self) -> GuestRun:
        """This run, or BenchError with the console's tail if the command failed."""
        if self.exit_status:
            raise BenchError(f"the guest command exited with status {self.exit_status}; "
                             f"console tail: {console_tail(self.console)}")
        return self


def clocksource_refusal(clocksource: str, timing: str) -> str | None:
    """Why a run measuring `timing` cannot be measured on the guest's `clocksource`, or None."""
    if timing != "wall" or clocksource in WALL_CLOCKSOURCES:
        return None
    return (f"refused before measuring: the guest's clock source is {clocksource or 'unknown'}, not "
            f"{' or '.join(WALL_CLOCKSOURCES)} (every clock read would be an exit to the hypervisor); "
            "under KVM boot a kernel variant with KVM_GUEST (--kernel-variant kvm)")


def console_tail(console: str) -> str:
    lines = [line for line in console.splitlines() if line.strip()][-TAIL_LINES:]
    return " | ".join(lines) if lines else "(empty)"


def qemu_version() -> str:
    """QEMU's own first line of --version (its release and the distribution's package), or why not."""
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    return out.splitlines()[0].strip() if out.strip() else "unknown"


def _kvm_usable() -> str | None:
    """None if /dev/kvm can be opened for use, else why not."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        return f"/dev/kvm: {e.strerror}"
    return None


class GuestFailure(BenchError):
    """A guest that did not boot, hung or died; .console is its whole console log, .hung whether QEMU
    was still running when it was given up (a timeout), not gone by itself."""

    def __init__(self, message: str, console: str, hung: bool = False):
        super().__init__(message)
        self.console, self.hung = console, hung


def probe(kernel: Path, accel: str, **geometry) -> str | None:
    """None if a probe boot of kernel under accel really runs a command, else why not
    (bench.measure.kvmprobe.probe, which says with which -cpu and remembers the answer)."""
    from bench.measure import kvmprobe
    return kvmprobe.probe(kernel, accel, **geometry).why_not


def choose_accel(requested: str, timing: str, kernel: Path, **geometry) -> tuple[str, str]:
    """(accelerator, why), by the one rule for "auto" (bench.measure.kvmprobe.choose_accel)."""
    from bench.measure import kvmprobe
    return kvmprobe.choose_accel(requested, timing, kernel, **geometry)


def qemu_command(kernel: Path, output_dir: Path, nonce: str, accel: str, timing: str,
                 cpus: int, memory_mb: int, extra_args: tuple[str, ...] = (),
                 kernel_args: tuple[str, ...] = (), cpu_model: str | None = None, loglevel: int = 4) -> list[str]:
    append = " ".join([*kernel_args,
        "console=ttyS0", "panic=-1", f"loglevel={loglevel}", "ro",
        # TCG's TSC is not flagged invariant, so the kernel would fall back to
        # HPET, whose reads are syscalls (no vDSO): in-process backends would
        # then intercept their own clock.  QEMU's TSC is steady (icount: exact).
        "tsc=reliable", "clocksource=tsc",
        "root=/dev/root", "rootfstype=9p",
        "rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose",
        f"init={GUEST_INIT}", f"vmexec_out={output_dir}", f"vmexec_nonce={nonce}",
    ])
    return [
        QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", "stdio", "-monitor", "none",
        *accelerators.qemu_args(accel, timing, cpu_model),
        # Tinyconfig has no ACPI: only sockets make QEMU list every CPU in the MP table.
        "-smp", f"{cpus},sockets={cpus}", "-m", str(memory_mb),
        "-kernel", str(kernel), "-append", append,
        "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=root,mount_tag=/dev/root",
        "-fsdev", f"local,id=out,path={output_dir},security_model=none",
        "-device", "virtio-9p-pci,fsdev=out,mount_tag=out",
        *extra_args,    # e.g. -plugin (bench.anatomy)
    ]


class _Console:
    """Collects QEMU's serial output and notices the markers."""

    def __init__(self, stream, nonce: str, echo: Callable[[str], None] | None):
        self.lines: list[str] = []
        self.begin_line: int | None = None
        self.status: int | None = None
        self.clocksource = ""
        self.boot_seconds = 0.0     # QEMU start to the command's start
        self.begun = threading.Event()
        self.ended = threading.Event()
        self._nonce, self._echo = nonce, echo
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\r\n").replace("\r", "")
            if line == f"VMEXEC-BEGIN {self._nonce}":
                self.begin_line = len(self.lines)
                self.begun.set()
            elif line.startswith(f"VMEXEC-END {self._nonce} status="):
                self.status = int(line.rpartition("=")[2])
                self.ended.set()
            elif line.startswith(f"VMEXEC-CLOCKSOURCE {self._nonce} "):
                self.clocksource = line.split()[-1]
                continue        # the harness's, not the command's output
            elif self.begun.is_set() and not self.ended.is_set() and self._echo:
                self._echo(line)
            self.lines.append(line)
        self.begun.set()    # EOF: QEMU is gone; wake up the waiter
        self.ended.set()

    def join(self) -> None:
        self._thread.join(timeout=5)

    def output(self) -> str:
        end = next((i for i, line in enumerate(self.lines)
                    if line.startswith(f"VMEXEC-END {self._nonce} ")), len(self.lines))
        return "\n".join(self.lines[(self.begin_line or 0) + 1:end])


def hidden_in_guest(path: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to("/run")


def _write_command(output_dir: Path, nonce: str, command: list[str], cwd: Path, *, refuse_clock: bool = False,
                   clocksource_file: str = CLOCKSOURCE_FILE) -> Path:
    """The guest's command script: it prints the clock source (VMEXEC-CLOCKSOURCE), and with refuse_clock
    exits 2 before the command on any but WALL_CLOCKSOURCES (the host then says why: clocksource_refusal)."""
    from tracers.driver import TEST_KNOBS

    # XDG_CACHE_HOME: `bench` in the guest finds the caller's kernel builds (read-only: built ones only),
    # not the guest's empty HOME.
    env = {"PATH": GUEST_PATH, "HOME": "/run/tmp", "TMPDIR": "/run/tmp", "PYTHONDONTWRITEBYTECODE": "1",
           "LANG": "C.UTF-8", "TERM": "dumb", "XDG_CACHE_HOME": str(kernel.cache_root().parent),
           **{k: os.environ[k] for k in TEST_KNOBS if k in os.environ}}
    script = output_dir / f".vmexec-command-{nonce}.sh"
    script.write_text(
        f"cd {shlex.quote(str(cwd))} || exit 125\n"
        + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        + f"clocksource=$(cat {shlex.quote(clocksource_file)} 2>/dev/null)\n"
        + f'echo "VMEXEC-CLOCKSOURCE {nonce} ${{clocksource:-unknown}}"\n'
        + (f'case "$clocksource" in {"|".join(WALL_CLOCKSOURCES)}) ;; *) exit 2 ;; esac\n' if refuse_clock else "")
        + "exec " + shlex.join(command) + "\n")
    return script


def _no_core_dump() -> None:
    """In QEMU's process: an abort (KVM refusing -cpu host's MSRs, as PVM does) leaves no core of the
    guest's memory behind."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)    # QEMU leads its own session
    except ProcessLookupError:
        pass
    proc.wait()


def _qmp_vcpu_threads(path: Path, proc: subprocess.Popen, timeout: float = QMP_TIMEOUT) -> dict[int, int]:
    """vCPU index -> host thread id, from QEMU's QMP `query-cpus-fast` on the socket at path."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        while True:     # QEMU creates the socket while it starts
            try:
                sock.connect(str(path))
                break
            except OSError as e:
                if proc.poll() is not None:
                    raise BenchError(f"QEMU exited ({_status(proc.returncode)}) before it answered on QMP")
                if time.monotonic() > deadline:
                    raise BenchError(f"QEMU's QMP socket did not answer within {timeout:g} s ({e.strerror})")
                time.sleep(0.05)
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        stream = sock.makefile("rw")

        def execute(command: str):
            stream.write(json.dumps({"execute": command}) + "\n")
            stream.flush()
            for line in stream:
                reply = json.loads(line)
                if "return" in reply:
                    return reply["return"]
                if "error" in reply:
                    raise BenchError(f"QMP {command}: {reply['error'].get('desc', reply['error'])}")
            raise BenchError(f"QEMU closed its QMP socket during {command}")

        try:
            json.loads(stream.readline() or "{}")       # the greeting
            execute("qmp_capabilities")
            return {int(c["cpu-index"]): int(c["thread-id"]) for c in execute("query-cpus-fast")}
        except (OSError, ValueError, KeyError) as e:
            raise BenchError(f"QMP query-cpus-fast failed: {e}") from None


def pin_vcpu_threads(threads: dict[int, int], host_cpus: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """Pins vCPU i's thread to host_cpus[i], each to its own CPU; returns vCPU -> (thread id, host CPU),
    as the kernel reports the affinity afterwards."""
    if len(set(threads.values())) != len(threads):
        raise BenchError(f"the vCPUs share host threads ({threads}): single-threaded TCG (icount) cannot "
                         "be pinned per vCPU")
    if len(host_cpus) < len(threads) or len(set(host_cpus)) != len(host_cpus):
        raise BenchError(f"{len(threads)} vCPUs need as many distinct host CPUs to be pinned to, "
                         f"not {list(host_cpus)}")
    pins = {}
    for index, tid in sorted(threads.items()):
        cpu = host_cpus[index]
        try:
            os.sched_setaffinity(tid, {cpu})
            got = os.sched_getaffinity(tid)
        except OSError as e:
            raise BenchError(f"cannot pin vCPU {index} (thread {tid}) to CPU {cpu}: {e.strerror}") from None
        if got != {cpu}:
            raise BenchError(f"vCPU {index} (thread {tid}) runs on CPUs {sorted(got)} after pinning to {cpu}")
        pins[index] = (tid, cpu)
    return pins


def pinnable_vcpus() -> int:
    """The most vCPUs, up to DEFAULT_VCPUS, that host_cpus_for can pin here: one host CPU each."""
    return min(DEFAULT_VCPUS, len(os.sched_getaffinity(0)))


def host_cpus_for(cpus: int) -> tuple[int, ...]:
    """The first `cpus` CPUs this process may use: one host CPU per vCPU."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < cpus:
        raise UsageError(f"pinning {cpus} vCPUs needs {cpus} host CPUs; this process may use {len(usable)}")
    return tuple(usable[:cpus])


def _status(code: int) -> str:
    """'status N', or 'killed by SIGNAME' for a negative return code."""
    if code >= 0:
        return f"status {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _wait_for(console: _Console, proc: subprocess.Popen, boot_timeout: float, run_timeout: float,
              start: float) -> str | None:
    """None once the guest command has ended (console.boot_seconds set), else what went wrong."""
    if not console.begun.wait(boot_timeout):
        return f"the guest did not start the command within {boot_timeout:g} s (boot hang?)"
    if console.begin_line is None:
        return f"QEMU exited ({_status(proc.wait())}) before the guest started the command"
    console.boot_seconds = time.monotonic() - start
    if not console.ended.wait(run_timeout):
        return f"the guest command did not finish within {run_timeout:g} s"
    if console.status is None:
        return f"QEMU exited ({_status(proc.wait())}) before the guest command finished"
    return None


def run_in_guest(command: list[str], *, kernel: Path, accel: str = "auto", timing: str = "wall",
                 cpus: int = DEFAULT_VCPUS, memory_mb: int = 2048, output_dir: Path, boot_timeout: float = 120,
                 run_timeout: float = 3600, cwd: Path = REPO,
                 echo: Callable[[str], None] | None = None,
                 extra_qemu_args: tuple[str, ...] = (), kernel_args: tuple[str, ...] = (),
                 pin_vcpus: tuple[int, ...] | None = None, measures: bool = False,
                 cpu_model: str | None = None, loglevel: int = 4) -> GuestRun:
    """Boot `kernel`, run `command` as root in the guest, and return its status and output.

    Raises BenchError (with the console's tail) if the guest does not boot, panics, hangs
    or does not finish the command within the timeouts; a command that fails is not an
    error here (see GuestRun.check).  kernel_args go first on the kernel command line
    (bench.measure.kernel.boot_args has those a build variant needs).  pin_vcpus: host CPUs, one per vCPU:
    vCPU i's thread (QMP query-cpus-fast) is pinned to pin_vcpus[i] as soon as QEMU answers, before
    the guest has booted, so that guest CPUs stand for distinct host CPUs (GuestRun.vcpu_pins).
    measures: the command measures, so a wall-clock run on any clock source but WALL_CLOCKSOURCES is
    refused (UsageError) before it starts.  cpu_model: QEMU's -cpu (default: the accelerator's, or under
    KVM the model the probe found to boot).
    """
    if not command:
        raise UsageError("no command to run in the guest")
    why_not = accelerators.check(accel, timing)
    if why_not:
        raise UsageError(why_not)
    geometry = {"cpus": cpus, "memory_mb": memory_mb, "kernel_args": tuple(kernel_args)}
    accel = choose_accel(accel, timing, Path(kernel), **geometry)[0]
    if cpu_model is None:
        from bench.measure import kvmprobe
        cpu_model = kvmprobe.cpu_model_for(Path(kernel), accel, **geometry)
    for needed in (GUEST_INIT, Path(cwd)):
        if hidden_in_guest(needed):
            raise UsageError(f"{needed} is under /run, which the guest replaces with tmpfs")
    if not shutil.which(QEMU):
        raise BenchError(f"{QEMU} not found: apt-get install qemu-system-x86")
    output_dir = Path(output_dir).resolve()
    if any(c in str(output_dir) for c in " ,\t\n"):
        raise UsageError(f"the output directory's path may not contain blanks or commas: {output_dir}")
    output_dir.mkdir(parents=True, exist_ok=True)
    nonce = secrets.token_hex(8)
    refuse_clock = measures and timing == "wall"
    script = _write_command(output_dir, nonce, command, cwd, refuse_clock=refuse_clock)
    qmp_dir = outputs.make_scratch("qmp") if pin_vcpus else None
    qmp = ("-qmp", f"unix:{qmp_dir / 'qmp.sock'},server=on,wait=off") if qmp_dir else ()
    cmdline = qemu_command(Path(kernel), output_dir, nonce, accel, timing, cpus, memory_mb,
                           (*qmp, *extra_qemu_args), tuple(kernel_args), cpu_model, loglevel)

    start = time.monotonic()
    # QEMU leads a session of its own (a terminal's Ctrl-C is ours to handle), and dies with this
    # process however this one ends, SIGKILL included: no guest outlives its command.
    dies_with_us = guardian.dying_with(os.getpid(), signal.SIGKILL, then=_no_core_dump)
    proc = subprocess.Popen(cmdline, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=dies_with_us)
    pins, hung = {}, False
    try:
        console = _Console(proc.stdout, nonce, echo)
        failure = None
        try:
            if qmp_dir:
                # A slow (nested, emulated) QEMU answers late: the boot's timeout bounds it too.
                threads = _qmp_vcpu_threads(qmp_dir / "qmp.sock", proc, max(QMP_TIMEOUT, boot_timeout / 4))
                pins = pin_vcpu_threads(threads, tuple(pin_vcpus))
        except BenchError as e:
            failure = f"vCPU pinning failed: {e}"
        else:
            failure = _wait_for(console, proc, boot_timeout, run_timeout, start)
        if failure is None:
            try:    # the guest reboots right after the marker
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
    finally:
        hung = proc.poll() is None
        _kill(proc)
        script.unlink(missing_ok=True)
        if qmp_dir:
            shutil.rmtree(qmp_dir, ignore_errors=True)
    console.join()
    text = "\n".join(console.lines)
    if failure:
        if "Kernel panic" in text:
            failure += " (the guest kernel panicked)"
        raise GuestFailure(f"{failure} [{accel} -cpu {cpu_model}]; console tail: {console_tail(text)}", text, hung)
    refusal = clocksource_refusal(console.clocksource, timing) if refuse_clock else None
    if refusal:
        raise UsageError(refusal)
    return GuestRun(console.status, console.output(), accel, timing, round(console.boot_seconds, 2),
                    cmdline, text, pins, console.clocksource, cpu_model)


#: Bounds of the guest's options: QEMU's x86 machines take at most 255 vCPUs without an IOMMU; a
#: kernel and a Python need some 64 MiB; a week is longer than any run, and no timer takes infinity.
MAX_VCPUS = 255
MIN_MEMORY_MB = 64
MAX_TIMEOUT_S = 7 * 86400


def _host_memory_mb() -> int:
    return max(MIN_MEMORY_MB, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20)


#: The kernel arguments the harness sets itself (qemu_command): --kernel-arg may not give them.
HARNESS_KERNEL_ARGS = ("console", "panic", "loglevel", "ro", "rw", "tsc", "clocksource", "root", "rootfstype",
                       "rootflags", "init", *(arg.removesuffix("=") for arg in GUEST_CMDLINE))


def kernel_arg(text: str) -> str:
    """One extra word for the guest's kernel command line (argparse type): printable, no blank or quote, and
    none the harness sets itself."""
    if not text or not text.isprintable() or any(c.isspace() or c in "\"'\\" for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not one kernel argument (a word: no blanks or quotes)")
    if text.split("=", 1)[0] in HARNESS_KERNEL_ARGS:
        raise argparse.ArgumentTypeError(f"{text!r}: the harness sets {text.split('=', 1)[0]} itself")
    return text


def add_vm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timing", choices=accelerators.TIMINGS, default="wall",
                   help="wall: real time; icount: 1 guest ns per instruction, deterministic (TCG)")
    p.add_argument("--accel", choices=("auto", *accelerators.ACCELERATORS), default="auto",
                   help="auto: the first of " + ", ".join(map(accelerators.label, accelerators.ACCELERATORS))
                        + " that offers the timing and boots here")
    p.add_argument("--vcpus", dest="cpus", type=number(int, 1, MAX_VCPUS), default=DEFAULT_VCPUS, metavar="N",
                   help="how many CPUs the guest has (default 2; `bench run --cpus` names host CPU ids)")
    # The former spelling, hidden: recorded commands (a baseline's rerun) still parse.
    p.add_argument("--cpus", dest="cpus", type=number(int, 1, MAX_VCPUS), default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.add_argument("--memory", type=number(int, MIN_MEMORY_MB, _host_memory_mb()), default=2048,
                   help="guest memory in MiB (default 2048; at most the host's)")
    p.add_argument("--kernel-variant", default="bench", type=kernel.variant_arg, metavar="VARIANT|PATH",
                   help="which cached kernel build to boot (bench/measure/kernel.py VARIANTS: "
                        + ", ".join(sorted(kernel.VARIANTS)) + f"; or, as a path, {kernel.KERNEL_PATHS}; default bench; "
                        "safe: process_vm_exec isolates FPU/PKRU/FS-GS; unpatched: no process_vm_exec; "
                        "mitigations: the host's speculation mitigations, forced on under TCG, the CPU's own "
                        "defaults under KVM)")
    p.add_argument("--pin-vcpus", action="store_true",
                   help="pin each vCPU's host thread to its own host CPU (the first --vcpus this process may "
                        "use), so that --pin same|cross in the guest means the same on the host (KVM, or "
                        "TCG wall time; not icount, whose vCPUs share one thread)")
    p.add_argument("--boot-timeout", type=number(float, 0, MAX_TIMEOUT_S, above=True), default=120, metavar="S")
    p.add_argument("--probe-timeout", type=number(float, 0, MAX_TIMEOUT_S, above=True), default=None, metavar="S",
                   help="how long a KVM probe boot may take to boot, and to run its command (default: grows "
                        "with vCPUs, memory and nesting; or $VMEXEC_PROBE_TIMEOUT)")
    p.add_argument("--run-timeout", type=number(float, 0, MAX_TIMEOUT_S, above=True), default=3600, metavar="S")
    p.add_argument("--kernel-arg", dest="kernel_args", type=kernel_arg, action="append", default=[], metavar="ARG",
                   help="one more argument for the guest's kernel command line, after the variant's own (repeat "
                        "for more); the probe boots with it too, and the results record it (vmexec_kernel_args)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the arguments")


#: The guest runner's progress lines (bench.measure.runner.Progress).
_CASE_LINE = re.compile(r"^case (\d+) of (\d+): (\S+) \(")


def echo_with_host_clock() -> Callable[[str], None]:
    """Prints the guest's console, its 'case k of N' lines re-timed by the host's clock: an icount
    guest's clock counts instructions, which run several times slower than its nanoseconds."""
    from bench.measure.runner import Progress

    progress = None

    def echo(line: str) -> None:
        nonlocal progress
        case = _CASE_LINE.match(line)
        if case:
            k, total = int(case[1]) - 1, int(case[2])
            if progress is None or k == 0:      # a new run in the guest: a new clock
                progress = Progress(total)
            line = progress.line(k, case[3]) + " [host clock]"
        print(line, flush=True)
    return echo
