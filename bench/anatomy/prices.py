"""A hardware estimate from measured parts (issue 18, item 3): `bench prices`.

The fitted cost model (bench.anatomy.CostModel) learns its prices from the mechanisms themselves, and
in every one of them a CR3 write comes with a scheduler round trip, so process_vm_exec (two CR3
writes, no scheduler) is an extrapolation.  Here each price is measured on the host by a
micro-benchmark of its own (`vmexec price PART`, tracers/prices.c), whose path length (instructions
with each REP string instruction counted once, kernel entries, CR3 writes) the anatomy plugin counts
in the icount guest, exactly as it counts the mechanisms':

    part        host ns per iteration  =  ns/insn × N  +  entry × E  +  round trip × R  +  mm × C

    entry       a syscall refused at once (ENOSYS): one kernel entry and exit
    signal      tgkill + empty handler + rt_sigreturn: kernel code without the scheduler
    threads     futex ping-pong, two threads, one CPU: one scheduler round trip (R = 1), one mm
    processes   the same between two processes: R = 1 and the CR3 writes of two mms

Four parts, four unknowns: the system is solved exactly, each price being what its part costs
beyond the instructions the others price.  `mm` (ns per CR3 write) is the address-space switch
premium: (processes - threads) beyond their instructions and entries, per CR3 write.  With PAGES
(the pages sweep's sizes) the passive side writes that many pages per iteration, and the premium at
each size is reported too.

Every C mechanism's host ns/syscall is then composed from its own anatomy (instructions, entries,
CR3 writes, and its scheduler round trips: the instructions it spends in __switch_to_asm, a
fixed-length path, over the threads part's per round trip) with the same prices, process_vm_exec
included, and compared with what the host measured.  COMPOSED_MAX_ERROR (bench.stats) decides
whether the verdict may judge the composed interval.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.errors import BenchError, UsageError

#: The parts, in the order of the linear system's rows: (label, round trips per iteration by construction).
PARTS = (("entry", 0), ("signal", 0), ("threads", 1), ("processes", 1))
PRICES = {
    "insn": "ns per instruction (REP string counted once) of kernel and user code outside the scheduler",
    "entry": "ns per kernel entry and exit beyond its instructions",
    "round_trip": "ns per scheduler round trip (two context switches on one CPU) beyond its instructions",
    "cr3_write": "ns per CR3 write beyond its instructions: the address-space switch premium "
                 "(two processes against two threads, per CR3 write)",
}
#: The pages sweep's sizes (bench run --scaling): the premium is also measured at each.
SWEEP_PAGES = (1, 16, 256, 4096)
#: Iterations per guest run (icount repeats itself: one run suffices) and per host run (about 20-80 ms).
GUEST_ITERATIONS = {"entry": 20000, "signal": 5000, "threads": 5000, "processes": 5000}
HOST_ITERATIONS = {"entry": 400000, "signal": 20000, "threads": 10000, "processes": 10000}
#: Fewer iterations at many pages, so a run stays short.
PAGES_ITERATIONS = {1: 5000, 16: 2000, 256: 400, 4096: 40}
#: The function every context switch runs once, along a fixed path (the round trips' counter).
SWITCH_FUNCTION = "__switch_to_asm"
DEFAULT_RUNS = 20
BOOTSTRAP = 2000
SEED = 20210413
#: Where a run's measured prices and composition are kept (relative to the results directory).
DIRECTORY = "prices"


def label(part: str, pages: int = 0) -> str:
    return part if not pages else f"{part}-k{pages}"


def commands(vmexec: str, guest: bool, cpu: int = 0, pages=SWEEP_PAGES) -> list[tuple[str, list[str]]]:
    """(label, argv) of every micro-benchmark run: the four parts, then threads and processes at
    each of the pages sweep's sizes."""
    n = GUEST_ITERATIONS if guest else HOST_ITERATIONS
    out = [(p, [vmexec, "price", p, "-n", str(n[p]), "-c", str(cpu)]) for p, _ in PARTS]
    for k in pages:
        for p in ("threads", "processes"):
            iters = PAGES_ITERATIONS[k] if guest else max(4 * PAGES_ITERATIONS[k], 40)
            out.append((label(p, k), [vmexec, "price", p, "-n", str(iters), "-k", str(k), "-c", str(cpu)]))
    return out


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
    import pandas as pd

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

    def prediction(self):
        """What the verdict uses (bench.stats.ComposedPrediction)."""
        from bench import verdict
        return verdict.ComposedPrediction(self.speedup, *self.speedup_range, self.candidate_ns, self.baseline_ns,
                                           dict(self.errors), self.inputs)


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
    from bench import stats

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


