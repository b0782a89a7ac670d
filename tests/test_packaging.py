"""A non-editable install works from any directory and keeps its results there, not in site-packages."""
import os
import pathlib
import shutil
import subprocess
import sys

import pyperf

from bench.measure import environment

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
    # Installed from a wheel, the commands have what a clone has: the console script names itself, reports
    # its version, and the kernel build reads the same patches and fragments (the same cache keys).
    script = venv / "bin" / "vmexec-bench"
    version = subprocess.run([str(script), "--version"], cwd=work, env=env, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == "vmexec-bench 0.1.0", version
    helped = subprocess.run([str(script), "kernel", "build", "--help"], cwd=work, env=env, capture_output=True,
                            text=True)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: vmexec-bench kernel build"), helped
    keys = ("from bench.measure import kernel, environment\n"
            "assert not environment.in_checkout(), environment.REPO\n"
            "print({v: kernel.cache_key(v) for v in kernel.VARIANTS})")
    from bench.measure import kernel
    if kernel.SOURCE_TARBALL.exists():
        installed = subprocess.run([str(python), "-c", keys], cwd=work, env=env, capture_output=True, text=True)
        assert installed.returncode == 0, installed.stderr
        assert installed.stdout.strip() == str({v: kernel.cache_key(v) for v in kernel.VARIANTS})
    data = subprocess.run([str(python), "-c", "from bench.measure.environment import asset, ASSETS; import glob;"
                           "print('\\n'.join(sorted(p for a in ASSETS for p in glob.glob(str(asset(a))))))"],
                          cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert len(data) == sum(len(list(REPO.glob(a))) for a in environment.ASSETS) and "site-packages" in data[0]
    assert os.access([p for p in data if p.endswith("guest-init.sh")][0], os.X_OK)
    # Without the kernel source, one line saying what to install, not a traceback.
    missing = subprocess.run([str(python), "-c", "import pathlib, sys; from bench.measure import kernel;"
                              "kernel.SOURCE_TARBALL = pathlib.Path('/nonexistent/linux-source.tar.xz');"
                              "from bench.commands.cli import main; sys.exit(main(['kernel', 'build']))"],
                             cwd=work, env=env, capture_output=True, text=True)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().count("\n") == 0 and "apt-get install linux-source-6.12" in missing.stderr
