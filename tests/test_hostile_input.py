"""Issue 21: what a hostile user tries.  Nothing lost (concurrent runs, files appearing, full disks),
nothing false accepted (non-finite numbers), and bad input is one line and exit 2, never a traceback."""
import gzip
import json
import math
import os
import pathlib
import subprocess
import sys

import pyperf
import pytest

from bench.anatomy import counts as AN
from bench import regression as R
from bench import results
from bench.errors import BenchError, UsageError
from conftest import run_bench
from data.synthetic import HOST, write_rfc, write_suite

REPO = pathlib.Path(__file__).resolve().parent.parent
#: Host-like runs without sweeps (as tests/test_regression.py uses them).
BASE = {k: v for k, v in HOST.items() if ":pages=" not in k and ":parallel=" not in k}


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


def test_without_hard_links_the_name_is_still_claimed_exclusively(tmp_path, monkeypatch):
    """A file system without link() (EPERM): publishing still never replaces a file that appeared."""
    import errno

    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(os, "link", no_link)
    final = tmp_path / "r.json"
    assert results.publish(final, lambda staged: staged.write_text("mine\n")) == final
    assert final.read_text() == "mine\n"
    went = results.publish(final, lambda staged: staged.write_text("again\n"), exists="rename")
    assert went.name == "r-2.json" and final.read_text() == "mine\n" and hidden(tmp_path) == []


# --------------------------------------------------------------------------- item 3: non-finite values


def with_value(path: pathlib.Path, case: str, value: float) -> pathlib.Path:
    """path with the first value of case's first worker replaced, as a hand-edited file would have it."""
    data = json.loads(path.read_text())
    bench = next(b for b in data["benchmarks"] if b["metadata"]["name"] == case)
    bench["runs"][1]["values"][0] = value       # runs[0] holds only the common metadata here
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("bad", [math.inf, math.nan, -1.0])
def test_a_run_with_a_non_finite_value_is_bad_input_for_every_command(tmp_path, bad):
    good = write_suite(tmp_path / "good.json", BASE, started="2026-01-01T00:00:00")
    baseline = R.write([good], tmp_path / "baseline.json")
    broken = with_value(write_suite(tmp_path / "broken.json", BASE, started="2026-01-01T00:01:00"),
                        "native:pin=in-process", bad)
    for args in (["check", "--baseline", str(baseline), "--current", str(broken)],
                 ["compare", str(good), str(broken)],
                 ["report", str(good), str(broken), "--output", str(tmp_path / "report")],
                 ["baseline", str(good), str(broken), "--output", str(tmp_path / "b2.json")],
                 ["history", str(good), str(broken), "--output", str(tmp_path / "history")]):
        err = one_line(run_bench(*args))
        assert "broken.json" in err, (args, err)
        if bad == math.inf:     # pyperf itself refuses nan and negative values when it loads them
            assert "case native:pin=in-process: value inf is not a finite positive time" in err, (args, err)
    assert not (tmp_path / "b2.json").exists()


def test_an_rfc_replica_with_an_infinite_cost_is_bad_input(tmp_path):
    good = write_suite(tmp_path / "good.json", BASE)
    rfc = write_rfc(tmp_path / "rfc.json")
    data = json.loads(rfc.read_text())
    data["programs"][0]["true_ns_per_iteration"] = math.inf
    rfc.write_text(json.dumps(data))
    err = one_line(run_bench("report", str(good), str(rfc), "--output", str(tmp_path / "report")))
    assert "rfc.json: program ptrace_vm_exec: true_ns_per_iteration" in err


def test_a_ratio_that_cannot_be_computed_is_never_unchanged():
    for args in [(math.nan, math.nan, math.nan, 0.02), (1.0, math.nan, 1.01, 0.02), (1.0, 0.99, 1.01, math.nan),
                 (math.inf, 2.0, math.inf, 0.02)]:
        assert R.judge(*args) == "missing", args
    assert R.judge(1.0, 0.99, 1.01, 0.02) == "unchanged"


