"""A hardware estimate from measured parts (issue 18, item 3): the composition (`bench prices`).

The fitted cost model (bench.anatomy.model.CostModel) learns its prices from the mechanisms themselves, and
in every one of them a CR3 write comes with a scheduler round trip, so process_vm_exec (two CR3
writes, no scheduler) is an extrapolation.  Here each price is measured on the host by a
micro-benchmark of its own (bench.measure.prices: `vmexec price PART`), whose path length (instructions
with each REP string instruction counted once, kernel entries, CR3 writes) the anatomy plugin counts
in the icount guest, exactly as it counts the mechanisms':

    part        host ns per iteration  =  ns/insn × N  +  entry × E  +  round trip × R  +  mm × C

(the parts: entry, signal, threads with R = 1, processes with R = 1 and the CR3 writes of two mms).
Four parts, four unknowns: the system is solved exactly, each price being what its part costs
beyond the instructions the others price.  `mm` (ns per CR3 write) is the address-space switch
premium: (processes - threads) beyond their instructions and entries, per CR3 write.  With PAGES
(the pages sweep's sizes) the passive side writes that many pages per iteration, and the premium at
each size is reported too.

Every C mechanism's host ns/syscall is then composed from its own anatomy (instructions, entries,
CR3 writes, and its scheduler round trips: the instructions it spends in __switch_to_asm, a
fixed-length path, over the threads part's per round trip) with the same prices, process_vm_exec
included, and compared with what the host measured.  COMPOSED_MAX_ERROR (bench.verdict) decides
whether the verdict may judge the composed interval.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bench import results
from bench import stats
from bench.anatomy.counts import MODEL_VARIANT, variant_directory
from bench.anatomy.model import host_ns_per_syscall
from bench.errors import BenchError, UsageError
from bench.measure.prices import DIRECTORY, PARTS, SWEEP_PAGES, label, load_record, newest_record

#: The prices, the unknowns of the linear system, with their meaning.
PRICES = {
    "insn": "ns per instruction (REP string counted once) of kernel and user code outside the scheduler",
    "entry": "ns per kernel entry and exit beyond its instructions",
    "round_trip": "ns per scheduler round trip (two context switches on one CPU) beyond its instructions",
    "cr3_write": "ns per CR3 write beyond its instructions: the address-space switch premium "
                 "(two processes against two threads, per CR3 write)",
}
#: The function every context switch runs once, along a fixed path (the round trips' counter).
SWITCH_FUNCTION = "__switch_to_asm"
BOOTSTRAP = 2000
SEED = 20210413


# --------------------------------------------------------------------------------- path lengths

@dataclasses.dataclass(frozen=True)
class Path_:
    """One part's or mechanism's path per iteration (per intercepted syscall), from its anatomy."""
    insns: float            # REP string instructions counted once
    entries: float          # SYSCALL, exceptions and interrupts
    cr3_writes: float
    switch_insns: float     # instructions in SWITCH_FUNCTION

    def row(self, round_trips: float) -> list[float]:
        return [self.insns, self.entries, round_trips, self.cr3_writes]


def paths_from_anatomy(directory: Path) -> dict[str, Path_]:
    """{backend or part label: its path} from an anatomy directory (bench anatomy's output:
    anatomy.json for the totals, functions-LABEL.csv for the instructions in SWITCH_FUNCTION)."""
    doc_path = Path(directory) / "anatomy.json"
    if not doc_path.exists():
        raise UsageError(f"no {doc_path}")
    out = {}
    for b in json.loads(doc_path.read_text())["backends"]:
        t = b["totals"]
        csv = Path(directory) / f"functions-{b['backend']}.csv"
        if not csv.exists():
            raise UsageError(f"no {csv} beside {doc_path}")
        f = pd.read_csv(csv)
        switch = float(f.loc[f["function"] == SWITCH_FUNCTION, "insns_per_syscall"].sum())
        out[b["backend"]] = Path_(b["insns_per_syscall"] - t.get("rep_extra", 0.0), t["syscall"] + t["exc_irq"],
                                  t["cr3_write"], switch)
    return out


def round_trips(p: Path_, reference: Path_) -> float:
    """Scheduler round trips per iteration: p's instructions in SWITCH_FUNCTION over the threads
    part's (which makes exactly one round trip per iteration)."""
    if reference.switch_insns <= 0:
        raise BenchError(f"the threads part ran no {SWITCH_FUNCTION} in its anatomy: cannot count round trips")
    return p.switch_insns / reference.switch_insns


# ------------------------------------------------------------------------------------ prices

def solve(parts: dict[str, Path_], host_ns: dict[str, float]) -> dict[str, float]:
    """The four prices from the four parts (exactly determined)."""
    A = np.array([parts[p].row(r) for p, r in PARTS])
    y = np.array([host_ns[p] for p, _ in PARTS])
    try:
        x = np.linalg.solve(A, y)
    except np.linalg.LinAlgError as e:
        raise BenchError(f"the parts' paths do not determine the prices ({e}): {A.tolist()}") from None
    return dict(zip(PRICES, map(float, x)))


