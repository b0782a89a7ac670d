"""Results as data: load pyperf suites into one tidy frame, and the statistics that answer the question.

Everything here is plain data in, plain data out (pandas frames, dicts,
strings): numbers, not wording.  bench.verdict judges them and words the
answer; bench.render and the notebooks only arrange and draw it.

Conventions, used everywhere:

* ``ratio`` of backend X to backend B is ``median(X) / median(B)``: the cost
  of X in units of B (below 1: X is cheaper).
* ``speedup`` of X over B is ``median(B) / median(X)`` = 1 / ratio: the RFC's
  "process_vm_exec is N times faster than PTRACE_SYSEMU" is the speed-up of
  ``process-vm-exec`` over ``ptrace-sysemu``.
* A ratio only ever compares two cases of the *same run* (one results file),
  so host and VM figures, or two kernels, are never mixed in one number.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import numpy as np
import pandas as pd
import pyperf

from bench.errors import UsageError
from bench.results import (CASE_METADATA, IN_PROCESS, METADATA, Case, check_suite, classify, facts, read_json,
                           run_ids)

SYSEMU = "ptrace-sysemu"
CANDIDATE = "process-vm-exec"
NATIVE = "native"
#: Bootstrap resamples and seed: fixed, so a report is reproducible to the digit.
BOOTSTRAP = 2000
SEED = 20210413            # the RFC cover letter's date
#: Pinning preferred for the headline figure: the RFC's process_vm_exec runs
#: the guest on the caller's own CPU, so "same" is the like-for-like baseline.
PIN_PREFERENCE = ("same", "none", "cross")

#: The RFC's published figures (cover letter; patch 4/4 log differs slightly).
#: Its programs loop for TEST_TIMEOUT = 5 s but print 1e9 / iterations, so the
#: printed ns/syscall is one fifth of the true per-iteration cost.
RFC_PUBLISHED_NS = {"ptrace_vm_exec": 1446.0, "process_vm_exec": 289.0}
RFC_LOOP_SECONDS = 5

#: Run-level metadata copied into every row of the tidy frame (besides the
#: benchmark-level columns): every key of the results store's registry but
#: the case's own, and pyperf's; missing keys become "".
_RUN_KEYS = (*(k for k in METADATA if k not in CASE_METADATA),
             "hostname", "cpu_model_name", "platform", "python_version", "perf_version")


# --------------------------------------------------------------------------- loading

def _suite(path: pathlib.Path, data: dict) -> pyperf.BenchmarkSuite:
    if classify(data) == "rfc":
        raise UsageError(f"{path}: an RFC-replica file, not a pyperf suite (bench report reads it; "
                         "compare, check, baseline and history take runs of bench run)")
    if "benchmarks" not in data or "version" not in data:
        raise UsageError(f"{path}: JSON but not a pyperf suite (no 'benchmarks'/'version')")
    check_suite(path, data)
    try:
        suite = pyperf.BenchmarkSuite.loads(json.dumps(data))
    except Exception as e:      # pyperf's loader has no error type of its own: any failure is bad input
        raise UsageError(f"{path}: malformed pyperf suite: {type(e).__name__}: {e}") from None
    foreign = [b.get_name() for b in suite.get_benchmarks() if "vmexec_backend" not in b.get_metadata()]
    if foreign:
        raise UsageError(f"{path}: not a vmexec-bench suite (benchmark {foreign[0]!r} "
                         "has no vmexec_backend metadata)")
    return suite


def _rows(path: pathlib.Path, run_id: str, suite: pyperf.BenchmarkSuite):
    for bench in suite.get_benchmarks():
        meta = bench.get_metadata()
        try:
            case = Case.recorded(bench.get_name(), meta)
        except (TypeError, ValueError) as e:
            raise UsageError(f"{path}: case {bench.get_name()}: malformed metadata ({e})") from None
        where = facts(meta)      # measured or detected, never a tag
        dates = bench.get_dates()     # None where pyperf recorded no date
        base = {"run_id": run_id, "case": bench.get_name(), **dataclasses.asdict(case),
                "started": dates[0].isoformat() if dates else "",
                "kernel": str(meta.get("vmexec_kernel", "")),
                "accelerator": where["accelerator"], "timing": where["timing"],
                "vm": where["vm"], "host": str(meta.get("hostname", ""))}
        base.update({k: meta.get(k, "") for k in _RUN_KEYS})
        base.update({"vmexec_qemu": where["qemu"], "vmexec_host_cpu_model": where["host_cpu_model"]})
        for worker, run in enumerate(bench.get_runs()):
            for value in run.values:        # run.values excludes warm-ups
                # pyperf accepts inf and nan; every ratio of them is NaN, and NaN compares false with
                # any threshold: such a value would pass as "unchanged".
                if not (isinstance(value, (int, float)) and 0 < value * 1e9 < math.inf):
                    raise UsageError(f"{path}: case {bench.get_name()}: value {value!r} is not a finite "
                                     "positive time")
                yield {**base, "worker": worker, "value_ns": value * 1e9}


#: Columns that describe a case and are the same for every value of it.
_CASE_KEYS = ["run_id", "case", "backend", "pin", "pages", "parallel", "started", "kernel", "accelerator",
              "timing", "vm", "host"]
COLUMNS = [*_CASE_KEYS, "worker", "value_ns", *_RUN_KEYS]


def load(paths) -> pd.DataFrame:
    """Tidy frame of every value (warm-ups skipped) in the given pyperf suites, one row per value."""
    paths = [pathlib.Path(p) for p in ([paths] if isinstance(paths, (str, pathlib.Path)) else paths)]
    if not paths:
        raise UsageError("no results files given")
    rows = []
    for path, run_id in zip(paths, run_ids(paths)):
        rows.extend(_rows(path, run_id, _suite(path, read_json(path))))
    df = pd.DataFrame(rows, columns=COLUMNS)
    # A run started when its first case did (pyperf's own date metadata).
    df["started"] = df.groupby("run_id")["started"].transform("min")
    return df


# --------------------------------------------------------------------------- statistics

def _rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


def bootstrap_medians(workers, rng: np.random.Generator) -> np.ndarray:
    """BOOTSTRAP medians of two-level resamples of one case's values.

    `workers` holds one array of values per pyperf worker process.  Each
    resample draws the workers with replacement, then, within each drawn
    worker, as many values with replacement: the spread between worker
    processes (their own address-space layout, CPU placement, cache state)
    dominates the spread within one, so it must be the unit resampled
    (a hierarchical bootstrap).  With a single worker this reduces to
    resampling its values, and the interval covers only within-worker noise.
    """
    workers = [np.asarray(w, dtype=float) for w in workers]
    counts = np.array([len(w) for w in workers])
    padded = np.full((len(workers), counts.max()), np.nan)
    for i, w in enumerate(workers):
        padded[i, :len(w)] = w
    picked = rng.integers(0, len(workers), (BOOTSTRAP, len(workers)))
    within = (rng.random((BOOTSTRAP, len(workers), counts.max())) * counts[picked][..., None]).astype(int)
    return np.median(padded[picked[..., None], within].reshape(BOOTSTRAP, -1), axis=1)


def _by_worker(group: pd.DataFrame) -> list[np.ndarray]:
    """One case's values split by pyperf worker process (the bootstrap's unit)."""
    return [g.to_numpy() for _, g in group.groupby("worker", sort=True)["value_ns"]]


def _ci(samples: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per run x case: median ns/syscall, its 95% bootstrap CI (workers resampled), n and relative std dev."""
    out = []
    for keys, group in df.groupby(_CASE_KEYS, sort=False):
        values = group["value_ns"].to_numpy()
        low, high = _ci(bootstrap_medians(_by_worker(group), _rng()))
        mean = values.mean()
        out.append({**dict(zip(_CASE_KEYS, keys)), "median_ns": float(np.median(values)),
                    "ci_low": low, "ci_high": high, "n": len(values),
                    "rel_std": float(values.std(ddof=1) / mean) if len(values) > 1 else 0.0})
    return pd.DataFrame(out, columns=[*_CASE_KEYS, "median_ns", "ci_low", "ci_high", "n", "rel_std"])


