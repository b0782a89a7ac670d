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

from bench import outputs
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
from bench import outputs
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
    state = pathlib.Path(f"{sysctl}.original")     # removed after the value is written: wait for both
    assert wait_until(lambda: sysctl.read_text() == "65536\n" and not state.exists(), 1.0), \
        (sysctl.read_text(), state.exists())
    # The step gets SIGINT at once; its child, which ignores it, is killed after the grace.
    assert wait_until(lambda: not marked(marker), mainjob.ORPHAN_GRACE + 5), [(p, comm(p)) for p in marked(marker)]


#: A job whose own SIGINT handler is installed (as run_step's is) and which dies in the moment between its
#: step's fork and exec: the step's preexec_fn (`then`) kills the job and waits there for the parent-death
#: signal.  A CI run lost that signal once (the handler inherited over fork caught it, exec forgot it)
#: and the step ran on as an orphan no guardian knew of.
DIES_BETWEEN_FORK_AND_EXEC = """
import os, signal, sys, time
from bench.measure import guardian
signal.signal(signal.SIGINT, lambda *_: None)
job = os.getpid()
def then():
    os.kill(job, signal.SIGKILL)
    time.sleep(1.0)
with guardian.Guardian() as guard:
    guardian.popen_group(["sleep", "30"], guard, grace=5.0, preexec_fn=then)
    time.sleep(30)
"""


def test_a_step_whose_job_dies_between_its_fork_and_exec_never_starts(tmp_path):
    marker = f"VMEXEC_TEST_{uuid.uuid4().hex}"
    job = start_job([sys.executable, "-c", DIES_BETWEEN_FORK_AND_EXEC], {**os.environ, marker: "1"},
                    stderr=subprocess.DEVNULL)
    job.wait(timeout=20)
    assert job.returncode == -signal.SIGKILL
    time.sleep(1.5)     # past the preexec's second: a surviving child has exec'd `sleep 30` by now
    assert wait_until(lambda: not marked(marker), 2.0), [(p, comm(p)) for p in marked(marker)]


#: A guest command whose caller dies in the moment between QEMU's fork and exec: the last thing before exec
#: (vm._no_core_dump, here also the caller's death) kills it, and QEMU (a stand-in: `sleep 30`) must never
#: run on.  Under `setpriv --pdeathsig`, whose prctl came after that moment, it did.
QEMU_WHOSE_CALLER_DIES_BEFORE_EXEC = """
import os, signal, sys, time
from bench.measure import vm
caller = os.getpid()
def then():
    os.kill(caller, signal.SIGKILL)
    time.sleep(1.0)
vm._no_core_dump = then
vm.qemu_command = lambda *args, **kwargs: ["sleep", "30"]
vm.run_in_guest(["true"], kernel=sys.argv[1], accel="tcg", timing="icount", output_dir=sys.argv[2])
"""


def test_a_qemu_whose_caller_dies_between_its_fork_and_exec_never_runs(tmp_path):
    marker = f"VMEXEC_TEST_{uuid.uuid4().hex}"
    (tmp_path / "bzImage").write_bytes(b"")
    job = start_job([sys.executable, "-c", QEMU_WHOSE_CALLER_DIES_BEFORE_EXEC, str(tmp_path / "bzImage"),
                     str(tmp_path / "out")], {**os.environ, marker: "1"}, stderr=subprocess.DEVNULL)
    job.wait(timeout=60)
    assert job.returncode == -signal.SIGKILL
    time.sleep(1.5)     # past the preexec's second: a surviving child has exec'd `sleep 30` by now
    assert wait_until(lambda: not marked(marker), 2.0), [(p, comm(p)) for p in marked(marker)]


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
    # The guardian writes the value, then removes its state file: both within the second, in that order.
    state = mainjob._state_file(str(REAL_SYSCTL))
    assert wait_until(lambda: REAL_SYSCTL.read_text() == old and not state.exists(), 1.0), \
        (REAL_SYSCTL.read_text(), state.exists())
    assert wait_until(lambda: not marked(marker), mainjob.ORPHAN_GRACE + 5), [(p, comm(p)) for p in marked(marker)]


# --------------------------------------------------------------------------- bench rfc

RFC_KILLS = {**KILLS, "SIGINT of its PID": lambda job: job.send_signal(signal.SIGINT)}


@pytest.mark.parametrize("kill", RFC_KILLS)
def test_the_rfc_programs_do_not_outlive_bench_rfc(tmp_path, kill):
    marker = f"VMEXEC_TEST_{uuid.uuid4().hex}"
    job = start_job([sys.executable, "-m", "bench", "rfc", "--seconds", "60", "--output", tmp_path / "rfc.json"],
                    {**os.environ, marker: "1"}, stderr=subprocess.DEVNULL)

    def programs():
        return [pid for pid in marked(marker) if comm(pid).endswith("vm_exec")]
    try:
        assert wait_until(programs, 60), "the RFC's program never started"
    finally:
        RFC_KILLS[kill](job)
        job.wait(timeout=30)
    assert wait_until(lambda: not marked(marker), 3), [comm(p) for p in marked(marker)]
    assert not (tmp_path / "rfc.json").exists()


