"""bench.anatomy (plugin, phases, counts, guest, the cost model), its rendering and commands, and the QEMU plugin
(anatomy/vmexec_anatomy.c)."""
import json
import re
import subprocess

import pytest

from pathlib import Path

from bench.anatomy import counts, guest, phases, plugin
from bench.anatomy import model as cost
from bench import verdict
from bench.errors import BenchError, UsageError
from bench.measure.environment import REPO
from bench.render import anatomy as render
from conftest import run_bench
from tracers.driver import VMEXEC

# Instruction bytes -> the classes the plugin must give them (Intel SDM encodings).
CLASSIFIED = {
    "0f22d8": {"cr3_write", "serializing"},          # mov %rax,%cr3
    "410f22df": {"cr3_write", "serializing"},        # mov %r15,%cr3
    "0f22e0": {"cr_write", "serializing"},           # mov %rax,%cr4
    "0f30": {"wrmsr", "serializing"},
    "0f32": {"rdmsr"},
    "0f01f8": {"swapgs"},
    "0f05": {"syscall"},
    "480f07": {"sysret"},                            # sysretq
    "48cf": {"iret", "serializing"},                 # iretq
    "0fae27": {"xsave"},                             # xsave (%rdi)
    "480fae27": {"xsave"},                           # xsave64 (%rdi)
    "0fae37": {"xsave"},                             # xsaveopt (%rdi)
    "0fc727": {"xsave"},                             # xsavec (%rdi)
    "480fc72f": {"xsave"},                           # xsaves64 (%rdi)
    "480fae2f": {"xrstor"},                          # xrstor64 (%rdi)
    "480fc71f": {"xrstor"},                          # xrstors64 (%rdi)
    "0faee8": {"fence"},                             # lfence
    "0faef0": {"fence"},                             # mfence
    "0faef8": {"fence"},                             # sfence
    "0fa2": {"serializing"},                         # cpuid
    "0f0138": {"tlb_flush", "serializing"},          # invlpg (%rax)
    "660f388201": {"tlb_flush", "serializing"},      # invpcid (%rcx),%rax
    "f4": {"hlt"},
    "f3a4": {"rep_string"},                          # rep movsb
    "f348a5": {"rep_string"},                        # rep movsq
    "f3aa": {"rep_string"},                          # rep stosb
    "f2ae": {"rep_string"},                          # repne scasb
    "a4": set(),                                     # movsb, no rep
    "f3a8": set(),                                   # (rep) test $imm8,%al: no string op
    "f3480faed0": set(),                             # wrfsbase %rax
    "660fae37": set(),                               # clwb (%rdi)
    "660fae3f": set(),                               # clflushopt (%rdi)
    "0fae3f": set(),                                 # clflush (%rdi)
    "0f1f8400564d5842": set(),                       # the BEGIN marker: a nop
    "4889c7": set(),                                 # mov %rax,%rdi
    "0f20d8": set(),                                 # mov %cr3,%rax (a read)
    "0f0d08": set(),                                 # prefetchw (%rax)
}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    exe = tmp_path_factory.mktemp("classify") / "classify"
    subprocess.run(["gcc", "-O2", "-DVMEXEC_ANATOMY_CLASSIFY_MAIN", "-o", str(exe), str(plugin.PLUGIN_SOURCE)],
                   check=True)
    return exe


def test_the_plugin_classifies_instructions_by_their_bytes(classifier):
    proc = subprocess.run([str(classifier)], input="".join(h + "\n" for h in CLASSIFIED),
                          capture_output=True, text=True, check=True)
    got = {}
    for hexbytes, bits in zip(CLASSIFIED, proc.stdout.split()):
        got[hexbytes] = {c for k, c in enumerate(counts.CLASSES) if int(bits, 16) >> k & 1}
    assert got == CLASSIFIED


