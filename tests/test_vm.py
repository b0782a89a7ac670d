"""The patched kernel boots in QEMU and process_vm_exec works there (slow: marked vm).

The guest sees the host's root, so it runs the package's own driver binary.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyperf
import pytest

from bench.measure import environment
from bench.measure import kernel
from bench.measure import vm
from bench.errors import BenchError
from tracers.driver import VMEXEC, constants

REPO = Path(__file__).resolve().parent.parent
GCC = ["gcc", "-O2", "-Wall", "-Wextra", "-fno-stack-protector"]

pytestmark = pytest.mark.vm


@pytest.fixture(scope="session")
def share(tmp_path_factory):
    """The guest's writable directory (mounted at the same path inside)."""
    return tmp_path_factory.mktemp("vm-share")


@pytest.fixture(scope="session")
def vmexec_bin():
    return VMEXEC


@pytest.fixture(scope="session")
def selftest_bin(share):
    out = share / "semantics_check"
    subprocess.run([*GCC, "-pthread", "-o", str(out),
                    str(REPO / "kernel" / "selftest" / "semantics_check.c")], check=True)
    return out


@pytest.fixture(scope="session")
def bzimage():
    return kernel.build(log=lambda *_: None).bzimage


def guest(command, bzimage, share, **kw):
    kw.setdefault("accel", "tcg")
    return vm.run_in_guest([str(c) for c in command], kernel=bzimage, output_dir=share,
                           boot_timeout=kw.pop("boot_timeout", 180), **kw)


def last_json(output: str) -> dict:
    return json.loads([line for line in output.splitlines() if line.startswith("{")][-1])


