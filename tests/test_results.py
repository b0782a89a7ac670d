"""The results store: names, atomic writes, classification by content, newest by recorded start."""
import pathlib
import re

import pytest

from bench import results
from bench.results import Case
from bench.errors import BenchError, UsageError
from data.synthetic import write_rfc, write_suite

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def test_every_metadata_key_the_harness_names_is_in_the_registry():
    """One place names every field: a vmexec_* key written or read anywhere else is registered."""
    named = {key for path in [*BENCH.rglob("*.py"), pathlib.Path(__file__).parent / "data" / "synthetic.py"]
             for key in re.findall(r"[\"'](vmexec_[a-z_]*[a-z])[\"']", path.read_text())}   # a key, not a prefix
    assert named and named <= set(results.METADATA), sorted(named - set(results.METADATA))


def test_files_are_classified_by_content_and_the_newest_by_recorded_start(tmp_path):
    older = write_suite(tmp_path / "zz-host.json", {"native:pin=in-process": 300.0}, started="2025-01-01T00:00:00")
    newer = write_suite(tmp_path / "aa-host.json", {"native:pin=in-process": 300.0}, started="2026-01-01T00:00:00")
    guest = write_suite(tmp_path / "plain-name.json", {"native:pin=in-process": 900.0}, vm=True,
                        started="2024-01-01T00:00:00")
    rfc = write_rfc(tmp_path / "also-plain.json", started="2023-01-01T00:00:00")
    (tmp_path / "notes.json").write_text("not a result")
    assert [results.classify(results.read_json(p)) for p in (older, guest, rfc)] == ["host", "guest", "rfc"]
    assert results.newest(tmp_path) == [newer, guest, rfc]
    with pytest.raises(UsageError, match="no results"):
        results.newest(tmp_path / "nothing-here")


def test_the_results_directory_is_under_the_current_directory_unless_named(tmp_path, monkeypatch):
    monkeypatch.delenv(results.DIRECTORY_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert results.directory() == tmp_path / "results"
    assert results.new_path("h").parent == tmp_path / "results"
    monkeypatch.setenv(results.DIRECTORY_ENV, str(tmp_path / "elsewhere"))
    assert results.directory() == tmp_path / "elsewhere"
    assert results.directory(tmp_path / "named") == tmp_path / "named"


def test_publish_is_atomic_and_never_leaves_a_partial_file(tmp_path):
    final = tmp_path / "r.json"

    def write_half_then_fail(staged):
        staged.write_text("{half")
        raise OSError("disk full")

    with pytest.raises(BenchError, match="could not write .*r.json: disk full"):     # one line, no traceback
        results.publish(final, write_half_then_fail)
    assert list(tmp_path.iterdir()) == []
    results.publish(final, lambda staged: staged.write_text("{}"))
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    with pytest.raises(UsageError, match="never overwritten"):
        results.check_new(final)


@pytest.mark.parametrize("case, name", [
    (Case("native", "in-process"), "native:pin=in-process"),
    (Case("ptrace-sysemu", "same", pages=16), "ptrace-sysemu:pin=same:pages=16"),
    (Case("seccomp-trap", "none", parallel=2), "seccomp-trap:pin=none:parallel=2"),
    (Case("ptrace-sysemu", "cross", 256, 4), "ptrace-sysemu:pin=cross:pages=256:parallel=4"),
])
def test_a_case_is_named_as_results_and_baselines_name_it_and_read_back(case, name):
    assert case.encode() == name and Case.parse(name) == case
    assert Case.recorded("ignored", case.metadata()) == case        # the metadata, where recorded, wins


@pytest.mark.parametrize("name", ["", "native", "native:same", ":pin=same", "native:pin=", "native:pin=same:pages=x",
                                  "native:pin=same:colour=red", "native:pin=same:pages=0",
                                  "native:pages=16:pin=same"])
def test_a_name_no_case_encodes_is_refused_saying_so(name):
    with pytest.raises(ValueError, match="is not a case name"):
        Case.parse(name)


def test_an_older_file_without_pages_or_parallel_reads_them_from_the_name():
    assert Case.recorded("ptrace-sysemu:pin=same:pages=16", {"vmexec_backend": "ptrace-sysemu", "vmexec_pin": "same"}) \
        == Case("ptrace-sysemu", "same", 16, 1)


def test_one_variable_names_the_results_directory_or_the_files(monkeypatch, tmp_path):
    monkeypatch.delenv("VMEXEC_RESULTS_DIR", raising=False)
    monkeypatch.setenv("VMEXEC_RESULTS", str(tmp_path))
    assert results.directory() == tmp_path and results.named_files() == []
    monkeypatch.setenv("VMEXEC_RESULTS", f"{tmp_path}/a.json:{tmp_path}/b.json")
    assert results.named_files() == [tmp_path / "a.json", tmp_path / "b.json"]
    monkeypatch.setenv("VMEXEC_RESULTS_DIR", str(tmp_path / "old"))     # the older spelling, still read
    assert results.directory() == tmp_path / "old"
    monkeypatch.setenv("VMEXEC_RESULTS", str(tmp_path / "new"))
    assert results.directory() == tmp_path / "new"                      # the one name wins


def test_the_newest_guest_run_taken_is_one_made_on_the_newest_host_runs_machine(tmp_path):
    """Two machines' results side by side: newest() pairs the host run with the newest guest run made on its
    machine (as a guest run records the host under it), never with another machine's newer one; where no guest
    run records its host, the newest guest run, as before."""
    import json as _json

    from data.synthetic import GUEST, HOST, write_suite

    def made_on(path, cpu, kernel):
        data = _json.loads(path.read_text())
        data["metadata"].update({"vmexec_host_cpu_model": cpu, "vmexec_host_kernel": kernel})
        path.write_text(_json.dumps(data))
        return path

    host = write_suite(tmp_path / "host.json", HOST, started="2026-12-07T03:00:00")
    plain = write_suite(tmp_path / "plain.json", GUEST, vm=True, started="2026-12-07T03:30:00")
    assert results.newest(tmp_path) == [host, plain]
    mine = made_on(write_suite(tmp_path / "mine.json", GUEST, vm=True, started="2026-12-07T03:10:00"),
                   "Synthetic CPU @ 3.0GHz", "6.1.0-host")
    made_on(write_suite(tmp_path / "other.json", GUEST, vm=True, started="2026-12-07T07:45:00"), "AMD EPYC", "6.18-b")
    assert results.newest(tmp_path) == [host, mine]
