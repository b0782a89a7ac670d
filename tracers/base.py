"""The one interface every interception backend implements.

A backend runs the tracee's syscall loop under its mechanism and returns what
it measured; fork, exec and attach are set-up and are not timed.  Plain data
goes in (RunSpec) and comes out (RunResult), as in pyperf.
"""
from __future__ import annotations

import abc
import dataclasses

@dataclasses.dataclass(frozen=True)
class RunSpec:
    syscalls: int                      # measured syscalls per tracee
    cpu_tracer: int | None = None      # None: not pinned
    cpu_tracee: int | None = None
    pages: int = 0                     # pages the tracee writes between two syscalls
    parallel: int = 1                  # tracer/tracee pairs at once
    inject: int | None = None          # value emulated; None: the driver's default
    expect: int | None = None          # value the tracee checks for; None: the driver's default
    timeout: float | None = None       # seconds, whole run; None: the driver's default


@dataclasses.dataclass(frozen=True)
class RunResult:
    backend: str
    syscalls: int                      # per tracee
    parallel: int
    calls: int                         # made, summed over tracees
    matched: int                       # returned the expected value
    elapsed_ns: int                    # the interception loop only
    pages: int                         # pages the tracee really wrote between two syscalls
    first_call_ns: int | None = None   # backends that patch a site at its first trap: that call's cost

    @property
    def ns_per_syscall(self) -> float:
        """Inverse throughput: wall time over every call of every tracee."""
        return self.elapsed_ns / (self.syscalls * self.parallel)


class BackendFailed(Exception):
    """The run did not produce a valid measurement (mismatch, crash, timeout)."""


class BackendUnavailable(BackendFailed):
    """The mechanism cannot run on this kernel or with these privileges."""


class Backend(abc.ABC):
    name: str
    description: str
    #: True when the tracee intercepts its own syscalls (no second process).
    in_process: bool

    @property
    def kind(self) -> str:
        """tracer, in-process, or binary rewriting (in-process, by rewriting the loop's syscalls)."""
        return "in-process" if self.in_process else "tracer"

    @abc.abstractmethod
    def unavailable(self) -> str | None:
        """None when usable here, else the reason, e.g. 'ENOSYS: ...'."""

    @abc.abstractmethod
    def run(self, spec: RunSpec) -> RunResult:
        """Run the loop once; raise BackendFailed/BackendUnavailable."""
