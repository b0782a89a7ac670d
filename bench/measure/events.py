"""Kernel events per intercepted call, counted with tracefs tracepoints (issue 26, item 2): `bench events`.

Every C mechanism (`vmexec run BACKEND`), every price part (`vmexec price PART`) and every ptrace-stop
variant (`vmexec stop VARIANT`) runs at two loop lengths N1 < N2 while a tracefs *instance* of our own
records the tracepoints of EVENTS for its processes only (set_event_pid with event-fork: the driver and
every process it forks); the count per call is (count at N2 - count at N1) / (N2 - N1), so start-up and
exit cancel.  Counts, not times: load adds only the preemptions, which are counted on their own
("preempted": switches away from one of ours while it was still runnable).

The machine is left as found: the instance is ours alone (other tracefs users are unaffected), tracefs is
mounted in a private mount namespace if it was not mounted, and a guardian process removes the instance
however this process ends (SIGKILL included).
"""
from __future__ import annotations

import collections
import ctypes
import datetime
import os
import platform
import re
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.errors import BenchError, UsageError
from bench.measure.environment import cpu_model, memory_cgroup
from bench.measure.prices import PART_ROWS

#: column -> (tracepoint, what it counts for our processes).
EVENTS = {
    "switches": ("sched/sched_switch", "context switches between two of them, or between one and idle"),
    "wakeups": ("sched/sched_wakeup", "wake-ups of one of them"),
    "signals_generated": ("signal/signal_generate", "signals generated for one of them (ignored ones included)"),
    "signals_delivered": ("signal/signal_deliver", "signals delivered to a handler in one of them"),
    "syscalls": ("raw_syscalls/sys_enter", "syscall entries that reach the syscall table (not those a "
                                           "ptrace SYSEMU stop or seccomp skips)"),
    "tlb_flushes": ("tlb/tlb_flush", "TLB flushes while one of them runs"),
    "msr_writes": ("msr/write_msr", "MSR writes while one of them runs"),
    "fpu_reloads": ("x86_fpu/x86_fpu_regs_activated", "FPU register activations (a reload before user mode)"),
}
#: Derived: of the switches, those away from one of ours while it was runnable (preempted, or yielding).
PREEMPTED = "preempted"
#: Derived, and not among the switches: to or from a task not ours (nor idle): other tasks preempting
#: ours, kernel threads; the load's share of the count, kept apart so that "switches" is the mechanism's.
OTHER_SWITCHES = "other_switches"
COLUMNS = (*EVENTS, PREEMPTED, OTHER_SWITCHES)
#: Followed to know the driver's children.
FORK_EVENT = "sched/sched_process_fork"
DEFAULT_CALLS = (1000, 3000)
DEFAULT_RUNS = 3
#: Per-CPU ring buffer of the instance, KiB: ptrace-syscall at 3,000 calls writes about 5 MB.
BUFFER_KB = 32768
INSTANCE_PREFIX = "vmexec-events-"
MOUNTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
#: Where the results go, under the results directory.
DIRECTORY = Path("anatomy") / "events"

_LINE = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[\d+\]\s+(?:\S+\s+)?[\d.]+: "
                   r"(?P<event>\w+): (?P<rest>.*)$")
_FIELD = re.compile(r"(\w+)=(\S+)")


# ------------------------------------------------------------------------------------------ tracefs

def _mounted() -> Path | None:
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    points = {line.split()[1] for line in lines if len(line.split()) > 2 and line.split()[2] == "tracefs"}
    return next((Path(p) for p in MOUNTS if p in points), None) or (Path(sorted(points)[0]) if points else None)


def _private_mount() -> Path:
    """Mounts tracefs at MOUNTS[0] in a mount namespace of this process's own, which dies with it."""
    if threading.active_count() > 1:
        raise BenchError("tracefs is not mounted, and this process has threads: cannot unshare a mount namespace")
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 1 << 18
    if not Path(MOUNTS[0]).is_dir():
        raise BenchError(f"this kernel ({platform.release()}) has no tracefs ({MOUNTS[0]} is missing: no CONFIG_FTRACE)")
    if libc.unshare(CLONE_NEWNS) != 0:
        raise BenchError(f"tracefs is not mounted and unshare(CLONE_NEWNS) failed: {os.strerror(ctypes.get_errno())}"
                         " (run as root)")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0 or \
            libc.mount(b"nodev", MOUNTS[0].encode(), b"tracefs", 0, None) != 0:
        raise BenchError(f"cannot mount tracefs at {MOUNTS[0]}: {os.strerror(ctypes.get_errno())}")
    return Path(MOUNTS[0])


