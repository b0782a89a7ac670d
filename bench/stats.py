"""Results as data: load pyperf suites into one tidy frame, and the statistics that answer the question.

Everything here is plain data in, plain data out (pandas frames, dicts,
strings); bench.render.report and the notebooks only arrange and draw it.

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

from bench.measure import accelerators
from bench.measure.accelerators import CLOCKS, HARDWARE_CLOCKS
from bench.errors import UsageError
from bench.results import METADATA, classify, read_json

BASELINE = "ptrace-sysemu"
CANDIDATE = "process-vm-exec"
NATIVE = "native"
IN_PROCESS = "in-process"
#: The RFC's claim: "more than 5 times faster".
CLAIM = 5.0
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
RFC_PROGRAM_BACKEND = {"ptrace_vm_exec": BASELINE, "process_vm_exec": CANDIDATE}

#: Run-level metadata copied into every row of the tidy frame (besides the
#: benchmark-level columns): every key of the results store's registry but
#: the case's own, and pyperf's; missing keys become "".
_CASE_METADATA = ("vmexec_backend", "vmexec_pin", "vmexec_pages", "vmexec_parallel")
_RUN_KEYS = (*(k for k in METADATA if k not in _CASE_METADATA),
             "hostname", "cpu_model_name", "platform", "python_version", "perf_version")


# --------------------------------------------------------------------------- loading

def _suite(path: pathlib.Path, data: dict) -> pyperf.BenchmarkSuite:
    if classify(data) == "rfc":
        raise UsageError(f"{path}: an RFC-replica file, not a pyperf suite (bench report reads it; "
                         "compare, check, baseline and history take runs of bench run)")
    if "benchmarks" not in data or "version" not in data:
        raise UsageError(f"{path}: JSON but not a pyperf suite (no 'benchmarks'/'version')")
    try:
        suite = pyperf.BenchmarkSuite.loads(json.dumps(data))
    except Exception as e:      # pyperf's loader has no error type of its own: any failure is bad input
        raise UsageError(f"{path}: malformed pyperf suite: {type(e).__name__}: {e}") from None
    foreign = [b.get_name() for b in suite.get_benchmarks() if "vmexec_backend" not in b.get_metadata()]
    if foreign:
        raise UsageError(f"{path}: not a vmexec-bench suite (benchmark {foreign[0]!r} "
                         "has no vmexec_backend metadata)")
    return suite


def _case_fields(name: str, meta: dict) -> dict:
    """backend/pin/pages/parallel from the metadata, falling back to the case name."""
    parts = name.split(":")
    named = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    return {"backend": meta.get("vmexec_backend", parts[0]),
            "pin": str(meta.get("vmexec_pin", named.get("pin", ""))),
            "pages": int(meta.get("vmexec_pages", named.get("pages", 0))),
            "parallel": int(meta.get("vmexec_parallel", named.get("parallel", 1)))}


def _rows(path: pathlib.Path, run_id: str, suite: pyperf.BenchmarkSuite):
    for bench in suite.get_benchmarks():
        meta = bench.get_metadata()
        try:
            fields = _case_fields(bench.get_name(), meta)
        except (TypeError, ValueError) as e:
            raise UsageError(f"{path}: case {bench.get_name()}: malformed metadata ({e})") from None
        vm = str(meta.get("vmexec_tag_vm", "")) == "1"
        dates = bench.get_dates()     # None where pyperf recorded no date
        base = {"run_id": run_id, "case": bench.get_name(), **fields,
                "started": dates[0].isoformat() if dates else "",
                "kernel": str(meta.get("vmexec_kernel", "")),
                "accelerator": str(meta.get("vmexec_tag_accelerator") or meta.get("vmexec_accelerator", "")),
                "timing": str(meta.get("vmexec_tag_timing") or "wall"),
                "vm": vm, "host": str(meta.get("hostname", ""))}
        base.update({k: meta.get(k, "") for k in _RUN_KEYS})
        for worker, run in enumerate(bench.get_runs()):
            for value in run.values:        # run.values excludes warm-ups
                # pyperf accepts inf and nan; every ratio of them is NaN, and NaN compares false with
                # any threshold: such a value would pass as "unchanged".
                if not (isinstance(value, (int, float)) and 0 < value * 1e9 < math.inf):
                    raise UsageError(f"{path}: case {bench.get_name()}: value {value!r} is not a finite "
                                     "positive time")
                yield {**base, "worker": worker, "value_ns": value * 1e9}


def run_ids(paths: list[pathlib.Path]) -> list[str]:
    """File stems; a stem seen twice is qualified by its directory so run ids stay unique."""
    stems = [p.name.removesuffix(".gz").removesuffix(".json") for p in paths]
    return [f"{p.parent.name}/{s}" if stems.count(s) > 1 else s for p, s in zip(paths, stems)]


COLUMNS = ["run_id", "case", "backend", "pin", "pages", "parallel", "started", "kernel", "accelerator",
           "timing", "vm", "host", "worker", "value_ns", *_RUN_KEYS]


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


#: The numbers of an RFC-replica program entry (bench.measure.rfc writes them): finite and >= 0.
RFC_NUMBERS = ("iterations", "seconds", "rfc_printed_ns", "true_ns_per_iteration")


def load_rfc(path) -> dict:
    """An RFC-replica file (written by `bench rfc`), validated."""
    path = pathlib.Path(path)
    data = read_json(path)
    if classify(data) != "rfc" or not isinstance(data.get("programs"), list):
        raise UsageError(f"{path}: not an RFC-replica file (kind {data.get('kind')!r})")
    for prog in data["programs"]:
        if not isinstance(prog, dict) or "program" not in prog or "available" not in prog:
            raise UsageError(f"{path}: malformed program entry {prog!r:.60}")
        for key in RFC_NUMBERS:
            value = prog.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise UsageError(f"{path}: program {prog['program']}: {key} {value!r} is not a finite number")
    return {"run_id": path.stem, **data}


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


#: Columns that describe a case and are the same for every value of it.
_CASE_KEYS = ["run_id", "case", "backend", "pin", "pages", "parallel", "started", "kernel", "accelerator",
              "timing", "vm", "host"]


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
                 "kernel", "accelerator", "timing", "vm", "host"]


def ratios(df: pd.DataFrame, numerator: str, denominator: str = BASELINE, *,
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
                    **{k: first[k] for k in ("kernel", "accelerator", "timing", "vm", "host")}})
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


def all_ratios(df: pd.DataFrame, denominator: str = BASELINE) -> pd.DataFrame:
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
                               for den in (NATIVE, BASELINE))
        nat, sys_ = (_matching_ratio(r, row["run_id"], row["backend"], row["pin"]) for r in cache[key])
        same = row["backend"] == BASELINE
        extra["x_native"].append(1.0 if row["backend"] == NATIVE else nat["ratio"] if nat is not None else np.nan)
        extra["speedup_vs_sysemu"].append(1.0 if same else sys_["speedup"] if sys_ is not None else np.nan)
        extra["speedup_low"].append(1.0 if same else sys_["speedup_low"] if sys_ is not None else np.nan)
        extra["speedup_high"].append(1.0 if same else sys_["speedup_high"] if sys_ is not None else np.nan)
        extra["sysemu_pin"].append(row["pin"] if same else sys_["pin"] if sys_ is not None else "")
    return s.assign(**extra)


# --------------------------------------------------------------------------- the answer

#: Backends whose host-versus-guest distortion does not enter the hardware-equivalent range:
#: the two compared, and python-ptrace-sysemu, whose cost is the Python interpreter's
#: instruction mix rather than a kernel path; so are the binary rewriting backends (issue 22),
#: whose steady state runs no kernel path at all (zpoline's is mostly a nop sled, which icount
#: charges like any instruction: distortion 0.08 in the first run).  Every other mechanism enters.
NOT_DISTORTION_PROBES = (BASELINE, CANDIDATE, "python-ptrace-sysemu", "zpoline", "lazypoline", "systrap-patch")
#: Fewer probes than this bound nothing: one mechanism's distortion says little about another's.
MIN_PROBES = 3
#: The host cost model (bench.anatomy: host ns/syscall from the guest anatomy) replaces the distortion
#: bracket as the interval judged only if every mechanism it was fitted on, left out of the fit, is
#: predicted within this relative error.  Chosen before any prediction of the refitted model was
#: looked at, from the bracket it would replace: the C mechanisms' host-versus-guest distortions span
#: about a factor of two (0.46-1.08 on the development host, issue 13), i.e. about ±40% around their
#: centre.  A model is worth more only if it is clearly tighter than that: at ±20%, half of it, the
#: model's interval (the prediction divided by 1 + each extreme leave-one-out error) spans at most
#: 1.2 / 0.8 = 1.5x, against the bracket's 2.3x.
MODEL_MAX_LOO_ERROR = 0.20
#: The hardware estimate composed from measured prices (bench.anatomy.prices, issue 18 item 3) is judged only
#: if every C mechanism measured on the host is composed within this relative error by the same
#: prices; otherwise the distortion bracket is judged.  Fixed in the issue, before any composed
#: result was seen.
COMPOSED_MAX_ERROR = 0.20

VERDICT_RULE = (f"Rule: the >{CLAIM:g}x claim is *reproduced* when the whole interval judged lies at or "
                f"above {CLAIM:g}; *not reproduced* when it lies wholly below {CLAIM:g}; otherwise the data "
                f"neither confirm nor refute it. The speed-up is median PTRACE_SYSEMU ns/syscall ÷ median "
                f"process_vm_exec ns/syscall, same run, same pinning. On a hardware clock (bare metal, or a "
                f"KVM guest) the interval judged is its 95% CI, a two-level bootstrap: pyperf worker "
                f"processes resampled, then values within each. Under an emulator (TCG), same-CPU pinning, the "
                f"interval judged is the host cost model's (host ns/syscall fitted to the guest anatomy) "
                f"when it was fitted on the mitigation-matched guest anatomy and every mechanism it was "
                f"fitted on, left out of the fit, is predicted within ±{100 * MODEL_MAX_LOO_ERROR:g}% "
                f"(the distortion bracket's spread, about ±40%, halved); otherwise it is the "
                f"hardware-equivalent range (the distortion bracket): the speed-up divided by the "
                f"host-versus-guest distortions of the C mechanisms both ran at that pinning, with both "
                f"runs' CIs. Either way the verdict shows the icount path-length ratio, the bracket and "
                f"the model's prediction side by side, and a hardware run beside the model's prediction "
                f"with the model's error on it. Before both, the estimate composed from prices measured on "
                f"the host by micro-benchmarks of their own (kernel entry, ns per instruction, scheduler "
                f"round trip, address-space switch premium), each mechanism composed from its own anatomy: "
                f"its interval (its 95% CI widened by the worst relative error) is judged only if every C "
                f"mechanism measured on the host is composed within ±{100 * COMPOSED_MAX_ERROR:g}%, and is "
                f"shown beside the others either way. The "
                f"headline prefers bare metal, then KVM, then TCG with icount, then the rest; same-CPU "
                f"pinning; the newest run by its recorded start.")


def clock(row) -> str:
    """Which of CLOCKS a run's (or ratio row's) timings were taken with (the headline ranks them)."""
    return accelerators.clock(str(row["accelerator"]), str(row["timing"]), bool(row["vm"]))


def _environment_phrase(row) -> str:
    accel = accelerators.label(row["accelerator"])
    where = f"under {accel}" if row["vm"] else f"on the host ({accel})"
    pin = {"same": "same CPU", "cross": "tracer and tracee on different CPUs",
           "none": "unpinned", IN_PROCESS: "in-process"}.get(row["pin"], row["pin"])
    return f"on Linux {row['kernel']} {where}, {row['timing']} timing, {pin}"


def _headline_row(r: pd.DataFrame) -> pd.Series:
    """The most trustworthy pairing: best clock (CLOCKS), then pinning, then the newest run."""
    keyed = r.assign(_clock=r.apply(lambda row: CLOCKS.index(clock(row)), axis=1),
                     _pin=r["pin"].map(pin_order))
    keyed = keyed.sort_values(["started", "run_id"], ascending=False, kind="stable")
    return keyed.sort_values(["_clock", "_pin"], kind="stable").iloc[0]


def judge(low: float, high: float, claim: float = CLAIM, interval: str = "CI") -> str:
    if low >= claim:
        return f"the >{claim:g}x claim is reproduced"
    if high < claim:
        return f"the >{claim:g}x claim is not reproduced"
    return f"the >{claim:g}x claim is neither confirmed nor refuted (the {interval} contains {claim:g})"


@dataclasses.dataclass(frozen=True)
class ModelPrediction:
    """The host cost model's process_vm_exec prediction (bench.anatomy.CostModel), as the verdict uses it."""
    speedup: float              # PTRACE_SYSEMU measured on the host ÷ process_vm_exec predicted
    low: float                  # the interval: the prediction corrected by the extreme
    high: float                 # leave-one-out errors
    candidate_ns: float         # process_vm_exec, predicted host ns/syscall
    baseline_ns: float          # PTRACE_SYSEMU, measured host ns/syscall
    loo: dict                   # mechanism -> leave-one-out relative error (predicted / measured - 1)
    matched: bool               # fitted on the mitigation-matched guest anatomy
    inputs: str                 # what it was fitted on, for the reader

    @property
    def worst_error(self) -> float:
        return max(abs(e) for e in self.loo.values())

    def why_not_judged(self) -> str | None:
        """None if the verdict may judge this model's interval (VERDICT_RULE), else why not."""
        if not self.matched:
            return "it was not fitted on the mitigation-matched guest anatomy"
        if self.worst_error > MODEL_MAX_LOO_ERROR:
            worst = max(self.loo, key=lambda k: abs(self.loo[k]))
            return (f"its worst leave-one-out error ({worst}: {100 * self.loo[worst]:+.1f}%) exceeds "
                    f"±{100 * MODEL_MAX_LOO_ERROR:g}%")
        return None


