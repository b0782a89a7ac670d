"""bench.render.report and the report/compare/check commands, on synthetic results."""
import json
import pathlib
import re

import pandas as pd
import pytest

from bench.anatomy import counts as anatomy
from bench.render import plots
from bench.render import report
from conftest import run_bench
from data.synthetic import PROBES, write_reference_set, write_suite

PLOTS = ("cost", "speedup", "pinning", "distribution", "pages", "parallel")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("results")
    return write_reference_set(d)


def test_report_writes_markdown_html_and_plots(files, tmp_path):
    out = tmp_path / "report"
    proc = run_bench("report", str(files["host"]), str(files["guest"]), str(files["rfc"]), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    for stem in PLOTS:
        for fmt in ("png", "svg"):
            assert (out / f"{stem}.{fmt}").stat().st_size > 1000, (stem, fmt)
    md = (out / "report.md").read_text()
    # the answer first (tests/test_first_screen.py), printed too; then the title and the key plot
    blocks = md.split("\n\n")
    assert blocks[0].startswith("We timed one intercepted system call") and blocks[0] in proc.stdout
    assert blocks[1] == f"# {report.TITLE}"
    assert blocks[2].startswith("![") and f"({plots.KEY_PLOT}.png)" in blocks[2]
    # the long form below it: the verdict, the figures side by side and the caveat
    assert blocks[4] == "## The verdict in full"
    first = blocks[5]
    assert first.startswith("**Verdict: process_vm_exec is 5.") and "95% CI" in first
    assert blocks[6] == "Side by side:" and blocks[7].count("\n- ") == 2     # three figures
    assert "icount path-length ratio" in blocks[7] and "distortion bracket" in blocks[7]
    assert "cost model: no mitigation-matched guest anatomy" in blocks[7]
    assert blocks[8].startswith("*Caveat:*") and "path length" in blocks[8] and "distortion" in blocks[8]
    # the document lists each backend once per pinning; every case, sweeps included, is in the CSV
    tables = md[md.index("## Every backend"):md.index("## Plots")]
    assert "`ptrace-sysemu:pin=same:pages=16`" not in tables and "(cases.csv)" in tables
    cases = pd.read_csv(out / "cases.csv")
    assert "ptrace-sysemu:pin=same:pages=16" in set(cases["case"]) and len(cases) == 12 + 7 + 2 * len(PROBES)
    assert {"median_ns", "ci_low", "ci_high", "speedup_vs_sysemu"} <= set(cases.columns)
    # pyperf's own warnings are shown, not hidden
    assert "## pyperf's stability checks" in md and "cases flagged" in md
    for text in ("Every backend", "Host vs guest", "1,446", "7,230", "ENOSYS", "Environment",
                 "Mitigation: Retpolines", "`python -m bench run --fast`", "(cost.png)"):
        assert text in md, text
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(PLOTS)
    assert 'src="cost.png"' not in html and "<table>" in html


#: Guest anatomy features per mechanism (instructions, CR3 writes, kernel entries) and the host's
#: ns/syscall they give exactly at 0.2 ns per instruction, 300 ns per CR3 write, 50 per entry.
FEATURES = {"native:pin=in-process": (227, 0, 1), "ptrace-sysemu:pin=same": (12434, 2, 5),
            "ptrace-syscall:pin=same": (24396, 4, 9), "seccomp-trace:pin=same": (12800, 2, 5),
            "seccomp-trap:pin=in-process": (5310, 0, 2), "seccomp-unotify:pin=same": (6469, 2, 3),
            "seccomp-unotify-sync:pin=same": (6500, 2, 3), "syscall-user-dispatch:pin=in-process": (5000, 0, 2),
            "process-vm-exec:pin=same": (2386, 2, 2)}


def test_report_judges_a_model_that_fits_and_shows_three_figures(tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    host = {c: 0.2 * i + 300 * k3 + 50 * k for c, (i, k3, k) in FEATURES.items() if "process-vm-exec" not in c}
    write_suite(d / "host.json", host, sigma=1e-5)
    # the bracket's other probes (verdict.MIN_PROBES) distorted exactly 1
    undistorted = {c: host[c] * 10_000.0 / host["ptrace-sysemu:pin=same"] for c in
                   ("native:pin=in-process", "seccomp-unotify:pin=same", "seccomp-unotify-sync:pin=same",
                    "syscall-user-dispatch:pin=in-process")}
    write_suite(d / "guest.json", {"ptrace-sysemu:pin=same": 10_000.0, "process-vm-exec:pin=same": 2_000.0,
                                   "seccomp-trap:pin=in-process": 2_500.0, "ptrace-syscall:pin=same": 16_000.0,
                                   "seccomp-trace:pin=same": 12_000.0, **undistorted}, vm=True, sigma=1e-5)
    where = anatomy.variant_directory(d / "anatomy", anatomy.MODEL_VARIANT)
    where.mkdir(parents=True)
    (where / "anatomy.json").write_text(json.dumps({"meta": {"kernel_variant": anatomy.MODEL_VARIANT}, "backends": [
        {"backend": c.split(":")[0], "insns_per_syscall": i, "totals": {"cr3_write": k3, "syscall": k, anatomy.EVENT: 0}}
        for c, (i, k3, k) in FEATURES.items()]}))
    md = report.write_report([d / "host.json", d / "guest.json"], tmp_path / "report")["report.md"].read_text()
    predicted = host["ptrace-sysemu:pin=same"] / (0.2 * 2386 + 300 * 2 + 50 * 2)
    first = md.split("\n\n")[5]
    assert f"the host cost model predicts {predicted:.2f}x" in first and "claim is not reproduced" in first
    assert "the distortion bracket" in first and "is shown beside it" in first
    figures = md.split("\n\n")[7]
    assert "icount path-length ratio" in figures and "5.00x" in figures
    assert "distortion bracket: " in figures and "cost model's prediction" in figures and "(judged" in figures
    assert "## A host cost model from the anatomy" in md and "mitigation-matched kernel" in md


def test_the_anatomy_is_found_beside_the_inputs_or_above_them(tmp_path):
    (tmp_path / "anatomy" / "host").mkdir(parents=True)
    assert report.anatomy_dir([tmp_path / "run.json"]) == (tmp_path / "anatomy").resolve()
    (tmp_path / "anatomy" / "anatomy.json").write_text("{}")
    assert report.anatomy_dir([tmp_path / "anatomy" / "host" / "run.json"]) == (tmp_path / "anatomy").resolve()


def test_the_anatomy_below_the_current_directory_is_named_relative_to_it(tmp_path, monkeypatch):
    """A committed report quotes the anatomy directory in its messages: never the checkout's absolute path."""
    (tmp_path / "results" / "anatomy" / "host").mkdir(parents=True)
    (tmp_path / "results" / "anatomy" / "anatomy.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    where = report.anatomy_dir([tmp_path / "results" / "anatomy" / "host" / "run.json"])
    assert where == pathlib.Path("results/anatomy") and not where.is_absolute()
    assert report.anatomy_dir([pathlib.Path("results/run.json")]) == pathlib.Path("results/anatomy")


def test_plots_are_the_same_bytes_when_drawn_again(files, tmp_path):
    """No date, no random ids: a committed report changes only where the data did."""
    first = report.write_report([files["host"], files["guest"]], tmp_path / "a")
    second = report.write_report([files["host"], files["guest"]], tmp_path / "b")
    for name, path in first.items():
        assert path.read_bytes() == second[name].read_bytes(), name


def test_report_on_a_host_run_alone_cannot_judge(files, tmp_path):
    out = tmp_path / "r"
    written = report.write_report([files["host"]], out)
    md = written["report.md"].read_text()
    assert md.startswith("No process_vm_exec result here, so the RFC's claim of more than 5x cannot be judged")
    assert "**Verdict: cannot be judged: no process_vm_exec results" in md
    assert "Host vs guest" not in md
    # the cases that share a reason share one line, the reason written once
    items = [line for line in md.splitlines() if "unavailable: ENOSYS" in line and line.startswith("- ")]
    assert items
    for line in items:
        assert "`process-vm-exec:pin=same`" in line and "`process-vm-exec:pin=cross`" in line
        assert line.count("ENOSYS") == 1 and "`: unavailable: ENOSYS" in line


@pytest.mark.parametrize("args, message", [
    (["report", "/nonexistent/results.json"], "no such results file"),
    (["compare", "/nonexistent/a.json", "/nonexistent/b.json"], "no such results file"),
    (["report", "{host}", "--output", "/proc/vmexec-report"], "not writable"),
    (["report", "{host}", "--output", "{host}"], "not writable"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, files):
    proc = run_bench(*(a.format(host=files["host"]) for a in args))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_report_rejects_a_non_json_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("not json")
    proc = run_bench("report", str(bad), "--output", str(tmp_path / "out"))
    assert proc.returncode == 2 and "not JSON" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_compare_prints_change_and_significance(tmp_path):
    a = write_suite(tmp_path / "a.json", {"x:pin=same": 1000.0, "y:pin=same": 1000.0}, seed=1)
    b = write_suite(tmp_path / "b.json", {"x:pin=same": 1200.0, "y:pin=same": 1000.0}, seed=2)
    proc = run_bench("compare", str(a), str(b))
    assert proc.returncode == 0, proc.stderr
    # columns: case, A ns, B ns, change, significant?, test (two spaces or more between them)
    rows = {row[0]: row for row in (re.split(r"\s{2,}", line.strip()) for line in proc.stdout.splitlines())}
    x, y = rows["x:pin=same"], rows["y:pin=same"]
    assert x[3].endswith("x slower") and x[4].startswith("yes (t=")
    assert y[4].startswith("no (t=") and y[5] == "Welch's t-test (95%)"


def test_html_tables_align_figures_right_and_text_left():
    html = report.to_html([("table", ["case", "ns"], [["`native:pin=same`", "3,261"], ["same", "1.00x (0.98–1.02)"]])], {})
    assert '<td><code>native:pin=same</code></td><td class="num">3,261</td>' in html
    assert '<td>same</td><td class="num">1.00x (0.98–1.02)</td>' in html


def test_markdown_and_html_render_the_same_blocks():
    doc = [("p", "**bold** and `code`"), ("table", ["a|b", "c"], [["1", "x|y"]]), ("list", ["one"])]
    md = report.to_markdown(doc)
    assert "a\\|b" in md and "x\\|y" in md and "- one" in md
    html = report.to_html(doc, {})
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html and "<li>one</li>" in html
