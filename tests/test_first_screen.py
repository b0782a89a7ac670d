"""Issue 20: the answer first.  The report opens with at most three plain sentences generated from the
findings, then the title, then the key plot with the interval judged drawn on it; the README quotes the
committed report's answer word for word, and the other verdicts docs/ quotes agree with the reports they cite."""
import pathlib
import re

import pytest

from bench import stats, verdict
from bench.render import plots, report
from data.synthetic import GUEST, write_suite

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAIN_REPORT = ROOT / "results" / "report" / "report.md"


def sentences(paragraph: str) -> list[str]:
    """Split at a full stop, question or exclamation mark followed by a space and a capital ("5.11x" stays whole)."""
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", paragraph.strip())


def readme_answer() -> str:
    text = README.read_text()
    m = re.search(r"<!-- answer -->\n(.*?)\n<!-- /answer -->", text, re.S)
    assert m, "README has no <!-- answer --> ... <!-- /answer --> block"
    return " ".join(line.removeprefix(">").strip() for line in m.group(1).splitlines())


def report_answer(md: str) -> str:
    """The report's first paragraph, its lines joined by spaces (as the README's quote of it reads)."""
    return " ".join(md.split("\n\n", 1)[0].splitlines())


def machine_lines(paragraph: str) -> tuple[str, list[str]]:
    """(the sentences, the lines of the machines measured: "- CPU, host Linux ..., guest Linux ...: ...")."""
    lines = paragraph.splitlines()
    return lines[0], [line for line in lines[1:] if line.startswith("- ")]


def test_the_readme_quotes_the_committed_reports_answer_exactly():
    quoted, committed = readme_answer(), report_answer(MAIN_REPORT.read_text())
    assert quoted == committed, ("README's answer differs from results/report/report.md's first paragraph: "
                                 "copy it between the <!-- answer --> markers")


def test_the_answer_block_is_on_the_readmes_first_screen():
    lines = README.read_text().splitlines()
    assert lines.index("<!-- answer -->") < 12
    assert any(line.startswith("**The question:**") for line in lines[:5])
    assert next(i for i, line in enumerate(lines) if line.startswith("./run.sh ")) < 25


#: How the answer's sentence names the interval judged: a bracket ("is 4.53–5.89x") or an estimate with its interval
#: ("is 6.40x (5.72–6.89x)", "predicts a hardware speed-up of 3.28x (2.17–3.73x)").
SPEEDUP = r"hardware speed-up (?:is|of) (?:\d+\.\d\dx \()?"


def test_the_committed_answer_is_generated_from_the_committed_results():
    """Neither the report's first paragraph nor the README's quote of it is written by hand."""
    md = MAIN_REPORT.read_text()
    inputs = re.search(r"^Inputs: (.*)$", md, re.M).group(1)
    # inputs are named by file name; they are committed somewhere under results/ (one machine's runs in its own folder)
    paths = [next(MAIN_REPORT.parents[1].rglob(name), MAIN_REPORT.parents[1] / name)
             for name in re.findall(r"`([^`]+)`", inputs)]
    assert paths and all(p.exists() for p in paths)
    assert " ".join(report.answer(paths)) == report_answer(md)
    # the newest machine's line judges the interval the sentences give
    judged = re.search(SPEEDUP + r"(\d+\.\d\d–\d+\.\d\d)x", report_answer(md))
    assert judged and f": {judged.group(1)}x, judged by " in machine_lines(md.split("\n\n")[0])[1][-1]


def test_the_report_opens_with_three_sentences_then_the_title_then_the_key_plot():
    blocks = MAIN_REPORT.read_text().split("\n\n")
    prose, machines = machine_lines(blocks[0])
    said = sentences(prose)
    assert 1 <= len(said) <= 3 and not blocks[0].startswith(("**", "#"))
    # one line per machine measured: CPU model, host kernel, the guest's kernel and its config hash, the interval
    # judged and which estimate judged it (issue 26 item 7)
    assert machines and len(blocks[0].splitlines()) == 1 + len(machines)
    for line in machines:
        assert re.match(r"- .+, host Linux \S+, guest Linux \S+ \(config .+\): ", line), line
        assert "judged by " in line or "not judged" in line
        assert len(line.split()) <= 45
    # the HTML page shows them as a list too, below the sentences
    page = MAIN_REPORT.with_suffix(".html").read_text()
    assert "</p><ul><li>" + machines[0].removeprefix("- ").split(",")[0] in page
    # plain sentences a reader takes in at a glance: no one longer than 45 words
    assert all(len(s.split()) <= 45 for s in said), [len(s.split()) for s in said]
    assert blocks[1] == f"# {report.TITLE}"
    assert blocks[2].startswith("![") and f"({plots.KEY_PLOT}.png)" in blocks[2]
    # the interval the verdict judges is the one drawn, and the caption says what it covers
    judged = re.search(SPEEDUP + r"(\d+\.\d\d)–(\d+\.\d\d)x", prose)
    assert judged and f"{judged.group(1)}–{judged.group(2)}x" in blocks[2] and "which covers" in blocks[2]
    # the long form follows for those who want it
    assert blocks[4] == "## The verdict in full" and blocks[5].startswith("**Verdict: ")


