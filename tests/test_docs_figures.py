"""Issue 29: every figure the README and docs/ quote comes from a committed file, and is held to it.

A figure is a number with a unit (ns, µs, s, min, x, %, instructions, MB ...) in prose, or a table cell of
numbers (code is left out, it is commands, but not the comments beside it).  Each one must stand under a marker naming where it comes from,

    <!-- from: results/report/report.md results/report/cases.csv -->

which holds until the next marker, the next heading or `<!-- /from -->`; and one of the named files (tracked
by git) must hold that number at the figure's precision: as text in a Markdown, CSV, log or source file, as a
number anywhere in a JSON file (a list of repeats also by its median), or, for a pyperf suite, as a case's median in ns.  A scope that cites a host
run names that run's CPU (two hosts measured the committed results: "the host" alone says nothing).

The main job's steps are described once, in docs/commands.md, between `<!-- main-job -->` markers, and that
block is what `bench main --dry-run --clock icount` prints (`python tests/test_docs_figures.py` rewrites it).
"""
import json
import math
import pathlib
import re
import statistics
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
COMMANDS = DOCS / "commands.md"
TIMELINE = ROOT / "results" / "timeline.json"

UNIT = r"(?:ns|µs|ms|s|min|minutes?|seconds?|hours?|x|%|instructions|MB|MiB|GB|KiB)"
NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
#: "3.89–8.82x", "+7.9%", "12,484 ns", "1074x", "2.6–4.2%"
FIGURE = re.compile(rf"(?<![\w.,/-])[−+±-]?({NUMBER})(?:\s*[–-]\s*[−+-]?({NUMBER}))?\s?{UNIT}(?!\w)")
#: Figures that are not measurements: the RFC's claim and confidence levels.
NOT_MEASURED = re.compile(r"(?<![\w.±+−-])(?:5x|5 times|95%|99%)(?!\w)")
MARKER = re.compile(r"<!--\s*from:\s*(.*?)\s*-->")


