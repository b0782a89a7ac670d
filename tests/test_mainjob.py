"""The main job's choice of clock, by simulation (nothing here can boot KVM), and the verdict a KVM or a
bare-metal run gives (synthetic suites, no timing involved)."""
import os
import pathlib
import signal
import subprocess
import sys
import threading

import pytest

from bench import stats, verdict
from bench.commands import cli
from bench.measure import kernel
from bench.commands import mainjob
from bench.measure import kvmprobe, vm
from bench.errors import BenchError
from data.synthetic import GUEST, HOST, HOST_UNAVAILABLE, write_suite

PVM_WHY = "a probe boot failed (QEMU exited (status 1) before the guest started the command [kvm];\n" \
          "console tail: qemu: error: failed to set MSR 0x10a to 0x0)"


def guest_steps(steps):
    return [s for s in steps if s.argv[0] == "vm"]


def parsed(step):
    """The step's arguments as `python -m bench` parses them: the plan is valid input for the CLI."""
    return cli.build_parser().parse_args(list(step.argv))


def test_a_probe_that_boots_takes_kvm_wall_clock_on_the_kvm_kernel_with_pinned_vcpus():
    d = mainjob.decide(probe=lambda: None)
    assert (d.clock, d.kvm_variant) == ("kvm", "kvm")
    assert "\n" not in d.line and d.line.startswith("main job: clock: KVM wall clock")
    steps = mainjob.plan(d, ["--fast"])
    kvm = [s for s in guest_steps(steps) if parsed(s).accel == "kvm"]
    # the first answer's guest run, the full guest run and the RFC's programs: all on KVM
    assert [s.what for s in kvm] == ["first answer: KVM guest", "KVM guest: every backend", "RFC's programs"]
    for step in kvm:
        args = parsed(step)
        assert (args.timing, args.kernel_variant, args.pin_vcpus) == ("wall", "kvm", True)
    first = parsed(kvm[0])
    assert first.command[first.command.index("--backends") + 1] == mainjob.first_answer_backends()
    assert kvm[0].results_dir == mainjob.FIRST_ANSWER_DIR
    # the icount run is still made (the anatomy and the regression check build on it)
    icount = [s for s in guest_steps(steps) if parsed(s).timing == "icount"]
    assert len(icount) == 1 and parsed(icount[0]).accel == "tcg" and "--scaling" in parsed(icount[0]).command
    # the host run takes the user's options; the report comes last
    assert [s.argv for s in steps if s.argv[:1] == ("run",)][-1] == ("run", "--scaling", "--resume", "--fast")
    assert steps[-1].argv == ("report",)


def test_the_kvm_guest_boots_with_the_cpus_own_mitigation_defaults():
    """Under TCG the mitigations variant forces the host's options (TCG's CPU has none of its bugs); under
    -cpu host nothing is forced, unless another variant is asked for."""
    assert kernel.boot_args("mitigations", "kvm") == ()
    assert kernel.boot_args("mitigations", "tcg") == kernel.load_mitigations().tcg_args
    assert "spectre_v2=retpoline" in kernel.load_mitigations().tcg_args
    assert kernel.boot_args("debug", "kvm") == kernel.boot_args("debug", "tcg") == ("acpi=off",)
    assert kernel.boot_args("bench", "tcg") == ()
    d = mainjob.decide(kvm_variant="bench", probe=lambda: None)
    assert all(parsed(s).kernel_variant == "bench" for s in guest_steps(mainjob.plan(d)) if parsed(s).accel == "kvm")


def test_a_probe_that_fails_takes_icount_and_says_why_in_one_line():
    d = mainjob.decide(probe=lambda: PVM_WHY)
    assert d.clock == "icount" and d.kvm_variant is None
    assert "\n" not in d.line and d.line.startswith("main job: clock: TCG with icount")
    assert "KVM cannot boot a guest here: a probe boot failed" in d.line and "MSR 0x10a" in d.line
    steps = mainjob.plan(d)
    assert all(parsed(s).accel == "tcg" and parsed(s).timing == "icount" for s in guest_steps(steps))
    assert not any(parsed(s).pin_vcpus for s in guest_steps(steps))
    assert [s.what for s in steps] == ["first answer: host", "first answer: icount guest",
                                       "first answer: report", "host: every backend", "host: prices",
                                       "icount guest: every backend", "RFC's programs", "report"]


