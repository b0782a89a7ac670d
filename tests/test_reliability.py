"""Faults, hangs, interruptions and denied privileges: clear reasons, no debris, no lost data."""
import ctypes
import json
import os
import pathlib
import signal
import struct
import subprocess
import sys
import time
import uuid

import pyperf
import pytest


BENCH = [sys.executable, "-m", "bench"]


def leftovers(marker: str) -> list[str]:
    """Live (non-zombie) processes started by a run carrying `marker` in their environment."""
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() not in (proc / "environ").read_bytes():
                continue
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        state = stat.rsplit(")", 1)[1].split()[0]
        if state != "Z":
            found.append(f"{proc.name} {stat.split()[1]} {state}")
    return found


def assert_no_leftovers(marker: str, grace: float = 10.0) -> None:
    deadline = time.monotonic() + grace
    while leftovers(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers(marker) == []


@pytest.fixture
def env():
    """An environment whose processes we can find: VMEXEC_FAULT reaches the workers and the driver."""
    marker = f"marker-{uuid.uuid4().hex}"
    environ = dict(os.environ, VMEXEC_FAULT=f"{marker}=none")
    yield environ, marker
    assert_no_leftovers(marker)


def with_fault(env, spec):
    environ, marker = env
    return dict(environ, VMEXEC_FAULT=f"{marker}=none,{spec}")


QUICK = ["run", "--pin", "same", "--processes", "1", "--values", "1"]


@pytest.mark.parametrize("fault, reason", [
    ("tracee-segv", "SIGSEGV"),
    ("tracer-crash", "killed by signal SIGSEGV"),
])
def test_a_crash_fails_that_backend_only_with_its_reason_recorded(tmp_path, env, fault, reason):
    out = tmp_path / "r.json"
    proc = subprocess.run([*BENCH, *QUICK, "--backends", "native,ptrace-sysemu,ptrace-syscall",
                           "--output", str(out)], env=with_fault(env, f"ptrace-sysemu={fault}"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert "ptrace-sysemu:pin=same" in proc.stderr and reason in proc.stderr
    suite = pyperf.BenchmarkSuite.load(str(out))
    assert set(suite.get_benchmark_names()) == {"native:pin=in-process", "ptrace-syscall:pin=same"}
    failed = json.loads(suite.get_benchmarks()[0].get_metadata()["vmexec_failed"])
    assert reason in failed["ptrace-sysemu:pin=same"]


def test_a_worker_that_fails_mid_measurement_is_recorded_and_the_next_case_still_measured(tmp_path, env):
    environ, marker = env
    out = tmp_path / "r.json"
    proc = subprocess.run([*BENCH, *QUICK, "--backends", "native,ptrace-sysemu,ptrace-syscall",
                           "--output", str(out)],
                          env=dict(environ, VMEXEC_FAULT_IN_WORKER=f"{marker}=none,ptrace-sysemu=tracee-segv"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "worker failed during measurement" in proc.stderr
    suite = pyperf.BenchmarkSuite.load(str(out))
    assert set(suite.get_benchmark_names()) == {"native:pin=in-process", "ptrace-syscall:pin=same"}
    # the case after the failed one timed itself, not a neighbour: its values are ptrace-syscall's
    meta = suite.get_benchmark("ptrace-syscall:pin=same").get_metadata()
    assert meta["vmexec_backend"] == "ptrace-syscall"
    assert "ptrace-sysemu:pin=same" in json.loads(meta["vmexec_failed"])


def test_stop_on_failure_measures_nothing(tmp_path, env):
    out = tmp_path / "r.json"
    proc = subprocess.run([*BENCH, *QUICK, "--backends", "native,ptrace-sysemu", "--stop-on-failure",
                           "--output", str(out)], env=with_fault(env, "ptrace-sysemu=tracee-segv"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "--stop-on-failure" in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_hung_backend_is_killed_at_its_timeout_and_reported(tmp_path, env):
    out = tmp_path / "r.json"
    start = time.monotonic()
    proc = subprocess.run([*BENCH, *QUICK, "--backends", "native,ptrace-sysemu", "--timeout", "3",
                           "--output", str(out)], env=with_fault(env, "ptrace-sysemu=hang"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "timeout" in proc.stderr
    assert time.monotonic() - start < 120
    assert out.exists()


def ignore_sigint():
    """preexec_fn: SIGINT ignored, as a script's background job (`bench run &`) inherits it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("how", ["ctrl-c", "sigint", "sigint-background", "sigterm", "sigkill"])
def test_interrupted_run_leaves_no_debris_and_no_half_written_result(tmp_path, env, how):
    environ, marker = env
    earlier = tmp_path / "earlier.json"
    earlier.write_text("precious")
    proc = subprocess.Popen([*BENCH, "run", "--backends", "ptrace-sysemu,ptrace-syscall", "--processes", "40",
                             "--output", str(tmp_path / "r.json")], env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=ignore_sigint if how == "sigint-background" else None)
    try:
        for line in proc.stdout:        # wait until pyperf workers are tracing
            if line.startswith("measuring"):
                break
        # Busy: the main process and a worker (a snapshot can fall between two workers: poll).
        deadline = time.monotonic() + 30
        while len(leftovers(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(leftovers(marker)) >= 2, "the run should be busy: main process and a worker"
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)      # the terminal signals the whole group
        else:    # the main process alone, as `kill`, `timeout -s` or a CI runner's cancel does
            proc.send_signal({"sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}.get(how, signal.SIGINT))
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    if how in ("sigint", "sigint-background", "sigterm"):
        assert proc.returncode == 130 and "interrupted by SIG" in output, output[-2000:]
    assert_no_leftovers(marker)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier.json"]
    assert earlier.read_text() == "precious"


def deny_ptrace():
    """preexec_fn: a seccomp filter that fails ptrace() with EPERM, as a locked-down host would."""
    bpf = [  # (code, jt, jf, k)
        (0x20, 0, 0, 4),                 # ld arch
        (0x15, 0, 3, 0xC000003E),        # jeq AUDIT_ARCH_X86_64
        (0x20, 0, 0, 0),                 # ld nr
        (0x15, 0, 1, 101),               # jeq __NR_ptrace
        (0x06, 0, 0, 0x00050000 | 1),    # ret ERRNO(EPERM)
        (0x06, 0, 0, 0x7FFF0000),        # ret ALLOW
    ]
    code = b"".join(struct.pack("HBBI", *insn) for insn in bpf)
    buf = ctypes.create_string_buffer(code)
    prog = struct.pack("HxxxxxxQ", len(bpf), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
    assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    assert libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.create_string_buffer(prog)) == 0


def test_denied_ptrace_makes_ptrace_backends_unavailable_with_eperm(tmp_path):
    listing = subprocess.run([*BENCH, "list"], preexec_fn=deny_ptrace, capture_output=True, text=True,
                             timeout=120)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    for name in ("ptrace-sysemu", "ptrace-syscall", "python-ptrace-sysemu", "seccomp-trace"):
        line = next(l for l in lines if l.startswith(name + " "))
        assert "unavailable: EPERM" in line, line
    # seccomp-unotify needs no ptrace: its listener reaches the supervisor over a socketpair.
    for name in ("native", "seccomp-unotify"):
        line = next(l for l in lines if l.startswith(name + " "))
        assert line.split()[2] == "available", line

    out = tmp_path / "r.json"
    run = subprocess.run([*BENCH, *QUICK, "--backends", "native,ptrace-sysemu,seccomp-unotify", "--output", str(out)],
                         preexec_fn=deny_ptrace, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "ptrace-sysemu:pin=same: unavailable: EPERM" in run.stdout
    suite = pyperf.BenchmarkSuite.load(str(out))
    assert "seccomp-unotify:pin=same" in suite.get_benchmark_names()
    meta = suite.get_benchmarks()[0].get_metadata()
    assert "EPERM" in json.loads(meta["vmexec_unavailable"])["ptrace-sysemu:pin=same"]


def test_driver_rejects_huge_and_negative_counts():
    from tracers.driver import VMEXEC
    for n in ("-1", "-5", "0", "abc", "1e9", "99999999999999999999999", "18446744073709551616"):
        proc = subprocess.run([str(VMEXEC), "run", "native", "-n", n], capture_output=True, text=True)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, (n, proc.stderr)


def _interrupt_when_busy(args: list[str], environ: dict, marker: str, busy: int, sig: signal.Signals,
                         preexec_fn=None) -> subprocess.CompletedProcess:
    """`python -m bench ARGS`, sent sig once `busy` of its processes (it included) are alive; its result."""
    proc = subprocess.Popen([*BENCH, *args], env=environ, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
    try:
        deadline, seen = time.monotonic() + 120, []
        while len(seen) < busy and time.monotonic() < deadline:
            time.sleep(0.2)
            seen = leftovers(marker)     # a snapshot: /proc of a ptrace-stopped process can flicker
        assert len(seen) >= busy, f"never busy: {seen}"
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, output)


@pytest.mark.parametrize("how", ["sigterm", "sigint-background"])
def test_an_interrupted_rfc_leaves_no_tracer_no_tracee_and_no_result(tmp_path, env, how):
    environ, marker = env
    out = tmp_path / "rfc.json"
    # Busy: bench rfc, the RFC's ptrace program and its tracee.
    proc = _interrupt_when_busy(["rfc", "--seconds", "120", "--output", str(out)], environ, marker, 3,
                                signal.SIGTERM if how == "sigterm" else signal.SIGINT,
                                ignore_sigint if how == "sigint-background" else None)
    assert proc.returncode == 130 and "interrupted" in proc.stdout, proc.stdout[-2000:]
    assert_no_leftovers(marker)
    assert not out.exists()


def test_an_interrupted_check_stops_its_run_and_leaves_nothing(tmp_path, env, tiny_results):
    from bench import regression as R

    _, marker = env
    baseline = R.write([tiny_results], tmp_path / "b.json")
    before = set(pathlib.Path(os.environ.get("TMPDIR", "/tmp")).glob("vmexec-check-*"))
    # The repeated run hangs in ptrace-sysemu: the check is busy (it, its run, the run's driver) until stopped.
    proc = _interrupt_when_busy(["check", "--baseline", str(baseline)], with_fault(env, "ptrace-sysemu=hang"),
                                marker, 3, signal.SIGTERM)
    assert proc.returncode == 130 and "interrupted" in proc.stdout, proc.stdout[-2000:]
    assert_no_leftovers(marker)
    assert set(pathlib.Path(os.environ.get("TMPDIR", "/tmp")).glob("vmexec-check-*")) == before
