"""What the machine is: recorded with every run, so a number is never without its context."""
from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]
#: Where an installed wheel keeps the repository's files the commands need (setup.py copies them there).
PACKAGE_DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
#: Those files, by their path in the repository: what setup.py copies into bench/data/ (same layout).
ASSETS = ("kernel/patches/*", "kernel/*.fragment", "kernel/mitigations.json", "kernel/guest-init.sh",
          "anatomy/vmexec_anatomy.c", "rfc/*.c", "rfc/*.h", "tracee/*.h", "tracers/process_vm_exec.h")
VULNERABILITIES = pathlib.Path("/sys/devices/system/cpu/vulnerabilities")


def in_checkout() -> bool:
    """True when running from a clone (or an editable install of one): REPO holds the project's sources."""
    return (REPO / "pyproject.toml").is_file() and (REPO / "kernel" / "patches" / "series").is_file()


def asset(relative: str) -> pathlib.Path:
    """The repository file `relative` (e.g. "kernel/patches/series") the commands need: the clone's own
    when running from one, else the copy an installed wheel holds in bench/data/ (the same bytes, so the
    kernel cache keys do not depend on how the package was installed)."""
    return (REPO if in_checkout() else PACKAGE_DATA) / relative


def _read(path: str | pathlib.Path) -> str:
    try:
        return pathlib.Path(path).read_text(errors="replace").strip()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_identity(cpuinfo: str | None = None) -> dict[str, str]:
    """The first CPU's vendor_id, cpu family, model and stepping, those /proc/cpuinfo (or cpuinfo) says."""
    wanted, out = ("vendor_id", "cpu family", "model", "stepping"), {}
    for line in (_read("/proc/cpuinfo") if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if not key and out:
            break       # the first processor's block ends
        if key in wanted and key not in out:
            out[key] = value
    return out


def mitigations() -> dict[str, str]:
    if not VULNERABILITIES.is_dir():
        return {}
    return {p.name: _read(p) for p in sorted(VULNERABILITIES.iterdir())}


#: Where a process's memory is charged (memory_cgroup()): a child cgroup, whose kernel charges every
#: accounted allocation (struct file, sigqueue, ...) to it, or the root, whose charges are skipped (issue 26:
#: the AMD host's files part ran ~300 ns slower in its child memory cgroup than in the root).
MEMORY_CGROUP_ROOT = "root"


def memory_cgroup(proc_cgroup: str | None = None, v2_controllers: str | None = None) -> str:
    """The memory cgroup this process is in: "root", "child (cgroup v1)", "child (cgroup v2)", or "" where no
    memory controller is mounted.  proc_cgroup: /proc/self/cgroup's text; v2_controllers: the cgroup2 root's
    cgroup.controllers (defaults: this process's)."""
    text = _read("/proc/self/cgroup") if proc_cgroup is None else proc_cgroup
    unified = ""
    for line in text.splitlines():
        ident, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            return MEMORY_CGROUP_ROOT if path.strip() == "/" else "child (cgroup v1)"
        if ident == "0" and controllers == "":
            unified = path.strip()
    if unified:
        if v2_controllers is None:
            v2_controllers = _read("/sys/fs/cgroup/cgroup.controllers")
        if "memory" in v2_controllers.split():
            return MEMORY_CGROUP_ROOT if unified == "/" else "child (cgroup v2)"
    return ""


def memory_cgroup_arg(placement: str | None = None) -> tuple[str, ...]:
    """The twin guest's kernel argument that has kernel/guest-init.sh run the workload where the host runs it:
    vmexec_memcg=v1 or v2 in a child memory cgroup of that version, none in the root (placement: memory_cgroup()'s)."""
    placement = memory_cgroup() if placement is None else placement
    version = {"child (cgroup v1)": "v1", "child (cgroup v2)": "v2"}.get(placement)
    return (f"vmexec_memcg={version}",) if version else ()


#: The file `bench vm` leaves in the guest's writable share (the kernel command line's vmexec_out) with
#: what only the host knows: how it started the guest.  Read from the guest's own boot, never from an
#: option: no label can make a run claim a guest.
GUEST_FACTS = ".vmexec-guest.json"
#: The guest's kernel command line arguments (bench.measure.vm.qemu_command) that say it is ours: its share and its nonce.
GUEST_CMDLINE = ("vmexec_out=", "vmexec_nonce=")
#: Those facts, and the value each has where a run finds none.
GUEST_KEYS = {"accelerator": "", "timing": "wall", "qemu": "", "host_cpu_model": "", "host_kernel": "",
              "kernel_key": "", "kernel_source": "", "vcpu_host_cpus": "", "kernel_variant": "",
              "kernel_config": "", "qemu_cpu": "", "kernel_args": ""}


def guest() -> dict[str, str] | None:
    """How `bench vm` started the QEMU guest this runs in (GUEST_KEYS), or None outside the project's
    guest (no vmexec_nonce on the kernel command line)."""
    words = _read("/proc/cmdline").split()
    out, nonce = (next((w.removeprefix(arg) for w in words if w.startswith(arg)), "") for arg in GUEST_CMDLINE)
    if not out or not nonce:
        return None
    try:
        given = json.loads(pathlib.Path(out, GUEST_FACTS).read_text())
    except (OSError, ValueError):
        given = {}
    given = given if isinstance(given, dict) else {}
    return {k: str(given.get(k) or default) for k, default in GUEST_KEYS.items()}


def accelerator() -> str:
    """How this kernel's CPU is provided: bare metal, or which hypervisor; in the project's guest, the
    accelerator `bench vm` started it with (kvm or tcg).
    """
    started = guest()
    if started and started["accelerator"]:
        return started["accelerator"]
    model = cpu_model()
    if "QEMU TCG" in model or "TCG" in _read("/sys/firmware/qemu_fw_cfg/rev"):
        return "tcg"
    flags = next((line for line in _read("/proc/cpuinfo").splitlines() if line.startswith("flags")), "")
    if " hypervisor" not in flags:
        return "bare-metal"
    try:    # --vm: the hypervisor, even from inside a container running on it
        virt = subprocess.run(["systemd-detect-virt", "--vm"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        virt = ""
    vendor = _read("/sys/class/dmi/id/sys_vendor") or _read("/sys/hypervisor/type")
    return f"virtualized ({virt if virt not in ('', 'none') else vendor or 'unknown hypervisor'})"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def compiler() -> str:
    """The compiler that built the C driver, and so every timed loop (the driver's own answer)."""
    from tracers.driver import constants     # the driver is built before anything is measured
    return str(constants().get("compiler", "unknown"))


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def clocksource() -> str:
    return _read("/sys/devices/system/clocksource/clocksource0/current_clocksource") or "unknown"


def where_facts() -> dict[str, str]:
    """vmexec_vm and the guest's facts (bench.results.METADATA), detected: written by the harness alone."""
    started = guest()
    if started is None:
        return {"vmexec_vm": "0", "vmexec_timing": "wall"}
    # pyperf refuses an empty value: a fact the host did not give (no --pin-vcpus) is left out.
    return {"vmexec_vm": "1", **{f"vmexec_{k}": v for k, v in started.items() if k != "accelerator" and v}}


def run_metadata() -> dict[str, str | int]:
    """Run-wide metadata (pyperf adds python, platform, hostname, cpu_count ...)."""
    uname = os.uname()
    charged = memory_cgroup()
    return {
        "vmexec_kernel": uname.release,
        "vmexec_kernel_version": uname.version,
        "vmexec_cpu_model": cpu_model(),
        "vmexec_cpus": len(usable_cpus()),
        "vmexec_accelerator": accelerator(),
        "vmexec_mitigations": json.dumps(mitigations(), sort_keys=True),
        "vmexec_commit": git_commit(),
        "vmexec_compiler": compiler(),
        "vmexec_clocksource": clocksource(),
        **({"vmexec_memory_cgroup": charged} if charged else {}),
        **where_facts(),
    }
