"""What a run measures: the plan of cases (no timing involved)."""
import tracers
from bench import results
from bench.measure import plan


def backends(*names):
    return [tracers.get_backend(n) for n in names]


def test_parallel_sweep_leaves_every_backend_unpinned_in_process_ones_included():
    cases = plan.build_plan(backends("native", "ptrace-sysemu", "seccomp-trap"), ["same", "cross"], [0],
                            [1, 2, 4], (0, 1))
    swept = [c for c in cases if c.parallel > 1]
    assert len(swept) == 6
    for case in swept:
        assert (case.pin, case.cpu_tracer, case.cpu_tracee) == ("none", None, None), case.name


def test_in_process_backends_run_once_on_the_first_cpu_outside_the_parallel_sweep():
    cases = plan.build_plan(backends("native", "ptrace-sysemu"), ["same", "cross"], [0, 16], [1], (0, 1))
    native = [c for c in cases if c.backend == "native"]
    assert [c.name for c in native] == ["native:pin=in-process", "native:pin=in-process:pages=16"]
    assert all((c.cpu_tracer, c.cpu_tracee) == (None, 0) for c in native)
    assert {c.name for c in cases if c.backend == "ptrace-sysemu"} == {
        "ptrace-sysemu:pin=same", "ptrace-sysemu:pin=cross", "ptrace-sysemu:pin=same:pages=16"}


def test_a_planned_case_is_named_and_recorded_as_its_case():
    """The --pages walk: the plan makes a Case once; its name, metadata and driver spec come from it."""
    [case] = [c for c in plan.build_plan(backends("ptrace-sysemu"), ["same"], [0, 16], [1], (0, 1)) if c.pages]
    assert case.name == results.Case("ptrace-sysemu", "same", 16).encode() == "ptrace-sysemu:pin=same:pages=16"
    assert results.Case.recorded(case.name, case.metadata()) == results.Case("ptrace-sysemu", "same", 16)
    assert case.spec(100).pages == 16 and (case.cpu_tracer, case.cpu_tracee) == (0, 0)
    assert plan.loads(plan.dumps([case])) == [case]
