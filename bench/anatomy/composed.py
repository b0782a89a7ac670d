"""A hardware estimate from measured parts (issue 18 item 3, issue 26 item 4): the composition (`bench prices`).

The fitted cost model (bench.anatomy.model.CostModel) learns its prices from the mechanisms themselves, and
in every one of them a CR3 write comes with a scheduler round trip, so process_vm_exec (two CR3
writes, no scheduler) is an extrapolation.  Here each price is measured on the host by micro-benchmarks
of its own (bench.measure.prices: `vmexec price PART`), whose path length the anatomy plugin counts in
the icount guest, exactly as it counts the mechanisms':

    part's host ns per iteration  =  Σ over the prices  price × (how many of it the part spends)

The prices and the parts are rows of data (bench.measure.prices.PRICE_ROWS, part_rows()).  The prices
are fitted to more parts than there are prices (the pages sweep's small sizes besides the four
parts) by non-negative least squares on relative residuals, so a price is never negative and the
fit's residuals show how well the prices describe their own parts.  Their uncertainty comes from a
bootstrap over the interleaved rounds (every part's run of a round resampled together) and is carried
into every composed figure.

A fit is refused, in one line, never shown as an estimate (admissible()): a price not finite, at its
bound 0 (the parts asked for a negative one), or with a zero-width CI; a part the prices miss by more
than MAX_PART_RESIDUAL; fewer fitted parts than prices + 1; a host run or prices record measured on a
busy host (bench.results' busy-host test).

Every C mechanism's host ns/syscall is then composed from its own anatomy with the same prices,
process_vm_exec included, and compared with what the host measured.  COMPOSED_MAX_ERROR
(bench.estimates) decides whether the verdict may judge the composed interval.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from bench import results
from bench import stats
from bench.anatomy.counts import CLASSES, MODEL_VARIANT, twin_directory, variant_directory
from bench.anatomy.model import host_ns_per_syscall
from bench.errors import BenchError, UsageError
from bench.measure.environment import MEMORY_CGROUP_ROOT
from bench.measure.prices import (DIRECTORY, MECHANISM, PRICE_ROWS, SWEEP_PAGES, fitted_parts, label,
                                  load_record, probe_parts)

#: The prices, the unknowns of the fit, with their meaning.
PRICES = {r["name"]: r["meaning"] for r in PRICE_ROWS}
#: The price the pages sweep's premium is (ns per CR3 write).
PREMIUM = "cr3_write"
#: The function every context switch runs once, along a fixed path (the round trips' counter).
SWITCH_FUNCTION = "__switch_to_asm"
#: The prices must reproduce the very parts they are fitted to within half the tolerance the rule grants
#: the mechanisms they compose (bench.estimates.COMPOSED_MAX_ERROR, ±20%): a fit that misses its own
#: micro-benchmarks by more cannot be expected to compose anything within the rule.
MAX_PART_RESIDUAL = 0.10
BOOTSTRAP = 2000
SEED = 20210413


# --------------------------------------------------------------------------------- path lengths

@dataclasses.dataclass(frozen=True)
class Path_:
    """One part's or mechanism's path per iteration (per intercepted syscall), from its anatomy."""
    insns: float            # REP string instructions counted once
    totals: dict            # the anatomy's totals (counted events) per iteration
    functions: dict         # instructions per iteration spent in each function
    events: dict = dataclasses.field(default_factory=dict)   # function -> {counted event: per iteration}


def paths_from_anatomy(directory: Path) -> dict[str, Path_]:
    """{backend or part label: its path} from an anatomy directory (bench anatomy's output:
    anatomy.json for the totals, functions-LABEL.csv for the instructions per function)."""
    doc_path = Path(directory) / "anatomy.json"
    if not doc_path.exists():
        raise UsageError(f"no {doc_path}")
    out = {}
    for b in json.loads(doc_path.read_text())["backends"]:
        t = b["totals"]
        csv = Path(directory) / f"functions-{b['backend']}.csv"
        if not csv.exists():
            raise UsageError(f"no {csv} beside {doc_path}")
        frame = pd.read_csv(csv)
        f = frame.groupby("function")["insns_per_syscall"].sum()
        ev = frame.groupby("function")[[c for c in CLASSES if c in frame.columns]].sum()
        events = {str(fn): {k: float(v) for k, v in row.items() if v} for fn, row in ev.iterrows() if row.any()}
        out[b["backend"]] = Path_(b["insns_per_syscall"] - t.get("rep_extra", 0.0), dict(t),
                                  {str(k): float(v) for k, v in f.items()}, events)
    return out


def count(row: dict, path: Path_, parts: dict[str, Path_]) -> float:
    """How many of one price (a PRICE_ROWS row) path spends per iteration."""
    if row.get("insns"):
        return path.insns
    if "totals" in row:
        return float(sum(path.totals.get(k, 0.0) for k in row["totals"]))
    if "in_functions" in row:
        return float(sum(v.get(k, 0.0) for fn, v in path.events.items() if _one_of(fn, row["in_functions"])
                         for k in row["events"]))
    if "insns_per_call" in row:
        return sum(path.functions.get(f, 0.0) for f in row["function"]) / row["insns_per_call"]
    fn, unit = row["function"], row["unit_part"]

    def spent(p: Path_) -> float:
        if row.get("family"):
            return sum(v for f, v in p.functions.items() if f.startswith(fn))
        return p.functions.get(fn, 0.0)
    per_unit = spent(parts[unit]) / row.get("unit_calls", 1) if unit in parts else 0.0
    if per_unit <= 0:
        raise BenchError(f"the {unit} part ran no {fn}{'*' if row.get('family') else ''} in its anatomy: "
                         f"cannot count {row['name']}")
    return spent(path) / per_unit


def _one_of(function: str, names) -> bool:
    """function is one of names, or a compiler's copy of one (name.constprop.0, name.isra.0)."""
    return function.split(".")[0] in names


