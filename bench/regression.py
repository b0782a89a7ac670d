"""Regression checks: a run judged against a baseline, ratio by ratio, with thresholds from measured noise.

What is compared is never an absolute time across runs (the host drifts by
±20% between runs) but ratios inside each run: every backend against
`native` and against `ptrace-sysemu` at the same pinning (bench.stats.paired_ratios).
A ratio *regressed* when it got worse by more than its threshold **and** the
change's 99% interval (worker-level bootstrap of both runs) lies wholly above 1.

A baseline is a results file like any other, with one more metadata key
(BASELINE_KEY): the runs it was made from, each ratio's centre (geometric
mean) and run-to-run spread (standard deviation of its logarithm) across
them, and the command that repeats its run.  A new run is compared with the
centre; a ratio's threshold is SIGMAS times the spread a new run shows
against a centre of n runs, sd * sqrt(1 + 1/n), never below its mode's FLOOR.
A baseline made from one run has no measured spread and uses UNMEASURED.
A ratio's mode is exact only when both its cases ran on one CPU of an icount
guest (ratio_mode); everything else is timed.  `--threshold` fixes one threshold for all (asv's
--factor).  Every ratio states its power (bench.power); one that cannot be judged is inconclusive.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import shlex

import numpy as np
import pandas as pd

from bench import stats
from bench import results
from bench.machine import BASELINE_KEY, baseline_metadata, differences
from bench import machine as machines
from bench.results import IN_PROCESS, Case
from bench.errors import UsageError
from bench.measure.kernel import LOCALVERSIONS
from bench.power import POWER, Z_POWER, detectable, physical, validate_noise  # noqa: F401 (names of the check)

#: Each ratio is judged against these references.
REFERENCES = (stats.NATIVE, stats.SYSEMU)
#: The change's interval: wide, because a run is judged on some 30 ratios at once.
CONFIDENCE = 0.99
#: A threshold is this many standard deviations of a new run's ratio about the baseline's centre:
#: about one false alarm in 700 per ratio if the spread is normal and measured well (so use 5 or
#: more runs for a wall-clock baseline: the spread of fewer is itself uncertain).
SIGMAS = 3.0
#: Thresholds never go below these: deterministic (icount, one CPU) ratios repeat to the instruction
#: where the path is the same, so a fraction of a percent is already real; timed ones keep a margin.
FLOOR = {"exact": 0.002, "timed": 0.02}
#: Pinnings whose case runs on one CPU.  Across two vCPUs an icount count is not exact: QEMU's
#: round-robin hands the CPU from vCPU to vCPU on host-timed kicks and events, so the count moves
#: with the host's load (seccomp-trace across CPUs: sd 0.05% on a quiet host, 0.26% while loaded,
#: and a CI machine saw it move beyond 0.5%).  Such ratios are judged as timed.
ONE_CPU = ("same", IN_PROCESS)
#: Thresholds of a baseline made from a single run (spread not measured).
UNMEASURED = {"exact": 0.01, "timed": 0.15}
#: missing: the baseline has the ratio, the current run did not measure it (a backend that broke, or a
#: case the run was not asked for): reported apart from regressed, it is no measured slowdown.
VERDICTS = ("regressed", "missing", "improved", "inconclusive", "unchanged")


def mode(df: pd.DataFrame) -> str:
    """exact for icount runs (one instruction, one nanosecond), timed for every wall clock."""
    return "exact" if set(df["timing"]) == {"icount"} else "timed"


@dataclasses.dataclass(frozen=True)
class Ratio:
    """One ratio judged: a case over its reference case in the same run.  The reference is measured at
    the case's own sweep point, but named without it (a label, as baselines store it, names the point once)."""
    case: Case
    reference: Case

    @property
    def label(self) -> str:
        return f"{self.case.encode()} ÷ {self.reference.encode()}"

    @property
    def one_cpu(self) -> bool:
        """Whether both its cases ran on one CPU (ONE_CPU): one pair, pinned to one CPU or in-process."""
        return self.case.parallel == 1 and self.case.pin in ONE_CPU and self.reference.pin in ONE_CPU


