"""`bench report`: results turned into an answer a reader can check.

The statistics live in bench.stats, the verdict and every figure it rests on
in bench.verdict (Findings), the plots in bench.render.plots; this module lays
them out as a document (a list of blocks, section by section from
one list) and renders that document twice: Markdown for a code-hosting site
and one self-contained HTML file with the plots embedded.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Callable

import numpy as np
import pandas as pd

from bench import stats, verdict
from bench.estimates import per_machine
from bench.anatomy.model import CostModel, fitted_model
from bench.render import anatomy, plots, prices, provenance
from bench import results
from bench.errors import UsageError, writable_directory
from bench.render.document import table, to_html, to_markdown, to_text
from bench.render.plots import run_title


# --------------------------------------------------------------------------- inputs

def from_env(where: pathlib.Path | None = None) -> list[pathlib.Path]:
    """The result files $VMEXEC_RESULTS names, else the newest in the results directory."""
    return results.named_files() or results.newest(where)


def load_inputs(paths) -> tuple[pd.DataFrame, list[dict]]:
    """(tidy frame of the pyperf suites, RFC-replica records) from any mix of result files."""
    suites, rfc = results.split(paths)
    if not suites:
        raise UsageError("no pyperf results among the files given (only RFC-replica files)")
    return stats.load(suites), [results.load_rfc(p) for p in rfc]


# --------------------------------------------------------------------------- the document
# The blocks of bench.render.document, section by section.

def _ns(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _x(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.2f}x"


def _reason_items(why: dict[str, str]) -> list[str]:
    """{case: reason} as list items, the cases that share a reason on one line."""
    by_reason: dict[str, list[str]] = {}
    for case, reason in why.items():
        by_reason.setdefault(reason, []).append(case)
    return [", ".join(f"`{c}`" for c in cases) + f": {reason}" for reason, cases in by_reason.items()]


def _claim_blocks(f: verdict.Findings) -> list:
    r = f.claim
    if r.empty:
        why = stats.reasons(f.values, stats.CANDIDATE)
        if not why:
            return [("p", "No run measured process_vm_exec (none of the given results has the backend).")]
        return [("p", "No run measured process_vm_exec:"), ("list", _reason_items(why))]
    rows = []
    for (_, row), a in zip(r.iterrows(), f.assessments, strict=True):
        judged = "–" if a.low is None else f"{a.interval}: {a.low:.2f}–{a.high:.2f}"
        rows.append([row["run_id"], "VM" if row["vm"] else "host", f"{row['accelerator']}/{row['timing']}",
                     row["pin"], _x(row["speedup"]), f"{row['speedup_low']:.2f}–{row['speedup_high']:.2f}",
                     judged, a.judgement.removeprefix("the ")])
    return [("table", ["run", "where", "accelerator/timing", "pinning", "speed-up (SYSEMU ÷ process_vm_exec)",
                       "95% CI", "interval judged", "judgement"], rows)]


CASES_CSV = "cases.csv"


def _kinds() -> dict[str, str]:
    """{backend: kind} from the driver (tracer, in-process, binary rewriting); {} where it is not built."""
    import tracers
    try:
        return {b.name: b.kind for b in tracers.all_backends()}
    except tracers.BackendFailed:
        return {}


REWRITING = "binary rewriting"


def _rewriting_blocks(df: pd.DataFrame) -> list:
    """What binary rewriting gives up, beside the backends that do it, and their first-call costs."""
    kinds = _kinds()
    if not any(kinds.get(b) == REWRITING for b in df["backend"].unique()):
        return []
    text = ("The binary rewriting backends (zpoline, lazypoline, systrap-patch) do not enter the kernel per "
            "call: the `syscall` instructions are rewritten into calls to an interposer in the same process. "
            "What they give up is enforcement: an untrusted program can jump past a rewritten site, issue "
            "`syscall` from code written or mapped later, or undo the rewrite, so only lazypoline's and "
            "systrap's trap (syscall user dispatch, seccomp) makes them exhaustive, at one trap per new "
            "site; process_vm_exec and the other kernel mechanisms enforce every call. That is also why they can "
            "cost less than native, which enters the kernel for every call: their handled call is a function "
            "call in user space, so a figure below native's is no faster kernel path, only none at all.")
    costs = []
    for _, row in df.drop_duplicates("run_id").iterrows():
        try:
            cost = json.loads(row.get("vmexec_first_call_ns") or "{}")
        except (TypeError, ValueError):
            continue
        if cost:
            costs.append(f"{run_title(row)}: " + ", ".join(f"`{case.split(':')[0]}` {_ns(ns)} ns"
                                                         for case, ns in sorted(cost.items())))
    if costs:
        text += (" The first call at a fresh site (trap, patch, return; median of 16 sites, before the loop) "
                 "costs, " + "; ".join(costs) + ".")
    return [("p", text)]


def _backend_blocks(t: pd.DataFrame, df: pd.DataFrame) -> list:
    """Per run, every backend without sweeps (the sweeps are plotted; every case is in CASES_CSV)."""
    blocks = []
    for run_id, g in stats.base_cases(t).groupby("run_id", sort=True):
        blocks.append(("h", 3, run_title(g.iloc[0])))
        kinds = _kinds()
        rows = [[f"`{row['case']}`" + (f" ({REWRITING})" if kinds.get(row["backend"]) == REWRITING else ""),
                 _ns(row["median_ns"]), f"{_ns(row['ci_low'])}–{_ns(row['ci_high'])}",
                 str(row["n"]), f"{100 * row['rel_std']:.1f}%", _x(row["x_native"]),
                 _x(row["speedup_vs_sysemu"]) + (f" ({row['speedup_low']:.2f}–{row['speedup_high']:.2f})"
                                                  if row["backend"] != stats.SYSEMU and np.isfinite(row["speedup_vs_sysemu"]) else ""),
                 row["sysemu_pin"] or "–"]
                for _, row in g.sort_values(["median_ns"]).iterrows()]
        blocks.append(("table", ["case", "ns/syscall (median)", "95% CI", "n", "rel. std", "cost vs native",
                                 "speed-up vs SYSEMU (95% CI)", "SYSEMU pinning compared"], rows))
        why = stats.reasons(df[df["run_id"] == run_id])
        if why:
            blocks += [("p", "Could not be measured in this run (cases that share a reason on one line):"),
                       ("list", _reason_items(why))]
    return blocks


def _host_guest_blocks(hg: pd.DataFrame) -> list:
    if hg.empty:
        return [("p", "No backend was measured both on the host and in a guest among these results.")]
    rows = [[f"`{r['backend']}`", r["pin"] if r["backend_pin"] != results.IN_PROCESS else f"in-process; SYSEMU {r['pin']}",
             f"{_x(r['host_speedup'])} ({r['host_low']:.2f}–{r['host_high']:.2f})",
             f"{r['accelerator']}/{r['timing']}", f"{_x(r['guest_speedup'])} ({r['guest_low']:.2f}–{r['guest_high']:.2f})",
             f"{r['distortion']:.2f} ({r['distortion_low']:.2f}–{r['distortion_high']:.2f})"
             + ("" if r["backend"] not in verdict.NOT_DISTORTION_PROBES else " (not a probe)")]
            for _, r in hg.iterrows()]
    return [("p", "Speed-up over PTRACE_SYSEMU (SYSEMU ÷ backend) of the same backend, on the host and in the "
                  "guest. A distortion (guest ÷ host) far from 1 means the VM changes relative costs; its range "
                  "combines both runs' 95% CIs. The distortions of the C mechanisms at the headline's pinning "
                  "bound the hardware-equivalent range of process_vm_exec's speed-up (see the verdict); "
                  "python-ptrace-sysemu is no probe: its cost is the Python interpreter's."),
            ("table", ["backend", "pinning", "host (95% CI)", "guest accelerator/timing", "guest (95% CI)",
                       "distortion (range)"], rows)]


def _rfc_blocks(summary: pd.DataFrame, rfc: list[dict]) -> list:
    t = stats.rfc_table(rfc)
    rows = [[r["source"], f"`{r['program']}`", _ns(r["printed_ns"]) if r["available"] else "not run",
             _ns(r["true_ns"]) if r["available"] else r["reason"]] for _, r in t.iterrows()]
    ours = stats.base_cases(summary)
    ours = ours[ours["backend"].isin([stats.SYSEMU, stats.CANDIDATE]) & (ours["pin"] == "same")]
    for _, r in ours.iterrows():
        program = {stats.SYSEMU: "ptrace-sysemu (≈ ptrace_vm_exec)", stats.CANDIDATE: "process-vm-exec"}[r["backend"]]
        rows.append([f"this harness: {run_title(r)}", f"`{program}`, same CPU",
                     _ns(r["median_ns"] / stats.RFC_LOOP_SECONDS), _ns(r["median_ns"])])
    speedups = "; ".join(f"{k}: {v:.2f}x" for k, v in stats.rfc_speedups(rfc).items())
    return [("p", f"The RFC's programs loop for {stats.RFC_LOOP_SECONDS} s but print 1e9 / iterations, so the "
                  f"\"ns/syscall\" they print is one fifth of the true cost per iteration: the cover letter's "
                  f"1446 vs 289 ns are really about 7.2 µs vs 1.45 µs. The ratio is unaffected."),
            ("table", ["source", "program", "ns/syscall as the RFC prints it (true ÷ 5)", "true ns per iteration"],
             rows),
            ("p", f"RFC-program speed-ups (ptrace_vm_exec ÷ process_vm_exec): {speedups}.")]


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What every section may draw on: the findings and what the report was made from."""
    findings: verdict.Findings
    rfc: list[dict]                 # RFC-replica records
    plots: list[str]                # stems of the plots drawn
    paths: list[pathlib.Path]       # every input file
    suites: list[pathlib.Path]      # the pyperf suites among them
    model: CostModel | None = None              # the host cost model (anatomy_dir(paths))
    no_model: str = ""                          # why there is none
    composed: object = None                     # bench.anatomy.composed.Composition: the estimate from measured prices
    no_composed: str = ""                       # why there is none
    machines: tuple = ()                        # (machine, Composition or None, why none) per machine, oldest first
    health: tuple = ()                          # provenance.Health of each suite
    sources: tuple = ()                         # provenance.Input of every file the report drew on