def qemu_processes(share) -> list[str]:
    """Command lines of live QEMU processes sharing this directory (this test's guests only)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"qemu-system-x86_64") and str(share).encode() in b" ".join(args):
            found.append(b" ".join(args).decode(errors="replace"))
    return found


def test_cached_build_is_instant(bzimage):
    """The fixture built the kernel (or found it cached): the same inputs again come from the cache."""
    kb = kernel.build(log=lambda *_: None)
    assert kb.cached and kb.seconds < 5 and kb.bzimage == bzimage
    assert kb.release.endswith("-vmexec")


@pytest.mark.parametrize("timing", ["wall", "icount"])
def test_process_vm_exec_runs_in_guest(timing, bzimage, share, vmexec_bin):
    run = guest([vmexec_bin, "run", "process-vm-exec", "-n", "20000"], bzimage, share, timing=timing)
    assert run.exit_status == 0, run.console[-3000:]
    report = last_json(run.output)
    assert report["ok"] and report["calls"] == report["matched"] == 20000
    assert run.boot_seconds > 0 and run.timing == timing


def test_guest_kernel_exposes_the_syscall(bzimage, share):
    run = guest(["sh", "-c", "uname -r; grep -c ' __x64_sys_process_vm_exec$' /proc/kallsyms"],
                bzimage, share)
    assert run.exit_status == 0
    release, count = run.output.split()[-2:]
    assert release.endswith("-vmexec") and count == "1"


def test_kernel_semantics_selftest(bzimage, share, selftest_bin):
    """Errors, SIGSYS trap, faults, signals in and outside the mask, FS base, rseq."""
    run = guest([selftest_bin], bzimage, share)
    assert run.exit_status == 0 and run.output.rstrip().endswith("0 failed"), run.output
    assert "FAIL" not in run.output


@pytest.mark.parametrize("timing", ["wall", "icount"])
def test_guest_clock_is_not_jiffies(timing, bzimage, share):
    """refined-jiffies (no TSC calibration, no HPET) would quantise every timing to 4 ms."""
    run = guest(["cat", "/sys/devices/system/clocksource/clocksource0/current_clocksource"],
                bzimage, share, timing=timing)
    assert run.exit_status == 0 and run.output.strip() and "jiffies" not in run.output


def test_wrong_injected_value_is_detected_in_guest(bzimage, share, vmexec_bin):
    run = guest([vmexec_bin, "run", "process-vm-exec", "-n", "1000", "-i", "556", "-e", "555"],
                bzimage, share)
    assert run.exit_status != 0
    report = last_json(run.output)
    assert report["ok"] is False and report["matched"] == 0


def test_host_reports_unavailable(vmexec_bin):
    proc = subprocess.run([str(vmexec_bin), "run", "process-vm-exec", "-n", "10"],
                          capture_output=True, text=True, timeout=60)
    if "-vmexec" in os.uname().release:
        pytest.skip("the host itself runs the patched kernel")
    assert proc.returncode == constants()["exit"]["unavailable"]
    report = last_json(proc.stdout)
    assert report["unavailable"] and report["error"].startswith("ENOSYS")


def test_failing_command_gives_bench_error_with_console_tail(bzimage, share):
    run = guest(["sh", "-c", "echo about-to-fail; exit 7"], bzimage, share)
    assert run.exit_status == 7 and "about-to-fail" in run.output
    with pytest.raises(BenchError, match="status 7.*about-to-fail"):
        run.check()
    assert not qemu_processes(share)


def test_timeout_gives_bench_error_and_leaves_no_qemu(bzimage, share):
    with pytest.raises(BenchError, match="did not finish within 3 s.*console tail:.*VMEXEC-BEGIN"):
        guest(["sleep", "600"], bzimage, share, run_timeout=3)
    assert not qemu_processes(share)


def test_boot_failure_is_bounded_and_names_the_reason(bzimage, tmp_path):
    not_a_kernel = tmp_path / "bzImage"
    not_a_kernel.write_bytes(b"\0" * 4096)
    with pytest.raises(BenchError, match="QEMU exited|did not start"):
        vm.run_in_guest(["true"], kernel=not_a_kernel, accel="tcg", output_dir=tmp_path / "out",
                        boot_timeout=30)
    assert not qemu_processes(tmp_path / "out")


def test_vm_shell_cli_returns_the_guest_status(bzimage):
    proc = subprocess.run([sys.executable, "-m", "bench", "vm", "shell", "--accel", "tcg", "--",
                           "sh", "-c", "exit 5"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 5, proc.stderr


def test_a_kernel_arg_reaches_the_guests_command_line(bzimage):
    proc = subprocess.run([sys.executable, "-m", "bench", "vm", "shell", "--accel", "tcg", "--kernel-arg",
                           "vmexec_test_arg=7", "--", "sh", "-c", "grep -qw vmexec_test_arg=7 /proc/cmdline"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr


def test_vm_run_measures_both_backends_in_one_guest_run(bzimage, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "vm", "run", "--accel", "tcg", "--timing", "icount",
                           "--kernel-arg", "vmexec_test_arg=1", "--results", str(tmp_path), "--",
                           "--backends", "process-vm-exec,ptrace-sysemu",
                           "--pin", "same", "--processes", "1", "--values", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    [result] = tmp_path.glob("vm-tcg-icount-*.json")
    suite = pyperf.BenchmarkSuite.load(str(result))
    assert set(suite.get_benchmark_names()) == {"process-vm-exec:pin=same", "ptrace-sysemu:pin=same"}
    meta = suite.get_benchmarks()[0].get_metadata()
    # The guest's facts, recorded by the harness (never a tag: issue 28).
    assert meta["vmexec_kernel"].endswith("-vmexec") and meta["vmexec_timing"] == "icount"
    assert meta["vmexec_vm"] == "1" and meta["vmexec_accelerator"] == "tcg"
    assert meta["vmexec_kernel_args"] == "vmexec_test_arg=1"
    assert not [k for k in meta if k.startswith("vmexec_tag_")]
    assert json.loads(meta["vmexec_failed"]) == {}
    # What the guest cannot see of its machine, recorded by the host (a baseline is judged on it).
    assert meta["vmexec_qemu"] == vm.qemu_version() and meta["vmexec_qemu"].startswith("QEMU emulator")
    assert meta["vmexec_host_cpu_model"] == environment.cpu_model()
    assert meta["vmexec_compiler"] == constants()["compiler"]
    assert meta["vmexec_kernel_source"] == f"linux-source-6.12 {kernel.source_package_version()}"


def test_a_compiler_update_is_a_new_kernel_build(monkeypatch):
    before = kernel.cache_key("bench")
    monkeypatch.setattr(kernel, "compiler_version", lambda: "gcc (Debian 12.2.0-99) 12.2.1")
    assert kernel.cache_key("bench") != before


def test_vm_rfc_runs_both_rfc_programs(bzimage, tmp_path):
    """From a cache without the programs, as on a fresh machine: the guest, which sees the cache read-only,
    could not build them (a cold ./run.sh failed so at its RFC step)."""
    from bench.measure import rfc
    shutil.rmtree(rfc.programs_dir(), ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "bench", "vm", "rfc", "--accel", "tcg", "--results", str(tmp_path),
                           "--", "--seconds", "1"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [result] = tmp_path.glob("rfc-vm-tcg-wall-*.json")
    record = json.loads(result.read_text())
    assert record["kind"] == "rfc-replica" and record["kernel"].endswith("-vmexec")
    assert all(p["available"] and p["iterations"] > 0 for p in record["programs"])


def test_vcpu_threads_are_pinned_to_their_own_host_cpus(bzimage, share):
    """--pin-vcpus under TCG wall time (multi-threaded TCG: one host thread per vCPU, as under KVM)."""
    cpus = vm.host_cpus_for(2)
    run = guest(["true"], bzimage, share, timing="wall", cpus=2, pin_vcpus=cpus)
    assert run.exit_status == 0
    assert sorted(run.vcpu_pins) == [0, 1]
    assert [cpu for _, cpu in (run.vcpu_pins[0], run.vcpu_pins[1])] == list(cpus)
    assert run.vcpu_pins[0][0] != run.vcpu_pins[1][0]
    assert any(a.startswith("unix:") for a in run.qemu_cmdline if "qmp" in a)
    assert not qemu_processes(share)


def test_kvm_probe_is_bounded_and_leaves_no_qemu(bzimage, monkeypatch):
    """Where KVM boots the probe passes; here (/dev/kvm is PVM) it fails with one line, and either way
    no QEMU is left behind (the main job falls back to TCG+icount on that line)."""
    from bench.measure import kvmprobe

    why = vm._kvm_usable()
    if why:
        pytest.skip(why)
    monkeypatch.setattr(kvmprobe, "_answers", {})
    monkeypatch.setenv(kvmprobe.PROBE_TTL_ENV, "0")      # probe now, not a remembered answer
    why = kvmprobe.probe(bzimage, "kvm").why_not
    assert why is None or (why.startswith("a probe boot failed") and "\n" not in why)
    assert not [p for p in qemu_processes("vmexec-kvm-probe-") if "kvm" in p]
