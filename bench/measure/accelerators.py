"""Every way the harness runs a guest, in one table: QEMU's arguments, the timings each offers, its
name in sentences, and how far each clock stands for hardware time.

The VM runner takes its QEMU arguments and the one rule for "auto" from here; the verdict takes
its ranking of clocks (CLOCKS).  Adding an accelerator is one row of ACCELERATORS.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

#: What a run's clock measures, most trustworthy first: bare metal; a KVM guest, or a host that
#: is itself a hypervisor's guest (hardware time with a hypervisor between); TCG with icount
#: (path length: deterministic, not time); anything else (TCG wall time measures the emulator).
CLOCKS = ("hardware", "kvm", "icount", "emulator")
#: Clocks whose 95% CI stands for hardware time as it is.
HARDWARE_CLOCKS = ("hardware", "kvm")


@dataclasses.dataclass(frozen=True)
class Timing:
    qemu: tuple[str, ...]       # QEMU arguments that select it
    clock: str                  # one of CLOCKS


@dataclasses.dataclass(frozen=True)
class Accelerator:
    name: str                   # as recorded in results (the tag accelerator=)
    label: str                  # as written in sentences
    qemu: tuple[str, ...]       # QEMU arguments that select it
    cpu: str                    # QEMU's -cpu model
    timings: dict[str, Timing]
    needs_probe: bool           # usable only where a probe boot works (checked before "auto" takes it)


#: In order of preference: "auto" takes the first that offers the timing asked for and is usable.
ACCELERATORS = {a.name: a for a in (
    Accelerator("kvm", "KVM", ("-accel", "kvm"), "host", {"wall": Timing((), "kvm")}, needs_probe=True),
    # icount: one instruction = 2^0 ns of virtual time, so guest timings are deterministic.
    Accelerator("tcg", "TCG", ("-accel", "tcg"), "max",
                {"wall": Timing((), "emulator"), "icount": Timing(("-icount", "shift=0"), "icount")},
                needs_probe=False),
)}
TIMINGS = tuple(dict.fromkeys(t for a in ACCELERATORS.values() for t in a.timings))


#: Named QEMU models tried under KVM, by the host's CPU vendor, when `-cpu host` does not boot (a
#: hypervisor that refuses some of the host's MSRs or features): newest first, then an older one.
FALLBACK_CPUS = {"GenuineIntel": ("Skylake-Server", "Nehalem"), "AuthenticAMD": ("EPYC", "Opteron_G3")}


def qemu_args(name: str, timing: str, cpu: str | None = None) -> list[str]:
    """QEMU's arguments for the accelerator and timing, with -cpu cpu (default: the accelerator's)."""
    accel = ACCELERATORS[name]
    return [*accel.qemu, "-cpu", cpu or accel.cpu, *accel.timings[timing].qemu]


def cpu_models(name: str, vendor: str, known: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The -cpu models to try under accelerator `name`, in order: its own, then (KVM) the named models of
    the host's vendor (FALLBACK_CPUS) that QEMU knows (known: `-cpu help`'s names; None: all)."""
    accel = ACCELERATORS[name]
    if not accel.needs_probe:
        return (accel.cpu,)
    return (accel.cpu, *(m for m in FALLBACK_CPUS.get(vendor, ()) if known is None or m in known))


def label(name: str) -> str:
    """KVM, TCG; a host's own description (bare-metal, virtualized (kvm)) as it is."""
    return ACCELERATORS[name].label if name in ACCELERATORS else name or "unknown accelerator"


def clock(accelerator: str, timing: str, vm: bool) -> str:
    """Which of CLOCKS a run's timings were taken with."""
    if not vm:
        return "hardware" if accelerator == "bare-metal" else \
            "kvm" if accelerator.startswith("virtualized") else "emulator"
    timings = ACCELERATORS[accelerator].timings if accelerator in ACCELERATORS else {}
    return timings[timing].clock if timing in timings else "emulator"


def check(name: str, timing: str) -> str | None:
    """None if the pair can be asked for ("auto" included), else why not."""
    if timing not in TIMINGS:
        return f"timing must be one of {', '.join(TIMINGS)}, not {timing!r}"
    if name == "auto":
        return None
    if name not in ACCELERATORS:
        return f"accel must be auto or one of {', '.join(ACCELERATORS)}, not {name!r}"
    if timing not in ACCELERATORS[name].timings:
        offered = [a for a, acc in ACCELERATORS.items() if timing in acc.timings]
        return f"{timing} timing needs {' or '.join(map(label, offered))}: use --accel {offered[0]} (or auto)"
    return None


def choose(requested: str, timing: str, probe: Callable[[str], str | None]) -> tuple[str, str]:
    """(accelerator, why): the requested one, or for "auto" the first in ACCELERATORS that offers
    the timing and, where it needs one, passes probe(name) (which returns why not, or None)."""
    if requested != "auto":
        return requested, f"{label(requested)}: asked for"
    passed_over = []
    for name, accel in ACCELERATORS.items():
        if timing not in accel.timings:
            continue
        why_not = probe(name) if accel.needs_probe else None
        if why_not is None:
            reason = "; ".join(passed_over) or "first choice"
            return name, f"{accel.label} ({reason})"
        passed_over.append(f"not {accel.label}: {why_not}")
    raise ValueError(f"no accelerator offers {timing} timing")     # TIMINGS come from the table