TITLE = "process_vm_exec vs PTRACE_SYSEMU: benchmark report"


def _first_screen(i: Inputs) -> list:
    """The answer in at most three sentences (verdict.answer), the title, the key plot with the
    interval judged drawn on it; then the verdict in full, its figures side by side, its caveat and
    the rule they follow."""
    h = i.findings.headline
    return [("p", "\n".join(opening(i.findings, i.health))),
            ("h", 1, TITLE),
            *([("img", plots.KEY_PLOT, plots.key_caption(i.findings))] if plots.KEY_PLOT in i.plots else []),
            ("h", 2, "The verdict in full"),
            ("p", f"**Verdict: {h.sentence}**"),
            *([("p", "Side by side:"), ("list", list(h.figures))] if h.figures else []),
            *([("p", f"*Caveat:* {h.caveat}")] if h.caveat else []),
            *provenance.trust_blocks(i.health),
            ("p", verdict.VERDICT_RULE),
            ("p", "Inputs: " + ", ".join(f"`{p.name}`" for p in i.paths)),
            *([("p", f"The estimate from measured parts drew on: {i.composed.inputs}.")]
              if i.composed is not None else [])]


def opening(f: verdict.Findings, health) -> tuple[str, ...]:
    """The answer (verdict.answer_lines: the sentences on one line, then a line per machine), opened by
    provenance.caution when a run it draws on is mostly unstable."""
    lines = verdict.answer_lines(f)
    said = " ".join(x for x in lines if not x.startswith("- "))
    warn = provenance.caution(list(health))
    if warn:
        said = f"{warn} {said[0].lower()}{said[1:]}" if said.startswith("We ") else f"{warn} {said}"
    return (said, *(x for x in lines if x.startswith("- ")))


