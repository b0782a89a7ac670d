"""A non-editable install works from any directory and keeps its results there, not in site-packages."""
import os
import pathlib
import shutil
import subprocess
import sys

import pyperf

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_a_non_editable_install_runs_anywhere(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # A copy of the sources (no venv, no build products, no results), so the build leaves the checkout alone.
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", "results", "vmexec"))
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)], capture_output=True,
                             text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VMEXEC_RESULTS_DIR")}

    def bench(*args):
        return subprocess.run([str(python), "-m", "bench", *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)

    listing = bench("list")
    assert listing.returncode == 0, listing.stderr
    assert "native" in listing.stdout and "ptrace-sysemu" in listing.stdout
    run = bench("run", "--fast", "--backends", "native")
    assert run.returncode == 0, run.stderr
    [written] = (work / "results").glob("*.json")
    assert pyperf.BenchmarkSuite.load(str(written)).get_benchmark_names() == ["native:pin=in-process"]
    site = subprocess.run([str(python), "-c", "import bench, tracers; print(bench.__file__, tracers.__file__)"],
                          cwd=work, env=env, capture_output=True, text=True, check=True).stdout
    assert str(source) not in site and "site-packages" in site
    assert not list((venv / "lib").glob("python*/site-packages/results"))
