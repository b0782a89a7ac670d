"""The vmexec_* metadata of a suite: every key the harness writes and what it means (METADATA), which of
them are facts no label may stand for (RESERVED_TAGS, facts()), and what each value may be (check_suite).

Read through bench.results, which re-exports all of it.
"""
from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Callable

from bench.errors import UsageError

#: Every vmexec_* key of a pyperf suite written by this harness, and what it means.  Each is a fact the
#: harness measured or detected: `--tag KEY=VALUE` adds vmexec_tag_KEY, a free label no reader takes
#: for a fact, and refuses every KEY in RESERVED_TAGS.
METADATA = {
    # one case (Case; its placement: bench.measure.plan.Planned)
    "vmexec_backend": "interception backend (tracers/)",
    "vmexec_pin": "placement: same, cross, none (unpinned) or in-process",
    "vmexec_pages": "distinct pages the tracee writes between two calls",
    "vmexec_parallel": "tracer/tracee pairs running at once",
    "vmexec_cpu_tracer": "CPU the tracer is pinned to, or none",
    "vmexec_cpu_tracee": "CPU the tracee is pinned to, or none",
    # the machine (bench.measure.environment)
    "vmexec_kernel": "kernel release the run measured (uname -r)",
    "vmexec_kernel_version": "kernel build (uname -v)",
    "vmexec_kernel_config": "sha256 of the running kernel's configuration (/proc/config.gz or /boot/config-R), "
                            "16 hex digits; absent where neither is readable",
    "vmexec_cpu_model": "CPU model name (/proc/cpuinfo)",
    "vmexec_cpus": "CPUs the run could use (its affinity when it started)",
    "vmexec_accelerator": "bare-metal, virtualized (hypervisor) or tcg as seen from inside; in the project's "
                          "guest, the accelerator `bench vm run` started it with: kvm or tcg",
    "vmexec_clocksource": "the kernel's clock source (/sys/devices/system/clocksource)",
    "vmexec_memory_cgroup": "the memory cgroup the run was charged to: root, child (cgroup v1) or child "
                            "(cgroup v2); a child's kernel charges every accounted allocation (issue 26)",
    "vmexec_mitigations": "JSON: /sys/devices/system/cpu/vulnerabilities, file by file",
    "vmexec_commit": "git describe of the harness that measured",
    "vmexec_compiler": "the compiler that built the C driver (its loops and tracers)",
    # the project's QEMU guest (bench.measure.environment.guest: what `bench vm run` started it with)
    "vmexec_vm": "1: measured inside the project's QEMU guest; 0: not",
    "vmexec_timing": "the clock: wall, or icount (the guest's, 1 ns per instruction)",
    "vmexec_qemu": "in a guest: the QEMU that ran it (qemu-system-x86_64 --version)",
    "vmexec_host_cpu_model": "in a guest: the host's CPU model under it",
    "vmexec_host_kernel": "in a guest: the host's kernel release under it (uname -r)",
    "vmexec_kernel_key": "in a guest: its kernel's build key: its source, patches and config hashed "
                         "(bench.measure.kernel)",
    "vmexec_kernel_source": "in a guest: the Debian package its kernel was built from, and its version",
    "vmexec_kernel_variant": "in a guest: the kernel build variant it booted (bench.measure.kernel.VARIANTS, or a path)",
    "vmexec_qemu_cpu": "in a guest: QEMU's -cpu (under KVM: host, or the fallback model that booted)",
    "vmexec_kernel_args": "in a guest: the kernel arguments `bench vm --kernel-arg` added to its variant's "
                          "(empty: none)",
    "vmexec_vcpu_host_cpus": "in a guest started with --pin-vcpus: the host CPU each vCPU's thread was pinned "
                             "to, in vCPU order",
    # the run (bench.measure.runner)
    "vmexec_cpus_used": "the two CPUs pinned cases used: TRACER,TRACEE",
    "vmexec_command": "the command line of the run",
    "vmexec_unavailable": "JSON: case -> why it cannot run here",
    "vmexec_failed": "JSON: case -> why its check or measurement failed",
    "vmexec_first_call_ns": "JSON: case -> the cost (ns) of the first call at a fresh site, for binary "
                            "rewriting backends that patch a site at its first trap (median of 16 sites, "
                            "in the run's check)",
    "vmexec_resumed": "the cases kept from an interrupted run of the same cases (bench run --resume), comma-separated",
    "vmexec_busy": "JSON: the run's busy-host state when it ended (busy_runs): worker runs that saw more "
                   "runnable threads or load than CPUs, of all, the highest seen, the CPUs",
    # set by `bench check --against` on the comparison commit's run (a label: the tree's own
    # vmexec_commit is the fact)
    "vmexec_tag_revision": "the git commit whose tree made the run (bench check --against)",
    # a baseline (bench.regression)
    "vmexec_baseline": "JSON: the runs a baseline was made from, each ratio's measured run-to-run noise, "
                       "and the arguments that repeat its run",
}
#: The tags `bench vm run` wrote before the harness recorded those facts itself (files older than
#: vmexec_vm): facts() reads them only where a measured fact corroborates them.
LEGACY_TAGS = ("vm", "accelerator", "timing", "guest_kernel", "qemu", "host_cpu_model", "host_kernel", "kernel_key",
               "kernel_source", "vcpu_host_cpus")