def compose(path: Path_, trips: float, prices: dict[str, float]) -> float:
    return float(np.dot(path.row(trips), [prices[k] for k in PRICES]))


def premium_at(pages: int, parts: dict[str, Path_], host_ns: dict[str, float], prices: dict[str, float]) -> float:
    """ns per CR3 write beyond instructions and entries, processes against threads, at PAGES pages."""
    t, p = parts[label("threads", pages)], parts[label("processes", pages)]
    extra = host_ns[label("processes", pages)] - host_ns[label("threads", pages)]
    extra -= prices["insn"] * (p.insns - t.insns) + prices["entry"] * (p.entries - t.entries)
    if p.cr3_writes - t.cr3_writes <= 0:
        raise BenchError(f"processes at {pages} pages wrote no more CR3 than threads in the anatomy")
    return extra / (p.cr3_writes - t.cr3_writes)


@dataclasses.dataclass
class Composition:
    prices: dict[str, float]
    prices_ci: dict[str, tuple[float, float]]
    premium: dict[int, tuple[float, float, float]]     # pages -> (ns per CR3 write, CI low, CI high)
    trips: dict[str, float]                            # mechanism -> round trips per syscall
    composed: dict[str, float]                         # mechanism -> composed host ns/syscall
    composed_ci: dict[str, tuple[float, float]]
    measured: dict[str, float]                         # mechanism -> host ns/syscall measured
    errors: dict[str, float]                           # composed / measured - 1
    candidate_ns: float
    candidate_range: tuple[float, float]               # its CI widened by the extreme errors
    baseline_ns: float
    baseline_ci: tuple[float, float]
    inputs: str = ""
    load: str = ""

    @property
    def speedup(self) -> float:
        return self.baseline_ns / self.candidate_ns

    @property
    def speedup_range(self) -> tuple[float, float]:
        return self.baseline_ci[0] / self.candidate_range[1], self.baseline_ci[1] / self.candidate_range[0]



def _ci(samples) -> tuple[float, float]:
    lo, hi = np.percentile(np.asarray(samples), [2.5, 97.5])
    return float(lo), float(hi)


def composition(parts: dict[str, Path_], host_values: dict[str, list[float]], mechanisms: dict[str, Path_],
                measured: dict[str, float], baseline_ci: tuple[float, float] | None = None,
                bootstrap: int = BOOTSTRAP, inputs: str = "", load: str = "") -> Composition:
    """Prices from the parts (host_values: ns per iteration of each run of each part), every mechanism
    composed from its path, and process_vm_exec's composed host ns/syscall with its interval.

    CIs (95%): the parts' runs resampled (bootstrap of each part's median), the whole solve and
    composition repeated per resample: they cover the host timing noise of the parts, not the
    composition's own error.  The candidate's range spans its CI divided by 1 + the largest and
    1 + the smallest relative error of the mechanisms measured (0 included): the composition's
    own error, at its worst, as the mechanisms show it.  The speed-up's range also spans
    PTRACE_SYSEMU's measured CI (baseline_ci)."""
    missing = [p for p, _ in PARTS if p not in parts or p not in host_values]
    if missing:
        raise UsageError(f"no path length or host time for the part(s) {', '.join(missing)}")
    if stats.CANDIDATE not in mechanisms:
        raise UsageError(f"the anatomy has no {stats.CANDIDATE}")
    if stats.SYSEMU not in measured:
        raise UsageError(f"the host run has no {stats.SYSEMU} (same CPU)")
    reference = parts["threads"]
    trips = {m: round_trips(p, reference) for m, p in mechanisms.items()}
    names = sorted(m for m in mechanisms if m in measured and m != stats.CANDIDATE)
    if not names:
        raise UsageError("no mechanism was measured both on the host and in the anatomy")
    medians = {k: float(np.median(v)) for k, v in host_values.items()}
    prices = solve(parts, medians)
    sweep = sorted(k for k in SWEEP_PAGES if label("threads", k) in parts and label("processes", k) in parts
                   and label("threads", k) in medians and label("processes", k) in medians)
    rng = np.random.default_rng(SEED)
    boot_prices, boot_comp, boot_prem = [], {m: [] for m in mechanisms}, {k: [] for k in [0, *sweep]}
    for _ in range(bootstrap):
        med = {k: float(np.median(rng.choice(np.asarray(v), len(v)))) for k, v in host_values.items()}
        pr = solve(parts, med)
        boot_prices.append(pr)
        for m, p in mechanisms.items():
            boot_comp[m].append(compose(p, trips[m], pr))
        boot_prem[0].append(pr["cr3_write"])
        for k in sweep:
            boot_prem[k].append(premium_at(k, parts, med, pr))
    prices_ci = {k: _ci([b[k] for b in boot_prices]) for k in PRICES}
    premium = {0: (prices["cr3_write"], *prices_ci["cr3_write"])}
    for k in sweep:
        premium[k] = (premium_at(k, parts, medians, prices), *_ci(boot_prem[k]))
    composed = {m: compose(p, trips[m], prices) for m, p in mechanisms.items()}
    composed_ci = {m: _ci(v) for m, v in boot_comp.items()}
    errors = {m: composed[m] / measured[m] - 1 for m in names}
    e_lo, e_hi = min(0.0, *errors.values()), max(0.0, *errors.values())
    c_lo, c_hi = composed_ci[stats.CANDIDATE]
    if c_lo <= 0 or e_lo <= -1:
        raise BenchError(f"the composed {stats.CANDIDATE} interval reaches zero ({c_lo:.1f} ns, worst error "
                         f"{100 * e_lo:+.1f}%): the prices do not bound it")
    cand_range = (c_lo / (1 + e_hi), c_hi / (1 + e_lo))
    base = measured[stats.SYSEMU]
    return Composition(prices, prices_ci, premium, trips, composed, composed_ci, {m: measured[m] for m in names},
                       errors, composed[stats.CANDIDATE], cand_range, base, baseline_ci or (base, base),
                       inputs, load)