def ratio_mode(run_mode: str, ratio: Ratio) -> str:
    """A ratio's own mode: exact only in an exact run and when both its cases ran on one CPU (ONE_CPU)."""
    return "exact" if run_mode == "exact" and ratio.one_cpu else "timed"


def machine(df: pd.DataFrame) -> dict[str, str]:
    """A run's MACHINE fields ("" where it recorded none)."""
    first = df.iloc[0]
    guest = bool(first["vm"])
    return {"kind": "guest" if guest else "host", "kernel": str(first["kernel"]),
            "vmexec_cpu_model": str(first["vmexec_cpu_model"]),
            "host_cpu_model": str(first["vmexec_host_cpu_model"]), "qemu": str(first["vmexec_qemu"]),
            "compiler": str(first["vmexec_compiler"]),
            "accelerator": str(first["accelerator"]), "timing": str(first["timing"])}


def ratio_table(df: pd.DataFrame) -> dict[Ratio, tuple[float, np.ndarray, int]]:
    """{ratio: (its value, bootstrap samples, values of its case with fewer)} for one run: every backend
    against each reference."""
    physical(df)
    out = {}
    points = df[["pages", "parallel"]].drop_duplicates().itertuples(index=False)
    backends = list(dict.fromkeys(df["backend"]))
    for pages, parallel in points:
        for ref in REFERENCES:
            for b in backends:
                if b in REFERENCES[:REFERENCES.index(ref) + 1]:     # itself, or the inverse of a ratio already taken
                    continue
                for p in stats.paired_ratios(df, b, ref, pages=pages, parallel=parallel):
                    out[Ratio(Case(b, p.numerator_pin, pages, parallel), Case(ref, p.denominator_pin))] = \
                        (p.ratio, p.boot, min(p.n_numerator, p.n_denominator))
    return out


def noise(runs: list[pd.DataFrame]) -> dict[str, dict]:
    """{label: {"centre": geometric mean, "sd": standard deviation of the log ratio, "runs": n}} over
    runs of the same code (ratios found in two or more of them)."""
    tables = [ratio_table(r) for r in runs]
    out = {}
    for ratio in dict.fromkeys(ratio for table in tables for ratio in table):
        logs = np.log([table[ratio][0] for table in tables if ratio in table])
        if len(logs) > 1:
            out[ratio.label] = {"centre": float(np.exp(logs.mean())), "sd": float(logs.std(ddof=1)), "runs": len(logs)}
    return out


# --------------------------------------------------------------------------- baselines

@dataclasses.dataclass(frozen=True)
class Baseline:
    path: pathlib.Path
    values: pd.DataFrame            # the reference run (bench.stats.load)
    noise: dict[str, dict]          # label -> centre, sd and runs (noise()); empty: one run
    runs: list[str]                 # the runs it was made from
    rerun: list[str]                # `python -m bench` arguments that repeat its run
    described: str = ""             # how the check names it ("the baseline FILE" if empty)
    doubts: tuple[str, ...] = ()    # why its runs are doubtful (busy host, pyperf's instability): accepted by --force

    @property
    def name(self) -> str:
        return self.described or f"the baseline {self.path.name}"

    def spread(self, ratio: Ratio, current_runs: int = 1) -> float | None:
        """The standard deviation of the log change between the centre and a current ratio taken over
        current_runs runs, sd * sqrt(1/current_runs + 1/n); None where the baseline measured no spread."""
        if ratio.label not in self.noise:
            return None
        n = self.noise[ratio.label]
        return n["sd"] * math.sqrt(1 / current_runs + 1 / n["runs"])

    def threshold(self, ratio: Ratio, fixed: float | None = None, current_runs: int = 1) -> tuple[float, str]:
        """(threshold, where it comes from) for one ratio: `fixed` if given (--threshold), else from its noise."""
        if fixed is not None:
            return fixed, "fixed by --threshold"
        m = ratio_mode(mode(self.values), ratio)
        sigma = self.spread(ratio, current_runs)
        if sigma is not None:
            n = self.noise[ratio.label]
            measured = math.expm1(SIGMAS * sigma)
            spread = f"sd {100 * n['sd']:.2f}% over {n['runs']} runs"
            if measured >= FLOOR[m]:
                return measured, f"{SIGMAS:g} sd: {spread}"
            return FLOOR[m], f"floor; {spread}"
        return UNMEASURED[m], "one-run baseline: spread not measured"

    def centre(self, ratio: Ratio, reference_run: float) -> float:
        """What a new run's ratio is compared with: the centre of the baseline's runs, else its one run's."""
        return self.noise[ratio.label]["centre"] if ratio.label in self.noise else reference_run


