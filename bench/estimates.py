"""The hardware estimates the verdict may judge instead of the distortion bracket: the host cost
model's prediction (bench.anatomy.model) and the estimate composed from measured prices
(bench.anatomy.composed), each with the threshold, fixed in advance, that decides whether it is judged.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from bench.anatomy.composed import Composition
from bench.anatomy.counts import MODEL_VARIANT
from bench.anatomy.model import CostModel

#: The host cost model (bench.anatomy: host ns/syscall from the guest anatomy) replaces the distortion
#: bracket as the interval judged only if every mechanism it was fitted on, left out of the fit, is
#: predicted within this relative error.  Chosen before any prediction of the refitted model was
#: looked at, from the bracket it would replace: the C mechanisms' host-versus-guest distortions span
#: about a factor of two (0.46-1.08 on the development host, issue 13), i.e. about ±40% around their
#: centre.  A model is worth more only if it is clearly tighter than that: at ±20%, half of it, the
#: model's interval (the prediction divided by 1 + each extreme leave-one-out error) spans at most
#: 1.2 / 0.8 = 1.5x, against the bracket's 2.3x.
MODEL_MAX_LOO_ERROR = 0.20
#: The hardware estimate composed from measured prices (bench.anatomy.composed, issue 18 item 3) is judged only
#: if every C mechanism measured on the host is composed within this relative error by the same
#: prices; otherwise the distortion bracket is judged.  Fixed in the issue, before any composed
#: result was seen.
COMPOSED_MAX_ERROR = 0.20


@dataclasses.dataclass(frozen=True)
class ModelPrediction:
    """The host cost model's process_vm_exec prediction (bench.anatomy.model.CostModel), as the verdict uses it."""
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

    @classmethod
    def of(cls, m: CostModel) -> ModelPrediction:
        return cls(m.speedup, *m.speedup_range, m.candidate_ns, m.baseline_ns, dict(m.loo),
                   m.variant == MODEL_VARIANT, m.inputs)

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
    """The hardware estimate composed from measured prices (bench.anatomy.composed.Composition), as the verdict uses it."""
    speedup: float              # PTRACE_SYSEMU measured on the host ÷ process_vm_exec composed
    low: float                  # the interval: the composed CI widened by the worst relative errors,
    high: float                 # and PTRACE_SYSEMU's measured CI
    candidate_ns: float         # process_vm_exec, composed host ns/syscall
    baseline_ns: float          # PTRACE_SYSEMU, measured host ns/syscall
    errors: dict                # C mechanism -> relative error (composed / measured - 1)
    inputs: str = ""
    covers: str = ("the composition's 95% CI, widened by its worst errors (the largest uncertainty), and "
                   "PTRACE_SYSEMU's CI")    # what the interval covers, for the reader
    machine: str = ""           # the CPU model and kernel the prices were measured on

    @property
    def worst(self) -> str:
        return max(self.errors, key=lambda k: abs(self.errors[k]))

    @property
    def worst_error(self) -> float:
        return abs(self.errors[self.worst])

    @classmethod
    def of(cls, c: Composition) -> ComposedPrediction:
        return cls(c.speedup, *c.speedup_range, c.candidate_ns, c.baseline_ns, dict(c.errors), c.inputs, c.covers,
                   c.machine)

    def why_not_judged(self) -> str | None:
        """None if the verdict may judge this interval (COMPOSED_MAX_ERROR), else why not."""
        if self.worst_error > COMPOSED_MAX_ERROR:
            return (f"{self.worst} is composed {100 * self.errors[self.worst]:+.1f}% off its measured time, "
                    f"beyond ±{100 * COMPOSED_MAX_ERROR:g}%")
        return None

    def phrase(self) -> str:
        return (f"{self.speedup:.2f}x ({self.low:.2f}–{self.high:.2f}, which covers {self.covers}; process_vm_exec {self.candidate_ns:,.0f} ns/syscall composed "
                f"against PTRACE_SYSEMU's {self.baseline_ns:,.0f} ns measured on the host)")

    def errors_phrase(self) -> str:
        return ", ".join(f"{k} {100 * v:+.1f}%" for k, v in sorted(self.errors.items(), key=lambda kv: kv[1]))


# ------------------------------------------------------------------------------ per machine

#: Where a kernel's configuration hash may be recorded: a guest run's metadata, or its anatomy's meta (a
#: twin of the host's kernel, issue 26 item 1, records the hash of the configuration it was built from).
CONFIG_KEYS = ("vmexec_kernel_config_sha256", "config_sha256", "kernel_config_sha256")


@dataclasses.dataclass(frozen=True)
class Estimates:
    """One machine's hardware estimates: the cost model and the composition (raw, for their report sections),
    each with why there is none, and the configuration hash of the kernel its anatomy was counted on."""
    model: CostModel | None
    no_model: str
    composed: Composition | None
    no_composed: str
    config: str = ""
    #: where the prices were not admissible: the same composition marked refused, a diagnosis shown beside the
    #: other machines' estimates and never judged
    diagnosis: Composition | None = None

    @property
    def model_prediction(self) -> ModelPrediction | None:
        return ModelPrediction.of(self.model) if self.model else None

    @property
    def composed_prediction(self) -> ComposedPrediction | None:
        return ComposedPrediction.of(self.composed) if self.composed else None


def machine_key(row) -> tuple[str, str]:
    """(CPU model, kernel) of a stats.load() row or a results file's first row: a machine's name."""
    return (str(row.get("vmexec_cpu_model") or row.get("cpu_model_name") or ""), str(row["kernel"]))


def per_machine(suites, anatomy_directory: Path) -> dict[tuple[str, str], Estimates]:
    """Each host machine's estimates among suites (results files), in the order of their newest host run."""
    from bench import results
    from bench.anatomy.composed import composed_model, host_machines
    from bench.anatomy.counts import variant_directory
    from bench.anatomy.model import fitted_model

    anatomy_directory = Path(anatomy_directory)
    meta_path = variant_directory(anatomy_directory, MODEL_VARIANT) / "anatomy.json"
    meta = json.loads(meta_path.read_text()).get("meta", {}) if meta_path.is_file() else {}
    config = next((str(meta[k]) for k in CONFIG_KEYS if meta.get(k)), "")
    out = {}
    machines = host_machines(suites)
    order = sorted(machines, key=lambda k: max(results.recorded_start(results.read_json(p)) for p in machines[k]))
    for key in order:
        paths = machines[key]
        model, no_model = fitted_model(paths, anatomy_directory)
        # composed once, as a diagnosis where the prices are not admissible (then no estimate, and why)
        composed, no_composed = (composed_model(paths, anatomy_directory, diagnose=True)
                                 if anatomy_directory.is_dir() else (None, ""))
        diagnosis = composed if composed is not None and composed.refused else None
        if diagnosis is not None:
            composed, no_composed = None, diagnosis.refused
        out[key] = Estimates(model, no_model, composed, no_composed, config, diagnosis)
    return out
