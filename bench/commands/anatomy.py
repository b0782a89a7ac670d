"""The `anatomy` and `anatomy-model` commands: options, and the files an anatomy is written to.

The work is bench.anatomy's (guest, counts, model); the tables, plot and prose bench.render.anatomy's.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from bench import results
from bench.anatomy.counts import AGREEMENT, MODEL_VARIANT, BackendAnatomy, analyse, default_directory, \
    guest_vulnerabilities
from bench.anatomy.guest import DEFAULT_SYSCALLS, check_arguments, default_backends, run_guest
from bench.commands.options import alias, list_of
from bench.errors import BenchError, UsageError, writable_directory
from bench.measure import kernel


def write_outputs(anatomies: list[BackendAnatomy], out: Path, failed: dict[str, str], meta: dict) -> list[Path]:
    """An anatomy's files in out: functions-BACKEND.csv, phases.csv, summary.csv, anatomy.json, the plot
    (anatomy.png, anatomy.svg) and anatomy.md (the report's section, read back from anatomy.json)."""
    # The rendering stack (bench.stats with pandas, scipy, matplotlib) is imported where it is used,
    # not above: every command's start-up imports this module to register its options.
    from bench.render import anatomy as render

    written = []
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in render.csv_tables(anatomies).items():
        path = out / name
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(rows)
        written.append(path)
    path = out / "anatomy.json"
    path.write_text(json.dumps(render.anatomy_json(anatomies, failed, meta), indent=1) + "\n")
    written.append(path)
    fig = render.figure(anatomies)
    paths = [out / "anatomy.png", out / "anatomy.svg"]
    fig.savefig(paths[0], dpi=130)
    fig.savefig(paths[1])
    written += paths
    path = out / "anatomy.md"
    path.write_text(render.to_markdown(render.report_blocks(out)))
    written.append(path)
    return written


def guest_meta(raw: Path) -> dict:
    """What anatomy.json records of the guest run in raw/: guest.json (of QEMU's command line, its -cpu)
    and the vulnerabilities the guest kernel reported."""
    meta = json.loads((raw / "guest.json").read_text()) if (raw / "guest.json").exists() else {}
    cmdline = meta.pop("qemu_cmdline", None) or []
    if "-cpu" in cmdline[:-1]:
        meta["qemu_cpu"] = cmdline[cmdline.index("-cpu") + 1]
    meta["vulnerabilities"] = guest_vulnerabilities(raw)
    return meta


def _cmd_anatomy(args) -> int:
    from bench.render.anatomy import sentences    # the rendering stack: see write_outputs

    out = args.output or default_directory(args.kernel_variant)
    raw = out / "raw"
    if args.from_raw is None:
        check_arguments(args.backends or default_backends(), args.syscalls)    # before making the directory
        writable_directory(out, create=True)
        run_guest(args.backends or default_backends(), args.syscalls, raw, log=lambda m: print(m, file=sys.stderr),
                  variant=args.kernel_variant)
    else:
        raw = args.from_raw
        if not raw.is_dir():
            raise UsageError(f"--from-raw: {raw} is not a directory")
    try:
        anatomies, failed = analyse(raw)
    except (BenchError, ValueError, KeyError, IndexError, TypeError) as e:
        if args.from_raw is None:
            raise
        # An earlier run's files, given by the user: what they hold is input, bad input is exit 2.
        raise UsageError(f"--from-raw {raw}: cannot be analysed: {e}") from None
    if not anatomies:
        raise BenchError("no backend ran in the guest: " + json.dumps(failed))
    written = write_outputs(anatomies, out, failed, guest_meta(raw))
    for s in sentences(anatomies):
        print(s)
    for a in anatomies:
        print(f"{a.backend}: plugin {a.insns_per_syscall:,.1f} insns/syscall, icount clock "
              f"{a.ns_per_syscall:,.1f} ns/syscall ({100 * a.disagreement:+.3f}%)")
    print(f"anatomy: {len(written)} files in {out}")
    bad = [a.backend for a in anatomies if abs(a.disagreement) > AGREEMENT]
    if bad:
        raise BenchError(f"the plugin's count and the icount clock differ by more than "
                         f"{100 * AGREEMENT:g}% for {', '.join(bad)}")
    return 0


def host_runs(given: list[Path] | None) -> list[Path]:
    """The host results files given (--host), each of which must exist, else the newest host run."""
    paths = given or [p for p in results.newest() if results.classify(results.read_json(p)) == "host"]
    for p in paths:
        if not Path(p).is_file():
            raise UsageError(f"no such results file: {p}")
    return [Path(p) for p in paths]


def _cmd_model(args) -> int:
    # The model (scipy, bench.stats) and its rendering: see write_outputs.
    from bench.anatomy.model import describe_inputs, fit_model, host_ns_per_syscall
    from bench.render.anatomy import model_blocks, to_markdown

    anatomy_json = (args.anatomy or default_directory(MODEL_VARIANT)) / "anatomy.json"
    if args.output:
        results.check_new(args.output)      # before the work: exists, a directory, /proc: one line
    if not anatomy_json.exists():
        raise UsageError(f"no {anatomy_json}: run `bench anatomy --kernel-variant {MODEL_VARIANT}` first "
                         "(or give --anatomy DIR)")
    paths = host_runs([*args.host_files, *(args.host or [])])
    m = fit_model(anatomy_json, host_ns_per_syscall(paths), describe_inputs(paths, anatomy_json))
    text = to_markdown(model_blocks(m), title="Cost model")
    if args.output:
        results.publish(args.output, lambda staged: staged.write_text(text))
    print(text, end="")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("anatomy", help="instruction-level anatomy of each backend in the icount guest")
    p.add_argument("--backends", type=list_of(str),
                   help="comma-separated C backends (default: every backend of the C driver)")
    p.add_argument("--syscalls", type=int, default=DEFAULT_SYSCALLS,
                   help=f"intercepted syscalls per backend (default {DEFAULT_SYSCALLS})")
    p.add_argument("--kernel-variant", default="bench", choices=sorted(kernel.VARIANTS),
                   help="which kernel build the guest boots (default bench; 'mitigations': the host's "
                        "speculation mitigations forced on)")
    p.add_argument("--output-dir", dest="output", type=Path, metavar="DIR",
                   help="output directory (default: anatomy/ in the results directory "
                        "for the bench kernel, anatomy/VARIANT/ for another)")
    alias(p, "--output", "--output-dir", "output", type=Path)
    p.add_argument("--from-raw", type=Path, metavar="DIR",
                   help="analyse an earlier run's raw/ directory instead of booting the guest")
    p.set_defaults(func=_cmd_anatomy)
    m = subparsers.add_parser("anatomy-model", help="fit host ns/syscall to the guest anatomy; predict process_vm_exec")
    m.add_argument("host_files", nargs="*", type=Path, metavar="RESULT",
                   help="host results file(s) of `bench run` (the same as --host)")
    m.add_argument("--host", type=Path, action="append",
                   help="host results file(s) of `bench run` (default: the newest host run in the results directory)")
    m.add_argument("--anatomy", type=Path, help=f"anatomy directory (default: anatomy/{MODEL_VARIANT}/ in the "
                                                "results directory, the mitigation-matched guest)")
    m.add_argument("--output", type=Path, help="also write the Markdown here")
    m.set_defaults(func=_cmd_model)

