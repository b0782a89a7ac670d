"""The notebooks run top to bottom on synthetic results, and are stored without outputs."""
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

from data.synthetic import GUEST, HOST, HOST_UNAVAILABLE, write_rfc, write_suite

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {"reproduce_5x_claim.ipynb", "mechanisms.ipynb", "walkthrough.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


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
    # The kernel inherits this environment: the notebook reads exactly these files.
    monkeypatch.setenv("VMEXEC_RESULTS", ":".join(map(str, results)))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()   # raises on any cell error
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    if path.name == "reproduce_5x_claim.ipynb":
        assert "process_vm_exec is 5." in text
    if path.name == "walkthrough.ipynb":
        html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells if c.cell_type == "code"
                       for o in c.outputs)
        assert "between / within" in html                               # 1: worker spread
        assert "The claim holds on hardware only if d <" in text         # 2: the distortion sweep
        assert "testhost-20260101-000000" in text and "Welch" in text    # 3: two host runs compared
