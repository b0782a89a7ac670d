"""`vmexec price` and bench.anatomy.composed (rendered by bench.render.prices): the parts' micro-benchmarks,
the composition from measured prices and its rule, on synthetic anatomies and synthetic prices with known
answers (no timing in pass/fail)."""
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from bench import stats, verdict
from bench.anatomy import composed as P
from bench.measure import prices as M
from bench.render import prices as render_prices
from bench.errors import BenchError, UsageError
from conftest import run_bench, run_vmexec
from test_analysis import MORE_PROBES

TRUE = {"insn": 0.2, "entry": 40.0, "round_trip": 900.0, "ptrace_stop": 300.0, "ptrace_request": 250.0,
        "retpoline": 9.0, "fpu": 60.0, "cr3_write": 150.0, "safe_ret": 0.0}     # no part returns through SRSO
#: Instructions of ptrace_stop and of the ptrace syscall's entry (PRICE_ROWS: fixed paths) per stop, per request.
STOP_INSNS, REQUEST_INSNS = 120, 104


def path(insns, entries, cr3_writes, switch_insns, stops=0.0, fpu=0.0, requests=None, switch_fpu=0.0, thunks=0.0):
    """A path per iteration: instructions, kernel entries, CR3 writes, instructions in __switch_to_asm,
    ptrace stops, XSAVEs and XRSTORs of a signal frame (fpu) and at a switch (switch_fpu), ptrace requests
    (one per stop, its resume, unless said), indirect calls through a retpoline thunk (3 instructions each,
    spread over two registers' thunks as the anatomy finds them)."""
    functions = {P.SWITCH_FUNCTION: switch_insns} if switch_insns else {}
    if thunks:
        functions.update({"__x86_indirect_thunk_rax": 2 * thunks, "__x86_indirect_thunk_r12": thunks})
    if stops:
        functions["ptrace_stop"] = STOP_INSNS * stops
        functions["__x64_sys_ptrace"] = REQUEST_INSNS * (stops if requests is None else requests)
    events = {}
    if fpu:           # as the anatomy names them: a compiler's copy of a function keeps the name
        events["copy_fpstate_to_sigframe"] = {"xsave": fpu / 2}
        events["__fpu_restore_sig.constprop.0"] = {"xrstor": fpu / 2}
    if switch_fpu:
        events["save_fpregs_to_fpstate"] = {"xsave": switch_fpu / 2}
        events["restore_fpregs_from_fpstate"] = {"xrstor": switch_fpu / 2}
    return P.Path_(insns, {"syscall": entries, "exc_irq": 0.0, "cr3_write": cr3_writes,
                           "xsave": (fpu + switch_fpu) / 2, "xrstor": (fpu + switch_fpu) / 2}, functions, events)


#: Parts: threads makes one round trip = two switches of 99 instructions.  More parts than prices.
PARTS = {"entry": path(300, 1, 0, 0), "signal": path(3000, 2, 0, 0, fpu=3),
         "files": path(3400, 2, 0, 0, thunks=1), "poll": path(6800, 1, 0, 0, thunks=64),
         "threads": path(2500, 4, 0, 198, switch_fpu=4, thunks=5), "processes": path(2700, 4, 2, 198, switch_fpu=4),
         "stop-wait": path(8000, 3, 2, 198, 1, switch_fpu=4),
         "stop-yield": path(7250, 4, 2, 198, 1.3, switch_fpu=4),
         "stop-getregs": path(8900, 4, 2, 198, 1, switch_fpu=4, requests=2),
         "threads-k16": path(2580, 4, 0, 198, switch_fpu=4), "processes-k16": path(2780, 4, 2, 198, switch_fpu=4),
         "threads-k256": path(9000, 4, 0, 198, switch_fpu=4), "processes-k256": path(9200, 4, 2, 198, switch_fpu=4)}
MECHANISMS = {"native": path(233, 1, 0, 0),
              "ptrace-sysemu": path(12800, 5, 2, 198, 1, switch_fpu=4, requests=3, thunks=9),
              "ptrace-syscall": path(25100, 9, 4, 396, 2, switch_fpu=5, requests=6),
              "seccomp-trap": path(5000, 2, 0, 0.1, fpu=3),
              "seccomp-unotify": path(6800, 3, 2, 198, switch_fpu=4, thunks=7),
              "seccomp-trace": path(13100, 5, 2, 198, 1, switch_fpu=4, requests=3),
              "process-vm-exec": path(1800, 2, 2, 0.07)}
#: Relative timing noise small enough to leave every figure where the exact one is, large enough to give
#: every price a CI of some width (a zero-width CI is refused).
TINY = 1e-4


def truth(p: P.Path_) -> float:
    return float(np.dot(P.counts(p, PARTS), list(TRUE.values())))


def host_values(premium_k256=150.0, noise=TINY, runs=12, seed=1, true=TRUE):
    """ns per iteration of every round of every part: the exact composition, with relative noise."""
    rng = np.random.default_rng(seed)
    exact = {k: float(np.dot(P.counts(p, PARTS), list(true.values()))) for k, p in PARTS.items()}
    exact["processes-k256"] += 2 * (premium_k256 - true["cr3_write"])
    return {k: list(v * (1 + noise * rng.standard_normal(runs))) for k, v in exact.items()}


def measured(errors=None):
    errors = errors or {}
    return {m: truth(p) / (1 + errors.get(m, 0.0))      # composed / measured - 1 = error
            for m, p in MECHANISMS.items() if m != "process-vm-exec"}


def test_the_prices_are_fitted_to_more_parts_than_prices_with_their_residuals():
    labels = [k for k in P.fitted_parts() if k in PARTS]
    assert len(labels) > len(P.PRICES)             # more measurements than unknowns
    f = P.fit(PARTS, {k: float(np.median(v)) for k, v in host_values(noise=0).items()}, labels)
    assert f.prices == pytest.approx(TRUE, rel=1e-9)
    assert set(f.residuals) == set(labels) and all(abs(r) < 1e-9 for r in f.residuals.values())
    assert "threads-k256" not in f.residuals        # beyond L2: reported as a premium, not fitted


