"""The plugin's counts turned into an anatomy: per backend, per function and phase, per syscall.

The plugin counts executed instructions per guest program counter between the tracee's loop
markers, on every vCPU, and classifies each instruction by its bytes (CR3 writes, WRMSR, SWAPGS,
SYSCALL/SYSRET/IRET, XSAVE*/XRSTOR*, serialising instructions, fences).  Kernel addresses are
symbolised against the same boot's /proc/kallsyms (the very kernel image and KASLR slide that
ran); user addresses against the driver binary that ran, whose load address follows from where
the BEGIN marker ran.  Every count is divided by the number of intercepted syscalls and
aggregated by function and by phase (bench.anatomy.phases).

The QEMU 7.2 plugin API has no interrupt or exception callback: exceptions and interrupts taken
are counted as executions of the first instruction of the kernel's IDT entry stubs (asm_exc_*,
asm_sysvec_*, asm_common_interrupt, ...), which every delivery runs exactly once.

Also here: where an anatomy's output lies (default_directory, variant_directory) and reading its
anatomy.json back (load_anatomy).
"""
from __future__ import annotations

import bisect
import contextlib
import dataclasses
import gzip
import json
import math
import re
import struct
import subprocess
from collections import defaultdict
from pathlib import Path

from bench import results
from bench.anatomy.phases import LOOP_FUNCTIONS, PHASES, USER_BACKEND, USER_LIBS, USER_LOOP, kernel_phase
from bench.errors import BenchError, UsageError

#: The guest's /sys/devices/system/cpu/vulnerabilities, one "name<TAB>state" line each (raw/).
VULNERABILITIES = "vulnerabilities.tsv"
#: The agreement the plugin's count must have with the icount clock (relative).
AGREEMENT = 0.02
#: The kernel build whose guest anatomy the cost model is fitted on: the host's mitigations
#: (its anatomy lies in variant_directory(..., MODEL_VARIANT)).
MODEL_VARIANT = "mitigations"
#: The twin of the host's own kernel (issue 26): its anatomy explains only the times of hosts that run the
#: configuration it was made from, so each lies in twin_directory(), one directory per host configuration.
TWIN_VARIANT = "twin"
#: The hex digits of the host configuration's sha256 that name a twin's directory (as host runs record it).
TWIN_KEY_DIGITS = 16

# The plugin's marker bytes (tracee/tracee.h LOOP_MARK_BEGIN): nopl 0x42584d56(%rax,%rax,1).
MARK_BEGIN = bytes([0x0F, 0x1F, 0x84, 0x00]) + b"VMXB"

#: Instruction classes, in the plugin's bit order (class_names in vmexec_anatomy.c).
CLASSES = ("cr3_write", "cr_write", "wrmsr", "rdmsr", "swapgs", "syscall", "sysret", "iret",
           "xsave", "xrstor", "serializing", "fence", "tlb_flush", "hlt", "rep_string")
#: Events derived from the counts: exceptions and interrupts taken (entry-stub executions).
EVENT = "exc_irq"
#: Executions of REP string instructions beyond their first iteration: TCG (and so icount) counts
#: every iteration as one instruction, where hardware runs one instruction.
REP_EXTRA = "rep_extra"
#: Entry stubs of the IDT: one execution of the first instruction = one exception/interrupt taken.
ENTRY_STUB = re.compile(r"^(asm_exc_|asm_sysvec_|asm_common_interrupt$|asm_spurious_interrupt$|"
                        r"asm_int3$|asm_exc_nmi$|irq_entries_start$)")

#: Every per-syscall figure of a function or phase besides its instructions.
ALL_EVENTS = (*CLASSES, EVENT, REP_EXTRA)

# ------------------------------------------------------------------------------ the plugin's output

@dataclasses.dataclass
class Window:
    """One loop, from BEGIN to END: instruction counts per PC."""
    index: int
    begin_pc: int
    end_pc: int
    insns: int
    counts: dict[int, int]              # pc -> executions (summed over translations)
    classes: dict[int, int]             # pc -> class bits
    class_totals: dict[str, int]
    starts: dict[int, int] = dataclasses.field(default_factory=dict)  # REP string ops: pc -> starts


