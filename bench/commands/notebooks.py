"""`bench notebooks`: execute notebooks/*.ipynb on the committed results (bench.render.notebook) and write the
executed copies to an output directory; the committed notebooks are rewritten only with --in-place (after
the report or the results change, so the outputs committed with them are what the current code computes)."""
from __future__ import annotations

import os
import pathlib
import sys

from bench.errors import BenchError, UsageError

#: Seconds one cell may take (the bootstraps over the committed results take a few).
CELL_TIMEOUT = 600
#: Where executed copies go unless --output-dir says otherwise: the repository's build/, which git ignores.
OUTPUT_DIR = pathlib.Path("build") / "notebooks"


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


def _inputs_env(args) -> None:
    """The notebooks' inputs, set in this process's environment (their kernels inherit it), then checked here,
    before any notebook runs: the committed results unless --results names others; machines mixed only
    with --mix-machines."""
    from bench import results
    from bench.render import notebook

    for variable in (results.RESULTS_ENV, results.DIRECTORY_ENV, notebook.MIX_ENV):    # not this shell's
        os.environ.pop(variable, None)
    if args.results:
        missing = [str(p) for p in args.results if not p.is_file()]
        if missing:
            raise UsageError(f"no such results file: {', '.join(missing)}")
        os.environ[results.RESULTS_ENV] = ":".join(str(p.resolve()) for p in args.results)
    if args.mix_machines:
        os.environ[notebook.MIX_ENV] = "1"
    notebook.inputs(say=lambda line: print(f"notebooks: reading {line}", file=sys.stderr))


def _output_dir(args) -> pathlib.Path | None:
    """Where the executed copies go (None: nowhere, --check; or in place)."""
    from bench.errors import writable_directory
    from bench.measure.environment import REPO

    if args.check or args.in_place:
        return None
    out = args.output_dir or REPO / OUTPUT_DIR
    writable_directory(out, create=True)
    return out


def _cmd_notebooks(args) -> int:
    try:
        import nbformat
        from nbclient.exceptions import CellExecutionError
    except ImportError:
        raise UsageError("executing the notebooks needs nbclient: pip install 'vmexec-bench[notebooks]'") from None
    from bench import results

    if args.in_place and (args.results or args.mix_machines or args.output_dir):
        raise UsageError("--in-place rewrites the committed notebooks, on the committed results only: "
                         "without --results, --mix-machines or --output-dir")
    paths = notebook_paths(args.notebooks)
    for path in paths:      # all of them read before the first is executed
        try:
            nbformat.read(path, as_version=4)
        except Exception as e:      # nbformat's readers raise many types: any failure is bad input
            raise UsageError(f"{path}: not a notebook ({type(e).__name__}: "
                             f"{(str(e).strip().splitlines() or [''])[0][:120]})") from None
    out = _output_dir(args)
    _inputs_env(args)
    for path in paths:
        print(f"notebooks: executing {path} ...", file=sys.stderr, flush=True)
        try:
            nb = execute(path)
        except CellExecutionError as e:
            raise BenchError(f"{path}: a cell failed: {str(e).strip().splitlines()[-1]}") from None
        if args.check:
            continue
        target = path if args.in_place else out / path.name
        results.publish(target, lambda staged: nbformat.write(nb, staged), exists="replace")
        print(f"notebooks: {target} written with its outputs" + (" (in place)" if args.in_place else ""))
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("notebooks", help="execute notebooks/*.ipynb on the committed results and write "
                                                "executed copies to build/notebooks/ (needs the notebooks extra)")
    p.add_argument("notebooks", nargs="*", type=pathlib.Path, metavar="NOTEBOOK",
                   help="the notebooks to execute (default: every one in notebooks/)")
    p.add_argument("--results", nargs="+", type=pathlib.Path, metavar="RESULT",
                   help="result files the notebooks read instead of the committed ones")
    p.add_argument("--mix-machines", action="store_true",
                   help="read a host run and a guest run of different machines together (said, not refused)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--output-dir", type=pathlib.Path, metavar="DIR",
                       help=f"where the executed copies go (default: {OUTPUT_DIR}/ in the repository)")
    where.add_argument("--in-place", action="store_true",
                       help="rewrite the committed notebooks with their outputs (maintainers, on the committed "
                            "results: commit them after the results or the report change)")
    where.add_argument("--check", action="store_true", help="execute them, write nothing (exit 1 if a cell fails)")
    p.set_defaults(func=_cmd_notebooks)