# -------------------------------------------------------------------------------- host timings

def run_part(argv: list[str]) -> dict:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        report = {"ok": False, "error": (proc.stderr or proc.stdout).strip()[:300]}
    if proc.returncode != 0 or not report.get("ok"):
        raise BenchError(f"`{' '.join(argv)}` failed (status {proc.returncode}): {report.get('error')}")
    return report


def _load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def measure_host(runs: int = DEFAULT_RUNS, cpu: int = 0, log=print) -> dict:
    """Every part `runs` times on the host, interleaved (one round: every part once), pinned to cpu.
    Returns the record written to prices/: ns per iteration of every run, switches, the load."""
    from tracers.driver import VMEXEC

    if runs < 5:
        raise UsageError("--runs must be at least 5 (a bootstrap of the median needs a few values)")
    if cpu not in os.sched_getaffinity(0):
        raise UsageError(f"--cpu {cpu}: not a CPU this process may run on ({sorted(os.sched_getaffinity(0))})")
    cmds = commands(str(VMEXEC), guest=False, cpu=cpu)
    values = {lab: [] for lab, _ in cmds}
    switches = {lab: [] for lab, _ in cmds}
    load_before = _load_line()
    started = datetime.datetime.now(datetime.timezone.utc)
    for r in range(runs):
        for lab, argv in cmds:
            rep = run_part(argv)
            values[lab].append(rep["elapsed_ns"] / rep["calls"])
            switches[lab].append(rep["switches"])
        log(f"prices: round {r + 1}/{runs} done (load {_load_line()})")
    return {"host": socket.gethostname(), "kernel": platform.release(), "cpu_model": _cpu_model(), "cpu": cpu,
            "started": started.isoformat(timespec="seconds"), "seconds": round(time.time() - started.timestamp(), 1),
            "load_before": load_before, "load_after": _load_line(), "runs": runs,
            "commands": {lab: " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv)) for lab, argv in cmds},
            "ns_per_iteration": values, "switches_per_iteration": switches}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def check_switches(record: dict) -> None:
    """Each round trip part must have switched about once per iteration on its timed thread, the others
    not at all: otherwise it did not measure what its label says."""
    for lab, sw in record["switches_per_iteration"].items():
        want = 0 if lab in ("entry", "signal") else 1
        got = float(np.median(sw))
        if abs(got - want) > 0.05:
            raise BenchError(f"the {lab} part switched {got:.3f} times per iteration on the host, not {want}")


# --------------------------------------------------------------------------------------- output

def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 1 else f"{x:.3f}" if x else "0"


def blocks(c: Composition) -> list:
    from bench import stats, verdict

    rows = [[k, _fmt(c.prices[k]), f"{_fmt(c.prices_ci[k][0])}–{_fmt(c.prices_ci[k][1])}", v]
            for k, v in PRICES.items()]
    prem = [[str(k) if k else "0 (the loop's working set)", _fmt(v), f"{_fmt(lo)}–{_fmt(hi)}"]
            for k, (v, lo, hi) in sorted(c.premium.items())]
    mech = [[f"`{m}`", f"{c.trips[m]:.2f}", _fmt(c.measured[m]), _fmt(c.composed[m]),
             f"{_fmt(c.composed_ci[m][0])}–{_fmt(c.composed_ci[m][1])}", f"{100 * c.errors[m]:+.1f}%"]
            for m in sorted(c.measured)]
    worst = max(c.errors, key=lambda m: abs(c.errors[m]))
    judged = abs(c.errors[worst]) <= verdict.COMPOSED_MAX_ERROR
    return [("p", "Prices measured on this host by micro-benchmarks of their own (`vmexec price`), each part's "
                  "path length counted by the anatomy plugin in the icount guest; 95% CIs: the parts' host runs "
                  "resampled (timing noise only)." + (f" Inputs: {c.inputs}." if c.inputs else "")
                  + (f" Load (1, 5, 15 min): {c.load}." if c.load else "")),
            ("table", ["price", "ns", "95% CI", "meaning"], rows),
            ("p", "The address-space switch premium (ns per CR3 write) at the loop's working set and at the "
                  "pages sweep's sizes (pages the passive side writes per round trip):"),
            ("table", ["pages", "ns per CR3 write", "95% CI"], prem),
            ("p", "Every C mechanism composed from its own anatomy (instructions, kernel entries, CR3 writes, "
                  f"scheduler round trips counted by its instructions in `{SWITCH_FUNCTION}`) with the same prices:"),
            ("table", ["mechanism", "round trips", "host ns/syscall (measured)", "composed", "composed 95% CI",
                       "error"], mech),
            ("p", f"process_vm_exec, composed for this host: {_fmt(c.candidate_ns)} ns/syscall "
                  f"({_fmt(c.candidate_range[0])}–{_fmt(c.candidate_range[1])}: its 95% CI widened by the worst "
                  f"relative errors), {c.trips[stats.CANDIDATE]:.2f} round trips; a speed-up over "
                  f"PTRACE_SYSEMU ({_fmt(c.baseline_ns)} ns measured, 95% CI {_fmt(c.baseline_ci[0])}–"
                  f"{_fmt(c.baseline_ci[1])}) of {c.speedup:.2f}x ({c.speedup_range[0]:.2f}–"
                  f"{c.speedup_range[1]:.2f}). "
                  + (f"Every mechanism measured is composed within ±{100 * verdict.COMPOSED_MAX_ERROR:g}% (worst: "
                     f"{worst} {100 * c.errors[worst]:+.1f}%), so the verdict judges this interval."
                     if judged else
                     f"Not judged: {worst}'s error ({100 * c.errors[worst]:+.1f}%) exceeds "
                     f"±{100 * verdict.COMPOSED_MAX_ERROR:g}%, so the verdict judges the distortion bracket."))]


def to_markdown(c: Composition) -> str:
    from bench.render import report
    return "# A hardware estimate from measured parts\n\n" + report.to_markdown(blocks(c))


# ------------------------------------------------------------------------------------------ CLI

def parts_directory(variant: str) -> Path:
    """Where the parts' guest anatomy lives: parts/ in that kernel variant's anatomy directory."""
    from bench import anatomy
    return anatomy.default_directory(variant) / "parts"


def _cmd_parts_anatomy(args) -> int:
    """Count the parts' path lengths in the icount guest, with the plugin (same kernel as the anatomy)."""
    from bench import anatomy
    from bench.errors import writable_directory
    from tracers.driver import VMEXEC

    out = args.output or parts_directory(args.kernel_variant)
    writable_directory(out, create=True)
    raw = out / "raw"
    if args.from_raw is None:
        anatomy.run_guest([], anatomy.DEFAULT_SYSCALLS, raw, log=lambda m: print(m, file=sys.stderr),
                          variant=args.kernel_variant,
                          commands=commands(str(VMEXEC), guest=True, cpu=anatomy.PIN_CPU))
    elif not args.from_raw.is_dir():
        raise UsageError(f"--from-raw: {args.from_raw} is not a directory")
    else:
        raw = args.from_raw
    results = anatomy.analyse(raw)
    failed = anatomy.failed_runs(raw)
    if failed:
        raise BenchError("parts failed in the guest: " + json.dumps(failed))
    meta = json.loads((raw / "guest.json").read_text())
    meta.pop("qemu_cmdline", None)
    meta["vulnerabilities"] = anatomy.guest_vulnerabilities(raw)
    anatomy.write_outputs(results, out, failed, meta)
    for a in results:
        t = a.totals()
        print(f"{a.backend}: {a.insns_rep_once_per_syscall:,.1f} insns/iteration (REP once), "
              f"{t['syscall'] + t['exc_irq']:.2f} entries, {t['cr3_write']:.2f} CR3 writes "
              f"(icount clock {100 * a.disagreement:+.3f}% off the plugin)")
    print(f"parts anatomy: {out}")
    return 0


def newest_record(directories) -> Path | None:
    found = [p for d in directories if Path(d).is_dir() for p in Path(d).glob("prices-*.json")]
    return max(found, key=lambda p: json.loads(p.read_text()).get("started", "")) if found else None


def _host_run(paths: list[Path]) -> tuple[dict[str, float], tuple[float, float], dict]:
    """Measured host ns/syscall per backend (same CPU, in-process as they run), PTRACE_SYSEMU's 95% CI,
    and the host run's metadata (kernel, CPU model)."""
    from bench import stats
    from bench import anatomy
    from bench import results

    host = [p for p in paths if results.classify(results.read_json(p)) == "host"]
    if not host:
        raise UsageError("no host run among the given results (a `bench run --pin same` on this machine)")
    measured = anatomy.host_ns_per_syscall(host)
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
    from bench import anatomy
    from bench import results

    mech_dir = anatomy.variant_directory(Path(anatomy_directory), anatomy.MODEL_VARIANT)
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
        record = json.loads(record_path.read_text())
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


def _cmd_prices(args) -> int:
    from bench import anatomy
    from bench import results
    from bench.errors import writable_directory

    anatomy_directory = args.anatomy or anatomy.default_directory()
    host = args.host or [p for p in results.newest() if results.classify(results.read_json(p)) == "host"]
    for p in host:
        if not Path(p).is_file():
            raise UsageError(f"no such results file: {p}")
    if args.prices:
        if not args.prices.is_file():
            raise UsageError(f"no such prices file: {args.prices}")
        record_path = args.prices
    else:
        out = args.output_dir or results.directory() / DIRECTORY
        writable_directory(out, create=True)
        record = measure_host(args.runs, args.cpu, log=lambda m: print(m, file=sys.stderr))
        check_switches(record)
        stamp = record["started"].replace("-", "").replace(":", "").replace("+0000", "")[:15]
        record_path = out / f"prices-{record['host']}-{stamp}.json"
        tmp = record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(record_path)
        print(f"prices: measured in {record['seconds']:.0f} s, load {record['load_before']} before and "
              f"{record['load_after']} after: {record_path}", file=sys.stderr)
    if not host:
        print(f"prices: no host run to compose against (run `python -m bench run --fast --pin same` and give "
              f"--host): prices only in {record_path}", file=sys.stderr)
        return 0
    c, why = composed_model([Path(p) for p in host], anatomy_directory, [record_path])
    if c is None and not args.prices:
        # The measurement stands (the report composes from it when it can): say why not here, once.
        print(f"prices: measured, not composed: {why}", file=sys.stderr)
        return 0
    if c is None:
        raise UsageError(why)
    text = to_markdown(c)
    if args.markdown:
        args.markdown.write_text(text)
    print(text, end="")
    return 0


def register_cli(subparsers) -> None:
    from bench.measure import kernel

    p = subparsers.add_parser("prices", help="measure the mechanisms' parts on this host and compose every "
                                             "mechanism (process_vm_exec included) from them")
    p.add_argument("--host", type=Path, action="append",
                   help="host results file(s) of `bench run --pin same` (default: the newest host run)")
    p.add_argument("--anatomy", type=Path, help="the benchmark kernel's anatomy directory (default: anatomy/ in "
                                                "the results directory); its mitigations/ and mitigations/parts/ "
                                                "are used")
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                   help=f"host runs of every part (default {DEFAULT_RUNS}, interleaved)")
    p.add_argument("--cpu", type=int, default=0, help="the CPU every part is pinned to (default 0)")
    p.add_argument("--prices", type=Path, metavar="FILE", help="compose from an earlier prices-*.json instead of "
                                                               "measuring")
    p.add_argument("--output-dir", type=Path, help=f"where the prices record goes (default: {DIRECTORY}/ in the "
                                                   "results directory)")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="also write the composition's Markdown here")
    p.set_defaults(func=_cmd_prices)
    a = subparsers.add_parser("prices-anatomy", help="count the parts' path lengths in the icount guest (plugin)")
    a.add_argument("--kernel-variant", default="mitigations", choices=sorted(kernel.VARIANTS),
                   help="the kernel the guest boots (default mitigations, as the cost model's anatomy)")
    a.add_argument("--output", type=Path, help="output directory (default: anatomy/VARIANT/parts/ in the results "
                                               "directory)")
    a.add_argument("--from-raw", type=Path, metavar="DIR", help="analyse an earlier run's raw/ directory instead "
                                                                "of booting the guest")
    a.set_defaults(func=_cmd_parts_anatomy)
