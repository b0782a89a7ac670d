"""Machines side by side (issue 26 item 7): the host runs among a report's inputs by the machine they
were measured on, (CPU model, kernel), each judged with every guest run, on its own.

Host runs of several machines (an Intel Xeon's and an AMD EPYC's, committed one file per machine) are
given to one report; the distortion bracket pairs each guest run with one machine's host runs only, and
each machine's estimates (bench.estimates.per_machine) are its own.
"""
from __future__ import annotations

import pandas as pd

from bench.estimates import machine_key


def host_run_ids(df: pd.DataFrame, key: tuple[str, str]) -> set[str]:
    """The run ids of the host runs measured on the machine key (bench.estimates.machine_key)."""
    host = df[~df["vm"].astype(bool)]
    return {str(r["run_id"]) for _, r in host.drop_duplicates("run_id").iterrows() if machine_key(r) == key}


def view(frame: pd.DataFrame, runs: set[str]) -> pd.DataFrame:
    """frame's rows of guest runs and of the given host runs (a values, ratios or claim frame)."""
    return frame[frame["vm"].astype(bool) | frame["run_id"].astype(str).isin(runs)]
