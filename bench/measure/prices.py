"""The mechanisms' parts, measured on the host by `vmexec price` (tracers/prices.c): `bench prices`.

Each part is a micro-benchmark (bench.anatomy.composed fits the prices to them):

    entry       a syscall refused at once (ENOSYS): one kernel entry and exit
    signal      tgkill + empty handler + rt_sigreturn: kernel code without the scheduler
    files       eventfd2 + close: a long path of ordinary kernel code, nothing else
    poll        poll() of 64 entries, none ready: a short kernel loop, nothing else
    threads     futex ping-pong, two threads, one CPU: one scheduler round trip, one mm
    processes   the same between two processes: a round trip and the CR3 writes of two mms

With PAGES (the pages sweep's sizes) the passive side writes that many pages per iteration.  The
same commands run in the icount guest under the anatomy plugin (`bench prices-anatomy`), which
counts each part's path length.  Every part runs `runs` times on the host, interleaved (a round:
every part once); the record (ns per iteration of every run, switches, the load of every round)
is kept in prices/.

The parts and the prices are rows of data (PART_ROWS, PRICE_ROWS): a new micro-benchmark of
`vmexec price` and the price it measures (a wake-up, a signal) are one row each, no code.
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

#: The parts, one row each: `vmexec price PART` (part), context switches per iteration of its timed thread
#: (switches: checked on the host), iterations per host run (about 20-80 ms) and per guest run (icount
#: repeats itself: one run suffices), and whether the prices are fitted to it (fit).
PART_ROWS = (
    {"label": "entry", "part": "entry", "switches": 0, "host_iterations": 400000, "guest_iterations": 20000,
     "fit": True},
    {"label": "signal", "part": "signal", "switches": 0, "host_iterations": 20000, "guest_iterations": 5000,
     "fit": True},
    # Kernel code with none of the other prices (issue 26): without them the price per instruction was only
    # inferred beside round trips of ~9,300 instructions each, and on the Intel Xeon VM a fit could trade it
    # against the round trip's price (0.089 or 0.160 ns, round trip 617 or 0 ns) at the same residuals.
    # "files" is a long path run once (eventfd2 + close), "poll" a short loop run 64 times: if one price per
    # instruction holds for both, their residuals show it.
    {"label": "files", "part": "files", "switches": 0, "host_iterations": 50000, "guest_iterations": 5000,
     "fit": True},
    {"label": "poll", "part": "poll", "switches": 0, "host_iterations": 20000, "guest_iterations": 2000,
     "fit": True},
    {"label": "threads", "part": "threads", "switches": 1, "host_iterations": 10000, "guest_iterations": 5000,
     "fit": True},
    {"label": "processes", "part": "processes", "switches": 1, "host_iterations": 10000,
     "guest_iterations": 5000, "fit": True},
    # A ptrace stop's own loop (`vmexec stop`, tracers/stops.c; issue 26): the tracer sleeps in waitpid() at
    # every stop, where the futex parts' waiter is mostly preempted instead (bench events: 2.00 wake-ups
    # per stop against 1.2 a round trip).  "yield": the tracer never sleeps, only the tracee does.
    {"label": "stop-wait", "command": "stop", "part": "wait", "switches": 1, "host_iterations": 10000,
     "guest_iterations": 5000, "fit": True},
    {"label": "stop-yield", "command": "stop", "part": "yield", "switches": 1, "host_iterations": 10000,
     "guest_iterations": 5000, "fit": True},
    # "getregs": `wait` plus one PTRACE_GETREGS per stop, so that a ptrace request's price (bench stop-prices
    # measured getregs - wait at 380 ns on the Intel Xeon VM, most of it not instructions) is fitted apart
    # from the stop's: the backends make two to six requests per intercepted call.
    {"label": "stop-getregs", "command": "stop", "part": "getregs", "switches": 1, "host_iterations": 10000,
     "guest_iterations": 5000, "fit": True},
    # A probe beside files (fit False: shown against the prices, never fitted): the file table's part of it
    # alone, no file made or freed; on the AMD EPYC VM files cost 26% more than its counts priced (issue 26).
    {"label": "dup", "part": "dup", "switches": 0, "host_iterations": 50000, "guest_iterations": 5000,
     "fit": False, "probe": True},
    # A return through a copy of SRSO's Safe RET thunk, and the same instructions returning as predicted: their
    # difference is the safe_ret price, measured (PRICE_ROWS' "direct"), not fitted (issue 26).
    {"label": "ret-thunk", "part": "ret-thunk", "switches": 0, "host_iterations": 2000000,
     "guest_iterations": 20000, "fit": False},
    {"label": "ret-plain", "part": "ret-plain", "switches": 0, "host_iterations": 2000000,
     "guest_iterations": 20000, "fit": False},
)
#: The pages sweep (bench run --scaling's sizes): threads and processes with the passive side writing
#: that many pages per iteration.  The address-space switch premium is reported at each size; the prices
#: are also fitted to the sizes whose pages fit in a core's L2 (FIT_PAGES: up to 64 KiB written per
#: iteration), where an instruction costs what it costs in the loops, not a trip to memory.
SWEEP_PAGES = (1, 16, 256, 4096)
SWEEP_PARTS = ("threads", "processes")
FIT_PAGES = (1, 16)
#: Fewer iterations at many pages, so a run stays short (guest; the host runs 4 times as many, at least 40).
PAGES_ITERATIONS = {1: 5000, 16: 2000, 256: 400, 4096: 40}

#: Entries the poll part polls per iteration (POLL_FDS in tracers/prices.c): one indirect call each.
POLL_ENTRIES = 64
#: The kernel functions that save the FPU state to a signal frame, restore it from one, or clear it for a
#: handler (a compiler's .constprop/.isra copies included); where os_xrstor is not inlined into
#: fpu__clear_user_states, that XRSTOR goes to the round trip's reload's function and is left out of both
#: the parts and the mechanisms alike, counted on one kernel.
SIGNAL_FPU_FUNCTIONS = ("copy_fpstate_to_sigframe", "__fpu_restore_sig", "fpu__restore_sig",
                        "fpu__clear_user_states")
#: The prices, the unknowns of the fit, one row each: its name, its meaning, and how many of it one
#: iteration (or one intercepted syscall) spends, read from its anatomy (bench.anatomy.composed.count):
#:   insns                  instructions, each REP string instruction counted once (as hardware runs it)
#:   totals                 the sum of these anatomy totals (counted events)
#:   events, in_functions   the sum of these counted events in these functions only
#:   function, unit_part    the instructions spent in that function (family: in every function whose name
#:                          begins so) over the unit part's, which makes exactly unit_calls (default 1) of
#:                          it per iteration by construction (a fixed-length path)
#:   function, insns_per_call  the instructions spent in these functions over their fixed instructions per call
#: and, where the parts cannot tell a price from another, how it is measured instead of fitted:
#:   direct                 (part, its twin): the price is part's host ns per iteration less its twin's
#:   held_beside            a price: where the parts run that one, this price is held at 0 (priced there)
PRICE_ROWS = (
    {"name": "insn", "insns": True,
     "meaning": "ns per instruction (REP string counted once) of kernel and user code outside the scheduler"},
    {"name": "entry", "totals": ("syscall", "exc_irq"),
     "meaning": "ns per kernel entry and exit beyond its instructions"},
    {"name": "round_trip", "function": "__switch_to_asm", "unit_part": "threads",
     "meaning": "ns per scheduler round trip (two context switches on one CPU) beyond its instructions, its "
                "FPU switch included (each side's state saved at the switch, reloaded before user mode)"},
    {"name": "ptrace_stop", "function": "ptrace_stop", "unit_part": "stop-wait",
     "meaning": "ns per ptrace stop beyond its instructions (the tracer's sleep in waitpid, its wake-up, the "
                "SIGCHLD; issue 26): priced by the stop loops of `vmexec stop`, one stop per iteration"},
    {"name": "ptrace_request", "function": "__x64_sys_ptrace", "unit_part": "stop-wait",
     "meaning": "ns per ptrace request on a stopped tracee beyond its instructions (ptrace_check_attach's "
                "freeze and wait_task_inactive, the thaw; issue 26): counted by the ptrace syscall's fixed "
                "entry over the stop-wait part's one request (its resume) per iteration"},
    # Only the signal frame's: the switch's own XSAVE/XRSTOR come four to a round trip in every part (a price
    # of their own would be the round trip's twin, unknowable apart; on the Intel Xeon VM a fit that tried put
    # the round trip at 0 ns, issue 26), and a frame's are a different operation: the whole state written to
    # and read from the user's stack, where the switch's XSAVES into the kernel's buffer skips what is unused.
    # The host kernel calls through retpolines (spectre_v2 "Mitigation: Retpolines" on the Intel Xeon VM), and so
    # does the twin in the guest: each indirect call (f_op->poll, a sched_class method, a wake function) jumps
    # to a 3-instruction thunk whose return is mispredicted on purpose.  The poll part makes 64 per iteration:
    # with no price of their own they sat on the price per instruction (poll -24.5%, files +18.2%, issue 26).
    # Where the kernel returns through SRSO's Safe RET, a retpoline's return is one of those (arch/x86/lib/
    # retpoline.S: RETPOLINE ends in RET, `jmp __x86_return_thunk` with CONFIG_MITIGATION_RETHUNK): its
    # misprediction is the safe_ret price's, counted there, and nothing of its own is left to price
    # ("held_beside": held at 0 where that price is run; the AMD EPYC VM's fits found 0 for it).
    {"name": "retpoline", "function": "__x86_indirect_thunk_", "family": True, "unit_part": "poll",
     "unit_calls": POLL_ENTRIES, "held_beside": "safe_ret",
     "meaning": "ns per indirect call through a retpoline thunk beyond its instructions (its return is "
                "mispredicted on purpose): counted by the thunks' instructions over the poll part's, one "
                "call per polled entry"},
    {"name": "fpu", "events": ("xsave", "xrstor"), "in_functions": SIGNAL_FPU_FUNCTIONS,
     "meaning": "ns per XSAVE or XRSTOR of a signal frame beyond its instruction: the FPU state saved to the "
                "user's signal frame, restored from it at rt_sigreturn, cleared for the handler (the whole "
                "AVX-512/AMX state on a Xeon)"},
    {"name": "cr3_write", "totals": ("cr3_write",),
     "meaning": "ns per CR3 write beyond its instructions: the address-space switch premium "
                "(two processes against two threads, per CR3 write)"},
    # Measured directly since the AMD EPYC VM's fits put the price per instruction at 0 and this one at 10.3 ns:
    # returns are 2.3-3.0% of the instructions in every part, so the parts cannot tell the two apart (issue 26).
    # Decided before the next run: the thunk's copy in user space against the same instructions predicted.
    # Chosen before any machine that runs it was measured (issue 26): where SRSO's Safe RET is the kernel's
    # return thunk (the AMD EPYC VM: "Vulnerable: Safe RET, no microcode"; the twin booted as that CPU runs it
    # too), every return calls the thunk, whose own return is mispredicted on purpose: a cost per return that
    # no instruction count carries, and paths differ in returns per instruction (the twin booted as that CPU,
    # results/anatomy/twin-booted-as-amd-epyc/: 2.9% for ptrace-sysemu, 2.6% for seccomp-unotify, 2.3% for the
    # round-trip parts).  A kernel that does not run it counts none, in every part: then it is no unknown of
    # the fit (bench.anatomy.composed.fit).
    {"name": "safe_ret", "function": ("srso_return_thunk", "srso_alias_return_thunk"), "insns_per_call": 1,
     "direct": ("ret-thunk", "ret-plain"),
     "meaning": "ns per kernel return through SRSO's Safe RET thunk beyond its instructions (its return is "
                "mispredicted on purpose): counted by the thunk's one call per return; measured by a copy of the "
                "thunk against the same instructions returning as predicted (ret-thunk - ret-plain)"},
)
#: The mechanisms timed in the same rounds as the parts (`vmexec run`, pinned as the host run pins them), with their
#: iterations per run (about 20-60 ms).  A host run made a minute before the prices drifted against them on the AMD
#: EPYC VM (ptrace-sysemu 9,598 ns in one, 11,141 in the next, the prices alike: issue 26), a shift the composition
#: would take for the model's error; timed between the parts, both sides drift together.  process_vm_exec is no
#: host mechanism, and a rewriting backend enters no kernel path the prices price.
ROUND_MECHANISMS = {"native": 200000, "ptrace-syscall": 2000, "ptrace-sysemu": 4000, "ptrace-sysemu-poke": 4000,
                    "seccomp-trace": 4000, "seccomp-trap": 20000, "seccomp-unotify": 8000,
                    "seccomp-unotify-sync": 8000, "syscall-user-dispatch": 20000}
#: The label of a mechanism's times in a prices record (ns per intercepted call, beside the parts').
MECHANISM = "mechanism:"
#: Rounds of every part on the host: enough for a bootstrap over rounds (issue 26: 6 s of prices on a
#: busy host gave a native composed -49% off).
DEFAULT_RUNS = 30
MIN_RUNS = 10
#: Where a run's measured prices and composition are kept (relative to the results directory).
DIRECTORY = "prices"


def label(part: str, pages: int = 0) -> str:
    return part if not pages else f"{part}-k{pages}"


def part_rows(pages=SWEEP_PAGES) -> list[dict]:
    """Every part's row: PART_ROWS, then the pages sweep's (threads and processes at each size)."""
    base = {r["label"]: r for r in PART_ROWS}
    sweep = [{**base[p], "label": label(p, k), "pages": k, "fit": k in FIT_PAGES,
              "guest_iterations": PAGES_ITERATIONS[k], "host_iterations": max(4 * PAGES_ITERATIONS[k], 40)}
             for k in pages for p in SWEEP_PARTS]
    return [*PART_ROWS, *sweep]


def probe_parts() -> tuple[str, ...]:
    """The labels of the probes: parts shown against the fitted prices, never fitted."""
    return tuple(r["label"] for r in part_rows() if r.get("probe"))


def fitted_parts() -> tuple[str, ...]:
    """The labels of the parts the prices are fitted to."""
    return tuple(r["label"] for r in part_rows() if r["fit"])


def commands(vmexec: str, guest: bool, cpu: int = 0, pages=SWEEP_PAGES) -> list[tuple[str, list[str]]]:
    """(label, argv) of every micro-benchmark run: the parts, then the pages sweep's."""
    key = "guest_iterations" if guest else "host_iterations"
    return [(r["label"], [vmexec, r.get("command", "price"), r["part"], "-n", str(r[key]), *(["-k", str(r["pages"])] if r.get("pages")
                                                                           else []), "-c", str(cpu)])
            for r in part_rows(pages)]


