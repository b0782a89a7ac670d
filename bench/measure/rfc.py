"""The RFC's two benchmark programs (rfc/*.c), re-implemented, compiled and run (`bench rfc`: bench.commands.rfc).

Each loops for a span of CLOCK_MONOTONIC (5 s, as in the RFC) and prints the
RFC's figure, 1e9 / iterations, which for a 5-second loop is one fifth of the
real cost, next to the true cost per iteration.  On a kernel without
process_vm_exec that program reports itself unavailable.  The figures go to
results/rfc-HOST-TIME.json (kind "rfc-replica"), which `bench report` reads.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from bench.measure import environment, guardian
from bench import results
from bench.measure.environment import asset
from bench.errors import BenchError
from bench.measure.kernel import cache_root
from tracers.driver import constants

PROGRAMS = ("ptrace_vm_exec", "process_vm_exec")
SOURCES = [*(asset(f"rfc/{p}.c") for p in PROGRAMS),
           asset("rfc/replica.h"), asset("tracers/process_vm_exec.h"), asset("tracee/args.h")]
CFLAGS = ["-O2", "-Wall", "-Wextra", "-fno-stack-protector"]


def programs_dir() -> Path:
    """Where the programs are built: the cache, by the sources' content and the flags."""
    h = hashlib.sha256(" ".join(CFLAGS).encode())
    for src in SOURCES:
        h.update(src.read_bytes())
    return cache_root() / "rfc" / h.hexdigest()[:16]


def compile_programs() -> dict[str, Path]:
    """The built programs, compiled once per source content (`bench vm rfc` compiles them on the host
    first: a guest sees the cache read-only)."""
    out = programs_dir()
    built = {}
    for name in PROGRAMS:
        exe = out / name
        if not exe.exists():
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise BenchError(f"cannot build rfc/{name} in {out}: {e.strerror}") from None
            tmp = out / f".{name}.{os.getpid()}"
            proc = subprocess.run(["gcc", *CFLAGS, "-o", str(tmp), str(asset(f"rfc/{name}.c"))],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise BenchError(f"compiling rfc/{name}.c failed: {proc.stderr.strip()[-500:]}")
            tmp.rename(exe)
        built[name] = exe
    return built


def run(seconds: float = 5.0) -> list[dict]:
    """One result per program: its JSON line ({'program', 'available', ...})."""
    unavailable = constants()["exit"]["unavailable"]
    results = []
    for name, exe in compile_programs().items():
        try:    # an interruption, a hang or our death (SIGHUP, SIGKILL) takes the program and its tracee down
            proc = guardian.run_group([str(exe), str(seconds)], timeout=seconds + 60, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        except subprocess.TimeoutExpired:
            raise BenchError(f"rfc/{name} did not finish within {seconds + 60:g} s") from None
        if proc.returncode not in (0, unavailable) or not proc.stdout.strip():
            raise BenchError(f"rfc/{name} failed (exit status {proc.returncode}): "
                             f"{(proc.stderr or proc.stdout).strip()[-500:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def write(programs: list[dict], output: Path, tags: dict[str, str], started: str, exists: str = "fail") -> Path:
    """The replica's record, published atomically (the schema bench.stats.load_rfc reads)."""
    where = environment.where_facts()       # measured or detected; the tags are labels beside them
    record = {"kind": results.RFC_KIND, "started": started, "kernel": os.uname().release,
              "accelerator": environment.accelerator(), "timing": where["vmexec_timing"],
              "vm": where["vmexec_vm"], "commit": environment.git_commit(), "tags": tags,
              "programs": programs}
    return results.publish(output, lambda staged: staged.write_text(json.dumps(record, indent=1) + "\n"),
                           exists=exists)