@dataclasses.dataclass(frozen=True)
class ComposedPrediction:
    """The hardware estimate composed from measured prices (bench.anatomy.prices.Composition), as the verdict uses it."""
    speedup: float              # PTRACE_SYSEMU measured on the host ÷ process_vm_exec composed
    low: float                  # the interval: the composed CI widened by the worst relative errors,
    high: float                 # and PTRACE_SYSEMU's measured CI
    candidate_ns: float         # process_vm_exec, composed host ns/syscall
    baseline_ns: float          # PTRACE_SYSEMU, measured host ns/syscall
    errors: dict                # C mechanism -> relative error (composed / measured - 1)
    inputs: str = ""

    @property
    def worst(self) -> str:
        return max(self.errors, key=lambda k: abs(self.errors[k]))

    @property
    def worst_error(self) -> float:
        return abs(self.errors[self.worst])

    def why_not_judged(self) -> str | None:
        """None if the verdict may judge this interval (COMPOSED_MAX_ERROR), else why not."""
        if self.worst_error > COMPOSED_MAX_ERROR:
            return (f"{self.worst} is composed {100 * self.errors[self.worst]:+.1f}% off its measured time, "
                    f"beyond ±{100 * COMPOSED_MAX_ERROR:g}%")
        return None

    def phrase(self) -> str:
        return (f"{self.speedup:.2f}x ({self.low:.2f}–{self.high:.2f}: the composition's 95% CI widened by its worst "
                f"errors, and PTRACE_SYSEMU's CI; process_vm_exec {self.candidate_ns:,.0f} ns/syscall composed "
                f"against PTRACE_SYSEMU's {self.baseline_ns:,.0f} ns measured on the host)")

    def errors_phrase(self) -> str:
        return ", ".join(f"{k} {100 * v:+.1f}%" for k, v in sorted(self.errors.items(), key=lambda kv: kv[1]))


