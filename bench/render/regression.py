"""How `bench check` shows its judgement (bench.regression.check): a document of one summary and one
table, as text for a terminal or Markdown for a CI job summary; or JSON for a program."""
from __future__ import annotations

import json

import pandas as pd

from bench.regression import CONFIDENCE, VERDICTS, Baseline, missing_backends, mode, regressed_backends
from bench.render.document import table as _table, to_markdown, to_text

HEADERS = ["ratio", "baseline", "current", f"change ({CONFIDENCE:.0%} interval)", "threshold", "verdict"]


def _pct(x: float) -> str:
    return f"{100 * (x - 1):+.2f}%"


def _rows(table: pd.DataFrame) -> list[list[str]]:
    return [[r["ratio"], f"{r['baseline']:.4g}", "not measured", "–", "–", r["verdict"]]
            if r["verdict"] == "missing" else
            [r["ratio"], f"{r['baseline']:.4g}", f"{r['current']:.4g}",
             f"{_pct(r['change'])} ({_pct(r['low'])} to {_pct(r['high'])})",
             f"±{100 * r['threshold']:.2f}% ({r['threshold_source']})", r["verdict"]]
            for _, r in table.iterrows()]


def summary(table: pd.DataFrame, baseline: Baseline) -> str:
    counts = ", ".join(f"{(table['verdict'] == v).sum()} {v}" for v in VERDICTS)
    named = regressed_backends(table)
    verdict = (f"REGRESSION in {', '.join(named)}" if named else "no regression")
    return (f"{verdict}: {counts} of {len(table)} ratios against {baseline.name} "
            f"({_modes(baseline.values)}; a ratio regressed when it got worse by more than its threshold "
            f"and its {CONFIDENCE:.0%} interval lies wholly above no change)")


def missing(table: pd.DataFrame) -> str:
    """The section for ratios the current run did not measure ("" if none): apart from regressed,
    since nothing was measured slower."""
    named = missing_backends(table)
    if not named:
        return ""
    n = int((table["verdict"] == "missing").sum())
    return (f"missing: {', '.join(named)} ({n} ratio{'s' if n != 1 else ''} of the baseline not measured by "
            "this run: its backend failed or was not run; not judged, no slowdown was measured)")


def _modes(df: pd.DataFrame) -> str:
    return ("exact mode for ratios on one CPU, timed across CPUs" if mode(df) == "exact" else "timed mode")


def render(table: pd.DataFrame, baseline: Baseline, fmt: str) -> str:
    """The check as text, json or markdown (no final newline)."""
    if fmt == "json":
        return json.dumps({"summary": summary(table, baseline), "regressed": regressed_backends(table),
                           "missing": missing_backends(table),
                           "baseline": str(baseline.path), "mode": mode(baseline.values),
                           "ratios": json.loads(table.to_json(orient="records", force_ascii=False))},  # NaN -> null
                          indent=1, ensure_ascii=False)
    ratios = _table(HEADERS, _rows(table), "l" * len(HEADERS))
    absent = missing(table)
    if fmt == "markdown":
        blocks = [("p", f"**{summary(table, baseline)}**"), *([("p", absent)] if absent else []), ratios]
        return to_markdown(blocks).removesuffix("\n")
    # The summary last, under the table: a terminal shows it after the rows scroll by.  The last
    # column is not padded (no trailing blanks), and the rule is as long as the header.
    lines = [line.rstrip() for line in to_text([ratios]).split("\n")]
    lines[1] = "-" * len(lines[0])
    return "\n".join([*lines, summary(table, baseline), *([absent] if absent else [])])
