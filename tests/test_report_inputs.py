"""Issue 29, item 4: a report says what it stands on.  Every input is listed with its kernel and machine
(the committed anatomy and prices included); the busy-host warning and pyperf's instability count stand
beside the verdict they weaken; an answer drawn from runs pyperf calls unstable in most cases says so in
its first sentence."""
import json
import pathlib
import re

import pyperf

from bench import results
from bench.measure import runner
from bench.render import report
from data.synthetic import GUEST, HOST, HOST_UNAVAILABLE, write_suite

REPO = pathlib.Path(__file__).resolve().parent.parent
COMMITTED = [REPO / "results" / name for name in
             ("vm-20261126-151706.json", "vm-tcg-icount-20261126-141613.json", "rfc-vm-tcg-icount-20261126-144328.json")]


def _section(md: str, heading: str) -> str:
    start = md.index(f"## {heading}\n")
    end = md.find("\n## ", start + 1)
    return md[start:end if end > 0 else None]


def _busy(path: pathlib.Path, load: float) -> pathlib.Path:
    """The suite with every worker run's 1-minute load set, as pyperf records it."""
    data = json.loads(path.read_text())
    for bench in data["benchmarks"]:
        for run in bench["runs"]:
            run.setdefault("metadata", {})["load_avg_1min"] = load
    path.write_text(json.dumps(data))
    return path


def test_every_input_is_listed_with_its_kernel_and_machine_the_committed_anatomy_included(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    md = report.write_report(COMMITTED, tmp_path / "r")["report.md"].read_text()
    listed = _section(md, "What this report stands on")
    rows = {re.match(r"\| `([^`]+)`", line).group(1): line for line in listed.splitlines()
            if line.startswith("| `")}
    for path in COMMITTED:
        assert str(path.relative_to(REPO)) in rows, path
    assert "results/anatomy/anatomy.json" in rows                       # the anatomy the report quotes
    assert "results/anatomy/mitigations/anatomy.json" in rows           # the one the cost model is fitted to
    host = rows["results/vm-20261126-151706.json"]
    assert "6.18.44-fc-v669" in host and "Intel(R) Xeon(R) Processor" in host
    assert "6.12.117-vmexec" in rows["results/vm-tcg-icount-20261126-141613.json"]
    assert "6.12.117-vmexec-mitigations" in rows["results/anatomy/mitigations/anatomy.json"]


def test_a_mostly_unstable_run_says_so_in_the_first_sentence_and_beside_the_verdict(tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    # Worker medians 30% apart: pyperf's std dev check flags every case.
    host = write_suite(d / "testhost-20260101-000000.json", HOST, unavailable=HOST_UNAVAILABLE, between=0.3)
    guest = write_suite(d / "vm-tcg-icount-20260101-000100.json", GUEST, vm=True)
    md = report.write_report([host, guest], tmp_path / "r")["report.md"].read_text()
    first = md.split("\n\n")[0]
    assert re.match(r"Measured in runs pyperf calls unstable \(`testhost-20260101-000000`: (\d+) of \1 cases\), "
                    r"so these figures may move with load: we timed", first), first
    assert first.split(". ")[0].count("unstable") == 1 and "we timed one intercepted system call" in first
    assert " ".join(report.answer([host, guest])) == " ".join(first.splitlines())      # what the README quotes
    verdict = _section(md, "The verdict in full")
    assert re.search(r"`testhost-20260101-000000`: (\d+) of \1 cases unstable", verdict), verdict


def test_a_stable_run_opens_as_before(tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    host = write_suite(d / "testhost-20260101-000000.json", HOST, unavailable=HOST_UNAVAILABLE)
    guest = write_suite(d / "vm-tcg-icount-20260101-000100.json", GUEST, vm=True)
    md = report.write_report([host, guest], tmp_path / "r")["report.md"].read_text()
    assert md.startswith("We timed one intercepted system call")
    assert "*Measured on a busy host:*" not in md


def test_the_busy_host_warning_stands_beside_the_verdict(tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    host = _busy(write_suite(d / "testhost-20260101-000000.json", HOST, unavailable=HOST_UNAVAILABLE), load=7.0)
    guest = write_suite(d / "vm-tcg-icount-20260101-000100.json", GUEST, vm=True)
    md = report.write_report([host, guest], tmp_path / "r")["report.md"].read_text()
    verdict = _section(md, "The verdict in full")
    line = next(p for p in verdict.split("\n\n") if p.startswith("*Measured on a busy host:*"))
    assert "testhost-20260101-000000.json" in line and "on 2 CPUs" in line


def test_a_run_records_its_busy_host_state_and_the_report_reads_it(tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    measured = _busy(write_suite(tmp_path / "suite.json", HOST), load=7.0)
    final = runner.finish(measured, d / "testhost-20260101-000000.json", {"vmexec_command": "bench run"})
    recorded = json.loads(pyperf.BenchmarkSuite.load(str(final)).get_benchmarks()[0].get_metadata()["vmexec_busy"])
    assert recorded["busy"] == recorded["runs"] > 0 and recorded["worst"] == 7.0 and recorded["cpus"] == 2
    # The recorded state is what is read, not recomputed: without it the runs here would look idle.
    data = json.loads(final.read_text())
    for bench in data["benchmarks"]:
        for run in bench["runs"]:
            run.get("metadata", {}).pop("load_avg_1min", None)
    final.write_text(json.dumps(data))
    assert results.busy_warning([final]) and "7 runnable threads or load on 2 CPUs" in results.busy_warning([final])


def test_a_row_names_the_kernel_build_key_or_config_hash_and_the_machine_under_a_guest(tmp_path):
    from bench.render import provenance
    host = write_suite(tmp_path / "testhost-20260101-000000.json", HOST)
    guest = write_suite(tmp_path / "vm-tcg-icount-20260101-000100.json", GUEST, vm=True)
    for path, meta in ((host, {"vmexec_kernel_config": "0123456789abcdef"}),
                       (guest, {"vmexec_kernel_key": "fedcba9876543210", "vmexec_host_cpu_model": "Host CPU",
                                "vmexec_host_kernel": "6.1.0-host"})):
        data = json.loads(path.read_text())
        for bench in data["benchmarks"]:
            bench["metadata"].update(meta)
        path.write_text(json.dumps(data))
    h, g = provenance.of_result(host), provenance.of_result(guest)
    assert h.kernel == "6.1.0-host" and h.kernel_key == "config sha256 0123456789abcdef" and h.what == "host run (bare-metal)"
    assert g.kernel == "6.12.57-vmexec" and g.kernel_key == "fedcba9876543210"
    assert g.host == "Host CPU, kernel 6.1.0-host" and g.what == "guest run (tcg/icount)"
