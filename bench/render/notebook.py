"""What the notebooks read: the committed results unless told otherwise, and never a host run of one machine
beside a guest run of another without saying so.

Told otherwise means VMEXEC_RESULTS (bench.results.RESULTS_ENV: result files, or a directory whose newest
runs are read); otherwise the newest host run, guest run and RFC replica among the result files git tracks
in the repository's results/ (a run of this machine left there, untracked, is not read by accident).
"""
from __future__ import annotations

import os
import pathlib
import subprocess

from bench import machine, results
from bench.errors import UsageError
from bench.measure.environment import REPO

#: Set to 1 to read a host run and a guest run of different machines together (said, not refused).
MIX_ENV = "VMEXEC_MIX_MACHINES"


def committed(root: pathlib.Path = REPO) -> tuple[list[pathlib.Path], str]:
    """(the newest committed host run, guest run and RFC replica in root/results, a note); outside a git
    checkout, the newest files there, with a note saying they may not be the committed ones."""
    where = root / "results"
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", "results/*.json"],
                                capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return results.newest(where), f"{root} is not a git checkout: the newest files in {where}, committed or not"
    tracked = [root / name for name in listed.split("\0") if name and "/" not in name.removeprefix("results/")]
    return results.newest_among(tracked, where), ""


def machines(paths: list[pathlib.Path], mix: bool = False) -> str:
    """'' when every guest run ran on the CPU of every host run among paths; a note when that cannot be told
    (a guest run that did not record its host's CPU) or when mix allows runs of different machines; else a
    one-line UsageError."""
    hosts, guests = {}, {}
    for path in results.split(paths)[0]:
        m = machine.of_suite(path, results.read_json(path))
        (guests if m["kind"] == "guest" else hosts)[path.name] = m
    notes = []
    for g, gm in guests.items():
        for h, hm in hosts.items():
            if not gm["host_cpu_model"]:
                notes.append(f"{g} does not record its host's CPU: whether it ran on {h}'s machine "
                             f"({hm['vmexec_cpu_model'] or 'not recorded'}) cannot be told")
            elif hm["vmexec_cpu_model"] and gm["host_cpu_model"] != hm["vmexec_cpu_model"]:
                what = (f"{h} was measured on {hm['vmexec_cpu_model']!r}, {g} in a guest on "
                        f"{gm['host_cpu_model']!r}: two machines")
                if not mix:
                    raise UsageError(f"{what}; their host-versus-guest distortions and verdict would mix "
                                     f"them: name one machine's runs in {results.RESULTS_ENV}, or set {MIX_ENV}=1 "
                                     "(bench notebooks --mix-machines) to read them together anyway")
                notes.append(f"mixing machines ({MIX_ENV}=1): {what}")
    return "; ".join(notes)


def inputs(root: pathlib.Path = REPO, say=print) -> list[pathlib.Path]:
    """The result files a notebook reads (see the module's doc); says them, and any note, relative to root."""
    if results.named_files() or os.environ.get(results.RESULTS_ENV) or os.environ.get(results.DIRECTORY_ENV):
        paths, note = results.named_files() or results.newest(), ""
    else:
        paths, note = committed(root)
    mixed = machines(paths, mix=os.environ.get(MIX_ENV) == "1")
    for path in paths:
        say(str(path.relative_to(root) if path.is_relative_to(root) else path))
    for line in filter(None, (note, mixed)):
        say(f"note: {line}")
    return paths