def test_a_switchs_fpu_save_is_the_round_trips_and_a_signal_frames_is_the_fpu_price():
    # The host as it is (issue 26): a frame's XSAVE/XRSTOR (the whole state, to and from the user's stack) costs
    # 150 ns, a switch's (XSAVES into the kernel's buffer) 40 ns, four to every round trip in every part.  Counted
    # as one price, the fit had to make a round trip cheaper than its instructions (0 ns on the Intel Xeon VM).
    frame, switch = 150.0, 40.0
    fpu = list(P.PRICES).index("fpu")
    assert P.counts(PARTS["signal"], PARTS)[fpu] == 3       # the .constprop copy's XRSTOR counted
    assert P.counts(PARTS["threads"], PARTS)[fpu] == 0

    def host(p):       # every price as TRUE has it, the frame's FPU ops at `frame`, the switch's at `switch`
        switch_ops = sum(e.get("xsave", 0) + e.get("xrstor", 0) for fn, e in p.events.items()
                         if fn in ("save_fpregs_to_fpstate", "restore_fpregs_from_fpstate"))
        return float(np.dot(P.counts(p, PARTS), list({**TRUE, "fpu": frame}.values()))) + switch * switch_ops
    f = P.fit(PARTS, {k: host(p) for k, p in PARTS.items()}, [k for k in P.fitted_parts() if k in PARTS])
    assert f.prices["fpu"] == pytest.approx(frame, rel=1e-6)
    assert f.prices["round_trip"] == pytest.approx(TRUE["round_trip"] + 4 * switch, rel=1e-6)
    assert max(abs(r) for r in f.residuals.values()) < 1e-6


def test_a_retpolines_calls_are_counted_by_its_thunks_over_the_poll_parts():
    retpoline = list(P.PRICES).index("retpoline")
    assert P.counts(PARTS["poll"], PARTS)[retpoline] == pytest.approx(M.POLL_ENTRIES)
    assert P.counts(MECHANISMS["ptrace-sysemu"], PARTS)[retpoline] == pytest.approx(9)
    assert P.counts(MECHANISMS["process-vm-exec"], PARTS)[retpoline] == 0
    # the poll part's entries are the C part's: one number on both sides
    source = (Path(__file__).parent.parent / "tracers" / "prices.c").read_text()
    assert f"#define POLL_FDS {M.POLL_ENTRIES}\n" in source
    with pytest.raises(BenchError, match=r"the poll part ran no __x86_indirect_thunk_\* in its anatomy"):
        P.counts(PARTS["threads"], {**PARTS, "poll": path(6800, 1, 0, 0)})


def test_a_price_the_parts_push_below_zero_is_at_its_bound_and_refused():
    # a round trip that costs less than its instructions (issue 26: -917 ns, solved exactly and passed on)
    values = host_values(true={**TRUE, "round_trip": -400.0}, noise=0.01)
    f = P.fit(PARTS, {k: float(np.median(v)) for k, v in values.items()}, [k for k in P.fitted_parts() if k in PARTS])
    assert all(v >= 0 for v in f.prices.values()) and f.prices["round_trip"] == 0
    with pytest.raises(BenchError, match=r"not admissible: the \w+ price is at its bound, 0 ns"):
        P.composition(PARTS, values, MECHANISMS, measured(), bootstrap=50)


def test_a_diagnosis_of_refused_prices_shows_every_error_and_no_estimate():
    values = host_values(true={**TRUE, "round_trip": -400.0}, noise=0.01)
    c = P.composition(PARTS, values, MECHANISMS, measured(), bootstrap=50, diagnose=True)
    assert re.match(r"the prices are not admissible: the \w+ price is at its bound", c.refused)
    text = render_prices.to_markdown(c)
    assert text.startswith("# Why the prices were refused: a diagnosis\n\n**A diagnosis, not an estimate**")
    assert "process_vm_exec, composed" not in text and "No estimate for process_vm_exec" in text
    assert all(f"`{m}`" in text for m in measured())
    # Admissible prices are unchanged by the option: an estimate, not a diagnosis.
    ok = P.composition(PARTS, host_values(), MECHANISMS, measured(), bootstrap=50, diagnose=True)
    assert not ok.refused and "process_vm_exec, composed for this host" in render_prices.to_markdown(ok)


def test_prices_that_miss_their_own_parts_are_refused_with_the_residuals():
    values = host_values()
    values["processes-k16"] = [v * 1.3 for v in values["processes-k16"]]
    with pytest.raises(BenchError, match=r"miss their own part processes-k16 by -1.*beyond ±10%; residuals: entry"):
        P.composition(PARTS, values, MECHANISMS, measured(), bootstrap=50)


@pytest.mark.parametrize("spoil, words", [
    (lambda v: {k: [x for x in vals] for k, vals in v.items()} | {"entry": [float("nan")] * 12}, "not a positive finite"),
    (lambda v: {k: [float(np.median(vals))] * 12 for k, vals in v.items()}, "zero width"),
])
def test_non_finite_or_zero_width_prices_are_refused(spoil, words):
    with pytest.raises(BenchError, match=words):
        P.composition(PARTS, spoil(host_values()), MECHANISMS, measured(), bootstrap=50)


def test_too_few_parts_or_unequal_rounds_are_refused():
    four = {k: v for k, v in PARTS.items() if "-k" not in k and not k.startswith("stop")}
    with pytest.raises(UsageError, match="more measurements than unknowns"):
        P.composition(four, host_values(), MECHANISMS, measured(), bootstrap=20)
    values = host_values()
    values["entry"] = values["entry"][:-1]
    with pytest.raises(UsageError, match="different numbers of runs"):
        P.composition(PARTS, values, MECHANISMS, measured(), bootstrap=20)


