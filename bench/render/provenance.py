"""What a report stands on: every input file with the kernel and the machine it was measured on, how far
each run can be trusted (the busy-host state it recorded, the cases pyperf calls unstable, pyperf's own
checks) and the environment each run recorded; as plain data and as blocks of bench.render.document,
which bench.render.report places beside the verdict and in its later sections.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import pandas as pd
import pyperf

from bench import results
from bench.anatomy.counts import MODEL_VARIANT, variant_directory
from bench.errors import BenchError

#: pyperf's warnings (bench.render.summary.WARNING_KINDS) that say a case's values are unstable: the spread
#: and the outliers.  "Not enough samples for 1% precision" and "values under 1 ms" are about precision
#: and the timer, not stability, and flag nearly every --fast case.
UNSTABLE_KINDS = ("unstable (std dev >= 10% of the mean)", "outliers (min or max 50% from the mean)")
NOT_RECORDED = "not recorded"


@dataclasses.dataclass(frozen=True)
class Input:
    """One file a report was made from, and what it was measured on."""
    path: pathlib.Path
    what: str               # host run, guest run, RFC replica, anatomy, prices
    kernel: str             # the kernel release measured
    kernel_key: str         # the harness's kernel build key (source, patches, config hashed), or the config's hash
    cpu: str                # the CPU model the measuring kernel saw
    host: str               # the machine under it: host CPU model and kernel


def _meta(data: dict) -> dict:
    first = (data.get("benchmarks") or [{}])[0]
    run = (first.get("runs") or [{}])[0]
    return {**data.get("metadata", {}), **first.get("metadata", {}), **run.get("metadata", {})}


def _or(value) -> str:
    return str(value) if value not in (None, "") else NOT_RECORDED


def of_result(path: pathlib.Path) -> Input:
    """The Input of a results file (a pyperf suite or an RFC replica)."""
    data = results.read_json(path)
    kind = results.classify(data)
    if kind == "rfc":
        return Input(path, "RFC replica", _or(data.get("kernel")), _or(data.get("kernel_key")),
                     NOT_RECORDED, f"{_or(data.get('accelerator'))}/{_or(data.get('timing'))} guest")
    m = _meta(data)
    cpu = _or(m.get("vmexec_cpu_model") or m.get("cpu_model_name"))
    if kind == "host":
        where = f" ({m['vmexec_accelerator']})" if m.get("vmexec_accelerator") else ""
        config = f"config sha256 {m['vmexec_kernel_config']}" if m.get("vmexec_kernel_config") else NOT_RECORDED
        return Input(path, f"host run{where}", _or(m.get("vmexec_kernel")), config, cpu,
                     f"{cpu}, kernel {_or(m.get('vmexec_kernel'))} (itself)")
    where = results.facts(m)        # measured or detected, never a tag
    host = f"{_or(where['host_cpu_model'])}, kernel {_or(where['host_kernel'])}"
    clock = f"{_or(where['accelerator'])}/{_or(where['timing'])}"
    key = (where["kernel_key"]
           or (f"config sha256 {m['vmexec_kernel_config']}" if m.get("vmexec_kernel_config") else ""))
    return Input(path, f"guest run ({clock})", _or(m.get("vmexec_kernel")), _or(key),
                 cpu, host)


def of_anatomy(path: pathlib.Path) -> Input:
    """The Input of an instruction anatomy (anatomy.json: counted in a guest, on the kernel its meta names)."""
    meta = results.read_json(path).get("meta", {})     # one line for a file that is no JSON object
    variant = f" (variant {meta['kernel_variant']})" if meta.get("kernel_variant") else ""
    return Input(path, "anatomy", _or(meta.get("guest_kernel")) + variant, _or(meta.get("kernel_key")),
                 "the guest's (TCG)", f"{_or(meta.get('host_cpu_model'))}, kernel {_or(meta.get('host_kernel'))}, "
                                      f"QEMU {_or(meta.get('qemu'))}")


def of_prices(path: pathlib.Path) -> Input:
    """The Input of a prices record (bench.measure.prices: measured on a host)."""
    record = json.loads(path.read_text())
    cpu = _or(record.get("cpu_model"))
    return Input(path, "prices", _or(record.get("kernel")), _or(record.get("kernel_config")), cpu,
                 f"{cpu}, kernel {_or(record.get('kernel'))} (itself; {_or(record.get('host'))})")


@dataclasses.dataclass(frozen=True)
class Health:
    """How far one run can be trusted: what pyperf flags in it and whether the host was busy."""
    run_id: str
    cases: int
    unstable: list[str]         # cases pyperf calls unstable (UNSTABLE_KINDS)
    flagged: int                # cases with any pyperf warning
    busy: str | None            # the busy-host note (results.busy_warning), or None

    @property
    def mostly_unstable(self) -> bool:
        return self.cases > 0 and 2 * len(self.unstable) > self.cases


def health(path: pathlib.Path, run_id: str) -> Health:
    from bench.render.summary import pyperf_warnings
    import pyperf

    found = pyperf_warnings(path)
    unstable = sorted({c for kind in UNSTABLE_KINDS for c in found.get(kind, [])})
    flagged = len({c for names in found.values() for c in names})
    cases = len(pyperf.BenchmarkSuite.load(str(path)).get_benchmarks())
    try:
        busy = results.busy_warning([path])
    except (BenchError, OSError, ValueError):
        busy = None
    return Health(run_id, cases, unstable, flagged, busy)


def caution(healths: list[Health]) -> str:
    """The clause the answer opens with when a run it draws on is unstable in most cases (or measured on a
    busy host as well): '' when none is."""
    shaky = [h for h in healths if h.mostly_unstable]
    if not shaky:
        return ""
    runs = "; ".join(f"`{h.run_id}`: {len(h.unstable)} of {h.cases} cases" for h in shaky)
    busy = " on a busy host" if any(h.busy for h in shaky) else ""
    return f"Measured{busy} in runs pyperf calls unstable ({runs}), so these figures may move with load:"


# --------------------------------------------------------------------------- blocks (bench.render.document)

def trust_blocks(health) -> list:
    """Beside the verdict: each run's busy-host warning and pyperf's count of unstable cases."""
    blocks = [("p", f"*Measured on a busy host:* {h.busy.removeprefix('warning: ')}") for h in health if h.busy]
    counts = [f"`{h.run_id}`: {len(h.unstable)} of {h.cases} cases unstable (std dev ≥ 10% of the mean, or "
              f"outliers), {h.flagged} with any pyperf warning" for h in health]
    if counts:
        blocks.append(("p", "*pyperf's stability checks, which weaken the verdict where they flag most cases:* "
                            + "; ".join(counts) + " (details below, under pyperf's stability checks)."))
    return blocks


def inputs_blocks(inputs: list[Input], name=str) -> list:
    """The Inputs as a table, each file named by name(path)."""
    rows = [[f"`{name(s.path)}`", s.what, s.kernel, s.kernel_key, s.cpu, s.host] for s in inputs]
    return [("p", "Every file this report was made from, with the kernel it measured and the machine under it "
                  f"({NOT_RECORDED}: older files lack the field)."),
            ("table", ["file", "what", "kernel", "kernel build key or config hash", "CPU", "machine (CPU, kernel)"], rows)]


def sources(paths: list[pathlib.Path], where: pathlib.Path, model, composed) -> list[Input]:
    """Every input: the result files, and the anatomy under where (the report's anatomy directory) and the
    prices that the model and the composed estimate used."""
    out = [of_result(p) for p in paths]
    used = [where / "anatomy.json"]        # the Instruction anatomy section's
    if model is not None:
        used.append(variant_directory(where, MODEL_VARIANT) / "anatomy.json")
    if composed is not None and composed.counted:
        mech = pathlib.Path(composed.counted)
        used += [mech / "anatomy.json", mech / "parts" / "anatomy.json"]
    out += [of_anatomy(p) for p in dict.fromkeys(used) if p.is_file()]
    if composed is not None and composed.record:      # the prices record the composition used
        out.append(of_prices(pathlib.Path(composed.record)))
    return out


def stability_checks(path: pathlib.Path) -> dict[str, list[str]]:
    """{case: pyperf's warnings}, from `python -m pyperf check` (its public command) on one suite."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pyperf", "check", str(path)], capture_output=True,
                         text=True, timeout=300).stdout.splitlines()
    checks: dict[str, list[str]] = {}
    case = None     # a suite of one case: pyperf prints no title, and its warnings are that case's
    for i, line in enumerate(out):
        if i + 1 < len(out) and out[i + 1] and set(out[i + 1]) == {"-"} and len(out[i + 1]) == len(line):
            case = line
        elif line.startswith("* "):
            case = case or pyperf.BenchmarkSuite.load(str(path)).get_benchmark_names()[0]
            checks.setdefault(case, []).append(line[2:])
    return checks


def stability_blocks(suites: list[pathlib.Path], run_ids: list[str], summary: pd.DataFrame) -> list:
    blocks = [("p", "pyperf's own checks of each case (`python -m pyperf check FILE`): the warnings it "
                    "prints, case by case. A case flagged here is measured with less confidence than its "
                    "CI alone suggests.")]
    for path, run_id in zip(suites, run_ids):
        checks = stability_checks(path)
        total = int((summary["run_id"] == run_id).sum())
        blocks.append(("p", f"`{run_id}`: {len(checks)} of {total} cases flagged."))
        if checks:
            blocks.append(("list", [f"`{case}`: " + "; ".join(w) for case, w in checks.items()]))
    return blocks


def environment(df: pd.DataFrame) -> list[dict]:
    """What each run was measured on, one dict per run, as its metadata records it (for the Environment section)."""
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


def environment_blocks(df: pd.DataFrame) -> list:
    blocks = []
    for env in environment(df):
        mitig = env.pop("mitigations")
        affected = [f"{k}: {v}" for k, v in mitig.items() if v != "Not affected"]
        items = [f"**{k}**: `{v}`" if k in ("command", "commit") else f"**{k}**: {v}"
                 for k, v in env.items() if k != "run"]
        items.append("**mitigations**: " + ("; ".join(affected) if affected else "none active")
                     + (f" ({len(mitig) - len(affected)} others: Not affected)" if mitig else " (not recorded)"))
        blocks += [("h", 3, env["run"]), ("list", items)]
    return blocks


