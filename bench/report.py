"""`bench report`, `bench compare`, `bench check`: results turned into an answer a reader can check.

The statistics live in bench.analysis; this module only draws them
(matplotlib figures), lays them out as a document (a list of blocks) and
renders that document twice: Markdown for a code-hosting site and one
self-contained HTML file with the plots embedded.
"""
from __future__ import annotations

import base64
import html
import pathlib
import re

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure     # no pyplot: no global state, no GUI backend, Agg on save
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from . import accelerators
from . import analysis as A
from . import results
from .errors import UsageError, writable_directory

#: Log scale when the largest value is this many times the smallest.
LOG_SPREAD = 20


# --------------------------------------------------------------------------- inputs

def from_env(variable: str = "VMEXEC_RESULTS", where: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Result files from a colon-separated environment variable, else the newest in the results directory."""
    import os

    value = os.environ.get(variable, "")
    return [pathlib.Path(p) for p in value.split(":") if p] or results.newest(where)


def load_inputs(paths) -> tuple[pd.DataFrame, list[dict]]:
    """(tidy frame of the pyperf suites, RFC-replica records) from any mix of result files."""
    suites, rfc = results.split(paths)
    if not suites:
        raise UsageError("no pyperf results among the files given (only RFC-replica files)")
    return A.load(suites), [A.load_rfc(p) for p in rfc]


# --------------------------------------------------------------------------- plots

SYSEMU_COLOR, CANDIDATE_COLOR, OTHER_COLOR = "#d62728", "#2ca02c", "#1f77b4"


def _color(backend: str) -> str:
    return {A.BASELINE: SYSEMU_COLOR, A.CANDIDATE: CANDIDATE_COLOR, A.NATIVE: "#7f7f7f"}.get(backend, OTHER_COLOR)


def _label(row) -> str:
    return f"{row['backend']} ({row['pin']})"


def run_title(row) -> str:
    """How a run is named on plots and in tables: which machine, which kernel."""
    where = (f"VM {accelerators.label(row['accelerator'])}, {row['timing']} timing" if row["vm"]
             else f"host, {row['accelerator']}")
    return f"{row['run_id']} — {where}, Linux {row['kernel']}"


def _base(s: pd.DataFrame) -> pd.DataFrame:
    return s[(s["pages"] == 0) & (s["parallel"] == 1)]


def _panels(frame: pd.DataFrame, height_per_row: float, *, width: float = 11.0, min_height: float = 2.2,
            first: set[str] = frozenset()):
    """One horizontal panel per run (those in `first` on top), each tall enough for its rows;
    yields (axes, run_id, run rows)."""
    runs = sorted(frame.groupby("run_id", sort=True), key=lambda item: item[0] not in first)
    heights = [max(min_height, 0.9 + height_per_row * len(g)) for _, g in runs]
    fig = Figure(figsize=(width, sum(heights) + 0.4 * len(runs)), layout="constrained")
    axes = fig.subplots(len(runs), 1, squeeze=False, height_ratios=heights)[:, 0]
    return fig, [(ax, run_id, g) for ax, (run_id, g) in zip(axes, runs)]


def _maybe_log(ax, values, axis: str = "x", fmt=lambda v: f"{v:,.0f}") -> None:
    """Log scale when the values span more than LOG_SPREAD; plain numbers on the ticks either way."""
    values = np.asarray([v for v in values if v > 0 and np.isfinite(v)])
    if len(values) and values.max() / values.min() > LOG_SPREAD:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    _ticks(ax, axis, fmt)


def _ticks(ax, axis: str, fmt) -> None:
    """Tick labels as fmt(value) (e.g. "10,000", "5x") instead of 10^4; minor ones only on short log axes."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    low, high = (ax.get_xlim() if axis == "x" else ax.get_ylim())
    short = target.get_scale() == "log" and low > 0 and high / low < 30
    if short:       # only 2x and 5x minor ticks: labelled every 1-9 they collide
        target.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    target.set_minor_formatter(FuncFormatter(lambda v, _: fmt(v)) if short else NullFormatter())


def _dots(ax, y, values, low, high, colors, **kw) -> None:
    """A dot per value with its CI as a whisker: on a log axis a bar's length would mean nothing."""
    values = np.asarray(values, dtype=float)
    ax.errorbar(values, y, xerr=[values - np.asarray(low), np.asarray(high) - values], fmt="none",
                ecolor="black", elinewidth=1, capsize=3, zorder=2)
    ax.scatter(values, y, c=colors, s=36, zorder=3, **kw)


def _hbars(ax, labels, values, low, high, colors, fmt) -> None:
    """One row per label: a dot with CI whiskers, labelled with fmt(value) just past its whisker."""
    y = np.arange(len(labels))
    _dots(ax, y, values, low, high, colors)
    for yi, (v, h) in enumerate(zip(values, high)):
        ax.annotate(fmt(v), (h, yi), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()           # first row on top, as in the tables
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.margins(x=0.12)          # room for the value labels


def plot_cost(s: pd.DataFrame) -> Figure:
    """Median ns per intercepted syscall for every backend, with 95% CI error bars."""
    base = _base(s).sort_values(["run_id", "median_ns"])
    fig, panels = _panels(base, 0.32)
    for ax, run_id, g in panels:
        _hbars(ax, [_label(r) for _, r in g.iterrows()], g["median_ns"].to_numpy(),
               g["ci_low"].to_numpy(), g["ci_high"].to_numpy(), [_color(b) for b in g["backend"]],
               lambda v: f"{v:,.0f}")
        _maybe_log(ax, base["median_ns"])
        ax.set_title(run_title(g.iloc[0]), fontsize=10)
        ax.set_xlabel("ns per intercepted syscall (median; whiskers: 95% bootstrap CI)")
    fig.suptitle("Cost per syscall, by backend (lower is faster)")
    return fig


def plot_speedup(r: pd.DataFrame, runs: pd.DataFrame) -> Figure | None:
    """Speed-up of every backend over PTRACE_SYSEMU at the same pinning, with the RFC's 5x claim."""
    if r.empty:
        return None
    r = r.assign(backend=r["numerator"]).sort_values(["run_id", "speedup"], ascending=[True, False])
    # The runs that answer the question (they measured process_vm_exec) on top: the first screen shows them.
    fig, panels = _panels(r, 0.32, first=set(r.loc[r["backend"] == A.CANDIDATE, "run_id"]))
    for ax, run_id, g in panels:
        labels = [f"{row['backend']} ({row['pin']})" if row["numerator_pin"] != A.IN_PROCESS else
                  f"{row['backend']} (in-process; vs SYSEMU {row['pin']})" for _, row in g.iterrows()]
        _hbars(ax, labels, g["speedup"].to_numpy(),
               g["speedup_low"].to_numpy(), g["speedup_high"].to_numpy(), [_color(b) for b in g["backend"]],
               lambda v: f"{v:.2f}x")
        ax.axvline(1.0, color=SYSEMU_COLOR, lw=1.2, label="PTRACE_SYSEMU itself (1x)")
        ax.axvline(A.CLAIM, color="black", ls="--", lw=1.2, label=f"the RFC's claim: {A.CLAIM:g}x")
        ax.set_xscale("log")
        _ticks(ax, "x", lambda v: f"{v:g}x")
        ax.set_title(run_title(runs.loc[run_id]), fontsize=10)
        ax.set_xlabel("speed-up over PTRACE_SYSEMU (median SYSEMU ns ÷ median backend ns; 95% CI)")
    fig.legend(*panels[0][0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=9)
    fig.suptitle("How many times faster than PTRACE_SYSEMU (higher is faster)")
    return fig


PIN_COLORS = {"same": "#1f77b4", "cross": "#ff7f0e", "none": "#9467bd"}
PIN_LABELS = {"same": "same CPU", "cross": "different CPUs", "none": "unpinned"}


def plot_pinning(s: pd.DataFrame) -> Figure | None:
    """Same CPU vs different CPUs (vs unpinned) for every tracer backend measured at two placements."""
    base = _base(s)
    base = base[base["pin"].isin(PIN_COLORS)]
    multi = base.groupby(["run_id", "backend"])["pin"].transform("nunique") > 1
    base = base[multi]
    if base.empty:
        return None
    fig, panels = _panels(base.drop_duplicates(["run_id", "backend"]), 0.55)
    for ax, run_id, _ in panels:
        g = base[base["run_id"] == run_id]
        backends = list(g.groupby("backend")["median_ns"].min().sort_values().index)
        pins = [p for p in PIN_COLORS if p in set(g["pin"])]
        height = 0.8 / len(pins)
        for i, pin in enumerate(pins):
            rows = g[g["pin"] == pin].set_index("backend").reindex(backends)
            y = np.arange(len(backends)) + (i - (len(pins) - 1) / 2) * height
            _dots(ax, y, rows["median_ns"], rows["ci_low"], rows["ci_high"], PIN_COLORS[pin],
                  label=PIN_LABELS[pin])
            for yi, (v, h) in enumerate(zip(rows["median_ns"], rows["ci_high"])):
                if np.isfinite(v):
                    ax.annotate(f"{v:,.0f}", (h, y[yi]), xytext=(4, 0), textcoords="offset points",
                                va="center", fontsize=8)
        ax.set_yticks(np.arange(len(backends)), backends)
        ax.invert_yaxis()
        ax.margins(x=0.08)
        _maybe_log(ax, g["median_ns"])
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.set_xlabel("ns per intercepted syscall (median, 95% CI)")
        ax.set_title(run_title(g.iloc[0]), fontsize=10)
    handles = {label: h for ax, _, _ in panels for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=len(handles), fontsize=9)
    fig.suptitle("Tracer and tracee on the same CPU vs on different CPUs (lower is faster)")
    return fig


#: matplotlib 3.10 renamed boxplot's vert=False (now deprecated) to orientation="horizontal".
HORIZONTAL = {"orientation": "horizontal"} if tuple(map(int, matplotlib.__version__.split(".")[:2])) >= (3, 10) \
    else {"vert": False}


def plot_distribution(df: pd.DataFrame, s: pd.DataFrame) -> Figure:
    """Every value per backend (box: quartiles, whiskers 1.5 IQR, dots: outliers)."""
    base = _base(s).sort_values(["run_id", "median_ns"])
    fig, panels = _panels(base, 0.32)
    for ax, run_id, g in panels:
        values = [df.loc[(df["run_id"] == run_id) & (df["case"] == c), "value_ns"].to_numpy() for c in g["case"]]
        box = ax.boxplot(values, **HORIZONTAL, patch_artist=True, widths=0.6,
                         flierprops={"markersize": 3}, medianprops={"color": "black"})
        for patch, backend in zip(box["boxes"], g["backend"]):
            patch.set_facecolor(_color(backend))
            patch.set_alpha(0.6)
        ax.set_yticks(np.arange(1, len(g) + 1), [_label(r) for _, r in g.iterrows()])
        ax.invert_yaxis()
        _maybe_log(ax, np.concatenate(values))
        ax.grid(axis="x", which="both", alpha=0.3)
        n = sorted({int(g["n"].min()), int(g["n"].max())})
        ax.set_xlabel(f"ns per intercepted syscall (box: quartiles and median; whiskers: 1.5 IQR; "
                      f"dots: outliers; n = {'–'.join(map(str, n))} values per box)")
        ax.set_title(run_title(g.iloc[0]), fontsize=10)
    fig.suptitle("Distribution of the measurements, by backend")
    return fig


def _line_style(i: int) -> dict:
    """Distinct colour and marker per line: more lines than one palette has colours must not share one."""
    return {"color": matplotlib.colormaps["tab20"](i % 20), "marker": "osD^v<>ph*"[i % 10]}


def _sweep_panels(lines: pd.DataFrame, title: str):
    runs = lines["run_id"].unique()
    fig = Figure(figsize=(9, 4.2 * len(runs)), layout="constrained")
    axes = fig.subplots(len(runs), 1, squeeze=False)[:, 0]
    fig.suptitle(title)
    return fig, list(zip(axes, runs))


def _label_sweep(ax, lines: pd.DataFrame, run_id: str, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(run_title(lines[lines["run_id"] == run_id].iloc[0]), fontsize=10)
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8)


def plot_pages(s: pd.DataFrame) -> Figure | None:
    """ns/syscall against pages written by the tracee between syscalls (the pages sweep)."""
    swept = s[(s["pages"] > 0) & (s["parallel"] == 1)]
    if swept.empty:
        return None
    keys = swept[["run_id", "backend", "pin"]].drop_duplicates()
    lines = s[s["parallel"] == 1].merge(keys, on=["run_id", "backend", "pin"]).sort_values("pages")
    fig, panels = _sweep_panels(lines, "Cost as the tracee touches more memory between syscalls")
    for ax, run_id in panels:
        for i, ((backend, pin), g) in enumerate(lines[lines["run_id"] == run_id].groupby(["backend", "pin"])):
            ax.errorbar(g["pages"], g["median_ns"], yerr=[g["median_ns"] - g["ci_low"], g["ci_high"] - g["median_ns"]],
                        capsize=3, label=f"{backend} ({pin})", **_line_style(i))
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(sorted(lines["pages"].unique()), [f"{p:g}" for p in sorted(lines["pages"].unique())])
        _maybe_log(ax, lines["median_ns"], axis="y")
        _label_sweep(ax, lines, run_id, "pages written between syscalls (4 KiB each; symlog)",
                     "ns per syscall (median, 95% CI)")
    return fig


def plot_parallel(s: pd.DataFrame) -> Figure | None:
    """Throughput (intercepted syscalls per second, all pairs together) against parallel tracees."""
    swept = s[(s["parallel"] > 1) & (s["pages"] == 0)]
    if swept.empty:
        return None
    rows, base = [], _base(s)
    for (run_id, backend, pin), g in swept.groupby(["run_id", "backend", "pin"]):
        # The sweep is unpinned; its parallel=1 point is the unpinned case, else the best other placement.
        ones = base[(base["run_id"] == run_id) & (base["backend"] == backend)]
        ones = ones.sort_values("pin", key=lambda p: p.map(lambda x: 0 if x == pin else 1 + A.pin_order(x)))
        one = ones.head(1)
        note = "" if one.empty or one["pin"].iloc[0] == pin else f"; 1 pair: {one['pin'].iloc[0]}"
        rows.append(pd.concat([one, g]).assign(line=f"{backend} ({pin}{note})"))
    lines = pd.concat(rows).sort_values("parallel")
    fig, panels = _sweep_panels(lines, "Throughput with several tracer/tracee pairs at once (higher is better)")
    for ax, run_id in panels:
        for i, (line, g) in enumerate(lines[lines["run_id"] == run_id].groupby("line")):
            # ns per syscall -> million syscalls per second; the CI bounds swap ends.
            rate, slow, fast = 1e3 / g["median_ns"], 1e3 / g["ci_high"], 1e3 / g["ci_low"]
            ax.errorbar(g["parallel"], rate, yerr=[rate - slow, fast - rate], capsize=3, label=line, **_line_style(i))
        ax.set_xticks(sorted(lines["parallel"].unique()))
        _maybe_log(ax, 1e3 / lines["median_ns"], axis="y", fmt=lambda v: f"{v:.3g}")
        _label_sweep(ax, lines, run_id, "tracer/tracee pairs running at once",
                     "million intercepted syscalls per second (95% CI)")
    return fig


def figures(f: A.Findings) -> dict[str, Figure]:
    """Every plot the data supports, by file stem (sweeps only when the run swept)."""
    s = f.summary
    runs = s.drop_duplicates("run_id").set_index("run_id", drop=False)
    figs = {"cost": plot_cost(s), "speedup": plot_speedup(f.all_ratios, runs),
            "pinning": plot_pinning(s), "distribution": plot_distribution(f.values, s),
            "pages": plot_pages(s), "parallel": plot_parallel(s)}
    return {k: f for k, f in figs.items() if f is not None}


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG (what notebooks display: IPython.display.Image(png_bytes(fig)))."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    return buf.getvalue()


def save(fig: Figure, directory: pathlib.Path, stem: str) -> dict[str, pathlib.Path]:
    """PNG and SVG; the same data give the same bytes (no date, fixed SVG ids), so a diff shows real change."""
    out = {}
    with matplotlib.rc_context({"svg.hashsalt": "vmexec-bench"}):
        for fmt, metadata in (("png", {"Software": None}), ("svg", {"Date": None})):
            out[fmt] = directory / f"{stem}.{fmt}"
            fig.savefig(out[fmt], dpi=110, format=fmt, metadata=metadata)
    return out


# --------------------------------------------------------------------------- the document
# A document is a list of blocks, plain tuples, rendered by to_markdown() and to_html():
#   ("h", level, text)  ("p", text)  ("list", [text])  ("table", headers, rows)  ("img", stem, caption)
# Text may use **bold** and `code`, the only inline markup both renderers support.

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


def _claim_blocks(f: A.Findings) -> list:
    df, r, hg = f.values, f.claim, f.host_guest
    if r.empty:
        why = A.reasons(df, A.CANDIDATE)
        if not why:
            return [("p", "No run measured process_vm_exec (none of the given results has the backend).")]
        return [("p", "No run measured process_vm_exec:"), ("list", _reason_items(why))]
    rows = []
    for _, row in r.iterrows():
        a = A.assess(df, row, hg)
        judged = "–" if a.low is None else f"{a.interval}: {a.low:.2f}–{a.high:.2f}"
        rows.append([row["run_id"], "VM" if row["vm"] else "host", f"{row['accelerator']}/{row['timing']}",
                     row["pin"], _x(row["speedup"]), f"{row['speedup_low']:.2f}–{row['speedup_high']:.2f}",
                     judged, a.judgement.removeprefix("the ")])
    return [("table", ["run", "where", "accelerator/timing", "pinning", "speed-up (SYSEMU ÷ process_vm_exec)",
                       "95% CI", "interval judged", "judgement"], rows)]


CASES_CSV = "cases.csv"


def _backend_blocks(t: pd.DataFrame, df: pd.DataFrame) -> list:
    """Per run, every backend without sweeps (the sweeps are plotted; every case is in CASES_CSV)."""
    blocks = []
    for run_id, g in _base(t).groupby("run_id", sort=True):
        blocks.append(("h", 3, run_title(g.iloc[0])))
        rows = [[f"`{row['case']}`", _ns(row["median_ns"]), f"{_ns(row['ci_low'])}–{_ns(row['ci_high'])}",
                 str(row["n"]), f"{100 * row['rel_std']:.1f}%", _x(row["x_native"]),
                 _x(row["speedup_vs_sysemu"]) + (f" ({row['speedup_low']:.2f}–{row['speedup_high']:.2f})"
                                                  if row["backend"] != A.BASELINE and np.isfinite(row["speedup_vs_sysemu"]) else ""),
                 row["sysemu_pin"] or "–"]
                for _, row in g.sort_values(["median_ns"]).iterrows()]
        blocks.append(("table", ["case", "ns/syscall (median)", "95% CI", "n", "rel. std", "cost vs native",
                                 "speed-up vs SYSEMU (95% CI)", "SYSEMU pinning compared"], rows))
        why = A.reasons(df[df["run_id"] == run_id])
        if why:
            blocks += [("p", "Could not be measured in this run (cases that share a reason on one line):"),
                       ("list", _reason_items(why))]
    return blocks


PLOT_CAPTIONS = {
    "cost": "Median ns per intercepted syscall, 95% bootstrap CI as whiskers.",
    "speedup": f"Speed-up over PTRACE_SYSEMU at the same pinning; dashed line: the RFC's {A.CLAIM:g}x.",
    "pinning": "Tracer and tracee on one CPU vs on two: the cost of cross-CPU wake-ups.",
    "distribution": "Every measurement, per backend: spread and outliers behind the medians.",
    "pages": "Cost as the tracee writes more pages between syscalls (address-space switch and TLB effects).",
    "parallel": "Throughput with several tracer/tracee pairs at once (unpinned).",
}


def _host_guest_blocks(hg: pd.DataFrame) -> list:
    if hg.empty:
        return [("p", "No backend was measured both on the host and in a guest among these results.")]
    rows = [[f"`{r['backend']}`", r["pin"] if r["backend_pin"] != A.IN_PROCESS else f"in-process; SYSEMU {r['pin']}",
             f"{_x(r['host_speedup'])} ({r['host_low']:.2f}–{r['host_high']:.2f})",
             f"{r['accelerator']}/{r['timing']}", f"{_x(r['guest_speedup'])} ({r['guest_low']:.2f}–{r['guest_high']:.2f})",
             f"{r['distortion']:.2f} ({r['distortion_low']:.2f}–{r['distortion_high']:.2f})"
             + ("" if r["backend"] not in A.NOT_DISTORTION_PROBES else " (not a probe)")]
            for _, r in hg.iterrows()]
    return [("p", "Speed-up over PTRACE_SYSEMU (SYSEMU ÷ backend) of the same backend, on the host and in the "
                  "guest. A distortion (guest ÷ host) far from 1 means the VM changes relative costs; its range "
                  "combines both runs' 95% CIs. The distortions of the C mechanisms at the headline's pinning "
                  "bound the hardware-equivalent range of process_vm_exec's speed-up (see the verdict); "
                  "python-ptrace-sysemu is no probe: its cost is the Python interpreter's."),
            ("table", ["backend", "pinning", "host (95% CI)", "guest accelerator/timing", "guest (95% CI)",
                       "distortion (range)"], rows)]


def _rfc_blocks(summary: pd.DataFrame, rfc: list[dict]) -> list:
    t = A.rfc_table(rfc)
    rows = [[r["source"], f"`{r['program']}`", _ns(r["printed_ns"]) if r["available"] else "not run",
             _ns(r["true_ns"]) if r["available"] else r["reason"]] for _, r in t.iterrows()]
    ours = _base(summary)
    ours = ours[ours["backend"].isin([A.BASELINE, A.CANDIDATE]) & (ours["pin"] == "same")]
    for _, r in ours.iterrows():
        program = {A.BASELINE: "ptrace-sysemu (≈ ptrace_vm_exec)", A.CANDIDATE: "process-vm-exec"}[r["backend"]]
        rows.append([f"this harness: {run_title(r)}", f"`{program}`, same CPU",
                     _ns(r["median_ns"] / A.RFC_LOOP_SECONDS), _ns(r["median_ns"])])
    speedups = "; ".join(f"{k}: {v:.2f}x" for k, v in A.rfc_speedups(rfc).items())
    return [("p", f"The RFC's programs loop for {A.RFC_LOOP_SECONDS} s but print 1e9 / iterations, so the "
                  f"\"ns/syscall\" they print is one fifth of the true cost per iteration: the cover letter's "
                  f"1446 vs 289 ns are really about 7.2 µs vs 1.45 µs. The ratio is unaffected."),
            ("table", ["source", "program", "ns/syscall as the RFC prints it (true ÷ 5)", "true ns per iteration"],
             rows),
            ("p", f"RFC-program speed-ups (ptrace_vm_exec ÷ process_vm_exec): {speedups}.")]


def stability_checks(path: pathlib.Path) -> dict[str, list[str]]:
    """{case: pyperf's warnings}, from `python -m pyperf check` (its public command) on one suite."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pyperf", "check", str(path)], capture_output=True,
                         text=True, timeout=300).stdout.splitlines()
    checks: dict[str, list[str]] = {}
    for i, line in enumerate(out):
        if i + 1 < len(out) and out[i + 1] and set(out[i + 1]) == {"-"} and len(out[i + 1]) == len(line):
            case = line
        elif line.startswith("* "):
            checks.setdefault(case, []).append(line[2:])
    return checks


def _stability_blocks(suites: list[pathlib.Path], run_ids: list[str], summary: pd.DataFrame) -> list:
    blocks = [("p", "pyperf's own checks of each case (`python -m pyperf check FILE`): the warnings it "
                    "prints, case by case. A case flagged here is measured with less confidence than its "
                    "CI alone suggests.")]
    for path, run_id in zip(suites, run_ids):
        checks = stability_checks(path)
        total = int((summary["run_id"] == run_id).sum())
        blocks.append(("p", f"`{run_id}`: {len(checks)} of {total} cases flagged."))
        if checks:
            blocks.append(("list", [f"`{case}`: " + "; ".join(w) for case, w in checks.items()]))
    return blocks


def _environment_blocks(df: pd.DataFrame) -> list:
    blocks = []
    for env in A.environment(df):
        mitig = env.pop("mitigations")
        affected = [f"{k}: {v}" for k, v in mitig.items() if v != "Not affected"]
        items = [f"**{k}**: `{v}`" if k in ("command", "commit") else f"**{k}**: {v}"
                 for k, v in env.items() if k != "run"]
        items.append("**mitigations**: " + ("; ".join(affected) if affected else "none active")
                     + (f" ({len(mitig) - len(affected)} others: Not affected)" if mitig else " (not recorded)"))
        blocks += [("h", 3, env["run"]), ("list", items)]
    return blocks


#: The plot shown on the first screen, beside the verdict.
KEY_PLOT = "speedup"


def build(f: A.Findings, rfc: list[dict], plots: list[str], inputs: list[pathlib.Path],
          stability: list | None = None) -> list:
    """The report as blocks: the verdict, its caveat and the key plot first, then the evidence behind them."""
    df, headline = f.values, f.headline
    doc = [("p", f"**Verdict: {headline.sentence}**"),
           *([("p", f"*Caveat:* {headline.caveat}")] if headline.caveat else []),
           *([("img", KEY_PLOT, PLOT_CAPTIONS[KEY_PLOT])] if KEY_PLOT in plots else []),
           ("h", 1, "process_vm_exec vs PTRACE_SYSEMU: benchmark report"),
           ("p", A.VERDICT_RULE),
           ("p", "Inputs: " + ", ".join(f"`{p.name}`" for p in inputs)),
           ("h", 2, "The claim, run by run"), *_claim_blocks(f),
           ("h", 2, "Every backend"),
           ("p", "ns/syscall: median of all pyperf values (warm-ups excluded), 95% CI by a two-level "
                 "bootstrap of the median (pyperf worker processes resampled, then values within each). Cost vs native = backend ÷ native; speed-up vs SYSEMU = SYSEMU ÷ backend, both "
                 "within the same run and pinning (in-process backends: against SYSEMU on the same CPU). "
                 "For parallel cases the value is wall time over all calls (inverse throughput). "
                 f"Below, each run's backends without sweeps; every case, sweeps included, is in "
                 f"[`{CASES_CSV}`]({CASES_CSV})."),
           *_backend_blocks(f.table, df),
           ("h", 2, "Plots")]
    for stem in plots:
        if stem != KEY_PLOT:
            doc.append(("img", stem, PLOT_CAPTIONS[stem]))
    if df["vm"].any():
        doc += [("h", 2, "Host vs guest"), *_host_guest_blocks(f.host_guest)]
    if stability:
        doc += [("h", 2, "pyperf's stability checks"), *stability]
    doc += [("h", 2, "The RFC's figures beside ours"), *_rfc_blocks(f.summary, rfc),
            ("h", 2, "Environment"), *_environment_blocks(df)]
    return doc


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: list) -> str:
    out = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            out.append(f"{'#' * block[1]} {block[2]}")
        elif kind == "p":
            out.append(block[1])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines = ["| " + " | ".join(map(_md_cell, headers)) + " |", "|" + "---|" * len(headers)]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]}.png)\n\n*{block[2]}* ([SVG]({block[1]}.svg))")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    text = html.escape(str(text), quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"\*(.+?)\*", r"<em>\1</em>", text)
    text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
    return re.sub(r"\[(.+?)\]\((.+?)\)", r'<a href="\2">\1</a>', text)


#: A table cell that holds figures only (right-aligned, never wrapped): "3,261", "1.00x (0.98–1.02)", "4.1%".
NUMBER = re.compile(r"[-–\d.,x%()\s]+")

CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
       "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px}"
       "th{background:#f3f3f3}td{text-align:left}td.num{text-align:right;white-space:nowrap}img{max-width:100%}"
       "code{background:#f5f5f5;padding:0 3px}")


def _html_cell(text) -> str:
    align = ' class="num"' if NUMBER.fullmatch(str(text)) else ""
    return f"<td{align}>{_inline_html(text)}</td>"


def to_html(doc: list, images: dict[str, bytes]) -> str:
    """One self-contained page: the PNGs are embedded as base64 data URIs."""
    body = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline_html(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(images[block[1]]).decode()
            body.append(f'<figure><img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_inline_html(block[2])}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>vmexec-bench report</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(paths, output: pathlib.Path) -> dict[str, pathlib.Path]:
    """Load the results, draw every plot, write report.md and report.html into output."""
    paths = [pathlib.Path(p) for p in paths]
    df, rfc = load_inputs(paths)
    writable_directory(output, create=True)
    f = A.findings(df)
    written = {}
    figs = figures(f)
    for stem, fig in figs.items():
        written.update({f"{stem}.{fmt}": p for fmt, p in save(fig, output, stem).items()})
    plots = list(figs)      # each needs its caption in PLOT_CAPTIONS: build() looks it up
    written[CASES_CSV] = output / CASES_CSV
    f.table.drop(columns=["started"]).to_csv(written[CASES_CSV], index=False, float_format="%.6g")
    suites, _ = results.split(paths)
    doc = build(f, rfc, plots, paths, _stability_blocks(suites, A.run_ids(suites), f.summary))
    written["report.md"] = output / "report.md"
    written["report.md"].write_text(to_markdown(doc))
    written["report.html"] = output / "report.html"
    written["report.html"].write_text(to_html(doc, {s: (output / f"{s}.png").read_bytes() for s in plots}))
    return written


def format_compare(c: pd.DataFrame, a: str, b: str) -> str:
    rows = [("case", f"{a} ns", f"{b} ns", "change", "significant?", "test")]
    for _, r in c.iterrows():
        change = r["change"]
        word = "slower" if change > 1 else "faster"
        verdict = ("not enough values" if r["significant"] is None else
                   "yes" + (f" (t={r['t_score']:.2f})" if r["t_score"] is not None else "") if r["significant"] else
                   "no" + (f" (t={r['t_score']:.2f})" if r["t_score"] is not None else ""))
        rows.append((r["case"], _ns(r["median_a_ns"]), _ns(r["median_b_ns"]),
                     f"{max(change, 1 / change):.2f}x {word}" if change != 1 else "no change", verdict, r["test"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i in (0, len(row) - 1) else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
