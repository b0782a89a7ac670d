"""Instruction-level anatomy of each interception mechanism in the icount guest.

`python -m bench anatomy` boots the patched kernel under TCG with icount and the project's QEMU
plugin (anatomy/vmexec_anatomy.c), which counts executed instructions per guest program counter
between the tracee's loop markers, on every vCPU, and classifies each instruction by its bytes
(CR3 writes, WRMSR, SWAPGS, SYSCALL/SYSRET/IRET, XSAVE*/XRSTOR*, serialising instructions,
fences).  In the same boot the guest saves /proc/kallsyms, so kernel addresses are symbolised
against the very kernel image and KASLR slide that ran; user addresses are symbolised against
the driver binary (tracers/vmexec), whose load address follows from where the BEGIN marker ran.
Every count is divided by the number of intercepted syscalls and aggregated by function and by
phase (PHASES).

The QEMU 7.2 plugin API has no interrupt or exception callback: exceptions and interrupts taken
are counted as executions of the first instruction of the kernel's IDT entry stubs (asm_exc_*,
asm_sysvec_*, asm_common_interrupt, ...), which every delivery runs exactly once.

Debian ships no qemu-plugin.h: plugin_header() takes it from Debian's own source package of the
installed qemu-system-x86 (a deb-src entry, `apt-get source --download-only`), once, into the
cache (~/.cache/vmexec-bench/qemu-plugin/).
"""
from __future__ import annotations

import bisect
import contextlib
import dataclasses
import gzip
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path

from bench.measure.environment import REPO
from bench.errors import BenchError, UsageError

PLUGIN_SOURCE = REPO / "anatomy" / "vmexec_anatomy.c"
#: The guest's /sys/devices/system/cpu/vulnerabilities, one "name<TAB>state" line each (raw/).
VULNERABILITIES = "vulnerabilities.tsv"
QEMU_PACKAGE = "qemu-system-x86"
SOURCES_FILE = Path("/etc/apt/sources.list.d/vmexec-bench-src.sources")
DEFAULT_SYSCALLS = 20000
#: The pinning the anatomy uses: tracer and tracee on the guest's CPU 0 (in-process: the tracee).
PIN_CPU = 0
#: The agreement the plugin's count must have with the icount clock (relative).
AGREEMENT = 0.02

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
#: The expensive classes shown in tables and plots (hardware cost far above one cycle).
EXPENSIVE = ("cr3_write", "wrmsr", "swapgs", "syscall", "sysret", "iret", "xsave", "xrstor",
             "serializing", "fence", EVENT)
EVENT_LABELS = {"cr3_write": "CR3 writes", "wrmsr": "WRMSR", "swapgs": "SWAPGS", "syscall": "SYSCALL",
                "sysret": "SYSRET", "iret": "IRET", "xsave": "XSAVE", "xrstor": "XRSTOR",
                "serializing": "serialising instructions", "fence": "fences",
                EVENT: "exceptions/interrupts taken"}
#: Entry stubs of the IDT: one execution of the first instruction = one exception/interrupt taken.
ENTRY_STUB = re.compile(r"^(asm_exc_|asm_sysvec_|asm_common_interrupt$|asm_spurious_interrupt$|"
                        r"asm_int3$|asm_exc_nmi$|irq_entries_start$)")

#: Every per-syscall figure of a function or phase besides its instructions.
ALL_EVENTS = (*CLASSES, EVENT, REP_EXTRA)

# ---------------------------------------------------------------------------------------- phases