def counts(path: Path_, parts: dict[str, Path_]) -> np.ndarray:
    return np.array([count(r, path, parts) for r in PRICE_ROWS])


def round_trips(path: Path_, parts: dict[str, Path_]) -> float:
    """Scheduler round trips per iteration (the round_trip price's count)."""
    return count(next(r for r in PRICE_ROWS if r["name"] == "round_trip"), path, parts)


# ------------------------------------------------------------------------------------ the fit

@dataclasses.dataclass(frozen=True)
class Fit:
    prices: dict[str, float]
    residuals: dict[str, float]         # fitted part -> fitted / measured - 1
    unrun: frozenset = frozenset()      # prices no fitted part runs (0 here): no unknowns, no prices
    direct: frozenset = frozenset()     # prices measured by parts of their own (PRICE_ROWS' "direct"), not fitted
    held: frozenset = frozenset()       # prices held at 0: priced by another (PRICE_ROWS' "held_beside")


def direct_price(row: dict, medians: dict[str, float]) -> float | None:
    """A price measured by a part of its own less its twin (PRICE_ROWS' "direct"), or None where the record has
    not both (it is then fitted, as before the record had them)."""
    pair = row.get("direct")
    return medians[pair[0]] - medians[pair[1]] if pair and all(p in medians for p in pair) else None


def fit(parts: dict[str, Path_], medians: dict[str, float], labels) -> Fit:
    """Non-negative least squares of the parts' host ns per iteration (medians) on their counts, on relative
    residuals (each part weighs the same), the prices measured directly held at their measured values."""
    A = np.array([counts(parts[p], parts) for p in labels])
    y = np.array([medians[p] for p in labels])
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise BenchError("a part's measured time is not a positive finite number")
    # A price whose count is 0 in every part (SRSO's Safe RET where the kernel returns otherwise) is no unknown:
    # nothing measured it.
    run = np.any(A != 0, axis=0)
    x = np.zeros(A.shape[1])
    known, held = np.zeros(A.shape[1], dtype=bool), np.zeros(A.shape[1], dtype=bool)
    for i, row in enumerate(PRICE_ROWS):
        measured = direct_price(row, medians) if run[i] else None
        if measured is not None:
            x[i], known[i] = measured, True
        if run[i] and row.get("held_beside") and run[list(PRICES).index(row["held_beside"])]:
            held[i] = True      # x[i] stays 0
    free = run & ~known & ~held
    x[free] = nnls((A / y[:, None])[:, free], 1 - (A[:, known] @ x[known]) / y)[0]
    return Fit(dict(zip(PRICES, map(float, x))), {p: float(A[i] @ x / y[i] - 1) for i, p in enumerate(labels)},
               frozenset(k for k, r in zip(PRICES, run) if not r),
               frozenset(k for k, d in zip(PRICES, known) if d), frozenset(k for k, h in zip(PRICES, held) if h))