def rewrite_baseline_meta(path: pathlib.Path, edit) -> pathlib.Path:
    data = json.loads(path.read_text())
    data["metadata"][R.BASELINE_KEY] = edit(json.loads(data["metadata"][R.BASELINE_KEY]))
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda m: {**m, "noise": {k: {**n, "sd": math.nan} for k, n in m["noise"].items()}}, "not finite"),
    (lambda m: json.dumps(m)[:-1] + "]", "malformed vmexec_baseline"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "noise"}), "malformed vmexec_baseline"),
    (lambda m: json.dumps({**m, "rerun": "run --fast"}), "malformed vmexec_baseline"),
])
def test_a_baseline_with_non_finite_noise_or_malformed_metadata_is_bad_input(tmp_path, edit, message):
    runs = [write_suite(tmp_path / f"run{i}.json", BASE, seed=i + 1, started=f"2026-01-01T00:0{i}:00")
            for i in range(2)]
    baseline = R.write(runs, tmp_path / "baseline.json")

    def apply(meta):
        out = edit(meta)
        return out if isinstance(out, str) else json.dumps(out)
    rewrite_baseline_meta(baseline, apply)
    err = one_line(run_bench("check", "--baseline", str(baseline), "--current", str(runs[0])))
    assert message in err


def test_metadata_of_the_wrong_type_is_bad_input(tmp_path):
    good = write_suite(tmp_path / "good.json", BASE)
    data = json.loads(good.read_text())
    for b in data["benchmarks"]:
        b.setdefault("metadata", {})["vmexec_pages"] = "lots"
    (tmp_path / "lots.json").write_text(json.dumps(data))
    err = one_line(run_bench("compare", str(good), str(tmp_path / "lots.json")))
    assert "lots.json: malformed metadata of the case" in err and "vmexec_pages 'lots'" in err


# --------------------------------------------------------------------------- items 4, 6, 10, 11, 16: options

#: A run as small as the harness makes one, for the checks that must refuse it before measuring.
SMALL = ["run", "--backends", "native", "--pin", "same", "--processes", "1", "--values", "1"]


@pytest.mark.parametrize("args, message", [
    ([*SMALL, "--timeout", "nan"], "--timeout"),
    ([*SMALL, "--timeout", "inf"], "--timeout"),
    ([*SMALL, "--timeout", "1e308"], "--timeout"),
    ([*SMALL, "--min-time", "nan"], "--min-time"),
    (["rfc", "--seconds", "nan"], "--seconds"),
    (["rfc", "--seconds", "inf"], "--seconds"),
    ([*SMALL, "--processes", str(10 ** 20)], "--processes"),
    ([*SMALL, "--values", str(10 ** 9)], "--values"),
    ([*SMALL, "--pages", "1048577"], "--pages"),
    ([*SMALL, "--tag", "note=two\nlines"], "--tag"),
    ([*SMALL, "--output", "/tmp/two\nlines.json"], "newline"),
    (["--bogus"], "--bogus"),
])
def test_absurd_options_are_refused_before_anything_is_measured(args, message):
    proc = run_bench(*args, timeout=120)
    assert message in one_line(proc)
    assert proc.stdout == ""        # nothing checked, nothing measured