@pytest.mark.parametrize("probe", [lambda: None, lambda: PVM_WHY], ids=["kvm", "icount"])
def test_the_first_answer_calibrates_on_every_c_mechanism_at_the_same_pinning(probe):
    """Issue 18: the first answer must not calibrate on another set of mechanisms than the full run."""
    from tracers.driver import driver_backends

    every_c = {b.name for b in driver_backends()}
    steps = mainjob.plan(mainjob.decide(probe=probe))
    first = [s for s in steps if s.results_dir == mainjob.FIRST_ANSWER_DIR and s.argv[0] not in ("report", "prices")]
    assert len(first) == 2          # host, then guest
    for step in first:
        argv = list(step.argv[step.argv.index("--") + 1:]) if "--" in step.argv else list(step.argv)
        assert set(argv[argv.index("--backends") + 1].split(",")) == every_c
        assert argv[argv.index("--pin") + 1] == "same"
    # the full runs measure every backend (no --backends), same pinning among theirs
    full = [s for s in steps if s.results_dir is None and s.argv[0] in ("run", "vm") and "rfc" not in s.argv]
    assert full and all("--backends" not in s.argv for s in full)
    # the full run measures the parts' prices on the host, after its host run and before its report; the
    # first answer leaves the composition to it (issue 26: seconds of prices are not admissible prices)
    whats = [s.argv[0] for s in steps if s.results_dir is None]
    assert whats.index("prices") == whats.index("run") + 1 and whats.index("prices") < whats.index("report")
    assert "prices" not in [s.argv[0] for s in steps if s.results_dir == mainjob.FIRST_ANSWER_DIR]


