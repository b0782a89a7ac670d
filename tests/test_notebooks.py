"""The notebooks run top to bottom on synthetic results, and are committed executed on the committed results,
with the report's verdict."""
import json
import os
import pathlib
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from data.synthetic import GUEST, HOST, HOST_UNAVAILABLE, write_rfc, write_suite

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _text(nb, index=None) -> str:
    cells = nb.cells if index is None else [nb.cells[index]]
    return "".join(o.get("text", "") for c in cells if c.cell_type == "code" for o in c.outputs)


def test_the_three_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {"reproduce_5x_claim.ipynb", "mechanisms.ipynb", "walkthrough.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_executed_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), f"{path.name}: not executed (python -m bench notebooks)"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), f"{path.name}: run out of order"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert sum(bool(c.outputs) for c in code) >= len(code) - 1, f"{path.name}: cells without output"
    # Read from the repository's results, recorded by their path in it (no machine's absolute path).
    assert "results/vm-tcg-icount-" in _text(nb, 1) and str(REPO) not in _text(nb, 1)


def test_committed_verdict_is_the_reports():
    nb = nbformat.read(REPO / "notebooks" / "reproduce_5x_claim.ipynb", as_version=4)
    lines = (REPO / "results" / "report" / "report.md").read_text().splitlines()
    [long_form] = [line for line in lines if line.startswith("**Verdict: ")]   # under "The verdict in full"
    sentence = long_form.strip("*").removeprefix("Verdict: ")
    # the model's part, which the notebook once left out (named "fitted model" beside a judged composition)
    assert "host cost model" in sentence or "the fitted model are shown beside it" in sentence
    assert sentence in _text(nb, 3)


def test_committed_walkthrough_compares_two_runs():
    nb = nbformat.read(REPO / "notebooks" / "walkthrough.ipynb", as_version=4)
    text = _text(nb, 7)
    assert "nothing to compare" not in text and "Welch" in text and text.count("\n") > 5


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("results")
    return [write_suite(d / "testhost-20260101-000000.json", HOST, unavailable=HOST_UNAVAILABLE,
                        started="2026-01-01T00:00:00"),
            write_suite(d / "testhost-20260102-000000.json", HOST, unavailable=HOST_UNAVAILABLE, seed=2,
                        between=0.05, started="2026-01-02T00:00:00"),
            write_suite(d / "vm-tcg-icount-20260101-000100.json", GUEST, vm=True),
            write_rfc(d / "rfc-testhost-20260101-000200.json")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes_without_error(path, results, tmp_path, monkeypatch):
    # The kernel inherits this environment: the notebook reads exactly these files.  Executed in memory:
    # the committed notebook is left as it is.
    monkeypatch.setenv("VMEXEC_RESULTS", ":".join(map(str, results)))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()   # raises on any cell error
    text = _text(nb)
    if path.name == "reproduce_5x_claim.ipynb":
        assert "process_vm_exec is 5." in text
    if path.name == "walkthrough.ipynb":
        html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells if c.cell_type == "code"
                       for o in c.outputs)
        assert "between / within" in html                               # 1: worker spread
        assert "The claim holds on hardware only if d <" in text         # 2: the distortion sweep
        assert "testhost-20260101-000000" in text and "Welch" in text    # 3: two host runs compared


def test_bench_notebooks_executes_from_the_notebooks_folder(tmp_path):
    # Started from notebooks/ with no results variable, as Jupyter is: the repository's results are found.
    before = (REPO / "notebooks" / "mechanisms.ipynb").read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMEXEC_RESULTS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "bench", "notebooks", "--check", "mechanisms.ipynb"],
                          cwd=REPO / "notebooks", env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (REPO / "notebooks" / "mechanisms.ipynb").read_bytes() == before     # --check writes nothing


def test_bench_notebooks_names_a_missing_notebook_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "bench", "notebooks", "nope.ipynb"], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such notebook: nope.ipynb" in proc.stderr


# --------------------------------------------------------------------------- issue 29, item 5:
# notebooks never rewrite the repository, read the committed results, and do not mix machines silently.