def test_round_trips_are_counted_by_the_switch_functions_instructions():
    assert P.round_trips(MECHANISMS["ptrace-syscall"], PARTS) == pytest.approx(2.0)
    assert P.round_trips(MECHANISMS["ptrace-sysemu"], PARTS) == pytest.approx(1.0)
    assert P.round_trips(MECHANISMS["process-vm-exec"], PARTS) < 0.001
    with pytest.raises(BenchError, match="__switch_to_asm"):
        P.round_trips(PARTS["threads"], {"threads": path(1, 1, 0, 0)})


def _returning(paths: dict, per_insn: dict | float) -> dict:
    """The paths as a kernel that returns through SRSO's Safe RET counts them: one thunk call per return."""
    rate = per_insn if isinstance(per_insn, dict) else dict.fromkeys(paths, per_insn)
    return {k: dataclasses.replace(p, functions={**p.functions, "srso_alias_return_thunk": rate.get(k, 0.0) * p.insns})
            for k, p in paths.items()}


def test_a_price_no_part_runs_is_no_unknown_and_no_row():
    # The Intel Xeon VM's twin returns through ITS's aligned thunks, not SRSO's: safe_ret counts 0 everywhere
    values = host_values()
    c = P.composition(PARTS, values, MECHANISMS, measured(), bootstrap=50)
    assert "safe_ret" not in c.prices and "safe_ret" not in c.prices_ci and all(abs(e) < 1e-3 for e in c.errors.values())
    assert "| safe_ret |" not in render_prices.to_markdown(c) and "| retpoline |" in render_prices.to_markdown(c)
    # a mechanism that runs it where no part does cannot be priced
    mechs = {**MECHANISMS, **_returning({"native": MECHANISMS["native"]}, 0.02)}
    with pytest.raises(BenchError, match="native runs safe_ret in its anatomy and no part does"):
        P.composition(PARTS, values, mechs, measured(), bootstrap=50)


def test_safe_ret_is_priced_per_return_where_the_kernel_returns_through_it():
    """The AMD EPYC VM's kernel returns through SRSO's Safe RET, mispredicted on purpose: paths with more returns
    per instruction (the ptrace backends') cost more than their instructions say.  Priced per return, they are
    composed right; with no such price the fit puts it on the instruction and misses them."""
    density = {"entry": 0.006, "files": 0.013, "poll": 0.019, "signal": 0.017, "threads": 0.010, "processes": 0.010,
               "stop-wait": 0.012, "stop-yield": 0.013, "stop-getregs": 0.013}
    parts = _returning(PARTS, {k: density.get(k.split("-k")[0], 0.010) for k in PARTS})
    mechs = _returning(MECHANISMS, {"native": 0.021, "ptrace-sysemu": 0.014, "ptrace-syscall": 0.014,
                                    "seccomp-trace": 0.014, "seccomp-unotify": 0.011, "seccomp-trap": 0.014,
                                    "process-vm-exec": 0.017})
    true = {**TRUE, "safe_ret": 7.0, "retpoline": 0.0}     # a retpoline returns through the thunk too
    values = {k: list(float(np.dot(P.counts(p, parts), list(true.values()))) * (1 + TINY * np.random.default_rng(5)
                                                                                .standard_normal(12)))
              for k, p in parts.items()}
    meas = {m: float(np.dot(P.counts(p, parts), list(true.values()))) for m, p in mechs.items() if m != "process-vm-exec"}
    assert P.counts(parts["threads"], parts)[list(P.PRICES).index("safe_ret")] == pytest.approx(25.0)
    c = P.composition(parts, values, mechs, meas, bootstrap=50)
    assert c.prices["safe_ret"] == pytest.approx(7.0, rel=1e-2) and all(abs(e) < 1e-3 for e in c.errors.values())


def test_safe_ret_is_measured_by_its_own_parts_where_returns_are_the_same_share_everywhere():
    """On the AMD EPYC VM returns are 2.3-3.0% of every part's instructions: a fit that may trade the price per
    instruction against the price per return put the first at 0 and was refused.  Measured directly (a copy of
    the thunk against the same instructions predicted), safe_ret is held at its value and the rest is fitted."""
    parts = _returning(PARTS, 0.025)
    mechs = _returning(MECHANISMS, 0.025)
    true = {**TRUE, "safe_ret": 4.0, "retpoline": 0.0}
    exact = {k: float(np.dot(P.counts(p, parts), list(true.values()))) for k, p in parts.items()}
    rng = np.random.default_rng(7)
    values = {k: list(v * (1 + 0.002 * rng.standard_normal(12))) for k, v in exact.items()}
    # the returns' share the same everywhere: the fit alone cannot tell the two prices apart
    fitted_alone = P.fit(parts, {k: float(np.median(v)) for k, v in values.items()},
                         [k for k in P.fitted_parts() if k in parts])
    assert not fitted_alone.direct
    values.update({"ret-thunk": list(6.3 + 0.01 * rng.standard_normal(12)),
                   "ret-plain": list(2.3 + 0.01 * rng.standard_normal(12))})
    meas = {m: float(np.dot(P.counts(p, parts), list(true.values()))) for m, p in mechs.items() if m != "process-vm-exec"}
    c = P.composition(parts, values, mechs, meas, bootstrap=50)
    assert c.prices["safe_ret"] == pytest.approx(4.0, abs=0.02) and c.prices["insn"] == pytest.approx(TRUE["insn"], rel=0.05)
    lo, hi = c.prices_ci["safe_ret"]
    assert lo < c.prices["safe_ret"] < hi and hi - lo < 0.1
    assert not c.refused and all(abs(e) < 0.02 for e in c.errors.values())
    assert c.probes == {}       # no probe measured
    # a probe is priced with the prices it did not help fit, its residual shown
    probe = _returning({"dup": dataclasses.replace(PARTS["files"], insns=PARTS["files"].insns / 3)}, 0.025)["dup"]
    priced = float(np.dot(P.counts(probe, parts), [c.prices.get(k, 0.0) for k in P.PRICES]))
    c2 = P.composition({**parts, "dup": probe}, {**values, "dup": [priced * 1.3] * 12}, mechs, meas, bootstrap=50)
    assert c2.prices == c.prices and c2.probes["dup"] == pytest.approx((priced * 1.3, priced, 1 / 1.3 - 1))
    assert "| `dup` |" in render_prices.to_markdown(c2) and "-23.08%" in render_prices.to_markdown(c2)
    # a retpoline's return is a Safe RET return there: held at 0, not an unknown, whatever the parts say
    assert c.held == ("retpoline",) and c.prices["retpoline"] == 0
    assert "Held at 0, not fitted (priced by another: retpoline: by safe_ret)" in render_prices.to_markdown(c)
    # a copy no slower than its twin measures no price: refused, in one line that says so
    values.update({"ret-thunk": values["ret-plain"]})
    with pytest.raises(BenchError, match="the safe_ret price was measured at 0 ns, not above 0"):
        P.composition(parts, values, mechs, meas, bootstrap=50)


