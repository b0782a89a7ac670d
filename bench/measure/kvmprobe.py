"""Whether KVM boots a guest here, and with which CPU model: a bounded probe boot of the kernel the run
boots, remembered for the machine (issue 27 item 2, issue 29 item 3).

The probe boots the run's kernel, vCPUs, memory and command line under KVM and runs `true` (refusing, as
a measured run does, a clock source a wall-clock run cannot measure on).  `-cpu host` first, then named
models of the host's vendor (bench.measure.accelerators.FALLBACK_CPUS).  Its timeouts grow with what it
boots and with nesting; VMEXEC_PROBE_TIMEOUT sets them.  The answer is kept in the kernel cache
(kvm-probe.json) for VMEXEC_PROBE_TTL seconds, keyed by this machine's kernel release, QEMU, /dev/kvm
and what was booted, so that every `vm` command does not boot it again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench import outputs
from bench.errors import BenchError, UsageError
from bench.measure import accelerators, kernel, vm

PROBE_TIMEOUT_ENV = "VMEXEC_PROBE_TIMEOUT"
PROBE_TTL_ENV = "VMEXEC_PROBE_TTL"
#: How long a probe's answer holds (seconds): a kernel, QEMU or /dev/kvm change is a new key anyway.
PROBE_TTL = 6 * 3600
CACHE_NAME = "kvm-probe.json"
#: The probe's console loglevel: every kernel message, so that a failure shows how far the boot got.
PROBE_LOGLEVEL = 7
#: The first line a starting kernel prints (at any loglevel it prints, loglevel 7 included).
KERNEL_STARTED = "Linux version "


@dataclasses.dataclass(frozen=True)
class Probe:
    why_not: str | None     # None: the guest booted and ran a command
    cpu_model: str          # the -cpu model that booted (the accelerator's own if none did)
    seconds: float          # how long the probe took when it was made
    cached: str = ""        # "" if probed now, else when it was (UTC, from CACHE_NAME)


def nested() -> bool:
    """True if this machine is itself a guest (the CPU's hypervisor flag): KVM in it is nested, slower."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " hypervisor" in line for line in f)
    except OSError:
        return False


def probe_timeout(cpus: int, memory_mb: int, is_nested: bool | None = None) -> float:
    """Seconds the probe may take to boot (and again to run its command): VMEXEC_PROBE_TIMEOUT, else 20 s
    plus 10 s a vCPU and 5 s a GiB, three times that when nested (a nested 2-vCPU guest took 47 s)."""
    given = os.environ.get(PROBE_TIMEOUT_ENV)
    if given:
        try:
            seconds = float(given)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds < float("inf"):
            raise UsageError(f"{PROBE_TIMEOUT_ENV}={given!r}: not a positive number of seconds")
        return seconds
    base = 20 + 10 * cpus + 5 * memory_mb / 1024
    return round(base * (3 if (nested() if is_nested is None else is_nested) else 1))


def set_probe_timeout(seconds: float | None) -> None:
    """--probe-timeout S: VMEXEC_PROBE_TIMEOUT for this process and the commands it starts."""
    if seconds is None:
        return
    if not 0 < seconds < float("inf"):
        raise UsageError(f"--probe-timeout must be a positive number of seconds, not {seconds:g}")
    os.environ[PROBE_TIMEOUT_ENV] = str(seconds)


def _vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("vendor_id")), "")
    except OSError:
        return ""


def _known_models() -> tuple[str, ...] | None:
    """The -cpu names this QEMU knows (`-cpu help`), or None if it does not say."""
    try:
        out = subprocess.run([vm.QEMU, "-cpu", "help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = tuple(line.split()[1] for line in out.splitlines() if line.startswith("x86 ") and len(line.split()) > 1)
    return names or None


def _kvm_identity() -> list:
    try:
        st = os.stat("/dev/kvm")
    except OSError as e:
        return [e.strerror]
    return [st.st_rdev, st.st_ino, st.st_mode, st.st_uid, st.st_gid]


def machine_key(bzimage: Path, cpus: int, memory_mb: int, kernel_args: tuple[str, ...]) -> str:
    """What a probe's answer holds for: this machine (kernel release, QEMU, /dev/kvm) and what it booted."""
    try:
        st = Path(bzimage).stat()
        image = [str(bzimage), st.st_size, st.st_mtime_ns]
    except OSError:
        image = [str(bzimage)]
    parts = [os.uname().release, vm.qemu_version(), _kvm_identity(), image, cpus, memory_mb, list(kernel_args)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _cache_file() -> Path:
    return kernel.cache_root() / CACHE_NAME


def _ttl() -> float:
    try:
        return float(os.environ.get(PROBE_TTL_ENV, PROBE_TTL))
    except ValueError:
        raise UsageError(f"{PROBE_TTL_ENV}={os.environ[PROBE_TTL_ENV]!r}: not a number of seconds") from None


def _read_cache() -> dict:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remembered(key: str) -> Probe | None:
    """The probe's answer for key if one was made less than the TTL ago."""
    entry = _read_cache().get(key)
    try:
        if entry and 0 <= time.time() - float(entry["time"]) < _ttl():
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(entry["time"])))
            return Probe(entry["why_not"], str(entry["cpu_model"]), float(entry["seconds"]), when)
    except (KeyError, TypeError, ValueError):
        pass
    return None


def _remember(key: str, probe: Probe) -> None:
    """Adds the answer to the cache file (atomically); a read-only cache (a guest's root) keeps nothing."""
    data = {k: v for k, v in _read_cache().items()
            if isinstance(v, dict) and time.time() - float(v.get("time", 0)) < max(_ttl(), PROBE_TTL)}
    data[key] = {"why_not": probe.why_not, "cpu_model": probe.cpu_model, "seconds": probe.seconds,
                 "time": time.time()}
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".kvm-probe-", delete=False) as f:
            json.dump(data, f, indent=1)
        os.replace(f.name, path)
    except OSError:
        try:
            os.unlink(f.name)
        except (OSError, UnboundLocalError):
            pass