#: Kernel functions by phase: the first pattern that matches a function's name wins.
KERNEL_PHASES: list[tuple[str, str]] = [
    # Out-of-line code of the speculation mitigations (the "mitigations" kernel): retpolines, return
    # thunks, untraining sequences.  The RSB filling at context switch is inline (__switch_to_asm).
    ("speculation thunks",
     r"^(__x86_indirect_thunk_|__x86_indirect_its_thunk_|__x86_indirect_call_thunk_|__x86_indirect_jump_thunk_|"
     r"__x86_return_thunk$|its_return_thunk$|its_static_thunk$|retbleed_return_thunk$|call_depth_return_thunk$|"
     r"srso_|entry_untrain_ret$|entry_ibpb$|clear_bhb_loop$)"),
    ("exceptions & interrupts",
     r"^(asm_exc_|exc_|asm_sysvec_|sysvec_|__sysvec_|asm_common_interrupt|common_interrupt|irq|handle_irq|"
     r"__handle_irq|native_irq_return|error_entry|error_return|paranoid_|hrtimer|__hrtimer|tick_|"
     r"update_process_times|sched_tick|run_local_timers|timekeeping|update_wall_time|ktime_get|"
     r"lapic_|native_apic|x2apic|__irq_|handle_edge|handle_fasteoi|do_user_addr_fault|handle_mm_fault|"
     r"__handle_mm_fault|do_page_fault|irqentry_|idtentry|__common_interrupt|raise_softirq|"
     r"__do_softirq|handle_softirqs|do_softirq|irq_exit|irq_enter|account_(user|system|process|idle)_)"),
    ("syscall entry/exit",
     r"^(entry_SYSCALL|do_syscall_64|syscall_exit|syscall_return|entry_SYSRET|x64_sys_call|"
     r"syscall_trace_enter|syscall_enter_from_user_mode|"
     r"exit_to_user_mode|arch_exit_to_user_mode|__rseq_handle_notify_resume|rseq_|"
     r"syscall_exit_work|__syscall|int80_|entry_INT80|fpregs_assert|resume_user_mode_work|"
     r"exit_to_user_mode_loop|syscall_trace_exit|arch_syscall_exit_tracehook|swapgs_restore)"),
    ("mm switch",
     r"^(switch_mm|load_new_mm_cr3|choose_new_asid|build_cr3|enter_lazy_tlb|leave_mm|switch_ldt|load_mm_|"
     r"cr4_update|native_write_cr3|__native_read_cr3|flush_tlb|native_flush_tlb|__flush_tlb|"
     r"switch_current_mm|leave_borrowed_mm|use_temporary_mm|unuse_temporary_mm|mmgrab|mmdrop|"
     r"__mmdrop|membarrier_|cond_mitigation|cond_ibpb|l1d_flush|activate_mm|kthread_use_mm|"
     r"mm_access|get_task_mm|mmput)"),
    ("register & user copies",
     r"^(genregs_|getreg|putreg|__regset_get|regset_|copy_regset|ptrace_getregs|ptrace_setregs|"
     r"arch_ptrace_get|fpregs_get|fpregs_set|xfpregs_|xstateregs_|regs_to_sigcontext|"
     r"restore_sigcontext|setup_sigcontext|__get_user|__put_user|get_user|put_user|rep_movs_alternative|"
     r"rep_stos_alternative|_copy_to_user|_copy_from_user|copy_to_user|copy_from_user|copy_struct_from_user|"
     r"check_zeroed_user|__access_ok|force_valid_ss|get_xsave_addr_user|"
     r"__copy_user|copy_user_|clear_user|__clear_user|memcpy|memset|__memcpy|__memset|memmove|"
     r"check_object_size|__check_object_size|__virt_addr_valid|check_stack_object|"
     r"copy_fpstate_to_sigframe|fpu__restore_sig|__fpu_restore_sig|fpregs_mark_activate)"),
    ("getppid & pid lookups",
     r"(^__x64_sys_getppid|^__do_sys_getppid|^pid_|_pid$|_pid_|^find_vpid|find_get_task_by_vpid|"
     r"^find_task_by|^radix_tree|^__radix_tree|^idr_|task_active_pid_ns|^task_tgid|^task_pid)"),
    ("interception (ptrace, seccomp, signals, wait, process_vm_exec)",
     r"(ptrace|seccomp|secure_computing|bpf_|signal|sigqueue|sigpending|sig_|_sig|sigaction|siginfo|"
     r"rt_sigreturn|setup_rt_frame|sigframe|syscall_user_dispatch|process_vm_exec|^report$|wait|"
     r"^do_notify_|task_stopped_code|_blocked$|ucounts|find_notification|single_step|nsec_to_clock_t|"
     r"notify|ioctl|__fget|fdget|fget|fput|class_fd_|anon_inode|eventfd|poll|complete|jobctl|"
     r"task_work|__lock_task_sighand|kill|__send|send_|do_send|dequeue_signal|get_signal|arch_do_signal|"
     r"do_signal|handle_signal|restore_altstack|__save_altstack|sas_ss|fixup_vdso|audit)"),
    ("scheduler & context switch",
     r"(schedule|pick_|_entity|entity_|_fair|load_avg|update_curr|update_rq_clock|update_min_vruntime|"
     r"update_deadline|clear_buddies|update_misfit|is_cpu_allowed|cpus_share_cache|cpu_capacity|"
     r"clear_delayed|task_curr|"
     r"try_to_wake_up|ttwu_|wake_up|__wake_up|context_switch|__switch_to|switch_to|finish_task_switch|"
     r"prepare_task_switch|set_next_|put_prev_|enqueue_|dequeue_task|dequeue_entities|activate_task|"
     r"deactivate_task|check_preempt|resched|^sched_|_sched|cfs_rq|avg_vruntime|vruntime|reweight|"
     r"wait_task_inactive|task_rq_lock|__task_rq_lock|raw_spin_rq|rq_|_rq|select_task_rq|"
     r"sched_clock|native_sched_clock|update_load|hrtick|cpuacct|cgroup|psi_|"
     r"save_fpregs_to_fpstate|os_xrstor|os_xsave|restore_fpregs|fpregs_restore|switch_fpu|fpu__|pkru|"
     r"__rdgsbase_inactive|__wrgsbase_inactive|save_fsgs|x86_fsbase|x86_gsbase|load_seg|"
     r"__update_idle|update_dl|update_curr_dl|dl_|rt_|_rt_|balance_|newidle|idle_balance|"
     r"nohz|kick_|yield|preempt|__cond_resched|_cond_resched|mm_cid|__mm_cid|sched_mm_cid|"
     r"set_task_cpu|migrate_|task_tick|calc_global|rcu_note_context_switch|rcu_qs|finish_lock_switch|"
     r"exec_runtime|^rb_next|^rb_erase|^rb_insert)"),
    ("locking & RCU",
     r"(^_raw_|^__raw_|^do_raw_|^queued_|^native_queued|spin_lock|spin_unlock|spin_trylock|^mutex_|"
     r"^down_|^up_read|^up_write|^rwsem_|^__rcu|^rcu_|_dec_and_lock|^class_raw_spinlock)"),
    ("memory allocation", r"(slab|kmem_cache|kmalloc|kvmalloc|kfree|kvfree|alloc_|_alloc|free_|_free|"
                          r"kzalloc|mempool|percpu|pcpu_|page|zone|folio|pfn|partial|rmqueue|node_state)"),
    ("idle", r"(idle|halt|mwait|cpu_startup_entry|play_dead)"),
]
_KERNEL_PHASE_RES = [(phase, re.compile(pattern)) for phase, pattern in KERNEL_PHASES]
KERNEL_OTHER = "other kernel"
#: The loop's own code (tracee/tracee.c): run by the tracee, or by the borrowing tracer
#: (process_vm_exec); all other code of the driver is the backend's (tracer or in-process handler).
LOOP_FUNCTIONS = {"syscall_loop", "syscall_loop_borrowed", "monotonic_ns"}
USER_LOOP = "user: tracee loop"
USER_BACKEND = "user: tracer / handler"
USER_LIBS = "user: libc, ld.so, vDSO"
#: Every phase, in the plots' stacking order.
PHASES = (USER_LOOP, USER_BACKEND, USER_LIBS, "syscall entry/exit", "getppid & pid lookups",
          "interception (ptrace, seccomp, signals, wait, process_vm_exec)", "register & user copies",
          "scheduler & context switch", "mm switch", "locking & RCU", "memory allocation",
          "exceptions & interrupts", "speculation thunks", "idle", KERNEL_OTHER)
SHORT = {"interception (ptrace, seccomp, signals, wait, process_vm_exec)": "interception machinery",
         "scheduler & context switch": "scheduler and context switch"}


def kernel_phase(function: str) -> str:
    for phase, pattern in _KERNEL_PHASE_RES:
        if pattern.search(function):
            return phase
    return KERNEL_OTHER


# ------------------------------------------------------------------------------ the plugin's header

def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vmexec-bench"


