"""The cases an interrupted `bench run` completed, kept for a rerun with --resume.

pyperf appends each case to the run's suite as it completes; before the next case starts, that suite
(with any cases kept from an earlier attempt) is copied, whole and atomically, to a hidden partial file
beside the results: .run-ID.partial, where ID hashes what the run would measure (its planned cases,
pyperf options, tags, the harness's commit and the kernel).  So the same command, rerun with --resume,
finds exactly its own partial file, and a run with other options, code or kernel finds none.  Not
*.json: a partial run is never read as a result.  A run that ends removes it.
"""
from __future__ import annotations

import hashlib
import json
import pathlib
import platform

import pyperf

from bench import results


def identity(cases_json: str, options: dict, commit: str) -> str:
    """The hash naming a run's partial file: its planned cases (bench.measure.plan.dumps), options and code."""
    text = json.dumps({"cases": json.loads(cases_json), "options": options, "commit": commit,
                       "kernel": platform.release()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Partial:
    """One run's partial file: the cases kept (name -> pyperf.Benchmark) and how to save and merge them."""

    def __init__(self, directory: pathlib.Path, run_id: str):
        self.path = directory / f".run-{run_id}.partial"
        self.kept: dict[str, pyperf.Benchmark] = {}
        self.saved = 0          # cases in the partial file now

    def load(self) -> str:
        """Take the cases of an earlier attempt; returns a line saying what was found."""
        if not self.path.is_file():
            return "resume: no interrupted run of these cases, options and code here: measuring every case"
        try:
            suite = pyperf.BenchmarkSuite.load(str(self.path))
        except Exception as e:      # pyperf raises ValueError, KeyError, JSONDecodeError ... on a damaged file
            return f"resume: {self.path} is unreadable ({type(e).__name__}): measuring every case"
        self.kept = {b.get_name(): b for b in suite.get_benchmarks()}
        self.saved = len(self.kept)
        return f"resume: {len(self.kept)} case(s) measured by an interrupted run kept from {self.path}"

    def benchmarks(self, measured: pathlib.Path) -> list[pyperf.Benchmark]:
        """The kept cases, then the ones measured now (the suite pyperf is writing, if it has begun)."""
        new = pyperf.BenchmarkSuite.load(str(measured)).get_benchmarks() if measured.is_file() else []
        names = {b.get_name() for b in new}
        return [b for name, b in self.kept.items() if name not in names] + list(new)

    def save(self, measured: pathlib.Path) -> None:
        """Copy every completed case into the partial file, atomically (a kill leaves the previous copy)."""
        benchmarks = self.benchmarks(measured)
        if len(benchmarks) > self.saved:
            self.write(benchmarks, self.path, exists="replace")
            self.saved = len(benchmarks)

    @staticmethod
    def write(benchmarks: list[pyperf.Benchmark], path: pathlib.Path, exists: str = "fail") -> pathlib.Path:
        suite = pyperf.BenchmarkSuite(benchmarks)
        return results.publish(path, lambda staged: suite.dump(str(staged)), exists=exists)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def said(self) -> str:
        """What an interrupt leaves: the cases kept and how to go on."""
        if not self.saved:
            return "no case completed, no results written"
        return (f"{self.saved} completed case(s) kept in {self.path}; rerun the same command with --resume "
                "to measure only the rest")
