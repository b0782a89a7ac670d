"""The KVM probe (bench.measure.kvmprobe) and the guest's clock source (bench.measure.vm), without
booting anything: the probe boots what the run boots, with timeouts that grow with it, says whether
the kernel started, tries fallback CPU models, and is remembered for the machine; a wall-clock run on
a clock source that exits to the hypervisor is refused before measuring (issue 27 items 2-4)."""
import json
import subprocess
from pathlib import Path

import pytest

from bench.commands import mainjob
from bench.commands import vm as vm_command
from bench.errors import BenchError, UsageError
from bench.measure import accelerators, kvmprobe, vm

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- the clock source

@pytest.mark.parametrize("clocksource, refused", [("tsc", False), ("kvm-clock", False), ("hpet", True),
                                                  ("acpi_pm", True), ("", True)])
def test_a_wall_clock_run_is_refused_on_a_clock_source_that_exits(tmp_path, clocksource, refused):
    """The guest's command script reads the clock source (injected here: a file of our own), prints it for
    the harness and, for a measured wall-clock run, exits 2 before the command; the host says why."""
    source = tmp_path / "current_clocksource"
    if clocksource:
        source.write_text(clocksource + "\n")
    marker = tmp_path / "measured"
    script = vm._write_command(tmp_path, "n0", ["touch", str(marker)], REPO, refuse_clock=True,
                               clocksource_file=str(source))
    proc = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.stdout.splitlines()[0] == f"VMEXEC-CLOCKSOURCE n0 {clocksource or 'unknown'}"
    assert (proc.returncode, marker.exists()) == ((2, False) if refused else (0, True))
    why = vm.clocksource_refusal(clocksource, "wall")
    assert (why is not None) == refused
    if refused:
        assert "\n" not in why and why.startswith("refused before measuring") and "tsc or kvm-clock" in why


def test_icount_runs_are_not_refused_and_still_record_the_clock_source(tmp_path):
    source = tmp_path / "current_clocksource"
    source.write_text("hpet\n")
    script = vm._write_command(tmp_path, "n1", ["true"], REPO, clocksource_file=str(source))
    proc = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "VMEXEC-CLOCKSOURCE n1 hpet" in proc.stdout
    assert vm.clocksource_refusal("hpet", "icount") is None


def test_the_console_gives_the_clock_source_to_the_harness_not_to_the_output():
    lines = [b"boot\n", b"VMEXEC-BEGIN n2\n", b"VMEXEC-CLOCKSOURCE n2 kvm-clock\n", b"hello\n",
             b"VMEXEC-END n2 status=0\n"]
    console = vm._Console(iter(lines), "n2", None)
    console.join()
    assert console.clocksource == "kvm-clock" and console.output() == "hello"


def test_the_guest_records_its_clock_source_as_a_fact_not_a_tag():
    """The clock source a run measured on is the harness's fact (vmexec_clocksource, read in the guest
    itself), and --tag cannot name it."""
    from bench import results
    from bench.measure import environment
    assert "vmexec_clocksource" in environment.run_metadata()
    assert "clocksource" in results.RESERVED_TAGS and "qemu_cpu" in results.RESERVED_TAGS
    assert "kernel_variant" in results.RESERVED_TAGS


def test_a_failed_probe_says_whether_the_kernel_started():
    started = vm.GuestFailure("the guest did not start the command within 60 s (boot hang?) [kvm]",
                              "QEMU 7.2\n[    0.000000] Linux version 6.12.1-vmexec-kvm\n[    0.1] x\n[ 9.0] y\n")
    assert kvmprobe.failure(started).startswith("the kernel started and printed 3 lines: the guest did not")
    silent = vm.GuestFailure("QEMU exited (status 1) before the guest started the command [kvm]",
                             "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0\n")
    assert kvmprobe.failure(silent).startswith("the kernel did not start (it printed nothing): QEMU exited")
    assert "\n" not in kvmprobe.failure(started) + kvmprobe.failure(silent)


# --------------------------------------------------------------------------- fallback models, memory

