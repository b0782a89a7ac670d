"""A diagnosis, never a price (issue 26, the AMD EPYC day): the prices refit with one unknown more, ns per
64-byte code line run at least every other iteration (user and kernel, from the plugin's per-PC counts in
raw/counts.txt.gz), safe_ret held at its direct measure and retpoline at 0 as `bench prices` holds them.
Does the cost the parts miss follow the code's footprint?  Run from the checkout with its .venv:

  .venv/bin/python results/anatomy/prices/machines/AMD-EPYC-6.18.44-fc-v1300/code-line-fit.py PRICES.json TWIN_DIR

(code-line-fit.log: the three AMD EPYC records and the Intel Xeon one against their twins)."""
import gzip
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

sys.path.insert(0, str(Path(__file__).resolve().parents[5]))
from bench.anatomy import composed as C                       # noqa: E402
from bench.anatomy.counts import parse_counts                  # noqa: E402


def lines(directory: Path) -> dict[str, int]:
    """Distinct 64-byte code lines each run of an anatomy ran at least every other iteration."""
    windows = parse_counts(gzip.decompress((directory / "raw" / "counts.txt.gz").read_bytes()).decode())
    runs = [json.loads(line.split("\t")[2]) | {"label": line.split("\t")[0]}
            for line in (directory / "raw" / "driver.tsv").read_text().splitlines()]
    ok = [r for r in runs if r.get("ok")]
    return {r["label"]: len({pc >> 6 for pc, n in w.counts.items() if n >= r["calls"] / 2}) for r, w in zip(ok, windows)}


def main(record_path: str, twin: str) -> None:
    twin = Path(twin)
    parts, mechanisms = C.paths_from_anatomy(twin / "parts"), C.paths_from_anatomy(twin)
    part_lines, mechanism_lines = lines(twin / "parts"), lines(twin)
    med = {k: float(np.median(v)) for k, v in json.loads(Path(record_path).read_text())["ns_per_iteration"].items()}
    labels = [p for p in C.fitted_parts() if p in parts and p in med]
    base = C.fit(parts, med, labels)
    A = np.array([np.r_[C.counts(parts[p], parts), part_lines[p]] for p in labels])
    y = np.array([med[p] for p in labels])
    names = [*C.PRICES, "line"]
    x, free = np.zeros(len(names)), np.any(A != 0, axis=0)
    if "ret-thunk" in med:          # as bench prices: safe_ret measured directly, retpoline held beside it
        x[names.index("safe_ret")] = med["ret-thunk"] - med["ret-plain"]
        free[[names.index("safe_ret"), names.index("retpoline")]] = False
    x[free] = nnls((A / y[:, None])[:, free], 1 - (A[:, ~free] @ x[~free]) / y)[0]
    print(f"## {record_path} against {twin}")
    print("prices, ns: " + ", ".join(f"{k} {base.prices[k]:.3g} -> {v:.3g}" for k, v in zip(names, x) if k != "line")
          + f", line {x[-1]:.3g}")
    old = np.array([base.prices[k] for k in C.PRICES])
    rows = [(p, part_lines[p], med[p], np.r_[C.counts(parts[p], parts), part_lines[p]]) for p in [*labels, "dup"]
            if p in med and p in parts]
    rows += [(m, mechanism_lines[m], med[C.MECHANISM + m], np.r_[C.counts(path, parts), mechanism_lines[m]])
             for m, path in sorted(mechanisms.items()) if C.MECHANISM + m in med]
    for name, n_lines, measured, a in rows:
        print(f"{name:24} {n_lines:5d} lines {measured:9.1f} ns  residual {100 * (a[:-1] @ old / measured - 1):+6.1f}% "
              f"-> {100 * (a @ x / measured - 1):+6.1f}%")


if __name__ == "__main__":
    main(*sys.argv[1:3])