def test_a_new_price_is_a_row_of_data(monkeypatch):
    """An extra priced part (a wake-up) is one price row and one part row: no code."""
    rows = (*M.PRICE_ROWS, {"name": "wakeup", "function": "try_to_wake_up", "unit_part": "wakeup",
                            "meaning": "ns per wake-up beyond its instructions"})
    monkeypatch.setattr(P, "PRICE_ROWS", rows)
    monkeypatch.setattr(P, "PRICES", {r["name"]: r["meaning"] for r in rows})
    monkeypatch.setattr(M, "PART_ROWS", (*M.PART_ROWS, {"label": "wakeup", "part": "wakeup", "switches": 0,
                                                       "host_iterations": 1000, "guest_iterations": 100, "fit": True}))
    assert ("wakeup", ["vmexec", "price", "wakeup", "-n", "1000", "-c", "0"]) in M.commands("vmexec", guest=False)
    true = {**TRUE, "wakeup": 300.0}
    wake = lambda p, n: dataclasses.replace(p, functions={**p.functions, "try_to_wake_up": 80.0 * n})  # noqa: E731
    parts = {k: wake(p, 1 if k.startswith(("threads", "processes")) else 0) for k, p in PARTS.items()}
    parts["wakeup"] = wake(path(400, 1, 0, 0), 1)
    values = {k: list(float(np.dot(P.counts(p, parts), list(true.values()))) * (1 + TINY * np.random.default_rng(3)
                                                                                .standard_normal(12)))
              for k, p in parts.items()}
    mechs = {m: wake(p, 2 if "ptrace" in m or "seccomp-trace" in m else 0) for m, p in MECHANISMS.items()}
    meas = {m: float(np.dot(P.counts(p, parts), list(true.values()))) for m, p in mechs.items() if m != "process-vm-exec"}
    c = P.composition(parts, values, mechs, meas, bootstrap=50)
    assert c.prices["wakeup"] == pytest.approx(300.0, rel=1e-2) and all(abs(e) < 1e-3 for e in c.errors.values())


def test_every_mechanism_is_composed_from_its_path_and_the_same_prices():
    c = P.composition(PARTS, host_values(), MECHANISMS, measured(), (9000.0, 11000.0), bootstrap=50)
    for m, p in MECHANISMS.items():
        assert c.composed[m] == pytest.approx(truth(p), rel=1e-3)
    assert all(abs(e) < 1e-3 for e in c.errors.values())
    assert "process-vm-exec" not in c.errors           # it is what is estimated, not a calibration point
    # process_vm_exec: two CR3 writes priced at the premium, no round trip.
    pvm = 0.2 * 1800 + 40 * 2 + 150 * 2 + 900 * 0.07 / 198
    assert c.candidate_ns == pytest.approx(pvm, rel=1e-3)
    assert c.speedup == pytest.approx(measured()["ptrace-sysemu"] / pvm, rel=1e-3)
    # Next to no noise, no error: the interval is PTRACE_SYSEMU's CI alone.
    assert c.speedup_range == pytest.approx((9000 / pvm, 11000 / pvm), rel=1e-3)
    assert c.premium[0][0] == pytest.approx(150.0, rel=1e-3) and 16 in c.premium and c.rounds == 12
    assert "bootstrap over 12 interleaved rounds" in c.covers and "the largest" in c.covers


def test_the_premium_at_a_sweep_size_is_processes_minus_threads_per_cr3_write():
    c = P.composition(PARTS, host_values(premium_k256=400.0), MECHANISMS, measured(), bootstrap=20)
    assert c.premium[256][0] == pytest.approx(400.0, rel=1e-3)
    assert c.prices["cr3_write"] == pytest.approx(150.0, rel=1e-3)       # the composition uses the loop's own
    assert not c.unpriced


def test_a_negative_premium_is_shown_as_no_price_with_its_cause():
    # the twin's processes-k4096 counted a conntrack gc_worker's 49,000 instructions per iteration (issue 26)
    c = P.composition(PARTS, host_values(premium_k256=-300.0), MECHANISMS, measured(), bootstrap=20)
    assert set(c.unpriced) == {256} and "+200 instructions" in c.unpriced[256]
    row = next(line for line in render_prices.to_markdown(c).splitlines() if line.startswith("| 256 |"))
    assert "| — | negative, not a price" in row and "-300" not in row


def test_the_intervals_cover_the_parts_noise_and_the_worst_error():
    errors = {"native": 0.12, "seccomp-trap": -0.08}
    c = P.composition(PARTS, host_values(noise=0.02), MECHANISMS, measured(errors), bootstrap=400)
    assert set(c.prices) == set(P.PRICES) - {"safe_ret"}      # no part returns through SRSO here
    for k in c.prices:
        lo, hi = c.prices_ci[k]
        assert lo <= c.prices[k] <= hi and hi > lo
    lo, hi = c.composed_ci["process-vm-exec"]
    assert lo < c.candidate_ns < hi
    # widened by the largest and the smallest error (about +12% and -8%, moved by the parts' noise)
    e = c.errors.values()
    assert c.candidate_range == pytest.approx((lo / (1 + max(e)), hi / (1 + min(e))))
    assert c.errors["native"] == pytest.approx(0.12, abs=0.03)
    assert c.errors["seccomp-trap"] == pytest.approx(-0.08, abs=0.03)
    assert verdict.ComposedPrediction.of(c).phrase().count("which covers the parts' timing noise") == 1


