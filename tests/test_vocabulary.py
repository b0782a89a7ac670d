"""One vocabulary across commands: the new spellings parse into the same place as the old, which stay
accepted (hidden from --help)."""
import contextlib
import io

import pytest

from bench.commands import cli


def parse(*argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        args = cli.build_parser().parse_args(list(argv))
    return args, err.getvalue()


@pytest.mark.parametrize("new, old, dest, expected", [
    (["kernel", "build", "--kernel-variant", "debug"], ["kernel", "build", "--variant", "debug"],
     "kernel_variant", "debug"),
    (["vm", "run", "--vcpus", "4"], ["vm", "run", "--cpus", "4"], "cpus", 4),
    (["vm", "run", "--output-dir", "d"], ["vm", "run", "--results", "d"], "results", "d"),
    (["vm", "rfc", "--output-dir", "d"], ["vm", "rfc", "--results", "d"], "results", "d"),
    (["kernel", "package", "--output-dir", "d"], ["kernel", "package", "--output", "d"], "output", "d"),
    (["anatomy", "--output-dir", "d"], ["anatomy", "--output", "d"], "output", "d"),
    (["prices-anatomy", "--output-dir", "d"], ["prices-anatomy", "--output", "d"], "output", "d"),
    (["report", "--output-dir", "d"], ["report", "--output", "d"], "output", "d"),
    (["history", "--output-dir", "d"], ["history", "--output", "d"], "output", "d"),
])
def test_new_and_old_spellings_mean_the_same(new, old, dest, expected):
    a, _ = parse(*new)
    b, note = parse(*old)
    assert str(getattr(a, dest)) == str(getattr(b, dest)) == str(expected)
    assert note == ""       # silent: an error stays one line


def test_defaults_hold_without_either_spelling():
    assert parse("kernel", "build")[0].kernel_variant == "bench"
    assert parse("vm", "run")[0].cpus == 2
    assert parse("vm", "run")[0].results is None


def test_anatomy_model_takes_its_host_runs_positionally_or_as_options():
    a, _ = parse("anatomy-model", "a.json", "--host", "b.json")
    assert [str(p) for p in a.host_files] == ["a.json"] and [str(p) for p in a.host] == ["b.json"]


def test_helps_use_the_new_words():
    sub = cli.build_parser()._subparsers._group_actions[0].choices
    vm_run = sub["vm"]._subparsers._group_actions[0].choices["run"].format_help()
    assert "--vcpus" in vm_run and "--output-dir" in vm_run and "--results" not in vm_run
    assert " --cpus" not in vm_run.replace("`bench run\n                        --cpus`", "")
    build = sub["kernel"]._subparsers._group_actions[0].choices["build"].format_help()
    assert "--kernel-variant" in build and "--variant " not in build
    assert "Not pyperf's `check`" in sub["check"].format_help()
