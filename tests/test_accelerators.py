"""The accelerator table: QEMU arguments, the rule for "auto", and how far each clock is trusted."""
import pytest

from bench.measure import accelerators as X


def test_auto_takes_the_first_usable_accelerator_that_offers_the_timing():
    probed = []

    def probe(name):
        probed.append(name)
        return "probe boot failed" if name == "kvm" else None

    assert X.choose("auto", "icount", probe)[0] == "tcg" and probed == []      # KVM offers no icount
    name, why = X.choose("auto", "wall", probe)
    assert name == "tcg" and probed == ["kvm"] and "not KVM: probe boot failed" in why
    assert X.choose("auto", "wall", lambda name: None)[0] == "kvm"
    assert X.choose("tcg", "wall", probe)[0] == "tcg"


@pytest.mark.parametrize("accel, timing, message", [
    ("kvm", "icount", "icount timing needs TCG"),
    ("hvf", "wall", "accel must be auto or one of kvm, tcg"),
    ("auto", "cycles", "timing must be one of wall, icount"),
])
def test_impossible_pairs_say_why(accel, timing, message):
    assert message in X.check(accel, timing)


def test_qemu_arguments_come_from_the_table():
    assert X.qemu_args("kvm", "wall") == ["-accel", "kvm", "-cpu", "host"]
    assert X.qemu_args("tcg", "icount") == ["-accel", "tcg", "-cpu", "max", "-icount", "shift=0"]


@pytest.mark.parametrize("accel, timing, vm, expected", [
    ("bare-metal", "wall", False, "hardware"),
    ("virtualized (kvm)", "wall", False, "kvm"),
    ("kvm", "wall", True, "kvm"),
    ("tcg", "icount", True, "icount"),
    ("tcg", "wall", True, "emulator"),
    ("tcg", "wall", False, "emulator"),
])
def test_clocks_rank_hardware_first(accel, timing, vm, expected):
    assert X.clock(accel, timing, vm) == expected
    assert X.CLOCKS.index("hardware") < X.CLOCKS.index("kvm") < X.CLOCKS.index("icount")


def test_kvm_tries_the_host_cpu_then_named_models_of_the_hosts_vendor_that_qemu_knows():
    assert X.qemu_args("kvm", "wall", "EPYC") == ["-accel", "kvm", "-cpu", "EPYC"]
    assert X.cpu_models("kvm", "GenuineIntel") == ("host", *X.FALLBACK_CPUS["GenuineIntel"])
    assert X.cpu_models("kvm", "AuthenticAMD", known=("EPYC",)) == ("host", "EPYC")
    assert X.cpu_models("kvm", "SomeOtherVendor") == ("host",)
    assert X.cpu_models("tcg", "GenuineIntel") == ("max",)      # TCG needs no probe and no fallback
