"""The main job's sense of time: 'case k of N' with what is left, on the host's clock."""
from bench.measure import runner
from bench.measure import vm


def test_progress_estimates_what_is_left_from_the_cases_done():
    ticks = iter([100.0, 130.0, 160.0, 400.0])
    p = runner.Progress(4, clock=lambda: next(ticks))
    assert p.line(0, "a") == "case 1 of 4: a (0 s so far)"
    assert p.line(1, "b") == "case 2 of 4: b (30 s so far, about 2 min left)"
    assert p.line(2, "c") == "case 3 of 4: c (60 s so far, about 60 s left)"
    assert p.line(3, "d") == "case 4 of 4: d (5 min so far, about 2 min left)"


def test_a_guests_progress_lines_are_retimed_by_the_host_clock(capsys):
    echo = vm.echo_with_host_clock()
    echo("case 1 of 2: native:pin=in-process (0 s so far)")
    echo("case 2 of 2: ptrace-sysemu:pin=same (40 min so far, about 40 min left)")
    echo("an ordinary console line")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "case 1 of 2: native:pin=in-process (0 s so far) [host clock]"
    assert lines[1].startswith("case 2 of 2: ptrace-sysemu:pin=same (0 s so far, about 0 s left)")
    assert lines[2] == "an ordinary console line"
