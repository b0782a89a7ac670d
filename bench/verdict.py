"""The verdict: the rule that judges the RFC's claim, and the wording that reports it.

bench.stats computes the numbers (ratios, their bootstrap intervals, the
host-versus-guest distortions); this module applies VERDICT_RULE to them and
words the answer: assess() judges one process_vm_exec / PTRACE_SYSEMU
pairing, headline() picks the pairing to lead with and words it beside its
caveat and the figures shown with it, and findings() computes every figure a
report shows once, the judgement of every pairing included (Findings), so
renderers only lay them out.  The host cost model's and the composed
estimate's predictions (bench.anatomy) enter as ModelPrediction and
ComposedPrediction (bench.estimates), with the thresholds that decide whether they are judged.
"""
from __future__ import annotations

import dataclasses
import json

import pandas as pd

# The estimates and their thresholds are part of the verdict's vocabulary (verdict.ModelPrediction, ...).
from bench.estimates import COMPOSED_MAX_ERROR, MODEL_MAX_LOO_ERROR, ComposedPrediction, ModelPrediction
from bench.machines import made_on, run_ids, view
from bench.measure import accelerators
from bench.measure.accelerators import CLOCKS, HARDWARE_CLOCKS
from bench.stats import (CANDIDATE, IN_PROCESS, SYSEMU, all_ratios, backend_table, host_vs_guest, pin_order, ratios,
                         reasons, summarize)

#: The RFC's claim: "more than 5 times faster".
CLAIM = 5.0

#: Backends whose host-versus-guest distortion does not enter the hardware-equivalent range:
#: the two compared, and python-ptrace-sysemu, whose cost is the Python interpreter's
#: instruction mix rather than a kernel path, and the binary rewriting backends, whose steady state
#: runs no kernel path at all (zpoline's is mostly a nop sled, which icount charges like any
#: instruction: distortion 0.08 in its first run).  Every other mechanism (all in C) enters.
NOT_DISTORTION_PROBES = (SYSEMU, CANDIDATE, "python-ptrace-sysemu", "zpoline", "lazypoline", "systrap-patch")
#: The bracket's rule (issue 26 item 6, fixed before the next runs): every C mechanism that both the host run
#: and the guest run measured at the pinning judged is a probe (none chosen, none left out), and a bracket
#: needs at least MIN_PROBES of them besides the claim's two, or the claim is not judged: too few probes.
#: Why 7: if process_vm_exec's own distortion is like one more probe's (exchangeable with them), it lies
#: within the range of n probes with probability (n - 1) / (n + 1): 50% for 3 probes (the rewriting runs'
#: bracket), 75% for 7, 78% for the driver's 8.  A bracket judged on worse odds than 3 to 1 is a guess;
#: 7 of the driver's 8 probes also lets one mechanism a host cannot run drop out.
MIN_PROBES = 7

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
                f"host-versus-guest distortions of every C mechanism both ran at that pinning, with both "
                f"runs' CIs, at least {MIN_PROBES} of them besides the claim's two (fewer: not judged, too few "
                f"probes). Either way the verdict shows the icount path-length ratio, the bracket and "
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
    if kind in HARDWARE_CLOCKS and not row["speedup_low"] < row["speedup_high"]:
        return Assessment(kind, None, None, f"the >{CLAIM:g}x claim cannot be judged: a 95% CI of zero width "
                          f"({row['speedup_low']:.4g}–{row['speedup_high']:.4g}) is no wall clock's: repeats that "
                          "agree to the last digit are a sign of fabricated or degenerate values, not a measurement",
                          pd.DataFrame())
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
        return Assessment(kind, None, None, f"the >{CLAIM:g}x claim is not judged: too few probes (only "
                          f"{len(used)} C mechanisms, {', '.join(sorted(used['backend']))}, measured on both "
                          f"host and guest at this pinning; the bracket's rule needs at least {MIN_PROBES})", used)
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
    row: pd.Series | None = None    # the ratios() row the headline leads with (None: nothing to judge)
    model: ModelPrediction | None = None
    composed: ComposedPrediction | None = None


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
    r = ratios(df, CANDIDATE, SYSEMU) if r is None else r
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
                        f"pyperf workers resampled) {_environment_phrase(h)}: {a.judgement}", "", a, shown, h, model, composed)
    what = ("a path-length ratio (icount counts instructions, not time" if a.clock == "icount"
            else "an emulator-time ratio (TCG wall time is the emulator's speed, not the hardware's")
    sentence = (f"process_vm_exec is {h['speedup']:.2f}x faster than PTRACE_SYSEMU as {what}; 95% CI {ci} "
                f"covers repeats only) {_environment_phrase(h)}; ")
    if a.composed_judged:
        return Headline(sentence + f"composed from prices measured on the host, {composed.phrase()}, every C "
                        f"mechanism composed within ±{100 * COMPOSED_MAX_ERROR:g}% of its measured time (worst "
                        f"{composed.worst} {100 * composed.errors[composed.worst]:+.1f}%): {a.judgement}; "
                        + (f"the distortion bracket, {a.bracket[0]:.2f}–{a.bracket[1]:.2f}x, and the fitted model "
                           "are shown beside it" if a.bracket else "the fitted model is shown beside it"), _caveat(h, a, mitigated), a, shown, h, model, composed)
    if a.model_judged:
        return Headline(sentence + f"the host cost model predicts {_model_phrase(model)}, every mechanism it was "
                        f"fitted on predicted within "
                        f"±{100 * MODEL_MAX_LOO_ERROR:g}% when left out (worst {100 * model.worst_error:.1f}%): "
                        f"{a.judgement}; the distortion bracket, {a.bracket[0]:.2f}–{a.bracket[1]:.2f}x, is shown "
                        f"beside it", _caveat(h, a, mitigated), a, shown, h, model, composed)
    if a.low is None:
        return Headline(sentence + a.judgement, _caveat(h, a, mitigated), a, shown, h, model, composed)
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
    return Headline(sentence, _caveat(h, a, mitigated), a, shown, h, model, composed)