def admissible(f: Fit, ci: dict[str, tuple[float, float]]) -> str | None:
    """None if the prices may compose anything, else why not (one line)."""
    for k, v in f.prices.items():
        if k in f.unrun or k in f.held:
            continue
        lo, hi = ci[k]
        if not all(map(math.isfinite, (v, lo, hi))):
            return f"the {k} price is not finite ({v} ns, 95% CI {lo}–{hi})"
        if v <= 0 and k in f.direct:
            return f"the {k} price was measured at {v:.3g} ns, not above 0: its part was no slower than its twin"
        if v <= 0:
            return f"the {k} price is at its bound, 0 ns: the parts ask for a negative one"
        if hi <= lo:
            return f"the {k} price's 95% CI has zero width ({lo:.4g}–{hi:.4g} ns): nothing measured its spread"
    worst = max(f.residuals, key=lambda p: abs(f.residuals[p]))
    if abs(f.residuals[worst]) > MAX_PART_RESIDUAL:
        return (f"the prices miss their own part {worst} by {100 * f.residuals[worst]:+.1f}% (beyond "
                f"±{100 * MAX_PART_RESIDUAL:g}%; residuals: "
                + ", ".join(f"{p} {100 * r:+.1f}%" for p, r in f.residuals.items()) + ")")
    return None


def premium_at(pages: int, parts: dict[str, Path_], host_ns: dict[str, float], prices: dict[str, float]) -> float:
    """ns per CR3 write beyond every other price, processes against threads, at PAGES pages."""
    t, p = parts[label("threads", pages)], parts[label("processes", pages)]
    diff = counts(p, parts) - counts(t, parts)
    i = list(PRICES).index(PREMIUM)
    if diff[i] <= 0:
        raise BenchError(f"processes at {pages} pages wrote no more CR3 than threads in the anatomy")
    others = sum(prices[k] * d for j, (k, d) in enumerate(zip(PRICES, diff)) if j != i)
    return (host_ns[label("processes", pages)] - host_ns[label("threads", pages)] - others) / diff[i]


@dataclasses.dataclass
class Composition:
    prices: dict[str, float]
    prices_ci: dict[str, tuple[float, float]]
    parts: dict[str, tuple[float, float, float]]       # fitted part -> (measured ns, fitted ns, residual)
    rounds: int                                        # the interleaved rounds the bootstrap resampled
    premium: dict[int, tuple[float, float, float]]     # pages -> (ns per CR3 write, CI low, CI high)
    unpriced: dict[int, str]                           # pages -> why its premium is no price (negative)
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
    machine: str = ""                                  # the CPU model and kernel the prices were measured on
    record: str = ""                                   # the prices record composed from (its path)
    refused: str = ""                                  # why the prices are not admissible ("": they are)
    counted: str = ""                                  # the mechanisms' anatomy directory (its parts: parts/)
    direct: tuple = ()                                 # the prices measured by parts of their own, not fitted
    held: tuple = ()                                   # the prices held at 0, priced by another
    probes: dict = dataclasses.field(default_factory=dict)  # probe part -> (measured ns, priced ns, residual)
    caveats: tuple = ()                                # what the reader must know of the inputs (sentences)

    @property
    def speedup(self) -> float:
        return self.baseline_ns / self.candidate_ns

    @property
    def speedup_range(self) -> tuple[float, float]:
        return self.baseline_ci[0] / self.candidate_range[1], self.baseline_ci[1] / self.candidate_range[0]

    @property
    def covers(self) -> str:
        """What the candidate's interval covers, for the reader."""
        return (f"the parts' timing noise (a bootstrap over {self.rounds} interleaved rounds), the composition's "
                f"own error (the worst errors of the {len(self.errors)} C mechanisms composed, the largest "
                f"uncertainty here) and PTRACE_SYSEMU's 95% CI")


def _ci(samples) -> tuple[float, float]:
    lo, hi = np.percentile(np.asarray(samples), [2.5, 97.5])
    return float(lo), float(hi)


