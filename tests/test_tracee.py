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


def test_a_tracee_that_cannot_set_up_says_so_with_its_own_status():
    """Not EXIT_USAGE: the command line was right, the mmap of its pages failed (address space limited)."""
    import resource
    import subprocess

    from tracers.driver import VMEXEC, constants

    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (256 << 20, 256 << 20))  # noqa: E731
    proc = subprocess.run([str(VMEXEC), "tracee", "-n", "1", "-k", "1048576"], capture_output=True, text=True,
                          preexec_fn=limit, timeout=60)
    exits = constants()["exit"]
    assert proc.returncode == exits["setup"] not in (exits["usage"], exits["failed"]), proc.stderr
    assert "mmap" in proc.stderr and not proc.stdout