def _pairs(run: pd.DataFrame, numerator: str, denominator: str, pages: int, parallel: int):
    """(pin, numerator pin, denominator pin, numerator workers, denominator workers) per like-for-like pairing.

    Each side is its case's values split by pyperf worker (see _by_worker).
    """
    sel = run[(run["pages"] == pages) & (run["parallel"] == parallel)]
    num = {pin: _by_worker(g) for pin, g in sel[sel["backend"] == numerator].groupby("pin")}
    den = {pin: _by_worker(g) for pin, g in sel[sel["backend"] == denominator].groupby("pin")}
    num_pin = {pin: pin for pin in num}
    den_pin = {pin: pin for pin in den}
    # An in-process backend has no placement: it pairs with every pinning of the other.
    if IN_PROCESS in num and IN_PROCESS not in den:
        num, num_pin = {pin: num[IN_PROCESS] for pin in den}, {pin: IN_PROCESS for pin in den}
    if IN_PROCESS in den and IN_PROCESS not in num:
        den, den_pin = {pin: den[IN_PROCESS] for pin in num}, {pin: IN_PROCESS for pin in num}
    for pin in sorted(set(num) & set(den), key=pin_order):
        yield pin, num_pin[pin], den_pin[pin], num[pin], den[pin]


def base_cases(s: pd.DataFrame) -> pd.DataFrame:
    """The rows of the base matrix: no pages written, one pair (the sweeps' other points left out)."""
    return s[(s["pages"] == 0) & (s["parallel"] == 1)]