def preview(baseline: Baseline) -> dict[str, tuple[float, bool]]:
    """{label: (smallest change caught, whether the spread was measured)} for each ratio of the baseline,
    before any run, by its own threshold's test: its own run's resamples stand for the current run's."""
    tail = 100 * (1 - CONFIDENCE) / 2
    out = {}
    for ratio, (value, boot, _) in ratio_table(baseline.values).items():
        logs = np.log(boot)
        half = math.log(value) - float(np.percentile(logs, tail))
        sigma = baseline.spread(ratio)
        measured = sigma is not None
        if not measured:        # two runs' resamples: this one's and the current run's, alike
            sigma, half = math.sqrt(2) * float(logs.std()), math.sqrt(2) * half
        out[ratio.label] = (detectable(baseline.threshold(ratio)[0], half, sigma), measured)
    return out


def kernel_variant(release: str) -> str:
    """The build variant (bench.measure.kernel.VARIANTS) whose local version ends a guest kernel's release."""
    # The longest suffix first: '-vmexec-mitigations' before '-vmexec'.
    for variant, suffix in sorted(LOCALVERSIONS.items(), key=lambda vs: -len(vs[1])):
        if release.endswith(suffix):
            return variant
    return "bench"


def _rerun_arguments(df: pd.DataFrame) -> list[str]:
    """`python -m bench ...` arguments that repeat a run: its recorded command without --output and --tag."""
    recorded = shlex.split(str(df["vmexec_command"].iloc[0]))
    args = recorded[recorded.index("run") + 1:] if "run" in recorded else []
    kept, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("--output", "--tag"):
            skip = True
        elif not a.startswith(("--output=", "--tag=")):
            kept.append(a)
    first = df.iloc[0]
    if first["vm"]:
        variant = kernel_variant(str(first["kernel"]))
        return ["vm", "run", "--timing", str(first["timing"]), "--accel", str(first["accelerator"]),
                *(["--kernel-variant", variant] if variant != "bench" else []), "--", *kept]
    return ["run", *kept]


def make(paths: list[pathlib.Path]) -> tuple[dict, pd.DataFrame, pathlib.Path]:
    """(the baseline's metadata, its reference run, that run's file) from runs of the same code on one machine; the
    reference run (for its metadata and its command) is the newest, and every ratio's centre and
    spread are measured over all of them."""
    runs = sorted(((stats.load([p]), p) for p in paths), key=lambda rp: rp[0]["started"].iloc[0])
    # One run counted twice (the same file, or a copy: pyperf's start has microseconds) would shrink its noise.
    seen: dict = {}
    for r, p in runs:
        for key in (p.resolve(), r["started"].iloc[0]):
            if key and key in seen:
                raise UsageError(f"{p} and {seen[key]} are the same run: a baseline counts each run once")
            seen[key] = p
    machines = {json.dumps(machine(r), sort_keys=True) for r, _ in runs}
    if len(machines) > 1:
        raise UsageError("a baseline's runs must come from one machine: " + " vs ".join(sorted(machines)))
    reference, newest = runs[-1]
    meta = {"runs": [p.name for p in paths], "noise": noise([r for r, _ in runs]) if len(runs) > 1 else {},
            "rerun": _rerun_arguments(reference), "machine": machine(reference)}
    return meta, reference, newest


