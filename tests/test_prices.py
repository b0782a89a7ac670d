"""`vmexec price` and bench.anatomy.composed (rendered by bench.render.prices): the parts' micro-benchmarks,
the composition from measured prices and its rule, on synthetic anatomies and synthetic prices with known
answers (no timing in pass/fail)."""
import json

import numpy as np
import pytest

from bench import stats, verdict
from bench.anatomy import composed as P
from bench.render import prices as render_prices
from bench.errors import BenchError, UsageError
from conftest import run_bench, run_vmexec

TRUE = {"insn": 0.2, "entry": 40.0, "round_trip": 900.0, "cr3_write": 150.0}
#: Parts: (insns, entries, CR3 writes, instructions in __switch_to_asm per iteration); threads: one
#: round trip = two switches of 99 instructions.
PARTS = {"entry": P.Path_(300, 1, 0, 0), "signal": P.Path_(3000, 2, 0, 0), "threads": P.Path_(2500, 4, 0, 198),
         "processes": P.Path_(2700, 4, 2, 198),
         "threads-k16": P.Path_(2580, 4, 0, 198), "processes-k16": P.Path_(2780, 4, 2, 198)}
MECHANISMS = {"native": P.Path_(233, 1, 0, 0), "ptrace-sysemu": P.Path_(12800, 5, 2, 198),
              "ptrace-syscall": P.Path_(25100, 9, 4, 396), "seccomp-trap": P.Path_(5000, 2, 0, 0.1),
              "seccomp-unotify": P.Path_(6800, 3, 2, 198), "seccomp-trace": P.Path_(13100, 5, 2, 198),
              "process-vm-exec": P.Path_(1800, 2, 2, 0.07)}


def truth(path: P.Path_, trips: float) -> float:
    return float(np.dot(path.row(trips), list(TRUE.values())))


def host_values(premium_k16=150.0, noise=0.0, runs=9):
    """ns per iteration of every run of every part: the exact composition, with relative noise."""
    rng = np.random.default_rng(1)
    exact = {k: truth(p, 1 if k.startswith(("threads", "processes")) else 0) for k, p in PARTS.items()}
    exact["processes-k16"] += 2 * (premium_k16 - TRUE["cr3_write"])
    return {k: list(v * (1 + noise * rng.standard_normal(runs))) for k, v in exact.items()}


def measured(errors=None):
    errors = errors or {}
    return {m: truth(p, p.switch_insns / 198) / (1 + errors.get(m, 0.0))      # composed / measured - 1 = error
            for m, p in MECHANISMS.items() if m != "process-vm-exec"}


def test_the_four_parts_determine_the_four_prices_exactly():
    med = {k: float(np.median(v)) for k, v in host_values().items()}
    assert P.solve(PARTS, med) == pytest.approx(TRUE, rel=1e-9)


def test_round_trips_are_counted_by_the_switch_functions_instructions():
    ref = PARTS["threads"]
    assert P.round_trips(MECHANISMS["ptrace-syscall"], ref) == pytest.approx(2.0)
    assert P.round_trips(MECHANISMS["ptrace-sysemu"], ref) == pytest.approx(1.0)
    assert P.round_trips(MECHANISMS["process-vm-exec"], ref) < 0.001
    with pytest.raises(BenchError, match="__switch_to_asm"):
        P.round_trips(ref, P.Path_(1, 1, 0, 0))


def test_every_mechanism_is_composed_from_its_path_and_the_same_prices():
    c = P.composition(PARTS, host_values(), MECHANISMS, measured(), (9000.0, 11000.0), bootstrap=50)
    for m, p in MECHANISMS.items():
        assert c.composed[m] == pytest.approx(truth(p, p.switch_insns / 198), rel=1e-9)
    assert all(abs(e) < 1e-9 for e in c.errors.values())
    assert "process-vm-exec" not in c.errors           # it is what is estimated, not a calibration point
    # process_vm_exec: two CR3 writes priced at the premium, no round trip.
    pvm = 0.2 * 1800 + 40 * 2 + 150 * 2 + 900 * 0.07 / 198
    assert c.candidate_ns == pytest.approx(pvm)
    assert c.speedup == pytest.approx(measured()["ptrace-sysemu"] / pvm)
    # No noise, no error: the interval is PTRACE_SYSEMU's CI alone.
    assert c.speedup_range == pytest.approx((9000 / pvm, 11000 / pvm))
    # The premium at the loop's working set is the price; at 16 pages, what the parts measured there.
    assert c.premium[0][0] == pytest.approx(150.0) and 16 in c.premium


