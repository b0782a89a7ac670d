"""Where the main job (bench.commands.mainjob) stands, so that a rerun after an interrupt or a failure does not
redo the steps it completed.

The state is one file in the results directory, STATE_NAME: the job's identity (the harness's commit, the
guest kernels' build keys, the job's options) and each step completed with the result files it wrote.  A
rerun of the same job skips those steps (and gives their files to the reports as before); a job of another
commit, kernel or options starts over.  The file is removed when the job ends.  Not *.json, so that it is
never read as a result.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench import results

STATE_NAME = "main-job.state"


def identity(clock: str, kvm_variant: str | None, run_args) -> dict:
    """What a completed step's results depend on besides its command line: the code, the guest kernels, the options."""
    from bench.measure import environment, kernel

    keys = {}
    for variant in dict.fromkeys(["bench", *([kvm_variant] if kvm_variant else [])]):
        try:
            keys[variant] = kernel.cache_key(variant)
        except (OSError, ValueError) as e:      # no kernel source yet: the key is what it will be built from
            keys[variant] = f"unknown ({type(e).__name__})"
    return {"commit": environment.git_commit(), "kernels": keys,
            "options": {"clock": clock, "kvm_variant": kvm_variant, "run_args": list(run_args)}}


class JobState:
    """The steps completed (step key -> the result files it wrote), saved after each step."""

    def __init__(self, path: Path, ident: dict, completed: dict[str, list[str]] | None = None):
        self.path, self.identity, self.completed = path, ident, completed or {}

    @classmethod
    def open(cls, directory: Path, ident: dict, restart: bool = False, say=print) -> JobState:
        """The state of this job in directory: an unfinished run of the same job is resumed, said in one line."""
        path = directory / STATE_NAME
        state = cls(path, ident)
        if not path.is_file():
            return state
        try:
            saved = json.loads(path.read_text())
            same, completed = saved["identity"] == ident, dict(saved["completed"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            say(f"main job: {path} is unreadable ({type(e).__name__}): starting over")
            return state
        if restart:
            say(f"main job: --restart: the {len(completed)} step(s) completed in {path} are done again")
        elif not same:
            differ = ", ".join(k for k in ident if ident[k] != saved["identity"].get(k))
            say(f"main job: {path} is of another job (its {differ} differ): starting over")
        else:
            state.completed = completed
            say(f"main job: resuming: {len(completed)} step(s) completed before are not redone "
                f"({path}; --restart does them again)")
        return state

    @staticmethod
    def key(step) -> str:
        return f"{step.what}: bench {' '.join(step.argv)}"

    def done(self, step) -> list[Path] | None:
        """The files a completed step wrote, or None if it must run (not completed, or a file it wrote is gone)."""
        wrote = self.completed.get(self.key(step))
        if wrote is None or not all(Path(p).is_file() for p in wrote):
            return None
        return [Path(p) for p in wrote]

    def mark(self, step, wrote: list[Path]) -> None:
        self.completed[self.key(step)] = [str(p) for p in wrote]
        text = json.dumps({"identity": self.identity, "completed": self.completed}, indent=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        results.publish(self.path, lambda staged: staged.write_text(text), exists="replace")

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)
