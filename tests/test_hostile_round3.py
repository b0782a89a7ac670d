"""Issue 28, section 4: every input, any shape, one line.  The third hostile round's cases, fixed as
classes: a results file is read bounded and its metadata checked where it is loaded; every option,
nested commands' included, is checked before any step; a cache, a prices record, an anatomy, a
notebook or an output that cannot be used is said in one line."""
import gzip
import json
import os
import pathlib
import sys

import pyperf
import pytest

from bench import results, stats
from bench.errors import UsageError
from bench.measure import kernel
from conftest import run_bench
from data.synthetic import HOST, HOST_UNAVAILABLE, case_metadata, write_suite

REPO = pathlib.Path(__file__).resolve().parent.parent
COMMITTED_PRICES = REPO / "results" / "anatomy" / "prices" / "prices-vm-20261204T181358.json"
COMMITTED_ANATOMY = REPO / "results" / "anatomy" / "mitigations" / "anatomy.json"


def one_line(proc, status=2):
    assert proc.returncode == status, (proc.returncode, proc.stderr[-3000:])
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


@pytest.fixture
def host(tmp_path):
    return write_suite(tmp_path / "host.json", HOST, unavailable=HOST_UNAVAILABLE)


def edited(host: pathlib.Path, name: str, edit) -> pathlib.Path:
    data = json.loads(host.read_text())
    edit(data)
    path = host.with_name(name)
    path.write_text(json.dumps(data))
    return path


# --------------------------------------------------------------------------- results files

@pytest.mark.parametrize("name, edit, message", [
    ("failed-list", lambda d: d["metadata"].update(vmexec_failed=json.dumps(["a", "b"])), "vmexec_failed"),
    ("failed-int", lambda d: d["metadata"].update(vmexec_failed=5), "vmexec_failed"),
    ("unavailable-junk", lambda d: d["metadata"].update(vmexec_unavailable="not json {"), "vmexec_unavailable"),
    ("bench-meta-list", lambda d: d["benchmarks"][0].update(metadata=["x"]), "is a list, not an object"),
    ("run-string", lambda d: d["benchmarks"][0]["runs"].__setitem__(0, "a run"), "runs are not a list"),
    ("cpus-junk", lambda d: d["metadata"].update(vmexec_cpus="many"), "vmexec_cpus"),
    ("cpus-used-junk", lambda d: d["metadata"].update(vmexec_cpus_used="0;1"), "vmexec_cpus_used"),
    ("vm-junk", lambda d: d["metadata"].update(vmexec_vm="maybe"), "vmexec_vm"),
    ("timing-junk", lambda d: d["metadata"].update(vmexec_timing="sundial"), "vmexec_timing"),
    ("first-call-negative", lambda d: d["metadata"].update(vmexec_first_call_ns=json.dumps({"x": -1})),
     "vmexec_first_call_ns"),
])
def test_metadata_of_the_wrong_kind_is_refused_where_it_is_loaded(host, name, edit, message):
    bad = edited(host, f"{name}.json", edit)
    with pytest.raises(UsageError, match=message):
        stats.load([bad])
    assert message in one_line(run_bench("compare", str(host), str(bad)))


def test_report_on_metadata_of_the_wrong_kind_is_one_line_and_writes_nothing(host, tmp_path):
    bad = edited(host, "bad.json", lambda d: d["benchmarks"][0].update(metadata=["x"]))
    out = tmp_path / "report"
    one_line(run_bench("report", str(bad), "--output", str(out)))
    assert not out.exists()


