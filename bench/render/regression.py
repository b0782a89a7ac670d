"""How `bench check` shows its judgement (bench.regression.check): a document of one summary and one
table, as text for a terminal or Markdown for a CI job summary; or JSON for a program.  Every ratio
states its power (the smallest change it could catch), and a comparison across machines says so first."""
from __future__ import annotations

import json

import pandas as pd

from bench.regression import CONFIDENCE, POWER, VERDICTS, Baseline, missing_backends, mode, regressed_backends
from bench.render.document import table as _table, to_markdown, to_text

HEADERS = ["ratio", "baseline", "current", f"change ({CONFIDENCE:.0%} interval)", "threshold",
           f"catches ({POWER:.0%} power)", "verdict"]


def _pct(x: float) -> str:
    return f"{100 * (x - 1):+.2f}%"


def _catches(r) -> str:
    """The smallest change the ratio could catch; '≥' where the run-to-run spread was not measured."""
    return f"{'' if r['spread_measured'] else '≥'}+{100 * r['detectable']:.3g}%"


def _rows(table: pd.DataFrame) -> list[list[str]]:
    return [[r["ratio"], f"{r['baseline']:.4g}", "not measured", "–", "–", "–", r["verdict"]]
            if r["verdict"] == "missing" else
            [r["ratio"], f"{r['baseline']:.4g}", f"{r['current']:.4g}",
             f"{_pct(r['change'])} ({_pct(r['low'])} to {_pct(r['high'])})",
             f"±{100 * r['threshold']:.2f}% ({r['threshold_source']})", _catches(r),
             r["verdict"] + (f" ({r['note']})" if r["note"] else "")]
            for _, r in table.iterrows()]


def summary(table: pd.DataFrame, baseline: Baseline) -> str:
    counts = ", ".join(f"{(table['verdict'] == v).sum()} {v}" for v in VERDICTS)
    named = regressed_backends(table)
    verdict = (f"REGRESSION in {', '.join(named)}" if named else "no regression")
    return (f"{verdict}: {counts} of {len(table)} ratios against {baseline.name} "
            f"({_modes(baseline.values)}; a ratio regressed when it got worse by more than its threshold "
            f"and its {CONFIDENCE:.0%} interval lies wholly above no change)")


def underpowered(table: pd.DataFrame, target: float) -> pd.DataFrame:
    """The judged ratios that could not catch a change of `target`: their noise cannot tell it from drift
    (the smallest change their own threshold's test catches, "resolvable", is larger)."""
    return table[(table["verdict"] != "missing") & (table["resolvable"] > target)]


def power(table: pd.DataFrame, fixed: float | None) -> str:
    """What the check could have caught: with --threshold, the ratios that could not catch that change;
    else the range of the smallest changes caught."""
    judged = table[table["verdict"] != "missing"]
    if judged.empty:
        return ""
    if fixed is not None:
        weak = underpowered(judged, fixed)
        if weak.empty:
            return f"power: every ratio's noise lets it catch the +{100 * fixed:g}% asked for ({POWER:.0%} power)"
        return (f"power: {len(weak)} of {len(judged)} ratios cannot catch the +{100 * fixed:g}% asked for: it is "
                f"within their noise (the smallest change their noise lets an {POWER:.0%}-power check tell from "
                "drift, in brackets), so they were judged at it but may miss it or cry wolf: "
                + ", ".join(f"{r['ratio']} (+{100 * r['resolvable']:.3g}%)" for _, r in weak.iterrows()))
    low, high = judged.loc[judged["detectable"].idxmin()], judged.loc[judged["detectable"].idxmax()]
    unmeasured = (~judged["spread_measured"]).sum()
    return (f"power: the smallest change caught ({POWER:.0%} power) ranges from {_catches(low)} ({low['ratio']}) "
            f"to {_catches(high)} ({high['ratio']}); a smaller change passes as unchanged"
            + (f"; {unmeasured} ratios' run-to-run spread was not measured (one run), so they catch less than "
               "stated" if unmeasured else "") + "; --threshold PCT asks for a change and names the ratios "
            "that cannot catch it")


