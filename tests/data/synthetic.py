"""Synthetic results with known answers, built with pyperf's own API (no timing involved).

Values are lognormal around the requested median with a fixed seed, so
every test sees the same numbers and knows what the statistics must recover.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pyperf

from bench.measure.plan import Planned
from bench.results import Case

MITIGATIONS = {"meltdown": "Not affected", "spectre_v2": "Mitigation: Retpolines", "mds": "Not affected"}


def case_metadata(name: str) -> dict:
    """The metadata `bench run` gives the case of that name (bench.measure.plan.Planned writes it)."""
    case = Case.parse(name)
    cpus = {"same": (0, 0), "cross": (0, 1), "none": (None, None), "in-process": (None, 0)}[case.pin]
    return Planned(case.backend, case.pin, case.pages, case.parallel, *cpus).metadata()


def write_suite(path: pathlib.Path, medians_ns: dict[str, float], *, vm: bool = False,
                accelerator: str = "tcg", timing: str = "icount", kernel: str = "6.12.57-vmexec",
                sigma: float = 0.05, between: float = 0.0, workers: int = 20, values: int = 3, seed: int = 1,
                started: str | None = None, unavailable: dict | None = None,
                failed: dict | None = None, metadata: dict | None = None) -> pathlib.Path:
    """A pyperf suite like `bench run` (or `bench vm run` with vm=True) writes, one benchmark per case.

    sigma is the spread of values within a worker, between the spread of the
    workers' own medians; started (ISO 8601) is pyperf's date of every run; metadata: more of it (vmexec_*).
    """
    rng = np.random.default_rng(seed)
    run_meta = {
        "hostname": "guest" if vm else "testhost", "cpu_model_name": "Synthetic CPU",
        "perf_version": pyperf.__version__, "python_version": "3.11.7 (64-bit)",
        "unit": "second", "vmexec_kernel": kernel if vm else "6.1.0-host",
        "vmexec_kernel_version": "#1 SMP", "vmexec_cpu_model": "Synthetic CPU @ 3.0GHz", "vmexec_cpus": 2,
        "vmexec_accelerator": accelerator if vm else "bare-metal", "vmexec_clocksource": "tsc",
        "vmexec_vm": "1" if vm else "0", "vmexec_timing": timing if vm else "wall",
        "vmexec_mitigations": json.dumps(MITIGATIONS), "vmexec_commit": "abc123def456",
        "vmexec_command": "python -m bench run --fast", "vmexec_cpus_used": "0,1",
        "vmexec_unavailable": json.dumps(unavailable or {}), "vmexec_failed": json.dumps(failed or {}),
    }
    if not vm:      # bench run hashes the running kernel's configuration (a twin is made from it)
        run_meta["vmexec_kernel_config"] = "5e7a11c0ffee0123"
    run_meta.update(metadata or {})
    if started:
        run_meta.update({"date": started, "duration": 1.0})
    benchmarks = []
    for name, median in medians_ns.items():
        meta = {**run_meta, **case_metadata(name), "name": name, "loops": 1000}
        runs = []
        for _ in range(workers):
            seconds = median * 1e-9 * rng.lognormal(0.0, between) * rng.lognormal(0.0, sigma, values)
            # A warm-up far off the median: it must never reach the statistics.
            runs.append(pyperf.Run(list(seconds), warmups=[(1000, median * 1e-9 * 50)],
                                   metadata=meta, collect_metadata=False))
        benchmarks.append(pyperf.Benchmark(runs))
    pyperf.BenchmarkSuite(benchmarks).dump(str(path))
    return path


def write_rfc(path: pathlib.Path, *, ptrace_ns: float = 7000.0, pvm_ns: float = 1400.0,
              pvm_available: bool = True, started: str = "2026-01-01T00:02:00") -> pathlib.Path:
    """An RFC-replica file in the schema `bench rfc` writes."""
    def program(name, true_ns, available=True, reason=""):
        iterations = int(5e9 / true_ns) if available else 0
        return {"program": name, "available": available, "reason": reason, "iterations": iterations,
                "seconds": 5.0 if available else 0.0,
                "rfc_printed_ns": 1e9 / iterations if available else 0.0,
                "true_ns_per_iteration": true_ns if available else 0.0}
    data = {"kind": "rfc-replica", "started": started, "kernel": "6.12.57-vmexec", "accelerator": "tcg", "timing": "icount",
            "programs": [program("ptrace_vm_exec", ptrace_ns),
                         program("process_vm_exec", pvm_ns, pvm_available,
                                 "" if pvm_available else "ENOSYS: not this kernel")]}
    path.write_text(json.dumps(data))
    return path


#: A host run: no process_vm_exec (ENOSYS), the usual mechanisms, a pages and a parallel sweep.
#: (backend, pinning, host ns, guest ns) of the C mechanisms beyond the reference three: host-versus-guest
#: distortions (host ns / guest ns) 0.5-0.85, inside the reference three's 0.33-0.90, so the bracket is theirs.
PROBES = (("seccomp-trace", "same", 11_000.0, 13_750.0), ("seccomp-unotify", "same", 5_000.0, 7_000.0),
          ("seccomp-unotify-sync", "same", 5_000.0, 8_000.0), ("syscall-user-dispatch", "in-process", 1_500.0, 3_000.0),
          ("ptrace-sysemu-poke", "same", 8_000.0, 9_400.0))
PROBES_HOST = [(b, p, h) for b, p, h, _ in PROBES]
HOST = {"native:pin=in-process": 300.0,
        "ptrace-sysemu:pin=same": 10_000.0, "ptrace-sysemu:pin=cross": 40_000.0,
        "ptrace-syscall:pin=same": 18_000.0, "ptrace-syscall:pin=cross": 60_000.0,
        "seccomp-trap:pin=in-process": 1_500.0,
        "ptrace-sysemu:pin=same:pages=16": 12_000.0, "ptrace-sysemu:pin=same:pages=256": 30_000.0,
        "seccomp-trap:pin=in-process:pages=16": 2_000.0, "seccomp-trap:pin=in-process:pages=256": 6_000.0,
        "ptrace-sysemu:pin=none:parallel=2": 6_000.0, "seccomp-trap:pin=in-process:parallel=2": 800.0,
        # the driver's other C mechanisms, so the bracket has the probes its rule needs (verdict.MIN_PROBES)
        **{f"{b}:pin={p}": v for b, p, v in PROBES_HOST}}
HOST_UNAVAILABLE = {"process-vm-exec:pin=same": "ENOSYS: process_vm_exec is not in this kernel",
                    "process-vm-exec:pin=cross": "ENOSYS: process_vm_exec is not in this kernel"}

#: A guest run on the patched kernel: process_vm_exec exactly 5x faster than SYSEMU at the same CPU.
GUEST = {"native:pin=in-process": 900.0,
         "ptrace-sysemu:pin=same": 10_000.0, "ptrace-sysemu:pin=cross": 30_000.0,
         "process-vm-exec:pin=same": 2_000.0, "process-vm-exec:pin=cross": 2_100.0,
         "ptrace-syscall:pin=same": 20_000.0, "seccomp-trap:pin=in-process": 2_500.0,
         **{f"{b}:pin={p}": g for b, p, _, g in PROBES}}


def write_reference_set(d: pathlib.Path) -> dict[str, pathlib.Path]:
    """A host run, a VM run and an RFC replica, as `bench report` finds them in results/."""
    return {"host": write_suite(d / "testhost-20260101-000000.json", HOST, unavailable=HOST_UNAVAILABLE),
            "guest": write_suite(d / "vm-tcg-icount-20260101-000100.json", GUEST, vm=True),
            "rfc": write_rfc(d / "rfc-testhost-20260101-000200.json")}
