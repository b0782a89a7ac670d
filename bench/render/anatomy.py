"""The instruction anatomy as the reader sees it: sentences, tables, anatomy.json's content, the
plot, and the report's sections 'Instruction anatomy', 'Speculation mitigations off and on' and
the cost model's, as blocks of bench.render.document.  Figures are computed in bench.anatomy;
the files are written by bench.commands.anatomy.
"""
from __future__ import annotations

from pathlib import Path

from bench.anatomy.counts import (ALL_EVENTS, EVENT, MODEL_VARIANT, REP_EXTRA, BackendAnatomy, default_directory,
                                  load_anatomy, reading, variant_directory)
from bench.anatomy.model import MODEL_FEATURES, CostModel
from bench.anatomy.phases import PHASES
from bench.render import document
from bench.stats import CANDIDATE, SYSEMU

EVENT_LABELS = {"cr3_write": "CR3 writes", "wrmsr": "WRMSR", "swapgs": "SWAPGS", "syscall": "SYSCALL",
                "sysret": "SYSRET", "iret": "IRET", "xsave": "XSAVE", "xrstor": "XRSTOR",
                "serializing": "serialising instructions", "fence": "fences",
                EVENT: "exceptions/interrupts taken"}
#: Shorter names of the phases, in sentences.
SHORT = {"interception (ptrace, seccomp, signals, wait, process_vm_exec)": "interception machinery",
         "scheduler & context switch": "scheduler and context switch"}


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 1 else f"{x:.2f}" if x else "0"


def top_phases(a: BackendAnatomy, k: int = 3) -> list[tuple[str, dict]]:
    ph = a.phases()
    return sorted(((p, v) for p, v in ph.items() if v["insns"] > 0), key=lambda pv: -pv[1]["insns"])[:k]


def sentences(results: list[BackendAnatomy]) -> list[str]:
    """Computed sentences, one per backend, from the measured counts."""
    out = []
    for a in results:
        parts = []
        for phase, v in top_phases(a):
            ev = [f"{_fmt(v[e])} {EVENT_LABELS[e]}" for e in ("cr3_write", "wrmsr", "xsave", "xrstor",
                                                            "swapgs", "iret", EVENT) if v[e] >= 0.005]
            parts.append(f"{_fmt(v['insns'])} in {SHORT.get(phase, phase)}"
                         + (f" ({', '.join(ev)})" if ev else ""))
        t = a.totals()
        out.append(f"`{a.backend}` executes {_fmt(a.insns_per_syscall)} instructions per intercepted syscall "
                   f"({_fmt(t['cr3_write'])} CR3 writes, {_fmt(t['swapgs'])} SWAPGS, "
                   f"{_fmt(t['xsave'])} XSAVE and {_fmt(t['xrstor'])} XRSTOR, {_fmt(t['serializing'])} "
                   f"serialising instructions, {_fmt(t['fence'])} fences; {_fmt(t[REP_EXTRA])} of the "
                   f"instructions are further iterations of REP string instructions, which TCG and icount count "
                   f"as instructions and hardware does not: {_fmt(a.insns_rep_once_per_syscall)} with each "
                   f"counted once); its top phases: " + "; ".join(parts) + ".")
    by = {a.backend: a for a in results}
    if "ptrace-sysemu" in by and "process-vm-exec" in by:
        s, p = by["ptrace-sysemu"].phases(), by["process-vm-exec"].phases()
        sch, mm = "scheduler & context switch", "mm switch"
        out.append(f"PTRACE_SYSEMU spends {_fmt(s[sch]['insns'])} instructions per syscall in the scheduler "
                   f"and context switch and {_fmt(s[mm]['insns'])} in the mm switch, with "
                   f"{_fmt(s[sch]['cr3_write'] + s[mm]['cr3_write'])} CR3 writes; "
                   f"process_vm_exec spends {_fmt(p[sch]['insns'])} in the scheduler and "
                   f"{_fmt(p[mm]['insns'])} in the mm switch, with {_fmt(p[sch]['cr3_write'] + p[mm]['cr3_write'])} "
                   f"CR3 writes. "
                   f"In all, {_fmt(by['ptrace-sysemu'].insns_per_syscall)} against "
                   f"{_fmt(by['process-vm-exec'].insns_per_syscall)} instructions per syscall: "
                   f"{by['ptrace-sysemu'].insns_per_syscall / by['process-vm-exec'].insns_per_syscall:.2f}x "
                   f"the path length, or {by['ptrace-sysemu'].insns_rep_once_per_syscall / by['process-vm-exec'].insns_rep_once_per_syscall:.2f}x "
                   f"with every REP string instruction counted once "
                   f"({_fmt(by['ptrace-sysemu'].insns_rep_once_per_syscall)} against "
                   f"{_fmt(by['process-vm-exec'].insns_rep_once_per_syscall)}).")
    return out


