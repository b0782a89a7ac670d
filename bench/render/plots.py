"""The report's plots: matplotlib figures drawn from one Findings object.

No pyplot (no global state, no GUI backend); dots with CI whiskers, never
bars on log axes; PNG and SVG files that are the same bytes for the same data.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.measure import accelerators
from bench import results
from bench import stats, verdict

#: Log scale when the largest value is this many times the smallest.
LOG_SPREAD = 20


SYSEMU_COLOR, CANDIDATE_COLOR, OTHER_COLOR = "#d62728", "#2ca02c", "#1f77b4"


def _color(backend: str) -> str:
    return {stats.SYSEMU: SYSEMU_COLOR, stats.CANDIDATE: CANDIDATE_COLOR, stats.NATIVE: "#7f7f7f"}.get(backend, OTHER_COLOR)


def _label(row) -> str:
    return f"{row['backend']} ({row['pin']})"


def run_title(row) -> str:
    """How a run is named on plots and in tables: which machine, which kernel."""
    where = (f"VM {accelerators.label(row['accelerator'])}, {row['timing']} timing" if row["vm"]
             else f"host, {row['accelerator']}")
    return f"{row['run_id']} — {where}, Linux {row['kernel']}"


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
    base = stats.base_cases(s).sort_values(["run_id", "median_ns"])
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


JUDGED_COLOR = "#2ca02c"


def judged_intervals(f: verdict.Findings) -> dict[tuple[str, str], verdict.Assessment]:
    """{(run_id, pin): the assessment of that process_vm_exec pairing}, the headline's own (model and
    composed estimate included) for its pairing: the intervals the speed-up plot draws."""
    out = {(row["run_id"], row["pin"]): a for (_, row), a in zip(f.claim.iterrows(), f.assessments)}
    h = f.headline
    if h.row is not None and h.assessment is not None:
        out[(h.row["run_id"], h.row["pin"])] = h.assessment
    return {k: a for k, a in out.items() if a.low is not None}


#: What each kind of interval judged covers, for the key plot's caption.
COVERS = {"95% CI": "the variation between repeats on a hardware clock",
          "hardware-equivalent range": "the repeats and the emulator-versus-hardware error, bracketed by the "
                                       "host-versus-guest distortions of the C mechanisms both runs measured",
          "cost-model interval": "the host cost model's worst leave-one-out errors",
          "composed interval": "the composition's 95% CI widened by its worst errors against measured mechanisms"}


def key_caption(f: verdict.Findings) -> str:
    """The speed-up plot's caption: what its marks are, and which uncertainty the judged interval covers."""
    text = (f"Speed-up over PTRACE_SYSEMU at the same pinning; dots and whiskers: median and 95% CI of the repeats; "
            f"dashed line: the RFC's {verdict.CLAIM:g}x.")
    h = f.headline
    if h.row is None or h.assessment is None or h.assessment.low is None:
        return text
    a = h.assessment
    return text + (f" Green band on process_vm_exec: the interval the verdict judges, the {a.interval} "
                   f"{a.low:.2f}–{a.high:.2f}x (`{h.row['run_id']}`, {h.row['pin']} pinning), which covers "
                   f"{COVERS[a.interval]}.")


def plot_speedup(r: pd.DataFrame, runs: pd.DataFrame,
                 judged: dict[tuple[str, str], verdict.Assessment] | None = None) -> Figure | None:
    """Speed-up of every backend over PTRACE_SYSEMU at the same pinning, with the RFC's 5x claim and,
    on process_vm_exec, the interval the verdict judges (judged_intervals())."""
    if r.empty:
        return None
    judged = judged or {}
    r = r.assign(backend=r["numerator"]).sort_values(["run_id", "speedup"], ascending=[True, False])
    # The runs that answer the question (they measured process_vm_exec) on top: the first screen shows them.
    fig, panels = _panels(r, 0.32, first=set(r.loc[r["backend"] == stats.CANDIDATE, "run_id"]))
    for ax, run_id, g in panels:
        labels = [f"{row['backend']} ({row['pin']})" if row["numerator_pin"] != results.IN_PROCESS else
                  f"{row['backend']} (in-process; vs SYSEMU {row['pin']})" for _, row in g.iterrows()]
        _hbars(ax, labels, g["speedup"].to_numpy(),
               g["speedup_low"].to_numpy(), g["speedup_high"].to_numpy(), [_color(b) for b in g["backend"]],
               lambda v: f"{v:.2f}x")
        for y, (_, row) in enumerate(g.iterrows()):
            a = judged.get((run_id, row["pin"])) if row["backend"] == stats.CANDIDATE else None
            if a is not None:
                ax.fill_betweenx([y - 0.42, y + 0.42], a.low, a.high, color=JUDGED_COLOR, alpha=0.25, lw=0,
                                 zorder=1, label="interval the verdict judges")
                ax.annotate(f"judged: {a.low:.2f}–{a.high:.2f}x", (a.high, y), xytext=(4, -9),
                            textcoords="offset points", va="center", fontsize=8, color="#1a6b1a")
        ax.axvline(1.0, color=SYSEMU_COLOR, lw=1.2, label="PTRACE_SYSEMU itself (1x)")
        ax.axvline(verdict.CLAIM, color="black", ls="--", lw=1.2, label=f"the RFC's claim: {verdict.CLAIM:g}x")
        ax.set_xscale("log")
        _ticks(ax, "x", lambda v: f"{v:g}x")
        ax.set_title(run_title(runs.loc[run_id]), fontsize=10)
        ax.set_xlabel("speed-up over PTRACE_SYSEMU (median SYSEMU ns ÷ median backend ns; 95% CI)")
    handles = {label: h for ax, _, _ in panels for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=len(handles), fontsize=9)
    fig.suptitle("How many times faster than PTRACE_SYSEMU (higher is faster)")
    return fig