def write(paths: list[pathlib.Path], output: pathlib.Path, force: bool = False,
          doubts: list[str] | tuple[str, ...] = ()) -> pathlib.Path:
    """Write (or replace) a baseline: the newest of `paths` with BASELINE_KEY added to its metadata.
    doubts (why its runs are doubtful, accepted by --force) are recorded in it, and every check says them."""
    meta, _, newest = make(paths)
    validate_noise(meta["noise"], output)       # before anything is written: never refused once on disk
    if doubts:
        meta["doubts"] = list(doubts)
    if output.exists():
        old = load(output)
        if machine(old.values) != meta["machine"] and not force:
            raise UsageError(f"{output} was taken on another machine ({differences(machine(old.values), meta['machine'])}); "
                             "--force replaces it")
    else:
        results.check_new(output)
    data = results.read_json(newest)
    data.setdefault("metadata", {})[BASELINE_KEY] = json.dumps(meta, sort_keys=True)
    results.publish(output, lambda staged: staged.write_text(json.dumps(data, sort_keys=True) + "\n"),
                    exists="replace" if output.exists() else "fail")
    return output


def load(path: pathlib.Path) -> Baseline:
    meta = baseline_metadata(path, results.read_json(path))
    validate_noise(meta["noise"], path)
    doubts = meta.get("doubts", [])
    if not (isinstance(doubts, list) and all(isinstance(d, str) for d in doubts)):
        raise UsageError(f"{path}: malformed {BASELINE_KEY} metadata (doubts must be a list of strings)")
    values = stats.load([path])
    physical(values)
    return Baseline(path, values, meta["noise"], meta["runs"], meta["rerun"], doubts=tuple(doubts))


def from_runs(paths: list[pathlib.Path], rerun: list[str], described: str) -> Baseline:
    """A baseline made in memory from runs of this machine made now (bench check --against): its spread
    measured when there are two or more."""
    meta, reference, newest = make(paths)
    return Baseline(newest, reference, meta["noise"], meta["runs"], rerun, described)


def merged(paths: list[pathlib.Path]) -> pd.DataFrame:
    """The runs of one side as one run (bench.stats.load's frame): their workers side by side, so each
    ratio is taken over all of them and the bootstrap resamples workers of every run."""
    df = stats.load(paths)
    workers = df.groupby("run_id", sort=False)["worker"].max().add(1).cumsum().shift(fill_value=0)
    df["worker"] = df["worker"] + df["run_id"].map(workers)
    df["run_id"] = df["run_id"].iloc[-1]
    df["started"] = df["started"].min()
    return df


def from_window(current: pathlib.Path, k: int, where: pathlib.Path | None = None) -> Baseline:
    """A baseline made in memory from the last k runs of the current run's machine in the results directory."""
    mine = machine(stats.load([current]))
    before = results.recorded_start(results.read_json(current))
    found = []
    for path in sorted(results.directory(where).glob("*.json")):
        if path.resolve() == current.resolve():
            continue
        try:
            data = results.read_json(path)
            meta = data.get("metadata", {})
            if results.classify(data) == "rfc" or not isinstance(meta, dict) or BASELINE_KEY in meta:
                continue
            df = stats.load([path])
        except UsageError:
            continue
        if machine(df) == mine and (recorded := results.recorded_start(data)) < before:
            found.append((recorded, path))
    window = [p for _, p in sorted(found)[-k:]]
    if not window:
        raise UsageError(f"no earlier run of this machine in {results.directory(where)} to form a baseline")
    meta, reference, _ = make(window)
    return Baseline(window[-1], reference, meta["noise"], meta["runs"], meta["rerun"])


