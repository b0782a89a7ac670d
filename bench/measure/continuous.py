"""Runs the regression check makes: a baseline's run repeated now, and `bench check --against REV`,
which measures a commit's tree and the working tree on this machine and judges one against the
other (as asv's `continuous` does), so no baseline from another day, kernel or emulator is needed.
A timed run is made several times from each tree, interleaved (base, head, base, head ...), so that
whatever the host does meanwhile falls on both sides (interleaved(): two sides, any two trees).

The comparison commit's tree is exported with `git archive` into a temporary directory (nothing in
the repository changes), its C driver is built there by its own setup.py, and its own
`python -m bench` makes the reference run with this Python; then this tree makes the same run.
Both use this machine's kernel cache, QEMU and compiler.  The test knobs (tracers.driver.TEST_KNOBS:
planted faults and slowdowns) apply to the tree under test only: the reference is the commit as it is.

Every run is a child process that dies with this one (PR_SET_PDEATHSIG), and an interrupted
check stops its child, which stops its guest, before it exits.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

from tracers.driver import TEST_KNOBS

from bench.measure import environment
from bench.measure import guardian
from bench.measure import kernel
from bench.measure import vm
from bench.measure.environment import REPO
from bench.errors import BenchError, UsageError

#: What `--against` measures unless told otherwise: the icount guest (same-CPU ratios repeat to the
#: instruction across boots) on the claim's backends, the two mechanisms nearest them (both pinnings),
#: and the three binary rewriting backends (in-process: their text patching is checked as it runs).
DEFAULT_RUN = ("vm", "run", "--timing", "icount", "--accel", "tcg", "--",
               "--backends", "native,ptrace-sysemu,process-vm-exec,seccomp-trace,seccomp-trap,"
                             "zpoline,lazypoline,systrap-patch",
               "--pin", "same,cross", "--processes", "2", "--values", "3")
#: How long a stopped child may take to stop its own children (a guest) before it is killed.
STOP_GRACE = 30.0


def _is_guest_run(command: list[str]) -> bool:
    return command[:2] == ["vm", "run"]


def with_vm_options(command: list[str], options: tuple[str, ...] | list[str]) -> list[str]:
    """A `vm run` command with options of its own (not the guest's) inserted before its `--`."""
    split = command.index("--") if "--" in command else len(command)
    return [*command[:split], *options, *command[split:]]


def _with_output(command: list[str], directory: pathlib.Path) -> list[str]:
    """command with its results placed in directory (`run --output`, `vm run --output-dir`)."""
    if _is_guest_run(command):
        return with_vm_options(command, ("--output-dir", str(directory)))
    if command[:1] == ["run"]:
        return [*command, "--output", str(directory / "run.json")]
    raise UsageError(f"the check measures with `run` or `vm run`, not `{' '.join(command[:2])}`")


def run_bench(command: list[str], directory: pathlib.Path, *, cwd: pathlib.Path = REPO,
              env: dict[str, str] | None = None, what: str = "") -> pathlib.Path:
    """`python -m bench COMMAND` from the tree at cwd, its results placed in directory; the results file.

    The child's output goes to stderr (stdout carries only the check's table).  SIGINT or SIGTERM
    here stops the child with SIGTERM (a guest run then stops its QEMU) before it is re-raised.
    """
    directory.mkdir(parents=True, exist_ok=True)
    full = _with_output(command, directory)
    print(f"check: running python -m bench {' '.join(full)}{what}", file=sys.stderr, flush=True)
    # SIGTERM, not SIGKILL: a dying check gives its run the time to stop its own guest.
    proc = subprocess.Popen([sys.executable, "-m", "bench", *full], cwd=cwd, env=env, stdout=sys.stderr,
                            stdin=subprocess.DEVNULL, preexec_fn=guardian.dying_with(os.getpid(), signal.SIGTERM))
    try:
        status = proc.wait()
    except BaseException:
        _stop(proc)
        raise
    found = sorted(directory.glob("*.json"))
    if status or not found:
        raise BenchError(f"the run{what} failed (exit status {status}); nothing was compared")
    return found[0]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, time to clean up (a guest run kills its QEMU), then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- the machine before a run

def machine_for(command: list[str], log=lambda msg: print(msg, file=sys.stderr)) -> dict[str, str]:
    """The MACHINE fields (bench.regression) a run of `python -m bench COMMAND` would record here,
    found without measuring: the guest's own CPU model is left out (known only once it boots);
    a guest kernel is built, or found in the cache, to know its release."""
    here = {"compiler": environment.compiler(), "host_cpu_model": environment.cpu_model()}
    if not _is_guest_run(command):
        return {**here, "kind": "host", "kernel": os.uname().release, "vmexec_cpu_model": here["host_cpu_model"],
                "qemu": "none", "accelerator": environment.accelerator(), "timing": "wall"}
    parser = argparse.ArgumentParser(prog="vm run", add_help=False)
    vm.add_vm_options(parser)
    args = parser.parse_args(command[2:])
    kb = kernel.build(log=lambda msg: log(f"kernel: {msg}"), variant=args.kernel_variant)
    accel = vm.choose_accel(args.accel, args.timing, kb.bzimage)[0]
    return {**here, "kind": "guest", "kernel": kb.release, "qemu": vm.qemu_version(), "accelerator": accel,
            "timing": args.timing}


# --------------------------------------------------------------------------- --against REV

@dataclasses.dataclass(frozen=True)
class Revision:
    asked: str          # as given, e.g. HEAD^
    sha: str

    @property
    def short(self) -> str:
        return self.sha[:12]


def _git(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UsageError(f"--against: git failed: {e}") from None


def resolve(rev: str) -> Revision:
    """The commit `rev` names in this checkout, or a one-line UsageError."""
    if _git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        raise UsageError(f"--against needs a git checkout of vmexec-bench; {REPO} is not in one")
    proc = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if proc.returncode or not proc.stdout.strip():
        raise UsageError(f"--against: {rev!r} names no commit of {REPO}")
    return Revision(rev, proc.stdout.strip())


def export_tree(revision: Revision, where: pathlib.Path) -> pathlib.Path:
    """The commit's tree in where/tree (git archive: the repository is not touched), its driver built."""
    tree = where / "tree"
    tree.mkdir(parents=True)
    archive = where / "tree.tar"
    # Where the harness is vendored in a larger repository, only its own folder of that commit.
    prefix = _git("rev-parse", "--show-prefix").stdout.strip().rstrip("/")
    proc = _git("archive", "--format=tar", "-o", str(archive), f"{revision.sha}:{prefix}" if prefix else revision.sha)
    if proc.returncode == 0:
        proc = subprocess.run(["tar", "-xf", str(archive), "-C", str(tree)], capture_output=True, text=True,
                              timeout=600)
    if proc.returncode:
        raise BenchError(f"exporting {revision.asked} ({revision.short}) failed: {proc.stderr.strip()[-300:]}")
    archive.unlink()
    # The commit's own setup.py builds its own driver in place, as `pip install -e` does.
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode or not (tree / "tracers" / "vmexec").exists():
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise BenchError(f"building the driver of {revision.asked} ({revision.short}) failed: {tail}")
    return tree


def honest_environment() -> dict[str, str]:
    """This environment less the test knobs: the comparison commit is measured as it is."""
    return {k: v for k, v in os.environ.items() if k not in TEST_KNOBS}


@dataclasses.dataclass(frozen=True)
class Side:
    """One side of a comparison: a tree (its directory and environment) and where its runs go."""
    label: str                      # how its runs are named, e.g. "HEAD^ (abc123def456)", "this tree"
    results: pathlib.Path           # its runs go to results/1/, results/2/, ...
    cwd: pathlib.Path = REPO
    env: dict[str, str] | None = None
    extra: tuple[str, ...] = ()     # appended to the command (its revision tag)
    vm_options: tuple[str, ...] = ()    # a guest run's own options, before its -- (its kernel)


def interleaved(sides: tuple[Side, Side], command: list[str], repeat: int) -> tuple[list[list[pathlib.Path]], list[float]]:
    """([each side's results files], [each side's seconds]): the same run from both sides, `repeat` times,
    alternating (first, second, first, second ...) so that the host's drift falls on both."""
    files: list[list[pathlib.Path]] = [[], []]
    seconds = [0.0, 0.0]
    for i in range(1, repeat + 1):
        for k, side in enumerate(sides):
            started = time.monotonic()
            of = f", {i} of {repeat}" if repeat > 1 else ""
            files[k].append(run_bench([*with_vm_options(command, side.vm_options), *side.extra], side.results / str(i),
                                      cwd=side.cwd, env=side.env, what=f" from {side.label}{of}"))
            seconds[k] += time.monotonic() - started
    return files, seconds


#: Runs of each tree `--against` makes of a timed run by default: the fewest whose spread means something.
REPEAT_TIMED = 3


def default_repeat(command: list[str]) -> int:
    """1 for an icount guest run (the same path repeats to the instruction), REPEAT_TIMED otherwise."""
    if not _is_guest_run(command):
        return REPEAT_TIMED
    split = command.index("--") if "--" in command else len(command)
    parser = argparse.ArgumentParser(prog="vm run", add_help=False)
    vm.add_vm_options(parser)
    known, _ = parser.parse_known_args(command[2:split])
    return 1 if known.timing == "icount" else REPEAT_TIMED


def against(revision: Revision, command: list[str], where: pathlib.Path,
            repeat: int = 1) -> tuple[list[pathlib.Path], list[pathlib.Path], dict]:
    """(the commit's results files, this tree's results files, seconds each side took): the same run
    from both trees, `repeat` times each, interleaved (interleaved()), into where/<sha12>/ and where/worktree/."""
    _with_output(command, where)        # a command that cannot be measured is refused first
    started = time.monotonic()
    try:
        tree = export_tree(revision, where / "export")
        exported = time.monotonic() - started
        base = Side(f"{revision.asked} ({revision.short})", where / revision.short, tree,
                    {**honest_environment(), "PYTHONPATH": str(tree)}, tuple(_revision_tag(command, revision)))
        (reference, current), (base_s, head_s) = interleaved((base, Side("this tree", where / "worktree")),
                                                               command, repeat)
    finally:
        shutil.rmtree(where / "export", ignore_errors=True)
    return reference, current, {"reference": exported + base_s, "current": head_s}


def _revision_tag(command: list[str], revision: Revision) -> list[str]:
    """`--tag revision=SHA` where the run takes it: `run`'s own options, or after a guest run's `--`."""
    tag = ["--tag", f"revision={revision.sha}"]
    if _is_guest_run(command) and "--" not in command:
        return ["--", *tag]
    return tag
