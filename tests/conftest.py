import json
import subprocess
import sys

import pytest

import tracers
from tracers.driver import VMEXEC


def run_bench(*args, timeout=600):
    """`python -m bench ARGS` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                          timeout=timeout)


def run_vmexec(*args, timeout=120):
    proc = subprocess.run([str(VMEXEC), *args], capture_output=True, text=True, timeout=timeout)
    report = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    return proc, report


@pytest.fixture(scope="session")
def available_backends():
    return [b for b in tracers.all_backends() if b.unavailable() is None]


@pytest.fixture(scope="session")
def tiny_results(tmp_path_factory):
    """A real, minimal run: two backends, one worker, one value each."""
    path = tmp_path_factory.mktemp("results") / "tiny.json"
    proc = run_bench("run", "--backends", "native,ptrace-sysemu", "--pin", "same,cross",
                     "--processes", "1", "--values", "2", "--output", str(path))
    assert proc.returncode == 0, proc.stderr
    return path
