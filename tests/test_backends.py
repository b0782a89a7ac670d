"""Every available backend really intercepts and emulates, and its checks can fail."""
import os

import pytest

import tracers
from tracers import BackendFailed, RunSpec

N = 5000


def backend_names():
    return [b.name for b in tracers.all_backends()]


@pytest.mark.parametrize("name", backend_names())
@pytest.mark.parametrize("pin", [(0, 0), (0, 1)], ids=["same-cpu", "cross-cpu"])
def test_intercepts_exactly_n_syscalls(name, pin):
    backend = tracers.get_backend(name)
    if backend.unavailable():
        pytest.skip(f"unavailable here: {backend.unavailable()}")
    result = backend.run(RunSpec(N, *pin))
    assert (result.calls, result.matched) == (N, N)
    assert result.elapsed_ns > 0


@pytest.mark.parametrize("name", [n for n in backend_names() if n != "native"])
def test_wrong_injected_value_is_detected(name):
    backend = tracers.get_backend(name)
    if backend.unavailable():
        pytest.skip(f"unavailable here: {backend.unavailable()}")
    with pytest.raises(BackendFailed, match="wrong|matched"):
        backend.run(RunSpec(100, 0, 0, inject=556, expect=555))


def test_backend_list_is_not_empty_and_core_backends_run_here(available_backends):
    names = {b.name for b in available_backends}
    assert {"native", "ptrace-sysemu", "ptrace-syscall", "python-ptrace-sysemu"} <= names


@pytest.mark.parametrize("name", backend_names())
def test_every_backend_writes_the_pages_it_is_asked_to(name):
    """A pages-sweep point measures what its label says: the tracee reports the pages it wrote."""
    backend = tracers.get_backend(name)
    if backend.unavailable():
        pytest.skip(f"unavailable here: {backend.unavailable()}")
    for pages in (0, 3):
        result = backend.run(RunSpec(200, 0, 0, pages=pages))
        assert result.pages == pages and result.matched == 200


def test_a_tracer_written_in_python_leaves_the_callers_affinity_alone():
    """bench run's main process runs it in its preflight; its pyperf workers inherit its affinity."""
    backend = tracers.get_backend("python-ptrace-sysemu")
    if backend.unavailable():
        pytest.skip(f"unavailable here: {backend.unavailable()}")
    before = os.sched_getaffinity(0)
    backend.run(RunSpec(200, min(before), min(before)))
    assert os.sched_getaffinity(0) == before
    with pytest.raises(BackendFailed):
        backend.run(RunSpec(200, min(before), min(before), inject=556, expect=555))
    assert os.sched_getaffinity(0) == before
