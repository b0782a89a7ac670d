"""The machine a run's ratios hold on, read from a results file without pandas or numpy.

`bench check --baseline FILE` must refuse another machine's baseline before it measures anything,
and at once: this module is all that refusal imports (besides bench.results and what
bench.measure.continuous needs to know this machine), so the refusal never waits for pandas, scipy
or pyperf.  bench.regression builds the check itself on it.
"""
from __future__ import annotations

import json
import math
import pathlib
import shlex

from bench.errors import UsageError
from bench.results import facts

BASELINE_KEY = "vmexec_baseline"
#: What must match for two runs to be compared (their machine): field -> name shown.  A ratio
#: holds only on the kernel, emulator, compiler and CPU it was measured with: any of them moves a
#: path length or a price.  Fields a run did not record (older files) are not compared.
MACHINE = {"kind": "kind", "kernel": "kernel release", "vmexec_cpu_model": "CPU model",
           "host_cpu_model": "host CPU model", "qemu": "QEMU version", "compiler": "compiler",
           "accelerator": "accelerator", "timing": "timing"}


def from_metadata(meta: dict) -> dict[str, str]:
    """The MACHINE fields ("" where none was recorded) of one case's pyperf metadata, read as
    bench.stats.load reads them (bench.regression.machine gives the same from its frame)."""
    where = facts(meta)     # measured or detected, never a tag
    return {"kind": "guest" if where["vm"] else "host", "kernel": str(meta.get("vmexec_kernel", "")),
            "vmexec_cpu_model": str(meta.get("vmexec_cpu_model", "")),
            "host_cpu_model": where["host_cpu_model"], "qemu": where["qemu"],
            "compiler": str(meta.get("vmexec_compiler", "")),
            "accelerator": where["accelerator"], "timing": where["timing"]}


def of_suite(path: pathlib.Path, data: dict) -> dict[str, str]:
    """The machine of a pyperf suite's first case (the suite's, its case's and its first run's metadata)."""
    try:
        first = data["benchmarks"][0]
        meta = {**data.get("metadata", {}), **first.get("metadata", {}), **first["runs"][0].get("metadata", {})}
    except (KeyError, IndexError, TypeError, AttributeError):
        raise UsageError(f"{path}: not a pyperf suite with a measured case") from None
    return from_metadata(meta)


def differing(a: dict, b: dict) -> list[str]:
    """The MACHINE fields recorded by both a and b that differ.  On two hosts the host CPU model is the
    CPU model: named once."""
    hosts = a.get("kind") == b.get("kind") == "host"
    return [k for k in MACHINE if a.get(k) and b.get(k) and a[k] != b[k] and not (hosts and k == "host_cpu_model")]


def differences(a: dict, b: dict) -> str:
    """Every field differing(a, b), as 'NAME 'A' vs 'B'; ...' ("" if none)."""
    return "; ".join(f"{MACHINE[k]} {a[k]!r} vs {b[k]!r}" for k in differing(a, b))


def baseline_metadata(path: pathlib.Path, data: dict) -> dict:
    """A baseline file's BASELINE_KEY metadata, checked: {"noise", "runs", "rerun", ...}, or a one-line UsageError."""
    raw = data.get("metadata", {}).get(BASELINE_KEY) if isinstance(data.get("metadata"), dict) else None
    if raw is None:
        raise UsageError(f"{path}: not a baseline (no {BASELINE_KEY} metadata): make one with `bench baseline`")
    try:
        meta = json.loads(raw)
        noise, runs, rerun = meta["noise"], meta["runs"], meta["rerun"]
        if not (isinstance(runs, list) and isinstance(rerun, list) and all(isinstance(a, str) for a in rerun)):
            raise TypeError("runs and rerun must be lists")
        # A non-finite centre or spread would make every threshold NaN: bad input like a non-finite value.
        bad = [label for label, n in noise.items()
               if not (0 < n["centre"] < math.inf and 0 <= n["sd"] < math.inf and n["runs"] >= 2)]
    except (TypeError, ValueError, KeyError, AttributeError) as e:     # json's errors are ValueErrors
        raise UsageError(f"{path}: malformed {BASELINE_KEY} metadata ({type(e).__name__}: {e})") from None
    if bad:
        raise UsageError(f"{path}: case {bad[0]}: its noise in {BASELINE_KEY} is not finite")
    return meta


def rebaseline_command(path: pathlib.Path, rerun: list[str], timing: str) -> str:
    """The commands that make a baseline like this one anew on the machine at hand."""
    runs = "3" if timing == "icount" else "5"
    return (f"`python -m bench {shlex.join(rerun)}` {runs} or more times, then "
            f"`python -m bench baseline RESULTS... --output {path} --force`")


def refuse_foreign(path: pathlib.Path, there: dict[str, str], here: dict[str, str], rerun: list[str],
                   force: bool = False) -> None:
    """One-line UsageError naming every field in which `here` differs from the baseline's machine `there`,
    and what to do, unless forced.  Fields missing from `here` (not known before a run) are not compared."""
    difference = differences(there, here)
    if difference and not force:
        raise UsageError(f"the baseline {path} was measured on another machine (baseline vs here: {difference}): "
                         f"make your own baseline here: {rebaseline_command(path, rerun, there.get('timing', ''))}; "
                         "or judge two commits on this machine with `bench check --against REV` (no baseline "
                         "needed); --force compares anyway")