def test_other_verdicts_in_the_docs_are_labelled_and_match_their_reports():
    """A verdict quoted beyond the front page is another report's (named beside it), with that report's figures
    (issue 29: it moved from the README to docs/anatomy.md)."""
    assert README.read_text().splitlines().count("<!-- answer -->") == 1
    assert not [p for p in [README, *DOCS.glob("*.md")] if "> process_vm_exec is " in p.read_text()]
    text = (DOCS / "anatomy.md").read_text()
    m = re.search(r"\*\*Another verdict, on the mitigations kernel\*\* \(`(results/[^`]+/report\.md)`(.*?)\n\n",
                  text, re.S)
    assert m, "the mitigations kernel's verdict is labelled with its own report"
    cited = (ROOT / m.group(1)).read_text()
    figures = re.findall(r"\d+\.\d\d(?:–\d+\.\d\d)?x", m.group(2))
    assert figures and all(f in cited for f in figures), [f for f in figures if f not in cited]


def _answer(tmp_path, suites, **kw):
    return verdict.answer(verdict.headline(stats.load(suites), **kw))


def test_a_hardware_clock_answers_with_its_ci(tmp_path):
    kvm = write_suite(tmp_path / "kvm.json", {**GUEST, "process-vm-exec:pin=same": 1_000.0}, vm=True,
                      accelerator="kvm", timing="wall", sigma=1e-5)
    what, number, judged = _answer(tmp_path, [kvm])
    assert "under KVM" in what and number.startswith("On that clock process_vm_exec was 10.00x faster (95% CI")
    assert judged.startswith("So the RFC's claim of more than 5x stands: all of 10.00–10.00x")


def test_an_emulator_run_alone_says_why_it_cannot_be_judged_yet(tmp_path):
    guest = write_suite(tmp_path / "guest.json", GUEST, vm=True, sigma=1e-5)
    said = _answer(tmp_path, [guest])
    assert len(said) == 3 and "instructions" in said[1]
    assert said[2].startswith("So the RFC's claim of more than 5x cannot be judged yet: no host run")


def test_no_process_vm_exec_is_one_sentence_that_says_so(tmp_path):
    host = write_suite(tmp_path / "host.json", {"ptrace-sysemu:pin=same": 3_000.0, "native:pin=in-process": 80.0})
    (only,) = _answer(tmp_path, [host])
    assert only.startswith("No process_vm_exec result here") and "cannot be judged" in only


@pytest.mark.parametrize("speedup, word", [(8.0, "stands"), (3.0, "does not stand here")])
def test_the_third_sentence_follows_the_judgement(tmp_path, speedup, word):
    kvm = write_suite(tmp_path / "kvm.json", {**GUEST, "process-vm-exec:pin=same": 10_000.0 / speedup}, vm=True,
                      accelerator="kvm", timing="wall", sigma=1e-5)
    assert f"more than 5x {word}:" in _answer(tmp_path, [kvm])[2]


def _other_machine(path: pathlib.Path, cpu: str, kernel: str) -> pathlib.Path:
    """A host run as another machine would have written it (its CPU model and kernel)."""
    text = path.read_text().replace("Synthetic CPU @ 3.0GHz", cpu).replace("6.1.0-host", kernel)
    path.write_text(text)
    return path


def test_each_machine_measured_is_one_line_judged_on_its_own_host_runs(tmp_path):
    """Issue 26 item 7: host runs of two machines side by side, each bracketed by its own host run only."""
    from bench.estimates import Estimates
    from test_analysis import EXACT_GUEST, EXACT_HOST

    xeon = write_suite(tmp_path / "xeon.json", EXACT_HOST, sigma=1e-5)
    # PTRACE_SYSEMU twice as slow on the other machine: every host speed-up doubles, every distortion halves
    epyc = _other_machine(write_suite(tmp_path / "epyc.json", {**EXACT_HOST, "ptrace-sysemu:pin=same": 20_000.0},
                                      sigma=1e-5), "AMD EPYC 9B14", "6.18.44-amd")
    guest = write_suite(tmp_path / "guest.json", EXACT_GUEST, vm=True, sigma=1e-5)
    none = Estimates(None, "no anatomy", None, "")
    machines = {("Synthetic CPU @ 3.0GHz", "6.1.0-host"): none,
                ("AMD EPYC 9B14", "6.18.44-amd"): Estimates(None, "no anatomy", None, "", "ab12" * 16)}
    f = verdict.findings(stats.load([xeon, epyc, guest]), machines=machines)
    *said, first, second = verdict.answer_lines(f)
    assert first == ("- Synthetic CPU @ 3.0GHz, host Linux 6.1.0-host, guest Linux 6.12.57-vmexec (config hash not "
                     "recorded): 4.00–6.25x, judged by the distortion bracket (7 probes): not settled (contains 5).")
    assert second == ("- AMD EPYC 9B14, host Linux 6.18.44-amd, guest Linux 6.12.57-vmexec (config sha256 ab12ab12ab12): "
                      "8.00–12.50x, judged by the distortion bracket (7 probes): stands.")
    # the sentences above them are the newest machine's (the last given)
    assert "8.00–12.50x" in " ".join(said) and f.headline is f.machines[-1][1]
    paragraph = verdict.answer_paragraph(f)
    assert paragraph.splitlines()[1:] == [first, second] and len(sentences(paragraph.splitlines()[0])) == 3