def test_the_main_command_prints_the_decision_first(monkeypatch, capsys):
    monkeypatch.setattr(mainjob, "probe_kvm", lambda *_: None)
    assert cli.main(["main", "--dry-run", "--", "--fast"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("main job: clock: KVM wall clock")
    assert any("vm run --accel kvm --timing wall --kernel-variant kvm --pin-vcpus" in line for line in out)
    assert any("vm run --accel tcg --timing icount" in line for line in out)
    assert "python -m bench run --scaling --resume --fast" in out
    monkeypatch.setattr(mainjob, "probe_kvm", lambda *_: PVM_WHY)
    assert cli.main(["main", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("main job: clock: TCG with icount") and "MSR 0x10a" in out[0]
    assert not any("--accel kvm" in line for line in out)


def test_clock_asked_for(monkeypatch, capsys):
    monkeypatch.setattr(mainjob, "probe_kvm", lambda *_: pytest.fail("--clock icount must not probe"))
    assert mainjob.decide("icount").clock == "icount"
    monkeypatch.setattr(mainjob, "probe_kvm", lambda *_: PVM_WHY)
    assert cli.main(["main", "--dry-run", "--clock", "kvm"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--clock kvm: KVM cannot boot a guest here" in err
    assert cli.main(["main", "--clock", "cycles"]) == 2


def test_vcpu_threads_are_pinned_each_to_its_own_cpu():
    """pin_vcpu_threads on two real threads of this process (QEMU's vCPU threads are threads too)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    ready, stop, tids = threading.Barrier(3), threading.Event(), {}

    def vcpu(i):
        tids[i] = threading.get_native_id()
        ready.wait()
        stop.wait()

    threads = [threading.Thread(target=vcpu, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    ready.wait()
    try:
        pins = vm.pin_vcpu_threads(tids, (cpus[1], cpus[0]))
        assert pins == {0: (tids[0], cpus[1]), 1: (tids[1], cpus[0])}
        assert os.sched_getaffinity(tids[0]) == {cpus[1]} and os.sched_getaffinity(tids[1]) == {cpus[0]}
        with pytest.raises(BenchError, match="share host threads"):
            vm.pin_vcpu_threads({0: tids[0], 1: tids[0]}, (cpus[0], cpus[1]))
        with pytest.raises(BenchError, match="distinct host CPUs"):
            vm.pin_vcpu_threads(tids, (cpus[0], cpus[0]))
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_pin_vcpus_is_refused_under_icount(capsys):
    assert cli.main(["vm", "run", "--pin-vcpus", "--timing", "icount", "--", "--fast"]) == 2
    assert "one host thread runs every vCPU" in capsys.readouterr().err


# --------------------------------------------------------------------------- the verdict on hardware

def test_a_kvm_run_gives_a_hardware_clock_verdict_judged_on_its_ci(tmp_path):
    """What the main job writes where KVM boots: a host run (no process_vm_exec), the KVM guest run and
    the icount guest run.  The verdict is the KVM run's, judged on its bootstrap CI."""
    host = write_suite(tmp_path / "testhost-20260101-000000.json", HOST, unavailable=HOST_UNAVAILABLE,
                       started="2026-01-01T00:00:00")
    kvm = write_suite(tmp_path / "vm-kvm-wall-20260101-000100.json", {**GUEST, "process-vm-exec:pin=same": 1_600.0},
                      vm=True, accelerator="kvm", timing="wall", kernel="6.12.57-vmexec-mitigations",
                      started="2026-01-01T00:01:00")
    icount = write_suite(tmp_path / "vm-tcg-icount-20260101-000200.json", GUEST, vm=True,
                         started="2026-01-01T00:02:00")    # newer, but a lesser clock
    df = stats.load([host, kvm, icount])
    h = verdict.headline(df)
    a = h.assessment
    assert a.clock == "kvm" and a.interval == "95% CI" and a.distortions.empty
    row = stats.ratios(df, stats.CANDIDATE).set_index(["run_id", "pin"]).loc[(kvm.stem, "same")]
    assert (a.low, a.high) == (row["speedup_low"], row["speedup_high"])
    assert a.low > 5 and h.sentence.startswith("process_vm_exec is 6.2")     # 10,000 / 1,600
    assert "under KVM" in h.sentence and "claim is reproduced" in h.sentence
    assert "hardware-equivalent" not in h.sentence and h.caveat == ""
    assert h.figures[0].startswith("icount path-length ratio") and h.figures[3].startswith("measured on KVM")


def test_a_bare_metal_host_run_with_process_vm_exec_outranks_kvm_and_icount(tmp_path):
    """`bench run` on the packaged kernel (bench kernel package): process-vm-exec measured on the host."""
    metal = write_suite(tmp_path / "spare-20260101-000000.json", {**HOST, "process-vm-exec:pin=same": 2_500.0},
                        kernel="6.12.57-vmexec", started="2026-01-01T00:00:00")
    kvm = write_suite(tmp_path / "vm-kvm-wall-20260101-000100.json", {**GUEST, "process-vm-exec:pin=same": 1_600.0},
                      vm=True, accelerator="kvm", timing="wall", started="2026-01-01T00:01:00")
    icount = write_suite(tmp_path / "vm-tcg-icount-20260101-000200.json", GUEST, vm=True,
                         started="2026-01-01T00:02:00")
    h = verdict.headline(stats.load([metal, kvm, icount]))
    assert h.assessment.clock == "hardware" and h.assessment.interval == "95% CI"
    assert h.sentence.startswith("process_vm_exec is 4.0") and "on the host (bare-metal)" in h.sentence
    assert "claim is not reproduced" in h.sentence     # 10,000 / 2,500 = 4: the measured CI lies below 5


STEP = """
import pathlib, sys, time
print("ready", flush=True)
try:
    time.sleep(120)
except KeyboardInterrupt:
    pathlib.Path(sys.argv[1]).write_text("cleaned up")     # as a guest run kills its QEMU
    sys.exit(130)
"""
JOB = """
import sys
from bench.commands import mainjob
from bench.errors import Interrupted
try:
    mainjob.run_step([sys.executable, "-c", sys.argv[1], sys.argv[2]], {})
except Interrupted as e:
    print(e, flush=True)
    sys.exit(130)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_job_lets_its_step_clean_up(tmp_path, signum):
    """Sent to the job alone, even one started with SIGINT ignored (a script's background job): the step
    gets SIGINT, cleans up, and the job ends with Interrupted."""
    marker = tmp_path / "marker"
    job = subprocess.Popen([sys.executable, "-c", JOB, STEP, str(marker)], stdout=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert job.stdout.readline().strip() == "ready"
    job.send_signal(signum)
    out, _ = job.communicate(timeout=100)
    assert job.returncode == 130 and f"interrupted by {signum.name}" in out
    assert marker.read_text() == "cleaned up"


def test_each_report_is_of_the_files_the_job_wrote(tmp_path, monkeypatch):
    """On KVM the full run writes two guest runs; `bench report` alone would take the newest (icount)
    one.  The job's reports name its own files, KVM and icount runs both, and no older file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VMEXEC_RESULTS_DIR", raising=False)
    monkeypatch.delenv("VMEXEC_RESULTS", raising=False)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "vm-tcg-icount-20250101-000000.json").write_text("{}")     # an older run's
    calls = []

    def fake(argv, env):
        argv = argv[3:]     # after python -m bench
        calls.append(argv)
        where = tmp_path / env.get("VMEXEC_RESULTS", "results")
        where.mkdir(parents=True, exist_ok=True)
        name = ("host" if argv[0] == "run" else
                f"vm-{argv[3] if len(argv) > 3 else ''}-{argv[1]}" if argv[0] == "vm" else None)
        if name:
            (where / f"{name}-{len(calls)}.json").write_text("{}")
        return 0

    mainjob.execute(mainjob.plan(mainjob.decide(probe=lambda: None)), run=fake)
    reports = [c for c in calls if c[0] == "report"]
    assert len(reports) == 2
    first, full = ([pathlib.Path(p).name for p in r[1:]] for r in reports)
    # (the prices steps write into prices/, which no report takes as a results file)
    assert first == ["host-1.json", "vm-kvm-run-2.json"]
    assert sorted(full) == ["host-4.json", "vm-kvm-rfc-8.json", "vm-kvm-run-6.json", "vm-tcg-run-7.json"]



def test_a_rerun_of_a_failed_job_does_not_redo_its_completed_steps(tmp_path, monkeypatch):
    """Issue 29: the job resumes.  Step 6 fails; the rerun starts at step 6, its reports still name the files
    of the steps done before, and the state is gone when the job ends.  Another job (other options) redoes all."""
    from bench.commands.jobstate import JobState, STATE_NAME
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VMEXEC_RESULTS_DIR", raising=False)
    monkeypatch.delenv("VMEXEC_RESULTS", raising=False)
    calls, fail_at = [], [6]

    def fake(argv, env):
        argv = argv[3:]
        calls.append(argv)
        where = tmp_path / env.get("VMEXEC_RESULTS", "results")
        where.mkdir(parents=True, exist_ok=True)
        if argv[0] in ("run", "vm"):
            (where / f"{argv[0]}-{len(calls)}.json").write_text("{}")
        return 1 if len(calls) == fail_at[0] else 0

    steps = mainjob.plan(mainjob.decide("icount"))
    ident = {"commit": "c1", "kernels": {"bench": "k1"}, "options": {"clock": "icount"}}
    state = JobState.open(tmp_path / "results", ident)
    with pytest.raises(BenchError, match="step 6 .* failed.*rerun the job to resume"):
        mainjob.execute(steps, run=fake, state=state)
    assert len(JobState.open(tmp_path / "results", ident).completed) == 5

    said = []
    calls.clear()
    fail_at[0] = 0
    state = JobState.open(tmp_path / "results", ident, say=said.append)
    assert said and said[0].startswith("main job: resuming: 5 step(s) completed before are not redone")
    mainjob.execute(steps, run=fake, state=state)
    assert [c[:2] for c in calls][0] == list(steps[5].argv[:2]) and len(calls) == len(steps) - 5
    first_report = [c for c in calls if c[0] == "report"][-1]
    assert any(pathlib.Path(p).name.startswith("run-") for p in first_report[1:])   # the skipped host run's file
    state.finish()
    assert not (tmp_path / "results" / STATE_NAME).exists()

    # a state of another job (another commit) is not resumed
    JobState(tmp_path / "results" / STATE_NAME, ident, {"x": []}).mark(steps[0], [])
    said = []
    other = JobState.open(tmp_path / "results", {**ident, "commit": "c2"}, say=said.append)
    assert not other.completed and "of another job (its commit differ)" in said[0]


def test_the_job_states_its_identity_from_commit_kernels_and_options():
    from bench.commands.jobstate import identity
    one = identity("icount", None, ["--fast"])
    assert set(one) == {"commit", "kernels", "options"} and "bench" in one["kernels"]
    assert identity("icount", None, ["--rigorous"]) != one and identity("kvm", "mitigations", ["--fast"]) != one


JOB_WITH_SYSCTL = """
import sys, time
from bench.commands import mainjob
from bench.errors import Interrupted
try:
    with mainjob.mmap_min_addr_zero(sys.argv[3]):
        if sys.argv[1] == "between-steps":
            print("ready", flush=True)
            time.sleep(120)
        else:
            mainjob.run_step([sys.executable, "-c", sys.argv[1], sys.argv[2]], {})
except Interrupted as e:
    print(e, flush=True)
    sys.exit(130)
"""


@pytest.mark.parametrize("where", ["in-a-step", "between-steps"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_job_puts_vm_mmap_min_addr_back(tmp_path, signum, where):
    """The job sets vm.mmap_min_addr=0 for zpoline and lazypoline (issue 22) and restores it however it ends
    (a file stands for the sysctl: a test must not change the real one on a shared machine)."""
    sysctl, marker = tmp_path / "mmap_min_addr", tmp_path / "marker"
    sysctl.write_text("65536\n")
    step = STEP if where == "in-a-step" else "between-steps"
    job = subprocess.Popen([sys.executable, "-c", JOB_WITH_SYSCTL, step, str(marker), str(sysctl)],
                           stdout=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert "vm.mmap_min_addr set to 0" in job.stdout.readline()
    assert job.stdout.readline().strip() == "ready"
    assert sysctl.read_text().strip() == "0"
    job.send_signal(signum)
    out, _ = job.communicate(timeout=100)
    assert job.returncode == 130 and f"interrupted by {signum.name}" in out
    assert sysctl.read_text() == "65536\n"


def test_vm_mmap_min_addr_is_put_back_after_a_failed_step_and_left_alone_when_already_0(tmp_path):
    sysctl = tmp_path / "mmap_min_addr"
    sysctl.write_text("4096\n")
    with pytest.raises(BenchError):
        with mainjob.mmap_min_addr_zero(str(sysctl)):
            assert sysctl.read_text() == "0\n"
            raise BenchError("main job: step 3 failed")
    assert sysctl.read_text() == "4096\n"
    sysctl.write_text("0\n")
    with mainjob.mmap_min_addr_zero(str(sysctl)):
        pass
    assert sysctl.read_text() == "0\n"
    with mainjob.mmap_min_addr_zero(str(tmp_path / "absent")):     # no such sysctl: nothing to do
        pass
    assert not (tmp_path / "absent").exists()


def test_the_first_answer_waits_for_no_kernel_build_of_the_kvm_probe(monkeypatch):
    """Issue 29: on a fresh machine the KVM probe builds a kernel of its own first (the first line came 18 min 55 s
    in): the first answer takes TCG+icount on the smallest kernel and the probe comes after it; where the probe's
    kernel is built already, the probe decides the first answer's clock too."""
    monkeypatch.setattr(mainjob, "_kvm_kernel_cached", lambda variant: False)
    monkeypatch.setattr(mainjob, "probe_kvm", lambda *_: pytest.fail("the first answer must not wait for the probe"))
    first, decided = mainjob.first_decision("auto", "kvm")
    assert first.clock == "icount" and not decided
    steps = mainjob.job(first, mainjob.Decision("kvm", "probed", "kvm"), [])
    assert [s.what for s in steps][:3] == ["first answer: host", "first answer: icount guest", "first answer: report"]
    assert any("--accel" in s.argv and "kvm" in s.argv for s in steps[3:])
    monkeypatch.setattr(mainjob, "_kvm_kernel_cached", lambda variant: True)
    monkeypatch.setattr(mainjob, "probe_kvm", lambda *_: None)
    first, decided = mainjob.first_decision("auto", "kvm")
    assert first.clock == "kvm" and decided


@pytest.mark.parametrize("usable", [{0}, {0, 1}, {0, 1, 2, 3}])
def test_the_kvm_steps_and_their_probe_boot_as_many_vcpus_as_can_be_pinned(monkeypatch, usable):
    """Each KVM guest vCPU is pinned to a host CPU of its own: on a machine (or a cgroup) with one CPU the KVM
    steps boot one vCPU, and the probe boots what they boot (issue 27: the nested test's one-CPU outer machine),
    where two vCPUs, the default, could never be pinned after the probe had chosen KVM."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(usable))
    want = min(2, len(usable))
    steps = mainjob.plan(mainjob.decide(probe=lambda: None))
    kvm = [parsed(s) for s in guest_steps(steps) if parsed(s).accel == "kvm"]
    assert len(kvm) == 3 and all(args.cpus == want and args.pin_vcpus for args in kvm)
    assert vm.host_cpus_for(want) == tuple(sorted(usable))[:want]       # each can be pinned
    probed = {}
    monkeypatch.setattr(vm, "_kvm_usable", lambda: None)
    monkeypatch.setattr(kernel, "build", lambda **kw: type("Build", (), {"bzimage": pathlib.Path("bzImage")}))
    monkeypatch.setattr(kvmprobe, "probe", lambda bzimage, accel, **kw: probed.update(kw) or None)
    mainjob.probe_kvm("kvm")
    assert probed["cpus"] == want