def pin_order(pin: str) -> int:
    order = (*PIN_PREFERENCE, IN_PROCESS)
    return order.index(pin) if pin in order else len(order)


RATIO_COLUMNS = ["run_id", "started", "pin", "numerator_pin", "denominator_pin", "numerator", "denominator", "ratio", "ratio_low", "ratio_high",
                 "speedup", "speedup_low", "speedup_high", "n_numerator", "n_denominator",
                 "kernel", "accelerator", "timing", "vm", "host", "vmexec_kernel_config"]


def ratios(df: pd.DataFrame, numerator: str, denominator: str = SYSEMU, *,
           pages: int = 0, parallel: int = 1) -> pd.DataFrame:
    """median(numerator) / median(denominator) inside each run, per pinning, with 95% bootstrap CIs.

    ``pin`` is the pinning compared; ``numerator_pin``/``denominator_pin`` say
    which case of each side was used (``in-process`` for a side without one).

    ``speedup`` is the inverse, median(denominator) / median(numerator): how
    many times faster the numerator backend is.  Both medians are resampled
    independently, workers first (bootstrap_medians); the CI is the 2.5-97.5
    percentile of the resampled ratios.
    """
    out = []
    for p in paired_ratios(df, numerator, denominator, pages=pages, parallel=parallel):
        low, high = _ci(p.boot)
        first = p.first
        out.append({"run_id": p.run_id, "started": first["started"], "pin": p.pin, "numerator_pin": p.numerator_pin,
                    "denominator_pin": p.denominator_pin, "numerator": numerator, "denominator": denominator,
                    "ratio": p.ratio, "ratio_low": low, "ratio_high": high,
                    "speedup": 1 / p.ratio, "speedup_low": 1 / high, "speedup_high": 1 / low,
                    "n_numerator": p.n_numerator, "n_denominator": p.n_denominator,
                    **{k: first[k] for k in ("kernel", "accelerator", "timing", "vm", "host")},
                    "vmexec_kernel_config": str(first.get("vmexec_kernel_config", "") or "")})
    return pd.DataFrame(out, columns=RATIO_COLUMNS)


@dataclasses.dataclass(frozen=True)
class PairedRatio:
    """One ratio of two cases of one run, with its bootstrap samples (BOOTSTRAP resampled ratios)."""
    run_id: str
    pin: str
    numerator_pin: str
    denominator_pin: str
    ratio: float
    boot: np.ndarray
    n_numerator: int
    n_denominator: int
    first: pd.Series        # the run's first row: its run-level columns


def paired_ratios(df: pd.DataFrame, numerator: str, denominator: str, *, pages: int = 0, parallel: int = 1):
    """Every like-for-like pairing of numerator and denominator in each run (see ratios())."""
    for run_id, run in df.groupby("run_id", sort=True):
        if run["vm"].nunique() > 1:     # cannot happen for one file; guard the invariant anyway
            raise ValueError(f"run {run_id} mixes host and VM values")
        for pin, num_pin, den_pin, num, den in _pairs(run, numerator, denominator, pages, parallel):
            rng = _rng()
            boot = bootstrap_medians(num, rng) / bootstrap_medians(den, rng)
            ratio = float(np.median(np.concatenate(num)) / np.median(np.concatenate(den)))
            yield PairedRatio(run_id, pin, num_pin, den_pin, ratio, boot, sum(map(len, num)), sum(map(len, den)),
                              run.iloc[0])


def all_ratios(df: pd.DataFrame, denominator: str = SYSEMU) -> pd.DataFrame:
    """ratios() of every other backend to the denominator, at pages=0, parallel=1.

    An in-process backend is compared with the denominator at its preferred
    pinning only (PIN_PREFERENCE), so each case appears once.
    """
    frames = [_preferred_only(ratios(df, b, denominator)) for b in df["backend"].unique() if b != denominator]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RATIO_COLUMNS)