def csv_tables(results: list[BackendAnatomy]) -> dict[str, list[list]]:
    """{file name: rows, the header first}: each backend's functions, the phases, the summary."""
    events = ALL_EVENTS
    tables = {}
    for a in results:
        tables[f"functions-{a.backend}.csv"] = [
            ["function", "phase", "insns_per_syscall", *events],
            *([r["function"], r["phase"], f"{r['insns']:.3f}", *(f"{r[e]:.4f}" for e in events)]
              for r in a.functions)]
    tables["phases.csv"] = [["backend", "phase", "insns_per_syscall", *events],
                            *([a.backend, p, f"{v['insns']:.3f}", *(f"{v[e]:.4f}" for e in events)]
                              for a in results for p, v in a.phases().items())]
    summary = [["backend", "syscalls", "plugin_insns_per_syscall", "icount_ns_per_syscall",
                "disagreement", "insns_rep_once_per_syscall", *events]]
    for a in results:
        t = a.totals()
        summary.append([a.backend, a.syscalls, f"{a.insns_per_syscall:.2f}", f"{a.ns_per_syscall:.2f}",
                        f"{a.disagreement:+.5f}", f"{a.insns_rep_once_per_syscall:.2f}",
                        *(f"{t[e]:.4f}" for e in events)])
    tables["summary.csv"] = summary
    return tables


def anatomy_json(results: list[BackendAnatomy], failed: dict[str, str], meta: dict) -> dict:
    """The content of anatomy.json: what the report, the cost model and the composition read back."""
    return {"meta": meta, "failed": failed, "sentences": sentences(results),
            "backends": [{"backend": a.backend, "syscalls": a.syscalls, "elapsed_ns": a.elapsed_ns,
                          "insns": a.insns, "insns_per_syscall": a.insns_per_syscall,
                          "insns_rep_once_per_syscall": a.insns_rep_once_per_syscall,
                          "icount_ns_per_syscall": a.ns_per_syscall, "disagreement": a.disagreement,
                          "totals": a.totals(), "phases": a.phases()} for a in results]}

def figure(results: list[BackendAnatomy]):
    """Stacked bars: instructions per syscall by phase; the expensive events written on each bar
    (a matplotlib Figure; bench.commands.anatomy saves it as anatomy.png and anatomy.svg)."""
    # matplotlib is imported where it plots, not above: it takes half a second to import, and
    # `bench anatomy-model` takes this module's blocks only.
    import matplotlib
    import matplotlib.patches
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    order = sorted(results, key=lambda a: a.insns_per_syscall)
    fig = Figure(figsize=(12, 2.4 + 0.6 * len(order)))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab20"]
    colour = {p: cmap(j % 20) for j, p in enumerate(PHASES)}
    used = [p for p in PHASES if any(a.phases()[p]["insns"] > 0 for a in order)]
    labels = []
    for i, a in enumerate(order):
        left = 0.0
        ph = a.phases()
        for p in PHASES:
            v = ph[p]["insns"]
            if v > 0:
                ax.barh(i, v, left=left, color=colour[p], edgecolor="white", linewidth=0.4)
                left += v
        t = a.totals()
        # Events of at least 0.05 per syscall (all of them are in the tables).
        marks = ", ".join(f"{_fmt(t[e])} {label}" for e, label in
                          (("cr3_write", "CR3 wr"), ("swapgs", "SWAPGS"), ("xsave", "XSAVE"), ("xrstor", "XRSTOR"),
                           ("wrmsr", "WRMSR"), ("iret", "IRET"), ("serializing", "serial."), ("fence", "fence"),
                           (EVENT, "exc/irq")) if t[e] >= 0.05)
        labels.append(ax.text(left + 0.01 * max(b.insns_per_syscall for b in order), i,
                              f"{_fmt(a.insns_per_syscall)}: " + (marks or "no expensive events"), va="center",
                              fontsize=7))
    handles = [matplotlib.patches.Patch(color=colour[p], label=p) for p in used]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.09), fontsize=7, ncols=4,
              frameon=False)
    ax.set_yticks(range(len(order)), [a.backend for a in order])
    xmax = max(a.insns_per_syscall for a in order)
    ax.set_xlim(0, xmax * 1.65)
    ax.set_xlabel("guest instructions per intercepted syscall (icount guest, same CPU)")
    ax.set_title("Where each mechanism's instructions go (per syscall); expensive events per syscall at right")
    fig.tight_layout()
    _fit_labels(fig, ax, labels)
    return fig


