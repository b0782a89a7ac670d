"""bench compare and bench history as users expect: nothing dropped silently, no two machines joined."""
import json
import re

from bench import regression as R
from conftest import run_bench
from data.synthetic import HOST, write_suite

BASE = {k: v for k, v in HOST.items() if ":pages=" not in k and ":parallel=" not in k}


def on_cpu(path, cpu: str):
    """The suite at path as if measured on a CPU of another model."""
    data = json.loads(path.read_text())
    for b in data["benchmarks"]:
        b["metadata"]["vmexec_cpu_model"] = cpu
    data.get("metadata", {}).pop("vmexec_cpu_model", None)
    path.write_text(json.dumps(data))
    return path


def test_compare_lists_the_cases_only_one_file_has(tmp_path):
    a = write_suite(tmp_path / "a.json", BASE, seed=1)
    short = {k: v for k, v in BASE.items() if k.startswith(("native:", "ptrace-sysemu:pin=same"))}
    b = write_suite(tmp_path / "b.json", {**short, "newcomer:pin=same": 4000.0}, seed=2)
    proc = run_bench("compare", str(a), str(b))
    assert proc.returncode == 0, proc.stderr
    only_a = sorted(set(BASE) - set(short))
    lines = proc.stdout.splitlines()
    said_a = next(line for line in lines if line.startswith("not compared, only in a "))
    said_b = next(line for line in lines if line.startswith("not compared, only in b "))
    assert f"({len(only_a)} cases): " in said_a and sorted(said_a.split(": ", 1)[1].split(", ")) == only_a
    assert said_b.endswith("(1 case): newcomer:pin=same")
    compared = [line.split()[0] for line in lines[2:] if re.match(r"\S+:pin=\S+\s+\d", line)]
    assert sorted(compared) == sorted(short)
    assert proc.stderr == ""        # one machine: no warning


def test_compare_warns_once_per_field_when_the_machines_differ(tmp_path):
    a = write_suite(tmp_path / "a.json", BASE, seed=1)
    b = on_cpu(write_suite(tmp_path / "b.json", BASE, vm=True, kernel="6.12.99-vmexec", seed=2), "AMD EPYC")
    proc = run_bench("compare", str(a), str(b))
    assert proc.returncode == 0, proc.stderr
    warnings = proc.stderr.strip().splitlines()
    assert all(w.startswith("compare: warning: the runs differ in ") for w in warnings)
    fields = [w.split("differ in ")[1].split(":")[0] for w in warnings]
    # The synthetic guest records no host CPU model and no QEMU version: fields not recorded are not compared.
    assert fields == ["kind", "kernel release", "CPU model", "accelerator", "timing"]
    assert "A '6.1.0-host', B '6.12.99-vmexec'" in proc.stderr and "B 'AMD EPYC'" in proc.stderr


def test_history_keeps_one_series_per_machine_and_kernel(tmp_path):
    xeon = [on_cpu(write_suite(tmp_path / f"x{i}.json", BASE, seed=i + 1, started=f"2026-01-0{i + 1}T00:00:00"),
                   "Intel Xeon") for i in range(2)]
    epyc = [on_cpu(write_suite(tmp_path / f"e{i}.json", BASE, seed=i + 5, started=f"2026-01-0{i + 3}T00:00:00"),
                   "AMD EPYC") for i in range(2)]
    h = R.history([*xeon, *epyc])
    machines = sorted(h["machine"].unique())
    assert len(machines) == 2 and "AMD EPYC" in machines[0] and "Intel Xeon" in machines[1]
    for (_, case), g in h.groupby(["machine", "case"]):
        assert g["run_id"].nunique() == 2, case        # each series holds its own machine's two runs only
    proc = run_bench("history", *map(str, [*xeon, *epyc]), "--output", str(tmp_path / "hist"))
    assert proc.returncode == 0, proc.stderr
    assert "(4 runs; 2 machines, one series each)" in proc.stdout
    headers = [line for line in proc.stdout.splitlines() if line.endswith("(2 runs):")]
    assert len(headers) == 2 and (tmp_path / "hist" / "history.png").stat().st_size > 0


def test_history_plot_with_many_runs_has_one_colour_per_backend_and_its_legend_outside(tmp_path):
    from bench.render import plots

    runs = [write_suite(tmp_path / f"r{i:02}.json", BASE, seed=i + 1, workers=3, values=2,
                        started=f"2026-01-{i + 1:02}T00:00:00") for i in range(20)]
    h = R.history(runs)
    fig = plots.plot_history(h)
    ax = fig.axes[0]
    lines = [c for c in ax.containers]           # one errorbar container per case
    colours = {}
    for container, case in zip(lines, sorted(h["case"].unique())):
        colours.setdefault(case.split(":")[0], set()).add(container.lines[0].get_color())
    assert all(len(c) == 1 for c in colours.values())                       # a backend keeps its colour
    assert len({next(iter(c)) for c in colours.values()}) == len(colours)   # and no two share one
    assert len(ax.get_xticks()) <= 12                                        # labels thinned: 20 runs
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1                           # outside the data
