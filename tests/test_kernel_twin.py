"""The twin kernel (variant "twin"): built from the running host's own configuration, so the path
lengths that explain the host's times are counted on the kernel that has them (issue 26)."""
import gzip
import json
import subprocess
import sys

import pytest

from bench.errors import BenchError
from bench.measure import environment, kernel, vm

HOST = "CONFIG_AUDITSYSCALL=y\nCONFIG_HZ=250\n# CONFIG_KVM_AMD is not set\nCONFIG_IA32_EMULATION=y\n"


def test_the_twin_reads_the_configuration_given_plain_or_compressed(tmp_path, monkeypatch):
    plain, packed = tmp_path / "config", tmp_path / "config.gz"
    plain.write_text(HOST)
    packed.write_bytes(gzip.compress(HOST.encode()))
    for path in (plain, packed):
        monkeypatch.setenv("VMEXEC_TWIN_CONFIG", str(path))
        hc = kernel.host_config()
        assert hc.text == HOST and hc.origin == str(path) and len(hc.sha256) == 64


@pytest.mark.parametrize("content", [b"", b"not a config\n", b"\x1f\x8b garbage"])
def test_a_configuration_that_is_none_is_one_clear_error(tmp_path, monkeypatch, content):
    bad = tmp_path / ("bad.gz" if content.startswith(b"\x1f") else "bad")
    bad.write_bytes(content)
    monkeypatch.setenv("VMEXEC_TWIN_CONFIG", str(bad))
    with pytest.raises(BenchError, match="VMEXEC_TWIN_CONFIG|not a kernel configuration"):
        kernel.host_config()


def test_a_missing_configuration_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("VMEXEC_TWIN_CONFIG", str(tmp_path / "absent"))
    with pytest.raises(BenchError, match="absent"):
        kernel.host_config()