def refuse_foreign(baseline: Baseline, here: dict[str, str], force: bool = False) -> None:
    """UsageError naming every field in which `here` differs from the baseline's machine, and what to do,
    unless forced (bench.machine.refuse_foreign)."""
    machines.refuse_foreign(baseline.path, machine(baseline.values), here, baseline.rerun, force)


# --------------------------------------------------------------------------- the check

def judge(change: float, low: float, high: float, threshold: float) -> str:
    """regressed / improved only beyond the threshold and with the whole interval on that side of 1."""
    if not all(map(math.isfinite, (change, low, high, threshold))):
        return "missing"        # NaN compares false with everything: a ratio not computed is never "unchanged"
    if change > 1 + threshold:
        return "regressed" if low > 1 else "inconclusive"
    if change < 1 / (1 + threshold):
        return "improved" if high < 1 else "inconclusive"
    return "unchanged"


def check(baseline: Baseline, current: pd.DataFrame, force: bool = False, *, fixed: float | None = None,
          busy: bool = False, current_runs: int = 1) -> pd.DataFrame:
    """One row per ratio found in both runs: baseline, current, change and its interval, threshold, the
    smallest change it could catch (detectable), verdict and a note saying why a ratio was not judged.

    fixed: one threshold for every ratio (--threshold); busy: the host was busy while measuring, so a
    timed ratio's move is not judged; current_runs: runs merged into `current` (check --against)."""
    refuse_foreign(baseline, machine(current), force)
    base, cur = ratio_table(baseline.values), ratio_table(current)
    common = [ratio for ratio in cur if ratio in base]
    if not common:
        raise UsageError(f"the current run and {baseline.name} have no ratio in common")
    missing = [ratio for ratio in base if ratio not in cur]
    run_mode = mode(baseline.values)
    tail = 100 * (1 - CONFIDENCE) / 2
    shuffle = np.random.default_rng(stats.SEED + 1)     # independent pairing of the two runs' resamples
    rows = []
    for ratio in common:
        reference_run, boot_before, n_before = base[ratio]
        before = baseline.centre(ratio, reference_run)
        after, boot_after, n_after = cur[ratio]
        # Against a centre of several runs, the current run's own resamples; against one run, both runs'.
        centred = ratio.label in baseline.noise
        changes = boot_after / (before if centred else shuffle.permutation(boot_before))
        low, high = (float(x) for x in np.percentile(changes, [tail, 100 - tail]))
        threshold, source = baseline.threshold(ratio, fixed, current_runs)
        change = after / before
        sigma = baseline.spread(ratio, current_runs)
        # Unmeasured spread: the resamples' own spread, a lower bound (it leaves out run-to-run drift).
        half, noise_sd = math.log(change / low), float(np.log(changes).std()) if sigma is None else sigma
        power = detectable(threshold, half, noise_sd)
        # What the noise lets any check tell from drift: its own threshold's test (the same as power's
        # unless --threshold fixed another).  A change asked for below it is within the noise.
        resolvable = power if fixed is None else detectable(baseline.threshold(ratio, None, current_runs)[0], half, noise_sd)
        verdict, note = judge(change, low, high, threshold), ""
        timed = ratio_mode(run_mode, ratio) == "timed"
        fewest = n_after if centred else min(n_after, n_before)     # a centre of runs stands without its values
        if fewest < 2:
            verdict, note = "inconclusive", "one value per case: no interval, not judged"
        elif timed and high == low:
            verdict, note = "inconclusive", "zero-width interval on a wall clock: not a measurement, not judged"
        elif busy and timed and verdict in ("regressed", "improved"):
            verdict, note = "inconclusive", f"{verdict} beyond the threshold, but the host was busy"
        rows.append({"ratio": ratio.label, "backend": ratio.case.backend, "reference": ratio.reference.backend,
                     "baseline": before, "current": after,
                     "change": change, "low": low, "high": high, "threshold": threshold,
                     "threshold_source": source, "detectable": power, "resolvable": resolvable, "spread_measured": sigma is not None,
                     "verdict": verdict, "note": note})
    for ratio in missing:       # every measured column NaN: not judged
        rows.append({"ratio": ratio.label, "backend": ratio.case.backend, "reference": ratio.reference.backend,
                     "baseline": base[ratio][0], "threshold_source": "", "spread_measured": False,
                     "verdict": "missing", "note": ""})
    return pd.DataFrame(rows, columns=list(rows[0]))