TAG_PREFIX = "vmexec_tag_"
#: Keys `--tag` refuses: every fact's name (and the facts' older tag names), and the words a reader could
#: take for one.  A label never stands where a measurement does.
RESERVED_TAGS = frozenset({
    *(k.removeprefix("vmexec_") for k in METADATA if not k.startswith(TAG_PREFIX)), *LEGACY_TAGS,
    "accel", "clock", "clock_source", "pinning", "cpu", "vcpus", "guest", "host", "kind", "machine",
    "hostname", "date", "platform", "cpu_count", "cpu_model_name", "python_version", "perf_version"})


#: What only the host knows of a guest, recorded in it (bench.measure.environment.guest).
GUEST_SOURCE = ("qemu", "host_cpu_model", "host_kernel", "kernel_key")


def facts(meta: dict) -> dict:
    """What a run measured or detected about where it ran, from one case's metadata, never from a tag:
    vm (bool), accelerator, timing, and GUEST_SOURCE (on a host: no QEMU, its own CPU and kernel).

    A file older than vmexec_vm recorded the guest's facts as tags: they count only where what the
    run detected itself agrees (a guest needs a detected hypervisor or TCG; icount needs TCG); the
    accelerator is always the one detected.
    """
    detected = str(meta.get("vmexec_accelerator", ""))
    if "vmexec_vm" in meta:
        vm = str(meta["vmexec_vm"]) == "1"
        timing = str(meta.get("vmexec_timing") or "wall")
        source = {k: str(meta.get(f"vmexec_{k}", "")) for k in GUEST_SOURCE}
    else:
        tag = {k: str(meta.get(TAG_PREFIX + k, "")) for k in LEGACY_TAGS}
        vm = tag["vm"] == "1" and (detected == "tcg" or detected.startswith("virtualized"))
        detected = "kvm" if vm and detected.startswith("virtualized") else detected
        timing = "icount" if vm and detected == "tcg" and tag["timing"] == "icount" else "wall"
        source = {k: tag[k] for k in GUEST_SOURCE}
    cpu = str(meta.get("vmexec_cpu_model", ""))
    return {"vm": vm, "accelerator": detected, "timing": timing if vm else "wall",
            "qemu": source["qemu"] if vm else "none",
            "host_cpu_model": (source["host_cpu_model"] if vm else cpu),
            "host_kernel": source["host_kernel"] if vm else str(meta.get("vmexec_kernel", "")),
            "kernel_key": source["kernel_key"] if vm else ""}


