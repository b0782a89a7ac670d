"""The command line: results readable by pyperf's own tools, bad input is one line and exit 2."""
import json
import os
import subprocess
import sys

import pyperf
import pytest

from bench.measure import environment
import tracers

from conftest import run_bench


def test_results_load_with_pyperf_and_carry_metadata(tiny_results):
    suite = pyperf.BenchmarkSuite.load(str(tiny_results))
    names = set(suite.get_benchmark_names())
    assert {"native:pin=in-process", "ptrace-sysemu:pin=same", "ptrace-sysemu:pin=cross"} <= names
    meta = suite.get_benchmark("ptrace-sysemu:pin=same").get_metadata()
    assert meta["vmexec_backend"] == "ptrace-sysemu" and meta["vmexec_pin"] == "same"
    for key in ("vmexec_kernel", "vmexec_cpu_model", "vmexec_mitigations", "vmexec_accelerator",
                "vmexec_commit", "vmexec_unavailable"):
        assert meta[key], key


@pytest.mark.parametrize("tool", [["stats"], ["compare_to", "{0}"]])
def test_pyperf_tools_read_the_results(tiny_results, tool):
    args = [a.format(tiny_results) for a in tool]
    proc = subprocess.run([sys.executable, "-m", "pyperf", *args, str(tiny_results)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_results_are_never_overwritten(tiny_results):
    before = tiny_results.read_bytes()
    proc = run_bench("run", "--backends", "native", "--output", str(tiny_results))
    assert proc.returncode == 2 and "exists" in proc.stderr
    assert tiny_results.read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["run", "--backends", "no-such-backend"], "unknown backend"),
    (["run", "--pin", "diagonal"], "--pin"),
    (["run", "--pages", "-3"], "--pages"),
    (["run", "--parallel", "two"], "--parallel"),
    (["run", "--parallel", "0"], "--parallel"),
    (["run", "--parallel", "1,65"], "--parallel"),
    (["run", "--processes", "0"], "--processes"),
    (["run", "--cpus", "0,4096"], "CPU 4096"),
    (["run", "--output", "/nonexistent-dir/x.json"], "does not exist"),
    (["run", "--tag", "novalue"], "KEY=VALUE"),
    (["run", "--output", "/proc/vmexec-bench.json"], "not writable"),
    (["run", "--cpus", "0,99"], "CPU 99"),
    (["run", "--timeout", "0"], "--timeout"),
    (["run", "--backends", ""], "--backends"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = run_bench(*args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_list_shows_every_backend_with_its_state():
    proc = run_bench("list")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    shown = {line.split()[0]: line for line in lines if line[:1].strip()}
    backends = tracers.all_backends()
    assert list(shown) == [b.name for b in backends]
    for b in backends:
        why = b.unavailable()
        assert b.kind in ("tracer", "in-process", "binary rewriting")
        assert b.kind == "tracer" or b.in_process
        line = shown[b.name]
        assert [line[25:41].strip(), line[42:]] == [b.kind, "available" if why is None else f"unavailable: {why}"]
        assert lines[lines.index(shown[b.name]) + 1].strip() == b.description


def test_the_whole_run_keeps_every_cpu_of_the_machine(tmp_path):
    """A pinned case (here the Python tracer's) must not confine the run, its workers or later cases."""
    out = tmp_path / "r.json"
    proc = run_bench("run", "--backends", "python-ptrace-sysemu,native", "--pin", "same", "--parallel", "1,2",
                     "--processes", "1", "--values", "1", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    cpus = len(os.sched_getaffinity(0))
    suite = pyperf.BenchmarkSuite.load(str(out))
    for bench in suite.get_benchmarks():
        meta = bench.get_metadata()
        assert int(meta["vmexec_cpus"]) == cpus, bench.get_name()
        # pyperf records cpu_affinity only when a worker was confined to fewer CPUs than the machine has
        if cpus == os.cpu_count():
            assert "cpu_affinity" not in meta, (bench.get_name(), meta.get("cpu_affinity"))
    unpinned = suite.get_benchmark("native:pin=none:parallel=2").get_metadata()
    assert (unpinned["vmexec_cpu_tracer"], unpinned["vmexec_cpu_tracee"]) == ("none", "none")


def test_an_icount_guest_reports_the_parallel_sweep_unmeasurable(tmp_path):
    """Under icount M pairs time-slice one instruction clock: the sweep says so instead of measuring it."""
    out = tmp_path / "r.json"
    # The guest's clock is what `bench vm` started it with (bench.measure.environment.guest), never a tag:
    # this run is told so as the guest's boot would tell it.
    started = {**environment.GUEST_KEYS, "accelerator": "tcg", "timing": "icount"}
    proc = subprocess.run([sys.executable, "-c", "import sys; from bench.measure import environment as e; "
                           f"e.guest = lambda: {started!r}; from bench.commands.cli import main; "
                           "sys.exit(main(sys.argv[1:]))",
                           "run", "--backends", "native", "--parallel", "1,2", "--processes", "1", "--values", "1",
                           "--output", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "native:pin=none:parallel=2: unavailable: icount" in proc.stdout
    suite = pyperf.BenchmarkSuite.load(str(out))
    assert suite.get_benchmark_names() == ["native:pin=in-process"]
    why = json.loads(suite.get_benchmarks()[0].get_metadata()["vmexec_unavailable"])
    assert why["native:pin=none:parallel=2"].startswith("icount: every vCPU")
    meta = suite.get_benchmarks()[0].get_metadata()
    assert (meta["vmexec_vm"], meta["vmexec_timing"], meta["vmexec_accelerator"]) == ("1", "icount", "tcg")


def test_a_reader_that_goes_away_ends_the_output_without_a_traceback():
    """`bench list | head -1`: the pipe's read end is closed before bench writes a byte, so the first
    write fails with EPIPE; bench stops quietly with 141 (128 + SIGPIPE), as a pipeline's tools do."""
    read, write = os.pipe()
    os.close(read)
    try:
        p = subprocess.run([sys.executable, "-m", "bench", "list"], stdout=write, stderr=subprocess.PIPE,
                           text=True, timeout=60)
    finally:
        os.close(write)
    assert p.returncode == 141, p.stderr
    assert p.stderr == ""