def installed_qemu_source_version() -> str:
    """The Debian source version of the installed qemu-system-x86 (binNMU suffix dropped)."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${source:Version}", QEMU_PACKAGE],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise BenchError(f"{QEMU_PACKAGE} is not installed (apt-get install {QEMU_PACKAGE})") from None
    if not out:
        raise BenchError(f"cannot read the version of {QEMU_PACKAGE}")
    return out


def _deb_src_entry() -> str:
    """deb-src entries for the archives and suites this machine's Debian sources already use:
    each deb822 stanza of /etc/apt/sources.list.d/*.sources that names the Debian archive, with its
    type changed to deb-src (Debian 12's default layout)."""
    stanzas = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        if path == SOURCES_FILE:
            continue
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            lines = [line for line in stanza.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            fields = dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith(" "))
            if "deb" in fields.get("Types", "").split() and "debian" in fields.get("URIs", ""):
                stanzas.append("\n".join("Types: deb-src" if line.startswith("Types:") else line for line in lines))
    if not stanzas:
        raise BenchError("no Debian archive among this machine's deb822 apt sources "
                         "(/etc/apt/sources.list.d/*.sources): add deb-src entries for it by hand, then run again")
    return "# Added by vmexec-bench (bench/anatomy.py): Debian's source packages, for qemu-plugin.h.\n" \
        + "\n\n".join(stanzas) + "\n"


def plugin_header(log=lambda msg: None) -> Path:
    """qemu-plugin.h of the installed QEMU, from Debian's source package of that very version
    (cached).  The first call, as root, adds a deb-src entry, runs apt-get update and
    `apt-get source --download-only qemu=VERSION`, and takes the header out of the original
    tarball, after checking that none of Debian's patches changes it."""
    version = installed_qemu_source_version()
    where = cache_dir() / "qemu-plugin" / version.replace(":", "_")
    header = where / "qemu-plugin.h"
    if header.exists():
        return header
    if os.geteuid() != 0:
        raise BenchError(f"qemu-plugin.h is not cached yet ({header}); fetching it from Debian's "
                         "qemu source package needs root once (apt-get source): run the command as root")
    if not SOURCES_FILE.exists():
        log(f"adding Debian's source lists ({SOURCES_FILE})")
        SOURCES_FILE.write_text(_deb_src_entry())
    with tempfile.TemporaryDirectory(prefix="vmexec-qemu-src-") as tmp:
        def download() -> subprocess.CompletedProcess:
            return subprocess.run(["apt-get", "source", "--download-only", "-q", f"qemu={version}"],
                                  cwd=tmp, capture_output=True, text=True)
        log(f"downloading Debian's qemu {version} source package (about 24 MB)")
        proc = download()
        if proc.returncode:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True)
            proc = download()
        if proc.returncode:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise BenchError(f"apt-get source qemu={version} failed: {tail}")
        orig = next(Path(tmp).glob("qemu_*.orig.tar.*"), None)
        debian = next(Path(tmp).glob("qemu_*.debian.tar.*"), None)
        if orig is None or debian is None:
            raise BenchError(f"apt-get source qemu={version} gave no original and Debian tarballs")
        with tarfile.open(debian) as t:
            for m in t.getmembers():
                if m.isfile() and m.name.startswith("debian/patches/"):
                    if b"qemu-plugin.h" in t.extractfile(m).read():
                        raise BenchError(f"Debian's patch {m.name} changes qemu-plugin.h: "
                                         "this set-up takes the header from the original tarball only")
        with tarfile.open(orig) as t:
            member = next((m for m in t if m.name.endswith("/include/qemu/qemu-plugin.h")), None)
            if member is None:
                raise BenchError(f"{orig.name} has no include/qemu/qemu-plugin.h")
            text = t.extractfile(member).read()
        where.mkdir(parents=True, exist_ok=True)
        (where / "SOURCE").write_text(
            f"Debian source package qemu {version}: {orig.name} (sha256 "
            f"{hashlib.sha256(orig.read_bytes()).hexdigest()}), {member.name}; "
            f"no patch in {debian.name} touches it\n")
        staged = header.with_suffix(".tmp")
        staged.write_bytes(text)
        staged.replace(header)
    return header


def build_plugin(log=lambda msg: None) -> Path:
    """The plugin, compiled against the installed QEMU's header (cached by source and header)."""
    header = plugin_header(log)
    key = hashlib.sha256(PLUGIN_SOURCE.read_bytes() + header.read_bytes()).hexdigest()[:16]
    lib = cache_dir() / "anatomy-plugin" / key / "libvmexec_anatomy.so"
    if not lib.exists():
        lib.parent.mkdir(parents=True, exist_ok=True)
        staged = lib.with_suffix(".tmp")
        cmd = ["gcc", "-O2", "-Wall", "-shared", "-fPIC", f"-I{header.parent}", "-o", str(staged),
               str(PLUGIN_SOURCE), "-lpthread"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise BenchError(f"compiling the anatomy plugin failed: {proc.stderr.strip()[-500:]}")
        staged.replace(lib)
        log(f"built {lib}")
    return lib


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
MARKED_FUNCTIONS = ("syscall_loop", "price_main")


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


# ----------------------------------------------------------------------------------- running it

def backend_commands(backends: list[str], syscalls: int, in_process: dict[str, bool]) -> list[tuple[str, list[str]]]:
    """(label, driver argv) of each backend's run in the anatomy guest: same CPU."""
    from tracers.driver import VMEXEC

    return [(b, [str(VMEXEC), "run", b, "-n", str(syscalls),
                 *(["-T", str(PIN_CPU)] if in_process[b] else ["-t", str(PIN_CPU), "-T", str(PIN_CPU)])])
            for b in backends]


def _guest_script(share: Path, commands: list[tuple[str, list[str]]]) -> str:
    lines = ["set -u",
             # The driver's load address must be the same in tracer and tracee (and stable).
             "echo 0 > /proc/sys/kernel/randomize_va_space",
             f"cat /proc/kallsyms > {shlex.quote(str(share / 'kallsyms.txt'))}",
             # The speculation mitigations this guest kernel runs, as it reports them.
             "for f in /sys/devices/system/cpu/vulnerabilities/*; do "
             "printf '%s\\t%s\\n' \"${f##*/}\" \"$(cat \"$f\")\"; done "
             f"> {shlex.quote(str(share / VULNERABILITIES))}"]
    for b, argv in commands:
        cmd = shlex.join(argv)
        lines.append(f"out=$({cmd}); status=$?; "
                     f"printf '%s\\t%s\\t%s\\n' {shlex.quote(b)} \"$status\" \"$out\" "
                     f">> {shlex.quote(str(share / 'driver.tsv'))}")
    return "\n".join(lines) + "\n"


def check_arguments(backends: list[str], syscalls: int, commands: list | None = None) -> dict:
    """The driver's backends by name, or a one-line UsageError unless every backend is one of them
    (commands given instead of backends are the caller's own) and syscalls is enough."""
    import tracers
    from tracers.driver import DriverBackend

    known = {b.name: b for b in tracers.all_backends() if isinstance(b, DriverBackend)}
    bad = [b for b in backends if b not in known] if commands is None else []
    if bad:
        raise UsageError(f"unknown or non-C backend(s) {', '.join(bad)} (choose from {', '.join(known)})")
    if syscalls < 100:
        raise UsageError("--syscalls must be at least 100")
    return known


