"""Interception backends: one interface (base.Backend), many mechanisms.

The C backends come from the driver's own registry (tracers/registry.c);
backends written in Python are listed here.
"""
from __future__ import annotations

from .base import Backend, BackendFailed, BackendUnavailable, RunResult, RunSpec
from .driver import driver_backends
from .python_ptrace_sysemu import PythonPtraceSysemu

__all__ = ["Backend", "BackendFailed", "BackendUnavailable", "RunResult", "RunSpec",
           "all_backends", "get_backend"]


def all_backends() -> list[Backend]:
    return [*driver_backends(), PythonPtraceSysemu()]


def get_backend(name: str) -> Backend:
    for backend in all_backends():
        if backend.name == name:
            return backend
    raise KeyError(name)
