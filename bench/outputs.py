"""Temporary trees and outputs that concurrent or killed commands cannot mix, lose or leave behind.

* scratch(kind): a temporary directory named for its process (vmexec-KIND-pidPID-XXXX), removed at the
  end; making one first removes those of processes that are gone (SIGKILL, SIGHUP: no clean-up ran).
  A live process's tree is never touched, whoever's it is.
* exclusive(final): an output for one command at a time (a lock beside it); the second waits, or is
  refused at once (a baseline: never replaced without a word).
* replace_tree(final, write, replaced): a directory (a report) written whole beside final, then
  swapped into place atomically under that lock: a reader sees the old one or the new one, never a
  mix of two, and nothing of the old one's own stays.
* claim_empty(directory): a directory for this command alone (check --against --output-dir).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from bench.errors import UsageError

#: vmexec-KIND-pidPID-random: runner.WORKDIR's form ("vmexec-bench-pid"), for every kind.
_SCRATCH = re.compile(r"^vmexec-[a-z0-9-]+?-pid(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # another user's process
        return True
    return True


def clear_stale(where: Path | None = None) -> None:
    """Remove the scratch trees (every kind) of processes that are gone."""
    for d in Path(where or tempfile.gettempdir()).glob("vmexec-*-pid*-*"):
        m = _SCRATCH.match(d.name)
        if m and d.is_dir() and not d.is_symlink() and not _alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)


def make_scratch(kind: str) -> Path:
    """A new scratch tree of this process (the caller removes it; a dead caller's goes at the next start)."""
    clear_stale()
    return Path(tempfile.mkdtemp(prefix=f"vmexec-{kind}-pid{os.getpid()}-"))


@contextlib.contextmanager
def scratch(kind: str) -> Iterator[Path]:
    """make_scratch, removed when the block ends, however it ends (but SIGKILL: then at the next start)."""
    path = make_scratch(kind)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def exclusive(final: Path, wait: bool = True, what: str = "output") -> Iterator[None]:
    """final for this command alone while the block runs: a lock file beside it (.NAME.lock, flock: the
    kernel drops it however its holder dies), removed at the end.  If another command holds it, wait for
    it, or (wait=False) refuse at once with a UsageError, so that neither silently replaces the other's."""
    final = Path(final)
    lock = final.absolute().parent / f".{final.name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise UsageError(f"cannot write {final}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"another command is writing {final} now: not writing this {what} over it; "
                             "run again when it is done, or choose another --output") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:       # its holder removed it as we took it: take the new one
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        os.unlink(lock)     # before the unlock: a waiter then finds it gone and makes its own
        os.close(fd)


_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _exchange(a: Path, b: Path) -> None:
    """Swap two paths at once (renameat2 RENAME_EXCHANGE, Linux 3.15)."""
    at_fdcwd = -100
    if _libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(b))


def _refuse_subdirectories(final: Path) -> None:
    if final.exists() and not final.is_dir():
        raise UsageError(f"output directory {final} is not writable (a file of that name exists)")
    if final.exists():
        inside = [p.name for p in final.iterdir() if p.is_dir()]
        if inside:
            raise UsageError(f"{final} holds {inside[0]}, which this command did not write: it writes into a "
                             "directory of its own only; choose another")


def _carry_over(old: Path, new: Path, replaced: set[str]) -> None:
    """Into new, the files of old that the new tree does not replace (a screenshot kept beside a report)."""
    for p in old.iterdir():
        if p.name not in replaced and not (new / p.name).exists():
            try:
                os.link(p, new / p.name)
            except OSError:
                shutil.copy2(p, new / p.name)


def replace_tree(final: Path, write: Callable[[Path], None], replaced: Callable[[Path], set[str]]) -> None:
    """write(staged) into a new directory beside final, then, under exclusive(final), swap it for final at
    once; the old tree is removed after.  Of the old tree, the files replaced(old) names go (a report's
    own, its plots that this one no longer draws among them); the others are carried over.  A final
    holding a directory is refused before anything is written: it is not this command's own."""
    final = Path(final)
    _refuse_subdirectories(final)
    parent = final.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        clear_stale(parent)
        staged = Path(tempfile.mkdtemp(prefix=f"vmexec-staged-pid{os.getpid()}-", dir=parent))
    except OSError as e:
        raise UsageError(f"output directory {final} is not writable ({e.strerror})") from None
    try:
        write(staged)
        staged.chmod(0o755)     # mkdtemp's 0700 is no report's
        with exclusive(final):
            _refuse_subdirectories(final)       # again: it may have changed while this wrote
            if final.exists():
                _carry_over(final, staged, replaced(final))
            try:
                _exchange(staged, final)        # staged now holds the old tree
            except FileNotFoundError:
                os.rename(staged, final)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


@contextlib.contextmanager
def claim_empty(directory: Path, option: str = "--output-dir") -> Iterator[Path]:
    """directory, made if needed and held for this command alone while the block runs: refused at once
    (UsageError) if another command holds it or it is not empty, before any work is done."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise UsageError(f"{option} {directory}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise UsageError(f"{option} {directory} is in use by another command: choose another") from None
        if any(directory.iterdir()):
            raise UsageError(f"{option} {directory} is not empty (an earlier run's?): choose a new one")
        yield directory
    finally:
        os.close(fd)