def parse_counts(text: str) -> list[Window]:
    windows: list[Window] = []
    current: Window | None = None
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith("exit "):
            continue
        parts = line.split()
        if parts[0] == "window":
            fields = dict(p.split("=", 1) for p in parts[2:])
            current = Window(int(parts[1]), int(fields["begin_pc"], 16), int(fields["end_pc"], 16),
                             int(fields["insns"]), defaultdict(int), {}, {})
        elif current is None:
            raise BenchError(f"the plugin's output has a line outside a window: {line[:80]!r}")
        elif parts[0] == "class":
            current.class_totals[parts[1]] = int(parts[2])
        elif parts[0] == "end":
            if sum(current.counts.values()) != current.insns:
                raise BenchError(f"window {current.index}: its lines do not add up to its total")
            windows.append(current)
            current = None
        else:
            pc = int(parts[0], 16)
            current.counts[pc] += int(parts[1])
            current.classes[pc] = current.classes.get(pc, 0) | int(parts[2], 16)
            if len(parts) > 4:
                current.starts[pc] = current.starts.get(pc, 0) + int(parts[4])
    return windows


# ----------------------------------------------------------------------------------- symbolisation

class KernelSymbols:
    """Kernel text symbols from the guest's /proc/kallsyms (the same boot: KASLR included)."""

    def __init__(self, kallsyms: str):
        syms = []
        for line in kallsyms.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tTwW":
                syms.append((int(parts[0], 16), parts[2]))
        if not syms or all(a == 0 for a, _ in syms):
            raise BenchError("kallsyms has no kernel text addresses (read as root?)")
        syms.sort()
        self.addrs = [a for a, _ in syms]
        self.names = [n for _, n in syms]
        self.start = {}
        for a, n in syms:
            self.start.setdefault(n, a)

    def lookup(self, pc: int) -> tuple[str, int]:
        """(function, its start address)."""
        i = bisect.bisect_right(self.addrs, pc) - 1
        if i < 0:
            return "?", pc
        return self.names[i], self.addrs[i]


def _load_segments(data: bytes) -> list[tuple[int, int, int, int]]:
    """(file offset, vaddr, file size, memory size) of each PT_LOAD of a 64-bit ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise BenchError("not a 64-bit ELF file")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads = []
    for k in range(phnum):
        p_type, _flags, off, vaddr, _pa, filesz, memsz, _al = struct.unpack_from("<IIQQQQQQ", data,
                                                                                 phoff + k * phentsize)
        if p_type == 1:
            loads.append((off, vaddr, filesz, memsz))
    return loads


#: The driver's functions that hold a BEGIN marker: the syscall loop, and `vmexec price`'s parts.
MARKED_FUNCTIONS = ("syscall_loop", "price_main", "stop_main")


def marker_vaddrs(binary: Path) -> list[int]:
    """The link-time addresses of the BEGIN markers in the driver binary (one per marked loop)."""
    data = binary.read_bytes()
    found, at = [], data.find(MARK_BEGIN)
    while at >= 0:
        for off, vaddr, filesz, _ in _load_segments(data):
            if off <= at < off + filesz:
                found.append(vaddr + at - off)
                break
        else:
            raise BenchError(f"{binary}: a marker lies in no loadable segment")
        at = data.find(MARK_BEGIN, at + 1)
    if not found:
        raise BenchError(f"{binary} holds no BEGIN marker")
    return found


class UserSymbols:
    """The driver binary's functions, at the load address the BEGIN marker reveals."""

    def __init__(self, binary: Path, begin_pc: int):
        loads = _load_segments(binary.read_bytes())
        out = subprocess.run(["nm", "--defined-only", str(binary)], capture_output=True, text=True,
                             check=True).stdout
        syms = sorted((int(a, 16), n) for a, t, n in (l.split()[:3] for l in out.splitlines() if len(l.split()) >= 3)
                      if t in "tTwW")
        self.names = [n for _, n in syms]
        # The load base is page-aligned, and the marker that ran lies in a marked function: of the
        # binary's markers, exactly one must fit both.
        fits = []
        for vaddr in marker_vaddrs(binary):
            base = begin_pc - vaddr
            if base % 4096:
                continue
            self.base = base
            self.end = base + max(v + memsz for _, v, _, memsz in loads)
            self.addrs = [a + base for a, _ in syms]
            if self.lookup(begin_pc) in MARKED_FUNCTIONS:
                fits.append(base)
        if len(fits) != 1:
            raise BenchError(f"the BEGIN marker ran at {begin_pc:#x}, which fits {len(fits)} of the markers of "
                             f"{binary} (in {', '.join(MARKED_FUNCTIONS)}): the guest ran another driver binary?")
        self.base = fits[0]
        self.end = self.base + max(v + memsz for _, v, _, memsz in loads)
        self.addrs = [a + self.base for a, _ in syms]

    def lookup(self, pc: int) -> str | None:
        """The function of the driver holding pc, or None (not the driver)."""
        if not self.base <= pc < self.end:
            return None
        i = bisect.bisect_right(self.addrs, pc) - 1
        return self.names[i] if i >= 0 else "?"