def run_guest(backends: list[str], syscalls: int, raw: Path, log=print, variant: str = "bench",
              commands: list[tuple[str, list[str]]] | None = None) -> None:
    """Boot the guest (kernel build `variant`, with its command line) with the plugin, run every
    backend once (same CPU), and leave the raw outputs in raw/: counts.txt.gz (the plugin's),
    kallsyms.txt.gz, driver.tsv (the driver's JSON per backend), vulnerabilities.tsv (the guest's
    /sys/devices/system/cpu/vulnerabilities), guest.json, and a copy of the driver binary that ran.
    commands, when given, are (label, driver argv) run instead of the backends (bench.anatomy.prices: the
    micro-benchmarks of the mechanisms' parts, between the same loop markers)."""
    from bench.measure import kernel
    from bench.measure import vm
    from tracers.driver import VMEXEC

    known = check_arguments(backends, syscalls, commands)
    lib = build_plugin(log)
    kb = kernel.build(log=lambda msg: log(f"kernel: {msg}"), variant=variant)
    kernel_args = kernel.BOOT_ARGS.get(variant, ())
    raw.mkdir(parents=True, exist_ok=True)
    for name in ("counts.txt.gz", "kallsyms.txt.gz", "driver.tsv", VULNERABILITIES):
        (raw / name).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="vmexec-anatomy-") as tmp:
        share = Path(tmp)
        # A copy of the binary that ran, for symbolisation after a rebuild.
        shutil.copy2(VMEXEC, raw / "vmexec")
        if commands is None:
            commands = backend_commands(backends, syscalls, {b: known[b].in_process for b in backends})
        backends = [label for label, _ in commands]
        script = _guest_script(share, commands)
        log(f"anatomy: booting the icount guest ({variant} kernel) with the plugin ({len(backends)} "
            f"backends, {syscalls} syscalls each)")
        run = vm.run_in_guest(["sh", "-c", script], kernel=kb.bzimage, accel="tcg", timing="icount",
                              output_dir=share, run_timeout=3600, kernel_args=kernel_args,
                              extra_qemu_args=("-plugin", f"{lib},out={share / 'counts.txt'}"))
        run.check()
        for name in ("counts.txt", "kallsyms.txt", "driver.tsv", VULNERABILITIES):
            if not (share / name).exists():
                raise BenchError(f"the guest left no {name}; console tail: {run.console[-1500:]}")
            if name in ("driver.tsv", VULNERABILITIES):
                shutil.copy2(share / name, raw / name)
            else:   # kept compressed: a committed run stays small
                with (share / name).open("rb") as src, gzip.open(raw / f"{name}.gz", "wb") as dst:
                    shutil.copyfileobj(src, dst)
    (raw / "guest.json").write_text(json.dumps({"guest_kernel": kb.release, "kernel_variant": variant,
                                                "kernel_args": list(kernel_args), "syscalls": syscalls,
                                                "backends": backends, "pin": f"same CPU ({PIN_CPU})",
                                                "qemu": installed_qemu_source_version(),
                                                "qemu_cmdline": run.qemu_cmdline}, indent=1) + "\n")


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


def analyse(raw: Path) -> list[BackendAnatomy]:
    """The raw outputs of one guest boot, per backend (per syscall)."""
    for name in ("counts.txt.gz", "kallsyms.txt.gz", "driver.tsv", "vmexec"):
        if not (raw / name).exists():
            raise UsageError(f"{raw} has no {name}: not an anatomy run's raw directory")
    windows = parse_counts(_gunzip(raw / "counts.txt.gz"))
    ksyms = KernelSymbols(_gunzip(raw / "kallsyms.txt.gz"))
    runs = []
    for line in (raw / "driver.tsv").read_text().splitlines():
        backend, status, out = line.split("\t", 2)
        try:
            report = json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            report = {"ok": False, "error": out.strip()[:200]}
        runs.append((backend, int(status), report))
    ran = [(b, r) for b, s, r in runs if s == 0 and r.get("ok")]
    if len(ran) != len(windows):
        raise BenchError(f"{len(windows)} loop windows for {len(ran)} successful backend runs "
                         f"({', '.join(f'{b}: status {s}' for b, s, _ in runs)}): cannot pair them")
    result = []
    for (backend, report), w in zip(ran, windows):
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
    return result


def failed_runs(raw: Path) -> dict[str, str]:
    """Backends the guest could not run, and why (the driver's own words)."""
    why = {}
    for line in (raw / "driver.tsv").read_text().splitlines():
        backend, status, out = line.split("\t", 2)
        try:
            report = json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            report = {"ok": False, "error": out.strip()[:200] or f"exit status {status}"}
        if status != "0" or not report.get("ok"):
            why[backend] = report.get("error") or f"exit status {status}"
    return why


# ------------------------------------------------------------------------------------- outputs

def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 1 else f"{x:.2f}" if x else "0"


def top_phases(a: BackendAnatomy, k: int = 3) -> list[tuple[str, dict]]:
    ph = a.phases()
    return sorted(((p, v) for p, v in ph.items() if v["insns"] > 0), key=lambda pv: -pv[1]["insns"])[:k]


def sentences(results: list[BackendAnatomy]) -> list[str]:
    """Computed sentences, one per backend, from the measured counts."""
    out = []
    for a in results:
        parts = []
        for phase, v in top_phases(a):
            ev = [f"{_fmt(v[e])} {EVENT_LABELS[e]}" for e in ("cr3_write", "wrmsr", "xsave", "xrstor",
                                                            "swapgs", "iret", EVENT) if v[e] >= 0.005]
            parts.append(f"{_fmt(v['insns'])} in {SHORT.get(phase, phase)}"
                         + (f" ({', '.join(ev)})" if ev else ""))
        t = a.totals()
        out.append(f"`{a.backend}` executes {_fmt(a.insns_per_syscall)} instructions per intercepted syscall "
                   f"({_fmt(t['cr3_write'])} CR3 writes, {_fmt(t['swapgs'])} SWAPGS, "
                   f"{_fmt(t['xsave'])} XSAVE and {_fmt(t['xrstor'])} XRSTOR, {_fmt(t['serializing'])} "
                   f"serialising instructions, {_fmt(t['fence'])} fences; {_fmt(t[REP_EXTRA])} of the "
                   f"instructions are further iterations of REP string instructions, which TCG and icount count "
                   f"as instructions and hardware does not: {_fmt(a.insns_rep_once_per_syscall)} with each "
                   f"counted once); its top phases: " + "; ".join(parts) + ".")
    by = {a.backend: a for a in results}
    if "ptrace-sysemu" in by and "process-vm-exec" in by:
        s, p = by["ptrace-sysemu"].phases(), by["process-vm-exec"].phases()
        sch, mm = "scheduler & context switch", "mm switch"
        out.append(f"PTRACE_SYSEMU spends {_fmt(s[sch]['insns'])} instructions per syscall in the scheduler "
                   f"and context switch and {_fmt(s[mm]['insns'])} in the mm switch, with "
                   f"{_fmt(s[sch]['cr3_write'] + s[mm]['cr3_write'])} CR3 writes; "
                   f"process_vm_exec spends {_fmt(p[sch]['insns'])} in the scheduler and "
                   f"{_fmt(p[mm]['insns'])} in the mm switch, with {_fmt(p[sch]['cr3_write'] + p[mm]['cr3_write'])} "
                   f"CR3 writes. "
                   f"In all, {_fmt(by['ptrace-sysemu'].insns_per_syscall)} against "
                   f"{_fmt(by['process-vm-exec'].insns_per_syscall)} instructions per syscall: "
                   f"{by['ptrace-sysemu'].insns_per_syscall / by['process-vm-exec'].insns_per_syscall:.2f}x "
                   f"the path length, or {by['ptrace-sysemu'].insns_rep_once_per_syscall / by['process-vm-exec'].insns_rep_once_per_syscall:.2f}x "
                   f"with every REP string instruction counted once "
                   f"({_fmt(by['ptrace-sysemu'].insns_rep_once_per_syscall)} against "
                   f"{_fmt(by['process-vm-exec'].insns_rep_once_per_syscall)}).")
    return out