def test_the_premium_at_a_sweep_size_is_processes_minus_threads_per_cr3_write():
    c = P.composition(PARTS, host_values(premium_k16=400.0), MECHANISMS, measured(), bootstrap=20)
    assert c.premium[16][0] == pytest.approx(400.0)
    assert c.prices["cr3_write"] == pytest.approx(150.0)       # the composition uses the loop's own


def test_the_intervals_cover_the_parts_noise_and_the_worst_error():
    errors = {"native": 0.12, "seccomp-trap": -0.08}
    c = P.composition(PARTS, host_values(noise=0.02), MECHANISMS, measured(errors), bootstrap=400)
    for k in P.PRICES:
        lo, hi = c.prices_ci[k]
        assert lo <= c.prices[k] <= hi and hi > lo
    lo, hi = c.composed_ci["process-vm-exec"]
    assert lo < c.candidate_ns < hi
    # widened by the largest and the smallest error (about +12% and -8%, moved by the parts' noise)
    e = c.errors.values()
    assert c.candidate_range == pytest.approx((lo / (1 + max(e)), hi / (1 + min(e))))
    assert c.errors["native"] == pytest.approx(0.12, abs=0.03)
    assert c.errors["seccomp-trap"] == pytest.approx(-0.08, abs=0.03)


@pytest.mark.parametrize("errors, judged", [
    ({"native": 0.19, "ptrace-syscall": -0.19}, True),
    ({"native": verdict.COMPOSED_MAX_ERROR - 1e-6, "seccomp-trap": -verdict.COMPOSED_MAX_ERROR + 1e-6}, True),
    ({"native": verdict.COMPOSED_MAX_ERROR + 1e-3}, False),
    ({"native": 0.05, "seccomp-unotify": -0.21}, False),      # any one mechanism breaks it
    ({"ptrace-sysemu": 0.30}, False),
])
def test_the_rule_judges_the_composition_only_if_every_mechanism_is_within_20_percent(errors, judged):
    c = P.composition(PARTS, host_values(), MECHANISMS, measured(errors), bootstrap=20)
    p = verdict.ComposedPrediction.of(c)
    assert (p.why_not_judged() is None) is judged
    if not judged:
        worst = max(errors, key=lambda k: abs(errors[k]))
        assert worst in p.why_not_judged()
    text = render_prices.to_markdown(c)
    assert ("so the verdict judges this interval" in text) is judged
    assert all(f"`{m}`" in text for m in c.measured)


#: Host and guest: the icount ratio 5x, distortions 0.8 and 1.25 (bracket 4.00–6.25x), as in test_analysis.
HOST = {"ptrace-sysemu:pin=same": 10_000.0, "seccomp-trap:pin=in-process": 2_000.0,
        "ptrace-syscall:pin=same": 20_000.0, "seccomp-trace:pin=same": 12_000.0}
GUEST = {"ptrace-sysemu:pin=same": 10_000.0, "process-vm-exec:pin=same": 2_000.0,
         "seccomp-trap:pin=in-process": 2_500.0, "ptrace-syscall:pin=same": 16_000.0,
         "seccomp-trace:pin=same": 12_000.0}


def _composed(speedup, errors):
    return verdict.ComposedPrediction(speedup, speedup / 1.25, speedup * 1.25, 10_000 / speedup, 10_000.0, errors)


def test_a_composition_within_the_rule_is_judged_before_the_model_and_the_bracket(tmp_path):
    from data.synthetic import write_suite

    host = write_suite(tmp_path / "host.json", HOST, sigma=1e-5)
    guest = write_suite(tmp_path / "guest.json", GUEST, vm=True, sigma=1e-5)
    model = verdict.ModelPrediction(3.0, 2.0, 4.0, 3333.0, 10_000.0, {"native": 0.01}, True, "m")
    h = verdict.headline(stats.load([host, guest]), model=model, composed=_composed(8.0, {"native": -0.1, "seccomp-trap": 0.2}))
    a = h.assessment
    assert a.composed_judged and not a.model_judged and a.interval == "composed interval"
    assert (a.low, a.high) == (pytest.approx(6.4), pytest.approx(10.0))
    assert "claim is reproduced" in h.sentence and "composed from prices measured on the host" in h.sentence
    assert "4.00–6.25x" in h.sentence           # the bracket beside it
    composed = [f for f in h.figures if f.startswith("composed")]
    assert len(composed) == 1 and "(judged" in composed[0] and "native -10.0%" in composed[0]
    assert any(f.startswith("cost model's prediction") for f in h.figures)
    assert any(f.startswith("distortion bracket: 4.00–6.25x") for f in h.figures)