def _resampled_rounds(rounds: int, bootstrap: int):
    """bootstrap resamples (with replacement) of the indices of rounds rounds, from the fixed SEED: every
    figure of a prices record is resampled the same way, and reproducibly."""
    rng = np.random.default_rng(SEED)
    return (rng.integers(0, rounds, rounds) for _ in range(bootstrap))


def _rounds(host_values: dict[str, list[float]]) -> int:
    lengths = {len(v) for v in host_values.values()}
    if len(lengths) != 1:
        raise UsageError("the prices record's parts have different numbers of runs: not interleaved rounds")
    return lengths.pop()


def composition(parts: dict[str, Path_], host_values: dict[str, list[float]], mechanisms: dict[str, Path_],
                measured: dict[str, float], baseline_ci: tuple[float, float] | None = None,
                bootstrap: int = BOOTSTRAP, inputs: str = "", load: str = "", machine: str = "",
                diagnose: bool = False) -> Composition:
    """Prices fitted to the parts (host_values: ns per iteration of every round of each part), every mechanism
    composed from its path, and process_vm_exec's composed host ns/syscall with its interval; a BenchError
    (one line) where the prices are not admissible.

    CIs (95%): the interleaved rounds resampled (every part's run of a round together, so a disturbance
    that slowed a round moves its parts together), the fit and the composition repeated per resample: they
    cover the parts' timing noise.  The candidate's range spans its CI divided by 1 + the largest and 1 +
    the smallest relative error of the mechanisms measured (0 included): the composition's own error, at its
    worst, as the mechanisms show it, the largest uncertainty.  The speed-up's range also spans
    PTRACE_SYSEMU's measured CI (baseline_ci).

    diagnose: prices that are not admissible are composed all the same, marked `refused` with the reason:
    a diagnosis of where the model fails, never an estimate (bench.render.prices gives it no candidate)."""
    labels = [p for p in fitted_parts() if p in parts and p in host_values]
    if len(labels) <= len(PRICES):
        raise UsageError(f"only {len(labels)} part(s) measured and counted ({', '.join(labels) or 'none'}) for "
                         f"{len(PRICES)} prices: a fit needs more measurements than unknowns")
    if stats.CANDIDATE not in mechanisms:
        raise UsageError(f"the anatomy has no {stats.CANDIDATE}")
    if stats.SYSEMU not in measured:
        raise UsageError(f"the host run has no {stats.SYSEMU} (same CPU)")
    names = sorted(m for m in mechanisms if m in measured and m != stats.CANDIDATE)
    if not names:
        raise UsageError("no mechanism was measured both on the host and in the anatomy")
    rounds = _rounds(host_values)
    values = {k: np.asarray(v, dtype=float) for k, v in host_values.items()}
    medians = {k: float(np.median(v)) for k, v in values.items()}
    best = fit(parts, medians, labels)
    sweep = sorted(k for k in SWEEP_PAGES if all(label(p, k) in parts and label(p, k) in medians
                                                 for p in ("threads", "processes")))
    boot, boot_prem = [], {k: [] for k in sweep}
    for idx in _resampled_rounds(rounds, bootstrap):
        med = {k: float(np.median(v[idx])) for k, v in values.items()}
        pr = fit(parts, med, labels).prices
        boot.append([pr[k] for k in PRICES])
        for k in sweep:
            boot_prem[k].append(premium_at(k, parts, med, pr))
    boot = np.array(boot)
    prices_ci = {k: _ci(boot[:, i]) for i, k in enumerate(PRICES)}
    why = admissible(best, prices_ci)
    if why and not diagnose:
        raise BenchError(f"the prices are not admissible: {why}")
    premium = {0: (best.prices[PREMIUM], *prices_ci[PREMIUM])}
    unpriced = {}
    for k in sweep:
        premium[k] = (premium_at(k, parts, medians, best.prices), *_ci(boot_prem[k]))
        if min(premium[k]) < 0:     # no price is negative: say which count could not be trusted
            extra = parts[label("processes", k)].insns - parts[label("threads", k)].insns
            unpriced[k] = (f"negative, not a price: in the anatomy processes ran {extra:+,.0f} instructions per "
                           "iteration beside threads, which run the same code but for the address space, so "
                           "work the loop did not cause was counted at this size")
    price_vector = np.array([best.prices[k] for k in PRICES])
    vectors = {m: counts(p, parts) for m, p in mechanisms.items()}
    for m, v in vectors.items():
        if unpriced_run := [k for k, n in zip(PRICES, v) if k in best.unrun and n]:
            raise BenchError(f"{m} runs {', '.join(unpriced_run)} in its anatomy and no part does: the parts and "
                             "the mechanisms were not counted on one kernel")
    composed = {m: float(v @ price_vector) for m, v in vectors.items()}
    composed_ci = {m: _ci(boot @ v) for m, v in vectors.items()}
    errors = {m: composed[m] / measured[m] - 1 for m in names}
    e_lo, e_hi = min(0.0, *errors.values()), max(0.0, *errors.values())
    c_lo, c_hi = composed_ci[stats.CANDIDATE]
    if not why and (c_lo <= 0 or e_lo <= -1):
        raise BenchError(f"the composed {stats.CANDIDATE} interval reaches zero ({c_lo:.1f} ns, worst error "
                         f"{100 * e_lo:+.1f}%): the prices do not bound it")
    base = measured[stats.SYSEMU]
    fitted = {p: (medians[p], medians[p] * (1 + r), r) for p, r in best.residuals.items()}
    priced = {p: float(counts(parts[p], parts) @ price_vector) for p in probe_parts() if p in parts and p in medians}
    probes = {p: (medians[p], v, v / medians[p] - 1) for p, v in priced.items()}
    return Composition({k: v for k, v in best.prices.items() if k not in best.unrun},
                       {k: v for k, v in prices_ci.items() if k not in best.unrun}, fitted, rounds, premium, unpriced,
                       {m: round_trips(p, parts) for m, p in mechanisms.items()}, composed, composed_ci,
                       {m: measured[m] for m in names}, errors, composed[stats.CANDIDATE],
                       (c_lo / (1 + e_hi), c_hi / (1 + e_lo)), base, baseline_ci or (base, base), inputs, load,
                       machine, refused=f"the prices are not admissible: {why}" if why else "",
                       direct=tuple(k for k in PRICES if k in best.direct),
                       held=tuple(k for k in PRICES if k in best.held), probes=probes)


