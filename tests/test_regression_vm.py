"""The regression check in the icount guest, against the committed baseline (slow: marked vm).

The honest run against the same baseline is .ci/run's own check; here the
README's command runs with a planted +20% slowdown in ptrace-sysemu and must
fail naming that backend.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import regression as R
from tracers.driver import PLANT_ENV

BASELINE = Path(__file__).resolve().parent.parent / "baselines" / "guest-icount.json"

pytestmark = pytest.mark.vm


def test_a_planted_slowdown_of_20_percent_fails_the_check_naming_ptrace_sysemu():
    values = R.load(BASELINE).values
    sysemu = values[(values["backend"] == "ptrace-sysemu") & (values["pin"] == "same")]["value_ns"].median()
    env = {**os.environ, PLANT_ENV: f"ptrace-sysemu={round(0.2 * sysemu)}"}
    proc = subprocess.run([sys.executable, "-m", "bench", "check", "--baseline", str(BASELINE), "--format", "json"],
                          capture_output=True, text=True, env=env, timeout=3600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["regressed"] == ["ptrace-sysemu"]
    same = [r for r in report["ratios"] if r["ratio"] == "ptrace-sysemu:pin=same ÷ native:pin=in-process"]
    assert same and same[0]["verdict"] == "regressed" and same[0]["change"] == pytest.approx(1.2, abs=0.02)