def write_outputs(results: list[BackendAnatomy], out: Path, failed: dict[str, str], meta: dict) -> list[Path]:
    import csv

    written = []
    out.mkdir(parents=True, exist_ok=True)
    events = ALL_EVENTS
    for a in results:
        path = out / f"functions-{a.backend}.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["function", "phase", "insns_per_syscall", *events])
            for r in a.functions:
                w.writerow([r["function"], r["phase"], f"{r['insns']:.3f}", *(f"{r[e]:.4f}" for e in events)])
        written.append(path)
    path = out / "phases.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["backend", "phase", "insns_per_syscall", *events])
        for a in results:
            for p, v in a.phases().items():
                w.writerow([a.backend, p, f"{v['insns']:.3f}", *(f"{v[e]:.4f}" for e in events)])
    written.append(path)
    path = out / "summary.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["backend", "syscalls", "plugin_insns_per_syscall", "icount_ns_per_syscall",
                    "disagreement", "insns_rep_once_per_syscall", *events])
        for a in results:
            t = a.totals()
            w.writerow([a.backend, a.syscalls, f"{a.insns_per_syscall:.2f}", f"{a.ns_per_syscall:.2f}",
                        f"{a.disagreement:+.5f}", f"{a.insns_rep_once_per_syscall:.2f}",
                        *(f"{t[e]:.4f}" for e in events)])
    written.append(path)
    doc = {"meta": meta, "failed": failed, "sentences": sentences(results),
           "backends": [{"backend": a.backend, "syscalls": a.syscalls, "elapsed_ns": a.elapsed_ns,
                         "insns": a.insns, "insns_per_syscall": a.insns_per_syscall,
                         "insns_rep_once_per_syscall": a.insns_rep_once_per_syscall,
                         "icount_ns_per_syscall": a.ns_per_syscall, "disagreement": a.disagreement,
                         "totals": a.totals(), "phases": a.phases()} for a in results]}
    path = out / "anatomy.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    written.append(path)
    written += plot(results, out)
    path = out / "anatomy.md"
    path.write_text(to_markdown(report_blocks(out)))
    written.append(path)
    return written


def plot(results: list[BackendAnatomy], out: Path) -> list[Path]:
    """Stacked bars: instructions per syscall by phase; the expensive events written on each bar."""
    import matplotlib
    import matplotlib.patches
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    order = sorted(results, key=lambda a: a.insns_per_syscall)
    fig = Figure(figsize=(12, 2.4 + 0.6 * len(order)))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab20"]
    colour = {p: cmap(j % 20) for j, p in enumerate(PHASES)}
    used = [p for p in PHASES if any(a.phases()[p]["insns"] > 0 for a in order)]
    for i, a in enumerate(order):
        left = 0.0
        ph = a.phases()
        for p in PHASES:
            v = ph[p]["insns"]
            if v > 0:
                ax.barh(i, v, left=left, color=colour[p], edgecolor="white", linewidth=0.4)
                left += v
        t = a.totals()
        # Events of at least 0.05 per syscall (all of them are in the tables).
        marks = ", ".join(f"{_fmt(t[e])} {label}" for e, label in
                          (("cr3_write", "CR3 wr"), ("swapgs", "SWAPGS"), ("xsave", "XSAVE"), ("xrstor", "XRSTOR"),
                           ("wrmsr", "WRMSR"), ("iret", "IRET"), ("serializing", "serial."), ("fence", "fence"),
                           (EVENT, "exc/irq")) if t[e] >= 0.05)
        ax.text(left + 0.01 * max(b.insns_per_syscall for b in order), i,
                f"{_fmt(a.insns_per_syscall)}: " + (marks or "no expensive events"), va="center", fontsize=7)
    handles = [matplotlib.patches.Patch(color=colour[p], label=p) for p in used]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.09), fontsize=7, ncols=4,
              frameon=False)
    ax.set_yticks(range(len(order)), [a.backend for a in order])
    xmax = max(a.insns_per_syscall for a in order)
    ax.set_xlim(0, xmax * 1.65)
    ax.set_xlabel("guest instructions per intercepted syscall (icount guest, same CPU)")
    ax.set_title("Where each mechanism's instructions go (per syscall); expensive events per syscall at right")
    fig.tight_layout()
    paths = [out / "anatomy.png", out / "anatomy.svg"]
    fig.savefig(paths[0], dpi=130)
    fig.savefig(paths[1])
    return paths


def default_directory(variant: str = "bench") -> Path:
    """anatomy/ in the results directory for the benchmark kernel, anatomy/VARIANT/ for another build."""
    from bench import results
    return variant_directory(results.directory() / "anatomy", variant)


def variant_directory(anatomy: Path, variant: str) -> Path:
    """Where a kernel variant's anatomy lies, given the benchmark kernel's anatomy directory."""
    return anatomy if variant == "bench" else anatomy / variant


def guest_vulnerabilities(raw: Path) -> dict[str, str]:
    """{vulnerability: the guest kernel's state} from a raw/ directory ({} for a run before they were kept)."""
    path = raw / VULNERABILITIES
    if not path.exists():
        return {}
    return dict(line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line)


#: The numbers of one backend in anatomy.json (write_outputs) that its readers use.
ANATOMY_NUMBERS = ("insns_per_syscall", "icount_ns_per_syscall", "disagreement", "insns_rep_once_per_syscall")


def _finite(x) -> bool:
    """x is a finite number, or a dict of them (nested)."""
    if isinstance(x, dict):
        return all(map(_finite, x.values()))
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_anatomy(path: Path) -> dict:
    """An anatomy.json (write_outputs), or a one-line UsageError: read as results files are (missing,
    binary, truncated, not an object), with its backends named and every number of theirs finite."""
    from bench import results

    doc = results.read_json(path)
    backends = doc.get("backends")
    if not isinstance(backends, list) or not backends or not isinstance(doc.get("meta", {}), dict):
        raise UsageError(f"{path}: not an anatomy.json (no list of backends)")
    for b in backends:
        name = b.get("backend") if isinstance(b, dict) else None
        if not (isinstance(name, str) and "insns_per_syscall" in b and isinstance(b.get("totals"), dict)
                and _finite({k: v for k, v in b.items() if k in (*ANATOMY_NUMBERS, "totals", "phases")})):
            raise UsageError(f"{path}: backend {name or b!r:.60}: missing, malformed or non-finite counts")
    return doc