def _fit_labels(fig, ax, labels) -> None:
    """Widen the x axis until every label at the end of a bar ends inside it (none crosses the axis)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    renderer = FigureCanvasAgg(fig).get_renderer()
    for _ in range(5):
        right = max(t.get_window_extent(renderer).x1 for t in labels)
        limit = ax.get_window_extent(renderer).x1 - 4
        if right <= limit:
            return
        x0, x1 = ax.get_xlim()
        ax.set_xlim(x0, x0 + (x1 - x0) * (right - ax.get_window_extent(renderer).x0)
                    / (limit - ax.get_window_extent(renderer).x0))


class _Drawn:
    """One backend of an anatomy.json, as figure() reads a BackendAnatomy (to redraw a committed plot)."""

    def __init__(self, b: dict):
        self.backend, self.insns_per_syscall, self._b = b["backend"], b["insns_per_syscall"], b

    def phases(self) -> dict:
        return self._b["phases"]

    def totals(self) -> dict:
        return self._b["totals"]


def redraw(directory: Path) -> list[Path]:
    """anatomy.png and anatomy.svg drawn again from directory/anatomy.json (no guest run)."""
    doc = load_anatomy(Path(directory) / "anatomy.json")
    fig = figure([_Drawn(b) for b in doc["backends"]])
    paths = [Path(directory) / "anatomy.png", Path(directory) / "anatomy.svg"]
    fig.savefig(paths[0], dpi=130)
    fig.savefig(paths[1], metadata={"Date": None})
    return paths


def report_blocks(directory: Path | None = None) -> list:
    """The report section 'Instruction anatomy' as blocks (bench.render.document), from an anatomy
    output directory (default: anatomy/ in the results directory); [] if there is none."""
    path = Path(directory or default_directory()) / "anatomy.json"
    if not path.exists():
        return []
    doc = load_anatomy(path)
    with reading(path):
        return _anatomy_blocks(doc)


def _anatomy_blocks(doc: dict) -> list:
    blocks: list = [("p", "Guest instructions per intercepted syscall, counted per program counter by the "
                          "project's QEMU plugin (anatomy/) between the loop markers on every vCPU, in the "
                          "icount guest on the patched kernel, tracer and tracee on one CPU; kernel addresses "
                          "symbolised through the same boot's /proc/kallsyms. Expensive events are counted by "
                          "instruction bytes; exceptions/interrupts as entries into the IDT stubs. "
                          f"Meta: {doc['meta'].get('guest_kernel', '?')}, QEMU {doc['meta'].get('qemu', '?')}, "
                          f"{doc['meta'].get('syscalls', '?')} syscalls per backend. "
                          + mitigations_phrase(doc["meta"]))]
    blocks.append(("list", doc["sentences"]))
    # Two tables, not one of 16 columns: each fits a 1280 px page without scrolling sideways.
    ordered = sorted(doc["backends"], key=lambda b: b["insns_per_syscall"])
    blocks.append(("table", ["backend", "plugin insns/syscall", "icount ns/syscall", "plugin vs clock",
                             "insns, REP ops once", "further REP iterations"],
                   [[f"`{b['backend']}`", _fmt(b["insns_per_syscall"]), _fmt(b["icount_ns_per_syscall"]),
                     f"{100 * b['disagreement']:+.3f}%", _fmt(b["insns_rep_once_per_syscall"]),
                     _fmt(b["totals"][REP_EXTRA])] for b in ordered]))
    events = (("cr3_write", "CR3 writes"), ("swapgs", "SWAPGS"), ("sysret", "SYSRET"), ("iret", "IRET"),
              ("xsave", "XSAVE"), ("xrstor", "XRSTOR"), ("wrmsr", "WRMSR"), ("serializing", "serialising"),
              ("fence", "fences"), (EVENT, "exc/irq"))
    blocks.append(("p", "Expensive events per syscall:"))
    blocks.append(("table", ["backend", *(label for _, label in events)],
                   [[f"`{b['backend']}`", *(_fmt(b["totals"][e]) for e, _ in events)] for b in ordered]))
    phase_rows = []
    for b in sorted(doc["backends"], key=lambda b: b["insns_per_syscall"]):
        for p, v in sorted(b["phases"].items(), key=lambda pv: -pv[1]["insns"]):
            if v["insns"] >= 0.5:
                phase_rows.append([f"`{b['backend']}`", p, _fmt(v["insns"]),
                                   f"{100 * v['insns'] / b['insns_per_syscall']:.1f}%",
                                   *(_fmt(v[e]) for e in ("cr3_write", "swapgs", "xsave", "xrstor", "serializing",
                                                          "fence", EVENT))])
    blocks.append(("table", ["backend", "phase", "insns/syscall", "share", "CR3 writes", "SWAPGS", "XSAVE",
                             "XRSTOR", "serialising", "fences", "exc/irq"], phase_rows))
    if doc["failed"]:
        blocks.append(("p", "Not measured: " + "; ".join(f"`{b}`: {w}" for b, w in doc["failed"].items())))
    blocks.append(("p", "Plot: `anatomy.png` (stacked bars by phase); per-function tables: "
                        "`functions-BACKEND.csv`; by phase: `phases.csv`."))
    return blocks


def _grown_phases(off: dict, on: dict, k: int = 3) -> str:
    """The k phases whose instructions per syscall grew most from off to on, as text."""
    grown = sorted(((p, on["phases"][p]["insns"] - off["phases"].get(p, {"insns": 0.0})["insns"])
                    for p in on["phases"]), key=lambda pv: -pv[1])[:k]
    return ", ".join(f"{SHORT.get(p, p)} {d:+,.0f}" for p, d in grown if d > 0) or "none"


def mitigation_blocks(directory: Path) -> list:
    """The report section 'Speculation mitigations off and on': the benchmark kernel's anatomy in
    directory beside the mitigation-matched kernel's (directory/mitigations/); [] unless both exist."""
    paths = [Path(directory) / "anatomy.json", variant_directory(Path(directory), MODEL_VARIANT) / "anatomy.json"]
    if not all(p.exists() for p in paths):
        return []
    off_doc, on_doc = (load_anatomy(p) for p in paths)
    with reading(f"{paths[0]} or {paths[1]}"):
        return _mitigation_blocks(off_doc, on_doc)


