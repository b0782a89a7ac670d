"""`bench` inside a guest (issue 27 item 5): the guest's root is the host's, read-only over 9p, so a
complete cached kernel build must be usable without taking its lock, and the guest command must look
for kernels in the caller's cache (XDG_CACHE_HOME), not in the guest's scratch directory."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.measure import kernel, vm

REPO = Path(__file__).resolve().parent.parent

#: kernel.build() on a cache at sys.argv[1], its key and prerequisites stubbed: prints what it returned.
BUILD_IN = textwrap.dedent("""
    import os, sys
    os.environ["XDG_CACHE_HOME"] = sys.argv[1]
    from bench.measure import kernel
    from bench.errors import BenchError
    kernel._check_prerequisites = lambda: None
    kernel.cache_key = lambda variant="bench": "k"
    try:
        kb = kernel.build(log=lambda *_: None)
    except BenchError as e:
        print("BenchError:", e)
    else:
        print("cached" if kb.cached else "built", kb.release)
""")


def fake_bzimage(release: str) -> bytes:
    """The start of a bzImage naming release in its header, as bench.measure.kernel.bzimage_release reads it."""
    head = bytearray(0x400)
    head[0x202:0x206] = b"HdrS"
    head[0x20E:0x210] = (0x100).to_bytes(2, "little")
    version = f"{release} (vmexec-bench@vmexec-bench) #1".encode()
    head[0x300:0x300 + len(version)] = version
    return bytes(head)


def build_on_read_only(cache: Path) -> subprocess.CompletedProcess:
    """BUILD_IN with `cache` bind-mounted read-only onto itself in a mount namespace of its own (it
    goes with the process: nothing stays mounted)."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare(1) for a private mount namespace")
    ns = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--mount"]
    script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && touch "$1/w" 2>/dev/null '
              '&& { echo "still writable"; exit 3; }; shift; exec "$@"')
    proc = subprocess.run([*ns, "sh", "-c", script, "sh", str(cache), sys.executable, "-c", BUILD_IN,
                           str(cache)], capture_output=True, text=True, timeout=120, cwd=REPO)
    if proc.returncode and "mount" in proc.stderr:
        pytest.skip(f"cannot make a read-only bind mount here: {proc.stderr.strip()}")
    return proc


def test_a_complete_build_is_used_from_a_read_only_cache(tmp_path):
    home = tmp_path / "vmexec-bench" / "kernel" / "k"
    home.mkdir(parents=True)
    (home / "bzImage").write_bytes(fake_bzimage("6.12.1-vmexec"))
    (home / "build.json").write_text(json.dumps({"release": "6.12.1-vmexec"}))
    proc = build_on_read_only(tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "cached 6.12.1-vmexec", proc.stdout + proc.stderr
    assert not (home / ".lock").exists()


def test_an_incomplete_build_on_a_read_only_cache_is_one_clear_error(tmp_path):
    (tmp_path / "vmexec-bench").mkdir()
    proc = build_on_read_only(tmp_path)
    assert proc.returncode == 0, proc.stderr
    line, = proc.stdout.strip().splitlines()
    assert line.startswith("BenchError: kernel cache ") and "cannot be made or written (Read-only file system)" in line


def test_the_guest_command_looks_for_kernels_in_the_callers_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    script = vm._write_command(tmp_path, "n", ["true"], REPO).read_text()
    assert f"export XDG_CACHE_HOME={tmp_path / 'cache'}\n" in script
    monkeypatch.delenv("XDG_CACHE_HOME")     # unset: the caller's ~/.cache, not the guest's HOME
    script = vm._write_command(tmp_path, "n", ["true"], REPO).read_text()
    assert f"export XDG_CACHE_HOME={kernel.cache_root().parent}\n" in script