def test_fast_keeps_the_processes_and_values_given(tmp_path):
    """--processes and --values override the mode, as the help says: pyperf's --fast replaced them."""
    out = tmp_path / "r.json"
    proc = run_bench("run", "--fast", "--backends", "native", "--processes", "1", "--values", "1",
                     "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    bench = pyperf.BenchmarkSuite.load(str(out)).get_benchmark("native:pin=in-process")
    assert bench.get_nvalue() == 1        # --fast alone: 3 processes of 2 values


# --------------------------------------------------------------------------- item 13: the C driver's numbers

@pytest.mark.parametrize("option", [["-P", "4294967297"], ["-t", "4294967296"], ["-w", "4294967297"],
                                    ["-T", "999"], ["-t", "999"]])
def test_the_driver_never_truncates_a_number_and_answers_usage_errors_alike(option):
    from tracers.driver import VMEXEC
    proc = subprocess.run([str(VMEXEC), "run", "native", "-n", "1000", *option], capture_output=True, text=True,
                          timeout=60)
    assert option[0] in one_line(proc)


def test_the_driver_reads_decimal_only():
    from conftest import run_vmexec
    proc, report = run_vmexec("run", "native", "-n", "010")
    assert proc.returncode == 0 and report["syscalls"] == 10
    proc, _ = run_vmexec("run", "native", "-n", "0x10")
    one_line(proc)


# --------------------------------------------------------------------------- items 7, 8, 14, 16: anatomy

#: Guest anatomy features (instructions, CR3 writes, kernel entries per syscall) and host costs that fit them.
FEATURES = {"native": (227, 0, 1), "ptrace-sysemu": (12434, 2, 5), "ptrace-syscall": (24396, 4, 9),
            "seccomp-trap": (5310, 0, 2), "seccomp-unotify": (6469, 2, 3), "process-vm-exec": (2386, 2, 2)}
PINS = {"native": "in-process", "seccomp-trap": "in-process"}


def model_inputs(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """(anatomy directory, host run) from which anatomy-model fits a model."""
    anatomy = tmp_path / "anatomy"
    anatomy.mkdir()
    backends = [{"backend": b, "insns_per_syscall": i, "totals": {"cr3_write": c, "syscall": k, AN.EVENT: 0.0}}
                for b, (i, c, k) in FEATURES.items()]
    (anatomy / "anatomy.json").write_text(json.dumps({"meta": {}, "backends": backends}))
    host = write_suite(tmp_path / "host.json", {f"{b}:pin={PINS.get(b, 'same')}": 0.2 * i + 300 * c + 50 * k
                                               for b, (i, c, k) in FEATURES.items() if b != "process-vm-exec"})
    return anatomy, host


def test_anatomy_model_output_is_new_and_atomic(tmp_path):
    anatomy, host = model_inputs(tmp_path)
    base = ["anatomy-model", "--anatomy", str(anatomy), "--host", str(host), "--output"]
    written = tmp_path / "model.md"
    proc = run_bench(*base, str(written))
    assert proc.returncode == 0, proc.stderr
    assert written.read_text().startswith("# Cost model") and hidden(tmp_path) == []
    for target in (host, tmp_path / "model.md", tmp_path, pathlib.Path("/proc/model.md")):
        before = target.read_bytes() if target.is_file() else None
        one_line(run_bench(*base, str(target)))
        assert (target.read_bytes() if target.is_file() else None) == before, target


@pytest.mark.parametrize("content", [b"{}", b"\x89PNG\r\n\x1a\n\x00\xff", b'{"meta": {}, "backends": [{"backend": '
                                     b'"native", "insns_per_syscall": Infinity, "totals": {}}]}'],
                         ids=["empty object", "binary", "infinite count"])
def test_a_malformed_anatomy_json_is_bad_input(tmp_path, content):
    anatomy, host = model_inputs(tmp_path)
    (anatomy / "anatomy.json").write_bytes(content)
    assert "anatomy.json" in one_line(run_bench("anatomy-model", "--anatomy", str(anatomy), "--host", str(host)))
    # bench report finds the anatomy beside the results
    err = one_line(run_bench("report", str(host), "--output", str(tmp_path / "report")))
    assert "anatomy.json" in err


def raw_directory(tmp_path: pathlib.Path, counts: bytes) -> pathlib.Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "counts.txt.gz").write_bytes(counts)
    (raw / "kallsyms.txt.gz").write_bytes(gzip.compress(b"ffffffff81000000 T _stext\n"))
    (raw / "driver.tsv").write_text('native\t0\t{"ok": true, "calls": 100, "matched": 100, "elapsed_ns": 1}\n')
    (raw / "vmexec").write_bytes(b"")
    return raw


@pytest.mark.parametrize("counts", [b"\x1f\x8b\x08 truncated", gzip.compress(b"# no window at all\n")],
                         ids=["corrupt gzip", "nothing to pair"])
def test_anatomy_from_raw_on_junk_is_bad_input(tmp_path, counts):
    raw = raw_directory(tmp_path, counts)
    err = one_line(run_bench("anatomy", "--from-raw", str(raw), "--output", str(tmp_path / "out")))
    assert str(raw) in err


@pytest.mark.parametrize("args", [["--syscalls", "0"], ["--backends", "no-such-backend"]])
def test_anatomy_with_bad_arguments_makes_no_directory(tmp_path, args):
    one_line(run_bench("anatomy", "--output", str(tmp_path / "out"), *args))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- item 5: a full disk

@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB file system mounted for the test (needs root, as the harness does)."""
    where = tmp_path / "disk"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield where
    subprocess.run(["umount", str(where)], check=True)


def fill(where: pathlib.Path, leave: int = 0) -> None:
    """Leave about `leave` bytes free on where's file system (an empty file can still be made)."""
    st = os.statvfs(where)
    with open(where / "filler", "wb", buffering=0) as f:
        try:
            f.write(b"\0" * max(st.f_bavail * st.f_frsize - leave, 0))
            while not leave:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def test_a_full_disk_is_found_before_measuring_and_leaves_nothing(tmp_path, small_disk):
    good = write_suite(tmp_path / "good.json", BASE)
    fill(small_disk)
    for args in ([*SMALL, "--output", str(small_disk / "r.json")],
                 ["baseline", str(good), "--output", str(small_disk / "b.json")],
                 ["report", str(good), "--output", str(small_disk / "report")]):
        proc = run_bench(*args)
        assert "KiB free" in one_line(proc), args
        assert proc.stdout == ""
    assert [p.name for p in small_disk.iterdir()] == ["filler"]


def test_a_disk_that_fills_during_the_report_leaves_no_partial_file(tmp_path, small_disk, monkeypatch):
    from bench.render import report
    good = write_suite(tmp_path / "good.json", BASE)
    fill(small_disk, leave=100 << 10)       # room for a plot or two
    monkeypatch.setattr(report, "REPORT_BYTES", 0, raising=False)    # past the up-front check
    with pytest.raises(BenchError, match="could not write .*No space left on device"):
        report.write_report([good], small_disk)
    assert hidden(small_disk) == []
    assert [p for p in small_disk.iterdir() if p.suffix in (".png", ".svg")]       # it did fill up mid-way
    for png in small_disk.glob("*.png"):
        assert png.read_bytes().endswith(b"IEND\xaeB`\x82"), png      # complete, not truncated


# --------------------------------------------------------------------------- item 12: duplicate baseline runs

def test_a_baseline_refuses_one_run_counted_twice(tmp_path):
    run = write_suite(tmp_path / "run.json", BASE, started="2026-01-01T00:00:00")
    copy = tmp_path / "copy.json"
    copy.write_bytes(run.read_bytes())
    for twice in ([run, run], [run, copy]):
        err = one_line(run_bench("baseline", *map(str, twice), "--output", str(tmp_path / "b.json")))
        assert "same run" in err
    assert not (tmp_path / "b.json").exists()


# --------------------------------------------------------------------------- item 15: stale temporary files

def test_a_run_clears_the_temporary_files_of_runs_that_died(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"vmexec-bench-pid{dead.pid}-x1y2z3"           # bench.measure.runner.WORKDIR, PID, random
    live = tmp_path / f"vmexec-bench-pid{os.getpid()}-a1b2c3"        # this test's: alive
    for d in (stale, live):
        d.mkdir()
        (d / "suite.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "bench", *SMALL, "--output", str(tmp_path / "r.json")],
                          env={**os.environ, "TMPDIR": str(tmp_path)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists() and (live / "suite.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "r.json"])


def test_compare_names_no_internal_function(tmp_path):
    rfc, run = write_rfc(tmp_path / "rfc.json"), write_suite(tmp_path / "a.json", BASE)
    err = one_line(run_bench("compare", str(rfc), str(run)))
    assert "RFC-replica" in err and "load_rfc" not in err


# --------------------------------------------------------------------------- item 14: the tracee's -s

def test_a_tracee_asked_to_be_traced_by_a_parent_that_is_not_its_tracer_refuses_instead_of_stopping():
    from tracers.driver import VMEXEC
    for args in (["-s", "1"], ["-s"]):      # a PID that is not the parent; the old form, from a shell
        proc = subprocess.run([str(VMEXEC), "tracee", *args, "-n", "10"], capture_output=True, text=True, timeout=30)
        one_line(proc)


def test_python_ptrace_sysemu_still_traces_its_tracee():
    import tracers
    from tracers.base import RunSpec
    backend = tracers.get_backend("python-ptrace-sysemu")
    if backend.unavailable():
        pytest.skip(backend.unavailable())
    result = backend.run(RunSpec(syscalls=200))
    assert result.elapsed_ns > 0