def _made_on(path: pathlib.Path, cpu: str, kernel: str, guest_kernel: str) -> pathlib.Path:
    """A guest run as `bench vm run` on another machine would have written it: the host CPU model and kernel
    under the guest, and the guest's own kernel."""
    import json

    data = json.loads(path.read_text().replace("6.12.57-vmexec", guest_kernel))
    data["metadata"].update({"vmexec_host_cpu_model": cpu, "vmexec_host_kernel": kernel})
    path.write_text(json.dumps(data))
    return path


def test_each_machine_is_judged_with_the_guest_runs_made_on_it(tmp_path):
    """A twin is made from its host's configuration: a machine's line pairs its host run with the guest run made
    on that machine (its twin's path lengths), not with the newest guest run of another machine."""
    from bench.estimates import Estimates
    from test_analysis import EXACT_GUEST, EXACT_HOST

    xeon = _other_machine(write_suite(tmp_path / "xeon.json", EXACT_HOST, sigma=1e-5), "Intel Xeon", "6.18-a")
    epyc = _other_machine(write_suite(tmp_path / "epyc.json", {**EXACT_HOST, "ptrace-sysemu:pin=same": 30_000.0},
                                      sigma=1e-5), "AMD EPYC", "6.18-b")
    on_xeon = _made_on(write_suite(tmp_path / "g1.json", EXACT_GUEST, vm=True, sigma=1e-5, started="2026-12-01T00:00"),
                       "Intel Xeon", "6.18-a", "6.12.57-twin-xeon")
    on_epyc = _made_on(write_suite(tmp_path / "g2.json", {**EXACT_GUEST, "ptrace-sysemu:pin=same": 20_000.0},
                                   vm=True, sigma=1e-5, started="2026-12-04T00:00"),
                       "AMD EPYC", "6.18-b", "6.12.57-twin-epyc")
    none = Estimates(None, "no anatomy", None, "")
    machines = {("Intel Xeon", "6.18-a"): none, ("AMD EPYC", "6.18-b"): none}
    f = verdict.findings(stats.load([xeon, epyc, on_xeon, on_epyc]), machines=machines)
    first, second = (m[1] for m in f.machines)
    assert first.row["kernel"] == "6.12.57-twin-xeon" and second.row["kernel"] == "6.12.57-twin-epyc"
    assert first.row["speedup"] * 2 == pytest.approx(second.row["speedup"], rel=1e-3)
    # each guest run's own row (the run-by-run table, the key plot's bands) is judged as its machine's headline
    rows = {row["run_id"]: a for (_, row), a in zip(f.claim.iterrows(), f.assessments)}
    same = lambda a, b: (a.low, a.high, a.interval, a.judgement) == (b.low, b.high, b.interval, b.judgement)  # noqa: E731
    assert same(rows[first.row["run_id"]], first.assessment) and same(rows[second.row["run_id"]], second.assessment)
    bands = plots.judged_intervals(f)
    assert (bands[(first.row["run_id"], "same")].low, bands[(second.row["run_id"], "same")].low) == \
        (first.assessment.low, second.assessment.low)
    # a machine no guest run was made on is judged with every guest run (the newest first), as before
    f = verdict.findings(stats.load([xeon, on_epyc]), machines={("Intel Xeon", "6.18-a"): none})
    assert f.machines[0][1].row["kernel"] == "6.12.57-twin-epyc"


def test_a_report_of_two_machines_shows_both_and_says_which_is_which(tmp_path):
    from bench.estimates import per_machine
    from test_analysis import EXACT_GUEST, EXACT_HOST

    old = write_suite(tmp_path / "xeon.json", EXACT_HOST, sigma=1e-5, started="2026-12-01T00:00:00")
    new = _other_machine(write_suite(tmp_path / "epyc.json", EXACT_HOST, sigma=1e-5, started="2026-12-04T00:00:00"),
                         "AMD EPYC 9B14", "6.18.44-amd")
    guest = write_suite(tmp_path / "guest.json", EXACT_GUEST, vm=True, sigma=1e-5)
    # newest last, whatever order the files come in; the guest is no machine of its own
    assert list(per_machine([new, guest, old], tmp_path / "anatomy")) == [
        ("Synthetic CPU @ 3.0GHz", "6.1.0-host"), ("AMD EPYC 9B14", "6.18.44-amd")]
    lines = report.answer([new, old, guest])
    assert [line.split(",")[0] for line in lines if line.startswith("- ")] == ["- Synthetic CPU @ 3.0GHz", "- AMD EPYC 9B14"]
