"""`bench rfc`: the RFC's two benchmark programs, compiled, run and recorded (bench.measure.rfc)."""
from __future__ import annotations

import datetime
import socket
from pathlib import Path

from bench import results
from bench.commands.options import number, parse_tag
from bench.measure import rfc
from bench.render import rfc as rfc_text
from bench.render.document import to_text


def _cmd_rfc(args) -> int:
    output = results.output(args.output, f"rfc-{socket.gethostname()}")
    started = datetime.datetime.now().isoformat()
    programs = rfc.run(args.seconds)
    print(to_text(rfc_text.blocks(programs)))
    output = rfc.write(programs, output, dict(args.tag), started, exists="fail" if args.output else "rename")
    print(f"results: {output}")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("rfc", help="the RFC's own two benchmark programs, re-implemented")
    p.add_argument("--seconds", type=number(float, 0, 3600, above=True), default=5.0,
                   help="loop length (the RFC: 5)")
    p.add_argument("--output", type=Path, help="results file (default: ./results/rfc-HOST-TIME.json)")
    p.add_argument("--tag", type=parse_tag, action="append", default=[],
                   help="KEY=VALUE; accelerator= and timing= describe a VM run")
    p.set_defaults(func=_cmd_rfc)
