"""`bench notebooks`: execute notebooks/*.ipynb in place on the committed results, so the outputs committed
with them are what the current code computes (rerun after the report or the results change)."""
from __future__ import annotations

import os
import pathlib
import sys

from bench.errors import BenchError, UsageError

#: Seconds one cell may take (the bootstraps over the committed results take a few).
CELL_TIMEOUT = 600


def notebook_paths(names: list[pathlib.Path]) -> list[pathlib.Path]:
    from bench.measure.environment import REPO

    if names:
        missing = [str(n) for n in names if not n.is_file()]
        if missing:
            raise UsageError(f"no such notebook: {', '.join(missing)}")
        return names
    found = sorted((REPO / "notebooks").glob("*.ipynb"))
    if not found:
        raise UsageError(f"no notebooks in {REPO / 'notebooks'} (they come with a clone of the repository)")
    return found


def execute(path: pathlib.Path, timeout: int = CELL_TIMEOUT):
    """The notebook at path, executed top to bottom from its own folder (nbclient); raises on a cell's error."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.resolve().parent)}}).execute()
    return nb


def _cmd_notebooks(args) -> int:
    try:
        import nbformat
        from nbclient.exceptions import CellExecutionError
    except ImportError:
        raise UsageError("executing the notebooks needs nbclient: pip install 'vmexec-bench[notebooks]'") from None

    # The notebooks' own default inputs: the committed results, not a VMEXEC_RESULTS of this shell.
    for variable in ("VMEXEC_RESULTS", "VMEXEC_RESULTS_DIR"):
        os.environ.pop(variable, None)
    paths = notebook_paths(args.notebooks)
    for path in paths:      # all of them read before the first is executed
        try:
            nbformat.read(path, as_version=4)
        except Exception as e:      # nbformat's readers raise many types: any failure is bad input
            raise UsageError(f"{path}: not a notebook ({type(e).__name__}: "
                             f"{(str(e).strip().splitlines() or [''])[0][:120]})") from None
    for path in paths:
        print(f"notebooks: executing {path} ...", file=sys.stderr, flush=True)
        try:
            nb = execute(path)
        except CellExecutionError as e:
            raise BenchError(f"{path}: a cell failed: {str(e).strip().splitlines()[-1]}") from None
        if not args.check:
            nbformat.write(nb, path)
            print(f"notebooks: {path} written with its outputs")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("notebooks", help="execute notebooks/*.ipynb in place on the committed results "
                                                "(needs the notebooks extra)")
    p.add_argument("notebooks", nargs="*", type=pathlib.Path, metavar="NOTEBOOK",
                   help="the notebooks to execute (default: every one in notebooks/)")
    p.add_argument("--check", action="store_true", help="execute them, write nothing (exit 1 if a cell fails)")
    p.set_defaults(func=_cmd_notebooks)
