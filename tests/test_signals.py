"""No signal leaves the machine weakened or work running (issue 28, section 2): whatever kills a command
(SIGHUP, SIGKILL of its PID, SIGKILL of its process group), vm.mmap_min_addr comes back within a second,
no child keeps running, and no temporary tree stays behind."""
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from bench.commands import mainjob

#: A host run's step, stood in for: it and a child of its own (a pyperf worker, say) sleep; the child
#: ignores SIGINT, as a tracee stopped under ptrace would not answer it.
STUB_STEP = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                          "print('ready', flush=True); time.sleep(300)"], stdout=subprocess.PIPE, text=True)
print(child.stdout.readline().strip(), flush=True)
time.sleep(300)
"""
#: A main job of one host-run step (needs_page_zero is forced: the step is the stub above).
JOB = """
import sys
from bench.commands import mainjob
mainjob.needs_page_zero = lambda argv: True
mainjob.run_step([sys.executable, "-c", sys.argv[1]], {**__import__("os").environ})
"""
KILLS = {"SIGKILL of its process group": lambda job: os.killpg(job.pid, signal.SIGKILL),
         "SIGKILL of its PID": lambda job: job.kill(),
         "SIGHUP of its PID": lambda job: job.send_signal(signal.SIGHUP)}


def marked(marker: str) -> list[int]:
    """The processes whose environment holds marker (what a command started, however deep)."""
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def wait_until(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def start_job(argv, env, **kwargs):
    """A command in a session of its own, as a terminal starts a job: its group is its PID."""
    return subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize("kill", KILLS)
def test_vm_mmap_min_addr_comes_back_within_a_second_and_no_step_outlives_the_job(tmp_path, kill):
    sysctl, marker = tmp_path / "mmap_min_addr", f"VMEXEC_TEST_{uuid.uuid4().hex}"
    sysctl.write_text("65536\n")
    env = {**os.environ, "VMEXEC_MMAP_MIN_ADDR_FILE": str(sysctl), marker: "1"}
    job = start_job([sys.executable, "-c", JOB, STUB_STEP], env)
    assert "vm.mmap_min_addr set to 0" in job.stdout.readline()
    assert job.stdout.readline().strip() == "ready"
    assert sysctl.read_text() == "0\n" and pathlib.Path(f"{sysctl}.original").read_text() == "65536\n"
    KILLS[kill](job)
    job.wait(timeout=10)
    assert wait_until(lambda: sysctl.read_text() == "65536\n", 1.0), sysctl.read_text()
    assert not pathlib.Path(f"{sysctl}.original").exists()
    # The step gets SIGINT at once; its child, which ignores it, is killed after the grace.
    assert wait_until(lambda: not marked(marker), mainjob.ORPHAN_GRACE + 5), marked(marker)


def test_a_job_after_a_crash_puts_back_the_recorded_value_not_0(tmp_path):
    """A job and its guardian both SIGKILLed left 0 and the state file: the next job restores the original."""
    sysctl = tmp_path / "mmap_min_addr"
    sysctl.write_text("0\n")
    pathlib.Path(f"{sysctl}.original").write_text("65536\n")
    with mainjob.mmap_min_addr_zero(str(sysctl)):
        assert sysctl.read_text() == "0\n"
    assert sysctl.read_text() == "65536\n" and not pathlib.Path(f"{sysctl}.original").exists()
    # An administrator's 0 (no state file) is left alone.
    sysctl.write_text("0\n")
    with mainjob.mmap_min_addr_zero(str(sysctl)):
        pass
    assert sysctl.read_text() == "0\n"


def test_only_a_host_run_opens_page_0():
    py = [sys.executable, "-m", "bench"]
    assert mainjob.needs_page_zero([*py, "run", "--fast"])
    assert not any(mainjob.needs_page_zero([*py, *argv]) for argv in (["vm", "run"], ["report"], ["prices"]))


REAL_SYSCTL = pathlib.Path("/proc/sys/vm/mmap_min_addr")


@pytest.mark.skipif(os.geteuid() != 0 or not REAL_SYSCTL.exists(), reason="needs root and the real sysctl")
@pytest.mark.parametrize("after", [0.0, 1.5])
def test_the_real_sysctl_is_back_within_a_second_after_sigkill_of_bench_mains_group(tmp_path, after):
    """`bench main` itself, its first step a real host run, its process group SIGKILLed during it."""
    old = REAL_SYSCTL.read_text()
    if old.strip() == "0":
        pytest.skip("vm.mmap_min_addr is 0 here: nothing to restore")
    marker = f"VMEXEC_TEST_{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k != "VMEXEC_MMAP_MIN_ADDR_FILE"}
    job = start_job([sys.executable, "-m", "bench", "main", "--clock", "icount"], {**env, marker: "1"},
                    cwd=tmp_path, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: REAL_SYSCTL.read_text().strip() == "0", 120), "the job never set 0"
        time.sleep(after)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=10)
    assert wait_until(lambda: REAL_SYSCTL.read_text() == old, 1.0), REAL_SYSCTL.read_text()
    assert not mainjob._state_file(str(REAL_SYSCTL)).exists()
    assert wait_until(lambda: not marked(marker), mainjob.ORPHAN_GRACE + 5), marked(marker)