def test_a_single_case_pyperf_calls_unstable_gets_its_report(tmp_path, host):
    """pyperf check prints no title over a suite of one case: its warnings are that case's."""
    import numpy as np

    meta = {**json.loads(host.read_text())["metadata"], **case_metadata("ptrace-sysemu:pin=same"),
            "name": "ptrace-sysemu:pin=same", "loops": 1}
    rng = np.random.default_rng(0)
    runs = [pyperf.Run(list(1e-5 * rng.lognormal(0, 1.0, 3)), metadata=meta, collect_metadata=False)
            for _ in range(5)]
    single = tmp_path / "single.json"
    pyperf.BenchmarkSuite([pyperf.Benchmark(runs)]).dump(str(single))
    out = tmp_path / "report"
    proc = run_bench("report", str(single), "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = (out / "report.md").read_text()
    assert "1 of 1 cases flagged" in md and "standard deviation" in md


def test_a_deeply_nested_json_file_is_one_line_and_no_result_in_a_directory(tmp_path, host):
    deep = tmp_path / "deep.json"
    deep.write_text('{"a":' * 50000 + "1" + "}" * 50000)
    assert "nested deeper" in one_line(run_bench("report", str(deep), "--output", str(tmp_path / "r")))
    where = tmp_path / "results"
    where.mkdir()
    (where / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (where / "host.json").write_bytes(host.read_bytes())
    assert results.newest(where) == [where / "host.json"]
    env = {**os.environ, results.RESULTS_ENV: str(where)}
    import subprocess
    proc = subprocess.run([sys.executable, "-m", "bench", "history", "--output", str(tmp_path / "h.csv")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_a_compressed_file_is_read_only_up_to_a_bound(tmp_path):
    bomb = tmp_path / "bomb.json.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write(b'{"kind": "rfc-replica", "x": "' + b" " * (results.MAX_BYTES + 1) + b'"}')
    assert bomb.stat().st_size < results.MAX_BYTES // 50
    with pytest.raises(UsageError, match="larger than"):
        results.read_json(bomb)


# --------------------------------------------------------------------------- options, before any step

@pytest.mark.parametrize("args, message", [
    (["main", "--", "--bogus"], "--bogus"),
    (["check", "--against", "HEAD", "--", "run", "--bogus-option"], "--bogus-option"),
    (["check", "--against", "HEAD", "--", "vm", "run", "--", "--bogus-option"], "--bogus-option"),
    (["vm", "run", "--", "--bogus-option"], "--bogus-option"),
    (["vm", "rfc", "--", "--seconds", "inf"], "--seconds"),
    (["vm", "shell", "--memory", "-5", "--", "true"], "--memory"),
    (["vm", "shell", "--vcpus", "9999", "--", "true"], "--vcpus"),
    (["vm", "shell", "--boot-timeout", "0", "--", "true"], "--boot-timeout"),
    (["vm", "run", "--run-timeout", "inf", "--", "--fast"], "--run-timeout"),
    (["vm", "run", "--output-dir", "", "--", "--fast"], "empty path"),
    (["report", "--output", ""], "empty path"),
    (["run", "--fast", "--output", ""], "empty path"),
    (["prices", "--runs", "-1"], "--runs"),
])
def test_options_are_refused_before_any_step_runs(args, message):
    proc = run_bench(*args, timeout=120)
    assert message in one_line(proc)
    assert "kernel:" not in proc.stderr and proc.stdout == ""


def test_list_to_a_full_stdout_is_one_line():
    import subprocess
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "bench", "list"], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    assert "No space left" in one_line(proc, status=1)


def test_an_empty_notebook_is_one_line(tmp_path):
    pytest.importorskip("nbclient")
    empty = tmp_path / "empty.ipynb"
    empty.touch()
    assert "not a notebook" in one_line(run_bench("notebooks", str(empty)))


# --------------------------------------------------------------------------- the kernel cache

def test_an_unwritable_kernel_cache_is_one_line():
    import subprocess
    proc = subprocess.run([sys.executable, "-m", "bench", "kernel", "build"], capture_output=True, text=True,
                          env={**os.environ, "XDG_CACHE_HOME": "/proc/self/no-cache"}, timeout=120)
    assert "XDG_CACHE_HOME" in one_line(proc)


@pytest.fixture
def real_bzimage():
    """A bzImage already in the shared cache (read only), or skip: this test builds nothing."""
    for home in sorted((kernel.cache_root() / "kernel").glob("*")):
        meta, _ = kernel.cached_build(home, "bench")
        if meta:
            return home / "bzImage", meta["release"]
    pytest.skip("no cached benchmark kernel to copy")


def test_a_corrupt_cached_build_is_never_taken_for_a_build(tmp_path, real_bzimage):
    bzimage, release = real_bzimage
    home = tmp_path / "key"
    home.mkdir()

    def cache(build_json: str, image: bytes | None):
        (home / "build.json").write_text(build_json)
        (home / "bzImage").write_bytes(image if image is not None else bzimage.read_bytes())
        return kernel.cached_build(home, "bench")

    good = json.dumps({"release": release})
    assert cache(good, None) == ({"release": release}, "")
    assert cache("", None)[0] is None and "unreadable" in cache("", None)[1]
    assert cache(good, b"")[0] is None and "not a kernel image" in cache(good, b"")[1]
    other = json.dumps({"release": "6.1.0-other"})
    assert cache(other, None)[0] is None and "6.1.0-other" in cache(other, None)[1]
    renamed = json.dumps({"release": release.replace("6.12", "6.13")})
    assert cache(renamed, None)[0] is None and f"release {release}" in cache(renamed, None)[1]
    assert kernel.cached_build(tmp_path / "never-built", "bench") == (None, "")


# --------------------------------------------------------------------------- prices and anatomy

@pytest.mark.parametrize("part, values, what", [
    ("entry", "nan", "nan"), ("signal", [-5.0, -5.0], "negative"), ("threads", [], "empty"),
])
def test_a_prices_record_with_times_no_clock_gives_is_one_line(tmp_path, host, part, values, what):
    record = json.loads(COMMITTED_PRICES.read_text())
    record["ns_per_iteration"][part] = [float("nan"), 1.0] if values == "nan" else values
    bad = tmp_path / f"prices-{what}.json"
    bad.write_text(json.dumps(record))
    err = one_line(run_bench("prices", "--prices", str(bad), "--host", str(host)))
    assert f"part {part}" in err


def test_prices_checks_its_outputs_and_inputs_before_composing(tmp_path, host):
    args = ["prices", "--prices", str(COMMITTED_PRICES), "--host", str(host)]
    assert "--anatomy" in one_line(run_bench(*args, "--anatomy", str(tmp_path / "missing")))
    assert "not writable" in one_line(run_bench(*args, "--markdown", "/proc/such.md"))
    assert "does not exist" in one_line(run_bench(*args, "--markdown", str(tmp_path / "no" / "such.md")))


def test_negative_anatomy_counts_are_one_line(tmp_path, host):
    doc = json.loads(COMMITTED_ANATOMY.read_text())
    doc["backends"][0]["insns_per_syscall"] = -1000.0
    (tmp_path / "anatomy.json").write_text(json.dumps(doc))
    assert "negative" in one_line(run_bench("anatomy-model", "--anatomy", str(tmp_path), str(host)))