def _every_backend(i: Inputs) -> list:
    return [("p", "ns/syscall: median of all pyperf values (warm-ups excluded), 95% CI by a two-level "
                  "bootstrap of the median (pyperf worker processes resampled, then values within each). "
                  "Cost vs native = backend ÷ native; speed-up vs SYSEMU = SYSEMU ÷ backend, both "
                  "within the same run and pinning (in-process backends: against SYSEMU on the same CPU). "
                  "For parallel cases the value is wall time over all calls (inverse throughput). "
                  f"Below, each run's backends without sweeps; every case, sweeps included, is in "
                  f"[`{CASES_CSV}`]({CASES_CSV})."),
            *_rewriting_blocks(i.findings.values),
            *_backend_blocks(i.findings.table, i.findings.values)]


def anatomy_dir(paths: list[pathlib.Path]) -> pathlib.Path:
    """The instruction anatomy beside the inputs: anatomy/ in the first input's directory
    (results/anatomy/ for results/*.json), or in the nearest of its parents that has one (for runs
    kept inside results/anatomy/ itself, such as its host and guest runs)."""
    first = paths[0].resolve().parent
    found = next((d / "anatomy" for d in (first, *first.parents) if (d / "anatomy" / "anatomy.json").exists()), None)
    return _relative(found or first / "anatomy")