def documents() -> list[pathlib.Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _blank(m: re.Match) -> str:
    """The match replaced by spaces, its newlines kept (so that line numbers still count)."""
    return re.sub(r"[^\n]", " ", m.group(0))


def prose(text: str) -> str:
    """The text without inline code, link targets and HTML comments (paths and commands hold digits too);
    a code span or comment may wrap over lines."""
    text = re.sub(r"<!--.*?-->", _blank, text, flags=re.S)
    text = re.sub(r"`[^`]*`", _blank, text)
    return re.sub(r"\]\([^)]*\)", lambda m: "]" + _blank(m)[1:], text)


#: A table cell that is nothing but figures: "10.3", "1074x", "−26.8–111 / 4.5–136", "55.9x".
TABLE_CELL = re.compile(r"^[\s\d,.–−+±/x%()-]*\d[\s\d,.–−+±/x%()-]*$")


def _segments(path: pathlib.Path):
    """(first line number, lines, cited paths or None) for each scope of the document, code blocks left out:
    a scope begins at a from-marker (its files), a heading or an end-marker (no files)."""
    cited, first, lines, fenced = None, 1, [], False
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        if raw.lstrip().startswith("```"):
            fenced, raw = not fenced, ""
        elif fenced:        # a command is no figure, but a comment beside it may quote one
            comment = re.search(r"(?:^|\s)#\s.*$", raw)
            lines.append(" " + comment.group(0) if comment else "")
            continue
        m = MARKER.search(raw)
        if m or raw.startswith("#") or "<!-- /from -->" in raw:
            yield first, lines, cited
            cited, first, lines = (m.group(1).split() if m else None), n, []
        lines.append(raw)
    yield first, lines, cited


def scoped_figures(path: pathlib.Path):
    """(line number, figure text, numbers, cited paths or None, scope text) for every figure in the document:
    a number with a unit in prose (which may wrap over lines), or a table cell of numbers."""
    for first, lines, cited in _segments(path):
        scope = "\n".join(lines)
        text = NOT_MEASURED.sub(lambda m: " " * len(m.group(0)), prose(scope))
        rows = text.split("\n")
        found = []
        for i, row in enumerate(rows):
            if not row.startswith("|"):
                continue
            if set(row) <= set("|-: "):
                continue
            for cell in row.strip().strip("|").split("|"):
                if TABLE_CELL.match(cell) and cell.strip():
                    found.append((i, cell.strip(), re.findall(NUMBER, cell)))
            rows[i] = " " * len(row)
        text = "\n".join(rows)
        for f in FIGURE.finditer(text):
            found.append((text.count("\n", 0, f.start()), " ".join(f.group(0).split()), [g for g in f.groups() if g]))
        for i, figure, numbers in sorted(found, key=lambda x: x[0]):
            yield first + i, figure, numbers, cited, scope


def tracked() -> set[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.splitlines())


def numbers_in(path: pathlib.Path) -> list[float]:
    """Every number the file holds, as it would be quoted."""
    text = path.read_text(errors="replace")
    found = [float(s.replace(",", "")) for s in re.findall(rf"{NUMBER}(?:[eE][-+]?\d+)?", text)
             if _float(s.replace(",", "")) is not None]
    if path.suffix == ".json":
        data = json.loads(text)
        found += list(_json_numbers(data))
        if isinstance(data, dict) and "benchmarks" in data:
            import pyperf
            suite = pyperf.BenchmarkSuite.load(str(path))
            found += [b.median() * 1e9 for b in suite.get_benchmarks()]
    return found


def _float(s: str):
    try:
        return float(s)
    except ValueError:
        return None


def _json_numbers(data):
    if isinstance(data, bool):
        return
    if isinstance(data, (int, float)):
        yield float(data)
    elif isinstance(data, dict):
        for v in data.values():
            yield from _json_numbers(v)
    elif isinstance(data, list):
        for v in data:
            yield from _json_numbers(v)
        values = [v for v in data if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if values:      # a list of repeats is quoted by its median
            yield float(statistics.median(values))


def holds(figure: str, candidates: list[float]) -> bool:
    """True if some candidate, quoted at the figure's precision (as is, as a percentage, or in µs of ns),
    is the figure."""
    want = float(figure.replace(",", ""))
    places = len(figure.partition(".")[2])
    for v in candidates:
        for scaled in (abs(v), abs(v) * 100, abs(v) / 1000):
            if math.isfinite(scaled) and math.isclose(round(scaled, places), want, abs_tol=10 ** -places / 2):
                return True
    return False


_NUMBERS: dict[str, list[float]] = {}


def _cached_numbers(rel: str) -> list[float]:
    if rel not in _NUMBERS:
        _NUMBERS[rel] = numbers_in(ROOT / rel)
    return _NUMBERS[rel]


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_figure_is_held_to_the_committed_file_it_cites(doc):
    files = tracked()
    unsourced, uncommitted, wrong = [], set(), []
    for n, figure, numbers, cited, _ in scoped_figures(doc):
        where = f"{doc.relative_to(ROOT)}:{n}: {figure}"
        if not cited:
            unsourced.append(where)
            continue
        uncommitted |= {c for c in cited if c not in files}
        candidates = [v for c in cited if c in files for v in _cached_numbers(c)]
        wrong += [f"{where} ({x} not in {' '.join(cited)})" for x in numbers if not holds(x, candidates)]
    assert not uncommitted, f"cited files that are not committed: {sorted(uncommitted)}"
    assert not unsourced, "figures with no <!-- from: FILE --> above them:\n" + "\n".join(unsourced)
    assert not wrong, "figures their cited files do not hold:\n" + "\n".join(wrong)


def _host_cpu(rel: str) -> str | None:
    """The CPU model a committed host run records (None for a guest run or anything that is not a suite)."""
    path = ROOT / rel
    if path.suffix != ".json":
        return None
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or "benchmarks" not in data:
        return None
    meta = {**data["benchmarks"][0].get("metadata", {}), **data.get("metadata", {})}
    if meta.get("vmexec_accelerator") in ("tcg", "kvm") or meta.get("vmexec_tag_accelerator"):
        return None
    return meta.get("vmexec_cpu_model") or meta.get("cpu_model_name")


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_figure_from_a_host_run_names_the_hosts_cpu(doc):
    """Two machines measured the committed host runs (an Intel Xeon VM and an AMD EPYC VM): a scope citing a
    host run names its CPU, so that 3,584 ns and 11,008 ns of PTRACE_SYSEMU are never both "the host's"."""
    missing = set()
    for n, _, _, cited, scope in scoped_figures(doc):
        text = " ".join(scope.split())
        for c in cited or ():
            cpu = _host_cpu(c)
            short = " ".join(re.sub(r"\(R\)|Processor", "", cpu).split()) if cpu else None
            if short and short not in text:
                missing.add(f"{doc.relative_to(ROOT)}:{n}: cites {c} ({cpu}) without naming {short!r}")
    assert not missing, "\n".join(sorted(missing))


def test_the_checker_catches_an_unsourced_and_a_wrong_figure(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("Measured 12 ns.\n\n<!-- from: results/report/cases.csv -->\nptrace-sysemu 3,237 ns, "
                   "and 3,236 ns.\n`--values 3` 7 s in code is not a figure; the RFC's 5x neither.\n")
    found = list(scoped_figures(doc))
    assert [(f, c) for _, f, _, c, _ in found] == [("12 ns", None), ("3,237 ns", ["results/report/cases.csv"]),
                                                   ("3,236 ns", ["results/report/cases.csv"]),
                                                   ("7 s", ["results/report/cases.csv"])]
    numbers = numbers_in(ROOT / "results/report/cases.csv")
    assert holds("3,237", numbers) and not holds("3,236", numbers)
    # a range's first figure, as the report writes it ("4.54–5.86x"), is one of its numbers
    report = ROOT / "results/report/report.md"
    assert holds(re.search(r"(\d+\.\d\d)–\d", report.read_text()).group(1), numbers_in(report))


def main_job_steps() -> str:
    out = subprocess.run([sys.executable, "-m", "bench", "main", "--dry-run", "--clock", "icount"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith("main job:"))


def _block(text: str, name: str) -> re.Match:
    return re.search(rf"(<!-- {name} -->\n```\n)(.*?)(\n```\n<!-- /{name} -->)", text, re.S)


def test_the_main_jobs_one_description_is_what_it_runs():
    m = _block(COMMANDS.read_text(), "main-job")
    assert m, "docs/commands.md has no <!-- main-job --> block"
    assert m.group(2) == main_job_steps(), "docs/commands.md's main-job block is stale: python tests/test_docs_figures.py"


def test_the_readme_does_not_describe_the_main_job_a_second_time():
    """The front page points at the one description instead of listing backends or steps of its own."""
    text = README.read_text()
    assert "docs/commands.md" in text
    assert "--backends" not in text and "bench run --scaling" not in text


def test_the_front_page_fits_one_screen():
    assert len(README.read_text().splitlines()) <= 60


def test_the_timeline_quotes_a_measured_file_or_says_it_was_not_measured():
    m = re.search(r"<!-- timeline -->\n(.*?)<!-- /timeline -->", README.read_text(), re.S)
    assert m, "README has no <!-- timeline --> table"
    if not TIMELINE.exists():
        rows = [r for r in m.group(1).splitlines() if r.startswith("|") and not set(r) <= set("|-: ")][1:]
        assert rows and all("not yet measured cold" in r for r in rows), rows
    else:       # its figures are then held to the file like any other (test_every_figure_is_held_...)
        assert "<!-- from: results/timeline.json -->" in m.group(1), "the timeline table cites results/timeline.json"


if __name__ == "__main__":
    # Regenerates docs/commands.md's main-job block from the code.
    text = COMMANDS.read_text()
    m = _block(text, "main-job")
    COMMANDS.write_text(text[:m.start(2)] + main_job_steps() + text[m.end(2):])


def test_every_dependency_says_why_it_is_there():
    """docs/dependencies.md has a row for every Python requirement and every Debian package run.sh installs."""
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    python = {re.split(r"[<>=!~\[ ]", d, 1)[0].lower() for d in wanted}
    apt = set(re.search(r"APT_PACKAGES=\((.*?)\)", (ROOT / "run.sh").read_text(), re.S).group(1).split())
    table = (DOCS / "dependencies.md").read_text().lower()
    rows = {w for line in table.splitlines() if line.startswith("|")
            for w in re.findall(r"[a-z0-9][a-z0-9.+-]*", line.split("|")[1])}
    assert not (python | apt) - rows, sorted((python | apt) - rows)


def _recorded_machine(path: pathlib.Path) -> tuple[str | None, str | None]:
    """(CPU model, kernel release) a committed result file records: a pyperf suite's metadata or a prices file's."""
    data = json.loads(path.read_text())
    if "benchmarks" in data:
        meta = {**data["benchmarks"][0].get("metadata", {}), **data.get("metadata", {})}
        return meta.get("vmexec_cpu_model"), meta.get("vmexec_kernel")
    machine = data.get("machine") if isinstance(data.get("machine"), dict) else data   # events/stops files nest it
    return machine.get("cpu_model"), machine.get("kernel")


def _is_run(path: pathlib.Path) -> bool:
    """A pyperf suite or a prices file (not an anatomy, a plan or a cache entry)."""
    data = json.loads(path.read_text())
    return isinstance(data, dict) and ("benchmarks" in data or "ns_per_iteration" in data)


def test_the_machines_table_lists_every_committed_run_with_what_it_records():
    text = (DOCS / "research-notes.md").read_text()
    table = re.search(r"<!-- machines -->\n(.*?)<!-- /machines -->", text, re.S).group(1)
    rows = {m.group(1): line for line in table.splitlines() if (m := re.match(r"\| `([^`]+)` \|", line))}
    runs = {f for f in tracked() if re.match(r"(results|baselines)/.*\.json$", f) and _is_run(ROOT / f)}
    assert runs and not runs - set(rows), f"committed runs missing from the table: {sorted(runs - set(rows))}"
    wrong = []
    for rel, row in rows.items():
        cpu, kernel = _recorded_machine(ROOT / rel)
        cells = [c.strip() for c in row.strip("|").split("|")]
        short = " ".join(re.sub(r"\(R\)|Processor|CPU version.*", "", cpu).split()) if cpu else "—"
        if cells[2] != short or cells[3] != kernel:
            wrong.append(f"{rel}: table says {cells[2]} / {cells[3]}, the file records {cpu} / {kernel}")
    assert not wrong, "\n".join(wrong)


def test_what_the_docs_say_changes_on_kvm_is_what_the_main_job_runs_there():
    from bench.commands import mainjob
    kvm = mainjob.Decision("kvm", "a probe boot under KVM ran a command", mainjob.KVM_VARIANT)
    said = " ".join(COMMANDS.read_text().split())
    guest = " ".join(mainjob._kvm_guest(kvm, "run"))
    assert f"`{guest}`" in said, guest
    assert any(step.argv[:len(mainjob._icount_guest("run"))] == mainjob._icount_guest("run")
               for step in mainjob.plan(kvm)), "the docs say the icount guest run is still made on KVM"
