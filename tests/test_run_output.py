"""What `bench run` ends with: a labelled table, the speed-up over PTRACE_SYSEMU, pyperf's warnings once,
a busy-host warning; and the command line's name and version."""
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from bench import results, stats
from bench.commands import cli
from bench.render import summary
from conftest import run_bench

REPO = pathlib.Path(__file__).resolve().parent.parent
#: A committed run with ptrace-sysemu at both pinnings and in-process backends.
COMMITTED = REPO / "results" / "vm-20261126-151706.json"


def test_speedup_lines_are_the_runs_own_ratios():
    lines = summary.speedups(COMMITTED)
    r = stats.ratios(stats.load([COMMITTED]), "seccomp-unotify")
    same = r[r["pin"] == "same"].iloc[0]
    [line] = [x for x in lines if x.strip().startswith("seccomp-unotify ran") and "pin=same" in x]
    n, e = map(float, re.search(r"ran ([\d.]+) ± ([\d.]+) times faster", line).groups())
    assert n == pytest.approx(same["speedup"], abs=0.005)
    assert 0 < e < same["speedup_high"] - same["speedup_low"]
    # Slower backends say so, with the factor above 1.
    [slow] = [x for x in lines if x.strip().startswith("ptrace-syscall ran") and "pin=same" in x]
    assert "times slower than ptrace-sysemu" in slow and float(slow.split()[2]) > 1
    # An in-process backend appears once, against the preferred pinning.
    assert sum(x.strip().startswith("native ran") for x in lines) == 1


def test_no_reference_no_speedup(tmp_path):
    data = json.loads(COMMITTED.read_text())
    data["benchmarks"] = [b for b in data["benchmarks"]
                          if not b["metadata"].get("name", "").startswith("ptrace-sysemu:")]
    assert data["benchmarks"]
    path = tmp_path / "no-sysemu.json"
    path.write_text(json.dumps(data))
    assert summary.speedups(path) == []
    assert "no ptrace-sysemu case" in summary.summary(path)


def test_pyperf_warnings_are_counted_per_kind():
    line = summary.warnings_line(COMMITTED)
    found = summary.pyperf_warnings(COMMITTED)
    assert line.startswith(f"pyperf warned about {len({c for v in found.values() for c in v})} of 75 cases")
    assert "unstable" in line and f"pyperf check {COMMITTED}" in line


def _suite_with_load(tmp_path, threads: int, cpus: int = 2) -> pathlib.Path:
    data = json.loads(COMMITTED.read_text())
    for bench in data["benchmarks"]:
        for run in bench["runs"]:
            run.setdefault("metadata", {}).update(runnable_threads=threads, load_avg_1min=0.5)
            bench["metadata"]["vmexec_cpus"] = cpus
    path = tmp_path / f"load-{threads}.json"
    path.write_text(json.dumps(data))
    return path


def test_a_busy_host_is_named_and_an_idle_one_is_not(tmp_path):
    busy, idle = _suite_with_load(tmp_path, 6), _suite_with_load(tmp_path, 1)
    warning = results.busy_warning([busy, idle])
    assert warning.startswith("warning: the host was busy") and "load-6.json" in warning
    assert "load-1.json" not in warning and "up to 6 runnable" in warning
    assert results.busy_warning([idle]) is None


def test_a_quiet_run_ends_with_the_summary_and_no_repeated_warning(tmp_path):
    out = tmp_path / "run.json"
    proc = run_bench("run", "--quiet", "--backends", "native,ptrace-sysemu", "--pin", "same",
                     "--processes", "2", "--values", "3", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "WARNING: the benchmark result may be unstable" not in text + proc.stderr
    assert "Use --quiet option" not in text
    assert "median ns/syscall" in text and "pyperf's lines above give the mean" in text
    assert re.search(r"native ran [\d,.]+ ± [\d,.]+ times faster than ptrace-sysemu", text)
    assert text.rstrip().splitlines()[-1] == f"results: {out}"
    # Exactly one summary of pyperf's warnings when pyperf would have warned.
    assert text.count("pyperf warned about") == (1 if summary.pyperf_warnings(out) else 0)


def test_version_and_program_name():
    proc = run_bench("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"python -m bench {cli.version()}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", cli.version())
    assert cli.program_name("/venv/bin/vmexec-bench") == "vmexec-bench"
    assert cli.program_name("/x/bench/__main__.py") == "python -m bench"


def test_the_version_falls_back_to_pyproject():
    code = ("import importlib.metadata as m\n"
            "def missing(name): raise m.PackageNotFoundError(name)\n"
            "m.version = missing\n"
            "from bench.commands import cli; print(cli.version())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    import tomllib
    assert out.stdout.strip() == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_bootstrap_error_is_a_spread_not_zero():
    # The ± of a speed-up comes from resampling the workers: a real spread, never printed as 0.
    [line] = [x for x in summary.speedups(COMMITTED) if x.strip().startswith("seccomp-trap ran")]
    assert float(re.search(r"± ([\d.]+)", line).group(1)) > 0
    assert np.isfinite(float(line.split()[2]))
