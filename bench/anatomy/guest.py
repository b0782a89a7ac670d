"""Booting the icount guest with the plugin, and the script it runs there.

`python -m bench anatomy` boots the patched kernel under TCG with icount and the project's QEMU
plugin (bench.anatomy.plugin), runs every backend once, tracer and tracee on one CPU, and leaves
the raw outputs in raw/ for bench.anatomy.counts to analyse.  In the same boot the guest saves
/proc/kallsyms, so kernel addresses are symbolised against the very kernel image and KASLR slide
that ran, and the speculation mitigations it reports.
"""
from __future__ import annotations

import gzip
import json
import shlex
import shutil
from pathlib import Path

from bench import outputs
from bench.anatomy.counts import VULNERABILITIES
from bench.anatomy.plugin import build_plugin, installed_qemu_source_version
from bench.errors import BenchError, UsageError
from bench.measure import kernel, vm
from bench.measure.environment import memory_cgroup, mitigations
from tracers.driver import VMEXEC, DriverBackend, driver_backends, same_cpu_argv

DEFAULT_SYSCALLS = 20000
#: The pinning the anatomy uses: tracer and tracee on the guest's CPU 0 (in-process: the tracee).
PIN_CPU = 0


def c_backends() -> dict[str, DriverBackend]:
    """Every C backend of the driver by name, in its registry's order (python-ptrace-sysemu, the
    interpreter's cost, is no kernel path)."""
    return {b.name: b for b in driver_backends()}


def default_backends() -> list[str]:
    """What the anatomy runs unless told otherwise: every C backend of the driver."""
    return list(c_backends())


def backend_commands(backends: list[str], syscalls: int, in_process: dict[str, bool]) -> list[tuple[str, list[str]]]:
    """(label, driver argv) of each backend's run in the anatomy guest: same CPU."""
    return [(b, same_cpu_argv(VMEXEC, b, syscalls, PIN_CPU, in_process[b])) for b in backends]


#: Guest uptime (s) the loops wait for: the kernel's one-off work after boot is done by then, so no count
#: carries it.  Conntrack's garbage collector first sweeps its whole (empty) table a second after its init, then
#: once a minute (the twin has conntrack built in, as the host does): counted, it added about 100 instructions
#: per call to one mechanism and 700 per iteration to one part.  The TSC's refined calibration also runs then.
SETTLE_UPTIME_S = 5
#: The guest's /proc/self/cgroup and cgroup2 root controllers, in the share: where its loops were charged.
CGROUP, CGROUP_CONTROLLERS = "cgroup.txt", "cgroup-controllers.txt"


def _guest_script(share: Path, commands: list[tuple[str, list[str]]]) -> str:
    lines = ["set -u",
             f"while [ \"$(cut -d. -f1 /proc/uptime)\" -lt {SETTLE_UPTIME_S} ]; do sleep 0.2; done",
             # The driver's load address must be the same in tracer and tracee (and stable).
             "echo 0 > /proc/sys/kernel/randomize_va_space",
             f"cat /proc/kallsyms > {shlex.quote(str(share / 'kallsyms.txt'))}",
             # The speculation mitigations this guest kernel runs, as it reports them.
             "for f in /sys/devices/system/cpu/vulnerabilities/*; do "
             "printf '%s\\t%s\\n' \"${f##*/}\" \"$(cat \"$f\")\"; done "
             f"> {shlex.quote(str(share / VULNERABILITIES))}",
             # The memory cgroup the loops are charged to, as the guest's kernel says (memory_cgroup()).
             f"cat /proc/self/cgroup > {shlex.quote(str(share / CGROUP))} 2>/dev/null; "
             f"cat /sys/fs/cgroup/cgroup.controllers > {shlex.quote(str(share / CGROUP_CONTROLLERS))} 2>/dev/null"]
    for b, argv in commands:
        cmd = shlex.join(argv)
        lines.append(f"out=$({cmd}); status=$?; "
                     f"printf '%s\\t%s\\t%s\\n' {shlex.quote(b)} \"$status\" \"$out\" "
                     f">> {shlex.quote(str(share / 'driver.tsv'))}")
    return "\n".join(lines) + "\n"


def check_arguments(backends: list[str], syscalls: int, commands: list | None = None) -> dict:
    """The driver's backends by name, or a one-line UsageError unless every backend is one of them
    (commands given instead of backends are the caller's own) and syscalls is enough."""
    known = c_backends()
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
    commands, when given, are (label, driver argv) run instead of the backends (bench.commands.prices: the
    micro-benchmarks of the mechanisms' parts, between the same loop markers)."""
    known = check_arguments(backends, syscalls, commands)
    lib = build_plugin(log)
    kb = kernel.build(log=lambda msg: log(f"kernel: {msg}"), variant=variant)
    kernel_args = kernel.BOOT_ARGS.get(variant, ())
    raw.mkdir(parents=True, exist_ok=True)
    for name in ("counts.txt.gz", "kallsyms.txt.gz", "driver.tsv", VULNERABILITIES):
        (raw / name).unlink(missing_ok=True)
    with outputs.scratch("anatomy") as tmp:
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
                              cpu_model=kernel.cpu_model(variant, "tcg"),
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
        charged = memory_cgroup(*((share / n).read_text() if (share / n).exists() else ""
                                  for n in (CGROUP, CGROUP_CONTROLLERS)))
    (raw / "guest.json").write_text(json.dumps({"guest_kernel": kb.release, "kernel_variant": variant,
                                                "config_sha256": kb.config_sha256,
                                                **({"host_config_sha256": kb.host_config_sha256}
                                                   if kb.host_config_sha256 else {}),
                                                "kernel_args": list(kernel_args), "syscalls": syscalls,
                                                # where the loops were charged, and where the host's are
                                                "memory_cgroup": charged, "host_memory_cgroup": memory_cgroup(),
                                                # what the twin's kernel args and -cpu were taken from
                                                "host_vulnerabilities": mitigations(),
                                                "backends": backends, "pin": f"same CPU ({PIN_CPU})",
                                                "qemu": installed_qemu_source_version(),
                                                "qemu_cmdline": run.qemu_cmdline}, indent=1) + "\n")

