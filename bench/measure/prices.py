"""The mechanisms' parts, measured on the host by `vmexec price` (tracers/prices.c): `bench prices`.

Each part is a micro-benchmark of one price (bench.anatomy.composed solves for them):

    entry       a syscall refused at once (ENOSYS): one kernel entry and exit
    signal      tgkill + empty handler + rt_sigreturn: kernel code without the scheduler
    threads     futex ping-pong, two threads, one CPU: one scheduler round trip, one mm
    processes   the same between two processes: a round trip and the CR3 writes of two mms

With PAGES (the pages sweep's sizes) the passive side writes that many pages per iteration.  The
same commands run in the icount guest under the anatomy plugin (`bench prices-anatomy`), which
counts each part's path length.  Every part runs `runs` times on the host, interleaved; the
record (ns per iteration of every run, switches, the load) is kept in prices/.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import socket
import subprocess
import statistics
import time
from pathlib import Path

from bench.errors import BenchError, UsageError
from bench.measure.environment import cpu_model
from tracers.driver import VMEXEC

#: The parts, in the order of the prices' linear system's rows: (label, round trips per iteration by construction).
PARTS = (("entry", 0), ("signal", 0), ("threads", 1), ("processes", 1))
#: The pages sweep's sizes (bench run --scaling): the premium is also measured at each.
SWEEP_PAGES = (1, 16, 256, 4096)
#: Iterations per guest run (icount repeats itself: one run suffices) and per host run (about 20-80 ms).
GUEST_ITERATIONS = {"entry": 20000, "signal": 5000, "threads": 5000, "processes": 5000}
HOST_ITERATIONS = {"entry": 400000, "signal": 20000, "threads": 10000, "processes": 10000}
#: Fewer iterations at many pages, so a run stays short.
PAGES_ITERATIONS = {1: 5000, 16: 2000, 256: 400, 4096: 40}
DEFAULT_RUNS = 20
#: Where a run's measured prices and composition are kept (relative to the results directory).
DIRECTORY = "prices"


def label(part: str, pages: int = 0) -> str:
    return part if not pages else f"{part}-k{pages}"


def commands(vmexec: str, guest: bool, cpu: int = 0, pages=SWEEP_PAGES) -> list[tuple[str, list[str]]]:
    """(label, argv) of every micro-benchmark run: the four parts, then threads and processes at
    each of the pages sweep's sizes."""
    n = GUEST_ITERATIONS if guest else HOST_ITERATIONS
    out = [(p, [vmexec, "price", p, "-n", str(n[p]), "-c", str(cpu)]) for p, _ in PARTS]
    for k in pages:
        for p in ("threads", "processes"):
            iters = PAGES_ITERATIONS[k] if guest else max(4 * PAGES_ITERATIONS[k], 40)
            out.append((label(p, k), [vmexec, "price", p, "-n", str(iters), "-k", str(k), "-c", str(cpu)]))
    return out


def run_part(argv: list[str]) -> dict:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        report = {"ok": False, "error": (proc.stderr or proc.stdout).strip()[:300]}
    if proc.returncode != 0 or not report.get("ok"):
        raise BenchError(f"`{' '.join(argv)}` failed (status {proc.returncode}): {report.get('error')}")
    return report


def _load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def measure_host(runs: int = DEFAULT_RUNS, cpu: int = 0, log=print) -> dict:
    """Every part `runs` times on the host, interleaved (one round: every part once), pinned to cpu.
    Returns the record written to prices/: ns per iteration of every run, switches, the load."""
    if runs < 5:
        raise UsageError("--runs must be at least 5 (a bootstrap of the median needs a few values)")
    if cpu not in os.sched_getaffinity(0):
        raise UsageError(f"--cpu {cpu}: not a CPU this process may run on ({sorted(os.sched_getaffinity(0))})")
    cmds = commands(str(VMEXEC), guest=False, cpu=cpu)
    values = {lab: [] for lab, _ in cmds}
    switches = {lab: [] for lab, _ in cmds}
    load_before = _load_line()
    started = datetime.datetime.now(datetime.timezone.utc)
    for r in range(runs):
        for lab, argv in cmds:
            rep = run_part(argv)
            values[lab].append(rep["elapsed_ns"] / rep["calls"])
            switches[lab].append(rep["switches"])
        log(f"prices: round {r + 1}/{runs} done (load {_load_line()})")
    return {"host": socket.gethostname(), "kernel": platform.release(), "cpu_model": cpu_model(), "cpu": cpu,
            "started": started.isoformat(timespec="seconds"), "seconds": round(time.time() - started.timestamp(), 1),
            "load_before": load_before, "load_after": _load_line(), "runs": runs,
            "commands": {lab: " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv)) for lab, argv in cmds},
            "ns_per_iteration": values, "switches_per_iteration": switches}


def check_switches(record: dict) -> None:
    """Each round trip part must have switched about once per iteration on its timed thread, the others
    not at all: otherwise it did not measure what its label says."""
    for lab, sw in record["switches_per_iteration"].items():
        want = 0 if lab in ("entry", "signal") else 1
        got = float(statistics.median(sw))
        if abs(got - want) > 0.05:
            raise BenchError(f"the {lab} part switched {got:.3f} times per iteration on the host, not {want}")


def newest_record(directories) -> Path | None:
    """The newest prices record (by its start) among directories, or None."""
    found = [p for d in directories if Path(d).is_dir() for p in Path(d).glob("prices-*.json")]
    return max(found, key=lambda p: str(load_record(p).get("started", ""))) if found else None


def load_record(path: Path) -> dict:
    """A prices record (measure_host's), or a one-line UsageError: read as results files are, with every
    part's times a non-empty list of finite positive numbers and its switch counts finite and >= 0."""
    from bench.results import read_json

    record = read_json(path)
    for key, low, above in (("ns_per_iteration", 0, True), ("switches_per_iteration", 0, False)):
        parts = record.get(key, {} if key == "switches_per_iteration" else None)    # counted since 2026-12
        if not isinstance(parts, dict) or not parts and key == "ns_per_iteration":
            raise UsageError(f"{path}: not a prices record (no {key} by part)")
        for part, values in parts.items():
            if not isinstance(values, list) or not values or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    and (v > low if above else v >= low) for v in values):
                raise UsageError(f"{path}: {key} of part {part} is not a list of finite numbers "
                                 f"{'>' if above else '>='} {low}: {values!r:.60}")
    return record


