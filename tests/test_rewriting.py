"""The binary rewriting backends (zpoline, lazypoline, systrap-patch, issue 22): every call of the loop
goes through the rewritten text (the tracee checks each return value, and the backend checks after the loop
that the rewritten path, not a trap, emulated it), and the text is left consistent (the patched bytes read
as written, in pages that are r-x again in /proc/self/maps).  Correctness only: no timing is judged."""
import json
import pathlib
import shutil
import subprocess

import pytest

import tracers
from conftest import run_vmexec
from tracers.driver import VMEXEC

REWRITING = ("zpoline", "lazypoline", "systrap-patch")
#: The ones that patch a site at its first trap, and so report that first call's cost.
LAZY = ("lazypoline", "systrap-patch")


def listed():
    out = subprocess.run([str(VMEXEC), "list"], capture_output=True, text=True, timeout=60, check=True).stdout
    return {b["name"]: b for b in json.loads(out)}


def skip_unless_available(name):
    why = tracers.get_backend(name).unavailable()
    if why:
        pytest.skip(f"unavailable here: {why}")


def test_the_rewriting_backends_are_their_own_kind():
    backends = listed()
    assert {n: backends[n]["kind"] for n in REWRITING} == dict.fromkeys(REWRITING, "binary rewriting")
    assert all(backends[n]["in_process"] for n in REWRITING)
    assert backends["seccomp-trap"]["kind"] == "in-process" and backends["ptrace-sysemu"]["kind"] == "tracer"


@pytest.mark.parametrize("name", REWRITING)
@pytest.mark.parametrize("pages", [0, 2])
def test_every_call_of_the_loop_is_intercepted_through_the_rewritten_text(name, pages):
    skip_unless_available(name)
    proc, report = run_vmexec("run", name, "-n", "3000", "-k", str(pages))
    assert proc.returncode == 0, report
    assert (report["ok"], report["calls"], report["matched"], report["pages"]) == (True, 3000, 3000, pages)


@pytest.mark.parametrize("name", REWRITING)
def test_a_planted_wrong_value_fails_the_run(name):
    skip_unless_available(name)
    proc, report = run_vmexec("run", name, "-n", "500", "-i", "556", "-e", "555")
    assert proc.returncode == 1 and not report["ok"]
    assert "wrong return values" in report["error"] and report["matched"] == 0


@pytest.mark.parametrize("name", REWRITING)
def test_text_left_writable_after_the_patch_is_caught(name):
    """The check of /proc/self/maps has teeth: a backend told to leave its patched pages rwx fails."""
    skip_unless_available(name)
    proc, report = run_vmexec("run", name, "-n", "500", "-F", "text-writable")
    assert proc.returncode == 1 and not report["ok"]
    assert "not r-xp again" in report["error"] and "rwx" in report["error"]


@pytest.mark.parametrize("name", REWRITING)
def test_pairs_in_parallel_each_rewrite_their_own_text(name):
    skip_unless_available(name)
    proc, report = run_vmexec("run", name, "-n", "1000", "-P", "2")
    assert proc.returncode == 0, report
    assert report["calls"] == report["matched"] == 2000


@pytest.mark.parametrize("name", REWRITING)
def test_the_first_call_cost_is_reported_by_the_backends_that_patch_at_the_first_trap(name):
    skip_unless_available(name)
    proc, report = run_vmexec("run", name, "-n", "100")
    assert proc.returncode == 0, report
    if name in LAZY:
        assert report["first_call_ns"] > 0
    else:
        assert "first_call_ns" not in report


def test_without_page_zero_zpoline_says_why_in_one_line():
    """vm.mmap_min_addr > 0 and no CAP_SYS_RAWIO: unavailable, with the sysctl that would make it work."""
    if pathlib.Path("/proc/sys/vm/mmap_min_addr").read_text().strip() == "0":
        pytest.skip("vm.mmap_min_addr is 0 here")
    if not shutil.which("setpriv"):
        pytest.skip("no setpriv")
    proc = subprocess.run(["setpriv", "--inh-caps=-sys_rawio", "--bounding-set=-sys_rawio", str(VMEXEC),
                           "run", "zpoline", "-n", "10"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == tracers.driver.constants()["exit"]["unavailable"], proc.stdout + proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1 and not proc.stderr
    assert "vm.mmap_min_addr" in proc.stdout and "sysctl -w vm.mmap_min_addr=0" in proc.stdout