@dataclasses.dataclass(frozen=True)
class Assessment:
    """What one process_vm_exec / PTRACE_SYSEMU pairing says about the claim."""
    clock: str                  # one of CLOCKS
    low: float | None           # the interval judged: the CI on a hardware clock, the cost model's
    high: float | None          # interval or the hardware-equivalent range (None: nothing bounds it)
    judgement: str
    distortions: pd.DataFrame   # host_vs_guest() rows that bound the range (empty on a hardware clock)
    bracket: tuple | None = None    # the hardware-equivalent range, also when the model's interval is judged
    model_judged: bool = False
    composed_judged: bool = False

    @property
    def interval(self) -> str:
        return ("95% CI" if self.clock in HARDWARE_CLOCKS else "composed interval" if self.composed_judged
                else "cost-model interval" if self.model_judged else "hardware-equivalent range")


def assess(df: pd.DataFrame, row: pd.Series, hg: pd.DataFrame | None = None,
           model: ModelPrediction | None = None, composed: ComposedPrediction | None = None) -> Assessment:
    """Judge one ratios() row of process_vm_exec against PTRACE_SYSEMU by VERDICT_RULE (the composed
    estimate, then the model, if given, apply to same-CPU pinning under an emulator)."""
    kind = clock(row)
    if kind in HARDWARE_CLOCKS:
        return Assessment(kind, row["speedup_low"], row["speedup_high"],
                          judge(row["speedup_low"], row["speedup_high"]), pd.DataFrame())
    hg = host_vs_guest(df) if hg is None else hg
    used = hg[(hg["guest_run"] == row["run_id"]) & (hg["pin"] == row["pin"])
              & ~hg["backend"].isin(NOT_DISTORTION_PROBES)]
    # The composed estimate stands on the host alone (its prices and its mechanisms' anatomy): the rule
    # may judge it whether or not enough mechanisms ran on both host and guest to bound a bracket.
    bracket = ((row["speedup_low"] / used["distortion_high"].max(), row["speedup_high"] / used["distortion_low"].min())
               if len(used) >= MIN_PROBES else None)
    if composed is not None and row["pin"] == "same" and composed.why_not_judged() is None:
        return Assessment(kind, composed.low, composed.high,
                          judge(composed.low, composed.high, interval="composed interval"), used, bracket,
                          composed_judged=True)
    if used.empty:
        return Assessment(kind, None, None, f"the >{CLAIM:g}x claim cannot be judged for hardware "
                          "(no host run among the inputs bounds the emulator's distortion)", used)
    if len(used) < MIN_PROBES:
        return Assessment(kind, None, None, f"the >{CLAIM:g}x claim cannot be judged for hardware "
                          f"(only {len(used)} C mechanism(s) measured on both host and guest; the distortion "
                          f"range needs at least {MIN_PROBES})", used)
    low, high = bracket
    if model is not None and row["pin"] == "same" and model.why_not_judged() is None:
        return Assessment(kind, model.low, model.high, judge(model.low, model.high, interval="model's interval"),
                          used, (low, high), True)
    return Assessment(kind, low, high, judge(low, high, interval="range"), used, (low, high))


