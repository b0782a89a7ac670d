"""Errors the CLI turns into one line on stderr and an exit status, never a traceback."""
import os
import pathlib
import tempfile


class BenchError(Exception):
    """A run failed (exit status 1)."""

    exit_status = 1


class UsageError(BenchError):
    """Bad input: an option, a path, a results file (exit status 2)."""

    exit_status = 2


class Interrupted(BenchError):
    """SIGINT or SIGTERM ended the run (exit status 130, as a shell reports Ctrl-C)."""

    exit_status = 130


#: Free space a results file needs at least: a full run's suite is about half a megabyte.
MIN_FREE_BYTES = 1 << 20


def writable_directory(path: pathlib.Path, *, create: bool = False, need: int = MIN_FREE_BYTES) -> pathlib.Path:
    """path, checked (and made, if asked) by really writing there, with `need` bytes free, or a
    one-line UsageError.

    Tried for real: root passes access() checks on read-only mounts.  Free space is asked for
    too: an empty file can be made on a full file system, and a run that finds out at its end
    has lost its measurement.
    """
    try:
        if not create and not path.is_dir():
            raise UsageError(f"output directory {path} does not exist")
        # Before making it: a full disk leaves no empty directory behind.  A size of 0 is a pseudo
        # file system (/proc), which the write below finds out about.
        st = os.statvfs(next(p for p in (path, *path.parents) if p.exists()))
        if st.f_blocks and st.f_bavail * st.f_frsize < need:
            raise UsageError(f"output directory {path} has {st.f_bavail * st.f_frsize >> 10} KiB free; "
                             f"this needs {need >> 10} KiB")
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as e:
        raise UsageError(f"output directory {path} is not writable ({e.strerror})") from None
    return path