def test_the_twin_key_follows_the_host_configuration_and_the_benchmark_key_does_not(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text(HOST)
    b.write_text(HOST.replace("250", "1000"))
    keys = {}
    for path in (a, b):
        monkeypatch.setenv("VMEXEC_TWIN_CONFIG", str(path))
        keys[path.name] = (kernel.cache_key("twin"), kernel.cache_key("bench"))
    assert keys["a"][0] != keys["b"][0]
    assert keys["a"][1] == keys["b"][1]


def test_what_does_not_carry_over_is_listed_with_why():
    final = "CONFIG_AUDITSYSCALL=y\nCONFIG_HZ=100\n# CONFIG_IA32_EMULATION is not set\nCONFIG_PROCESS_VM_EXEC=y\n"
    host = HOST + "CONFIG_ONLY_IN_6_18=y\nCONFIG_GCC_VERSION=150300\n"
    rows = {r["option"]: r for r in kernel.config_differences(host, final + "CONFIG_GCC_VERSION=120200\n",
                                                                 {"CONFIG_PROCESS_VM_EXEC": "y"})}
    assert set(rows) == {"CONFIG_HZ", "CONFIG_IA32_EMULATION", "CONFIG_ONLY_IN_6_18", "CONFIG_GCC_VERSION"}
    assert rows["CONFIG_HZ"]["why"].startswith("changed by olddefconfig")
    assert rows["CONFIG_IA32_EMULATION"]["why"].startswith("changed on purpose")
    assert rows["CONFIG_ONLY_IN_6_18"]["twin"] == "absent" and rows["CONFIG_ONLY_IN_6_18"]["why"].startswith("not in 6.12")
    assert rows["CONFIG_GCC_VERSION"]["why"].startswith("toolchain")


@pytest.mark.skipif(not kernel.SOURCE_TARBALL.exists(), reason="no linux-source-6.12")
def test_the_twin_configuration_step_keeps_the_host_options_that_lengthen_the_paths(tmp_path):
    """The configuration step CI runs (the build itself takes long on 2 cores): the host's config,
    the series, the guest's needs; the scheduler/audit options that lengthen a ptrace stop survive."""
    host = kernel.host_config()
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "bench", "kernel", "build", "--kernel-variant", "twin",
                           "--configure-only", "--output-dir", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    final = kernel.config_options((out / "config-twin").read_text())
    wanted = kernel.config_options(host.text)
    assert final["CONFIG_PROCESS_VM_EXEC"] == "y" and final["CONFIG_9P_FS"] == "y"
    for name in ("CONFIG_AUDITSYSCALL", "CONFIG_FAIR_GROUP_SCHED", "CONFIG_SCHED_AUTOGROUP", "CONFIG_HZ",
                 "CONFIG_PREEMPT_DYNAMIC", "CONFIG_PSI", "CONFIG_RETPOLINE", "CONFIG_MITIGATION_RETPOLINE"):
        if name in wanted:
            assert final.get(name, "n") == wanted[name], name
    carry = json.loads((out / "carry-over-twin.json").read_text())
    assert carry["host_config_sha256"] == host.sha256
    listed = {r["option"] for r in carry["not_carried_over"]}
    # Everything that differs is listed, and nothing else.
    differs = {n for n, v in wanted.items() if final.get(n, "n") != v}
    assert listed == differs


@pytest.mark.parametrize("state, args", [
    ("Mitigation: Retpolines; STIBP: disabled; RSB filling; BHI: Retpoline", ("spectre_v2=retpoline",)),
    ("Mitigation: Enhanced / Automatic IBRS + Retpolines; IBPB: conditional", ("spectre_v2=retpoline",)),
    ("Mitigation: LFENCE; IBPB: conditional", ("spectre_v2=retpoline,lfence",)),
    ("Mitigation: Enhanced / Automatic IBRS; IBPB: conditional; RSB filling", ("spectre_v2=off",)),
    ("Vulnerable", ("spectre_v2=off",)),
    ("", ()),
])
def test_the_twin_calls_through_retpolines_exactly_when_the_host_does(state, args, tmp_path, monkeypatch):
    # TCG's CPU model advertises none of the host's bugs: left to itself the guest picks its own indirect calls
    host = tmp_path / "vulnerabilities"
    host.mkdir()
    if state:
        (host / "spectre_v2").write_text(state + "\n")
    monkeypatch.setattr(environment, "VULNERABILITIES", host)
    assert kernel.get_variant("twin").boot_args_for("tcg") == (*args, *environment.memory_cgroup_arg())
    assert kernel.get_variant("twin").boot_args_for("kvm") == ()      # under KVM the guest sees the host's CPU
    assert kernel.get_variant("bench").boot_args_for("tcg") == ()
    monkeypatch.setattr(environment, "VULNERABILITIES", tmp_path / "absent")
    assert kernel.get_variant("twin").boot_args_for("tcg") == environment.memory_cgroup_arg()


#: Two hosts these machines have been, as their kernels (6.18) report them.
AMD_EPYC_HOST = {"spec_rstack_overflow": "Vulnerable: Safe RET, no microcode", "tsa": "Vulnerable: No microcode",
                 "spectre_v2": "Mitigation: Retpolines; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; "
                               "BHI: Not affected", "retbleed": "Not affected", "meltdown": "Not affected",
                 "indirect_target_selection": "Not affected", "mds": "Not affected"}
INTEL_XEON_HOST = {"indirect_target_selection": "Mitigation: Aligned branch/return thunks", "retbleed": "Vulnerable",
                   "spec_rstack_overflow": "Not affected", "meltdown": "Not affected", "mds": "Not affected",
                   "spectre_v2": "Mitigation: Retpolines; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; "
                                 "BHI: Retpoline"}


def test_the_twin_switches_off_only_what_the_host_is_not_affected_by():
    # "Vulnerable: Safe RET, no microcode" runs the Safe RET thunk: a line that starts "Vulnerable" is no "off"
    assert kernel.host_unaffected_args(AMD_EPYC_HOST) == ("pti=off", "mds=off", "retbleed=off",
                                                          "indirect_target_selection=off")
    assert kernel.host_unaffected_args(INTEL_XEON_HOST) == ("pti=off", "mds=off", "spec_rstack_overflow=off")
    assert kernel.host_unaffected_args({}) == ()


@pytest.mark.parametrize("cpuinfo, model", [
    ("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 167\nmodel name\t: Intel(R) Xeon(R)"
     " Processor\nstepping\t: 1\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n",
     "max,vendor=GenuineIntel,family=6,model=167,stepping=1"),
    ("vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nstepping\t: 1\n",
     "max,vendor=AuthenticAMD,family=25,model=1,stepping=1"),
    ("vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n", ""),              # no stepping
    ("vendor_id\t: Authentic,AMD\ncpu family\t: 25\nmodel\t\t: 1\nstepping\t: 1\n", ""),  # no QEMU option
    ("", ""),
])
def test_the_twin_boots_with_the_hosts_cpu_identity_under_tcg_only(cpuinfo, model, monkeypatch):
    assert kernel.host_cpu_identity(environment.cpu_identity(cpuinfo)) == model
    monkeypatch.setattr(environment, "_read", lambda path: cpuinfo if str(path) == "/proc/cpuinfo" else "")
    assert kernel.cpu_model("twin", "tcg") == (model or None)
    assert kernel.cpu_model("twin", "kvm") is None and kernel.cpu_model("bench", "tcg") is None


@pytest.mark.parametrize("lines, thunk", [
    (AMD_EPYC_HOST, "SRSO Safe RET"),
    (INTEL_XEON_HOST, "ITS aligned return thunk"),
    ({"retbleed": "Mitigation: untrained return thunk; SMT disabled"}, "retbleed untrained return thunk"),
    ({"retbleed": "Mitigation: Stuffing"}, "call depth stuffing"),
    ({"spec_rstack_overflow": "Not affected", "retbleed": "Not affected"}, ""),
])
def test_the_return_thunk_is_read_from_the_vulnerability_lines(lines, thunk):
    assert kernel.return_thunk(lines) == thunk


AMD_EPYC_CPUINFO = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nstepping\t: 1\n"
INTEL_XEON_CPUINFO = "vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 167\nstepping\t: 1\n"
READ_VULNERABILITIES = "cd /sys/devices/system/cpu/vulnerabilities && for f in *; do echo \"VULN $f:$(cat $f)\"; done"


def _booted_lines(cpu_model: str | None, kernel_args: tuple[str, ...], share) -> dict[str, str]:
    # The kvm variant compiles in every mitigation of the twin's (6.18) host configuration, and CI builds it.
    kb = kernel.build(log=lambda *_: None, variant="kvm")
    run = vm.run_in_guest(["sh", "-c", READ_VULNERABILITIES], kernel=kb.bzimage, accel="tcg", timing="wall",
                          cpus=1, output_dir=share, kernel_args=kernel_args, cpu_model=cpu_model,
                          boot_timeout=300, run_timeout=120).check()
    return dict(line.split(" ", 1)[1].split(":", 1) for line in run.output.splitlines() if line.startswith("VULN "))


@pytest.mark.vm
@pytest.mark.parametrize("cpuinfo, host", [(AMD_EPYC_CPUINFO, AMD_EPYC_HOST), (INTEL_XEON_CPUINFO, INTEL_XEON_HOST)],
                         ids=["AMD EPYC", "Intel Xeon"])
def test_a_kernel_booted_as_the_host_returns_through_the_hosts_thunk(cpuinfo, host, tmp_path):
    """What the twin's -cpu and switches are for: under TCG's own CPU (AMD family 15, affected by nothing) a
    kernel returns through a plain ret; booted with the host's identity and the twin's arguments for its lines,
    it picks the host's return thunk and indirect calls, and runs no PTI."""
    args = (*kernel.host_indirect_branch_args(host["spectre_v2"]), *kernel.host_unaffected_args(host))
    own = _booted_lines(None, args, tmp_path)
    assert kernel.return_thunk(own) == ""
    twin = _booted_lines(kernel.host_cpu_identity(environment.cpu_identity(cpuinfo)), args, tmp_path)
    assert kernel.return_thunk(twin) == kernel.return_thunk(host) != ""
    assert kernel.uses_retpolines(twin["spectre_v2"]) and not twin["meltdown"].startswith("Mitigation")


@pytest.mark.parametrize("proc, controllers, placement, arg", [
    ("4:memory:/process_api/aa1c\n3:cpuset:/\n0::/\n", "", "child (cgroup v1)", ("vmexec_memcg=v1",)),
    ("4:memory:/\n0::/\n", "", "root", ()),
    ("0::/user.slice/session-1.scope\n", "cpuset cpu io memory pids", "child (cgroup v2)", ("vmexec_memcg=v2",)),
    ("0::/\n", "cpuset cpu io memory pids", "root", ()),
    ("0::/user.slice\n", "cpu pids", "", ()),           # no memory controller: nothing is charged
    ("", "", "", ()),                                   # a kernel without cgroups
])
def test_the_twin_runs_its_loops_in_the_memory_cgroup_the_host_runs_its_in(proc, controllers, placement, arg):
    """Where the host is charged (its /proc/self/cgroup) decides where kernel/guest-init.sh puts the twin's
    workload: a child cgroup of the same version, or the root."""
    from bench.measure.environment import memory_cgroup, memory_cgroup_arg
    assert memory_cgroup(proc, controllers) == placement
    assert memory_cgroup_arg(placement) == arg
    init = (environment.REPO / "kernel" / "guest-init.sh").read_text()
    assert all(f"{a.split('=')[1]})" in init for a in arg)       # guest-init.sh has the case for it
