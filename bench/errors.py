"""Errors the CLI turns into one line on stderr and an exit status, never a traceback."""


class BenchError(Exception):
    """A run failed (exit status 1)."""

    exit_status = 1


class UsageError(BenchError):
    """Bad input: an option, a path, a results file (exit status 2)."""

    exit_status = 2
