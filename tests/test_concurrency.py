"""Concurrent commands never mix or lose each other's output (issue 28, section 3)."""
import os
import subprocess
import sys
import time

import pytest

from bench import outputs
from bench.errors import UsageError
from conftest import run_bench
from data.synthetic import HOST, write_reference_set, write_suite


def bench(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "bench", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_reference_set(tmp_path_factory.mktemp("results"))


def test_two_reports_into_one_directory_leave_one_whole_report(files, tmp_path):
    """One report of the host run alone, one of the full set, at once: what stays is one of them, whole
    (its report.md, its report.html and its plots, none of the other's)."""
    out = tmp_path / "report"
    alone, full = (bench("report", *paths, "--output", out) for paths in
                   ([files["host"]], [files["host"], files["guest"], files["rfc"]]))
    for proc in (alone, full):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    host_alone = md.startswith("No process_vm_exec result here")
    assert ("No process_vm_exec result here" in html) == host_alone
    # The host-alone report draws no pages or parallel plot from a guest; the full one draws the host-vs-guest.
    linked = {name for name in os.listdir(out) if f"({name})" in md}
    assert linked | {"report.md", "report.html"} == set(os.listdir(out))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("vmexec-", ".report"))]


def test_a_report_over_an_older_one_keeps_none_of_its_plots_but_keeps_other_files(files, tmp_path):
    out = tmp_path / "report"
    assert run_bench("report", files["host"], files["guest"], files["rfc"], "--output", out).returncode == 0
    (out / "first-screen.png").write_bytes(b"a screenshot someone took")
    (out / "stale-plot.svg").write_text("<svg/>")
    md = (out / "report.md").read_text()
    (out / "report.md").write_text(md + "\n![old](stale-plot.svg)\n")      # an older report drew it
    proc = run_bench("report", files["host"], "--output", out)
    assert proc.returncode == 0, proc.stderr
    md = (out / "report.md").read_text()
    assert not (out / "stale-plot.svg").exists()
    assert (out / "first-screen.png").read_bytes() == b"a screenshot someone took"
    assert {n for n in os.listdir(out) if f"({n})" not in md} == {"report.md", "report.html", "first-screen.png"}


def test_a_report_never_replaces_a_directory_that_is_not_its_own(files, tmp_path):
    (tmp_path / "runs").mkdir()
    proc = run_bench("report", files["host"], "--output", tmp_path)
    assert proc.returncode == 2 and "holds runs" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "runs").is_dir()


def test_a_second_baseline_into_one_file_is_refused_not_lost(tmp_path):
    run = write_suite(tmp_path / "run.json", HOST)
    out = tmp_path / "b.json"
    with outputs.exclusive(out, wait=False):         # another `bench baseline --output b.json` is writing it
        proc = run_bench("baseline", run, "--output", out)
    assert proc.returncode == 2 and "another command is writing" in proc.stderr and not out.exists()
    assert run_bench("baseline", run, "--output", out).returncode == 0 and out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]      # its lock went with it


def test_two_baselines_at_once_one_written_one_refused(tmp_path):
    runs = [write_suite(tmp_path / f"run{i}.json", HOST, started=f"2026-01-0{i + 1}T00:00:00") for i in range(2)]
    out = tmp_path / "b.json"
    procs = [bench("baseline", *runs, "--output", out) for _ in range(2)]
    outcomes = sorted((p.communicate(timeout=300)[1], p.returncode)[::-1] for p in procs)
    # Either both ran one after the other (each replacing a baseline of this machine, as asked), or one
    # was refused in one line: never two "exit 0" of which one baseline silently went.
    assert [o[0] for o in outcomes] in ([0, 0], [0, 2])
    if outcomes[1][0] == 2:
        assert "another command is writing" in outcomes[1][1]


def test_exclusive_waits_for_the_holder_when_asked(tmp_path):
    out = tmp_path / "x"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from bench import outputs\n"
                               "with outputs.exclusive(__import__('pathlib').Path(sys.argv[1])):\n"
                               "    print('held', flush=True); time.sleep(1)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(UsageError):
        with outputs.exclusive(out, wait=False):
            pass
    start = time.monotonic()
    with outputs.exclusive(out):
        assert holder.poll() is not None or time.monotonic() - start > 0.3
    holder.wait()


def test_a_check_output_dir_in_use_or_not_empty_is_refused_before_any_export(tmp_path):
    d = tmp_path / "kept"
    with outputs.claim_empty(d):        # a check running there now
        start = time.monotonic()
        proc = run_bench("check", "--against", "HEAD", "--output-dir", d, "--", "run", "--fast")
        assert proc.returncode == 2 and "in use by another command" in proc.stderr, proc.stderr
    (d / "reference.json").write_text("{}")     # an earlier check's
    proc = run_bench("check", "--against", "HEAD", "--output-dir", d, "--", "run", "--fast")
    assert proc.returncode == 2 and "not empty" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - start < 60, "refused only after exporting and building"
    assert os.listdir(d) == ["reference.json"]


def test_two_checks_into_one_output_dir_one_runs_one_is_refused(tmp_path):
    d = tmp_path / "kept"
    small = ["--", "run", "--backends", "native,ptrace-sysemu", "--pin", "same", "--processes", "1", "--values", "1"]
    procs = [bench("check", "--against", "HEAD", "--output-dir", d, *small) for _ in range(2)]
    outcomes = sorted((p.communicate(timeout=900)[1], p.returncode)[::-1] for p in procs)
    assert all("Traceback" not in err for _, err in outcomes), outcomes
    refused = [err for status, err in outcomes if status == 2]
    assert len(refused) == 1 and ("in use by another command" in refused[0] or "not empty" in refused[0])
    assert outcomes[0][0] in (0, 1, 3), outcomes[0][1]
    assert (d / "worktree").is_dir()


def test_claim_empty_is_one_commands_alone(tmp_path):
    with outputs.claim_empty(tmp_path / "d"):
        with pytest.raises(UsageError, match="in use"):
            with outputs.claim_empty(tmp_path / "d"):
                pass