@contextlib.contextmanager
def _reading(path: Path):
    """Inside, a key missing from or of the wrong type in the anatomy.json at path is that file's fault."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise UsageError(f"{path}: malformed anatomy.json ({type(e).__name__}: {e})") from None


def report_blocks(directory: Path | None = None) -> list:
    """The report section 'Instruction anatomy' as blocks (report.py's format), from an anatomy
    output directory (default: anatomy/ in the results directory); [] if there is none."""
    path = Path(directory or default_directory()) / "anatomy.json"
    if not path.exists():
        return []
    doc = load_anatomy(path)
    with _reading(path):
        return _anatomy_blocks(doc)


def _anatomy_blocks(doc: dict) -> list:
    blocks: list = [("p", "Guest instructions per intercepted syscall, counted per program counter by the "
                          "project's QEMU plugin (anatomy/) between the loop markers on every vCPU, in the "
                          "icount guest on the patched kernel, tracer and tracee on one CPU; kernel addresses "
                          "symbolised through the same boot's /proc/kallsyms. Expensive events are counted by "
                          "instruction bytes; exceptions/interrupts as entries into the IDT stubs. "
                          f"Meta: {doc['meta'].get('guest_kernel', '?')}, QEMU {doc['meta'].get('qemu', '?')}, "
                          f"{doc['meta'].get('syscalls', '?')} syscalls per backend. "
                          + mitigations_phrase(doc["meta"]))]
    blocks.append(("list", doc["sentences"]))
    rows = [[f"`{b['backend']}`", _fmt(b["insns_per_syscall"]), _fmt(b["icount_ns_per_syscall"]),
             f"{100 * b['disagreement']:+.3f}%", _fmt(b["insns_rep_once_per_syscall"]),
             *(_fmt(b["totals"][e]) for e in ("cr3_write", "swapgs", "sysret", "iret", "xsave", "xrstor",
                                              "wrmsr", "serializing", "fence", EVENT, REP_EXTRA))]
            for b in sorted(doc["backends"], key=lambda b: b["insns_per_syscall"])]
    blocks.append(("table", ["backend", "plugin insns/syscall", "icount ns/syscall", "plugin vs clock",
                             "insns, REP ops once",
                             "CR3 writes", "SWAPGS", "SYSRET", "IRET", "XSAVE", "XRSTOR", "WRMSR",
                             "serialising", "fences", "exc/irq", "further REP iterations"], rows))
    phase_rows = []
    for b in sorted(doc["backends"], key=lambda b: b["insns_per_syscall"]):
        for p, v in sorted(b["phases"].items(), key=lambda pv: -pv[1]["insns"]):
            if v["insns"] >= 0.5:
                phase_rows.append([f"`{b['backend']}`", p, _fmt(v["insns"]),
                                   f"{100 * v['insns'] / b['insns_per_syscall']:.1f}%",
                                   *(_fmt(v[e]) for e in ("cr3_write", "swapgs", "xsave", "xrstor", "serializing",
                                                          "fence", EVENT))])
    blocks.append(("table", ["backend", "phase", "insns/syscall", "share", "CR3 writes", "SWAPGS", "XSAVE",
                             "XRSTOR", "serialising", "fences", "exc/irq"], phase_rows))
    if doc["failed"]:
        blocks.append(("p", "Not measured: " + "; ".join(f"`{b}`: {w}" for b, w in doc["failed"].items())))
    blocks.append(("p", "Plot: `anatomy.png` (stacked bars by phase); per-function tables: "
                        "`functions-BACKEND.csv`; by phase: `phases.csv`."))
    return blocks


def _grown_phases(off: dict, on: dict, k: int = 3) -> str:
    """The k phases whose instructions per syscall grew most from off to on, as text."""
    grown = sorted(((p, on["phases"][p]["insns"] - off["phases"].get(p, {"insns": 0.0})["insns"])
                    for p in on["phases"]), key=lambda pv: -pv[1])[:k]
    return ", ".join(f"{SHORT.get(p, p)} {d:+,.0f}" for p, d in grown if d > 0) or "none"


def mitigation_blocks(directory: Path) -> list:
    """The report section 'Speculation mitigations off and on': the benchmark kernel's anatomy in
    directory beside the mitigation-matched kernel's (directory/mitigations/); [] unless both exist."""
    paths = [Path(directory) / "anatomy.json", variant_directory(Path(directory), MODEL_VARIANT) / "anatomy.json"]
    if not all(p.exists() for p in paths):
        return []
    off_doc, on_doc = (load_anatomy(p) for p in paths)
    with _reading(f"{paths[0]} or {paths[1]}"):
        return _mitigation_blocks(off_doc, on_doc)


def _mitigation_blocks(off_doc: dict, on_doc: dict) -> list:
    from bench.stats import CANDIDATE, SYSEMU as BASELINE

    off, on = ({b["backend"]: b for b in d["backends"]} for d in (off_doc, on_doc))
    both = sorted((n for n in off if n in on), key=lambda n: off[n]["icount_ns_per_syscall"])
    ns = "icount_ns_per_syscall"
    blocks: list = [("p", "The same guest anatomy on two kernel builds of the same source: `bench` (tinyconfig: "
                          "every speculation mitigation compiled out) and `mitigations` (the host's mitigations "
                          "compiled in and forced on the command line). icount ns = instructions, same CPU. "
                          f"Mitigations off: {mitigations_phrase(off_doc['meta'])} Mitigations on: "
                          f"{mitigations_phrase(on_doc['meta'])}")]
    if BASELINE in both and CANDIDATE in both:
        s_off, s_on = off[BASELINE][ns], on[BASELINE][ns]
        p_off, p_on = off[CANDIDATE][ns], on[CANDIDATE][ns]
        r_off, r_on = s_off / p_off, s_on / p_on
        blocks.append(("p", f"With the host's mitigations on, PTRACE_SYSEMU's path grows from {_fmt(s_off)} to "
                            f"{_fmt(s_on)} instructions per syscall ({100 * (s_on / s_off - 1):+.1f}%; most in "
                            f"{_grown_phases(off[BASELINE], on[BASELINE])}) and process_vm_exec's from {_fmt(p_off)} "
                            f"to {_fmt(p_on)} ({100 * (p_on / p_off - 1):+.1f}%; most in "
                            f"{_grown_phases(off[CANDIDATE], on[CANDIDATE])}): process_vm_exec's path-length "
                            f"advantage {'grows' if r_on > r_off else 'shrinks' if r_on < r_off else 'stays'} from "
                            f"{r_off:.2f}x to {r_on:.2f}x."))
    rows = []
    for n in both:
        a, b = off[n], on[n]
        speedups = [f"{d[BASELINE][ns] / d[n][ns]:.2f}x" if BASELINE in d else "–" for d in (off, on)]
        rows.append([f"`{n}`", _fmt(a[ns]), _fmt(b[ns]), f"{_fmt(b[ns] - a[ns])} ({100 * (b[ns] / a[ns] - 1):+.1f}%)",
                     *speedups, f"{_fmt(a['totals']['fence'])} → {_fmt(b['totals']['fence'])}",
                     f"{_fmt(a['totals']['cr3_write'])} → {_fmt(b['totals']['cr3_write'])}",
                     _grown_phases(a, b)])
    blocks.append(("table", ["backend", "icount ns/syscall, mitigations off", "on", "added",
                             "SYSEMU ÷ backend, off", "on", "fences, off → on", "CR3 writes, off → on",
                             "phases that grew most"], rows))
    return blocks


def mitigations_phrase(meta: dict) -> str:
    """What the guest kernel reported in /sys/devices/system/cpu/vulnerabilities (all but "Not affected")."""
    vuln = meta.get("vulnerabilities")
    if not vuln:
        return "Guest mitigations: not recorded."
    shown = [f"{k}: {v}" for k, v in sorted(vuln.items()) if v != "Not affected"]
    args = meta.get("kernel_args") or []
    return (f"Guest kernel build `{meta.get('kernel_variant', 'bench')}`"
            + (f", booted with `{' '.join(args)}`" if args else "")
            + "; the guest reports " + ("; ".join(shown) or "nothing but Not affected")
            + f" ({len(vuln) - len(shown)} others Not affected).")


def to_markdown(blocks: list) -> str:
    from bench.render import report
    return "# Instruction anatomy\n\n" + report.to_markdown(blocks)


# ------------------------------------------------------------------------------------------- CLI

def default_backends() -> list[str]:
    """Every C backend of the driver, in its registry's order (python-ptrace-sysemu is the
    interpreter's cost, not a kernel path)."""
    from tracers.driver import driver_backends
    return [b.name for b in driver_backends()]


def _cmd_anatomy(args) -> int:
    out = args.output or default_directory(args.kernel_variant)
    raw = out / "raw"
    if args.from_raw is None:
        from bench.errors import writable_directory
        check_arguments(args.backends or default_backends(), args.syscalls)    # before making the directory
        writable_directory(out, create=True)
        run_guest(args.backends or default_backends(), args.syscalls, raw, log=lambda m: print(m, file=sys.stderr),
                  variant=args.kernel_variant)
    else:
        raw = args.from_raw
        if not raw.is_dir():
            raise UsageError(f"--from-raw: {raw} is not a directory")
    try:
        results = analyse(raw)
    except (BenchError, ValueError, KeyError, IndexError, TypeError) as e:
        if args.from_raw is None:
            raise
        # An earlier run's files, given by the user: what they hold is input, bad input is exit 2.
        raise UsageError(f"--from-raw {raw}: cannot be analysed: {e}") from None
    if not results:
        raise BenchError("no backend ran in the guest: " + json.dumps(failed_runs(raw)))
    meta = json.loads((raw / "guest.json").read_text()) if (raw / "guest.json").exists() else {}
    meta.pop("qemu_cmdline", None)
    meta["vulnerabilities"] = guest_vulnerabilities(raw)
    written = write_outputs(results, out, failed_runs(raw), meta)
    for s in sentences(results):
        print(s)
    for a in results:
        print(f"{a.backend}: plugin {a.insns_per_syscall:,.1f} insns/syscall, icount clock "
              f"{a.ns_per_syscall:,.1f} ns/syscall ({100 * a.disagreement:+.3f}%)")
    print(f"anatomy: {len(written)} files in {out}")
    bad = [a.backend for a in results if abs(a.disagreement) > AGREEMENT]
    if bad:
        raise BenchError(f"the plugin's count and the icount clock differ by more than "
                         f"{100 * AGREEMENT:g}% for {', '.join(bad)}")
    return 0


def register_cli(subparsers) -> None:
    from bench.measure import kernel
    from bench.commands.cli import _list_of

    p = subparsers.add_parser("anatomy", help="instruction-level anatomy of each backend in the icount guest")
    p.add_argument("--backends", type=_list_of(str),
                   help="comma-separated C backends (default: every backend of the C driver)")
    p.add_argument("--syscalls", type=int, default=DEFAULT_SYSCALLS,
                   help=f"intercepted syscalls per backend (default {DEFAULT_SYSCALLS})")
    p.add_argument("--kernel-variant", default="bench", choices=sorted(kernel.VARIANTS),
                   help="which kernel build the guest boots (default bench; 'mitigations': the host's "
                        "speculation mitigations forced on)")
    p.add_argument("--output", type=Path, help="output directory (default: anatomy/ in the results directory "
                                               "for the bench kernel, anatomy/VARIANT/ for another)")
    p.add_argument("--from-raw", type=Path, metavar="DIR",
                   help="analyse an earlier run's raw/ directory instead of booting the guest")
    p.set_defaults(func=_cmd_anatomy)
    m = subparsers.add_parser("anatomy-model", help="fit host ns/syscall to the guest anatomy; predict process_vm_exec")
    m.add_argument("--host", type=Path, action="append",
                   help="host results file(s) of `bench run` (default: the newest host run in the results directory)")
    m.add_argument("--anatomy", type=Path, help=f"anatomy directory (default: anatomy/{MODEL_VARIANT}/ in the "
                                                "results directory, the mitigation-matched guest)")
    m.add_argument("--output", type=Path, help="also write the Markdown here")
    m.set_defaults(func=_cmd_model)


# ------------------------------------------------------------------- a cost model (issue 13, item 5)

#: The model's features, each per intercepted syscall, with the physical meaning of its
#: coefficient (ns per unit, non-negative).
MODEL_FEATURES = {
    "insns": "ns per guest instruction (each REP string instruction counted once, as hardware runs it): "
             "the host's mean cost of an ordinary instruction",
    "cr3_write": "ns per CR3 write: an address-space switch, with the TLB and cache refills after it",
    "kernel_entries": "ns per kernel entry (SYSCALL, exception or interrupt): entry and exit with "
                      "the host's mitigations",
}


def model_features(totals: dict, insns_per_syscall: float) -> list[float]:
    return [insns_per_syscall - totals.get(REP_EXTRA, 0.0), totals["cr3_write"], totals["syscall"] + totals[EVENT]]


def host_ns_per_syscall(paths: list[Path]) -> dict[str, float]:
    """Median host ns/syscall per backend of the newest host run among paths: tracers pinned to one
    CPU, in-process backends as they run, no pages touched, one pair."""
    from bench import stats
    from bench import results

    host = [p for p in paths if results.classify(results.read_json(p)) == "host"]
    if not host:
        raise UsageError("no host run among the given results (a `bench run` on this machine's kernel)")
    s = stats.base_cases(stats.summarize(stats.load(host)))
    s = s[s["pin"].isin(["same", stats.IN_PROCESS])].sort_values("started")
    return {b: float(g.iloc[-1]["median_ns"]) for b, g in s.groupby("backend")}


#: The kernel build whose guest anatomy the cost model is fitted on: the host's mitigations.
MODEL_VARIANT = "mitigations"


@dataclasses.dataclass
class CostModel:
    parameters: dict[str, float]            # feature -> ns per unit
    backends: list[str]                     # the mechanisms it was fitted on
    measured: dict[str, float]              # host ns/syscall
    fitted: dict[str, float]                # the full model's prediction
    loo: dict[str, float]                   # leave-one-out relative error (predicted / measured - 1)
    candidate_ns: float                     # process_vm_exec's predicted host ns/syscall
    candidate_range: tuple[float, float]    # corrected by the extreme leave-one-out errors
    baseline_ns: float                      # PTRACE_SYSEMU on the host, measured
    variant: str = "bench"                  # the kernel build of the guest anatomy
    inputs: str = ""                        # the files it was fitted on, for the reader

    @property
    def speedup(self) -> float:
        return self.baseline_ns / self.candidate_ns

    @property
    def speedup_range(self) -> tuple[float, float]:
        return self.baseline_ns / self.candidate_range[1], self.baseline_ns / self.candidate_range[0]

    def prediction(self):
        """What the verdict uses (bench.stats.ModelPrediction)."""
        from bench import verdict
        return verdict.ModelPrediction(self.speedup, *self.speedup_range, self.candidate_ns, self.baseline_ns,
                                        dict(self.loo), self.variant == MODEL_VARIANT, self.inputs)


def fit_model(anatomy_json: Path, host: dict[str, float], inputs: str = "") -> CostModel:
    """Non-negative least squares on relative errors (each mechanism weighs the same), host ns/syscall
    against the guest anatomy's features; leave-one-out errors; process_vm_exec's prediction with a
    range: the prediction divided by (1 + e) for the largest and smallest leave-one-out error e."""
    import numpy as np
    from scipy.optimize import nnls

    from bench import stats

    doc = load_anatomy(anatomy_json)
    with _reading(anatomy_json):
        feats = {b["backend"]: model_features(b["totals"], b["insns_per_syscall"]) for b in doc["backends"]}
    if stats.CANDIDATE not in feats:
        raise UsageError(f"{anatomy_json} has no {stats.CANDIDATE} anatomy")
    if stats.SYSEMU not in host:
        raise UsageError(f"the host run has no {stats.SYSEMU} (same CPU)")
    names = sorted(b for b in feats if b in host and b != stats.CANDIDATE)
    if len(names) < len(MODEL_FEATURES) + 2:
        raise UsageError(f"too few mechanisms measured both on the host and in the anatomy ({', '.join(names)}): "
                         f"the model needs at least {len(MODEL_FEATURES) + 2}")
    X = np.array([feats[n] for n in names])
    y = np.array([host[n] for n in names])
    w = 1 / y

    def solve(mask):
        p, _ = nnls(X[mask] * w[mask, None], y[mask] * w[mask])
        return p

    p = solve(np.ones(len(names), bool))
    loo = {}
    for i, n in enumerate(names):
        mask = np.arange(len(names)) != i
        loo[n] = float(X[i] @ solve(mask) / y[i] - 1)
    pred = float(np.array(feats[stats.CANDIDATE]) @ p)
    lo_e, hi_e = min(loo.values()), max(loo.values())
    rng = (pred / (1 + hi_e), pred / (1 + lo_e)) if lo_e > -1 else (pred / (1 + hi_e), float("inf"))
    return CostModel(dict(zip(MODEL_FEATURES, map(float, p))), names, {n: host[n] for n in names},
                     {n: float(X[i] @ p) for i, n in enumerate(names)}, loo, pred, rng, host[stats.SYSEMU],
                     doc.get("meta", {}).get("kernel_variant", "bench"), inputs)


def model_blocks(m: CostModel) -> list:
    formula = " + ".join(f"{v:.4g} × {k}" for k, v in m.parameters.items())
    rows = [[f"`{n}`", _fmt(m.measured[n]), _fmt(m.fitted[n]), f"{100 * m.loo[n]:+.1f}%"] for n in m.backends]
    return [("p", f"Host ns/syscall = {formula} (per intercepted syscall; non-negative least squares on "
                  f"relative errors over {len(m.backends)} mechanisms). "
                  + " ".join(f"{k}: {v}." for k, v in MODEL_FEATURES.items())
                  + (f" Inputs: {m.inputs}." if m.inputs else "")),
            ("table", ["mechanism", "host ns/syscall (measured)", "model", "leave-one-out error"], rows),
            ("p", f"process_vm_exec, predicted for this host: {_fmt(m.candidate_ns)} ns/syscall "
                  f"({_fmt(m.candidate_range[0])}–{_fmt(m.candidate_range[1])} with the extreme leave-one-out "
                  f"errors), a speed-up over PTRACE_SYSEMU ({_fmt(m.baseline_ns)} ns measured) of "
                  f"{m.speedup:.2f}x ({m.speedup_range[0]:.2f}–{m.speedup_range[1]:.2f}). "
                  + ("The guest anatomy was measured on the mitigation-matched kernel (the host's speculation "
                     "mitigations forced on). " if m.variant == MODEL_VARIANT else
                     f"The guest anatomy was measured on the `{m.variant}` kernel, not the mitigation-matched one: "
                     "the verdict does not judge this model. ")
                  + "In the mechanisms fitted, CR3 writes always come with a scheduler round trip, so the CR3 "
                  "term also carries what a context switch costs beyond its instructions: process_vm_exec, "
                  "which writes CR3 without one, is an extrapolation.")]


def _inputs(host: list[Path], anatomy_json: Path) -> str:
    where = Path(os.path.relpath(anatomy_json)) if anatomy_json.is_absolute() else anatomy_json
    return f"host run(s) {', '.join(f'`{p.name}`' for p in host)}; guest anatomy `{where}`"


def fitted_model(host_paths, directory: Path | None = None) -> tuple[CostModel | None, str]:
    """(the cost model, "") fitted to the host runs among host_paths (results files) and the
    mitigation-matched anatomy under directory (the benchmark kernel's anatomy directory; default:
    anatomy/ in the results directory), or (None, why not)."""
    from bench import results

    anatomy_json = variant_directory(Path(directory or default_directory()), MODEL_VARIANT) / "anatomy.json"
    if not anatomy_json.exists():
        return None, (f"no mitigation-matched guest anatomy ({anatomy_json}: `python -m bench anatomy "
                      f"--kernel-variant {MODEL_VARIANT}`)")
    host = [Path(p) for p in host_paths if results.classify(results.read_json(p)) == "host"]
    try:
        return fit_model(anatomy_json, host_ns_per_syscall(host), _inputs(host, anatomy_json)), ""
    except UsageError as e:
        return None, str(e)


def cost_model_blocks(model: CostModel | None, why: str, directory: Path) -> list:
    """The report section 'Cost model' as blocks: the model, or why there is none ([] when directory,
    the benchmark kernel's anatomy directory, holds no anatomy at all)."""
    if model is not None:
        return model_blocks(model)
    return [("p", f"No cost model: {why}.")] if (Path(directory) / "anatomy.json").exists() else []


def _cmd_model(args) -> int:
    from bench import results

    anatomy_json = (args.anatomy or default_directory(MODEL_VARIANT)) / "anatomy.json"
    if args.output:
        results.check_new(args.output)      # before the work: exists, a directory, /proc: one line
    if not anatomy_json.exists():
        raise UsageError(f"no {anatomy_json}: run `bench anatomy --kernel-variant {MODEL_VARIANT}` first "
                         "(or give --anatomy DIR)")
    paths = args.host or [p for p in results.newest() if results.classify(results.read_json(p)) == "host"]
    for p in paths:
        if not Path(p).is_file():
            raise UsageError(f"no such results file: {p}")
    paths = [Path(p) for p in paths]
    m = fit_model(anatomy_json, host_ns_per_syscall(paths), _inputs(paths, anatomy_json))
    text = to_markdown(model_blocks(m)).replace("# Instruction anatomy", "# Cost model", 1)
    if args.output:
        results.publish(args.output, lambda staged: staged.write_text(text))
    print(text, end="")
    return 0