def _json_map(values) -> Callable[[object], bool]:
    """A check: JSON text of an object whose values pass values (its keys are text by JSON's rules)."""
    def check(text) -> bool:
        try:
            data = json.loads(text)
        except (TypeError, ValueError, RecursionError):
            return False
        return isinstance(data, dict) and all(map(values, data.values()))
    return check


def _whole(low: int) -> Callable[[object], bool]:
    return lambda v: not isinstance(v, bool) and isinstance(v, int) and v >= low or \
        isinstance(v, str) and v.isdigit() and int(v) >= low


def _cpu(v) -> bool:
    return v == "none" or _whole(0)(v)


def _text(v) -> bool:
    return isinstance(v, str)


#: What each vmexec_* value of a suite may be, and how to say what it must be (check_suite); pyperf
#: itself checks only that a value is text or a number.
METADATA_VALUES: dict[str, tuple[Callable[[object], bool], str]] = {
    "vmexec_pages": (_whole(0), "a whole number >= 0"),
    "vmexec_parallel": (_whole(1), "a whole number >= 1"),
    "vmexec_cpus": (_whole(1), "a whole number >= 1"),
    "vmexec_cpu_tracer": (_cpu, "a CPU number or none"),
    "vmexec_cpu_tracee": (_cpu, "a CPU number or none"),
    "vmexec_cpus_used": (lambda v: isinstance(v, str) and len(v.split(",")) == 2 and all(map(_whole(0), v.split(","))),
                         "TRACER,TRACEE CPU numbers"),
    "vmexec_vm": (lambda v: str(v) in ("0", "1"), "0 or 1"),
    "vmexec_timing": (lambda v: v in ("wall", "icount"), "wall or icount"),
    "vmexec_unavailable": (_json_map(_text), "JSON: case -> why"),
    "vmexec_failed": (_json_map(_text), "JSON: case -> why"),
    "vmexec_mitigations": (_json_map(_text), "JSON: file -> state"),
    "vmexec_first_call_ns": (_json_map(lambda v: not isinstance(v, bool) and isinstance(v, (int, float))
                                       and 0 <= v < math.inf), "JSON: case -> finite ns"),
}


def check_suite(path: pathlib.Path, data: dict) -> dict:
    """data, if shaped like a pyperf suite whose vmexec_* metadata means what METADATA says: every level's
    metadata an object, every run an object, every recorded value of the kind METADATA_VALUES names (any
    other vmexec_* value text or a finite number); else a one-line UsageError naming what is wrong."""
    benchmarks = data.get("benchmarks")
    if not isinstance(benchmarks, list) or not all(isinstance(b, dict) for b in benchmarks):
        raise UsageError(f"{path}: malformed pyperf suite: 'benchmarks' is not a list of objects")
    levels = [("suite", data)]
    for i, bench in enumerate(benchmarks):
        runs = bench.get("runs", [])
        if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            raise UsageError(f"{path}: malformed pyperf suite: benchmark {i}'s runs are not a list of objects")
        meta = bench.get("metadata")
        name = f"case {meta['name']}" if isinstance(meta, dict) and isinstance(meta.get("name"), str) else f"benchmark {i}"
        levels += [(name, bench), *((f"{name}, run {j}", r) for j, r in enumerate(runs))]
    for where, level in levels:
        meta = level.get("metadata", {})
        if not isinstance(meta, dict):
            raise UsageError(f"{path}: malformed pyperf suite: the metadata of the {where} is a "
                             f"{type(meta).__name__}, not an object")
        for key, value in meta.items():
            ok, must = METADATA_VALUES.get(key, (_plain, "text or a finite number"))
            if key.startswith("vmexec_") and not ok(value):
                raise UsageError(f"{path}: malformed metadata of the {where}: {key} {value!r:.60} is not {must}")
    return data


def _plain(v) -> bool:
    return isinstance(v, str) or not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