@dataclasses.dataclass(frozen=True)
class Headline:
    sentence: str       # the verdict, one line
    caveat: str         # what the judged interval covers and what it leaves out ("" on a hardware clock)
    assessment: Assessment | None
    figures: tuple = ()     # the icount ratio, the bracket and the model's prediction (and a hardware run)


def _model_phrase(m: ModelPrediction) -> str:
    return (f"{m.speedup:.2f}x ({m.low:.2f}–{m.high:.2f} with its extreme "
            f"leave-one-out errors; process_vm_exec {m.candidate_ns:,.0f} ns/syscall against PTRACE_SYSEMU's "
            f"{m.baseline_ns:,.0f} ns measured on the host)")


def figures(df: pd.DataFrame, r: pd.DataFrame, hg: pd.DataFrame | None, model: ModelPrediction | None,
            no_model: str = "no cost model among the inputs", composed: ComposedPrediction | None = None,
            no_composed: str = "") -> tuple[str, ...]:
    """The three figures the verdict shows side by side: the icount path-length ratio (same CPU
    preferred, newest run), the distortion bracket of that ratio, and the model's prediction; and,
    when a hardware clock (KVM, bare metal) measured process_vm_exec, the measured ratio with the
    model's error on it."""
    icount = r[r.apply(lambda row: clock(row) == "icount", axis=1)] if not r.empty else r
    if icount.empty:
        out = ["icount path-length ratio: no icount guest run among the inputs",
               "distortion bracket: none (it divides an icount or TCG ratio)"]
    else:
        row = _headline_row(icount)
        a = assess(df, row, hg)
        out = [f"icount path-length ratio (PTRACE_SYSEMU ÷ process_vm_exec instructions): {row['speedup']:.2f}x "
               f"(95% CI {row['speedup_low']:.2f}–{row['speedup_high']:.2f}), `{row['run_id']}`, {row['pin']} pinning",
               f"distortion bracket: {a.low:.2f}–{a.high:.2f}x ({len(a.distortions)} C mechanisms' host-versus-guest "
               f"distortions {a.distortions['distortion'].min():.2f}–{a.distortions['distortion'].max():.2f})"
               if a.low is not None else f"distortion bracket: none ({a.judgement.split('(', 1)[-1].rstrip(')')})"]
    if composed is not None:
        why = composed.why_not_judged()
        out.append(f"composed from prices measured on the host: {composed.phrase()} "
                   + (f"(judged: every C mechanism within ±{100 * COMPOSED_MAX_ERROR:g}%" if why is None
                      else f"(not judged: {why}") + f"; errors: {composed.errors_phrase()})")
    elif no_composed:
        out.append(f"composed from measured prices: none ({no_composed})")
    if model is None:
        out.append(f"cost model: {no_model}")
    else:
        why = model.why_not_judged()
        out.append(f"cost model's prediction for the host: {_model_phrase(model)} "
                   + (f"(judged: worst leave-one-out error {100 * model.worst_error:.1f}%, within "
                      f"±{100 * MODEL_MAX_LOO_ERROR:g}%)" if why is None else f"(not judged: {why})"))
    measured = r[r.apply(lambda row: clock(row) in HARDWARE_CLOCKS, axis=1)] if not r.empty else r
    if not measured.empty:
        row = _headline_row(measured)
        text = (f"measured on {accelerators.label(row['accelerator'])} (`{row['run_id']}`, {row['pin']} pinning): "
                f"{row['speedup']:.2f}x (95% CI {row['speedup_low']:.2f}–{row['speedup_high']:.2f})")
        if model is not None:
            text += (f"; the model predicted {model.speedup:.2f}x ({model.low:.2f}–{model.high:.2f}) for its own "
                     f"host, an error of {100 * (model.speedup / row['speedup'] - 1):+.1f}% on this measurement")
        out.append(text)
    return tuple(out)


