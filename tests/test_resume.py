"""Issue 29, item 3: an interrupted `bench run` keeps the cases it completed, and a rerun with --resume
measures only the rest."""
import os
import signal
import subprocess
import sys
import time

import pyperf

from bench.measure import runner

BENCH = [sys.executable, "-m", "bench"]
RUN = ["run", "--backends", "native,ptrace-sysemu", "--pin", "same", "--processes", "1", "--values", "2",
       "--timeout", "120"]


def _interrupt_in_second_case(argv, env, log) -> tuple[int, str]:
    """argv run until its second case begins (the first completed), then SIGINT; (exit status, output).
    The output goes to a file, and the run's own exit is waited for: under CI a descendant once held a pipe
    open for two minutes after `bench run` had exited 130 (not reproduced elsewhere; see the closing note)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env=env, text=True, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while "case 2 of 2" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, log.read_text()


def test_an_interrupted_run_keeps_its_completed_cases_and_resume_measures_only_the_rest(tmp_path):
    out = tmp_path / "r.json"
    # The second case passes its check, then hangs while measured: the interrupt finds the first one done.
    hang = dict(os.environ, VMEXEC_FAULT_IN_WORKER="ptrace-sysemu=hang")
    status, said = _interrupt_in_second_case([*BENCH, *RUN, "--output", str(out)], hang, tmp_path.parent / f"{tmp_path.name}.log")
    assert status == 130, said[-2000:]
    [partial] = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert "1 completed case(s) kept in" in said and str(partial) in said and "--resume" in said
    assert "no results written" not in said and not out.exists()
    assert [b.get_name() for b in pyperf.BenchmarkSuite.load(str(partial)).get_benchmarks()] == ["native:pin=in-process"]

    proc = subprocess.run([*BENCH, *RUN, "--output", str(out), "--resume"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resume: 1 case(s) measured by an interrupted run kept" in proc.stdout
    assert "case 1 of 1: ptrace-sysemu:pin=same" in proc.stdout and "native:pin=in-process (" not in proc.stdout
    suite = pyperf.BenchmarkSuite.load(str(out))
    assert sorted(b.get_name() for b in suite.get_benchmarks()) == ["native:pin=in-process", "ptrace-sysemu:pin=same"]
    assert suite.get_benchmarks()[0].get_metadata()["vmexec_resumed"] == "native:pin=in-process"
    if runner.kernel_config():      # the kernel's configuration, hashed, where it is readable (item 4)
        assert suite.get_benchmarks()[0].get_metadata()["vmexec_kernel_config"] == runner.kernel_config()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]       # the partial is gone


def test_other_options_do_not_pick_up_a_partial_run(tmp_path):
    out = tmp_path / "r.json"
    hang = dict(os.environ, VMEXEC_FAULT_IN_WORKER="ptrace-sysemu=hang")
    status, said = _interrupt_in_second_case([*BENCH, *RUN, "--output", str(out)], hang, tmp_path.parent / f"{tmp_path.name}.log")
    assert status == 130, said[-2000:]
    other = [*RUN[:-2], "--timeout", "100"]     # another case plan: not the interrupted run
    proc = subprocess.run([*BENCH, *other, "--output", str(out), "--resume", "--backends", "native"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resume: no interrupted run of these cases" in proc.stdout
    assert "vmexec_resumed" not in pyperf.BenchmarkSuite.load(str(out)).get_benchmarks()[0].get_metadata()
    assert any(p.name.endswith(".partial") for p in tmp_path.iterdir())     # the other run's, kept