def _preferred_only(r: pd.DataFrame) -> pd.DataFrame:
    """Drop the extra pairings of an in-process side: keep its first pin per run (rows come sorted)."""
    placed = r["numerator_pin"] != IN_PROCESS
    return pd.concat([r[placed], r[~placed].drop_duplicates("run_id")]).sort_index()


def _matching_ratio(r: pd.DataFrame, run_id: str, backend: str, pin: str):
    """The ratio row for a case: its own pinning, or for in-process cases the preferred pinning."""
    rows = r[(r["run_id"] == run_id) & (r["numerator"] == backend)]
    if rows.empty:
        return None
    own = rows[rows["pin"] == pin]
    return (own if not own.empty else rows.sort_values("pin", key=lambda s: s.map(pin_order))).iloc[0]


def backend_table(df: pd.DataFrame, s: pd.DataFrame | None = None) -> pd.DataFrame:
    """summarize() plus, per case, its cost relative to native and its speed-up over PTRACE_SYSEMU.

    ``x_native`` = median(case) / median(native) (how many native syscalls it
    costs); ``speedup_vs_sysemu`` = median(SYSEMU) / median(case), both at the
    case's own pinning, pages and parallelism (in-process cases: against the
    preferred pinning of the other side, see PIN_PREFERENCE).
    """
    s = summarize(df) if s is None else s
    extra = {k: [] for k in ("x_native", "speedup_vs_sysemu", "speedup_low", "speedup_high", "sysemu_pin")}
    cache: dict[tuple, tuple[pd.DataFrame, pd.DataFrame]] = {}
    for _, row in s.iterrows():
        key = (row["backend"], row["pages"], row["parallel"])
        if key not in cache:
            cache[key] = tuple(ratios(df, row["backend"], den, pages=row["pages"], parallel=row["parallel"])
                               for den in (NATIVE, SYSEMU))
        nat, sys_ = (_matching_ratio(r, row["run_id"], row["backend"], row["pin"]) for r in cache[key])
        same = row["backend"] == SYSEMU
        extra["x_native"].append(1.0 if row["backend"] == NATIVE else nat["ratio"] if nat is not None else np.nan)
        extra["speedup_vs_sysemu"].append(1.0 if same else sys_["speedup"] if sys_ is not None else np.nan)
        extra["speedup_low"].append(1.0 if same else sys_["speedup_low"] if sys_ is not None else np.nan)
        extra["speedup_high"].append(1.0 if same else sys_["speedup_high"] if sys_ is not None else np.nan)
        extra["sysemu_pin"].append(row["pin"] if same else sys_["pin"] if sys_ is not None else "")
    return s.assign(**extra)


def reasons(df: pd.DataFrame, backend: str | None = None) -> dict[str, str]:
    """{case: 'unavailable: why' | 'failed: why'} recorded by the runs (optionally for one backend)."""
    out = {}
    several = df["run_id"].nunique() > 1
    for run_id, run in df.groupby("run_id", sort=True):
        first = run.iloc[0]
        for key, state in (("vmexec_unavailable", "unavailable"), ("vmexec_failed", "failed")):
            try:
                recorded = json.loads(first[key] or "{}")
            except (TypeError, json.JSONDecodeError):
                recorded = {}
            for case, why in recorded.items():
                if backend is None or _backend_of(case) == backend:
                    out[f"{run_id}: {case}" if several else case] = f"{state}: {why}"
    return out


def _backend_of(case: str) -> str | None:
    """The backend of a case recorded by name; None for a name no Case encodes (no backend's)."""
    try:
        return Case.parse(case).backend
    except ValueError:
        return None