@pytest.mark.parametrize("errors, judged", [
    ({"native": 0.19, "ptrace-syscall": -0.19}, True),
    ({"native": verdict.COMPOSED_MAX_ERROR - 1e-3, "seccomp-trap": -verdict.COMPOSED_MAX_ERROR + 1e-3}, True),
    ({"native": verdict.COMPOSED_MAX_ERROR + 1e-3}, False),
    ({"native": 0.05, "seccomp-unotify": -0.21}, False),      # any one mechanism breaks it
    ({"ptrace-sysemu": 0.30}, False),
])
def test_the_rule_judges_the_composition_only_if_every_mechanism_is_within_20_percent(errors, judged):
    c = P.composition(PARTS, host_values(noise=1e-6), MECHANISMS, measured(errors), bootstrap=20)
    p = verdict.ComposedPrediction.of(c)
    assert (p.why_not_judged() is None) is judged
    if not judged:
        worst = max(errors, key=lambda k: abs(errors[k]))
        assert worst in p.why_not_judged()
    text = render_prices.to_markdown(c)
    assert ("so the verdict judges this interval" in text) is judged
    assert all(f"`{m}`" in text for m in c.measured) and "| `processes-k16` |" in text     # the residuals


#: Host and guest: the icount ratio 5x, distortions 0.8 and 1.25 (bracket 4.00–6.25x), as in test_analysis.
HOST = {"ptrace-sysemu:pin=same": 10_000.0, "seccomp-trap:pin=in-process": 2_000.0,
        "ptrace-syscall:pin=same": 20_000.0, "seccomp-trace:pin=same": 12_000.0,
        **{k: h for k, (h, _) in MORE_PROBES.items()}}
GUEST = {"ptrace-sysemu:pin=same": 10_000.0, "process-vm-exec:pin=same": 2_000.0,
         "seccomp-trap:pin=in-process": 2_500.0, "ptrace-syscall:pin=same": 16_000.0,
         "seccomp-trace:pin=same": 12_000.0, **{k: g for k, (_, g) in MORE_PROBES.items()}}


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
        backends.append({"backend": name, "insns_per_syscall": p.insns + 10, "totals": {**p.totals, "rep_extra": 10.0}})
        rows = [(f, p.functions.get(f, 1.0), p.events.get(f, {})) for f in {**p.functions, **p.events}]
        (directory / f"functions-{name}.csv").write_text(
            "function,phase,insns_per_syscall,xsave,xrstor\n"
            + "".join(f"{f},scheduler & context switch,{n},{e.get('xsave', 0)},{e.get('xrstor', 0)}\n"
                      for f, n, e in rows) + "other,other kernel,1,0,0\n")
    (directory / "anatomy.json").write_text(json.dumps({"meta": {}, "backends": backends}))


def test_paths_are_read_from_an_anatomy_directory(tmp_path):
    _write_anatomy(tmp_path / "a", MECHANISMS)
    got = P.paths_from_anatomy(tmp_path / "a")
    for k, v in MECHANISMS.items():
        assert got[k].insns == v.insns and got[k].events == v.events
        assert got[k].functions == {**{f: 1.0 for f in v.events}, **v.functions, "other": 1.0}
        assert all(got[k].totals[t] == n for t, n in v.totals.items())
    with pytest.raises(UsageError, match="no "):
        P.paths_from_anatomy(tmp_path / "nowhere")


def _composition_setup(tmp_path, monkeypatch, scale: float = 1.0, started: str | None = None):
    """_write_results in tmp_path, made the results directory."""
    monkeypatch.setenv("VMEXEC_RESULTS_DIR", str(tmp_path))
    (tmp_path / "anatomy").mkdir()
    (tmp_path / "anatomy" / "anatomy.json").write_text(json.dumps({"meta": {}, "backends": []}))
    return _write_results(tmp_path, scale, started)


def _write_results(d, scale: float = 1.0, started: str | None = None):
    """A results directory d with a synthetic anatomy (mechanisms and parts) and a host run of the mechanisms at
    scale times their exact times: (the anatomy's mechanisms directory, the host run, a quiet prices record of
    the host's machine, not yet written)."""
    from data.synthetic import write_suite

    mech_dir = d / "anatomy" / "mitigations"
    _write_anatomy(mech_dir, MECHANISMS)
    _write_anatomy(mech_dir / "parts", PARTS)
    host = write_suite(d / "host.json", _host_ns(scale), sigma=1e-5, started=started)
    kernel, cpu = stats.load([host])[["kernel", "vmexec_cpu_model"]].iloc[0]
    record = {"kernel": kernel, "cpu_model": cpu, "started": "2026-12-04T18:15:00+00:00", "load_before": "0.1 0.1 0.1",
              "load_after": "0.1 0.1 0.1", "ns_per_iteration": host_values()}
    return mech_dir, host, record


def _host_ns(scale: float = 1.0) -> dict[str, float]:
    """The mechanisms' host times as bench run names its cases (in-process where they run so)."""
    return {f"{m}:pin={'in-process' if m in ('native', 'seccomp-trap') else 'same'}": scale * v
            for m, v in measured().items()}


def test_the_report_takes_the_composition_from_a_prices_record_of_the_same_kernel(tmp_path, monkeypatch):
    mech_dir, host, record = _composition_setup(tmp_path, monkeypatch)
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert c is None and "no measured prices" in why
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
    assert c.candidate_ns == pytest.approx(truth(MECHANISMS["process-vm-exec"]), rel=1e-3)
    # a record whose rounds saw more runnable threads than CPUs is refused, never composed
    busy = {"load_avg_1min": 5.0, "runnable_threads": 5}
    (tmp_path / "prices" / "prices-x-3.json").write_text(json.dumps(
        {**record, "started": "2026-12-04T18:17", "cpu_count": 2, "round_loads": [busy] * 12}))
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert c is None and why.startswith("refused: the host was busy while its prices were measured (12 of 12")


