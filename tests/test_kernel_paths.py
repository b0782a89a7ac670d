"""A kernel given by path (bench.measure.kernel.variant_from_path): what a kernel developer changes, a
patch series, a source tree or a config fragment, built and booted like a variant (issue 29, two kernels)."""
import shutil
import subprocess
import sys

import pytest

from bench.errors import BenchError
from bench.measure import kernel


def _series(tmp_path, *extra):
    d = tmp_path / "series-dir"
    d.mkdir()
    for p in kernel.patches("bench"):
        shutil.copy(p, d)
    names = [p.name for p in kernel.patches("bench")]
    for patch in extra:
        shutil.copy(patch, d)
        names.append(patch.name)
    (d / "series").write_text("\n".join(names) + "\n")
    return d


def test_a_kernel_given_by_path_never_shares_a_named_variants_cache_entry(tmp_path):
    """Its release differs (-vmexec-series): sharing the key made a build of one replace the other's."""
    same = _series(tmp_path)
    assert kernel.cache_key(str(same)) != kernel.cache_key("bench")
    (tmp_path / "again").mkdir()
    assert kernel.cache_key(str(same)) == kernel.cache_key(str(_series(tmp_path / "again")))
    plant = kernel.KERNEL_DIR.parent / "tests" / "data" / "plant-syscall-entry.patch"
    (tmp_path / "b").mkdir()
    planted = _series(tmp_path / "b", plant)
    assert kernel.patches(str(planted))[-1].name == plant.name
    assert kernel.cache_key(str(planted)) != kernel.cache_key("bench")


def test_a_config_fragment_goes_on_top_of_the_benchmark_config(tmp_path):
    frag = tmp_path / "hz.fragment"
    frag.write_text("CONFIG_HZ_1000=y\n")
    v = kernel.get_variant(str(frag))
    assert kernel.fragments(v.name)[-1] == frag and kernel.fragment_options(v.name)["CONFIG_HZ_1000"] == "y"
    assert kernel.cache_key(v.name) != kernel.cache_key("bench")


def test_a_source_tree_is_used_as_it_is_and_its_edits_are_a_new_build(tmp_path):
    tree = tmp_path / "linux"
    (tree / "arch" / "x86").mkdir(parents=True)
    (tree / "Makefile").write_text("# a tree\n")
    (tree / "Kconfig").write_text("# a tree\n")
    (tree / "arch" / "x86" / "Kconfig").write_text("config X86\n")
    v = kernel.get_variant(str(tree))
    assert v.source_dir == tree and kernel.patches(v.name) == []
    # A tree without the series asks for no process_vm_exec option (like `unpatched`).
    assert "CONFIG_PROCESS_VM_EXEC" not in kernel.fragment_options(v.name)
    before = kernel.cache_key(v.name)
    (tree / "arch" / "x86" / "entry.c").write_text("/* a change */\n")
    assert kernel.cache_key(v.name) != before


@pytest.mark.parametrize("arg", ["nope", "/no/such/path"])
def test_an_unknown_kernel_is_one_line_and_exit_2(arg):
    proc = subprocess.run([sys.executable, "-m", "bench", "kernel", "build", "--kernel-variant", arg],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "patch series directory" in proc.stderr
    with pytest.raises(BenchError):
        kernel.get_variant(arg)


def test_the_build_says_how_far_it_got(tmp_path, monkeypatch):
    """A kernel build prints objects built of the total the last such build made, and the time left,
    instead of minutes of silence (issue 29)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(kernel, "KERNEL_DIR", tmp_path / "no-committed-sizes")
    log = tmp_path / "build.log"
    log.write_text("=== configure\n")
    lines = []
    progress = kernel._Progress(log, "bench", lines.append)
    assert "no total known yet" in progress.line(0, 10)
    with log.open("a") as f:
        f.write("  CC      kernel/fork.o\n  AR      kernel/built-in.a\nwarning: not an object\n  LD      vmlinux\n")
    with progress:
        pass
    assert kernel._expected_objects("bench") == 3      # remembered for the next build of this kind
    line = kernel._Progress(log, "bench", lines.append).line(1, 120)
    assert "1 of about 3 objects (33%) in 2 min 00 s" in line and "about 4 min left" in line