def _host_run(paths: list[Path]) -> tuple[dict[str, float], tuple[float, float], dict]:
    """Measured host ns/syscall per backend (same CPU, in-process as they run), PTRACE_SYSEMU's 95% CI,
    and the host run's metadata (kernel, CPU model)."""
    host = [p for p in paths if results.classify(results.read_json(p)) == "host"]
    if not host:
        raise UsageError("no host run among the given results (a `bench run --pin same` on this machine)")
    measured = host_ns_per_syscall(host)
    s = stats.base_cases(stats.summarize(stats.load(host)))
    s = s[(s["backend"] == stats.SYSEMU) & (s["pin"] == "same")].sort_values("started")
    if s.empty:
        raise UsageError(f"the host run has no {stats.SYSEMU} at --pin same")
    row = s.iloc[-1]
    values = stats.load(host)
    first = values[values["run_id"] == row["run_id"]].iloc[0]
    cpu = str(first.get("vmexec_cpu_model") or first.get("cpu_model_name") or "")
    return measured, (float(row["ci_low"]), float(row["ci_high"])), {"kernel": str(row["kernel"]), "cpu_model": cpu}


def composed_model(host_paths, anatomy_directory: Path, records=()) -> tuple[Composition | None, str]:
    """(the composition, "") for the host runs among host_paths, with the parts anatomy and the
    mechanisms' mitigation-matched anatomy under anatomy_directory, and the newest prices record
    (records, or prices/ in the results directory and in anatomy_directory) measured on the same
    kernel; or (None, why not)."""
    mech_dir = variant_directory(Path(anatomy_directory), MODEL_VARIANT)
    parts_dir = mech_dir / "parts"
    if not (parts_dir / "anatomy.json").exists():
        return None, f"no parts anatomy ({parts_dir}: `python -m bench prices-anatomy`)"
    if not (mech_dir / "anatomy.json").exists():
        return None, f"no mitigation-matched guest anatomy ({mech_dir})"
    try:
        measured, base_ci, meta = _host_run([Path(p) for p in host_paths])
        record_path = Path(records[0]) if records else newest_record(
            [results.directory() / DIRECTORY, Path(anatomy_directory) / DIRECTORY])
        if record_path is None:
            return None, "no measured prices (`python -m bench prices` on this host)"
        record = load_record(record_path)
        for key, what in (("kernel", "kernel"), ("cpu_model", "CPU")):
            if meta[key] and record.get(key) != meta[key]:
                return None, (f"the prices ({record_path.name}) were measured on {what} {record.get(key)}, "
                              f"the host run on {meta[key]}: not the same machine")
        c = composition(paths_from_anatomy(parts_dir), record["ns_per_iteration"], paths_from_anatomy(mech_dir),
                        measured, base_ci, inputs=_inputs(host_paths, record_path, parts_dir, mech_dir),
                        load=f"{record['load_before']} before, {record['load_after']} after")
        return c, ""
    except (UsageError, BenchError) as e:
        return None, str(e)


def _inputs(host_paths, record_path: Path, parts_dir: Path, mech_dir: Path) -> str:
    rel = lambda p: Path(os.path.relpath(p)) if Path(p).is_absolute() else Path(p)   # noqa: E731
    kernels = [json.loads((d / "anatomy.json").read_text()).get("meta", {}).get("guest_kernel", "?")
               for d in (parts_dir, mech_dir)]
    return (f"host run(s) {', '.join(f'`{Path(p).name}`' for p in host_paths)}; prices `{rel(record_path)}`; "
            f"parts anatomy `{rel(parts_dir)}` (guest kernel {kernels[0]}); mechanisms' anatomy `{rel(mech_dir)}` "
            f"(guest kernel {kernels[1]})")


