"""Machines side by side (issue 26 item 7): the host runs among a report's inputs by the machine they
were measured on, (CPU model, kernel), each judged on its own, with the guest runs made on it (else every one).

Host runs of several machines (an Intel Xeon's and an AMD EPYC's, committed one file per machine) are
given to one report; the distortion bracket pairs a machine's guest runs with its host runs only, and
each machine's estimates (bench.estimates.per_machine) are its own.
"""
from __future__ import annotations

import pandas as pd

from bench.estimates import machine_key


def host_run_ids(df: pd.DataFrame, key: tuple[str, str]) -> set[str]:
    """The run ids of the host runs measured on the machine key (bench.estimates.machine_key)."""
    host = df[~df["vm"].astype(bool)]
    return {str(r["run_id"]) for _, r in host.drop_duplicates("run_id").iterrows() if machine_key(r) == key}


def made_on(df: pd.DataFrame, key: tuple[str, str]) -> set[str]:
    """The run ids of the guest runs made on the machine key (the host CPU model and kernel a guest run records
    of the machine under it)."""
    guests = df[df["vm"].astype(bool)].drop_duplicates("run_id")
    return {str(r["run_id"]) for _, r in guests.iterrows()
            if (str(r.get("vmexec_host_cpu_model") or ""), str(r.get("vmexec_host_kernel") or "")) == key}


def guest_run_ids(df: pd.DataFrame, key: tuple[str, str]) -> set[str]:
    """The guest runs the machine key is judged with: those made on it (made_on); where none was, every one.
    A twin's path lengths are its host's own (it is made from that host's configuration and boots as its CPU),
    so a machine is judged with its own guest runs first; a guest on the benchmark kernel counts the same
    instructions whatever machine is under it."""
    return made_on(df, key) or {str(r) for r in df[df["vm"].astype(bool)]["run_id"].unique()}


def run_ids(df: pd.DataFrame, key: tuple[str, str]) -> set[str]:
    """The run ids machine key is judged by: its host runs and its guest runs (guest_run_ids)."""
    return host_run_ids(df, key) | guest_run_ids(df, key)


def view(frame: pd.DataFrame, runs: set[str]) -> pd.DataFrame:
    """frame's rows of the given runs (a values, ratios or claim frame)."""
    return frame[frame["run_id"].astype(str).isin(runs)]