# ------------------------------------------------------------------------------- from files

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
    return measured, (float(row["ci_low"]), float(row["ci_high"])), machine_of(host[-1])


def in_rounds(record: dict, bootstrap: int = BOOTSTRAP) -> tuple[dict[str, float], tuple[float, float]] | None:
    """The mechanisms a prices record timed in its own rounds (bench.measure.prices.MECHANISM): their median ns per
    call and PTRACE_SYSEMU's 95% CI (its rounds resampled); None for a record without them (older ones: the
    host run's times are used)."""
    times = {k.removeprefix(MECHANISM): np.asarray(v, dtype=float) for k, v in record["ns_per_iteration"].items()
             if k.startswith(MECHANISM)}
    if not times:
        return None
    if stats.SYSEMU not in times:
        raise UsageError(f"the prices record timed mechanisms in its rounds but not {stats.SYSEMU}")
    base = times[stats.SYSEMU]
    boot = [float(np.median(base[idx])) for idx in _resampled_rounds(len(base), bootstrap)]
    return {m: float(np.median(v)) for m, v in times.items()}, _ci(boot)


def machine_of(path: Path) -> dict:
    """{"kernel", "cpu_model"} of a results file (the machine its host runs were measured on)."""
    first = stats.load([path]).iloc[0]
    return {"kernel": str(first["kernel"]),
            "cpu_model": str(first.get("vmexec_cpu_model") or first.get("cpu_model_name") or "")}


def host_machines(paths) -> dict[tuple[str, str], list[Path]]:
    """The host runs among paths by machine, (CPU model, kernel), in the order first seen."""
    out: dict[tuple[str, str], list[Path]] = {}
    for p in map(Path, paths):
        if results.classify(results.read_json(p)) == "host":
            m = machine_of(p)
            out.setdefault((m["cpu_model"], m["kernel"]), []).append(p)
    return out