def _relative(path: pathlib.Path) -> pathlib.Path:
    """path relative to the current directory when it lies below it (the report quotes it in messages,
    and a committed report must not carry the checkout's absolute path), else as it is."""
    try:
        return path.relative_to(pathlib.Path.cwd().resolve())
    except ValueError:
        return path


def _composed_blocks(i: Inputs) -> list:
    if i.composed is not None:
        return prices.blocks(i.composed)
    if not i.no_composed:
        return []
    how = (" `python -m bench prices --prices RECORD --host HOST --diagnose` composes them all the same, as a "
           "diagnosis of where the price model fails, with no estimate." if "not admissible" in i.no_composed else "")
    return [("p", f"No estimate from measured parts: {i.no_composed}.{how}")]


def _events_blocks(i: Inputs) -> list:
    """Host and twin, event by event (issue 26): the newest `bench events` counts of the newest machine among
    the inputs (the headline's), and of its twin booted there, from anatomy/events/ beside the inputs."""
    from bench.anatomy.composed import machine_of
    from bench.measure import events as measured
    from bench.render import events as render_events

    hosts = [p for p in i.suites if results.classify(results.read_json(p)) == "host"]
    if not hosts:
        return []
    newest = max(hosts, key=lambda p: results.recorded_start(results.read_json(p)))
    where, machine = anatomy_dir(i.paths) / "events", machine_of(newest)
    host, twin = (measured.newest([where], role, machine) for role in ("host", "twin"))
    if host is None:
        return []
    docs = [json.loads(p.read_text()) for p in (host, twin) if p is not None]
    named = " and ".join(f"`{_relative(p)}`" for p in (host, twin) if p is not None)
    return [("p", f"Kernel events per intercepted call on the newest machine's host"
                  f"{' and in its twin' if twin else ''} (`bench events`{', `--kernel-variant twin`' if twin else ''}:"
                  f" {named}): a mechanism whose counts differ between the two is named below the table."),
            *render_events.blocks(*docs)]


def _other_plots(i: Inputs) -> list:
    return [("img", stem, plots.CAPTIONS[stem]) for stem in i.plots if stem != plots.KEY_PLOT]


#: The report, in order: (heading or None, section(inputs) -> blocks).  A section with no
#: blocks is left out, heading and all.  Adding a section: its function and one entry here.
SECTIONS: list[tuple[str | None, Callable[[Inputs], list]]] = [
    (None, _first_screen),
    ("The claim, run by run", lambda i: _claim_blocks(i.findings)),
    ("Every backend", _every_backend),
    ("Plots", _other_plots),
    ("Host vs guest", lambda i: _host_guest_blocks(i.findings.host_guest) if i.findings.values["vm"].any() else []),
    ("Instruction anatomy", lambda i: anatomy.report_blocks(anatomy_dir(i.paths))),
    ("Speculation mitigations off and on", lambda i: anatomy.mitigation_blocks(anatomy_dir(i.paths))),
    ("A hardware estimate from measured parts", _composed_blocks),
    ("The machines side by side", lambda i: prices.side_by_side(list(i.machines)) if len(i.machines) > 1 else []),
    ("Host and twin, event by event", _events_blocks),
    ("A host cost model from the anatomy",
     lambda i: anatomy.cost_model_blocks(i.model, i.no_model, anatomy_dir(i.paths))),
    ("pyperf's stability checks", lambda i: provenance.stability_blocks(i.suites, results.run_ids(i.suites), i.findings.summary)),
    ("The RFC's figures beside ours", lambda i: _rfc_blocks(i.findings.summary, i.rfc)),
    ("What this report stands on", lambda i: provenance.inputs_blocks(list(i.sources), _relative)),
    ("Environment", lambda i: provenance.environment_blocks(i.findings.values)),
]


def build(i: Inputs) -> list:
    """The report as blocks: the verdict, its caveat and the key plot first, then the evidence behind them."""
    doc = []
    for heading, section in SECTIONS:
        blocks = section(i)
        if blocks:
            doc += ([("h", 2, heading)] if heading else []) + blocks
    return doc


