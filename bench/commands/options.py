"""What every command module parses options with: the parser that fails in one line, and the
argparse types (lists, bounded numbers, KEY=VALUE tags)."""
from __future__ import annotations

import argparse
import pathlib

from bench.argtypes import number  # noqa: F401 (the commands' vocabulary, defined where bench.measure reaches it)
from bench.errors import UsageError
from bench.results import RESERVED_TAGS

#: The recorded command and the tags are pyperf metadata, which may not hold a newline.
NEWLINES = ("\n", "\r")


class Parser(argparse.ArgumentParser):
    """Bad input is one line and exit status 2, never a usage dump."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")

    def _get_value(self, action, arg_string):
        # An empty path is pathlib's "." (the current directory): `--output-dir ""` would write into
        # wherever the command was started, the repository's root most often.  Every path option alike.
        if action.type in (pathlib.Path, pathlib.PosixPath) and not arg_string.strip():
            raise argparse.ArgumentError(action, "an empty path names no file or directory (say . for this one)")
        return super()._get_value(action, arg_string)


def list_of(kind, choices=None):
    """An argparse type: a comma-separated list of kind (ints not negative), each one of choices if given."""
    def parse(text: str):
        try:
            items = [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a comma-separated list of {kind.__name__}: {text!r}")
        bad = [x for x in items if (choices and x not in choices) or (kind is int and x < 0)]
        if bad or not items:
            allowed = f" (choose from {', '.join(choices)})" if choices else ""
            raise argparse.ArgumentTypeError(f"invalid value {bad[0] if bad else text!r}{allowed}")
        return items
    return parse


def parse_tag(text: str) -> tuple[str, str]:
    """An argparse type: KEY=VALUE, KEY an identifier none of the harness's facts uses (RESERVED_TAGS),
    VALUE not blank and on one line."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier() or not value.strip() or any(c in value for c in NEWLINES):
        raise argparse.ArgumentTypeError(f"tags are KEY=VALUE on one line, not {text!r}")
    if key.lower().removeprefix("vmexec_") in RESERVED_TAGS or key.lower().startswith("vmexec_"):
        raise argparse.ArgumentTypeError(f"{key!r} is what the harness measures or detects itself, not a label "
                                         "(a tag is a free label beside the facts: choose another key)")
    return key, value


#: The vocabulary every command shares (README, "Words the commands share"):
#:   --kernel-variant NAME   which kernel build (bench.measure.kernel.VARIANTS)
#:   --cpus TRACER,TRACEE    host CPU ids a run pins to;  --vcpus N  how many CPUs a guest has
#:   --output FILE           the one file a command writes;  --output-dir DIR  the directory it writes into
#:   inputs                  positional (results files, runs), never an option only
#: Older spellings stay accepted as hidden aliases (alias()).


def alias(parser: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs) -> None:
    """Accept `old`, a former spelling of `new`, into the same dest, hidden from --help.  Silent: a note on
    stderr would make an error two lines, and scripts that still use the old spelling keep their output."""
    parser.add_argument(old, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)


def strip_dashes(argv) -> list[str]:
    """A command's arguments given after `--`, without it."""
    return list(argv[1:] if argv[:1] == ["--"] else argv or ())