def busy_record(record: dict, cpus: int) -> str | None:
    """bench.results' busy-host test applied to a prices record's rounds (the load sampled after each; a
    record from before issue 26 has only the load before and after): one line, or None."""
    samples = record.get("round_loads") or [{"load_avg_1min": float(str(record.get(k, "0")).split()[0])}
                                            for k in ("load_before", "load_after")]
    cpus = int(record.get("cpu_count") or cpus or 0)
    if not cpus:
        return None
    loads = [max(float(s[k]) for k in results.BUSY_KEYS if k in s) for s in samples]
    busy = sum(v > cpus for v in loads)
    if busy and busy >= results.BUSY_SHARE * len(loads):
        return (f"the host was busy while its prices were measured ({busy} of {len(loads)} samples saw up to "
                f"{max(loads):g} runnable threads or load on {cpus} CPUs)")
    return None


def _record_for(machine: dict, directories, records) -> tuple[Path | None, str]:
    """The newest prices record measured on machine (records, or prices-*.json in directories and below them:
    one directory per machine), or why none."""
    if records:
        return Path(records[0]), ""
    found = sorted({p for d in directories if Path(d).is_dir() for p in Path(d).rglob("prices-*.json")})
    read = {p: load_record(p) for p in found}      # a record that is not one is one line, not a traceback
    newest = max(found, key=lambda p: str(read[p].get("started", "")), default=None)
    mine = [p for p in found if all(not machine[k] or read[p].get(k) == machine[k] for k in ("kernel", "cpu_model"))]
    if mine:
        return max(mine, key=lambda p: str(read[p].get("started", ""))), ""
    if newest is None:
        return None, "no measured prices (`python -m bench prices` on this host)"
    rec = read[newest]
    what = next((f"{w} {rec.get(k)}" for k, w in (("kernel", "kernel"), ("cpu_model", "CPU"))
                 if machine[k] and rec.get(k) != machine[k]), "another machine")
    return None, (f"the prices ({newest.name}) were measured on {what}, the host run on "
                  f"{machine['cpu_model']} / {machine['kernel']}: not the same machine")


def counted_directory(anatomy_directory: Path, host_config: str = "") -> Path:
    """Where the mechanisms' anatomy the composition counts on lies (its parts in parts/ below it): the twin
    of the host's own kernel (issue 26), made from host_config (the host run's recorded configuration hash),
    where both of its anatomies were counted, for its paths are those the host's times take; else the
    mitigation-matched benchmark kernel's.  Another machine's twin is never taken."""
    anatomy_directory = Path(anatomy_directory)
    if host_config:
        with contextlib.suppress(UsageError):          # a hash that is none: no twin of it
            twin = twin_directory(anatomy_directory, host_config)
            if (twin / "anatomy.json").exists() and (twin / "parts" / "anatomy.json").exists():
                return twin
    return variant_directory(anatomy_directory, MODEL_VARIANT)


def _thunks_differ(host_meta, anatomy_dirs) -> str:
    """Why the anatomies cannot be priced for the host's thunks, or "": the host calls through retpoline thunks
    and a counted kernel does not, or the reverse (the retpoline price would not be the host's), or the host's
    returns go through another return thunk than a counted kernel's (SRSO's Safe RET mispredicts every return
    on purpose: a price no instruction count carries).  host_meta: the host run's metadata (a stats.load() row)."""
    from bench.anatomy.counts import guest_vulnerabilities
    from bench.measure.kernel import return_thunk, uses_retpolines

    try:
        host = json.loads(str(host_meta.get("vmexec_mitigations") or "{}"))
    except ValueError:
        host = {}
    host = host if isinstance(host, dict) else {}
    recount = ("recount it on this host (`bench anatomy` and `bench prices-anatomy` with --kernel-variant twin "
               "boot it with the host's CPU identity and spectre_v2)")
    for d in anatomy_dirs:
        guest = guest_vulnerabilities(Path(d) / "raw")
        if not host or not guest:
            continue
        hv2, gv2 = host.get("spectre_v2"), guest.get("spectre_v2")
        if hv2 and gv2 and uses_retpolines(hv2) != uses_retpolines(gv2):
            return (f"the host's indirect calls ({hv2.split(';')[0]}) are not those of the kernel counted in "
                    f"{d} ({gv2.split(';')[0]}): {recount}")
        if return_thunk(host) != return_thunk(guest):
            return (f"the host's returns go through {return_thunk(host) or 'a plain ret'}, those of the kernel "
                    f"counted in {d} through {return_thunk(guest) or 'a plain ret'}: {recount}")
    return ""