# ----------------------------------------------------------------------------- vmexec price (C)

@pytest.mark.parametrize("part, switches", [("entry", 0), ("signal", 0), ("files", 0), ("poll", 0), ("threads", 1),
                                           ("processes", 1), ("ret-thunk", 0), ("ret-plain", 0),
                                           ("dup", 0)])
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
    (("price", "poll", "-n", "5", "-k", "2"), "-k applies"),
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


def _results_with_prices(d):
    """A results directory d with the anatomy, the parts' anatomy, a host run and a quiet prices record of its
    machine; returns the host run."""
    _, host, record = _write_results(d)
    (d / "prices").mkdir()
    (d / "prices" / "prices-x-1.json").write_text(json.dumps({**record, "load_after": "0.2 0.1 0.1"}))
    return host


def test_the_report_judges_a_composition_that_fits_and_shows_it_beside_the_others(tmp_path, monkeypatch):
    from bench.render import report
    from data.synthetic import write_suite

    d = tmp_path / "results"
    monkeypatch.setenv("VMEXEC_RESULTS_DIR", str(d))
    _results_with_prices(d)
    write_suite(d / "guest.json", GUEST, vm=True, sigma=1e-5)
    md = report.write_report([d / "host.json", d / "guest.json"], tmp_path / "report")["report.md"].read_text()
    speedup = measured()["ptrace-sysemu"] / truth(MECHANISMS["process-vm-exec"])
    answer, first = md.split("\n\n")[0], next(line for line in md.splitlines() if line.startswith("**Verdict: "))
    assert f"composed from prices measured on the host, the hardware speed-up is {speedup:.2f}x" in answer
    assert f"composed from prices measured on the host, {speedup:.2f}x" in first
    assert "claim is reproduced" in first and "the fitted model is shown beside it" in first
    figures = md.split("\n\n")[7]
    assert "composed from prices measured on the host" in figures and "(judged" in figures
    # five mechanisms measured on both: too few for a bracket (verdict.MIN_PROBES), said beside it
    assert "distortion bracket: none (only 5 C mechanisms" in figures and "icount path-length ratio" in figures
    assert "## A hardware estimate from measured parts" in md and "Load (1, 5, 15 min): 0.1 0.1 0.1" in md


def test_a_host_run_measured_on_a_busy_host_is_refused_in_one_line(tmp_path, monkeypatch):
    """The busy-host warning's own test (bench.results.busy_warning) refuses the composition."""
    monkeypatch.setenv("VMEXEC_RESULTS_DIR", str(tmp_path))
    host = _results_with_prices(tmp_path)
    assert P.composed_model([host], tmp_path / "anatomy")[1] == ""
    data = json.loads(host.read_text())
    for bench in data["benchmarks"]:
        for run in bench["runs"]:
            run.setdefault("metadata", {}).update(runnable_threads=6, load_avg_1min=0.5)
        bench["metadata"]["vmexec_cpus"] = 2
    host.write_text(json.dumps(data))
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert c is None and why.startswith("refused: the host was busy while measuring (host.json: ")
    assert "\n" not in why
    proc = run_bench("prices", "--prices", str(tmp_path / "prices" / "prices-x-1.json"), "--host", str(host),
                     "--anatomy", str(tmp_path / "anatomy"))
    assert proc.returncode == 2 and proc.stdout == "" and "refused: the host was busy" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_prices_compose_the_host_run_measured_with_them(tmp_path, monkeypatch):
    """measure.sh writes a host run and a prices record side by side: the report composes that pair, not its own
    older host run (host times drift ±20% between runs here); a run beside the record but measured long before
    it, or an explicit --prices, leaves the given host run in place."""
    from data.synthetic import write_suite

    _, old, record = _composition_setup(tmp_path, monkeypatch, scale=1.3, started="2026-12-04T09:00:00")
    beside = tmp_path / "prices" / "machine"
    beside.mkdir(parents=True)
    (beside / "prices-x-1.json").write_text(json.dumps({**record, "started": "2026-12-04T18:15:00"}))
    write_suite(beside / "long-before.json", _host_ns(0.7), sigma=1e-5, started="2026-12-04T17:00:00")
    c, _ = P.composed_model([old], tmp_path / "anatomy")
    assert "`host.json`" in c.inputs
    assert all(e == pytest.approx(1 / 1.3 - 1, abs=1e-3) for e in c.errors.values())
    write_suite(beside / "paired.json", _host_ns(), sigma=1e-5, started="2026-12-04T18:14:00")
    c, _ = P.composed_model([old], tmp_path / "anatomy")
    assert "`paired.json`" in c.inputs and all(abs(e) < 1e-3 for e in c.errors.values())
    c, _ = P.composed_model([old], tmp_path / "anatomy", [beside / "prices-x-1.json"])
    assert "`host.json`" in c.inputs