@pytest.fixture
def fake_kvm(tmp_path, monkeypatch):
    """A machine whose /dev/kvm opens and whose probe boots are recorded, not made: `boots` says which
    -cpu models boot, `hangs` which hang."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(kvmprobe.PROBE_TTL_ENV, raising=False)
    monkeypatch.setattr(vm, "_kvm_usable", lambda: None)
    monkeypatch.setattr(kvmprobe, "_vendor", lambda: "AuthenticAMD")
    monkeypatch.setattr(kvmprobe, "_known_models", lambda: ("EPYC", "Opteron_G3", "qemu64"))
    monkeypatch.setattr(kvmprobe, "nested", lambda: False)
    monkeypatch.setattr(kvmprobe, "_answers", {})
    boots, hangs, tried = set(), set(), []

    def run_in_guest(command, *, cpu_model, loglevel, measures, **kw):
        tried.append((cpu_model, loglevel, measures, kw["cpus"], kw["memory_mb"], kw["kernel_args"]))
        if cpu_model in hangs:
            raise vm.GuestFailure("the guest did not start the command within 50 s (boot hang?)", "", hung=True)
        if cpu_model not in boots:
            raise vm.GuestFailure("QEMU exited (status 1) before the guest started the command", "")
        return vm.GuestRun(0, "", "kvm", "wall", 1.0, [], "", {}, "kvm-clock", cpu_model)
    monkeypatch.setattr(vm, "run_in_guest", run_in_guest)
    image = tmp_path / "bzImage"
    image.write_bytes(b"kernel")
    return image, boots, tried, hangs


def test_the_probe_falls_back_to_a_named_model_of_the_hosts_vendor(fake_kvm):
    image, boots, tried, _ = fake_kvm
    boots.add("Opteron_G3")
    answer = kvmprobe.probe(image, "kvm", cpus=1, memory_mb=512, kernel_args=("quiet",))
    assert answer.why_not is None and answer.cpu_model == "Opteron_G3"
    # -cpu host first, then the vendor's models newest first; each boots what the run boots, verbosely
    assert [t[0] for t in tried] == ["host", "EPYC", "Opteron_G3"]
    assert all(t[1:] == (kvmprobe.PROBE_LOGLEVEL, True, 1, 512, ("quiet",)) for t in tried)
    assert kvmprobe.cpu_model_for(image, "kvm", 1, 512, ("quiet",)) == "Opteron_G3"
    assert kvmprobe.cpu_model_for(image, "tcg", 1, 512, ("quiet",)) == "max"
    d = mainjob.decide(probe=lambda: answer)
    assert d.clock == "kvm" and d.cpu_model == "Opteron_G3" and "-cpu Opteron_G3" in d.line


def test_a_probe_that_no_model_boots_says_each_and_how_long_it_waited(fake_kvm):
    image, _, tried, _ = fake_kvm
    answer = kvmprobe.probe(image, "kvm")
    assert [t[0] for t in tried] == ["host", "EPYC", "Opteron_G3"]
    assert answer.why_not.startswith("a probe boot failed (2 vCPUs, 2048 MiB, timeouts 50 s")
    assert "-cpu host: the kernel did not start" in answer.why_not and "-cpu EPYC:" in answer.why_not
    assert kvmprobe.cpu_model_for(image, "kvm") == "host"
    d = mainjob.decide(probe=lambda: answer)
    assert d.clock == "icount" and "\n" not in d.line


def test_the_probe_is_remembered_for_the_machine_until_its_ttl(fake_kvm, monkeypatch):
    image, boots, tried, _ = fake_kvm
    boots.add("host")
    first = kvmprobe.probe(image, "kvm")
    assert first.why_not is None and not first.cached and len(tried) == 1
    monkeypatch.setattr(kvmprobe, "_answers", {})      # another `bench vm` command: a new process
    again = kvmprobe.probe(image, "kvm")
    assert again.why_not is None and again.cached and len(tried) == 1
    assert "remembered from" in mainjob.decide(probe=lambda: again).line
    # another QEMU (or kernel release, or /dev/kvm) is another machine: probed again
    monkeypatch.setattr(kvmprobe, "_answers", {})
    monkeypatch.setattr(vm, "qemu_version", lambda: "QEMU emulator version 99")
    kvmprobe.probe(image, "kvm")
    assert len(tried) == 2
    # past its TTL the answer is probed again
    monkeypatch.setattr(kvmprobe, "_answers", {})
    monkeypatch.setenv(kvmprobe.PROBE_TTL_ENV, "0")
    kvmprobe.probe(image, "kvm")
    assert len(tried) == 3


def test_a_hang_ends_the_search_for_a_model_that_boots(fake_kvm):
    """A hung boot is not a refused model (PVM hangs on every one, 150 s each): no other is tried."""
    image, boots, tried, hangs = fake_kvm
    boots.add("EPYC")
    hangs.add("host")
    answer = kvmprobe.probe(image, "kvm")
    assert [t[0] for t in tried] == ["host"] and "boot hang?" in answer.why_not


def test_tcg_needs_no_probe_and_an_unusable_dev_kvm_no_boot(fake_kvm, monkeypatch):
    image, _, tried, _ = fake_kvm
    assert kvmprobe.probe(image, "tcg") == kvmprobe.Probe(None, "max", 0.0)
    monkeypatch.setattr(vm, "_kvm_usable", lambda: "/dev/kvm: Permission denied")
    assert kvmprobe.probe(image, "kvm").why_not == "/dev/kvm: Permission denied" and not tried


def test_probe_timeout_option_sets_the_variable_the_steps_inherit(monkeypatch):
    from tests.conftest import run_bench

    monkeypatch.setenv(kvmprobe.PROBE_TIMEOUT_ENV, "5")     # put back after the test
    kvmprobe.set_probe_timeout(90.0)
    assert kvmprobe.probe_timeout(2, 2048) == 90
    proc = run_bench("main", "--dry-run", "--clock", "icount", "--probe-timeout", "-1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--probe-timeout must be" in proc.stderr