def mechanism_commands(vmexec: str, cpu: int = 0) -> list[tuple[str, list[str]]]:
    """(label, argv) of every mechanism timed in the rounds: tracer and tracee on cpu (the tracee alone where
    the backend runs in-process), as the host run's --pin same."""
    from tracers.driver import driver_backends, same_cpu_argv

    in_process = {b.name: b.in_process for b in driver_backends()}
    return [(MECHANISM + b, same_cpu_argv(vmexec, b, n, cpu, in_process[b]))
            for b, n in ROUND_MECHANISMS.items() if b in in_process]


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


def load_sample() -> dict:
    """The host's load now, under the keys pyperf records with every worker run (bench.results.BUSY_KEYS)."""
    running = 0
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("procs_running "):
                running = int(line.split()[1])
    except OSError:
        pass
    return {"load_avg_1min": round(os.getloadavg()[0], 2), "runnable_threads": running}


def measure_host(runs: int = DEFAULT_RUNS, cpu: int = 0, log=print) -> dict:
    """Every part `runs` times on the host, interleaved (one round: every part once), pinned to cpu.
    Returns the record written to prices/: ns per iteration of every run, switches, the load of every round."""
    if runs < MIN_RUNS:
        raise UsageError(f"--runs must be at least {MIN_RUNS} (the prices' bootstrap resamples rounds)")
    if cpu not in os.sched_getaffinity(0):
        raise UsageError(f"--cpu {cpu}: not a CPU this process may run on ({sorted(os.sched_getaffinity(0))})")
    cmds = commands(str(VMEXEC), guest=False, cpu=cpu) + mechanism_commands(str(VMEXEC), cpu)
    values = {lab: [] for lab, _ in cmds}
    switches = {lab: [] for lab, _ in cmds if not lab.startswith(MECHANISM)}
    loads = []
    load_before = _load_line()
    started = datetime.datetime.now(datetime.timezone.utc)
    for r in range(runs):
        for lab, argv in cmds:
            rep = run_part(argv)
            values[lab].append(rep["elapsed_ns"] / rep["calls"])
            if lab in switches:
                switches[lab].append(rep["switches"])
        loads.append(load_sample())
        log(f"prices: round {r + 1}/{runs} done (load {_load_line()})")
    return {"host": socket.gethostname(), "kernel": platform.release(), "cpu_model": cpu_model(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "started": started.isoformat(timespec="seconds"),
            "seconds": round(time.time() - started.timestamp(), 1), "load_before": load_before,
            "load_after": _load_line(), "runs": runs, "round_loads": loads,
            "commands": {lab: " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv)) for lab, argv in cmds},
            "ns_per_iteration": values, "switches_per_iteration": switches}


def check_switches(record: dict) -> None:
    """Each part must have switched as often per iteration on its timed thread as its row says:
    otherwise it did not measure what its label says."""
    want = {r["label"]: r["switches"] for r in part_rows()}
    for lab, sw in record["switches_per_iteration"].items():
        got = float(statistics.median(sw))
        if lab in want and abs(got - want[lab]) > 0.05:
            raise BenchError(f"the {lab} part switched {got:.3f} times per iteration on the host, not {want[lab]}")


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