def test_a_composition_outside_the_rule_is_shown_and_the_bracket_is_judged(tmp_path):
    from data.synthetic import write_suite

    host = write_suite(tmp_path / "host.json", HOST, sigma=1e-5)
    guest = write_suite(tmp_path / "guest.json", GUEST, vm=True, sigma=1e-5)
    h = verdict.headline(stats.load([host, guest]), composed=_composed(8.0, {"native": -0.35, "seccomp-trap": 0.02}))
    a = h.assessment
    assert not a.composed_judged and a.interval == "hardware-equivalent range"
    assert (a.low, a.high) == (pytest.approx(4.0, rel=1e-3), pytest.approx(6.25, rel=1e-3))
    assert "neither confirmed nor refuted" in h.sentence
    assert "not judged because native is composed -35.0% off" in h.sentence
    assert any(f.startswith("composed") and "(not judged" in f for f in h.figures)


def _write_anatomy(directory, paths):
    """An anatomy directory as bench anatomy writes it: anatomy.json and functions-*.csv."""
    directory.mkdir(parents=True, exist_ok=True)
    backends = []
    for name, p in paths.items():
        backends.append({"backend": name, "insns_per_syscall": p.insns + 10,
                         "totals": {"rep_extra": 10.0, "cr3_write": p.cr3_writes, "syscall": p.entries,
                                    "exc_irq": 0.0}})
        (directory / f"functions-{name}.csv").write_text(
            "function,phase,insns_per_syscall\n"
            f"{P.SWITCH_FUNCTION},scheduler & context switch,{p.switch_insns}\nother,other kernel,1\n")
    (directory / "anatomy.json").write_text(json.dumps({"meta": {}, "backends": backends}))


def test_paths_are_read_from_an_anatomy_directory(tmp_path):
    _write_anatomy(tmp_path / "a", MECHANISMS)
    got = P.paths_from_anatomy(tmp_path / "a")
    assert got == {k: pytest.approx(v) for k, v in MECHANISMS.items()} or all(
        got[k] == v for k, v in MECHANISMS.items())
    with pytest.raises(UsageError, match="no "):
        P.paths_from_anatomy(tmp_path / "nowhere")


def test_the_report_takes_the_composition_from_a_prices_record_of_the_same_kernel(tmp_path, monkeypatch):
    from data.synthetic import write_suite

    monkeypatch.setenv("VMEXEC_RESULTS_DIR", str(tmp_path))
    mech_dir = tmp_path / "anatomy" / "mitigations"
    _write_anatomy(mech_dir, MECHANISMS)
    _write_anatomy(mech_dir / "parts", PARTS)
    (tmp_path / "anatomy" / "anatomy.json").write_text(json.dumps({"meta": {}, "backends": []}))
    host_ns = {f"{m}:pin={'in-process' if m in ('native', 'seccomp-trap') else 'same'}": v
               for m, v in measured().items()}
    host = write_suite(tmp_path / "host.json", host_ns, sigma=1e-5)
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert c is None and "no measured prices" in why
    kernel, cpu = stats.load([host])[["kernel", "vmexec_cpu_model"]].iloc[0]
    record = {"kernel": kernel, "cpu_model": cpu, "started": "2026-12-04T18:15:00+00:00", "load_before": "0.1 0.1 0.1",
              "load_after": "0.1 0.1 0.1", "ns_per_iteration": host_values()}
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "prices-x-1.json").write_text(json.dumps({**record, "kernel": "another"}))
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert c is None and "measured on kernel another" in why and "not the same machine" in why
    (tmp_path / "prices" / "prices-x-1.json").write_text(json.dumps({**record, "cpu_model": "Other CPU"}))
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert c is None and "measured on CPU Other CPU" in why
    (tmp_path / "prices" / "prices-x-2.json").write_text(json.dumps({**record, "started": "2026-12-04T18:16"}))
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert why == "" and all(abs(e) < 1e-3 for e in c.errors.values())
    assert c.candidate_ns == pytest.approx(truth(MECHANISMS["process-vm-exec"], 0.07 / 198), rel=1e-6)