#: The guardian: waits for its stdin to close (this process ended, however), then disables and removes
#: the instance.  It leads its own session, so a signal to our process group does not reach it.
_GUARDIAN = r"""
import os, sys, time
inst = sys.argv[1]
sys.stdin.buffer.read()
for name in ("tracing_on", "events/enable", "set_event_pid"):
    try:
        with open(os.path.join(inst, name), "w") as f:
            f.write("0\n" if name != "set_event_pid" else "\n")
    except OSError:
        pass
for _ in range(50):
    try:
        os.rmdir(inst)
        break
    except FileNotFoundError:
        break
    except OSError:
        time.sleep(0.1)
"""


class Instance:
    """A tracefs instance of our own with EVENTS enabled for the processes we start; a context manager."""

    def __init__(self, buffer_kb: int = BUFFER_KB):
        self.buffer_kb = buffer_kb
        self.path: Path | None = None
        self._guardian: subprocess.Popen | None = None

    def __enter__(self) -> Instance:
        root = _mounted() or _private_mount()
        instances = root / "instances"
        if not instances.is_dir():
            raise BenchError(f"{root} has no instances/ (tracefs too old?)")
        _remove_stale(instances)
        missing = [tp for tp, _ in [*EVENTS.values(), (FORK_EVENT, "")] if not (root / "events" / tp).is_dir()]
        if missing:
            raise BenchError(f"this kernel ({platform.release()}) lacks the tracepoint(s) {', '.join(missing)}")
        self.path = instances / f"{INSTANCE_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.path.mkdir()
        self._guardian = subprocess.Popen([sys.executable, "-c", _GUARDIAN, str(self.path)], stdin=subprocess.PIPE,
                                          start_new_session=True, stdout=subprocess.DEVNULL)
        try:
            self._write("tracing_on", "0")
            self._write("buffer_size_kb", str(self.buffer_kb))
            self._write("options/event-fork", "1")
            for tp in [*(tp for tp, _ in EVENTS.values()), FORK_EVENT]:
                self._write(f"events/{tp}/enable", "1")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._guardian is not None:
            self._guardian.stdin.close()        # the guardian cleans up, as it would after a SIGKILL
            try:
                self._guardian.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self._guardian = None

    def _write(self, name: str, text: str) -> None:
        try:
            (self.path / name).write_text(text + "\n")
        except OSError as e:
            raise BenchError(f"tracefs: cannot write {text!r} to {self.path / name}: {e.strerror}") from None

    def trace(self, argv: list[str], timeout: float = 600) -> tuple[str, int, str, int]:
        """Runs argv with its events recorded: (its stdout, its exit status, the trace's text, its pid)."""
        self._write("tracing_on", "0")
        self._write("trace", "")                # clears the buffer
        self._write("set_event_pid", "")
        # A gate: the shell waits for a line before it becomes the command, so its pid is filtered first.
        proc = subprocess.Popen(["sh", "-c", 'read _ && exec "$@"', "sh", *argv], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self._write("set_event_pid", str(proc.pid))
            self._write("tracing_on", "1")
            out, err = proc.communicate("go\n", timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            self._write("tracing_on", "0")
        lost = self.lost()
        if lost:
            raise BenchError(f"tracefs lost {lost} events of `{' '.join(argv[1:])}` (buffer {self.buffer_kb} KiB "
                             "per CPU): fewer calls, or a larger buffer")
        return (out + (err if proc.returncode else ""), proc.returncode,
                (self.path / "trace").read_text(errors="replace"), proc.pid)

    def lost(self) -> int:
        total = 0
        for stats in (self.path / "per_cpu").glob("cpu*/stats"):
            for line in stats.read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() in ("overrun", "dropped events"):
                    total += int(value.split()[0])
        return total


def _remove_stale(instances: Path) -> None:
    """Instances an earlier run of ours left (its process and guardian gone): removed."""
    for inst in instances.glob(f"{INSTANCE_PREFIX}*"):
        pid = inst.name[len(INSTANCE_PREFIX):].partition("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            try:
                (inst / "tracing_on").write_text("0\n")
                inst.rmdir()
            except OSError:
                pass


# ------------------------------------------------------------------------------------------ counting

def count(trace_text: str, root_pid: int) -> tuple[collections.Counter, dict[str, collections.Counter]]:
    """(column -> count, detail -> key -> count) for root_pid and the processes it forked, from the
    instance's trace.  Details: syscalls by number, TLB flushes by reason, MSR writes by MSR, signals by
    number, switches by the previous task's state."""
    events = [(int(m["pid"]), m["event"], m["rest"]) for m in map(_LINE.match, trace_text.splitlines()) if m]
    ours = {root_pid}
    for pid, event, rest in events:
        if event == "sched_process_fork":
            f = dict(_FIELD.findall(rest))
            if int(f.get("pid", -1)) in ours:
                ours.add(int(f["child_pid"]))
    counts, detail = collections.Counter(), collections.defaultdict(collections.Counter)
    for pid, event, rest in events:
        f = dict(_FIELD.findall(rest)) if "=" in rest else {}
        if event == "sched_switch":
            prev, nxt = int(f["prev_pid"]), int(f["next_pid"])
            if prev not in ours and nxt not in ours:
                continue
            if (prev in ours or prev == 0) and (nxt in ours or nxt == 0):
                counts["switches"] += 1
                state = f["prev_state"] if prev in ours else "idle"
                detail["switch_prev_state"][state] += 1
                counts[PREEMPTED] += prev in ours and state.startswith("R")
            else:
                counts[OTHER_SWITCHES] += 1
        elif event == "sched_wakeup":
            if int(f["pid"]) in ours:
                counts["wakeups"] += 1
        elif event == "signal_generate":
            if int(f["pid"]) in ours:
                counts["signals_generated"] += 1
                detail["signals"][f"{f['sig']} res={f.get('res', '?')}"] += 1
        elif pid not in ours:
            continue
        elif event == "signal_deliver":
            counts["signals_delivered"] += 1
        elif event == "sys_enter":
            counts["syscalls"] += 1
            detail["syscalls"][rest.split()[1]] += 1           # "NR 61 (...)"
        elif event == "tlb_flush":
            counts["tlb_flushes"] += 1
            detail["tlb_reasons"][rest.partition("reason:")[2].strip()] += 1
        elif event == "write_msr":
            counts["msr_writes"] += 1
            detail["msrs"][rest.split(",")[0].strip()] += 1
        elif event == "x86_fpu_regs_activated":
            counts["fpu_reloads"] += 1
    return counts, detail


# ------------------------------------------------------------------------------------------ cases

def cases(vmexec: str, cpu: int = 0) -> list[dict]:
    """Every case: the driver's C mechanisms (available or not, from `vmexec list`), the price parts and the
    ptrace-stop variants; each {"name", "kind", "available", "reason", "argv": argv builder's prefix}."""
    import json

    listing = json.loads(subprocess.run([vmexec, "list"], capture_output=True, text=True, check=True,
                                        timeout=60).stdout)
    out = [{"name": b["name"], "kind": "mechanism", "available": b["available"], "reason": b["reason"],
            "argv": [vmexec, "run", b["name"], "-t", str(cpu), "-T", str(cpu), "-n"]} for b in listing]
    for part in (r["part"] for r in PART_ROWS if r.get("command", "price") == "price"):
        out.append({"name": f"price {part}", "kind": "price part", "available": True, "reason": "",
                    "argv": [vmexec, "price", part, "-c", str(cpu), "-n"]})
    for variant in ("wait", "nocldstop", "yield", "getregs"):
        out.append({"name": f"stop {variant}", "kind": "ptrace stop", "available": True, "reason": "",
                    "argv": [vmexec, "stop", variant, "-c", str(cpu), "-n"]})
    return out


def select(all_cases: list[dict], names: list[str] | None) -> list[dict]:
    if not names:
        return all_cases
    known = {c["name"] for c in all_cases}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"unknown case(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return [c for c in all_cases if c["name"] in names]


def per_call(low: dict, high: dict, n1: int, n2: int) -> dict[str, float]:
    """(count at N2 - count at N1) / (N2 - N1) for every key of either."""
    return {k: (high.get(k, 0) - low.get(k, 0)) / (n2 - n1) for k in sorted(set(low) | set(high))}


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(selected: list[dict], calls=DEFAULT_CALLS, runs: int = DEFAULT_RUNS, log=print,
            instance_factory=Instance) -> dict:
    """Every available case at both call counts, `runs` times interleaved; per call: each run's
    differences and their median, min and max."""
    n1, n2 = calls
    if not 0 < n1 < n2:
        raise UsageError(f"--calls needs N1 < N2, both >= 1, not {n1},{n2}")
    if runs < 1:
        raise UsageError("--runs must be >= 1")
    results = {c["name"]: {"kind": c["kind"], "available": c["available"], "reason": c["reason"],
                           "command": " ".join([Path(c["argv"][0]).name, *c["argv"][1:], "N"]), "runs": []}
               for c in selected}
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = _load()
    with instance_factory() as inst:
        for r in range(runs):
            for c in (c for c in selected if c["available"]):
                got = {}
                for n in (n1, n2):
                    out, status, text, pid = inst.trace([*c["argv"], str(n)])
                    if status:      # kept, and the others go on: one case's failure is its own result
                        results[c["name"]].setdefault("errors", []).append(
                            f"{results[c['name']]['command'].replace(' N', f' {n}')}: status {status}: "
                            f"{out.strip()[-300:]}")
                        break
                    counts, detail = count(text, pid)
                    got[n] = {**{k: counts.get(k, 0) for k in COLUMNS},
                              **{f"{d}[{k}]": v for d, keys in detail.items() for k, v in keys.items()}}
                else:
                    results[c["name"]]["runs"].append({"counts": {str(n): got[n] for n in got},
                                                       "per_call": per_call(got[n1], got[n2], n1, n2)})
            log(f"events: round {r + 1}/{runs} done (load {_load()})")
    for res in results.values():
        if res["runs"]:
            keys = sorted({k for run in res["runs"] for k in run["per_call"]})
            res["per_call"] = {k: _summary([run["per_call"].get(k, 0.0) for run in res["runs"]]) for k in keys}
    return {"kind": "vmexec-events", "machine": machine(), "started": started.isoformat(timespec="seconds"),
            "seconds": round(time.time() - started.timestamp(), 1), "load_before": load_before,
            "load_after": _load(), "calls": [n1, n2], "runs": runs,
            "events": {k: {"tracepoint": tp, "counts": what} for k, (tp, what) in EVENTS.items()},
            "cases": results}


def newest(directories, role: str = "host", machine: dict | None = None) -> Path | None:
    """The newest `bench events` document of role ("host", or the guest's kernel variant: "twin") among the
    events-*.json files of directories, by its start; None if there is none.  machine ({"cpu_model", "kernel"}):
    only documents counted on that machine (a twin's: booted there)."""
    import json

    found = []
    for path in (p for d in directories if Path(d).is_dir() for p in Path(d).glob("events-*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not (isinstance(doc, dict) and doc.get("kind") == "vmexec-events" and isinstance(doc.get("machine"), dict)
                and doc["machine"].get("role") == role):
            continue
        m = doc["machine"]
        where = (m.get("cpu_model"), m.get("kernel")) if role == "host" else (m.get("host_cpu_model"), m.get("host_kernel"))
        if machine is None or where == (machine.get("cpu_model"), machine.get("kernel")):
            found.append((doc.get("started", ""), path))
    return max(found)[1] if found else None


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine(extra: dict | None = None) -> dict:
    """What the counts were taken on: recorded with them."""
    return {"hostname": socket.gethostname(), "kernel": platform.release(), "cpu_model": cpu_model(),
            "cpus": os.cpu_count(), "memory_cgroup": memory_cgroup(), **(extra or {})}