def _mitigation_blocks(off_doc: dict, on_doc: dict) -> list:
    off, on = ({b["backend"]: b for b in d["backends"]} for d in (off_doc, on_doc))
    both = sorted((n for n in off if n in on), key=lambda n: off[n]["icount_ns_per_syscall"])
    ns = "icount_ns_per_syscall"
    blocks: list = [("p", "The same guest anatomy on two kernel builds of the same source: `bench` (tinyconfig: "
                          "every speculation mitigation compiled out) and `mitigations` (the host's mitigations "
                          "compiled in and forced on the command line). icount ns = instructions, same CPU. "
                          f"Mitigations off: {mitigations_phrase(off_doc['meta'])} Mitigations on: "
                          f"{mitigations_phrase(on_doc['meta'])}")]
    if SYSEMU in both and CANDIDATE in both:
        s_off, s_on = off[SYSEMU][ns], on[SYSEMU][ns]
        p_off, p_on = off[CANDIDATE][ns], on[CANDIDATE][ns]
        r_off, r_on = s_off / p_off, s_on / p_on
        blocks.append(("p", f"With the host's mitigations on, PTRACE_SYSEMU's path grows from {_fmt(s_off)} to "
                            f"{_fmt(s_on)} instructions per syscall ({100 * (s_on / s_off - 1):+.1f}%; most in "
                            f"{_grown_phases(off[SYSEMU], on[SYSEMU])}) and process_vm_exec's from {_fmt(p_off)} "
                            f"to {_fmt(p_on)} ({100 * (p_on / p_off - 1):+.1f}%; most in "
                            f"{_grown_phases(off[CANDIDATE], on[CANDIDATE])}): process_vm_exec's path-length "
                            f"advantage {'grows' if r_on > r_off else 'shrinks' if r_on < r_off else 'stays'} from "
                            f"{r_off:.2f}x to {r_on:.2f}x."))
    rows = []
    for n in both:
        a, b = off[n], on[n]
        speedups = [f"{d[SYSEMU][ns] / d[n][ns]:.2f}x" if SYSEMU in d else "–" for d in (off, on)]
        rows.append([f"`{n}`", _fmt(a[ns]), _fmt(b[ns]), f"{_fmt(b[ns] - a[ns])} ({100 * (b[ns] / a[ns] - 1):+.1f}%)",
                     *speedups, f"{_fmt(a['totals']['fence'])} → {_fmt(b['totals']['fence'])}",
                     f"{_fmt(a['totals']['cr3_write'])} → {_fmt(b['totals']['cr3_write'])}",
                     _grown_phases(a, b)])
    blocks.append(("table", ["backend", "icount ns/syscall, mitigations off", "on", "added",
                             "SYSEMU ÷ backend, off", "on", "fences, off → on", "CR3 writes, off → on",
                             "phases that grew most"], rows))
    return blocks