def test_kernel_functions_fall_into_the_expected_phases():
    expect = {
        "switch_mm_irqs_off": "mm switch", "load_new_mm_cr3": "mm switch", "switch_current_mm": "mm switch",
        "__schedule": "scheduler & context switch", "__switch_to_asm": "scheduler & context switch",
        "try_to_wake_up": "scheduler & context switch", "os_xrstor": "scheduler & context switch",
        "genregs_get": "register & user copies", "restore_sigcontext_regs": "register & user copies",
        "entry_SYSCALL_64": "syscall entry/exit", "__rseq_handle_notify_resume": "syscall entry/exit",
        "ptrace_stop": phases.PHASES[5], "__seccomp_filter": phases.PHASES[5], "do_wait": phases.PHASES[5],
        "__x64_sys_process_vm_exec": phases.PHASES[5], "__x64_sys_getppid": "getppid & pid lookups",
        "asm_exc_page_fault": "exceptions & interrupts", "account_entity_enqueue": "scheduler & context switch",
        "_raw_spin_lock_irqsave": "locking & RCU", "nsec_to_clock_t": phases.PHASES[5],
        "__x86_indirect_thunk_rax": "speculation thunks", "its_return_thunk": "speculation thunks",
        "__x86_return_thunk": "speculation thunks",
        "slab_alloc_node.isra.0": "memory allocation", "default_idle": "idle", "some_unknown_fn": phases.KERNEL_OTHER,
    }
    assert {f: phases.kernel_phase(f) for f in expect} == expect
    assert set(expect.values()) <= set(phases.PHASES)


WINDOW = """# vmexec-anatomy: x86_64, vCPUs 2
window 0 begin_pc=0x555555556f5b end_pc=0x555555556fea begin_vcpu=0 end_vcpu=1 insns=15
ffffffff81000010 4 0 4889c7
ffffffff81000010 2 0 4889c7
ffffffff81000000 3 20 0f05
555555556f5b 1 0 0f1f8400564d5842
ffffffff81000020 5 4000 f3a4 2
class syscall 3
end 0
exit windows=1 records=9
"""


def test_the_plugins_output_is_parsed_per_window_and_pc():
    (w,) = counts.parse_counts(WINDOW)
    assert (w.begin_pc, w.end_pc, w.insns) == (0x555555556F5B, 0x555555556FEA, 15)
    assert w.counts == {0xFFFFFFFF81000010: 6, 0xFFFFFFFF81000000: 3, 0x555555556F5B: 1, 0xFFFFFFFF81000020: 5}
    assert w.classes[0xFFFFFFFF81000000] == 1 << counts.CLASSES.index("syscall")
    assert w.class_totals == {"syscall": 3}
    assert w.starts == {0xFFFFFFFF81000020: 2}
    with pytest.raises(BenchError, match="add up"):
        counts.parse_counts(WINDOW.replace("insns=15", "insns=16"))


def _loop_marker() -> int:
    """The syscall loop's BEGIN marker (link-time address)."""
    return next(o for o in counts.marker_vaddrs(VMEXEC) if counts.UserSymbols(VMEXEC, 0x555555554000 + o).lookup(
        0x555555554000 + o) == "syscall_loop")


def test_symbols_come_from_kallsyms_and_the_driver_binary():
    ks = counts.KernelSymbols("ffffffff81000000 T entry_SYSCALL_64\nffffffff81000040 t asm_exc_page_fault\n"
                         "ffffffff81000100 T do_syscall_64\n")
    assert ks.lookup(0xFFFFFFFF81000010) == ("entry_SYSCALL_64", 0xFFFFFFFF81000000)
    assert ks.lookup(0xFFFFFFFF81000040)[0] == "asm_exc_page_fault"
    # The driver as built, at the load address a non-ASLR PIE gets.
    base = 0x555555554000
    # One marker per marked loop: the syscall loop's and `vmexec price`'s; whichever ran, the load base
    # comes out the same and the marker lies in its own function.
    offsets = counts.marker_vaddrs(VMEXEC)
    marked = set()
    for offset in offsets:
        us = counts.UserSymbols(VMEXEC, base + offset)
        assert us.base == base
        marked.add(us.lookup(base + offset))
    assert marked == set(counts.MARKED_FUNCTIONS) and len(offsets) == len(marked)
    with pytest.raises(BenchError, match="fits 0 of the markers"):
        counts.UserSymbols(VMEXEC, base + offsets[0] + 8)
    offset = _loop_marker()
    us = counts.UserSymbols(VMEXEC, base + offset)
    assert us.lookup(0x7FFFF7E00000) is None
    nm = subprocess.run(["nm", "--defined-only", str(VMEXEC)], capture_output=True, text=True, check=True).stdout
    main = next(int(line.split()[0], 16) for line in nm.splitlines() if line.split()[2:] == ["main"])
    assert us.lookup(base + main + 1) == "main"


