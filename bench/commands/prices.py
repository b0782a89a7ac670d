"""The `prices` and `prices-anatomy` commands: options, and the files they write.

The parts are measured by bench.measure.prices, counted in the guest by bench.anatomy (guest,
counts), composed by bench.anatomy.composed and rendered by bench.render.prices.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import results
from bench.anatomy.counts import analyse, default_directory
from bench.anatomy.guest import DEFAULT_SYSCALLS, PIN_CPU, run_guest
from bench.commands.anatomy import guest_meta, host_runs, write_outputs
from bench.commands.options import alias, number
from bench.errors import BenchError, UsageError, writable_directory
from bench.measure import kernel
from bench.measure.prices import DEFAULT_RUNS, DIRECTORY, MIN_RUNS, check_switches, commands, load_record, measure_host
from tracers.driver import VMEXEC


def parts_directory(variant: str) -> Path:
    """Where the parts' guest anatomy lives: parts/ in that kernel variant's anatomy directory."""
    return default_directory(variant) / "parts"


def _cmd_parts_anatomy(args) -> int:
    """Count the parts' path lengths in the icount guest, with the plugin (same kernel as the anatomy)."""
    out = args.output or parts_directory(args.kernel_variant)
    writable_directory(out, create=True)
    raw = out / "raw"
    if args.from_raw is None:
        run_guest([], DEFAULT_SYSCALLS, raw, log=lambda m: print(m, file=sys.stderr),
                  variant=args.kernel_variant, commands=commands(str(VMEXEC), guest=True, cpu=PIN_CPU))
    elif not args.from_raw.is_dir():
        raise UsageError(f"--from-raw: {args.from_raw} is not a directory")
    else:
        raw = args.from_raw
    anatomies, failed = analyse(raw)
    if failed:
        raise BenchError("parts failed in the guest: " + json.dumps(failed))
    write_outputs(anatomies, out, failed, guest_meta(raw))
    for a in anatomies:
        t = a.totals()
        print(f"{a.backend}: {a.insns_rep_once_per_syscall:,.1f} insns/iteration (REP once), "
              f"{t['syscall'] + t['exc_irq']:.2f} entries, {t['cr3_write']:.2f} CR3 writes "
              f"(icount clock {100 * a.disagreement:+.3f}% off the plugin)")
    print(f"parts anatomy: {out}")
    return 0


def _cmd_prices(args) -> int:
    # The composition and its rendering (numpy, pandas, bench.stats) are imported where they are used,
    # not above: every command's start-up imports this module to register its options.
    from bench.anatomy.composed import composed_model
    from bench.render.prices import to_markdown

    anatomy_directory = args.anatomy or default_directory()
    # Every input checked before anything is measured: a bad one found afterwards loses the measurement.
    if args.anatomy and not args.anatomy.is_dir():
        raise UsageError(f"--anatomy: {args.anatomy} is not a directory")
    if args.markdown:
        writable_directory(args.markdown.parent)
        if args.markdown.is_dir():
            raise UsageError(f"--markdown: {args.markdown} is a directory")
    host = host_runs(args.host)
    if args.prices:
        if not args.prices.is_file():
            raise UsageError(f"no such prices file: {args.prices}")
        load_record(args.prices)
        record_path = args.prices
    else:
        out = args.output_dir or results.directory() / DIRECTORY
        writable_directory(out, create=True)
        record = measure_host(args.runs, args.cpu, log=lambda m: print(m, file=sys.stderr))
        check_switches(record)
        stamp = record["started"].replace("-", "").replace(":", "").replace("+0000", "")[:15]
        record_path = out / f"prices-{record['host']}-{stamp}.json"
        tmp = record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(record_path)
        print(f"prices: measured in {record['seconds']:.0f} s, load {record['load_before']} before and "
              f"{record['load_after']} after: {record_path}", file=sys.stderr)
    if not host:
        print(f"prices: no host run to compose against (run `python -m bench run --fast --pin same` and give "
              f"--host): prices only in {record_path}", file=sys.stderr)
        return 0
    c, why = composed_model(host, anatomy_directory, [record_path], diagnose=args.diagnose)
    if c is not None and c.refused:
        print(f"prices: not composed: {c.refused}; what follows is a diagnosis, not an estimate", file=sys.stderr)
    if c is None and not args.prices:
        # The measurement stands (the report composes from it when it can): say why not here, in one line,
        # and print no estimate.
        print(f"prices: measured, not composed: {why}", file=sys.stderr)
        return 0
    if c is None:
        raise UsageError(f"not composed: {why}")
    text = to_markdown(c)
    if args.markdown:
        results.publish(args.markdown, lambda staged: staged.write_text(text), exists="replace")
    print(text, end="")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("prices", help="measure the mechanisms' parts on this host and compose every "
                                             "mechanism (process_vm_exec included) from them")
    p.add_argument("--host", type=Path, action="append",
                   help="host results file(s) of `bench run --pin same` (default: the newest host run)")
    p.add_argument("--anatomy", type=Path, help="the benchmark kernel's anatomy directory (default: anatomy/ in "
                                                "the results directory); the twin of the host run's kernel "
                                                "configuration in its twin/HASH/ and twin/HASH/parts/ is used, "
                                                "else its mitigations/ and mitigations/parts/")
    p.add_argument("--runs", type=number(int, MIN_RUNS, 1000), default=DEFAULT_RUNS,
                   help=f"rounds of every part, interleaved (default {DEFAULT_RUNS}, at least {MIN_RUNS}: the "
                        "prices' bootstrap resamples rounds)")
    p.add_argument("--cpu", type=number(int, 0, 4095), default=0, help="the CPU every part is pinned to (default 0)")
    p.add_argument("--prices", type=Path, metavar="FILE", help="compose from an earlier prices-*.json instead of "
                                                               "measuring")
    p.add_argument("--output-dir", type=Path, help=f"where the prices record goes (default: {DIRECTORY}/ in the "
                                                   "results directory)")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="also write the composition's Markdown here")
    p.add_argument("--diagnose", action="store_true",
                   help="where the prices are not admissible, compose all the same as a diagnosis (headed as "
                        "such, every mechanism's error shown, no estimate for process_vm_exec)")
    p.set_defaults(func=_cmd_prices)
    a = subparsers.add_parser("prices-anatomy", help="count the parts' path lengths in the icount guest (plugin)")
    a.add_argument("--kernel-variant", default="mitigations", choices=sorted(kernel.VARIANTS),
                   help="the kernel the guest boots (default mitigations, as the cost model's anatomy)")
    a.add_argument("--output-dir", dest="output", type=Path, metavar="DIR",
                   help="output directory (default: anatomy/VARIANT/parts/ in the results directory)")
    alias(a, "--output", "--output-dir", "output", type=Path)
    a.add_argument("--from-raw", type=Path, metavar="DIR", help="analyse an earlier run's raw/ directory instead "
                                                                "of booting the guest")
    a.set_defaults(func=_cmd_parts_anatomy)
