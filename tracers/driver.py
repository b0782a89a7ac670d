"""Backends implemented in C by the `vmexec` driver (one per tracers/*.c)."""
from __future__ import annotations

import ctypes
import functools
import json
import os
import pathlib
import signal
import subprocess

from .base import Backend, BackendFailed, BackendUnavailable, RunResult, RunSpec

VMEXEC = pathlib.Path(__file__).with_name("vmexec")
#: Fault injection for the reliability tests: "BACKEND=FAULT[,...]", FAULT one
#: of the driver's -F values (tracee-segv, tracer-crash, hang).
FAULT_ENV = "VMEXEC_FAULT"
#: The same, applied only in pyperf's worker processes: a case that passes its
#: preflight check and then fails while it is measured.
WORKER_FAULT_ENV = "VMEXEC_FAULT_IN_WORKER"
#: Planted slowdowns for the regression check's tests: "BACKEND=NS[,...]" adds
#: about NS ns of work to each intercepted call (driver -L; ptrace tracers only).
PLANT_ENV = "VMEXEC_PLANT"
#: What a run passes on to its pyperf workers and into a guest.
TEST_KNOBS = (FAULT_ENV, WORKER_FAULT_ENV, PLANT_ENV)


def _knob(variable: str, backend: str) -> str | None:
    """The value given to backend in the BACKEND=VALUE[,...] test knob $variable, or None."""
    for item in os.environ.get(variable, "").split(","):
        name, _, value = item.partition("=")
        if name == backend and value:
            return value
    return None


def injected_fault(backend: str) -> str | None:
    """The fault $VMEXEC_FAULT injects into backend (a driver -F value), or None."""
    return _knob(FAULT_ENV, backend)


def planted_ns(backend: str) -> str | None:
    """The nanoseconds of work $VMEXEC_PLANT adds to each of backend's intercepted calls (driver -L), or None."""
    return _knob(PLANT_ENV, backend)


def _run_driver(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    if not VMEXEC.exists():
        raise BackendUnavailable(f"{VMEXEC} is not built: reinstall the package (pip install -e .)")
    return run_group([str(VMEXEC), *args], timeout)


def run_group(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """argv run to its end, its output captured; on a timeout or an interruption here its whole
    process group is killed first (a tracer's tracee included), so nothing is left stopped behind."""
    # A session of its own, so the whole group can be taken down; and it dies with this process (a pyperf
    # worker SIGKILLed by an interrupted run), not at its own timeout minutes later.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=die_with_parent)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        kill_group(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


#: libc's prctl, looked up here: a child between fork and exec must not load anything (a parent's thread
#: may hold the loader's lock at the fork).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl
PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> bool:
    """PR_SET_PDEATHSIG: this process gets sig when the process that started it dies (safe between fork and
    exec).  False if parent, its parent's pid read before, is gone already (it died before the prctl)."""
    _PRCTL(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    return parent is None or os.getppid() == parent


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to proc's whole process group (whatever of it is left), then wait for proc."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@functools.cache
def constants() -> dict:
    """The values Python shares with the driver and the loop (`vmexec constants`), read, never copied:
    loop_syscall, loop_arg, loop_end_arg, ptrace_sysemu, default_inject, default_timeout_s,
    max_parallel, page_bytes, and exit (exit status by name)."""
    return json.loads(_run_driver(["constants"], timeout=60).stdout)


def same_cpu_argv(vmexec: str, backend: str, syscalls: int, cpu: int, in_process: bool) -> list[str]:
    """`vmexec run` of backend with tracer and tracee on cpu (the tracee alone where the backend runs
    in-process): a host run's --pin same, as the anatomy guest and the prices' rounds run it too."""
    return [str(vmexec), "run", backend, "-n", str(syscalls), *([] if in_process else ["-t", str(cpu)]),
            "-T", str(cpu)]


@functools.cache
def driver_backends() -> tuple[DriverBackend, ...]:
    """Every backend the driver was built with, in its registry's order."""
    out = _run_driver(["list"], timeout=60).stdout
    return tuple(DriverBackend(b["name"], b["description"], b["in_process"], b["reason"] or None, b["kind"])
                 for b in json.loads(out))


class DriverBackend(Backend):
    def __init__(self, name: str, description: str, in_process: bool, reason: str | None, kind: str | None = None):
        self.name, self.description, self.in_process = name, description, in_process
        self._reason, self._kind = reason, kind

    @property
    def kind(self) -> str:
        return self._kind or super().kind

    def unavailable(self) -> str | None:
        return self._reason

    def run(self, spec: RunSpec) -> RunResult:
        timeout = spec.timeout or constants()["default_timeout_s"]
        args = ["run", self.name, "-n", str(spec.syscalls), "-k", str(spec.pages), "-P", str(spec.parallel),
                "-w", str(max(1, int(timeout)))]
        args += ["-i", str(spec.inject)] if spec.inject is not None else []
        args += ["-e", str(spec.expect)] if spec.expect is not None else []
        if spec.cpu_tracer is not None:
            args += ["-t", str(spec.cpu_tracer)]
        if spec.cpu_tracee is not None:
            args += ["-T", str(spec.cpu_tracee)]
        fault, plant = injected_fault(self.name), planted_ns(self.name)
        args += ["-F", fault] if fault else []
        args += ["-L", plant] if plant else []
        try:
            proc = _run_driver(args, timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            raise BackendFailed(f"{self.name}: timeout after {timeout + 30:.0f} s") from None
        try:
            report = json.loads(proc.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            detail = (proc.stderr.strip().splitlines() or [
                f"killed by signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
                else f"exit status {proc.returncode}"])[-1]
            raise BackendFailed(f"{self.name}: driver gave no result ({detail})") from None
        if proc.returncode == constants()["exit"]["unavailable"]:
            raise BackendUnavailable(report["error"])
        if proc.returncode != 0 or not report["ok"]:
            raise BackendFailed(f"{self.name}: {report['error']}")
        return RunResult(self.name, report["syscalls"], report["parallel"], report["calls"],
                         report["matched"], report["elapsed_ns"], report["pages"], report.get("first_call_ns"))
