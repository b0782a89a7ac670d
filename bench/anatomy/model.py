"""A host cost model fitted to the guest anatomy (issue 13, item 5).

Host ns/syscall of every C mechanism, measured by `bench run`, against the features of its guest
anatomy (instructions, CR3 writes, kernel entries per intercepted syscall), by non-negative least
squares; its prediction for process_vm_exec is what the verdict (bench.verdict.ModelPrediction.of) may
judge.  The anatomy it is fitted on is the mitigation-matched kernel's (counts.MODEL_VARIANT).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from bench import results
from bench import stats
from bench.anatomy.counts import (EVENT, MODEL_VARIANT, REP_EXTRA, default_directory, load_anatomy, reading,
                                  variant_directory)
from bench.errors import UsageError

#: The model's features, each per intercepted syscall, with the physical meaning of its
#: coefficient (ns per unit, non-negative).
MODEL_FEATURES = {
    "insns": "ns per guest instruction (each REP string instruction counted once, as hardware runs it): "
             "the host's mean cost of an ordinary instruction",
    "cr3_write": "ns per CR3 write: an address-space switch, with the TLB and cache refills after it",
    "kernel_entries": "ns per kernel entry (SYSCALL, exception or interrupt): entry and exit with "
                      "the host's mitigations",
}


def model_features(totals: dict, insns_per_syscall: float) -> list[float]:
    return [insns_per_syscall - totals.get(REP_EXTRA, 0.0), totals["cr3_write"], totals["syscall"] + totals[EVENT]]


def host_ns_per_syscall(paths: list[Path]) -> dict[str, float]:
    """Median host ns/syscall per backend of the newest host run among paths: tracers pinned to one
    CPU, in-process backends as they run, no pages touched, one pair."""
    host = [p for p in paths if results.classify(results.read_json(p)) == "host"]
    if not host:
        raise UsageError("no host run among the given results (a `bench run` on this machine's kernel)")
    s = stats.base_cases(stats.summarize(stats.load(host)))
    s = s[s["pin"].isin(["same", stats.IN_PROCESS])].sort_values("started")
    return {b: float(g.iloc[-1]["median_ns"]) for b, g in s.groupby("backend")}


@dataclasses.dataclass
class CostModel:
    parameters: dict[str, float]            # feature -> ns per unit
    backends: list[str]                     # the mechanisms it was fitted on
    measured: dict[str, float]              # host ns/syscall
    fitted: dict[str, float]                # the full model's prediction
    loo: dict[str, float]                   # leave-one-out relative error (predicted / measured - 1)
    candidate_ns: float                     # process_vm_exec's predicted host ns/syscall
    candidate_range: tuple[float, float]    # corrected by the extreme leave-one-out errors
    baseline_ns: float                      # PTRACE_SYSEMU on the host, measured
    variant: str = "bench"                  # the kernel build of the guest anatomy
    inputs: str = ""                        # the files it was fitted on, for the reader

    @property
    def speedup(self) -> float:
        return self.baseline_ns / self.candidate_ns

    @property
    def speedup_range(self) -> tuple[float, float]:
        return self.baseline_ns / self.candidate_range[1], self.baseline_ns / self.candidate_range[0]



def fit_model(anatomy_json: Path, host: dict[str, float], inputs: str = "") -> CostModel:
    """Non-negative least squares on relative errors (each mechanism weighs the same), host ns/syscall
    against the guest anatomy's features; leave-one-out errors; process_vm_exec's prediction with a
    range: the prediction divided by (1 + e) for the largest and smallest leave-one-out error e."""
    doc = load_anatomy(anatomy_json)
    with reading(anatomy_json):
        feats = {b["backend"]: model_features(b["totals"], b["insns_per_syscall"]) for b in doc["backends"]}
    if stats.CANDIDATE not in feats:
        raise UsageError(f"{anatomy_json} has no {stats.CANDIDATE} anatomy")
    if stats.SYSEMU not in host:
        raise UsageError(f"the host run has no {stats.SYSEMU} (same CPU)")
    names = sorted(b for b in feats if b in host and b != stats.CANDIDATE)
    if len(names) < len(MODEL_FEATURES) + 2:
        raise UsageError(f"too few mechanisms measured both on the host and in the anatomy ({', '.join(names)}): "
                         f"the model needs at least {len(MODEL_FEATURES) + 2}")
    X = np.array([feats[n] for n in names])
    y = np.array([host[n] for n in names])
    w = 1 / y

    def solve(mask):
        p, _ = nnls(X[mask] * w[mask, None], y[mask] * w[mask])
        return p

    p = solve(np.ones(len(names), bool))
    loo = {}
    for i, n in enumerate(names):
        mask = np.arange(len(names)) != i
        loo[n] = float(X[i] @ solve(mask) / y[i] - 1)
    pred = float(np.array(feats[stats.CANDIDATE]) @ p)
    lo_e, hi_e = min(loo.values()), max(loo.values())
    rng = (pred / (1 + hi_e), pred / (1 + lo_e)) if lo_e > -1 else (pred / (1 + hi_e), float("inf"))
    return CostModel(dict(zip(MODEL_FEATURES, map(float, p))), names, {n: host[n] for n in names},
                     {n: float(X[i] @ p) for i, n in enumerate(names)}, loo, pred, rng, host[stats.SYSEMU],
                     doc.get("meta", {}).get("kernel_variant", "bench"), inputs)


def describe_inputs(host: list[Path], anatomy_json: Path) -> str:
    """The files a model was fitted on, for the reader."""
    where = Path(os.path.relpath(anatomy_json)) if anatomy_json.is_absolute() else anatomy_json
    return f"host run(s) {', '.join(f'`{p.name}`' for p in host)}; guest anatomy `{where}`"


def fitted_model(host_paths, directory: Path | None = None) -> tuple[CostModel | None, str]:
    """(the cost model, "") fitted to the host runs among host_paths (results files) and the
    mitigation-matched anatomy under directory (the benchmark kernel's anatomy directory; default:
    anatomy/ in the results directory), or (None, why not)."""
    anatomy_json = variant_directory(Path(directory or default_directory()), MODEL_VARIANT) / "anatomy.json"
    if not anatomy_json.exists():
        return None, (f"no mitigation-matched guest anatomy ({anatomy_json}: `python -m bench anatomy "
                      f"--kernel-variant {MODEL_VARIANT}`)")
    host = [Path(p) for p in host_paths if results.classify(results.read_json(p)) == "host"]
    try:
        return fit_model(anatomy_json, host_ns_per_syscall(host), describe_inputs(host, anatomy_json)), ""
    except UsageError as e:
        return None, str(e)