PIN_COLORS = {"same": "#1f77b4", "cross": "#ff7f0e", "none": "#9467bd"}
PIN_LABELS = {"same": "same CPU", "cross": "different CPUs", "none": "unpinned"}


def plot_pinning(s: pd.DataFrame) -> Figure | None:
    """Same CPU vs different CPUs (vs unpinned) for every tracer backend measured at two placements."""
    base = stats.base_cases(s)
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
    """Every value per backend: boxes (quartiles, whiskers 1.5 IQR, dots: outliers) where the values
    spread, every value as a dot where they hardly do (icount repeats agree to the digit: a box would
    have no width)."""
    base = stats.base_cases(s).sort_values(["run_id", "median_ns"])
    fig, panels = _panels(base, 0.32)
    for ax, run_id, g in panels:
        values = [df.loc[(df["run_id"] == run_id) & (df["case"] == c), "value_ns"].to_numpy() for c in g["case"]]
        n = sorted({int(g["n"].min()), int(g["n"].max())})
        if verdict.clock(g.iloc[0]) == "icount":
            for y, (v, backend) in enumerate(zip(values, g["backend"])):
                ax.scatter(v, np.full(len(v), y + 1.0), s=14, color=_color(backend), alpha=0.7, zorder=3)
            what = "every value as a dot (icount: the repeats agree to the digit)"
        else:
            box = ax.boxplot(values, **HORIZONTAL, patch_artist=True, widths=0.6,
                             flierprops={"markersize": 3}, medianprops={"color": "black"})
            for patch, backend in zip(box["boxes"], g["backend"]):
                patch.set_facecolor(_color(backend))
                patch.set_alpha(0.6)
            what = "box: quartiles and median; whiskers: 1.5 IQR; dots: outliers"
        ax.set_yticks(np.arange(1, len(g) + 1), [_label(r) for _, r in g.iterrows()])
        ax.set_ylim(len(g) + 0.5, 0.5)     # first row on top, as in the tables
        _maybe_log(ax, np.concatenate(values))
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.set_xlabel(f"ns per intercepted syscall ({what}; n = {'–'.join(map(str, n))} values per row)")
        ax.set_title(run_title(g.iloc[0]), fontsize=10)
    fig.suptitle("Distribution of the measurements, by backend")
    return fig


def _line_style(i: int) -> dict:
    """Distinct colour and marker per line: more lines than one palette has colours must not share one."""
    return {"color": matplotlib.colormaps["tab20"](i % 20), "marker": "osD^v<>ph*"[i % 10]}


def _sweep_panels(lines: pd.DataFrame, title: str):
    runs = lines["run_id"].unique()
    fig = Figure(figsize=(11, 4.2 * len(runs)), layout="constrained")
    axes = fig.subplots(len(runs), 1, squeeze=False)[:, 0]
    fig.suptitle(title)
    return fig, list(zip(axes, runs))