def mitigations_phrase(meta: dict) -> str:
    """What the guest kernel reported in /sys/devices/system/cpu/vulnerabilities (all but "Not affected")."""
    vuln = meta.get("vulnerabilities")
    if not vuln:
        return "Guest mitigations: not recorded."
    shown = [f"{k}: {v}" for k, v in sorted(vuln.items()) if v != "Not affected"]
    args = meta.get("kernel_args") or []
    return (f"Guest kernel build `{meta.get('kernel_variant', 'bench')}`"
            + (f", booted as `-cpu {meta['qemu_cpu']}`" if meta.get("qemu_cpu") else "")
            + (f", with `{' '.join(args)}`" if args else "")
            + "; the guest reports " + ("; ".join(shown) or "nothing but Not affected")
            + f" ({len(vuln) - len(shown)} others Not affected).")


def to_markdown(blocks: list, title: str = "Instruction anatomy") -> str:
    return f"# {title}\n\n" + document.to_markdown(blocks)

def model_blocks(m: CostModel) -> list:
    formula = " + ".join(f"{v:.4g} × {k}" for k, v in m.parameters.items())
    rows = [[f"`{n}`", _fmt(m.measured[n]), _fmt(m.fitted[n]), f"{100 * m.loo[n]:+.1f}%"] for n in m.backends]
    return [("p", f"Host ns/syscall = {formula} (per intercepted syscall; non-negative least squares on "
                  f"relative errors over {len(m.backends)} mechanisms). "
                  + " ".join(f"{k}: {v}." for k, v in MODEL_FEATURES.items())
                  + (f" Inputs: {m.inputs}." if m.inputs else "")),
            ("table", ["mechanism", "host ns/syscall (measured)", "model", "leave-one-out error"], rows),
            ("p", f"process_vm_exec, predicted for this host: {_fmt(m.candidate_ns)} ns/syscall "
                  f"({_fmt(m.candidate_range[0])}–{_fmt(m.candidate_range[1])} with the extreme leave-one-out "
                  f"errors), a speed-up over PTRACE_SYSEMU ({_fmt(m.baseline_ns)} ns measured) of "
                  f"{m.speedup:.2f}x ({m.speedup_range[0]:.2f}–{m.speedup_range[1]:.2f}). "
                  + ("The guest anatomy was measured on the mitigation-matched kernel (the host's speculation "
                     "mitigations forced on). " if m.variant == MODEL_VARIANT else
                     f"The guest anatomy was measured on the `{m.variant}` kernel, not the mitigation-matched one: "
                     "the verdict does not judge this model. ")
                  + "In the mechanisms fitted, CR3 writes always come with a scheduler round trip, so the CR3 "
                  "term also carries what a context switch costs beyond its instructions: process_vm_exec, "
                  "which writes CR3 without one, is an extrapolation.")]


def cost_model_blocks(model: CostModel | None, why: str, directory: Path) -> list:
    """The report section 'Cost model' as blocks: the model, or why there is none ([] when directory,
    the benchmark kernel's anatomy directory, holds no anatomy at all)."""
    if model is not None:
        return model_blocks(model)
    return [("p", f"No cost model: {why}.")] if (Path(directory) / "anatomy.json").exists() else []


