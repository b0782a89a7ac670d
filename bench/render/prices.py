"""The estimate from measured parts as the reader sees it: the report's section 'A hardware estimate
from measured parts' as blocks of bench.render.document, and `bench prices`'s Markdown."""
from __future__ import annotations

from bench import stats, verdict
from bench.anatomy.composed import MAX_PART_RESIDUAL, PRICES, SWITCH_FUNCTION, Composition
from bench.measure.prices import PRICE_ROWS
from bench.render import document

#: A price held at 0 -> the price that carries its cost (PRICE_ROWS' "held_beside").
HELD_BESIDE = {r["name"]: r["held_beside"] for r in PRICE_ROWS if r.get("held_beside")}


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 1 else f"{x:.3f}" if x else "0"


def blocks(c: Composition) -> list:
    rows = [[k, _fmt(c.prices[k]), f"{_fmt(c.prices_ci[k][0])}–{_fmt(c.prices_ci[k][1])}", v]
            for k, v in PRICES.items() if k in c.prices]     # not a price the counted kernels never run
    parts = [[f"`{p}`", _fmt(m), _fmt(f), f"{100 * r:+.2f}%"] for p, (m, f, r) in c.parts.items()]
    prem = [[str(k) if k else "0 (the loop's working set)", *(["—", c.unpriced[k]] if k in c.unpriced
                                                               else [_fmt(v), f"{_fmt(lo)}–{_fmt(hi)}"])]
            for k, (v, lo, hi) in sorted(c.premium.items())]
    mech = [[f"`{m}`", f"{c.trips[m]:.2f}", _fmt(c.measured[m]), _fmt(c.composed[m]),
             f"{_fmt(c.composed_ci[m][0])}–{_fmt(c.composed_ci[m][1])}", f"{100 * c.errors[m]:+.1f}%"]
            for m in sorted(c.measured)]
    worst = max(c.errors, key=lambda m: abs(c.errors[m]))
    judged = abs(c.errors[worst]) <= verdict.COMPOSED_MAX_ERROR
    if c.refused:
        ending = (f"No estimate for process_vm_exec: {c.refused}. The tables show where the price model fails "
                  f"(worst mechanism: {worst} {100 * c.errors[worst]:+.1f}%); no figure here is judged.")
    else:
        ending = (f"process_vm_exec, composed for this host: {_fmt(c.candidate_ns)} ns/syscall "
                  f"({_fmt(c.candidate_range[0])}–{_fmt(c.candidate_range[1])}: its 95% CI widened by the worst "
                  f"relative errors), {c.trips[stats.CANDIDATE]:.2f} round trips; a speed-up over "
                  f"PTRACE_SYSEMU ({_fmt(c.baseline_ns)} ns measured, 95% CI {_fmt(c.baseline_ci[0])}–"
                  f"{_fmt(c.baseline_ci[1])}) of {c.speedup:.2f}x ({c.speedup_range[0]:.2f}–"
                  f"{c.speedup_range[1]:.2f}, which covers {c.covers}). "
                  + (f"Every mechanism measured is composed within ±{100 * verdict.COMPOSED_MAX_ERROR:g}% (worst: "
                     f"{worst} {100 * c.errors[worst]:+.1f}%), so the verdict judges this interval."
                     if judged else
                     f"Not judged: {worst}'s error ({100 * c.errors[worst]:+.1f}%) exceeds "
                     f"±{100 * verdict.COMPOSED_MAX_ERROR:g}%, so the verdict judges the distortion bracket."))
    return [("p", (f"**A diagnosis, not an estimate** ({c.refused}). " if c.refused else "")
             + (f"Machine: {c.machine}. " if c.machine else "")
             + f"Prices fitted by non-negative least squares (relative residuals) to {len(c.parts)} micro-benchmarks "
               f"of their own (`vmexec price`), measured on this host in {c.rounds} interleaved rounds, each "
               "part's path length counted by the anatomy plugin in the icount guest; 95% CIs: the rounds "
               "resampled (timing noise only)."
             + (f" Measured directly, not fitted (each by a part of its own less its twin, in the same rounds; the "
                f"fit holds it at its value): {', '.join(c.direct)}." if c.direct else "")
             + (" Held at 0, not fitted (priced by another: "
                + "; ".join(f"{k}: by {HELD_BESIDE[k]}" for k in c.held) + ")." if c.held else "")
             + (f" Inputs: {c.inputs}." if c.inputs else "")
             + "".join(f" Caveat: {k}." for k in c.caveats)
             + (f" Load (1, 5, 15 min): {c.load}." if c.load else "")),
            ("table", ["price", "ns", "95% CI", "meaning"], rows),
            ("p", f"The fit's residuals: each part's median host time against what the prices give it (a fit "
                  f"missing any by more than ±{100 * MAX_PART_RESIDUAL:g}% is refused):"),
            ("table", ["part", "measured ns", "fitted ns", "residual"], parts),
            *([("p", "Probes, measured in the same rounds and priced with the same prices, never fitted (where a "
                     "part the prices miss goes wrong):"),
               ("table", ["probe", "measured ns", "priced ns", "residual"],
                [[f"`{p}`", _fmt(m), _fmt(v), f"{100 * r:+.2f}%"] for p, (m, v, r) in c.probes.items()])]
              if c.probes else []),
            ("p", "The address-space switch premium (ns per CR3 write) at the loop's working set and at the "
                  "pages sweep's sizes (pages the passive side writes per round trip):"),
            ("table", ["pages", "ns per CR3 write", "95% CI"], prem),
            ("p", "Every C mechanism composed from its own anatomy (instructions, kernel entries, CR3 writes, "
                  f"scheduler round trips counted by its instructions in `{SWITCH_FUNCTION}`) with the same prices:"),
            ("table", ["mechanism", "round trips", "host ns/syscall (measured)", "composed", "composed 95% CI",
                       "error"], mech),
            ("p", ending)]


