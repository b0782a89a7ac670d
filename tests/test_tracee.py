"""The tracee alone is the native baseline: it checks the real return values."""
from conftest import run_vmexec


def test_native_tracee_checks_real_getppid():
    proc, report = run_vmexec("tracee", "-n", "1000")
    assert proc.returncode == 0
    assert report["calls"] == report["matched"] == 1000


def test_native_tracee_detects_a_value_that_is_not_the_real_one():
    proc, report = run_vmexec("tracee", "-n", "1000", "-e", "-12345")
    assert proc.returncode == 1
    assert report["matched"] == 0 and report["first_bad"] != -12345


def test_driver_rejects_bad_counts_with_one_line():
    for bad in ("0", "-5", "abc", "99999999999999999999999"):
        proc, _ = run_vmexec("run", "native", "-n", bad)
        assert proc.returncode == 2, bad
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
