"""PTRACE_SYSEMU driven from Python through python-ptrace.

The same per-call work as the C `ptrace-sysemu` (wait, GETREGS, set rax,
SETREGS, SYSEMU), to show what writing the tracer in Python costs.  The
tracee is `vmexec tracee -s PID`, which makes this process (PID) its tracer and stops.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from ptrace import PtraceError
from ptrace.binding import func as ptrace

from .base import Backend, BackendFailed, BackendUnavailable, RunResult, RunSpec
from .driver import VMEXEC, constants, driver_backends


class PythonPtraceSysemu(Backend):
    name = "python-ptrace-sysemu"
    description = "PTRACE_SYSEMU loop written in Python with python-ptrace"
    in_process = False

    def unavailable(self) -> str | None:
        # Same mechanism as the C backend: same verdict on ptrace permission.
        return next(b.unavailable() for b in driver_backends() if b.name == "ptrace-sysemu")

    def run(self, spec: RunSpec) -> RunResult:
        if spec.parallel != 1:
            raise BackendUnavailable("EINVAL: python-ptrace-sysemu traces one tracee at a time")
        reason = self.unavailable()
        if reason:
            raise BackendUnavailable(reason)
        # The tracer is this process: pin it for the run only, so the caller
        # (bench run's main process, whose workers inherit its affinity) keeps its CPUs.
        affinity = os.sched_getaffinity(0)
        try:
            if spec.cpu_tracer is not None:
                os.sched_setaffinity(0, {spec.cpu_tracer})
            return self._run_pinned(spec)
        finally:
            os.sched_setaffinity(0, affinity)

    def _run_pinned(self, spec: RunSpec) -> RunResult:
        expect = constants()["default_inject"] if spec.expect is None else spec.expect
        tracee = subprocess.Popen(
            [str(VMEXEC), "tracee", "-s", str(os.getpid()), "-n", str(spec.syscalls), "-e", str(expect),
             "-k", str(spec.pages)],
            stdout=subprocess.PIPE, text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, {spec.cpu_tracee}))
            if spec.cpu_tracee is not None else None)
        try:
            elapsed_ns = self._trace(tracee.pid, spec)
            out = tracee.stdout.read()
            _, status = os.waitpid(tracee.pid, 0)
            tracee.returncode = os.waitstatus_to_exitcode(status)
        except PtraceError as e:
            raise BackendFailed(f"{self.name}: {e}") from None
        finally:
            if tracee.returncode is None:
                tracee.kill()
                os.waitpid(tracee.pid, 0)
                tracee.returncode = -signal.SIGKILL
            tracee.stdout.close()
        report = json.loads(out) if out.strip() else {}
        if tracee.returncode != 0 or report.get("matched") != spec.syscalls:
            raise BackendFailed(
                f"{self.name}: tracee exit {tracee.returncode}, "
                f"{report.get('matched', 0)} of {spec.syscalls} return values matched "
                f"(first wrong: {report.get('first_bad')}, expected {expect})")
        return RunResult(self.name, spec.syscalls, 1, report["calls"], report["matched"], elapsed_ns,
                         report["pages"])

    def _trace(self, pid: int, spec: RunSpec) -> int:
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == constants()["exit"]["setup"]:
            raise BackendFailed(f"{self.name}: tracee set-up failed (exit status {os.WEXITSTATUS(status)}; "
                                "its stderr says why)")
        if not os.WIFSTOPPED(status) or os.WSTOPSIG(status) != signal.SIGSTOP:
            raise BackendFailed(f"{self.name}: tracee did not stop (status {status:#x})")
        ptrace.ptrace_setoptions(pid, ptrace.PTRACE_O_EXITKILL if hasattr(ptrace, "PTRACE_O_EXITKILL")
                                 else 0x100000)
        c = constants()     # the loop's syscall and markers, PTRACE_SYSEMU (python-ptrace has no name for it)
        inject = c["default_inject"] if spec.inject is None else spec.inject
        timeout = spec.timeout or c["default_timeout_s"]
        deadline = time.monotonic() + timeout
        t0 = time.perf_counter_ns()
        ptrace.ptrace(c["ptrace_sysemu"], pid)
        while True:
            _, status = os.waitpid(pid, 0)
            if not os.WIFSTOPPED(status):
                raise BackendFailed(f"{self.name}: tracee ended during the loop (status {status:#x})")
            regs = ptrace.ptrace_getregs(pid)
            if regs.orig_rax != c["loop_syscall"] or regs.rdi not in (c["loop_arg"], c["loop_end_arg"]):
                raise BackendFailed(f"{self.name}: intercepted a foreign syscall {regs.orig_rax}")
            if regs.rdi == c["loop_end_arg"]:
                elapsed = time.perf_counter_ns() - t0
                break
            if time.monotonic() > deadline:
                raise BackendFailed(f"{self.name}: timeout after {timeout:.0f} s")
            regs.rax = inject
            ptrace.ptrace_setregs(pid, regs)
            ptrace.ptrace(c["ptrace_sysemu"], pid)
        ptrace.ptrace_detach(pid)
        return elapsed
