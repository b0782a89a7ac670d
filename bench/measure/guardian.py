"""A guardian: a small process that outlives this one and undoes what it leaves behind if it dies.

However this process ends (SIGKILL of its PID or of its process group, SIGHUP, a crash), the
guardian sees its pipe from us close, and then, at once, writes back the files it was told to
restore (vm.mmap_min_addr: bench.commands.mainjob) and ends the process groups it was told to end
(a main-job step, `make` and its compilers, `tar` and `xz`, the RFC's programs).  It leads a
session of its own, so no signal sent to our process group reaches it.  A normal end releases it
(`Guardian.close`): it then exits and does nothing.

The protocol is one line per order on the guardian's stdin, each acknowledged with "ok" on its
stdout before we go on (so nothing is changed before the guardian knows how to undo it):

    restore<TAB>PATH<TAB>VALUE<TAB>STATE   write VALUE to PATH, then remove the file STATE (if not "")
    group<TAB>PGID<TAB>GRACE               SIGINT to the group (SIGKILL if GRACE is 0), SIGKILL after GRACE s
    forget<TAB>PGID                        that group ended normally
    release                                a normal end: undo nothing
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tracers.driver import die_with_parent, kill_group


class Guardian:
    """The guardian of this process (a context manager: released at a normal end, however the block ends)."""

    def __init__(self):
        self._proc = subprocess.Popen([sys.executable, "-m", "bench.measure.guardian"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, start_new_session=True)
        self._expect_ok()

    def _order(self, *fields) -> None:
        self._proc.stdin.write("\t".join(map(str, fields)) + "\n")
        self._proc.stdin.flush()
        self._expect_ok()

    def _expect_ok(self) -> None:
        if self._proc.stdout.readline().strip() != "ok":
            raise RuntimeError("the guardian process did not start")

    def restore_on_death(self, path: str | Path, value: str, state: str | Path | None = None) -> None:
        self._order("restore", path, value, state or "")

    def end_on_death(self, pgid: int, grace: float = 0.0) -> None:
        self._order("group", pgid, grace)

    def forget(self, pgid: int) -> None:
        self._order("forget", pgid)

    def close(self) -> None:
        try:
            self._proc.stdin.write("release\n")
            self._proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        self._proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def dying_with(parent: int, sig: int, then=None):
    """A preexec_fn: the child gets sig when its parent dies, and does not start at all if the parent is
    already gone (the moment between fork and prctl, before the guardian knows of the child)."""
    def preexec():
        # The parent's own handler for sig (the job's SIGINT note) would catch a parent-death signal that
        # comes before exec, and exec would then forget it: the child must die of it instead.
        if sig != signal.SIGKILL:
            signal.signal(sig, signal.SIG_DFL)
        if not die_with_parent(sig, parent):
            os._exit(128 + sig)
        if then:
            then()
    return preexec


def popen_group(argv: list[str], guardian: Guardian, grace: float = 0.0, preexec_fn=None,
                **kwargs) -> subprocess.Popen:
    """argv started as the leader of a process group of its own, which the guardian ends if we die (and
    which dies with us even before the guardian knows of it: a parent-death signal)."""
    sig = signal.SIGINT if grace else signal.SIGKILL
    proc = subprocess.Popen(argv, process_group=0, preexec_fn=dying_with(os.getpid(), sig, preexec_fn), **kwargs)
    guardian.end_on_death(proc.pid, grace)
    return proc


def run_group(argv: list[str], timeout: float | None = None, **kwargs) -> subprocess.CompletedProcess:
    """argv run to its end in a process group of its own; on a timeout, an interruption or our death, the
    whole group is killed (a tracer's tracee, make's compilers, tar's xz), so nothing is left running."""
    with Guardian() as guardian:
        proc = popen_group(argv, guardian, **kwargs)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            kill_group(proc)
            raise
        kill_group(proc)        # a member that outlived its leader would outlive us too
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --------------------------------------------------------------------------- the guardian's side


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _undo(restores: list[tuple[str, str, str]], groups: dict[int, float]) -> None:
    """What the job's death calls for: the files first (a second counts), then the groups."""
    for path, value, state in restores:
        try:
            Path(path).write_text(value + "\n")
            if state:
                Path(state).unlink(missing_ok=True)
            _say(f"the process it guarded died: {path} put back to {value}")
        except OSError as e:
            _say(f"could not put {path} back to {value}: {e.strerror}")
    for pgid, grace in groups.items():
        try:
            os.killpg(pgid, signal.SIGINT if grace else signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + max(groups.values(), default=0.0)
    while any(map(_alive, groups)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _say(message: str) -> None:
    try:
        print(f"guardian: {message}", file=sys.stderr, flush=True)
    except OSError:     # the terminal went with the job
        pass


def main() -> int:
    # Ours to ignore: a hang-up or Ctrl-C meant for the job must not stop the one who cleans up after it.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    restores: list[tuple[str, str, str]] = []
    groups: dict[int, float] = {}
    print("ok", flush=True)
    for line in sys.stdin:
        order, *fields = line.rstrip("\n").split("\t")
        if order == "release":
            return 0
        if order == "restore":
            restores.append(tuple(fields))
        elif order == "group":
            groups[int(fields[0])] = float(fields[1])
        elif order == "forget":
            groups.pop(int(fields[0]), None)
        print("ok", flush=True)
    _undo(restores, groups)     # end of input without a release: the job died
    return 0


if __name__ == "__main__":
    sys.exit(main())
