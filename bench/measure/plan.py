"""What a run measures: a list of cases (backend x pinning x scaling point).

Cases are plain data, serialised to JSON for the pyperf worker processes,
which must register exactly the same list in the same order.
"""
from __future__ import annotations

import dataclasses
import json

from tracers import Backend, RunSpec

PINS = ("same", "cross", "none")
IN_PROCESS = "in-process"


@dataclasses.dataclass(frozen=True)
class Case:
    backend: str
    pin: str                    # same | cross | none | in-process
    cpu_tracer: int | None
    cpu_tracee: int | None
    pages: int = 0
    parallel: int = 1
    timeout: float | None = None    # seconds for one backend run; None: the driver's default

    @property
    def name(self) -> str:
        parts = [self.backend, f"pin={self.pin}"]
        if self.pages:
            parts.append(f"pages={self.pages}")
        if self.parallel > 1:
            parts.append(f"parallel={self.parallel}")
        return ":".join(parts)

    def spec(self, syscalls: int) -> RunSpec:
        return RunSpec(syscalls=syscalls, cpu_tracer=self.cpu_tracer, cpu_tracee=self.cpu_tracee,
                       pages=self.pages, parallel=self.parallel, timeout=self.timeout)

    def metadata(self) -> dict[str, str | int]:
        return {"vmexec_backend": self.backend, "vmexec_pin": self.pin,
                "vmexec_pages": self.pages, "vmexec_parallel": self.parallel,
                "vmexec_cpu_tracer": "none" if self.cpu_tracer is None else self.cpu_tracer,
                "vmexec_cpu_tracee": "none" if self.cpu_tracee is None else self.cpu_tracee}


def _cpus_for(pin: str, cpus: tuple[int, int]) -> tuple[int | None, int | None]:
    return {"same": (cpus[0], cpus[0]), "cross": cpus, "none": (None, None),
            IN_PROCESS: (None, cpus[0])}[pin]


def build_plan(backends: list[Backend], pins: list[str], pages: list[int],
               parallel: list[int], cpus: tuple[int, int], timeout: float | None = None) -> list[Case]:
    """Every backend at every pinning; then the pages and parallel sweeps.

    In-process backends have no second process to place: they run once,
    with the tracee on the first CPU.  The pages sweep uses the first pinning
    asked for.  The parallel sweep leaves placement to the scheduler for every
    backend, in-process ones included, so M pairs can use every CPU.
    """
    def case(b: Backend, pin: str, **kw) -> Case:
        pin = IN_PROCESS if b.in_process else pin
        return Case(b.name, pin, *_cpus_for(pin, cpus), timeout=timeout, **kw)

    cases: list[Case] = []
    for b in backends:
        for pin in (pins[:1] if b.in_process else pins):
            cases.append(case(b, pin))
    for k in (k for k in pages if k):
        cases += [case(b, pins[0], pages=k) for b in backends]
    for m in (m for m in parallel if m > 1):
        cases += [Case(b.name, "none", None, None, parallel=m, timeout=timeout) for b in backends]
    return list(dict.fromkeys(cases))


def dumps(cases: list[Case]) -> str:
    return json.dumps([dataclasses.asdict(c) for c in cases])


def loads(text: str) -> list[Case]:
    return [Case(**c) for c in json.loads(text)]
