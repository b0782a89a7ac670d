"""The port under attack: the kselftest of kernel/patches (tools/testing/selftests/process_vm_exec/)
run in the guest, on the benchmark kernel and on the debug kernel (BUG, lockdep, KASAN, MEMCG),
each TAP case reported as one pytest case, and the guest's kernel log read after each run.

The source is kernel/selftest/process_vm_exec/ (one copy); the series' patch 0005 is generated
from it by kernel/selftest/mkpatch.py, and test_kselftest_patch_is_generated_from_the_source
checks that they agree.  The test is compiled on the host against the kselftest headers of
the same kernel source package (/usr/src/linux-source-6.12.tar.xz).
"""
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from bench.measure import kernel
from bench.measure import vm

REPO = Path(__file__).resolve().parent.parent
SELFTEST = REPO / "kernel" / "selftest" / "process_vm_exec"
SOURCE = SELFTEST / "process_vm_exec_test.c"
HEADERS = ("kselftest_harness.h", "kselftest.h")
#: The cases, in the order the harness runs them.
CASES = re.findall(r"^TEST_F(?:_TIMEOUT)?\(pvm, (\w+)", SOURCE.read_text(), re.M)
VARIANTS = ["bench", "debug"]
#: Kernel log lines that fail a run: oops, BUG, WARNING, lockdep, KASAN, list corruption, ...
BAD_LOG = re.compile(r"WARNING:|BUG:|Oops|kernel BUG|KASAN:|DEBUG_LOCKS_WARN_ON|lockdep is turned off|"
                     r"possible (circular|recursive) locking|INFO: |UBSAN|Kernel panic|"
                     r"list_(add|del) corruption|refcount_t:")
TAP_LINE = re.compile(r"^(ok|not ok) (\d+) pvm\.(\w+)(?: # (SKIP|XFAIL|XPASS)\s*(.*))?$")

pytestmark = pytest.mark.vm


def test_kselftest_patch_is_generated_from_the_source():
    proc = subprocess.run([sys.executable, str(REPO / "kernel" / "selftest" / "mkpatch.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert CASES and len(CASES) == len(set(CASES))


def test_only_the_kselftest_patch_leaves_the_kernel_key_alone():
    flags = {p.name: kernel.affects_kernel(p) for p in kernel.patches()}
    assert [name for name, affects in flags.items() if not affects] == \
        ["0006-selftests-process_vm_exec-attack-tests.patch"]


@pytest.fixture(scope="session")
def attack_share(tmp_path_factory):
    return tmp_path_factory.mktemp("attack-share")


@pytest.fixture(scope="session")
def attack_bin(attack_share):
    """The kselftest, built on the host with the source package's kselftest headers."""
    tree = attack_share / "selftests"
    (tree / "process_vm_exec").mkdir(parents=True)
    wanted = {f"tools/testing/selftests/{h}": h for h in HEADERS}
    with tarfile.open(kernel.SOURCE_TARBALL) as tar:
        for member in tar:
            name = member.name.split("/", 1)[-1]
            if name in wanted:
                (tree / wanted.pop(name)).write_bytes(tar.extractfile(member).read())
                if not wanted:
                    break
    assert not wanted, f"not in {kernel.SOURCE_TARBALL}: {sorted(wanted)}"
    src = tree / "process_vm_exec" / SOURCE.name
    src.write_bytes(SOURCE.read_bytes())
    out = attack_share / "process_vm_exec_test"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-pthread", "-o", str(out), str(src)],
                   check=True)
    return out


class SuiteRun:
    def __init__(self, variant, tap, log, status, seconds, release):
        self.variant, self.tap, self.log, self.status = variant, tap, log, status
        self.seconds, self.release = seconds, release
        self.cases = {}
        for line in tap.splitlines():
            m = TAP_LINE.match(line.strip())
            if m:
                self.cases[m[3]] = (m[1], m[4], m[5] or "", line.strip())

    def details(self, case):
        """The harness's log lines of one case."""
        lines, inside = [], False
        for line in self.tap.splitlines():
            if line.startswith(f"#  RUN           pvm.{case} "):
                inside = True
            if inside:
                lines.append(line)
                if TAP_LINE.match(line.strip()):
                    break
        return "\n".join(lines)


_runs = {}


@pytest.fixture(scope="session", params=VARIANTS)
def suite(request, attack_bin, attack_share):
    """One guest run of the whole suite per kernel variant, then the guest's dmesg."""
    variant = request.param
    if variant not in _runs:
        kb = kernel.build(log=lambda *_: None, variant=variant)
        tap, log = attack_share / f"tap-{variant}.txt", attack_share / f"dmesg-{variant}.txt"
        script = (f"cd /run/tmp && {attack_bin} > {tap} 2>&1; echo $? > {tap}.status; "
                  f"dmesg > {log}")
        start = time.monotonic()
        run = vm.run_in_guest(["sh", "-c", script], kernel=kb.bzimage, accel="tcg",
                              output_dir=attack_share, boot_timeout=300, run_timeout=2400,
                              kernel_args=kernel.boot_args(variant, "tcg"))
        seconds = time.monotonic() - start
        assert run.exit_status == 0, run.console[-3000:]
        _runs[variant] = SuiteRun(variant, tap.read_text(), log.read_text(),
                                  int((Path(f"{tap}.status")).read_text()), seconds, kb.release)
        print(f"\nattack suite on {kb.release}: {seconds:.0f} s (boot included)")
    return _runs[variant]


@pytest.mark.parametrize("case", CASES)
def test_attack(suite, case):
    assert case in suite.cases, f"no TAP line for {case} on {suite.variant}:\n{suite.tap[-3000:]}"
    result, directive, reason, line = suite.cases[case]
    if directive == "SKIP":
        pytest.skip(f"{suite.variant}: {reason}")
    if directive == "XFAIL":
        pytest.xfail(f"{suite.variant}: documented hazard: {reason}")
    assert result == "ok" and directive is None, f"{suite.variant}: {line}\n{suite.details(case)}"


def test_suite_ran_every_case(suite):
    assert f"1..{len(CASES)}" in suite.tap
    assert sorted(suite.cases) == sorted(CASES)


def test_guest_kernel_log_is_clean(suite):
    """Any oops, BUG, WARNING, lockdep or KASAN report in the guest's kernel log fails the run."""
    assert suite.log.strip(), "empty dmesg"
    bad = [line for line in suite.log.splitlines() if BAD_LOG.search(line)]
    assert not bad, f"{suite.release}: " + "\n".join(bad[:40])


def test_debug_kernel_has_the_options_the_suite_needs():
    config = kernel.cache_root() / "kernel" / kernel.cache_key("debug") / "config"
    kernel.build(log=lambda *_: None, variant="debug")
    text = config.read_text()
    for option in ("BUG", "PROVE_LOCKING", "DEBUG_ENTRY", "DEBUG_ATOMIC_SLEEP", "DEBUG_VM",
                   "DEBUG_LIST", "KASAN", "CGROUPS", "MEMCG", "COREDUMP", "CROSS_MEMORY_ATTACH",
                   "PERF_EVENTS", "PROCESS_VM_EXEC"):
        assert f"CONFIG_{option}=y\n" in text, option