def test_attribution_adds_events_and_exception_entries():
    ks = counts.KernelSymbols("ffffffff81000000 T entry_SYSCALL_64\nffffffff81000040 t asm_exc_page_fault\n"
                         "ffffffff81000100 T do_syscall_64\n")
    offset = _loop_marker()
    us = counts.UserSymbols(VMEXEC, 0x555555554000 + offset)
    w = counts.Window(0, 0x555555554000 + offset, 0, 0,
                 {0xFFFFFFFF81000000: 5, 0xFFFFFFFF81000040: 2, 0xFFFFFFFF81000044: 2,
                  0x555555554000 + offset: 1, 0x7FFFF7E00000: 7},
                 {0xFFFFFFFF81000000: 1 << counts.CLASSES.index("swapgs")}, {})
    rows = {r["function"]: r for r in counts.attribute(w, ks, us)}
    assert rows["entry_SYSCALL_64"]["swapgs"] == 5 and rows["entry_SYSCALL_64"]["insns"] == 5
    assert rows["asm_exc_page_fault"][counts.EVENT] == 2 and rows["asm_exc_page_fault"]["insns"] == 4
    assert rows["syscall_loop"]["phase"] == phases.USER_LOOP
    assert rows["(libraries)"]["insns"] == 7


@pytest.mark.parametrize("args, message", [
    (["--syscalls", "5"], "at least 100"),
    (["--backends", "no-such-backend"], "unknown"),
    (["--backends", "python-ptrace-sysemu"], "non-C"),
    (["--from-raw", "/nonexistent/raw"], "not a directory"),
    (["--syscalls", "many"], "invalid int"),
    (["--kernel-variant", "no-such-kernel"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    proc = run_bench("anatomy", "--output", str(tmp_path / "out"), *args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_from_raw_needs_an_anatomy_runs_directory(tmp_path):
    proc = run_bench("anatomy", "--output", str(tmp_path / "out"), "--from-raw", str(tmp_path), timeout=120)
    assert proc.returncode == 2 and "not an anatomy run" in proc.stderr


def test_the_mitigations_kernel_compiles_them_in_and_forces_the_hosts_on_its_command_line():
    from bench.measure import kernel
    options = kernel.fragment_options("mitigations")
    for name in ("CONFIG_CPU_MITIGATIONS", "CONFIG_MITIGATION_RETPOLINE", "CONFIG_MITIGATION_RETHUNK",
                 "CONFIG_MITIGATION_ITS", "CONFIG_MITIGATION_SPECTRE_V1", "CONFIG_MITIGATION_SPECTRE_V2"):
        assert options[name] == "y", name
    assert "CONFIG_CPU_MITIGATIONS" not in kernel.fragment_options("bench")
    args = kernel.BOOT_ARGS["mitigations"]
    assert {"spectre_v2=retpoline", "indirect_target_selection=force", "pti=off"} <= set(args)
    assert kernel.cache_key("mitigations") != kernel.cache_key("bench")
    assert counts.variant_directory(Path("r/anatomy"), "mitigations") == Path("r/anatomy/mitigations")
    assert counts.variant_directory(Path("r/anatomy"), "bench") == Path("r/anatomy")


def test_the_guests_vulnerabilities_are_read_from_the_raw_directory(tmp_path):
    assert counts.guest_vulnerabilities(tmp_path) == {}
    (tmp_path / counts.VULNERABILITIES).write_text(
        "meltdown\tNot affected\nspectre_v2\tMitigation: Retpolines; RSB filling\n")
    vuln = counts.guest_vulnerabilities(tmp_path)
    assert vuln == {"meltdown": "Not affected", "spectre_v2": "Mitigation: Retpolines; RSB filling"}
    text = render.mitigations_phrase({"vulnerabilities": vuln, "kernel_variant": "mitigations",
                                      "kernel_args": ["pti=off"]})
    assert "`mitigations`" in text and "`pti=off`" in text and "spectre_v2: Mitigation: Retpolines" in text
    assert "meltdown" not in text and "1 others Not affected" in text


def test_the_default_backends_are_every_c_backend_in_the_registrys_order():
    """Against the C registry's source (tracers/registry.c: one X(name) line a backend, each defined as
    `const struct backend name = { .name = "..." }`), not against the driver's answer it is built from."""
    registry = (REPO / "tracers" / "registry.c").read_text()
    idents = re.findall(r"^\s*X\((\w+)\)", registry, re.M)
    sources = "".join(p.read_text() for p in (REPO / "tracers").glob("*.c"))
    names = [re.search(rf"const struct backend {i}\s*=\s*{{[^}}]*?\.name\s*=\s*\"([^\"]+)\"", sources).group(1)
             for i in idents]
    assert len(names) >= 10 and {"ptrace-sysemu", "process-vm-exec"} <= set(names)
    assert guest.default_backends() == names
    assert "python-ptrace-sysemu" not in guest.default_backends()


def test_no_report_section_without_an_anatomy_run(tmp_path):
    assert render.report_blocks(tmp_path) == []


@pytest.mark.vm
def test_anatomy_in_the_guest_agrees_with_the_icount_clock(tmp_path):
    """One boot: the plugin's instructions per syscall between the markers against the icount
    timing of the same loop (1 ns per instruction), within 2%, and the anatomy's own sanity."""
    out = tmp_path / "anatomy"
    proc = run_bench("anatomy", "--backends", "native,ptrace-sysemu,process-vm-exec",
                     "--syscalls", "3000", "--output", str(out), timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "anatomy.json").read_text())
    by = {b["backend"]: b for b in doc["backends"]}
    assert set(by) == {"native", "ptrace-sysemu", "process-vm-exec"}
    for b in by.values():
        assert b["syscalls"] == 3000
        assert abs(b["insns_per_syscall"] - b["icount_ns_per_syscall"]) <= counts.AGREEMENT * b["icount_ns_per_syscall"]
        assert sum(v["insns"] for v in b["phases"].values()) == pytest.approx(b["insns_per_syscall"])
        assert b["phases"][phases.USER_LOOP]["insns"] > 0       # the loop itself was found and symbolised
    native, sysemu, pvm = by["native"], by["ptrace-sysemu"], by["process-vm-exec"]
    # Natively, one SYSCALL, one SYSRET and two SWAPGS per call, no address-space switch.
    assert native["totals"]["syscall"] == pytest.approx(1, abs=0.01)
    assert native["totals"]["sysret"] == pytest.approx(1, abs=0.01)
    assert native["totals"]["swapgs"] == pytest.approx(2, abs=0.02)
    assert native["totals"]["cr3_write"] < 0.01
    # The tracer backends switch address spaces; SYSEMU through the scheduler, process_vm_exec without.
    assert sysemu["totals"]["cr3_write"] >= 1 and pvm["totals"]["cr3_write"] >= 1
    sched = "scheduler & context switch"
    assert sysemu["phases"][sched]["insns"] > 10 * pvm["phases"][sched]["insns"]
    assert pvm["phases"]["mm switch"]["insns"] > 0
    # REP string instructions: each iteration is an execution; some of them began an instruction.
    for b in by.values():
        assert 0 <= b["totals"][counts.REP_EXTRA] < b["totals"]["rep_string"] or b["totals"]["rep_string"] == 0
        assert b["insns_rep_once_per_syscall"] == pytest.approx(b["insns_per_syscall"] - b["totals"][counts.REP_EXTRA])
    assert pvm["totals"][counts.REP_EXTRA] > 100        # the sigcontext copies: a few hundred bytes each
    for name in ("phases.csv", "summary.csv", "functions-ptrace-sysemu.csv", "anatomy.png", "anatomy.md"):
        assert (out / name).stat().st_size > 0
    # Re-analysing the raw outputs gives the same figures.
    again, _ = counts.analyse(out / "raw")
    assert [a.insns for a in again] == [b["insns"] for b in doc["backends"]]
    blocks = render.report_blocks(out)
    assert any(kind == "table" for kind, *_ in blocks)


def _anatomy_doc(path, features, variant=None):
    backends = [{"backend": b, "insns_per_syscall": i, "totals": {"cr3_write": c, "syscall": k, counts.EVENT: 0.0}}
                for b, (i, c, k) in features.items()]
    meta = {"kernel_variant": variant} if variant else {}
    path.write_text(json.dumps({"meta": meta, "backends": backends}))
    return path


def test_the_cost_model_recovers_known_parameters_and_reports_leave_one_out_errors(tmp_path):
    features = {"native": (227, 0, 1), "ptrace-sysemu": (12434, 2, 5), "ptrace-syscall": (24396, 4, 9),
                "seccomp-trap": (5310, 0, 2), "seccomp-unotify": (6469, 2, 3), "ptrace-sysemu-poke": (8886, 2, 4),
                "process-vm-exec": (2386, 2, 2)}
    truth = (0.2, 300.0, 50.0)
    host = {b: sum(t * f for t, f in zip(truth, fs)) for b, fs in features.items() if b != "process-vm-exec"}
    m = cost.fit_model(_anatomy_doc(tmp_path / "anatomy.json", features), host)
    assert list(m.parameters.values()) == pytest.approx(truth, rel=1e-6)
    assert all(abs(e) < 1e-6 for e in m.loo.values())
    assert m.candidate_ns == pytest.approx(0.2 * 2386 + 300 * 2 + 50 * 2)
    assert m.speedup == pytest.approx(host["ptrace-sysemu"] / m.candidate_ns)
    # Noise on one mechanism shows in its leave-one-out error and widens the range.
    host["seccomp-trap"] *= 1.3
    m = cost.fit_model(_anatomy_doc(tmp_path / "anatomy.json", features), host)
    assert m.loo["seccomp-trap"] < -0.05
    assert m.candidate_range[0] < m.candidate_ns < m.candidate_range[1]
    assert all(v >= 0 for v in m.parameters.values())


def test_only_a_model_fitted_on_the_mitigation_matched_anatomy_is_marked_matched(tmp_path):
    features = {"native": (227, 0, 1), "ptrace-sysemu": (12434, 2, 5), "ptrace-syscall": (24396, 4, 9),
                "seccomp-trap": (5310, 0, 2), "seccomp-unotify": (6469, 2, 3), "process-vm-exec": (2386, 2, 2)}
    host = {b: 0.2 * i + 300 * c + 50 * k for b, (i, c, k) in features.items() if b != "process-vm-exec"}
    for variant, matched in ((None, False), ("bench", False), (counts.MODEL_VARIANT, True)):
        m = cost.fit_model(_anatomy_doc(tmp_path / "anatomy.json", features, variant), host, "inputs")
        p = verdict.ModelPrediction.of(m)
        assert p.matched is matched and p.inputs == "inputs"
        assert (p.speedup, p.low, p.high) == (m.speedup, *m.speedup_range)
        assert p.loo == m.loo and p.baseline_ns == host["ptrace-sysemu"]
    # The report's model comes from anatomy/mitigations/ beside the benchmark kernel's anatomy.
    where = counts.variant_directory(tmp_path / "anatomy", counts.MODEL_VARIANT)
    where.mkdir(parents=True)
    _anatomy_doc(where / "anatomy.json", features, counts.MODEL_VARIANT)
    model, why = cost.fitted_model([], tmp_path / "anatomy")
    assert model is None and "no host run" in why


def test_the_cost_model_needs_enough_mechanisms(tmp_path):
    doc = _anatomy_doc(tmp_path / "anatomy.json", {"ptrace-sysemu": (1, 1, 1), "process-vm-exec": (1, 1, 1)})
    with pytest.raises(UsageError, match="too few"):
        cost.fit_model(doc, {"ptrace-sysemu": 3000.0})
    proc = run_bench("anatomy-model", "--anatomy", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and "no " in proc.stderr


def test_report_sections_are_empty_without_an_anatomy(tmp_path):
    assert render.report_blocks(tmp_path) == [] and render.mitigation_blocks(tmp_path) == []
    model, why = cost.fitted_model([], tmp_path)
    assert model is None and "no mitigation-matched guest anatomy" in why
    assert render.cost_model_blocks(model, why, tmp_path) == []


DEBIAN_SOURCES = """\
# Debian 12's default layout (/etc/apt/sources.list.d/debian.sources)
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""


def test_deb_src_entries_mirror_the_machines_debian_sources(tmp_path):
    """Each Debian stanza once, as deb-src with its own suites; other archives and our own file left out."""
    (tmp_path / "debian.sources").write_text(DEBIAN_SOURCES)
    (tmp_path / "other.sources").write_text("Types: deb\nURIs: https://packages.example.org/apt\nSuites: stable\n")
    (tmp_path / plugin.SOURCES_FILE.name).write_text("Types: deb-src\nURIs: http://deb.debian.org/debian\n"
                                                    "Suites: sid\n")
    text = plugin._deb_src_entry(tmp_path)
    stanzas = [s for s in text.split("\n\n") if s.strip()]
    assert len(stanzas) == 2
    assert all("Types: deb-src" in s and "Types: deb\n" not in s + "\n" for s in stanzas)
    assert "Suites: bookworm bookworm-updates" in stanzas[0] and "Suites: bookworm-security" in stanzas[1]
    assert "example.org" not in text and "sid" not in text


def test_no_debian_archive_among_the_sources_is_one_clear_error(tmp_path):
    (tmp_path / "other.sources").write_text("Types: deb\nURIs: https://packages.example.org/apt\nSuites: stable\n")
    with pytest.raises(BenchError, match="no Debian archive"):
        plugin._deb_src_entry(tmp_path)


def test_the_loops_are_counted_after_the_kernels_work_after_boot(tmp_path):
    """Conntrack's first sweep of its table (a second after its init) landed in one mechanism's and one part's
    counts of the twin (about 100 and 700 instructions per iteration): the guest now waits for the uptime first."""
    script = guest._guest_script(tmp_path, [("native", ["vmexec", "run", "native"])]).splitlines()
    wait = next(i for i, line in enumerate(script) if "/proc/uptime" in line)
    assert f"-lt {guest.SETTLE_UPTIME_S} ]" in script[wait] and guest.SETTLE_UPTIME_S >= 2
    assert wait < next(i for i, line in enumerate(script) if "vmexec run native" in line)


#: Work a workqueue does on its own schedule that no loop of the driver's causes.
UNCAUSED = ("gc_worker",)


#: Every committed twin's anatomies (one directory per host configuration), mechanisms and parts.
TWIN_COUNTS = sorted(p.parent for p in (REPO / "results" / "anatomy" / "twin").glob("*/functions-native.csv")) + \
    sorted(p.parent for p in (REPO / "results" / "anatomy" / "twin").glob("*/parts/functions-entry.csv"))


def test_every_committed_twin_has_both_anatomies():
    twins = {d.name for d in (REPO / "results" / "anatomy" / "twin").iterdir() if d.is_dir()}
    assert twins and all(REPO / "results" / "anatomy" / "twin" / t in TWIN_COUNTS and
                         REPO / "results" / "anatomy" / "twin" / t / "parts" in TWIN_COUNTS for t in twins)


@pytest.mark.parametrize("directory", TWIN_COUNTS, ids=lambda d: "/".join(d.parts[-2:]))
def test_no_committed_twin_count_carries_work_its_loop_did_not_cause(directory):
    for csv in sorted(directory.glob("functions-*.csv")):
        functions = {line.split(",", 1)[0] for line in csv.read_text().splitlines()[1:]}
        assert not functions & set(UNCAUSED), (csv.name, functions & set(UNCAUSED))


@pytest.mark.parametrize("directory", TWIN_COUNTS, ids=lambda d: "/".join(d.parts[-2:]))
def test_a_committed_twin_that_says_where_its_loops_were_charged_was_charged_where_its_host_is(directory):
    """kernel/guest-init.sh put the loops in a child memory cgroup where the host runs in one: the guest's own
    /proc/self/cgroup says so (a twin counted before that recorded nothing, and was counted in the root)."""
    facts = json.loads((directory / "raw" / "guest.json").read_text())
    if "memory_cgroup" in facts:
        assert facts["memory_cgroup"] == facts["host_memory_cgroup"] != ""
