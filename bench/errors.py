"""Errors the CLI turns into one line on stderr and an exit status, never a traceback."""
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


def writable_directory(path: pathlib.Path, *, create: bool = False) -> pathlib.Path:
    """path, checked (and made, if asked) by really writing there, or a one-line UsageError.

    Tried for real: root passes access() checks on read-only mounts.
    """
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            raise UsageError(f"output directory {path} does not exist")
        tempfile.TemporaryFile(dir=path).close()
    except OSError as e:
        raise UsageError(f"output directory {path} is not writable ({e.strerror})") from None
    return path