def comm(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


# --------------------------------------------------------------------------- bench kernel build's steps

UNPACK = """
import os, pathlib, sys
from bench.measure import kernel
print("ready", flush=True)
kernel._Log(pathlib.Path(sys.argv[1]), dict(os.environ)).run("unpack", ["tar", "-xf", sys.argv[2], "-C", sys.argv[3]],
                                                             pathlib.Path(sys.argv[3]))
"""


@pytest.mark.parametrize("kill", RFC_KILLS)
def test_no_tar_or_xz_outlives_an_interrupted_or_killed_kernel_build(tmp_path, kill):
    """The unpacking step of `bench kernel build` (_Log.run, which runs make the same way), interrupted."""
    from bench.measure.kernel import SOURCE_TARBALL
    if not SOURCE_TARBALL.exists():
        pytest.skip(f"{SOURCE_TARBALL} is not installed")
    marker = f"VMEXEC_TEST_{uuid.uuid4().hex}"
    (tmp_path / "src").mkdir()
    job = start_job([sys.executable, "-c", UNPACK, tmp_path / "build.log", SOURCE_TARBALL, tmp_path / "src"],
                    {**os.environ, marker: "1"}, stderr=subprocess.DEVNULL)
    assert job.stdout.readline().strip() == "ready"
    try:
        assert wait_until(lambda: {"tar", "xz"} & {comm(p) for p in marked(marker)}, 30), "tar never started"
        time.sleep(0.5)
    finally:
        RFC_KILLS[kill](job)
        job.wait(timeout=30)
    assert wait_until(lambda: not marked(marker), 2), [comm(p) for p in marked(marker)]


def test_make_and_its_compilers_end_with_an_interrupted_step(tmp_path):
    """make's children (cc1, gcc) are make's process group: a Ctrl-C of the build ends them all."""
    marker = f"VMEXEC_TEST_{uuid.uuid4().hex}"
    script = ("import os, pathlib, sys\nfrom bench.measure import kernel\nprint('ready', flush=True)\n"
              "kernel._Log(pathlib.Path(sys.argv[1]), dict(os.environ)).run('make', "
              "['sh', '-c', 'sleep 300 & sleep 300 & wait'], pathlib.Path('.'))")
    job = start_job([sys.executable, "-c", script, tmp_path / "build.log"], {**os.environ, marker: "1"},
                    stderr=subprocess.PIPE)
    assert job.stdout.readline().strip() == "ready"
    assert wait_until(lambda: [p for p in marked(marker) if comm(p) == "sleep"][1:], 30)
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=30)
    assert "KeyboardInterrupt" in err
    assert wait_until(lambda: not marked(marker), 2), [comm(p) for p in marked(marker)]


# --------------------------------------------------------------------------- temporary trees

def test_a_dead_commands_scratch_tree_goes_at_the_next_start_and_a_live_ones_stays(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    trees = {kind: tmp_path / f"vmexec-{kind}-pid{dead.pid}-abc123" for kind in ("bench", "vm", "check", "kvm-probe")}
    live = tmp_path / f"vmexec-check-pid{os.getpid()}-def456"       # a concurrent command's, alive
    for d in [*trees.values(), live]:
        (d / "export").mkdir(parents=True)
    with outputs.scratch("vm") as mine:
        assert mine.parent == tmp_path and f"pid{os.getpid()}-" in mine.name
        assert not any(d.exists() for d in trees.values()) and (live / "export").is_dir()
    assert not mine.exists()


@pytest.mark.parametrize("kill", KILLS)
def test_a_killed_run_leaves_no_tree_once_the_next_command_starts(tmp_path, kill):
    """SIGHUP: the run cleans up itself; SIGKILL: the next command's start clears what it left."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    job = start_job([sys.executable, "-m", "bench", "run", "--backends", "native,ptrace-sysemu", "--pin", "same",
                     "--output", tmp_path / "r.json"], env, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: list(tmp_path.glob("vmexec-bench-pid*")), 120), "the run made no tree"
    finally:
        KILLS[kill](job)
        job.wait(timeout=60)
    next_command = subprocess.run([sys.executable, "-c", "from bench import outputs\nwith outputs.scratch('vm'): pass"],
                                  env=env, timeout=60)
    assert next_command.returncode == 0
    assert wait_until(lambda: not list(tmp_path.glob("vmexec-*")), 5), list(tmp_path.iterdir())


@pytest.mark.parametrize("kill", ["SIGHUP of its PID", "SIGKILL of its PID"])
def test_a_killed_check_against_leaves_no_tree_once_the_next_command_starts(tmp_path, kill):
    """check --against exports a tree (25 MB) into its scratch tree: nothing of it stays."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    job = start_job([sys.executable, "-m", "bench", "check", "--against", "HEAD", "--", "run", "--backends",
                     "native,ptrace-sysemu", "--pin", "same"], env, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: list(tmp_path.glob("vmexec-check-*/export")), 120), "the check made no tree"
    finally:
        KILLS[kill](job)
        job.wait(timeout=60)
    subprocess.run([sys.executable, "-c", "from bench import outputs\nwith outputs.scratch('vm'): pass"],
                   env=env, timeout=60, check=True)
    assert wait_until(lambda: not list(tmp_path.glob("vmexec-*")), 30), list(tmp_path.iterdir())