def host_vs_guest(df: pd.DataFrame, denominator: str = SYSEMU, r: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each backend's speed-up over the baseline on the host beside the same figure in each guest run.

    Shows how the VM (and its timing mode) distorts relative costs: a
    distortion of 1 means the guest preserves the host's ratio; distortion_low
    and _high combine both runs' 95% CIs.  The host side is the newest host run
    (by recorded start) that has the backend at that pinning.
    """
    r = all_ratios(df, denominator) if r is None else r
    host, guest = r[~r["vm"].astype(bool)], r[r["vm"].astype(bool)]
    rows = []
    for _, g in guest.iterrows():
        h = host[(host["numerator"] == g["numerator"]) & (host["pin"] == g["pin"])]
        if h.empty:
            continue
        h = h.sort_values(["started", "run_id"]).iloc[-1]
        rows.append({"backend": g["numerator"], "pin": g["pin"], "backend_pin": g["numerator_pin"],
                     "host_run": h["run_id"], "host_speedup": h["speedup"],
                     "host_low": h["speedup_low"], "host_high": h["speedup_high"],
                     "guest_run": g["run_id"], "accelerator": g["accelerator"], "timing": g["timing"],
                     "guest_speedup": g["speedup"], "guest_low": g["speedup_low"],
                     "guest_high": g["speedup_high"], "distortion": g["speedup"] / h["speedup"],
                     "distortion_low": g["speedup_low"] / h["speedup_high"],
                     "distortion_high": g["speedup_high"] / h["speedup_low"]})
    return pd.DataFrame(rows, columns=["backend", "pin", "backend_pin", "host_run", "host_speedup", "host_low", "host_high",
                                       "guest_run", "accelerator", "timing", "guest_speedup", "guest_low",
                                       "guest_high", "distortion", "distortion_low", "distortion_high"])


#: The tests significant() may use, by the name it reports.
WELCH = "Welch's t-test (95%)"
EXACT = "exact (both sides deterministic)"


def significant(a, b) -> tuple[bool | None, float | None, str]:
    """(significant?, t score, the test used); None when either side has fewer than two values.

    Welch's two-sample t-test (scipy), which needs neither equal sample
    sizes nor equal variances.  Deterministic data (icount: every value of
    each side the same) has no variance to test with: identical sides are
    no change, different ones an exact difference.
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None, None, "too few values"
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return bool(a[0] != b[0]), None, EXACT
    test = stats.ttest_ind(a, b, equal_var=False)
    return bool(test.pvalue < 0.05), float(test.statistic), WELCH


def compare(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per case in both runs: median before/after, change (b / a) and significance."""
    rows = []
    for case in [c for c in a["case"].unique() if c in set(b["case"])]:
        va = a.loc[a["case"] == case, "value_ns"].to_numpy()
        vb = b.loc[b["case"] == case, "value_ns"].to_numpy()
        sig, t, test = significant(va, vb)
        rows.append({"case": case, "median_a_ns": float(np.median(va)), "median_b_ns": float(np.median(vb)),
                     "change": float(np.median(vb) / np.median(va)), "significant": sig, "t_score": t,
                     "test": test})
    return pd.DataFrame(rows, columns=["case", "median_a_ns", "median_b_ns", "change", "significant", "t_score",
                                       "test"])


def unmatched(a: pd.DataFrame, b: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(cases only a has, cases only b has), in their runs' order: what compare() leaves out."""
    in_a, in_b = dict.fromkeys(a["case"]), dict.fromkeys(b["case"])     # ordered, and looked up at once
    return [c for c in in_a if c not in in_b], [c for c in in_b if c not in in_a]


# --------------------------------------------------------------------------- the RFC's own figures

def rfc_table(records: list[dict]) -> pd.DataFrame:
    """The RFC's published ns/syscall beside each replica's, printed-as-the-RFC and true per iteration."""
    rows = []
    for program, published in RFC_PUBLISHED_NS.items():
        rows.append({"source": "RFC cover letter (published)", "program": program, "available": True,
                     "printed_ns": published, "true_ns": published * RFC_LOOP_SECONDS, "reason": ""})
        for rec in records:
            prog = next((p for p in rec["programs"] if p["program"] == program), None)
            if prog is None:
                continue
            where = f"{rec['run_id']} ({rec.get('kernel', '?')}, {rec.get('accelerator', '?')}, " \
                    f"{rec.get('timing', '?')})"
            rows.append({"source": where, "program": program, "available": bool(prog["available"]),
                         "printed_ns": prog.get("rfc_printed_ns", np.nan) if prog["available"] else np.nan,
                         "true_ns": prog.get("true_ns_per_iteration", np.nan) if prog["available"] else np.nan,
                         "reason": prog.get("reason", "")})
    return pd.DataFrame(rows, columns=["source", "program", "available", "printed_ns", "true_ns", "reason"])


def rfc_speedups(records: list[dict]) -> dict[str, float]:
    """{source: ptrace_vm_exec / process_vm_exec} where both programs ran (the RFC's own: 5.00)."""
    out = {"RFC cover letter (published)": RFC_PUBLISHED_NS["ptrace_vm_exec"] / RFC_PUBLISHED_NS["process_vm_exec"]}
    for rec in records:
        ns = {p["program"]: p.get("true_ns_per_iteration") for p in rec["programs"] if p.get("available")}
        if ns.get("ptrace_vm_exec") and ns.get("process_vm_exec"):
            out[rec["run_id"]] = ns["ptrace_vm_exec"] / ns["process_vm_exec"]
    return out
