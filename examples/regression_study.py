"""How often does `bench check` cry wolf, and how often does it catch a planted slowdown?

    python examples/regression_study.py AA_DIR [PLANT_DIR] [BASE_RUNS]

AA_DIR holds honest runs of one code on one machine (A/A); PLANT_DIR holds
subdirectories named by the planted slowdown in percent (1/, 5/, 20/, 50/),
each with runs made with VMEXEC_PLANT=ptrace-sysemu=NS.  Printed:

* A/A pairs: runs 1+2, 3+4, ...: the first as a one-run baseline (thresholds
  not measured), the second checked against it;
* A/A against a measured baseline: the first BASE_RUNS runs (default 5) form
  the baseline (spread measured between them), every later run is checked
  against it;
* planted: every planted run checked against that measured baseline.

A check is a false positive when any ratio is judged regressed; a planted run
is detected when ptrace-sysemu is named.
"""
from __future__ import annotations

import pathlib
import sys
import tempfile

from bench import stats
from bench import regression as R



def runs_in(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(directory.glob("*.json"), key=lambda p: stats.load([p])["started"].iloc[0])


def check(baseline: pathlib.Path, current: pathlib.Path) -> tuple[list[str], int, int]:
    table = R.check(R.load(baseline), stats.load([current]))
    return R.regressed_backends(table), int((table["verdict"] == "regressed").sum()), len(table)


def main(aa_dir: str, plant_dir: str | None = None, base_runs: str = "5") -> None:
    base_runs = int(base_runs)
    aa = runs_in(pathlib.Path(aa_dir))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        pairs = [(aa[i], aa[i + 1]) for i in range(0, len(aa) - 1, 2)]
        alarms = rows = flagged = 0
        for k, (a, b) in enumerate(pairs):
            named, bad, n = check(R.write([a], tmp / f"pair{k}.json"), b)
            alarms += bool(named)
            flagged, rows = flagged + bad, rows + n
        print(f"A/A pairs, one-run baselines: {alarms} of {len(pairs)} checks raised an alarm "
              f"({flagged} of {rows} ratios regressed)")

        base = R.write(aa[:base_runs], tmp / "baseline.json")
        thresholds = sorted({round(100 * R.load(base).threshold(label)[0], 2)
                             for label in R.ratio_table(R.load(base).values)})
        alarms = rows = flagged = 0
        for run in aa[base_runs:]:
            named, bad, n = check(base, run)
            alarms += bool(named)
            flagged, rows = flagged + bad, rows + n
        print(f"A/A against a baseline of {base_runs} runs (thresholds {thresholds[0]}%–{thresholds[-1]}%): "
              f"{alarms} of {len(aa) - base_runs} checks raised an alarm ({flagged} of {rows} ratios regressed)")

        if plant_dir:
            for level in sorted(pathlib.Path(plant_dir).iterdir(), key=lambda p: float(p.name)):
                results = [check(base, run) for run in runs_in(level)]
                caught = sum(named == ["ptrace-sysemu"] for named, _, _ in results)
                others = sum(bool(set(named) - {"ptrace-sysemu"}) for named, _, _ in results)
                print(f"planted +{level.name}% in ptrace-sysemu: detected in {caught} of {len(results)} runs"
                      + (f" ({others} also named another backend)" if others else ""))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3, 4):
        sys.exit(__doc__.strip().splitlines()[2].strip())
    main(*sys.argv[1:])