def _label_sweep(ax, lines: pd.DataFrame, run_id: str, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(run_title(lines[lines["run_id"] == run_id].iloc[0]), fontsize=10)
    ax.grid(which="both", alpha=0.3)
    # beside the axes, never over the data
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


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
    rows, base = [], stats.base_cases(s)
    for (run_id, backend, pin), g in swept.groupby(["run_id", "backend", "pin"]):
        # The sweep is unpinned; its parallel=1 point is the unpinned case, else the best other placement.
        ones = base[(base["run_id"] == run_id) & (base["backend"] == backend)]
        ones = ones.sort_values("pin", key=lambda p: p.map(lambda x: 0 if x == pin else 1 + stats.pin_order(x)))
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


#: history: one line style per pinning of the case (its colour is its backend's).
_PIN_STYLE = {"same": ("-", "o"), "cross": ("--", "s"), "none": (":", "^"), "in-process": ("-.", "D")}


def plot_history(h: pd.DataFrame) -> Figure:
    """Each backend's speed-up over ptrace-sysemu run after run (regression.history): one panel per machine
    and kernel (never one series across two), a colour per backend (tab10, then tab20's light shades),
    a line style and marker per pinning, the legend outside the data, at most ~12 run labels a panel."""
    machines = list(dict.fromkeys(h["machine"]))
    backends = list(dict.fromkeys(h.sort_values("case")["case"].str.split(":").str[0]))
    palette = [*matplotlib.colormaps["tab10"].colors, *matplotlib.colormaps["tab20"].colors[1::2]]
    colour = {b: palette[i % len(palette)] for i, b in enumerate(backends)}
    fig = Figure(figsize=(12, 3.8 * len(machines)), layout="constrained")
    axes = fig.subplots(len(machines), 1, squeeze=False)[:, 0]
    for ax, where in zip(axes, machines):
        g = h[h["machine"] == where]
        runs = g.drop_duplicates("run_id").sort_values("started")
        x = {run: i for i, run in enumerate(runs["run_id"])}
        for case, c in g.groupby("case", sort=True):
            backend, pin = case.split(" vs ")[0].split(":pin=")
            style, marker = _PIN_STYLE.get(pin, ("-", "o"))
            c = c.sort_values("started")
            ax.errorbar(c["run_id"].map(x), c["speedup"],
                        yerr=[c["speedup"] - c["speedup_low"], c["speedup_high"] - c["speedup"]],
                        capsize=2, label=case, color=colour[backend], ls=style, marker=marker, ms=4, lw=1.2)
        step = max(1, -(-len(runs) // 12))
        ticks = list(range(0, len(runs), step))
        ax.set_xticks(ticks, [f"{runs.iloc[i]['started'][:10]}\n{str(runs.iloc[i]['commit'])[:12]}" for i in ticks],
                      fontsize=7)
        _maybe_log(ax, g["speedup"], axis="y", fmt=lambda v: f"{v:.3g}")
        ax.set_ylabel("speed-up over ptrace-sysemu\n(its ns ÷ backend ns; 95% CI)")
        ax.set_xlabel(f"run ({len(runs)}; date and commit" + (f", every {step}th labelled)" if step > 1 else ")"),
                      fontsize=8)
        ax.set_title(where, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 + (g["case"].nunique() > 16))
    return fig


@dataclasses.dataclass(frozen=True)
class Plot:
    stem: str                                       # file name: STEM.png, STEM.svg
    draw: Callable[[verdict.Findings], Figure | None]     # None: the data do not support it (e.g. no sweep)
    caption: str


def _runs(f: verdict.Findings) -> pd.DataFrame:
    return f.summary.drop_duplicates("run_id").set_index("run_id", drop=False)


#: Every plot, in the report's order.  Adding one: its function and one entry here.
PLOTS = [
    Plot("speedup", lambda f: plot_speedup(f.all_ratios, _runs(f), judged_intervals(f)),
         f"Speed-up over PTRACE_SYSEMU at the same pinning; dashed line: the RFC's {verdict.CLAIM:g}x."),
    Plot("cost", lambda f: plot_cost(f.summary), "Median ns per intercepted syscall, 95% bootstrap CI as whiskers."),
    Plot("pinning", lambda f: plot_pinning(f.summary),
         "Tracer and tracee on one CPU vs on two: the cost of cross-CPU wake-ups."),
    Plot("distribution", lambda f: plot_distribution(f.values, f.summary),
         "Every measurement, per backend: spread and outliers behind the medians."),
    Plot("pages", lambda f: plot_pages(f.summary),
         "Cost as the tracee writes more pages between syscalls (address-space switch and TLB effects)."),
    Plot("parallel", lambda f: plot_parallel(f.summary),
         "Throughput with several tracer/tracee pairs at once (unpinned)."),
]
CAPTIONS = {p.stem: p.caption for p in PLOTS}
#: The plot shown on the first screen, beside the verdict.
KEY_PLOT = "speedup"


def figures(f: verdict.Findings) -> dict[str, Figure]:
    """Every plot the data support, by file stem, in PLOTS order."""
    return {p.stem: fig for p in PLOTS if (fig := p.draw(f)) is not None}


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
            # Staged and renamed into place: a full disk leaves no truncated image behind.
            out[fmt] = results.publish(directory / f"{stem}.{fmt}", lambda staged: fig.savefig(
                staged, dpi=110, format=fmt, metadata=metadata), exists="replace")
    return out