def _guest_facts(anatomy_dir) -> dict:
    """What the guest that counted an anatomy recorded of itself (raw/guest.json), or {} where it recorded none."""
    try:
        facts = json.loads((Path(anatomy_dir) / "raw" / "guest.json").read_text())
    except (OSError, ValueError):
        return {}
    return facts if isinstance(facts, dict) else {}


def _not_its_twin(host_meta, anatomy_dirs) -> str:
    """Why an anatomy counted on a twin cannot explain this host's times (the twin was made from another kernel
    configuration than the one the host run recorded), or "" (also where either side recorded none).
    host_meta: the host run's metadata (a stats.load() row)."""
    host = host_meta.get("vmexec_kernel_config")
    host = host if isinstance(host, str) else ""
    charged = host_meta.get("vmexec_memory_cgroup")
    charged = charged if isinstance(charged, str) else ""
    for d in anatomy_dirs:
        facts = _guest_facts(d)
        origin = str(facts.get("host_config_sha256", ""))
        counted_in = str(facts.get("memory_cgroup", "")) if "memory_cgroup" in facts else None
        # A twin counted before it recorded its memory cgroup (None) was counted in the root.
        if host and origin and charged and charged != (counted_in or MEMORY_CGROUP_ROOT):
            return (f"the host run was charged to a {charged} memory cgroup, the twin counted in {d} to "
                    f"{counted_in or 'the root (it recorded none)'}: its allocations' charging is not counted as "
                    f"the host runs it; recount the twin (`bench anatomy` and `bench prices-anatomy` with "
                    f"--kernel-variant twin)")
        if host and origin and not origin.startswith(host):
            return (f"the twin counted in {d} was made from kernel configuration {origin[:16]}, the host run's "
                    f"kernel has {host[:16]}: count the twin of this host (`bench kernel build --kernel-variant "
                    f"twin`, then `bench anatomy` and `bench prices-anatomy` with --kernel-variant twin)")
    return ""


def _charges_unknown(host_meta, anatomy_dirs) -> str:
    """What the reader must know where neither side says where its allocations were charged: a twin counted before
    it recorded its memory cgroup (so in the root) beside a host run that recorded none; else ""."""
    if host_meta.get("vmexec_memory_cgroup"):
        return ""
    for d in anatomy_dirs:
        facts = _guest_facts(d)
        if facts.get("host_config_sha256") and "memory_cgroup" not in facts:
            return (f"the twin counted in `{d}` charged its loops to the root memory cgroup and the host run "
                    "recorded none: where the host ran in a child (the VMs here do), the counts miss its "
                    "allocations' charges (about 1,100 instructions per file made and freed on the AMD EPYC VM's twin)")
    return ""


#: A host run beside a prices record (results/anatomy/prices/measure.sh writes both) is the record's own when it
#: started at most this long before the record: host times drift ±20% between runs here, so the prices compose
#: the run measured with them, not an older run of the same machine.
PAIR_WINDOW_S = 1800


def _when(text: str) -> datetime.datetime | None:
    try:
        t = datetime.datetime.fromisoformat(str(text).replace(" ", "T"))
    except ValueError:
        return None
    return t if t.tzinfo else t.astimezone()       # pyperf records local time without a zone


def paired_host_run(record_path: Path, record: dict) -> Path | None:
    """The host run measured with the prices record: in its directory, of its machine, the newest started at most
    PAIR_WINDOW_S before it; else None."""
    end = _when(record.get("started", ""))
    if end is None:
        return None
    best = None
    for p in sorted(Path(record_path).parent.glob("*.json")):
        if p == Path(record_path) or p.name.startswith("prices-"):
            continue
        try:
            data = results.read_json(p)
            if results.classify(data) != "host":
                continue
            m = machine_of(p)
        except (UsageError, BenchError, OSError, ValueError, KeyError):
            continue
        start = _when(results.recorded_start(data))
        if (start is None or m["kernel"] != record.get("kernel") or m["cpu_model"] != record.get("cpu_model")
                or not 0 <= (end - start).total_seconds() <= PAIR_WINDOW_S):
            continue
        if best is None or start > best[0]:
            best = (start, p)
    return best[1] if best else None