def headline(df: pd.DataFrame, r: pd.DataFrame | None = None, hg: pd.DataFrame | None = None,
             model: ModelPrediction | None = None, no_model: str = "no cost model among the inputs",
             composed: ComposedPrediction | None = None, no_composed: str = "") -> Headline:
    """The verdict, computed from the data, and the caveat that goes beside it (rule: VERDICT_RULE).

    r and hg, when given, are ratios(df, CANDIDATE) and host_vs_guest(df), already computed; model is
    the host cost model's prediction (bench.anatomy), no_model why there is none.
    """
    r = ratios(df, CANDIDATE, BASELINE) if r is None else r
    if r.empty:
        if CANDIDATE in set(df["backend"]):
            return Headline("cannot be judged: no PTRACE_SYSEMU results in the same run as process_vm_exec",
                            "", None)
        why = "; ".join(f"{case}: {reason}" for case, reason in reasons(df, CANDIDATE).items())
        return Headline("cannot be judged: no process_vm_exec results" + (f" ({why})" if why else ""), "", None)
    h = _headline_row(r)
    a = assess(df, h, hg, model, composed)
    shown = figures(df, r, hg, model, no_model, composed, no_composed)
    mitigated = _runs_mitigations(df, h["run_id"])
    ci = f"{h['speedup_low']:.2f}–{h['speedup_high']:.2f}"
    if a.clock in HARDWARE_CLOCKS:
        return Headline(f"process_vm_exec is {h['speedup']:.2f}x faster than PTRACE_SYSEMU (95% CI {ci}, "
                        f"pyperf workers resampled) {_environment_phrase(h)}: {a.judgement}", "", a, shown)
    what = ("a path-length ratio (icount counts instructions, not time" if a.clock == "icount"
            else "an emulator-time ratio (TCG wall time is the emulator's speed, not the hardware's")
    sentence = (f"process_vm_exec is {h['speedup']:.2f}x faster than PTRACE_SYSEMU as {what}; 95% CI {ci} "
                f"covers repeats only) {_environment_phrase(h)}; ")
    if a.composed_judged:
        return Headline(sentence + f"composed from prices measured on the host, {composed.phrase()}, every C "
                        f"mechanism composed within ±{100 * COMPOSED_MAX_ERROR:g}% of its measured time (worst "
                        f"{composed.worst} {100 * composed.errors[composed.worst]:+.1f}%): {a.judgement}; the "
                        + (f"distortion bracket, {a.bracket[0]:.2f}–{a.bracket[1]:.2f}x, and " if a.bracket else "")
                        + "the fitted model are shown beside it", _caveat(h, a, mitigated), a, shown)
    if a.model_judged:
        return Headline(sentence + f"the host cost model predicts {_model_phrase(model)}, every mechanism it was "
                        f"fitted on predicted within "
                        f"±{100 * MODEL_MAX_LOO_ERROR:g}% when left out (worst {100 * model.worst_error:.1f}%): "
                        f"{a.judgement}; the distortion bracket, {a.bracket[0]:.2f}–{a.bracket[1]:.2f}x, is shown "
                        f"beside it", _caveat(h, a, mitigated), a, shown)
    if a.low is None:
        return Headline(sentence + a.judgement, _caveat(h, a, mitigated), a, shown)
    d = a.distortions
    sentence += (f"divided by the host-versus-guest distortion of {len(d)} C mechanisms "
                 f"({d['distortion'].min():.2f}–{d['distortion'].max():.2f}), the hardware-equivalent "
                 f"speed-up is {a.low:.2f}–{a.high:.2f}x: {a.judgement}")
    if composed is not None and h["pin"] == "same":
        sentence += (f"; composed from prices measured on the host, {composed.phrase()}, not judged because "
                     f"{composed.why_not_judged()}")
    if model is not None and h["pin"] == "same":
        sentence += (f"; the host cost model predicts {_model_phrase(model)}, not judged because "
                     f"{model.why_not_judged()}")
    return Headline(sentence, _caveat(h, a, mitigated), a, shown)


