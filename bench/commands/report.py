"""The `report` and `compare` commands: a thin layer over bench.render.report and bench.stats.

Kept apart from them so that every other command starts without importing
pandas and matplotlib.
"""
from __future__ import annotations

import pathlib
import re

from bench import outputs
from bench.errors import UsageError


def _cmd_report(args) -> int:
    from bench import results
    from bench.render.report import write_report

    paths = args.results or results.newest()
    results.warn_if_busy(paths)
    final = args.output or results.directory() / "report"
    made = {}
    # Written whole beside final, then swapped in: a concurrent report never mixes with this one, and
    # nothing of an older report (its extra plots) stays.
    outputs.replace_tree(final, lambda staged: made.update(write_report(paths, staged)), _report_files)
    written = {name: final / name for name in made}
    print(written["report.md"].read_text().split("\n\n", 1)[0])     # the answer (verdict.answer)
    plots = [name for name in written if name.endswith((".png", ".svg"))]
    print(f"report: {written['report.md']} and {written['report.html']} ({len(plots)} plot files, "
          f"every case in {written['cases.csv'].name})")
    return 0


def _report_files(old: pathlib.Path) -> set[str]:
    """An older report's own files: its report.md, report.html and what its report.md links to (its plots
    and cases.csv); anything else kept in its directory (a screenshot) is not the report's to remove."""
    md = old / "report.md"
    linked = set(re.findall(r"\]\(([^()/\s]+)\)", md.read_text(errors="replace"))) if md.is_file() else set()
    return {"report.md", "report.html", *linked}


def _cmd_compare(args) -> int:
    import sys

    from bench import machine
    from bench import stats
    from bench import regression as R
    from bench.render.report import format_compare

    a, b = stats.load([args.a]), stats.load([args.b])
    c = stats.compare(a, b)
    if c.empty:
        raise UsageError(f"{args.a} and {args.b} have no case in common")
    # Different machines: every change may be the machine's, not the code's.  One line per field.
    there, here = R.machine(a), R.machine(b)
    for field in machine.differing(there, here):
        print(f"compare: warning: the runs differ in {machine.MACHINE[field]}: A {there[field]!r}, "
              f"B {here[field]!r}; a change may be the machine's, not the code's", file=sys.stderr)
    print(format_compare(c, a["run_id"].iloc[0], b["run_id"].iloc[0], *stats.unmatched(a, b)))
    print(f"change = B median / A median; significance at 95%: {stats.WELCH.removesuffix(' (95%)')} where values "
          f"vary, an exact comparison where both runs are deterministic (icount)")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("report", help="write report.md, report.html and plots from results")
    p.add_argument("results", nargs="*", type=pathlib.Path, metavar="RESULT",
                   help="pyperf suites and RFC-replica files (default: the newest host run, guest run "
                        "and RFC replica in the results directory, ./results or $VMEXEC_RESULTS)")
    p.add_argument("--output-dir", "--output", dest="output", type=pathlib.Path, metavar="DIR",
                   help="directory for the report (default: report/ in the results directory)")
    p.set_defaults(func=_cmd_report)

    c = subparsers.add_parser("compare", help="per-case change between two runs, with significance")
    c.add_argument("a", type=pathlib.Path, metavar="A.json")
    c.add_argument("b", type=pathlib.Path, metavar="B.json")
    c.set_defaults(func=_cmd_compare)