# ----------------------------------------------------------------------------- vmexec price (C)

@pytest.mark.parametrize("part, switches", [("entry", 0), ("signal", 0), ("threads", 1), ("processes", 1)])
def test_each_part_runs_checks_itself_and_switches_as_its_label_says(part, switches):
    proc, report = run_vmexec("price", part, "-n", "300", "-c", "0")
    assert proc.returncode == 0, proc.stderr
    assert report["ok"] and report["matched"] == report["calls"] == 300 and report["price"] == part
    assert report["elapsed_ns"] > 0
    # one context switch of the timed thread per round trip; none without the scheduler (a timer
    # preemption on a shared machine may add a few: a tolerance of 5%)
    assert report["switches"] == pytest.approx(switches, abs=0.05)


def test_a_round_trip_part_writes_its_pages():
    proc, report = run_vmexec("price", "processes", "-n", "50", "-k", "16")
    assert proc.returncode == 0 and report["pages"] == 16 and report["ok"]


@pytest.mark.parametrize("args, words", [
    (("price",), "exactly one PART"), (("price", "bogus", "-n", "5"), "exactly one PART"),
    (("price", "entry", "-n", "0"), "-n must be"), (("price", "signal", "-n", "5", "-k", "2"), "-k applies"),
    (("price", "entry", "-n", "5", "-c", "4096"), "cannot pin"),
])
def test_bad_price_usage_is_one_line_and_status_2(args, words):
    proc, _ = run_vmexec(*args)
    assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bad_prices_input_is_one_line_and_status_2(tmp_path):
    for args in (("prices", "--prices", str(tmp_path / "none.json")), ("prices", "--runs", "2", "--host",
                                                                     str(tmp_path / "none.json")),
                 ("prices", "--runs", "2", "--output-dir", str(tmp_path)),
                 ("prices", "--cpu", "4096", "--output-dir", str(tmp_path))):
        proc = run_bench(*args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_report_judges_a_composition_that_fits_and_shows_it_beside_the_others(tmp_path, monkeypatch):
    from bench.render import report
    from data.synthetic import write_suite

    d = tmp_path / "results"
    monkeypatch.setenv("VMEXEC_RESULTS_DIR", str(d))
    mech_dir = d / "anatomy" / "mitigations"
    _write_anatomy(mech_dir, MECHANISMS)
    _write_anatomy(mech_dir / "parts", PARTS)
    host_ns = {f"{m}:pin={'in-process' if m in ('native', 'seccomp-trap') else 'same'}": v
               for m, v in measured().items()}
    write_suite(d / "host.json", host_ns, sigma=1e-5)
    write_suite(d / "guest.json", GUEST, vm=True, sigma=1e-5)
    kernel, cpu = stats.load([d / "host.json"])[["kernel", "vmexec_cpu_model"]].iloc[0]
    (d / "prices").mkdir()
    (d / "prices" / "prices-x-1.json").write_text(json.dumps(
        {"kernel": kernel, "cpu_model": cpu, "started": "2026-12-04T18:15:00+00:00", "load_before": "0.1 0.1 0.1",
         "load_after": "0.2 0.1 0.1", "ns_per_iteration": host_values()}))
    md = report.write_report([d / "host.json", d / "guest.json"], tmp_path / "report")["report.md"].read_text()
    speedup = measured()["ptrace-sysemu"] / truth(MECHANISMS["process-vm-exec"], 0.07 / 198)
    answer, first = md.split("\n\n")[0], next(line for line in md.splitlines() if line.startswith("**Verdict: "))
    assert f"composed from prices measured on the host, the hardware speed-up is {speedup:.2f}x" in answer
    assert f"composed from prices measured on the host, {speedup:.2f}x" in first
    assert "claim is reproduced" in first and "distortion bracket" in first
    figures = md.split("\n\n")[7]
    assert "composed from prices measured on the host" in figures and "(judged" in figures
    assert "distortion bracket: " in figures and "icount path-length ratio" in figures
    assert "## A hardware estimate from measured parts" in md and "Load (1, 5, 15 min): 0.1 0.1 0.1" in md