KERNEL_SPACE = 0xFFFF800000000000


def attribute(window: Window, ksyms: KernelSymbols, usyms: UserSymbols) -> list[dict]:
    """One row per (function, phase): executions, events by class, exceptions taken."""
    rows: dict[tuple[str, str], dict] = {}
    for pc, n in window.counts.items():
        events = {}
        if pc >= KERNEL_SPACE:
            function, start = ksyms.lookup(pc)
            phase = kernel_phase(function)
            if pc == start and ENTRY_STUB.match(function):
                events[EVENT] = n
        else:
            name = usyms.lookup(pc)
            if name is None:
                function, phase = "(libraries)", USER_LIBS
            else:
                function = name
                phase = USER_LOOP if name in LOOP_FUNCTIONS else USER_BACKEND
        bits = window.classes.get(pc, 0)
        for k, c in enumerate(CLASSES):
            if bits >> k & 1:
                events[c] = n
        if pc in window.starts:
            events[REP_EXTRA] = n - window.starts[pc]
        row = rows.setdefault((function, phase), {"function": function, "phase": phase, "insns": 0,
                                                  **{e: 0 for e in ALL_EVENTS}})
        row["insns"] += n
        for e, v in events.items():
            row[e] += v
    return list(rows.values())


# ----------------------------------------------------------------------------------- analysis

@dataclasses.dataclass
class BackendAnatomy:
    backend: str
    syscalls: int
    elapsed_ns: int                 # the driver's icount timing of the loop
    insns: int                      # the plugin's count between the markers
    functions: list[dict]           # per function: insns and events per syscall

    @property
    def insns_per_syscall(self) -> float:
        return self.insns / self.syscalls

    @property
    def ns_per_syscall(self) -> float:
        return self.elapsed_ns / self.syscalls

    @property
    def disagreement(self) -> float:
        """(plugin - icount clock) / icount clock."""
        return (self.insns - self.elapsed_ns) / self.elapsed_ns

    def phases(self) -> dict[str, dict[str, float]]:
        out = {p: {"insns": 0.0, **{e: 0.0 for e in ALL_EVENTS}} for p in PHASES}
        for f in self.functions:
            for k in out[f["phase"]]:
                out[f["phase"]][k] += f[k]
        return out

    def totals(self) -> dict[str, float]:
        return {k: sum(f[k] for f in self.functions) for k in ("insns", *ALL_EVENTS)}

    @property
    def insns_rep_once_per_syscall(self) -> float:
        """Instructions per syscall with each REP string instruction counted once, as hardware runs it."""
        return self.insns_per_syscall - self.totals()[REP_EXTRA]


def _gunzip(path: Path) -> str:
    try:
        return gzip.decompress(path.read_bytes()).decode()
    except (OSError, EOFError, UnicodeDecodeError) as e:       # gzip.BadGzipFile is an OSError
        raise UsageError(f"{path}: not a complete gzip file of text ({e})") from None


@dataclasses.dataclass(frozen=True)
class DriverRun:
    """One line of raw/driver.tsv: a backend's run in the guest, with the driver's JSON report."""
    backend: str
    status: int
    report: dict

    @property
    def ok(self) -> bool:
        return self.status == 0 and bool(self.report.get("ok"))

    @property
    def why(self) -> str:
        """Why it did not run: the driver's own words, else its exit status."""
        return self.report.get("error") or f"exit status {self.status}"


def driver_runs(raw: Path) -> list[DriverRun]:
    runs = []
    for line in (raw / "driver.tsv").read_text().splitlines():
        backend, status, out = line.split("\t", 2)
        try:
            report = json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            report = {"ok": False, "error": out.strip()[:200]}
        runs.append(DriverRun(backend, int(status), report))
    return runs


