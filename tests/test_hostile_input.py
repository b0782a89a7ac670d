"""Issue 21: what a hostile user tries.  Nothing lost (concurrent runs, files appearing, full disks),
nothing false accepted (non-finite numbers), and bad input is one line and exit 2, never a traceback."""
import json
import os
import pathlib
import subprocess
import sys

import pyperf
import pytest

from bench import results
from bench.errors import BenchError, UsageError
from conftest import run_bench

REPO = pathlib.Path(__file__).resolve().parent.parent


def one_line(proc, status=2):
    """The CLI's promise for bad input: exit status, one line on stderr, no traceback."""
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def hidden(directory: pathlib.Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- items 1 and 2: publishing

def test_eight_concurrent_runs_into_one_directory_leave_eight_distinct_results(tmp_path):
    where = tmp_path / "results"
    env = {**os.environ, results.DIRECTORY_ENV: str(where), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "bench", "run", "--fast", "--backends", "native", "--pin", "same"]
    procs = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(8)]
    outputs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in outputs]
    printed = {line.removeprefix("results: ") for out, _ in outputs for line in out.splitlines()
               if line.startswith("results: ")}
    assert len(printed) == 8
    assert {str(p) for p in where.glob("*.json")} == printed
    for path in printed:
        assert pyperf.BenchmarkSuite.load(path).get_benchmark_names() == ["native:pin=in-process"]
    assert hidden(where) == []


def test_a_file_appearing_at_the_target_during_the_write_is_never_overwritten(tmp_path):
    final = tmp_path / "r.json"

    def write_while_another_appears(staged):
        staged.write_text("mine\n")
        final.write_text("theirs\n")

    with pytest.raises(UsageError, match="appeared"):
        results.publish(final, write_while_another_appears)     # an explicit --output: exit 2
    assert final.read_text() == "theirs\n" and hidden(tmp_path) == []
    final.unlink()
    went = results.publish(final, write_while_another_appears, exists="rename")    # a name the harness chose
    assert went == tmp_path / "r-2.json" and went.read_text() == "mine\n"
    assert final.read_text() == "theirs\n" and hidden(tmp_path) == []