def _backends(table: pd.DataFrame, verdict: str) -> list[str]:
    bad = table[table["verdict"] == verdict]
    return list(dict.fromkeys(bad.sort_values("reference", key=lambda s: s != stats.NATIVE, kind="stable")["backend"]))


def regressed_backends(table: pd.DataFrame) -> list[str]:
    """The backends named by regressed ratios: against native first, then against ptrace-sysemu."""
    return _backends(table, "regressed")


def missing_backends(table: pd.DataFrame) -> list[str]:
    """The backends of ratios the baseline has and the current run did not measure (no slowdown: a
    backend that failed or was not run), in the same order."""
    return _backends(table, "missing")


#: `bench check`'s exit statuses.  A regression outranks a missing ratio; 2 is bad input (bench.errors).
EXIT = {"regressed": 1, "missing": 3}


def exit_status(table: pd.DataFrame) -> int:
    """0 when nothing regressed and nothing is missing; else EXIT's status of the worst finding."""
    return (EXIT["regressed"] if regressed_backends(table) else
            EXIT["missing"] if missing_backends(table) else 0)


# --------------------------------------------------------------------------- history

def machine_label(m: dict[str, str]) -> str:
    """A machine (machine()) in a few words: what history keeps apart, one series each."""
    if m["kind"] == "guest":
        return " · ".join(x for x in (f"guest {m['accelerator']}/{m['timing']}", f"kernel {m['kernel']}",
                                      f"on {m['host_cpu_model'] or '?'}", m["qemu"], m["compiler"]) if x)
    return " · ".join(x for x in ("host", m["vmexec_cpu_model"] or "?", f"kernel {m['kernel']}", m["compiler"]) if x)


def history(paths: list[pathlib.Path]) -> pd.DataFrame:
    """Each backend's speed-up over ptrace-sysemu (ptrace-sysemu ÷ backend, as in the report) in every run,
    with its date, commit and kernel."""
    df = stats.load(paths)
    frames = []
    for b in df["backend"].unique():
        if b == stats.SYSEMU:
            continue
        r = stats.ratios(df, b)
        if not r.empty:
            frames.append(r)
    if not frames:
        raise UsageError("no run among these has a backend measured beside ptrace-sysemu")
    r = pd.concat(frames, ignore_index=True)
    commits = df.drop_duplicates("run_id").set_index("run_id")["vmexec_commit"]
    r["commit"] = r["run_id"].map(commits)
    # The report's direction: speed-up = ptrace-sysemu's cost ÷ the backend's (higher is faster).
    r["case"] = [f"{Case(n, n_pin).encode()} vs {Case(stats.SYSEMU, d_pin).encode()}"
                 for n, n_pin, d_pin in zip(r["numerator"], r["numerator_pin"], r["denominator_pin"])]
    # One series per machine and kernel: a ratio moves with the CPU, the kernel, the emulator and the
    # compiler, so runs of two of them are never joined into one line.
    r["machine"] = r["run_id"].map({run: machine_label(machine(g)) for run, g in df.groupby("run_id", sort=False)})
    return r.sort_values(["machine", "case", "started"])[
        ["machine", "case", "run_id", "started", "commit", "kernel", "speedup", "speedup_low", "speedup_high"]]