def analyse(raw: Path) -> tuple[list[BackendAnatomy], dict[str, str]]:
    """The raw outputs of one guest boot: (per backend, per syscall; the backends the guest could not
    run, and why)."""
    for name in ("counts.txt.gz", "kallsyms.txt.gz", "driver.tsv", "vmexec"):
        if not (raw / name).exists():
            raise UsageError(f"{raw} has no {name}: not an anatomy run's raw directory")
    windows = parse_counts(_gunzip(raw / "counts.txt.gz"))
    ksyms = KernelSymbols(_gunzip(raw / "kallsyms.txt.gz"))
    runs = driver_runs(raw)
    ran = [r for r in runs if r.ok]
    if len(ran) != len(windows):
        raise BenchError(f"{len(windows)} loop windows for {len(ran)} successful backend runs "
                         f"({', '.join(f'{r.backend}: status {r.status}' for r in runs)}): cannot pair them")
    result = []
    for run, w in zip(ran, windows):
        backend, report = run.backend, run.report
        usyms = UserSymbols(raw / "vmexec", w.begin_pc)
        n = report["calls"]
        if report["matched"] != n:
            raise BenchError(f"{backend}: {n - report['matched']} of {n} calls returned the wrong value")
        functions = attribute(w, ksyms, usyms)
        for f in functions:
            for k in ("insns", *ALL_EVENTS):
                f[k] = f[k] / n
        functions.sort(key=lambda f: -f["insns"])
        result.append(BackendAnatomy(backend, n, report["elapsed_ns"], w.insns, functions))
    return result, {r.backend: r.why for r in runs if not r.ok}


def default_directory(variant: str = "bench") -> Path:
    """anatomy/ in the results directory for the benchmark kernel, anatomy/VARIANT/ for another build, and
    anatomy/twin/<host configuration>/ for the twin of this host's kernel (twin_directory)."""
    anatomy = results.directory() / "anatomy"
    if variant == TWIN_VARIANT:
        from bench.measure.kernel import host_config
        return twin_directory(anatomy, host_config().sha256)
    return variant_directory(anatomy, variant)


def variant_directory(anatomy: Path, variant: str) -> Path:
    """Where a kernel variant's anatomy lies, given the benchmark kernel's anatomy directory."""
    return anatomy if variant == "bench" else anatomy / variant


def twin_directory(anatomy: Path, host_config: str) -> Path:
    """Where the twin made from the host configuration whose sha256 is (or begins with) host_config was
    counted: anatomy/twin/<its first TWIN_KEY_DIGITS hex digits>/, given the benchmark kernel's anatomy
    directory.  Two machines' twins differ as their configurations do, and neither explains the other's times."""
    key = str(host_config)[:TWIN_KEY_DIGITS].lower()
    if len(key) != TWIN_KEY_DIGITS or any(c not in "0123456789abcdef" for c in key):
        raise UsageError(f"not a kernel configuration's sha256: {host_config!r}")
    return variant_directory(anatomy, TWIN_VARIANT) / key


def guest_vulnerabilities(raw: Path) -> dict[str, str]:
    """{vulnerability: the guest kernel's state} from a raw/ directory ({} for a run before they were kept)."""
    path = raw / VULNERABILITIES
    if not path.exists():
        return {}
    return dict(line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line)


#: The numbers of one backend in anatomy.json (bench.commands.anatomy.write_outputs) that its readers use.
ANATOMY_NUMBERS = ("insns_per_syscall", "icount_ns_per_syscall", "disagreement", "insns_rep_once_per_syscall")


def _finite(x, low: float = -math.inf) -> bool:
    """x is a finite number >= low, or a dict of them (nested)."""
    if isinstance(x, dict):
        return all(_finite(v, low) for v in x.values())
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= low


def load_anatomy(path: Path) -> dict:
    """An anatomy.json (bench.commands.anatomy.write_outputs), or a one-line UsageError: read as results
    files are (missing, binary, truncated, not an object), with its backends named and every number of
    theirs finite."""
    doc = results.read_json(path)
    backends = doc.get("backends")
    if not isinstance(backends, list) or not backends or not isinstance(doc.get("meta", {}), dict):
        raise UsageError(f"{path}: not an anatomy.json (no list of backends)")
    for b in backends:
        name = b.get("backend") if isinstance(b, dict) else None
        if not (isinstance(name, str) and "insns_per_syscall" in b and isinstance(b.get("totals"), dict)
                and _finite(b.get("disagreement", 0))      # the icount clock's error: either sign
                and _finite({k: v for k, v in b.items() if k in (*ANATOMY_NUMBERS, "totals", "phases")
                             and k != "disagreement"}, low=0)):
            raise UsageError(f"{path}: backend {name or b!r:.60}: missing, malformed, negative or non-finite "
                             "counts")
    return doc


@contextlib.contextmanager
def reading(path: Path):
    """Inside, a key missing from or of the wrong type in the anatomy.json at path is that file's fault."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise UsageError(f"{path}: malformed anatomy.json ({type(e).__name__}: {e})") from None