def _where_measured(row) -> str:
    """Where a run measured, in plain words for the first sentence of the answer."""
    kind = clock(row)
    if kind == "icount":
        return "in a QEMU guest whose clock counts instructions (TCG, icount)"
    if row["vm"]:
        return f"in a virtual machine under {accelerators.label(row['accelerator'])}"
    return "on bare metal" if kind == "hardware" else f"on a host that is itself {accelerators.label(row['accelerator'])}"


def answer(h: Headline) -> tuple[str, ...]:
    """The answer in at most three plain sentences, for the first screen: what was measured, the number,
    and whether the claim stands and, if not yet, why.  Worded from the headline only (the rule, the
    figures and the judgement are headline()'s); the long form (h.sentence, h.figures, h.caveat) follows it."""
    claim = f"the RFC's claim of more than {CLAIM:g}x"
    row, a = h.row, h.assessment
    if row is None or a is None:
        return (f"No process_vm_exec result here, so {claim} cannot be judged: {h.sentence.removeprefix('cannot be judged: ')}.",)
    pin = {"same": "same CPU", "cross": "tracer and tracee on two CPUs"}.get(row["pin"], "unpinned")
    first = (f"We timed one intercepted system call with process_vm_exec and with PTRACE_SYSEMU ({pin}) on "
             f"Linux {row['kernel']}, {_where_measured(row)}.")
    x, ci = f"{row['speedup']:.2f}x", f"{row['speedup_low']:.2f}–{row['speedup_high']:.2f}"
    if a.clock in HARDWARE_CLOCKS:
        second = f"On that clock process_vm_exec was {x} faster (95% CI {ci})."
    else:
        second = (f"Counted in instructions, process_vm_exec's path is {x} shorter" if a.clock == "icount"
                  else f"In emulated time process_vm_exec was {x} faster")
        if a.composed_judged:
            second += (f"; composed from prices measured on the host, the hardware speed-up is "
                       f"{h.composed.speedup:.2f}x ({a.low:.2f}–{a.high:.2f}x).")
        elif a.model_judged:
            second += (f"; the host cost model predicts a hardware speed-up of {h.model.speedup:.2f}x "
                       f"({a.low:.2f}–{a.high:.2f}x).")
        elif a.low is not None:
            second += (f"; allowing for how the emulator distorts {len(a.distortions)} other mechanisms also "
                       f"measured on the host, the hardware speed-up is {a.low:.2f}–{a.high:.2f}x.")
        elif a.distortions.empty:
            second += "; nothing among these results bounds how far the emulator distorts that for hardware."
        else:
            second += (f"; the {len(a.distortions)} other mechanisms also measured on the host are too few to bound "
                       f"how far the emulator distorts that for hardware.")
    if a.low is None:
        why = a.judgement.split('(', 1)[-1].rstrip(')')
        third = (f"So {claim} is not judged: too few probes ({why})." if "too few probes" in a.judgement
                 else f"So {claim} cannot be judged yet: {why}.")
    elif a.low >= CLAIM:
        third = f"So {claim} stands: all of {a.low:.2f}–{a.high:.2f}x lies at or above {CLAIM:g}."
    elif a.high < CLAIM:
        third = f"So {claim} does not stand here: all of {a.low:.2f}–{a.high:.2f}x lies below {CLAIM:g}."
    else:
        settle = ("more repeats, narrowing the CI," if a.clock in HARDWARE_CLOCKS
                  else "a run under KVM or on bare metal")
        third = f"So {claim} is not settled yet: that range contains {CLAIM:g}, and {settle} would settle it."
    return first, second, third


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
        return text + (f"Only {', '.join(sorted(a.distortions['backend']))} ran on both the host and this guest at "
                       f"this pinning: too few probes to bound it (the bracket's rule needs at least {MIN_PROBES} "
                       f"C mechanisms besides the claim's two); run every C mechanism on both.")
    items = "; ".join(f"{r['backend']} {r['distortion']:.2f} ({r['distortion_low']:.2f}–{r['distortion_high']:.2f})"
                      for _, r in a.distortions.sort_values("distortion").iterrows())
    if a.model_judged:
        return text + ("The host cost model replaces the crude bracket here: it prices the guest anatomy's "
                       "instructions, CR3 writes and kernel entries with parameters fitted to this host's "
                       "measured mechanisms, and its interval carries its worst leave-one-out errors; it predicts "
                       "the host it was fitted on, which is itself a virtual machine, not bare metal.")
    return text + (f"The range bounds it crudely: for every C mechanism both the host run "
                   f"`{a.distortions['host_run'].iloc[0]}` and this guest ran ({h['pin']} pinning; "
                   f"{len(a.distortions)} probes, the rule needs at least {MIN_PROBES}), the "
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
    """Every figure a report shows, each computed once from one tidy frame (bench.stats.load()).

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
    #: each claim row judged on its own (assess() without the model or the composed estimate, which apply to a
    #: headline's pairing; a guest run made on one of several machines with that machine's host runs and, for
    #: its headline's pairing, that headline's assessment), in claim's row order
    assessments: tuple[Assessment, ...] = ()
    #: each host machine's headline (its host runs with its guest runs (bench.machines.run_ids), its own estimates), oldest first:
    #: ((CPU model, kernel), Headline, kernel configuration hash or "")
    machines: tuple = ()


def findings(df: pd.DataFrame, model: ModelPrediction | None = None,
             no_model: str = "no cost model among the inputs", composed: ComposedPrediction | None = None,
             no_composed: str = "", machines: dict | None = None) -> Findings:
    """Every figure of a report; model is the host cost model's prediction (bench.anatomy), composed
    the estimate composed from measured prices (bench.anatomy.prices), if any; machines, if given, each
    host machine's bench.estimates.Estimates by (CPU model, kernel), oldest first: each machine is judged
    on its own host runs, and the headline is the newest machine's (model and composed are then unused)."""
    summary, every, claim = summarize(df), all_ratios(df), ratios(df, CANDIDATE)
    hg = host_vs_guest(df, r=every)
    judged, own = [], {}       # own: a guest run made on one machine -> (that machine's view, host_vs_guest)
    for key, est in (machines or {}).items():
        runs = run_ids(df, key)
        mdf, mclaim = view(df, runs), view(claim, runs)
        mhg = host_vs_guest(mdf, r=view(every, runs))
        h = headline(mdf, mclaim, mhg, est.model_prediction, est.no_model, est.composed_prediction, est.no_composed)
        judged.append((key, h, est.config))
        own.update({r: (mdf, mhg, h) for r in made_on(df, key)})
    top = judged[-1][1] if judged else headline(df, claim, hg, model, no_model, composed, no_composed)

    def judge_row(row) -> Assessment:
        """A guest run made on one machine of several is judged with that machine's host runs (its own
        headline's assessment where it is that headline's pairing); any other row with every run."""
        mdf, mhg, h = own.get(str(row["run_id"]), (df, hg, None))
        if h is not None and h.row is not None and h.assessment is not None and \
                (h.row["run_id"], h.row["pin"]) == (row["run_id"], row["pin"]):
            return h.assessment
        return assess(mdf, row, mhg)
    return Findings(df, summary, backend_table(df, summary), every, claim, hg, top,
                    tuple(judge_row(row) for _, row in claim.iterrows()), tuple(judged))


def machine_line(key: tuple[str, str], h: Headline, config: str = "") -> str:
    """One machine's answer in one line, for the first screen: the machine (CPU model, host kernel, the guest's
    kernel and its configuration hash), the interval judged and which estimate judged it."""
    cpu, kernel = key
    recorded = str(h.row.get("vmexec_kernel_config") or "") if h.row is not None else ""
    config = recorded if recorded and recorded != "nan" else config    # the guest run's own record first
    guest = (f"guest Linux {h.row['kernel']} (config sha256 {config[:12]})" if config else
             f"guest Linux {h.row['kernel']} (config hash not recorded)") if h.row is not None else "no guest run"
    a = h.assessment
    where = f"{cpu or 'unknown CPU'}, host Linux {kernel}, {guest}"
    if a is None or a.low is None:
        why = (a.judgement.split(": ", 1)[-1] if a is not None and "too few probes" in a.judgement
               else h.sentence.split(": ")[-1] if a is None else "nothing bounds the emulator's distortion")
        return f"{where}: not judged, {why}."
    by = {"95% CI": "its 95% CI on a hardware clock", "composed interval": "the estimate composed from measured prices",
          "cost-model interval": "the host cost model",
          "hardware-equivalent range": f"the distortion bracket ({len(a.distortions)} probes)"}[a.interval]
    said = ("stands" if a.low >= CLAIM else "does not stand" if a.high < CLAIM else f"not settled (contains {CLAIM:g})")
    return f"{where}: {a.low:.2f}–{a.high:.2f}x, judged by {by}: {said}."


def answer_lines(f: Findings) -> tuple[str, ...]:
    """The first screen's answer: answer() of the headline (the newest machine's), then one line per machine
    measured ("- " and machine_line())."""
    return (*answer(f.headline), *(f"- {machine_line(*m)}" for m in f.machines))


def answer_paragraph(f: Findings) -> str:
    """answer_lines() as the report's first paragraph: the sentences on one line, each machine on its own."""
    lines = answer_lines(f)
    said = [x for x in lines if not x.startswith("- ")]
    return "\n".join([" ".join(said), *lines[len(said):]])