def composed_model(host_paths, anatomy_directory: Path, records=(),
                   diagnose: bool = False) -> tuple[Composition | None, str]:
    """(the composition, "") for the host runs among host_paths (one machine's), with the parts anatomy and the
    mechanisms' mitigation-matched anatomy under anatomy_directory, and the newest prices record measured on
    the same machine (records, or prices/ in the results directory and in anatomy_directory); or (None, why
    not): a busy host or prices that are not admissible are refused, never composed (diagnose: prices that are
    not admissible give a Composition marked `refused`, the diagnosis; a busy host is refused all the same)."""
    try:
        host_paths = [Path(p) for p in host_paths]
        measured, base_ci, meta = _host_run(host_paths)
        record_path, why = _record_for(meta, [results.directory() / DIRECTORY, Path(anatomy_directory) / DIRECTORY],
                                       records)
        if record_path is None:
            return None, why
        record = load_record(record_path)
        paired = None if records else paired_host_run(record_path, record)
        if paired is not None and paired not in host_paths:
            host_paths = [paired]
            measured, base_ci, meta = _host_run(host_paths)
        for key, what in (("kernel", "kernel"), ("cpu_model", "CPU")):
            if meta[key] and record.get(key) != meta[key]:
                return None, (f"the prices ({record_path.name}) were measured on {what} {record.get(key)}, "
                              f"the host run on {meta[key]}: not the same machine")
        host = [p for p in host_paths if results.classify(results.read_json(p)) == "host"]
        host_meta = stats.load([host[-1]]).iloc[0]
        mech_dir = counted_directory(anatomy_directory, str(host_meta.get("vmexec_kernel_config") or ""))
        parts_dir = mech_dir / "parts"
        if not (parts_dir / "anatomy.json").exists():
            return None, f"no parts anatomy ({parts_dir}: `python -m bench prices-anatomy`)"
        if not (mech_dir / "anatomy.json").exists():
            return None, f"no mitigation-matched guest anatomy ({mech_dir})"
        counted = (parts_dir, mech_dir)
        why = _thunks_differ(host_meta, counted) or _not_its_twin(host_meta, counted)
        if why:
            return None, why
        busy = results.busy_warning(host)
        if busy:
            return None, "refused: " + busy.removeprefix("warning: ").split(": other work")[0]
        busy = busy_record(record, max((results.busy_runs(p)[3] for p in host), default=0))
        if busy:
            return None, f"refused: {busy} ({record_path.name})"
        timed = in_rounds(record)
        if timed is not None:       # the mechanisms' own times from the prices' rounds, not the host run's
            measured, base_ci = timed
        inputs = _inputs(host, record_path, parts_dir, mech_dir) + (
            "; the mechanisms timed in the prices' own rounds, between the parts (`vmexec run`, pinned as the host "
            "run pins them), the host run read for its machine only" if timed is not None else "")
        c = composition(paths_from_anatomy(parts_dir), record["ns_per_iteration"], paths_from_anatomy(mech_dir),
                        measured, base_ci, inputs=inputs,
                        load=f"{record['load_before']} before, {record['load_after']} after",
                        machine=f"{meta['cpu_model']}, Linux {meta['kernel']}", diagnose=diagnose)
        caveat = _charges_unknown(host_meta, counted)
        return dataclasses.replace(c, record=str(record_path), counted=str(mech_dir),
                                   caveats=(caveat,) if caveat else ()), ""
    except (UsageError, BenchError) as e:
        return None, str(e)


def _inputs(host_paths, record_path: Path, parts_dir: Path, mech_dir: Path) -> str:
    rel = lambda p: Path(os.path.relpath(p)) if Path(p).is_absolute() else Path(p)   # noqa: E731
    kernels = [json.loads((d / "anatomy.json").read_text()).get("meta", {}).get("guest_kernel", "?")
               for d in (parts_dir, mech_dir)]
    return (f"host run(s) {', '.join(f'`{Path(p).name}`' for p in host_paths)}; prices `{rel(record_path)}`; "
            f"parts anatomy `{rel(parts_dir)}` (guest kernel {kernels[0]}); mechanisms' anatomy `{rel(mech_dir)}` "
            f"(guest kernel {kernels[1]})")