def _git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def test_bench_notebooks_leaves_the_tracked_notebooks_alone_and_writes_executed_copies(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMEXEC_RESULTS")}
    assert _git(REPO, "status", "--porcelain", "notebooks/") == "", "run this test on a clean notebooks/"
    out = REPO / "build" / "notebooks" / "mechanisms.ipynb"
    out.unlink(missing_ok=True)
    try:
        proc = subprocess.run([sys.executable, "-m", "bench", "notebooks", "notebooks/mechanisms.ipynb"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert _git(REPO, "status", "--porcelain", "notebooks/") == ""          # no tracked file rewritten
        executed = nbformat.read(out, as_version=4)                               # the copy, executed
        assert all(c.execution_count for c in executed.cells if c.cell_type == "code")
        assert "results/vm-tcg-icount-" in _text(executed, 1)                     # on the committed results
        assert f"{out} written" in proc.stdout and "notebooks: reading results/" in proc.stderr
    finally:
        out.unlink(missing_ok=True)


def _repo_with_results(tmp_path, host_cpu=None):
    """A git repository whose results/ commits a host run and a guest run (the guest recording its host's
    CPU as host_cpu), and holds a newer host run of this machine, not committed."""
    root = tmp_path / "repo"
    (root / "results").mkdir(parents=True)
    host = write_suite(root / "results" / "testhost-20260101-000000.json", HOST, unavailable=HOST_UNAVAILABLE,
                       started="2026-01-01T00:00:00")
    guest = write_suite(root / "results" / "vm-tcg-icount-20260101-000100.json", GUEST, vm=True)
    if host_cpu:
        data = json.loads(guest.read_text())
        for bench in data["benchmarks"]:
            bench["metadata"]["vmexec_host_cpu_model"] = host_cpu
        guest.write_text(json.dumps(data))
    _git(tmp_path, "init", "-q", str(root))
    _git(root, "add", "results")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results")
    local = write_suite(root / "results" / "otherhost-20270101-000000.json", HOST, unavailable=HOST_UNAVAILABLE,
                        started="2027-01-01T00:00:00")
    return root, host, guest, local


def test_the_notebooks_read_the_committed_results_not_a_newer_local_run(tmp_path, monkeypatch):
    from bench.render import notebook
    for variable in ("VMEXEC_RESULTS", "VMEXEC_RESULTS_DIR", "VMEXEC_MIX_MACHINES"):
        monkeypatch.delenv(variable, raising=False)
    root, host, guest, local = _repo_with_results(tmp_path)
    said = []
    assert notebook.inputs(root, say=said.append) == [host, guest]
    assert said[:2] == ["results/testhost-20260101-000000.json", "results/vm-tcg-icount-20260101-000100.json"]
    # told otherwise: the named files
    monkeypatch.setenv("VMEXEC_RESULTS", f"{local}:{guest}")
    assert notebook.inputs(root, say=said.append) == [local, guest]


def test_a_host_run_and_a_guest_run_of_two_machines_are_refused_or_said(tmp_path, monkeypatch):
    from bench.errors import UsageError
    from bench.render import notebook
    for variable in ("VMEXEC_RESULTS", "VMEXEC_RESULTS_DIR", "VMEXEC_MIX_MACHINES"):
        monkeypatch.delenv(variable, raising=False)
    root, host, guest, _ = _repo_with_results(tmp_path, host_cpu="Another CPU")
    with pytest.raises(UsageError, match="two machines"):
        notebook.inputs(root, say=lambda line: None)
    monkeypatch.setenv("VMEXEC_MIX_MACHINES", "1")
    said = []
    assert notebook.inputs(root, say=said.append) == [host, guest]
    assert any(line.startswith("note: mixing machines") and "'Another CPU'" in line for line in said)
    # The same machine: read without a word; a guest run that does not say where it ran: said.
    root2, *_ = _repo_with_results(tmp_path / "same", host_cpu="Synthetic CPU @ 3.0GHz")
    said = []
    notebook.inputs(root2, say=said.append)
    assert not [line for line in said if line.startswith("note:")]
    root3, *_ = _repo_with_results(tmp_path / "unknown")
    said = []
    notebook.inputs(root3, say=said.append)
    assert any("does not record its host's CPU" in line for line in said)


def test_bench_notebooks_refuses_two_machines_before_executing_anything(tmp_path):
    root, host, guest, _ = _repo_with_results(tmp_path, host_cpu="Another CPU")
    proc = subprocess.run([sys.executable, "-m", "bench", "notebooks", str(REPO / "notebooks" / "mechanisms.ipynb"), "--check",
                           "--results", str(host), str(guest)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "two machines" in proc.stderr and "--mix-machines" in proc.stderr and "executing" not in proc.stderr