def failure(error: Exception) -> str:
    """One line: why a probe boot failed, saying whether the kernel started."""
    console = getattr(error, "console", "")
    if isinstance(error, UsageError):
        return str(error)
    if KERNEL_STARTED in console:
        lines = [line for line in console.splitlines() if line.strip()]
        started = next(i for i, line in enumerate(lines) if KERNEL_STARTED in line)
        what = f"the kernel started and printed {len(lines) - started} lines"
    else:
        what = "the kernel did not start (it printed nothing)"
    return f"{what}: {' '.join(str(error).split())[:400]}"


_answers: dict[str, Probe] = {}


def probe(bzimage: Path, accel: str = "kvm", *, cpus: int = vm.DEFAULT_VCPUS, memory_mb: int = 2048,
          kernel_args: tuple[str, ...] = ()) -> Probe:
    """Whether a guest boots under accel here (only KVM needs a probe), and with which -cpu."""
    default = accelerators.ACCELERATORS[accel].cpu
    if not accelerators.ACCELERATORS[accel].needs_probe:
        return Probe(None, default, 0.0)
    why_not = vm._kvm_usable()
    if why_not:
        return Probe(why_not, default, 0.0)
    key = machine_key(bzimage, cpus, memory_mb, tuple(kernel_args))
    if key not in _answers:
        _answers[key] = remembered(key) or _probe_now(bzimage, accel, cpus, memory_mb, tuple(kernel_args), key)
    return _answers[key]


def _probe_now(bzimage, accel, cpus, memory_mb, kernel_args, key) -> Probe:
    """Boots each model in turn until one runs `true`; a hang ends the search (see _boots)."""
    start = time.monotonic()
    timeout = probe_timeout(cpus, memory_mb)
    failures, answer = [], None
    for model in accelerators.cpu_models(accel, _vendor(), _known_models()):
        why_not, hung = _boots(bzimage, accel, model, cpus, memory_mb, kernel_args, timeout)
        if why_not is None:
            answer = Probe(None, model, round(time.monotonic() - start, 1))
            break
        failures.append(f"-cpu {model}: {why_not}")
        if hung:    # a hang is not a refused model: another costs one more timeout (PVM: every model hangs)
            break
    if answer is None:
        answer = Probe(f"a probe boot failed ({cpus} vCPUs, {memory_mb} MiB, timeouts {timeout:g} s; "
                       f"{PROBE_TIMEOUT_ENV} sets them): " + "; ".join(failures),
                       accelerators.ACCELERATORS[accel].cpu, round(time.monotonic() - start, 1))
    _remember(key, answer)
    return answer


def _boots(bzimage, accel, model, cpus, memory_mb, kernel_args, timeout) -> tuple[str | None, bool]:
    """(None, False) if the guest ran `true` with -cpu model, else (why not, whether it hung)."""
    with outputs.scratch(f"{accel}-probe") as out:     # a SIGKILLed probe's tree goes at the next start
        try:
            vm.run_in_guest(["true"], kernel=bzimage, accel=accel, output_dir=out, cpus=cpus,
                            memory_mb=memory_mb, kernel_args=kernel_args, boot_timeout=timeout,
                            run_timeout=timeout, measures=True, cpu_model=model, loglevel=PROBE_LOGLEVEL).check()
        except (BenchError, UsageError) as e:
            return failure(e), getattr(e, "hung", False)
    return None, False


def cpu_model_for(bzimage: Path, accel: str, cpus: int = vm.DEFAULT_VCPUS, memory_mb: int = 2048,
                  kernel_args: tuple[str, ...] = ()) -> str:
    """The -cpu a run of bzimage under accel takes: under KVM the model a probe found to boot, if one did."""
    if accelerators.ACCELERATORS[accel].needs_probe:
        key = machine_key(bzimage, cpus, memory_mb, tuple(kernel_args))
        known = _answers.get(key) or remembered(key)
        if known and known.why_not is None:
            return known.cpu_model
    return accelerators.ACCELERATORS[accel].cpu


def choose_accel(requested: str, timing: str, bzimage: Path, *, cpus: int = vm.DEFAULT_VCPUS, memory_mb: int = 2048,
                 kernel_args: tuple[str, ...] = ()) -> tuple[str, str]:
    """(accelerator, why), by the one rule for "auto" (bench.measure.accelerators.choose)."""
    return accelerators.choose(requested, timing, lambda accel: probe(
        bzimage, accel, cpus=cpus, memory_mb=memory_mb, kernel_args=kernel_args).why_not)
