"""What a run measures: a list of cases (backend x pinning x scaling point).

Each case is a bench.results.Case as this run places it (Planned): plain data,
serialised to JSON for the pyperf worker processes, which must register
exactly the same list in the same order.
"""
from __future__ import annotations

import dataclasses
import json

from bench.results import IN_PROCESS, Case
from tracers import Backend, RunSpec

PINS = ("same", "cross", "none")


@dataclasses.dataclass(frozen=True)
class Planned(Case):
    """A Case as this run places it: the CPUs of its tracer and tracee, and its time limit."""
    cpu_tracer: int | None = None
    cpu_tracee: int | None = None
    timeout: float | None = None    # seconds for one backend run; None: the driver's default

    @property
    def name(self) -> str:
        return self.encode()

    def spec(self, syscalls: int) -> RunSpec:
        return RunSpec(syscalls=syscalls, cpu_tracer=self.cpu_tracer, cpu_tracee=self.cpu_tracee,
                       pages=self.pages, parallel=self.parallel, timeout=self.timeout)

    def metadata(self) -> dict[str, str | int]:
        return {**super().metadata(),
                "vmexec_cpu_tracer": "none" if self.cpu_tracer is None else self.cpu_tracer,
                "vmexec_cpu_tracee": "none" if self.cpu_tracee is None else self.cpu_tracee}


def _cpus_for(pin: str, cpus: tuple[int, int]) -> tuple[int | None, int | None]:
    return {"same": (cpus[0], cpus[0]), "cross": cpus, "none": (None, None),
            IN_PROCESS: (None, cpus[0])}[pin]


def build_plan(backends: list[Backend], pins: list[str], pages: list[int],
               parallel: list[int], cpus: tuple[int, int], timeout: float | None = None) -> list[Planned]:
    """Every backend at every pinning; then the pages and parallel sweeps.

    In-process backends have no second process to place: they run once,
    with the tracee on the first CPU.  The pages sweep uses the first pinning
    asked for.  The parallel sweep leaves placement to the scheduler for every
    backend, in-process ones included, so M pairs can use every CPU.
    """
    def case(b: Backend, pin: str, pages: int = 0) -> Planned:
        pin = IN_PROCESS if b.in_process else pin
        return Planned(b.name, pin, pages, 1, *_cpus_for(pin, cpus), timeout=timeout)

    cases: list[Planned] = []
    for b in backends:
        for pin in (pins[:1] if b.in_process else pins):
            cases.append(case(b, pin))
    for k in (k for k in pages if k):
        cases += [case(b, pins[0], pages=k) for b in backends]
    for m in (m for m in parallel if m > 1):
        cases += [Planned(b.name, "none", 0, m, None, None, timeout) for b in backends]
    return list(dict.fromkeys(cases))


def dumps(cases: list[Planned]) -> str:
    return json.dumps([dataclasses.asdict(c) for c in cases])


def loads(text: str) -> list[Planned]:
    return [Planned(**c) for c in json.loads(text)]
