"""What a regression check can judge and what it can catch (bench.regression builds on it).

A number the check cannot judge is refused before it is judged: a time no intercepted call can take,
a baseline centre no ratio of two such times can have, a spread that measures nothing.  What it can
catch is its power: the smallest slowdown its test flags with probability POWER, stated for every ratio.
"""
from __future__ import annotations

import math
import pathlib
import statistics

import pandas as pd

from bench.errors import UsageError

#: The power every ratio states: the smallest change it catches this often (the usual 80%).
POWER = 0.8
Z_POWER = statistics.NormalDist().inv_cdf(POWER)
#: Times a measurement of one intercepted call can physically take (ns): more than a tenth of a cycle,
#: less than a minute.  A value outside is bad input (a hand-edited file), never judged: its ratios
#: would overflow or underflow.
PHYSICAL_NS = (0.1, 60e9)
#: A ratio of two physical times lies in these bounds; a baseline centre outside them is bad input.
RATIO_BOUNDS = (PHYSICAL_NS[0] / PHYSICAL_NS[1], PHYSICAL_NS[1] / PHYSICAL_NS[0])
#: A run-to-run standard deviation of a log ratio above this (a factor of 7 between runs) measures nothing.
MAX_SD = 2.0
def physical(df: pd.DataFrame) -> None:
    """UsageError unless every value is a time one intercepted call can take (PHYSICAL_NS)."""
    low, high = PHYSICAL_NS
    bad = df[(df["value_ns"] < low) | (df["value_ns"] > high)]
    if not bad.empty:
        row = bad.iloc[0]
        raise UsageError(f"{row['run_id']}: case {row['case']}: {row['value_ns']:.4g} ns is not a time one "
                         f"intercepted call can take ({low:g} ns to {high / 1e9:g} s)")


def validate_noise(noise: dict, where: pathlib.Path) -> None:
    """UsageError unless every ratio's centre is a ratio of physical times and its spread a spread
    (below MAX_SD): checked before a baseline is written and when one is read."""
    for label, n in noise.items():
        centre, sd, runs = n.get("centre"), n.get("sd"), n.get("runs")
        if not (isinstance(centre, (int, float)) and RATIO_BOUNDS[0] <= centre <= RATIO_BOUNDS[1]):
            raise UsageError(f"{where}: ratio {label}: centre {centre!r} is no ratio of two physical times")
        if not (isinstance(sd, (int, float)) and 0 <= sd <= MAX_SD):
            raise UsageError(f"{where}: ratio {label}: spread {sd!r} is not a standard deviation of a log ratio "
                             f"(0 to {MAX_SD:g})")
        if not (isinstance(runs, int) and not isinstance(runs, bool) and runs >= 2):
            raise UsageError(f"{where}: ratio {label}: its spread counts {runs!r} runs, not 2 or more")


def detectable(threshold: float, interval_half: float, sigma: float) -> float:
    """The smallest slowdown caught with probability POWER by a check that needs the change above
    1 + threshold and its interval's lower end (interval_half below it, in log) above 1, when the
    change's log varies with standard deviation sigma: both conditions move with the same noise."""
    return math.expm1(max(math.log1p(threshold), interval_half) + Z_POWER * sigma)