def side_by_side(machines: list[tuple[str, Composition | None, str]]) -> list:
    """Each machine's estimate from measured parts in one table, machines as columns (oldest first; issue 26
    item 5): its prices with their 95% CIs, every C mechanism measured and composed with its error,
    process_vm_exec composed, the speed-up over PTRACE_SYSEMU and whether it is judged.  machines: (its name,
    its composition, or its diagnosis where the prices were refused, or None, why there is none).  A diagnosis
    is a column marked as one, with no figure for process_vm_exec; a machine with nothing says why below."""
    shown = [(name, c) for name, c, _ in machines if c is not None]
    if not any(not c.refused for _, c in shown):
        return []
    cell = lambda v, lo, hi: f"{_fmt(v)} ({_fmt(lo)}–{_fmt(hi)})"      # noqa: E731

    def price(c: Composition, k: str) -> str:
        if k not in c.prices:
            return "not run"
        if k in c.held:
            return f"held at 0 (priced by {HELD_BESIDE[k]})"
        return cell(c.prices[k], *c.prices_ci[k]) + (", measured directly" if k in c.direct else "")
    rows = [[f"{k} (ns)", *(price(c, k) for _, c in shown)] for k in PRICES if any(k in c.prices for _, c in shown)]
    mechanisms = sorted({m for _, c in shown for m in c.measured})
    rows += [[f"`{m}`: measured / composed ns", *(f"{_fmt(c.measured[m])} / {_fmt(c.composed[m])} "
                                                  f"({100 * c.errors[m]:+.1f}%)" if m in c.measured else "not run"
                                                  for _, c in shown)] for m in mechanisms]
    rows += [["`process-vm-exec`: composed ns", *("none (a diagnosis)" if c.refused else
                                                   cell(c.candidate_ns, *c.candidate_range) for _, c in shown)],
             ["speed-up over PTRACE_SYSEMU", *("none (a diagnosis)" if c.refused else
                                              f"{c.speedup:.2f}x ({c.speedup_range[0]:.2f}–{c.speedup_range[1]:.2f})"
                                              for _, c in shown)]]
    judged = []
    for _, c in shown:
        worst = max(c.errors, key=lambda m: abs(c.errors[m]))
        ok = abs(c.errors[worst]) <= verdict.COMPOSED_MAX_ERROR and not c.refused
        judged.append(f"{'judged' if ok else 'not judged'} (worst: {worst} {100 * c.errors[worst]:+.1f}%)")
    rows.append([f"every C mechanism within ±{100 * verdict.COMPOSED_MAX_ERROR:g}%?", *judged])
    header = ["", *(f"{name} (refused, a diagnosis: {c.refused})" if c.refused else name for name, c in shown)]
    missing = [f"{name}: {why}" for name, c, why in machines if c is None]
    return [("p", "The estimate from measured parts on every machine among the inputs, each composed from its "
                  "own host run, its own prices and the anatomy of its own twin, by the same model and rules "
                  "(prices in ns with their 95% CIs, the rounds resampled; process_vm_exec's interval also covers "
                  "the composition's worst errors; the speed-up's, PTRACE_SYSEMU's 95% CI). Where a machine's "
                  "prices were not admissible its column is a diagnosis, composed all the same to show where the "
                  "price model fails there, and nothing in it is judged:"),
            ("table", header, rows),
            *([("p", "No estimate on " + "; on ".join(missing) + ".")] if missing else []),
            *[("p", f"Caveat on {name}: {k}.") for name, c in shown for k in c.caveats]]


def to_markdown(c: Composition) -> str:
    title = "Why the prices were refused: a diagnosis" if c.refused else "A hardware estimate from measured parts"
    return f"# {title}\n\n" + document.to_markdown(blocks(c))