def test_mechanisms_timed_in_the_prices_rounds_are_composed_against_those_times_not_the_host_runs(tmp_path, monkeypatch):
    """A host run made a minute before the prices drifted 16% against them on the AMD EPYC VM: a record that timed
    the mechanisms between its parts is composed against those times, drifted as its parts are, and says so; the
    host run is read for its machine only."""
    from bench.measure.prices import MECHANISM

    _, host, record = _composition_setup(tmp_path, monkeypatch, scale=1.16)      # the host run drifted 16%
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "prices-x-1.json").write_text(json.dumps(record))
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert why == "" and all(e == pytest.approx(1 / 1.16 - 1, abs=1e-3) for e in c.errors.values())
    rng = np.random.default_rng(3)
    timed = {MECHANISM + m: list(v * (1 + 0.01 * rng.standard_normal(len(record["ns_per_iteration"]["entry"]))))
             for m, v in measured().items()}
    (tmp_path / "prices" / "prices-x-1.json").write_text(json.dumps(
        {**record, "ns_per_iteration": {**record["ns_per_iteration"], **timed}}))
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert why == "" and all(abs(e) < 0.02 for e in c.errors.values())
    assert "the mechanisms timed in the prices' own rounds" in c.inputs
    lo, hi = c.baseline_ci
    assert lo < c.baseline_ns < hi and c.baseline_ns == pytest.approx(measured()["ptrace-sysemu"], rel=0.02)
    # a record that timed mechanisms but not the baseline cannot be composed against them
    del timed[MECHANISM + "ptrace-sysemu"]
    (tmp_path / "prices" / "prices-x-1.json").write_text(json.dumps(
        {**record, "ns_per_iteration": {**record["ns_per_iteration"], **timed}}))
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert c is None and why == "the prices record timed mechanisms in its rounds but not ptrace-sysemu"


def test_the_rounds_time_every_mechanism_pinned_as_the_host_run_pins_it():
    from bench.measure.prices import MECHANISM, ROUND_MECHANISMS, mechanism_commands
    from tracers.driver import driver_backends

    cmds = dict(mechanism_commands("vmexec", cpu=1))
    assert set(cmds) == {MECHANISM + m for m in ROUND_MECHANISMS} and "process-vm-exec" not in ROUND_MECHANISMS
    for b in driver_backends():
        if b.name in ROUND_MECHANISMS:
            argv = cmds[MECHANISM + b.name]
            assert argv[:3] == ["vmexec", "run", b.name]
            assert argv[5:] == (["-T", "1"] if b.in_process else ["-t", "1", "-T", "1"])
    # the anatomy guest counts each mechanism pinned the same way (one argv builder)
    from bench.anatomy.guest import PIN_CPU, backend_commands
    names = [b.name for b in driver_backends() if b.name in ROUND_MECHANISMS]
    counted = dict(backend_commands(names, 7, {b.name: b.in_process for b in driver_backends()}))
    timed = dict(mechanism_commands("vmexec", cpu=PIN_CPU))
    assert all(counted[b][5:] == timed[MECHANISM + b][5:] and counted[b][1:3] == ["run", b] for b in names)
    proc, report = run_vmexec(*cmds[MECHANISM + "ptrace-sysemu"][1:3], "-n", "200", "-t", "0", "-T", "0")
    assert proc.returncode == 0 and report["ok"] and report["calls"] == 200


def test_prices_are_refused_for_a_host_whose_indirect_calls_the_counted_kernel_does_not_make(tmp_path, monkeypatch):
    """The retpoline price prices the thunks the twin counts: a host with eIBRS (no thunk) and a twin counted with
    retpolines, or the reverse, would price what the host does not run (issue 26, the AMD day)."""
    mech_dir, host, record = _composition_setup(tmp_path, monkeypatch)      # the host: Mitigation: Retpolines
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "prices-x-1.json").write_text(json.dumps(record))
    for d in (mech_dir, mech_dir / "parts"):
        (d / "raw").mkdir(exist_ok=True)
        (d / "raw" / "vulnerabilities.tsv").write_text("spectre_v2\tMitigation: Retpolines; STIBP: disabled\n")
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert why == "" and c is not None
    (mech_dir / "raw" / "vulnerabilities.tsv").write_text("spectre_v2\tMitigation: Enhanced / Automatic IBRS\n")
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert c is None and why.startswith("the host's indirect calls (Mitigation: Retpolines) are not those of the "
                                        "kernel counted in") and "(Mitigation: Enhanced / Automatic IBRS)" in why


def test_prices_are_refused_for_a_host_whose_returns_the_counted_kernel_does_not_make(tmp_path, monkeypatch):
    """SRSO's Safe RET mispredicts every return of the AMD EPYC VM's kernel on purpose, a cost no count of
    instructions carries: a twin counted without it (TCG's own AMD family 15 is not affected) cannot be priced
    for that host, nor one counted with ITS's thunks for a host without them."""
    mech_dir, host, record = _composition_setup(tmp_path, monkeypatch)      # the host: no return thunk
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "prices-x-1.json").write_text(json.dumps(record))
    plain = "spectre_v2\tMitigation: Retpolines; STIBP: disabled\nspec_rstack_overflow\tNot affected\n"
    for d in (mech_dir, mech_dir / "parts"):
        (d / "raw").mkdir(exist_ok=True)
        (d / "raw" / "vulnerabilities.tsv").write_text(plain)
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert why == "" and c is not None
    (mech_dir / "parts" / "raw" / "vulnerabilities.tsv").write_text(
        plain.replace("Not affected", "Vulnerable: Safe RET, no microcode"))
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert c is None and why.startswith("the host's returns go through a plain ret, those of the kernel counted in ")
    assert why.split(" through ")[-1].startswith("SRSO Safe RET: recount it on this host")


def test_prices_are_refused_for_a_host_whose_kernel_the_counted_twin_is_not(tmp_path, monkeypatch):
    """A twin counted on one host (Intel Xeon VM, one kernel configuration) explains no other host's times."""
    mech_dir, host, record = _composition_setup(tmp_path, monkeypatch)
    config = stats.load([host])["vmexec_kernel_config"].iloc[0]
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "prices-x-1.json").write_text(json.dumps(record))
    for d in (mech_dir, mech_dir / "parts"):
        (d / "raw").mkdir(exist_ok=True)
        (d / "raw" / "guest.json").write_text(json.dumps({"host_config_sha256": config + "0" * 48}))
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert why == "" and c is not None
    (mech_dir / "raw" / "guest.json").write_text(json.dumps({"host_config_sha256": "f" * 64}))
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert c is None and why.startswith(f"the twin counted in {mech_dir} was made from kernel configuration "
                                        f"ffffffffffffffff, the host run's kernel has {config}")


