"""`python -m bench`: a thin command line over the library modules."""
from __future__ import annotations

import errno
import os
import signal
import sys

from bench.commands import anatomy, events, kernel, mainjob, notebooks, prices, regression, report, rfc, run, vm
from bench.commands.options import Parser
from bench.errors import BenchError, UsageError
from tracers import BackendFailed

#: The command modules, each adding its subcommands with register_cli(subparsers), in the order of
#: `--help`.  A plain list of imported modules: a misspelt name fails at import, loudly.
COMMANDS = (run, kernel, vm, rfc, report, regression, anatomy, prices, events, mainjob, notebooks)


#: Errors writing stdout itself (a full disk or device, a dead terminal), which no command can act on.
STDOUT_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


def version() -> str:
    """The installed distribution's version, else (a clone run with PYTHONPATH) pyproject.toml's."""
    from importlib import metadata

    try:
        return metadata.version("vmexec-bench")
    except metadata.PackageNotFoundError:
        import tomllib

        from bench.measure.environment import REPO
        try:
            return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def program_name(argv0: str | None = None) -> str:
    """How the user invoked us: `vmexec-bench` for the console script, `python -m bench` for the module."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    name = os.path.basename(argv0)
    return "python -m bench" if not name or name in ("__main__.py", "-m", "-c") else name


def build_parser() -> Parser:
    parser = Parser(prog=program_name(), description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    # Not required=True: argparse would then answer `bench --bogus` with "required: command", not the bad option.
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for module in COMMANDS:
        module.register_cli(sub)
    return parser


def check_nested(parser: Parser, args) -> None:
    """Parse now the bench commands a command will run later with the user's options (`vm run -- ARGS`,
    `main -- ARGS`, `check --against REV -- COMMAND`; a command's `nested` default lists them): a bad
    option is refused in one line before any step runs, not after a kernel build or a boot."""
    for argv in getattr(args, "nested", lambda a: [])(args):
        try:
            inner = parser.parse_args(argv)
        except UsageError as e:
            raise UsageError(f"in `{' '.join(argv[:2])} ...` (after --): {e}") from None
        check_nested(parser, inner)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (a CI runner's cancel, `timeout`) unwinds like Ctrl-C, so every command's clean-up runs
    # (a guest's QEMU, a child run, temporary files); SIGINT too where it was inherited as ignored
    # (a script's background job).  `bench run` installs its own handlers for the measurement.
    # SIGHUP too: a closed terminal or ssh session must not skip the clean-up either.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.error("a command is required (see --help)")
        check_nested(parser, args)
        status = args.func(args)
        sys.stdout.flush()      # here, where a full or broken stdout can still be said in one line
        return status
    except BenchError as e:
        print(f"bench: {'error' if e.exit_status == 2 else 'failed'}: {e}", file=sys.stderr)
        return e.exit_status
    except BackendFailed as e:
        # The driver itself could not run (not built, a broken install): one line, not a traceback.
        print(f"bench: failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`bench list | head`): stop quietly, as a pipeline's tools do, and keep
        # the interpreter's final flush of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        if e.filename is not None or e.errno not in STDOUT_ERRORS:
            raise       # not the output's: a defect, shown in full
        # stdout cannot take the output (`bench list >/dev/full`): one line, and the interpreter's final
        # flush of what is left must not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"bench: failed: a write failed ({e.strerror}): the output or its disk is full", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
