"""The notebooks run top to bottom on synthetic results, and are committed executed on the committed results,
with the report's verdict."""
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
    assert "host cost model" in sentence        # the model's part, which the notebook once left out
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