def _findings(df: pd.DataFrame, paths: list[pathlib.Path]):
    """(Findings, suites, model, no_model, composed, no_composed): everything a report of paths judges; each host
    machine among the inputs judged on its own estimates (bench.estimates.per_machine), the newest one's shown
    in full."""
    suites, _ = results.split(paths)
    machines = per_machine(suites, anatomy_dir(paths))
    if not machines:
        model, no_model = fitted_model(suites, anatomy_dir(paths))
        f = verdict.findings(df, verdict.ModelPrediction.of(model) if model else None, no_model)
        return f, suites, model, no_model, None, "", ()
    newest = list(machines.values())[-1]
    f = verdict.findings(df, machines=machines)
    side = tuple((f"{cpu}, Linux {kernel}", e.composed or e.diagnosis, e.no_composed)
                 for (cpu, kernel), e in machines.items())
    return f, suites, newest.model, newest.no_model, newest.composed, newest.no_composed, side


def answer(paths) -> tuple[str, ...]:
    """The answer (verdict.answer_lines) a report of paths opens with, without drawing or writing anything."""
    paths = [pathlib.Path(p) for p in paths]
    return opening(_findings(load_inputs(paths)[0], paths)[0], healths(paths))


def healths(paths) -> list[provenance.Health]:
    suites, _ = results.split(paths)
    return [provenance.health(p, run_id) for p, run_id in zip(suites, results.run_ids(suites))]


def write_report(paths, output: pathlib.Path) -> dict[str, pathlib.Path]:
    """Load the results, draw every plot, write report.md and report.html into output."""
    paths = [pathlib.Path(p) for p in paths]
    df, rfc = load_inputs(paths)
    writable_directory(output, create=True, need=REPORT_BYTES)
    f, suites, model, no_model, composed, no_composed, side = _findings(df, paths)
    written = {}
    figs = plots.figures(f)
    for stem, fig in figs.items():
        written.update({f"{stem}.{fmt}": p for fmt, p in plots.save(fig, output, stem).items()})
    table = f.table.drop(columns=["started"])
    written[CASES_CSV] = _replace(output / CASES_CSV, lambda p: table.to_csv(p, index=False, float_format="%.6g"))
    doc = build(Inputs(f, rfc, list(figs), paths, suites, model, no_model, composed, no_composed, side,
                       tuple(healths(paths)), tuple(provenance.sources(paths, anatomy_dir(paths), model, composed))))
    written["report.md"] = _replace(output / "report.md", lambda p: p.write_text(to_markdown(doc)))
    page = to_html(doc, {s: (output / f"{s}.png").read_bytes() for s in figs})
    written["report.html"] = _replace(output / "report.html", lambda p: p.write_text(page))
    return written


#: Free space a report needs at least: its plots, twice over (PNG and SVG), and the HTML embedding them.
REPORT_BYTES = 8 << 20


def _replace(path: pathlib.Path, write) -> pathlib.Path:
    """Each report file is replaced whole, or (a full disk) not at all: never left half-written."""
    return results.publish(path, write, exists="replace")


def format_compare(c: pd.DataFrame, a: str, b: str, only_a: list[str] = (), only_b: list[str] = ()) -> str:
    """The compared cases as a table, then the cases only one run has (as pyperf compare_to lists the
    benchmarks it ignores): a case missing from a comparison is said, not dropped silently."""
    ignored = [f"not compared, only in {run} ({len(cases)} case{'s' if len(cases) != 1 else ''}): {', '.join(cases)}"
               for run, cases in ((a, only_a), (b, only_b)) if cases]
    return "\n".join([_compare_table(c, a, b), *ignored])


def _compare_table(c: pd.DataFrame, a: str, b: str) -> str:
    rows = []
    for _, r in c.iterrows():
        change = r["change"]
        word = "slower" if change > 1 else "faster"
        t = f" (t={r['t_score']:.2f})" if r["t_score"] is not None else ""
        significance = ("not enough values" if r["significant"] is None else
                        "yes" + t if r["significant"] else "no" + t)
        rows.append((r["case"], _ns(r["median_a_ns"]), _ns(r["median_b_ns"]),
                     f"{max(change, 1 / change):.2f}x {word}" if change != 1 else "no change", significance, r["test"]))
    return to_text([table(("case", f"{a} ns", f"{b} ns", "change", "significant?", "test"), rows, "lrrrrl")])