def _runs_mitigations(df: pd.DataFrame, run_id: str) -> bool:
    """Whether a run's kernel reported any speculation mitigation in force (its recorded vulnerabilities)."""
    try:
        recorded = json.loads(df.loc[df["run_id"] == run_id, "vmexec_mitigations"].iloc[0] or "{}")
    except (TypeError, json.JSONDecodeError, IndexError):
        return False
    return any(str(v).startswith("Mitigation") for v in recorded.values())


def _caveat(h: pd.Series, a: Assessment, mitigated: bool = False) -> str:
    why = ("icount advances the guest clock one nanosecond per executed instruction, so repeats agree to the "
           "digit and the CI covers only that repetition; it sees no cache or TLB miss and prices a CR3 "
           "write, WRMSR, SYSRET or IPI like an add, and "
           + ("counts the guest's speculation mitigations (retpolines, return thunks) as the instructions they "
              "are, not as the mispredictions they cost" if mitigated else
              "the guest runs without the host's speculation mitigations") if a.clock == "icount" else
           "TCG wall time is the emulator's speed, which neither preserves hardware costs nor repeats "
           "from boot to boot")
    text = (f"Read this as a {'path length' if a.clock == 'icount' else 'emulator time'}, not a hardware "
            f"time: {why}. That emulator-versus-hardware error is the largest uncertainty here. ")
    if a.composed_judged:
        return text + ("The estimate composed from prices measured on the host replaces the crude bracket here: "
                       "each price comes from a micro-benchmark of its own, each mechanism is composed from its "
                       "own anatomy, and its interval carries the worst error of the C mechanisms measured; it "
                       "estimates the host the prices were measured on, which may itself be a virtual machine.")
    if a.distortions.empty:
        return text + ("No host run among the inputs measured the same mechanisms, so nothing bounds it: "
                       "add a host run (`python -m bench run`) to the report's inputs.")
    if a.low is None:
        return text + (f"Only {', '.join(a.distortions['backend'])} ran on both the host and this guest: too few "
                       f"mechanisms (fewer than {MIN_PROBES}) to bound it; run more backends on both.")
    items = "; ".join(f"{r['backend']} {r['distortion']:.2f} ({r['distortion_low']:.2f}–{r['distortion_high']:.2f})"
                      for _, r in a.distortions.sort_values("distortion").iterrows())
    if a.model_judged:
        return text + ("The host cost model replaces the crude bracket here: it prices the guest anatomy's "
                       "instructions, CR3 writes and kernel entries with parameters fitted to this host's "
                       "measured mechanisms, and its interval carries its worst leave-one-out errors; it predicts "
                       "the host it was fitted on, which is itself a virtual machine, not bare metal.")
    return text + (f"The range bounds it crudely: for every C mechanism both the host run "
                   f"`{a.distortions['host_run'].iloc[0]}` and this guest ran ({h['pin']} pinning), the "
                   f"distortion is its guest speed-up over PTRACE_SYSEMU ÷ its host speed-up, with both "
                   f"runs' 95% CIs: {items}. The process_vm_exec speed-up's CI divided by the largest and the "
                   f"smallest of these gives {a.low:.2f}–{a.high:.2f}x, assuming process_vm_exec is "
                   f"distorted like one of them. The host cost model would replace it if every mechanism "
                   f"it was fitted on were predicted within ±{100 * MODEL_MAX_LOO_ERROR:g}% when left out; "
                   f"a run under KVM or on bare metal would replace both.")


