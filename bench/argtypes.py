"""argparse types the lowest layers need too (bench.measure adds the guest's options): bounded numbers."""
from __future__ import annotations

import argparse


def number(kind, low, high, *, above=False):
    """An argparse type: a kind from low (excluded if above) to high; nan and inf are in no such range."""
    def parse(text: str):
        try:
            x = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if not ((low < x) if above else (low <= x)) or not x <= high:
            raise argparse.ArgumentTypeError(f"must be {'>' if above else '>='} {low:g} and <= {high:g}, not {text}")
        return x
    return parse