def stated_power(baseline: Baseline, preview: dict[str, tuple[float, bool]], fixed: float | None) -> list[str]:
    """What a check against this baseline can catch, said before its run (bench.regression.preview), and
    the baseline's doubts."""
    lines = [f"{baseline.name} was made of doubtful runs, accepted with --force: {'; '.join(baseline.doubts)}"] \
        if baseline.doubts else []
    if not preview:
        return lines
    if fixed is not None:
        weak = {label: p for label, p in preview.items() if p[0] > fixed}
        if weak:
            lines.append(f"power: {len(weak)} of {len(preview)} ratios cannot catch the +{100 * fixed:g}% asked for "
                         f"with this baseline: it is within the noise the baseline measured (the smallest change "
                         f"told from drift, {POWER:.0%} power, in brackets): "
                         + ", ".join(f"{label} ({'' if m else '≥'}+{100 * d:.3g}%)" for label, (d, m) in weak.items()))
        return lines
    low, high = min(preview.items(), key=lambda lp: lp[1][0]), max(preview.items(), key=lambda lp: lp[1][0])
    lines.append(f"power: with this baseline the smallest change caught ({POWER:.0%} power) ranges from "
                 f"+{100 * low[1][0]:.3g}% ({low[0]}) to +{100 * high[1][0]:.3g}% ({high[0]})")
    return lines


def notes(table: pd.DataFrame, baseline: Baseline, busy: str | None) -> list[str]:
    """The lines under the summary: power, the baseline's doubts, a busy host, missing ratios."""
    lines = []
    if baseline.doubts:
        lines.append(f"the baseline was made of doubtful runs, accepted with --force: {'; '.join(baseline.doubts)}")
    held = int(table["note"].str.contains("host was busy").sum())
    if busy and held:
        lines.append(f"the host was busy while measuring: {held} timed ratio{'s' if held != 1 else ''} that moved "
                     "beyond the threshold held back as inconclusive")
    elif busy:
        lines.append("the host was busy while measuring: timed ratios may have moved with the load, not the code")
    return lines


def missing(table: pd.DataFrame) -> str:
    """The section for ratios the current run did not measure ("" if none): apart from regressed,
    since nothing was measured slower."""
    named = missing_backends(table)
    if not named:
        return ""
    n = int((table["verdict"] == "missing").sum())
    return (f"missing: {', '.join(named)} ({n} ratio{'s' if n != 1 else ''} of the baseline not measured by "
            "this run: its backend failed or was not run; not judged, no slowdown was measured)")


def across(elsewhere: str) -> str:
    """The first line of a comparison across machines ("" if none)."""
    return (f"ACROSS MACHINES: the baseline was measured on another machine ({elsewhere}); its ratios carry "
            "that machine's costs, so a difference may be the machine's, not the code's") if elsewhere else ""


def _modes(df: pd.DataFrame) -> str:
    return ("exact mode for ratios on one CPU, timed across CPUs" if mode(df) == "exact" else "timed mode")


def render(table: pd.DataFrame, baseline: Baseline, fmt: str, *, fixed: float | None = None,
           busy: str | None = None, elsewhere: str = "") -> str:
    """The check as text, json or markdown (no final newline)."""
    first = across(elsewhere)
    tail = [x for x in (missing(table), power(table, fixed), *notes(table, baseline, busy)) if x]
    if fmt == "json":
        return json.dumps({"summary": summary(table, baseline), "across_machines": elsewhere,
                           "regressed": regressed_backends(table), "missing": missing_backends(table),
                           "power": power(table, fixed), "doubts": list(baseline.doubts), "busy": busy or "",
                           "threshold": fixed,
                           "baseline": str(baseline.path), "mode": mode(baseline.values),
                           "ratios": json.loads(table.to_json(orient="records", force_ascii=False))},  # NaN -> null
                          indent=1, ensure_ascii=False)
    ratios = _table(HEADERS, _rows(table), "l" * len(HEADERS))
    if fmt == "markdown":
        blocks = [*([("p", f"**{first}**")] if first else []), ("p", f"**{summary(table, baseline)}**"),
                  *(("p", x) for x in tail), ratios]
        return to_markdown(blocks).removesuffix("\n")
    # The summary last, under the table: a terminal shows it after the rows scroll by.  The last
    # column is not padded (no trailing blanks), and the rule is as long as the header.
    lines = [line.rstrip() for line in to_text([ratios]).split("\n")]
    lines[1] = "-" * len(lines[0])
    return "\n".join([*([first] if first else []), *lines, summary(table, baseline), *tail])