def verdict(df: pd.DataFrame, model: ModelPrediction | None = None) -> str:
    """One sentence, computed from the data, answering the project's question (rule: VERDICT_RULE)."""
    return headline(df, model=model).sentence


@dataclasses.dataclass(frozen=True)
class Findings:
    """Every figure a report shows, each computed once from one tidy frame (load()).

    Reports, plots and notebooks take what they show from here instead of
    recomputing it: the bootstraps behind these tables are the slow part.
    """
    values: pd.DataFrame        # load(): one row per pyperf value
    summary: pd.DataFrame       # summarize(): one row per case
    table: pd.DataFrame         # backend_table(): summary with ratios to native and to PTRACE_SYSEMU
    all_ratios: pd.DataFrame    # all_ratios(): every backend against PTRACE_SYSEMU
    claim: pd.DataFrame         # ratios(CANDIDATE): process_vm_exec against PTRACE_SYSEMU, per run and pinning
    host_guest: pd.DataFrame    # host_vs_guest()
    headline: Headline


def findings(df: pd.DataFrame, model: ModelPrediction | None = None,
             no_model: str = "no cost model among the inputs", composed: ComposedPrediction | None = None,
             no_composed: str = "") -> Findings:
    """Every figure of a report; model is the host cost model's prediction (bench.anatomy), composed
    the estimate composed from measured prices (bench.anatomy.prices), if any."""
    summary, every, claim = summarize(df), all_ratios(df), ratios(df, CANDIDATE)
    hg = host_vs_guest(df, r=every)
    return Findings(df, summary, backend_table(df, summary), every, claim, hg,
                    headline(df, claim, hg, model, no_model, composed, no_composed))


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
                if backend is None or case.split(":")[0] == backend:
                    out[f"{run_id}: {case}" if several else case] = f"{state}: {why}"
    return out


def host_vs_guest(df: pd.DataFrame, denominator: str = BASELINE, r: pd.DataFrame | None = None) -> pd.DataFrame:
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


# --------------------------------------------------------------------------- context

def environment(df: pd.DataFrame) -> list[dict]:
    """What each run was measured on, one dict per run, from its metadata."""
    out = []
    for run_id, run in df.groupby("run_id", sort=True):
        first = run.iloc[0]
        try:
            mitigations = json.loads(first["vmexec_mitigations"] or "{}")
        except (TypeError, json.JSONDecodeError):
            mitigations = {}
        out.append({"run": run_id, "kind": "VM guest" if first["vm"] else "host", "host": first["host"],
                    "cpu": first["vmexec_cpu_model"] or first["cpu_model_name"], "cpus": first["vmexec_cpus"],
                    "cpus used": first["vmexec_cpus_used"],
                    "kernel": f"{first['kernel']} {first['vmexec_kernel_version']}".strip(),
                    "accelerator": first["accelerator"], "timing": first["timing"],
                    "mitigations": mitigations, "python": first["python_version"],
                    "pyperf": first["perf_version"], "command": first["vmexec_command"],
                    "commit": first["vmexec_commit"]})
    return out


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