def test_prices_are_refused_for_a_host_charged_to_a_memory_cgroup_the_twin_was_not(tmp_path, monkeypatch):
    """The AMD EPYC VM's host runs in a child memory cgroup (v1), whose kernel charges every struct file and
    sigqueue it allocates: its files part ran ~300 ns slower there than in the root.  A twin counted in the root
    (as every twin was before it recorded where) skips those charges: it cannot explain that host's times."""
    from data.synthetic import write_suite

    mech_dir, host, record = _composition_setup(tmp_path, monkeypatch)
    config = stats.load([host])["vmexec_kernel_config"].iloc[0]
    child = write_suite(tmp_path / "child.json", _host_ns(), sigma=1e-5,
                        metadata={"vmexec_memory_cgroup": "child (cgroup v1)"})
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "prices-x-1.json").write_text(json.dumps(record))
    for counted_in in (None, "root", "child (cgroup v2)", "child (cgroup v1)"):
        for d in (mech_dir, mech_dir / "parts"):
            (d / "raw").mkdir(exist_ok=True)
            (d / "raw" / "guest.json").write_text(json.dumps(
                {"host_config_sha256": config + "0" * 48, **({"memory_cgroup": counted_in} if counted_in else {})}))
        c, why = P.composed_model([host], tmp_path / "anatomy")       # the host recorded none: not judged so
        assert why == "" and c is not None
        # ... but said: a twin that recorded nothing charged the root
        assert any("charged its loops to the root memory cgroup and the host run recorded none" in k
                   for k in c.caveats) == (counted_in is None)
        assert all(f"Caveat: {k}." in render_prices.to_markdown(c) for k in c.caveats)
        c, why = P.composed_model([child], tmp_path / "anatomy")
        if counted_in == "child (cgroup v1)":
            assert why == "" and c is not None
        else:
            assert c is None and why.startswith(
                f"the host run was charged to a child (cgroup v1) memory cgroup, the twin counted in {mech_dir / 'parts'} "
                f"to {counted_in or 'the root (it recorded none)'}: ")


def test_each_host_is_composed_from_the_twin_of_its_own_kernel_configuration(tmp_path, monkeypatch):
    """Twins of two machines' kernels lie side by side, one directory per host configuration: a host run is
    composed from the twin made from the configuration it recorded, never from the other machine's; a host whose
    configuration has no twin counted is composed from the mitigation-matched benchmark kernel."""
    import shutil

    from bench.anatomy.counts import twin_directory

    mech_dir, host, record = _composition_setup(tmp_path, monkeypatch)
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "prices-x-1.json").write_text(json.dumps(record))
    config = stats.load([host])["vmexec_kernel_config"].iloc[0]
    assert P.composed_model([host], tmp_path / "anatomy")[0].counted == str(mech_dir)
    other = twin_directory(tmp_path / "anatomy", "a" * 64)
    shutil.copytree(mech_dir, other)
    assert P.composed_model([host], tmp_path / "anatomy")[0].counted == str(mech_dir)
    own = twin_directory(tmp_path / "anatomy", config)
    assert own.parent == other.parent and own.name == config[:16]
    shutil.copytree(mech_dir, own)
    shutil.rmtree(own / "parts")          # a twin without its parts' anatomy is not yet counted
    assert P.composed_model([host], tmp_path / "anatomy")[0].counted == str(mech_dir)
    shutil.copytree(mech_dir / "parts", own / "parts")
    c, why = P.composed_model([host], tmp_path / "anatomy")
    assert why == "" and c.counted == str(own) and f"/twin/{config[:16]}`" in c.inputs


def test_a_twin_directory_is_named_by_a_configuration_hash_only():
    from bench.anatomy.counts import twin_directory
    from bench.errors import UsageError

    assert twin_directory(Path("a"), "0540D0AB7816D063be") == Path("a/twin/0540d0ab7816d063")
    for bad in ("", "0540d0ab", "../../etc/passwd/xx", "nan"):
        with pytest.raises(UsageError, match="not a kernel configuration's sha256"):
            twin_directory(Path("a"), bad)


def test_the_machines_are_shown_side_by_side_each_with_its_own_estimate(tmp_path, monkeypatch):
    """Issue 26 item 5: each machine's prices, errors and speed-up in one table, a column per machine; a machine
    whose prices were refused or never measured says why, and is no column."""
    mech_dir, host, record = _composition_setup(tmp_path, monkeypatch)
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "prices-x-1.json").write_text(json.dumps(record))
    c, _ = P.composed_model([host], tmp_path / "anatomy")
    slow = dataclasses.replace(c, errors={**c.errors, "ptrace-sysemu": -0.25})
    refused = dataclasses.replace(c, refused="the prices are not admissible: the insn price is at its bound")
    blocks = render_prices.side_by_side([("Xeon, Linux a", c, ""), ("EPYC, Linux b", slow, ""),
                                         ("EPYC, Linux d", refused, "the prices are not admissible"),
                                         ("Other, Linux c", None, "no measured prices")])
    (_, header, rows) = next(b for b in blocks if b[0] == "table")
    assert header == ["", "Xeon, Linux a", "EPYC, Linux b", "EPYC, Linux d (refused, a diagnosis: the prices are "
                      "not admissible: the insn price is at its bound)"]
    table = {r[0]: r[1:] for r in rows}
    assert table["speed-up over PTRACE_SYSEMU"][0].startswith(f"{c.speedup:.2f}x (")
    assert table["speed-up over PTRACE_SYSEMU"][2] == table["`process-vm-exec`: composed ns"][2] == "none (a diagnosis)"
    judged = table["every C mechanism within ±20%?"]
    assert judged[0].startswith("judged (worst: ") and judged[1] == "not judged (worst: ptrace-sysemu -25.0%)"
    assert judged[2].startswith("not judged (worst: ")
    assert all(any(k in r for r in table) for k in c.prices)
    assert blocks[-1] == ("p", "No estimate on Other, Linux c: no measured prices.")
    assert render_prices.side_by_side([("Other, Linux c", None, "no measured prices"), ("EPYC", refused, "")]) == []
