"""bench check --baseline, bench baseline, bench history: on synthetic runs whose answers are known."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import stats
from bench import regression as R
from bench.results import Case
from conftest import run_bench
from data.synthetic import HOST, write_suite
from tracers.driver import PLANT_ENV

#: The ratios judged most often below, as `bench check` labels them.
SYSCALL_NATIVE = R.Ratio(Case("ptrace-syscall", "same"), Case("native", "in-process"))
SYSEMU_NATIVE = R.Ratio(Case("ptrace-sysemu", "same"), Case("native", "in-process"))
SYSEMU_CROSS_NATIVE = R.Ratio(Case("ptrace-sysemu", "cross"), Case("native", "in-process"))

#: Host-like runs: 20 workers, values spread 5% within a worker.
BASE = {k: v for k, v in HOST.items() if ":pages=" not in k and ":parallel=" not in k}


def slower(medians: dict, backend: str, factor: float) -> dict:
    return {k: v * factor if k.startswith(backend + ":") else v for k, v in medians.items()}


def baseline_of(tmp_path, *medians, vm=False, sigma=0.05, name="baseline.json"):
    runs = [write_suite(tmp_path / f"run{i}.json", m, vm=vm, sigma=sigma, seed=i + 1,
                        started=f"2026-01-01T00:0{i}:00") for i, m in enumerate(medians)]
    return R.write(runs, tmp_path / name)


def summary_and_missing(text: str) -> tuple[str, str]:
    """The summary under the table and the line after it (the missing section, if any)."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(("no regression:", "REGRESSION in")))
    return lines[at], lines[at + 1]


def test_the_same_run_again_is_unchanged_and_exits_0(tmp_path):
    b = baseline_of(tmp_path, BASE)
    current = write_suite(tmp_path / "current.json", BASE, seed=7)
    proc = run_bench("check", "--baseline", str(b), "--current", str(current))
    assert proc.returncode == 0, proc.stderr
    assert "no regression" in proc.stdout and " regressed" not in proc.stdout.split("no regression")[0]


def test_a_slower_backend_regresses_names_it_and_exits_1(tmp_path):
    b = baseline_of(tmp_path, BASE)
    current = write_suite(tmp_path / "current.json", slower(BASE, "ptrace-sysemu", 1.2), seed=7)
    table = R.check(R.load(b), stats.load([current]))
    bad = table[table["verdict"] == "regressed"]
    assert set(bad["backend"]) == {"ptrace-sysemu"} and set(bad["reference"]) == {"native"}
    # Against a slower PTRACE_SYSEMU every other backend looks faster: improved, not regressed.
    assert set(table[table["reference"] == stats.SYSEMU]["verdict"]) == {"improved"}
    assert R.regressed_backends(table) == ["ptrace-sysemu"]
    proc = run_bench("check", "--baseline", str(b), "--current", str(current))
    assert proc.returncode == 1 and "regression in ptrace-sysemu" in proc.stderr, proc.stderr
    assert "REGRESSION in ptrace-sysemu" in proc.stdout


def test_a_ratio_the_current_run_did_not_measure_is_missing_apart_from_regressed_and_exits_3(tmp_path):
    b = baseline_of(tmp_path, BASE)
    broken = {k: v for k, v in BASE.items() if not k.startswith("ptrace-syscall:")}
    table = R.check(R.load(b), stats.load([write_suite(tmp_path / "c.json", broken, seed=7)]))
    assert set(table[table["verdict"] == "missing"]["backend"]) == {"ptrace-syscall"}
    assert R.regressed_backends(table) == [] and R.missing_backends(table) == ["ptrace-syscall"]
    proc = run_bench("check", "--baseline", str(b), "--current", str(tmp_path / "c.json"))
    assert proc.returncode == 3, proc.stderr
    summary, section = summary_and_missing(proc.stdout)
    assert summary.startswith("no regression:") and "REGRESSION" not in proc.stdout
    assert section.startswith("missing: ptrace-syscall (") and "not measured" in section
    assert proc.stderr.strip() == "bench: failed: missing: ptrace-syscall (not measured by this run)"
    data = json.loads(run_bench("check", "--baseline", str(b), "--current", str(tmp_path / "c.json"),
                                "--format", "json").stdout)
    assert data["regressed"] == [] and data["missing"] == ["ptrace-syscall"]
    warned = run_bench("check", "--baseline", str(b), "--current", str(tmp_path / "c.json"), "--warn-only")
    assert warned.returncode == 0 and "warning only: missing: ptrace-syscall" in warned.stderr


def test_a_regression_outranks_a_missing_ratio_and_both_are_named_apart(tmp_path):
    b = baseline_of(tmp_path, BASE)
    both = {k: v for k, v in slower(BASE, "ptrace-sysemu", 1.5).items() if not k.startswith("ptrace-syscall:")}
    current = write_suite(tmp_path / "c.json", both, seed=7)
    proc = run_bench("check", "--baseline", str(b), "--current", str(current))
    assert proc.returncode == 1, proc.stderr
    summary, section = summary_and_missing(proc.stdout)
    assert summary.startswith("REGRESSION in ptrace-sysemu:")      # not ptrace-syscall
    assert section.startswith("missing: ptrace-syscall (")
    md = run_bench("check", "--baseline", str(b), "--current", str(current), "--format", "markdown").stdout
    assert md.startswith("**REGRESSION in ptrace-sysemu:") and "\nmissing: ptrace-syscall (" in md


def test_the_help_states_every_exit_status():
    text = " ".join(run_bench("check", "--help").stdout.split())
    for said in ("0 nothing regressed and nothing missing", "1 a ratio regressed", "3 no ratio regressed",
                 "2 bad input", "Make your own baseline first"):
        assert said in text


def test_thresholds_come_from_the_spread_measured_between_the_baselines_runs(tmp_path):
    # Three runs at 1.00, 1.05 and 1.02 x ptrace-syscall: centre 1.023, sd of the log 2.5%.
    b = R.load(baseline_of(tmp_path, BASE, slower(BASE, "ptrace-syscall", 1.05), slower(BASE, "ptrace-syscall", 1.02)))
    label = SYSCALL_NATIVE.label
    assert label == "ptrace-syscall:pin=same ÷ native:pin=in-process"
    n = b.noise[label]
    assert n["runs"] == 3 and n["sd"] == pytest.approx(0.025, abs=0.005)
    assert n["centre"] == pytest.approx(18_000 / 300 * 1.023, rel=0.01)
    threshold, source = b.threshold(SYSCALL_NATIVE)
    assert threshold == pytest.approx(np.expm1(R.SIGMAS * n["sd"] * np.sqrt(1 + 1 / 3))) and "3 runs" in source
    within = R.check(b, stats.load([write_suite(tmp_path / "c1.json", slower(BASE, "ptrace-syscall", 1.06), seed=9)]))
    beyond = R.check(b, stats.load([write_suite(tmp_path / "c2.json", slower(BASE, "ptrace-syscall", 1.35), seed=9)]))
    assert within.set_index("ratio").loc[label, "verdict"] == "unchanged"
    assert beyond.set_index("ratio").loc[label, "verdict"] == "regressed"


def test_deterministic_runs_catch_a_one_percent_change_on_one_cpu_only(tmp_path):
    """icount repeats to the instruction on one CPU.  Across two, QEMU's round-robin hands the CPU between
    vCPUs on host-timed events: a cross-CPU count moves with load, and is judged as timed."""
    b = R.load(baseline_of(tmp_path, BASE, BASE, BASE, vm=True, sigma=1e-7))
    assert R.mode(b.values) == "exact" and b.threshold(SYSEMU_NATIVE)[0] == R.FLOOR["exact"]
    checked = R.check(b, stats.load([write_suite(tmp_path / "c.json", slower(BASE, "ptrace-sysemu", 1.01),
                                             vm=True, sigma=1e-7, seed=5)]))
    assert R.regressed_backends(checked) == ["ptrace-sysemu"]
    table = checked.set_index("ratio")
    same, cross = SYSEMU_NATIVE.label, SYSEMU_CROSS_NATIVE.label
    assert R.ratio_mode("exact", SYSEMU_NATIVE) == "exact" and table.loc[same, "threshold"] == R.FLOOR["exact"]
    assert table.loc[same, "verdict"] == "regressed"
    assert R.ratio_mode("exact", SYSEMU_CROSS_NATIVE) == "timed" and table.loc[cross, "threshold"] == R.FLOOR["timed"]
    assert table.loc[cross, "verdict"] == "unchanged"
    assert R.ratio_mode("timed", SYSEMU_NATIVE) == "timed"
    swept = R.Ratio(Case("ptrace-sysemu", "same", parallel=2), Case("native", "in-process"))
    assert R.ratio_mode("exact", swept) == "timed"


def test_a_change_beyond_the_threshold_within_the_noise_is_inconclusive():
    assert R.judge(1.3, 0.9, 1.8, 0.1) == "inconclusive"
    assert R.judge(1.3, 1.1, 1.5, 0.1) == "regressed"
    assert R.judge(1.05, 1.01, 1.09, 0.1) == "unchanged"      # significant, but inside the threshold
    assert R.judge(0.7, 0.6, 0.8, 0.1) == "improved"


def test_a_baseline_from_another_machine_is_refused_unless_forced_or_warn_only(tmp_path):
    b = baseline_of(tmp_path, BASE, vm=True, sigma=1e-7)
    host = write_suite(tmp_path / "host.json", slower(BASE, "ptrace-sysemu", 1.5), seed=3)
    refused = run_bench("check", "--baseline", str(b), "--current", str(host))
    assert refused.returncode == 2 and "another machine" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    warned = run_bench("check", "--baseline", str(b), "--current", str(host), "--warn-only")
    assert warned.returncode == 0 and "warning only" in warned.stderr and "another machine" in warned.stderr
    assert "REGRESSION" in warned.stdout
    forced = run_bench("check", "--baseline", str(b), "--current", str(host), "--force")
    assert forced.returncode == 1


def test_replacing_a_baseline_from_another_machine_needs_force(tmp_path):
    b = baseline_of(tmp_path, BASE)
    guest = write_suite(tmp_path / "guest.json", BASE, vm=True)
    proc = run_bench("baseline", str(guest), "--output", str(b))
    assert proc.returncode == 2 and "another machine" in proc.stderr
    assert R.mode(R.load(b).values) == "timed"          # untouched
    assert run_bench("baseline", str(guest), "--output", str(b), "--force").returncode == 0
    assert R.mode(R.load(b).values) == "exact"


def test_formats_json_and_markdown(tmp_path):
    b = baseline_of(tmp_path, BASE)
    current = write_suite(tmp_path / "current.json", slower(BASE, "ptrace-sysemu", 1.2), seed=7)
    out = run_bench("check", "--baseline", str(b), "--current", str(current), "--format", "json")
    data = json.loads(out.stdout)
    assert data["regressed"] == ["ptrace-sysemu"] and data["mode"] == "timed" and data["ratios"]
    md = run_bench("check", "--baseline", str(b), "--current", str(current), "--format", "markdown").stdout
    assert md.startswith("**REGRESSION in ptrace-sysemu") and "| ratio | baseline | current |" in md


def test_baseline_window_takes_the_runs_before_the_current_one(tmp_path, monkeypatch):
    monkeypatch.setenv("VMEXEC_RESULTS_DIR", str(tmp_path))
    for i, factor in enumerate((1.0, 1.02, 1.01)):
        write_suite(tmp_path / f"r{i}.json", slower(BASE, "ptrace-syscall", factor), seed=i + 1,
                    started=f"2026-01-0{i + 1}T00:00:00")
    current = write_suite(tmp_path / "r9.json", slower(BASE, "ptrace-sysemu", 1.3), seed=9,
                          started="2026-01-09T00:00:00")
    proc = run_bench("check", "--baseline-window", "3", "--current", str(current))
    assert proc.returncode == 1 and "ptrace-sysemu" in proc.stderr, proc.stderr
    assert "3 sd: sd" in proc.stdout


def test_history_plots_every_ratio_run_after_run(tmp_path):
    runs = [write_suite(tmp_path / f"h{i}.json", slower(BASE, "ptrace-syscall", 1 + i / 10), seed=i + 1,
                        started=f"2026-01-0{i + 1}T00:00:00") for i in range(3)]
    proc = run_bench("history", *map(str, runs), "--output", str(tmp_path / "hist"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "hist" / "history.png").stat().st_size > 0
    h = R.history(runs)
    syscall = h[h["case"].str.startswith("ptrace-syscall:pin=same")]
    # speed-up = ptrace-sysemu ÷ ptrace-syscall = 10,000 / (18,000 x 1.0, 1.1, 1.2)
    assert list((1 / syscall["speedup"]).round(1)) == [1.8, 2.0, 2.2]


@pytest.mark.parametrize("args, message", [
    (["check", "--baseline", "/nonexistent.json", "--current", "/nonexistent.json"], "no such results file"),
    (["check", "--baseline-window", "2"], "needs --current"),
    (["check", "--baseline-window", "0", "--current", "x.json"], "must be 1 or more"),
    (["baseline", "--output", "b.json"], "the following arguments are required"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = run_bench(*args)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_results_file_that_is_no_baseline_is_refused(tmp_path):
    run = write_suite(tmp_path / "run.json", BASE)
    proc = run_bench("check", "--baseline", str(run), "--current", str(run))
    assert proc.returncode == 2 and "not a baseline" in proc.stderr


def test_without_current_the_baselines_own_run_is_repeated(tiny_results, tmp_path):
    b = R.write([tiny_results], tmp_path / "b.json")
    assert R.load(b).rerun[0] == "run" and "--output" not in R.load(b).rerun
    proc = run_bench("check", "--baseline", str(b))
    assert proc.returncode in (0, 1), proc.stderr        # host timings: either verdict is honest
    assert "check: running python -m bench run" in proc.stderr
    assert SYSEMU_NATIVE.label in proc.stdout


def test_a_baseline_from_another_machine_is_refused_before_its_run_is_repeated(tmp_path):
    b = baseline_of(tmp_path, BASE)         # recorded kernel 6.1.0-host and a synthetic CPU
    proc = run_bench("check", "--baseline", str(b))
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "check: running" not in proc.stderr
    assert "kernel release '6.1.0-host' vs" in proc.stderr and "CPU model 'Synthetic CPU @ 3.0GHz' vs" in proc.stderr
    assert "make your own baseline here: `python -m bench run --fast` 5 or more times" in proc.stderr
    assert f"--output {b} --force" in proc.stderr and "bench check --against REV" in proc.stderr
    # On two hosts the host CPU model is the CPU model: named once.
    assert "host CPU model" not in proc.stderr


def test_the_refusal_reads_the_machine_without_pandas_and_measures_nothing(tmp_path):
    """What makes the refusal fast: neither pandas nor pyperf is imported, no driver run starts and no
    results file is written before another machine's baseline is refused."""
    import subprocess
    import sys

    b = baseline_of(tmp_path, BASE)
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    probe = ("import sys\nfrom bench.commands.cli import main\n"
             f"status = main(['check', '--baseline', {str(b)!r}])\n"
             "heavy = sorted(m for m in ('pandas', 'pyperf', 'scipy', 'matplotlib', 'numpy') if m in sys.modules)\n"
             "print('status', status, 'heavy', ','.join(heavy) or 'none')\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "VMEXEC_RESULTS_DIR": str(results_dir)})
    assert proc.stdout.strip() == "status 2 heavy none", (proc.stdout, proc.stderr)
    assert "another machine" in proc.stderr and "check: running" not in proc.stderr
    assert list(results_dir.iterdir()) == []


@pytest.mark.parametrize("vm", [False, True])
def test_the_machine_read_from_the_file_is_the_machine_read_from_its_frame(tmp_path, vm):
    from bench import machine

    path = write_suite(tmp_path / "run.json", BASE, vm=vm, sigma=1e-7 if vm else 0.05)
    assert machine.of_suite(path, json.loads(path.read_text())) == R.machine(stats.load([path]))


def test_the_committed_baselines_machines_read_alike():
    from bench import machine
    from bench.measure.environment import REPO

    for path in sorted((REPO / "baselines").glob("*.json")):
        assert machine.of_suite(path, json.loads(path.read_text())) == R.machine(stats.load([path])), path


def test_every_field_of_the_machine_that_differs_is_named_and_unrecorded_ones_are_not():
    there = {"kind": "guest", "kernel": "6.12.117-vmexec", "qemu": "QEMU emulator version 7.2.19",
             "compiler": "gcc 12.2.0", "host_cpu_model": "Intel Xeon", "accelerator": "tcg", "timing": "icount",
             "vmexec_cpu_model": ""}
    here = {**there, "kernel": "6.12.118-vmexec", "qemu": "QEMU emulator version 7.2.22",
            "compiler": "gcc 12.3.0", "host_cpu_model": "AMD EPYC", "vmexec_cpu_model": "QEMU TCG CPU"}
    said = R.differences(there, here)
    assert said == ("kernel release '6.12.117-vmexec' vs '6.12.118-vmexec'; host CPU model 'Intel Xeon' vs "
                    "'AMD EPYC'; QEMU version 'QEMU emulator version 7.2.19' vs 'QEMU emulator version 7.2.22'; "
                    "compiler 'gcc 12.2.0' vs 'gcc 12.3.0'")
    assert R.differences(there, {k: v for k, v in there.items() if k != "kernel"}) == ""


def test_a_guest_run_is_known_before_it_boots(monkeypatch, tmp_path):
    from bench.measure import continuous
    from bench.measure import kernel
    from bench.measure import vm

    monkeypatch.setattr(kernel, "build", lambda log, variant: kernel.KernelBuild(
        tmp_path / "bzImage", f"6.12.999-vmexec{'-mitigations' if variant == 'mitigations' else ''}", "k", 0, True))
    monkeypatch.setattr(vm, "qemu_version", lambda: "QEMU emulator version 99.0")
    here = continuous.machine_for(["vm", "run", "--timing", "icount", "--accel", "tcg", "--kernel-variant",
                                   "mitigations", "--", "--pin", "same"])
    assert here["kind"] == "guest" and here["kernel"] == "6.12.999-vmexec-mitigations"
    assert here["qemu"] == "QEMU emulator version 99.0" and here["accelerator"] == "tcg" and here["timing"] == "icount"
    assert here["compiler"].startswith(("gcc ", "clang ")) and "vmexec_cpu_model" not in here   # not known before boot


def test_a_guest_baseline_repeats_its_kernel_variant():
    assert R.kernel_variant("6.12.118-vmexec-mitigations") == "mitigations"
    assert R.kernel_variant("6.12.118-vmexec") == "bench" and R.kernel_variant("6.12.118-unpatched") == "unpatched"


@pytest.mark.skipif(not (stats.pathlib.Path(__file__).resolve().parent.parent / ".git").exists(),
                    reason="--against needs a git checkout")
def test_against_a_commit_interleaves_its_own_trees_runs_with_this_ones(tmp_path):
    import subprocess

    from bench.measure.environment import REPO

    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    proc = run_bench("check", "--against", "HEAD", "--results", str(tmp_path), "--warn-only", "--format", "json",
                     "--repeat", "2",
                     "--", "run", "--backends", "native,ptrace-sysemu", "--pin", "same", "--processes", "1",
                     "--values", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert [r["ratio"] for r in report["ratios"]] == [SYSEMU_NATIVE.label]
    assert f"HEAD ({head[:12]}) measured now, 2 runs interleaved" in report["summary"]
    # base, head, base, head: drift between them falls on both sides.
    order = [line.rsplit(" from ", 1)[1] for line in proc.stderr.splitlines() if line.startswith("check: running")]
    assert order == [f"HEAD ({head[:12]}), 1 of 2", "this tree, 1 of 2", f"HEAD ({head[:12]}), 2 of 2",
                     "this tree, 2 of 2"], order
    for i in ("1", "2"):
        reference = json.loads((tmp_path / head[:12] / i / "run.json").read_text())["metadata"]
        current = json.loads((tmp_path / "worktree" / i / "run.json").read_text())["metadata"]
        # HEAD's run was made by HEAD's own code, exported beside the results; this tree's by this tree.
        assert reference["vmexec_tag_revision"] == head
        assert reference["vmexec_command"].startswith(str(tmp_path / "export" / "tree" / "bench"))
        assert current["vmexec_command"].startswith(str(REPO / "bench")) and "vmexec_tag_revision" not in current
    assert not (tmp_path / "export").exists()       # the exported tree is removed after its runs
    assert "the 2 pairs of runs took" in proc.stderr
    # Two runs of each side: the spread between the commit's runs is measured, and its threshold from it.
    assert report["ratios"][0]["threshold_source"] != "one-run baseline: spread not measured"
    assert report["ratios"][0]["spread_measured"] is True


def test_a_timed_comparison_repeats_by_default_and_an_icount_one_does_not():
    from bench.measure import continuous

    assert continuous.default_repeat(["run", "--fast"]) == continuous.REPEAT_TIMED > 1
    assert continuous.default_repeat(list(continuous.DEFAULT_RUN)) == 1
    assert continuous.default_repeat(["vm", "run", "--timing", "wall", "--", "--fast"]) == continuous.REPEAT_TIMED


@pytest.mark.parametrize("args, message", [
    (["check", "--against", "no-such-commit"], "names no commit"),
    (["check", "--against", "HEAD", "--current", "x.json"], "takes no --current"),
    (["check", "--baseline", "b.json", "--", "run"], "is what --against measures"),
    (["check", "--baseline", "b.json", "--results", "d"], "keeps the two runs of --against"),
    (["check", "--baseline", "b.json", "--repeat", "2"], "how many runs of each tree --against makes"),
    (["check", "--baseline", "b.json", "--threshold", "nan"], "must be above 0"),
    (["check", "--baseline", "b.json", "--threshold", "-5"], "must be above 0"),
    (["check", "--baseline", "b.json", "--threshold", "inf"], "must be above 0"),
    (["check", "--against", "HEAD", "--", "report"], "measures with `run` or `vm run`"),
])
def test_bad_against_input_is_one_line_and_exit_2(args, message):
    proc = run_bench(*args)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_window_and_history_skip_stray_json_in_the_results_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("VMEXEC_RESULTS_DIR", str(tmp_path))
    for i in range(2):
        write_suite(tmp_path / f"r{i}.json", BASE, seed=i + 1, started=f"2026-01-0{i + 1}T00:00:00")
    current = write_suite(tmp_path / "r9.json", BASE, seed=9, started="2026-01-09T00:00:00")
    (tmp_path / "notes.json").write_text('{"metadata": "not an object"}')
    (tmp_path / "list.json").write_text("[1, 2]")
    window = run_bench("check", "--baseline-window", "2", "--current", str(current))
    assert window.returncode == 0 and "Traceback" not in window.stderr, window.stderr
    history = run_bench("history", "--output", str(tmp_path / "h"))
    assert history.returncode == 0 and "(3 runs; 1 machine" in history.stdout, history.stderr


# --------------------------------------------------------------------------- power, doubts, what cannot be judged

def busy(path, load=6.0):
    """path as a busy host records it: every worker saw a 1-minute load above its 2 CPUs."""
    data = json.loads(path.read_text())
    for b in data["benchmarks"]:
        for run in b["runs"]:
            run.setdefault("metadata", {})["load_avg_1min"] = load
    path.write_text(json.dumps(data))
    return path


def test_every_ratio_states_the_smallest_change_it_could_catch(tmp_path):
    b = R.load(baseline_of(tmp_path, BASE, slower(BASE, "ptrace-syscall", 1.05), slower(BASE, "ptrace-syscall", 1.02)))
    table = R.check(b, stats.load([write_suite(tmp_path / "c.json", BASE, seed=9)])).set_index("ratio")
    label = SYSCALL_NATIVE.label
    sigma = b.spread(SYSCALL_NATIVE)
    # The threshold (3 sd) plus the 80%-power quantile of the same noise: the change caught 4 times in 5.
    threshold = table.loc[label, "threshold"]
    assert table.loc[label, "detectable"] == pytest.approx(np.expm1(np.log1p(threshold) + R.Z_POWER * sigma))
    assert table.loc[label, "detectable"] > threshold and table.loc[label, "spread_measured"]
    proc = run_bench("check", "--baseline", str(b.path), "--current", str(tmp_path / "c.json"))
    assert proc.returncode == 0, proc.stderr
    assert "catches (80% power)" in proc.stdout
    assert "power: the smallest change caught (80% power) ranges from +" in proc.stdout


def test_a_planted_change_is_caught_4_times_in_5_at_the_stated_power(tmp_path):
    """The stated power is the test's own: runs whose ratio moves by the run-to-run spread the baseline
    measured, with the change stated as detectable planted, are caught about 80% of the time."""
    rng = np.random.default_rng(3)
    runs = [slower(BASE, "ptrace-syscall", float(np.exp(rng.normal(0, 0.03)))) for _ in range(6)]
    b = R.load(baseline_of(tmp_path, *runs, sigma=0.01))
    target = R.check(b, stats.load([write_suite(tmp_path / "c.json", BASE, sigma=0.01, seed=9)])) \
        .set_index("ratio").loc[SYSCALL_NATIVE.label, "detectable"]
    caught = 0
    for i in range(40):
        factor = (1 + target) * float(np.exp(rng.normal(0, 0.03) + np.log(b.noise[SYSCALL_NATIVE.label]["centre"]
                                                                           / (18_000 / 300))))
        run = write_suite(tmp_path / f"p{i}.json", slower(BASE, "ptrace-syscall", factor), sigma=0.01, seed=100 + i)
        caught += R.check(b, stats.load([run])).set_index("ratio").loc[SYSCALL_NATIVE.label, "verdict"] == "regressed"
    assert 24 <= caught <= 38, caught       # 80% of 40 is 32; binomial 99% range about 24-38


def test_a_fixed_threshold_judges_every_ratio_against_it_and_names_what_cannot_catch_it(tmp_path):
    b = baseline_of(tmp_path, BASE, slower(BASE, "ptrace-syscall", 1.30), slower(BASE, "ptrace-syscall", 0.85))
    current = write_suite(tmp_path / "c.json", slower(BASE, "ptrace-sysemu", 1.15), seed=9)
    table = R.check(R.load(b), stats.load([current]), fixed=0.10).set_index("ratio")
    assert table.loc[SYSEMU_NATIVE.label, "threshold"] == 0.10
    assert table.loc[SYSEMU_NATIVE.label, "verdict"] == "regressed"        # +15% beyond the fixed 10%
    assert table.loc[SYSEMU_NATIVE.label, "threshold_source"] == "fixed by --threshold"
    # Noise-derived thresholds (sd 1.3% over 3 runs: 4.5%) would also have caught it; a fixed 20% does not.
    assert R.check(R.load(b), stats.load([current]), fixed=0.20).set_index("ratio").loc[
        SYSEMU_NATIVE.label, "verdict"] == "unchanged"
    proc = run_bench("check", "--baseline", str(b), "--current", str(current), "--threshold", "10")
    assert proc.returncode == 1, proc.stderr
    power = next(line for line in proc.stdout.splitlines() if line.startswith("power:"))
    # ptrace-syscall's ratios moved -15% to +30% between the baseline's runs: 10% is within their noise;
    # ptrace-sysemu's moved by about 1%: it can catch 10%.
    assert "cannot catch the +10% asked for" in power and SYSCALL_NATIVE.label in power, power
    assert SYSEMU_NATIVE.label + " (" not in power


def test_the_check_says_before_its_run_which_ratios_cannot_catch_the_change_asked_for(tiny_results, tmp_path):
    b = R.write([tiny_results], tmp_path / "b.json")
    proc = run_bench("check", "--baseline", str(b), "--threshold", "1")
    assert proc.returncode in (0, 1), proc.stderr
    said = proc.stderr.splitlines()
    running = next(i for i, line in enumerate(said) if line.startswith("check: running"))
    power = next(i for i, line in enumerate(said) if line.startswith("check: power:"))
    # One worker of two values on a wall clock: a 1% change is beyond what it can see, said up front.
    assert power < running and "cannot catch the +1% asked for" in said[power]
    assert SYSEMU_NATIVE.label in said[power]


def test_bench_baseline_refuses_busy_or_unstable_runs_unless_forced_and_marks_them(tmp_path):
    quiet = write_suite(tmp_path / "quiet.json", BASE, seed=1, started="2026-01-01T00:00:00")
    loaded = busy(write_suite(tmp_path / "loaded.json", BASE, seed=2, started="2026-01-01T00:01:00"))
    shaky = write_suite(tmp_path / "shaky.json", BASE, sigma=0.4, seed=3, started="2026-01-01T00:02:00")
    for runs, why in (([quiet, loaded], "loaded.json: host busy"), ([quiet, shaky], "shaky.json: pyperf calls")):
        out = tmp_path / f"b-{runs[1].stem}.json"
        proc = run_bench("baseline", *map(str, runs), "--output", str(out))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "refusing a baseline of doubtful runs" in proc.stderr and why in proc.stderr
        assert not out.exists()
        forced = run_bench("baseline", *map(str, runs), "--output", str(out), "--force")
        assert forced.returncode == 0 and "marked doubtful" in forced.stdout, forced.stderr
        assert any(d.startswith(why) for d in R.load(out).doubts)
        check = run_bench("check", "--baseline", str(out), "--current", str(quiet), "--format", "json")
        data = json.loads(check.stdout)
        assert data["doubts"] and data["doubts"][-1].startswith(why)
        text = run_bench("check", "--baseline", str(out), "--current", str(quiet)).stdout
        assert "the baseline was made of doubtful runs, accepted with --force: " in text
    assert run_bench("baseline", str(quiet), "--output", str(tmp_path / "ok.json")).returncode == 0
    assert R.load(tmp_path / "ok.json").doubts == ()


def test_a_busy_hosts_timed_move_is_inconclusive_not_regressed(tmp_path):
    b = R.load(baseline_of(tmp_path, BASE))
    current = stats.load([busy(write_suite(tmp_path / "c.json", slower(BASE, "ptrace-sysemu", 1.5), seed=7))])
    held = R.check(b, current, busy=True).set_index("ratio").loc[SYSEMU_NATIVE.label]
    assert held["verdict"] == "inconclusive" and "host was busy" in held["note"]
    assert R.check(b, current).set_index("ratio").loc[SYSEMU_NATIVE.label, "verdict"] == "regressed"
    # Exact (icount, one CPU) ratios count instructions: the load cannot move them, and they are judged.
    (tmp_path / "g").mkdir()
    g = R.load(baseline_of(tmp_path / "g", BASE, vm=True, sigma=1e-7))
    guest = stats.load([write_suite(tmp_path / "g.json", slower(BASE, "ptrace-sysemu", 1.5), vm=True, sigma=1e-7)])
    assert R.check(g, guest, busy=True).set_index("ratio").loc[SYSEMU_NATIVE.label, "verdict"] == "regressed"
    # Against a stored baseline, the busy run is said beside the verdict.
    proc = run_bench("check", "--baseline", str(b.path), "--current", str(tmp_path / "c.json"), "--format", "json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["busy"].startswith("warning: the host was busy")


def test_a_one_value_per_case_run_is_not_judged(tmp_path):
    """One value per case: every interval has zero width; +67% is no measured regression."""
    one = dict(workers=1, values=1)
    runs = [write_suite(tmp_path / "b.json", BASE, **one, seed=1)]
    b = R.write(runs, tmp_path / "baseline.json")
    current = write_suite(tmp_path / "c.json", slower(BASE, "ptrace-sysemu", 1.6722), **one, seed=2)
    proc = run_bench("check", "--baseline", str(b), "--current", str(current), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    ratios = json.loads(proc.stdout)["ratios"]
    assert {r["verdict"] for r in ratios} == {"inconclusive"}
    assert all("one value per case" in r["note"] for r in ratios)
    assert "RuntimeWarning" not in proc.stderr


def test_a_zero_width_interval_on_a_wall_clock_is_not_judged(tmp_path):
    """Every value of a case alike on a wall clock (sigma 0): no measurement is that steady; not judged."""
    b = R.write([write_suite(tmp_path / "b.json", BASE, sigma=0.0, seed=1)], tmp_path / "baseline.json")
    current = write_suite(tmp_path / "c.json", slower(BASE, "ptrace-sysemu", 1.5), sigma=0.0, seed=2)
    table = R.check(R.load(b), stats.load([current])).set_index("ratio")
    assert table.loc[SYSEMU_NATIVE.label, "verdict"] == "inconclusive"
    assert "zero-width interval" in table.loc[SYSEMU_NATIVE.label, "note"]


def test_a_baseline_centre_no_time_could_give_is_refused_in_one_line(tmp_path):
    runs = [write_suite(tmp_path / f"run{i}.json", BASE, seed=i + 1, started=f"2026-01-01T00:0{i}:00")
            for i in range(2)]
    baseline = R.write(runs, tmp_path / "baseline.json")
    data = json.loads(baseline.read_text())
    meta = json.loads(data["metadata"][R.BASELINE_KEY])
    for label in meta["noise"]:
        meta["noise"][label]["centre"] = 1e300
    data["metadata"][R.BASELINE_KEY] = json.dumps(meta)
    baseline.write_text(json.dumps(data))
    proc = run_bench("check", "--baseline", str(baseline), "--current", str(runs[0]))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "centre 1e+300 is no ratio of two physical times" in proc.stderr


@pytest.mark.parametrize("seconds", [1e-21, 1e3])
def test_a_time_no_call_could_take_is_refused_before_a_baseline_is_written(tmp_path, seconds):
    good = write_suite(tmp_path / "good.json", BASE, seed=1, started="2026-01-01T00:00:00")
    odd = write_suite(tmp_path / "odd.json", BASE, seed=2, started="2026-01-01T00:01:00")
    data = json.loads(odd.read_text())
    for run in data["benchmarks"][0]["runs"]:
        if run.get("values"):
            run["values"] = [seconds] * len(run["values"])
    odd.write_text(json.dumps(data))
    out = tmp_path / "baseline.json"
    proc = run_bench("baseline", str(good), str(odd), "--output", str(out))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "is not a time one intercepted call can take" in proc.stderr and "RuntimeWarning" not in proc.stderr
    assert not out.exists()
    b = R.write([good], tmp_path / "one.json")
    checked = run_bench("check", "--baseline", str(b), "--current", str(odd))
    assert checked.returncode == 2 and "is not a time one intercepted call can take" in checked.stderr
    assert "RuntimeWarning" not in checked.stderr


def test_a_spread_too_wide_to_mean_anything_is_refused_before_the_baseline_is_written(tmp_path):
    runs = [write_suite(tmp_path / "a.json", BASE, seed=1, started="2026-01-01T00:00:00"),
            write_suite(tmp_path / "b.json", slower(BASE, "ptrace-syscall", 50.0), seed=2,
                        started="2026-01-01T00:01:00")]
    out = tmp_path / "baseline.json"
    proc = run_bench("baseline", *map(str, runs), "--output", str(out))
    assert proc.returncode == 2 and "is not a standard deviation of a log ratio" in proc.stderr, proc.stderr
    assert not out.exists()


def test_a_comparison_across_machines_says_so_in_its_first_line(tmp_path):
    b = baseline_of(tmp_path, BASE, vm=True, sigma=1e-7)
    host = write_suite(tmp_path / "host.json", BASE, seed=3)
    for fmt, first in (("text", "ACROSS MACHINES: "), ("markdown", "**ACROSS MACHINES: ")):
        out = run_bench("check", "--baseline", str(b), "--current", str(host), "--warn-only", "--format", fmt).stdout
        assert out.startswith(first) and "kind 'guest' vs 'host'" in out.splitlines()[0], out[:300]
    data = json.loads(run_bench("check", "--baseline", str(b), "--current", str(host), "--warn-only",
                                "--format", "json").stdout)
    assert "kind 'guest' vs 'host'" in data["across_machines"]
    (tmp_path / "other").mkdir()
    same = run_bench("check", "--baseline", str(baseline_of(tmp_path / "other", BASE)), "--current", str(host))
    assert "ACROSS MACHINES" not in same.stdout


def test_a_planted_29_percent_slowdown_on_this_host_is_caught_or_refused_up_front(tmp_path):
    """The issue's case: a baseline of this (shared, often loaded) host and a planted slowdown of 29% of
    ptrace-sysemu's cost as the baseline's runs measured it (a fixed 1000 ns was 25-30% on the Intel Xeon VM
    but about 10% on the AMD EPYC VM, under the 20% threshold: no slowdown the check promises to catch).
    Either the check names it, or it said before the run that it could not catch it there (its noise, a busy
    host) and did not call it unchanged."""
    runs = []
    for i in range(3):
        path = tmp_path / f"host-{i}.json"
        made = run_bench("run", "--backends", "native,ptrace-sysemu", "--pin", "same", "--processes", "4",
                         "--values", "4", "--output", str(path))
        assert made.returncode == 0, made.stderr[-2000:]
        runs.append(path)
    baseline = tmp_path / "my-host.json"
    made = run_bench("baseline", *map(str, runs), "--output", str(baseline))
    if made.returncode == 2:            # busy or unstable runs: refused, then accepted only when forced
        assert "refusing a baseline of doubtful runs" in made.stderr and not baseline.exists()
        made = run_bench("baseline", *map(str, runs), "--output", str(baseline), "--force")
    assert made.returncode == 0, made.stderr
    values = stats.load(runs)
    plant = 0.29 * values[values["case"] == SYSEMU_NATIVE.case.encode()]["value_ns"].median()
    proc = subprocess.run([sys.executable, "-m", "bench", "check", "--baseline", str(baseline), "--threshold", "20",
                           "--format", "json"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, PLANT_ENV: f"ptrace-sysemu={plant:.0f}"})
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    sysemu = next(r for r in json.loads(proc.stdout)["ratios"] if r["ratio"] == SYSEMU_NATIVE.label)
    said = proc.stderr[:proc.stderr.index("check: running")]
    cannot = f"{SYSEMU_NATIVE.label} (" in said or "the host is busy now" in said
    if proc.returncode == 1:
        assert sysemu["verdict"] == "regressed"
    else:
        assert cannot, said
        assert sysemu["verdict"] != "unchanged" or f"{SYSEMU_NATIVE.label} (" in said, (sysemu, said)


@pytest.mark.parametrize("args, message", [
    (["check", "--kernel-a", "nope", "--kernel-b", "bench"], "unknown kernel variant 'nope'"),
    (["check", "--kernel-a", "bench", "--kernel-b", "/no/such/series"], "patch series directory"),
    (["check", "--kernel-a", "bench"], "--kernel-a and --kernel-b go together"),
    (["check", "--kernel-a", "bench", "--kernel-b", "debug", "--against", "HEAD"], "not allowed with"),
    (["check", "--kernel-a", "bench", "--kernel-b", "debug", "--baseline", "b.json"], "not allowed with"),
    (["check", "--kernel-a", "bench", "--kernel-b", "debug", "--current", "x.json"], "take no --current"),
    (["check", "--kernel-a", "bench", "--kernel-b", "debug", "--", "run", "--fast"], "measure a guest run"),
    (["check", "--kernel-a", "bench", "--kernel-b", "debug", "--", "vm", "run", "--kernel-variant", "kvm"],
     "chooses no kernel"),
    (["check", "--baseline", "b.json", "--kernel-b", "debug"], "go together"),
])
def test_bad_kernel_input_is_one_line_and_exit_2_before_anything_builds(args, message, tmp_path, monkeypatch):
    # An empty kernel cache: a check that got as far as building would show it in the cache or time out.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    proc = run_bench(*args, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "vmexec-bench").exists()


def test_each_kernel_goes_before_the_guest_runs_dashes():
    from bench.measure import continuous

    run = ["vm", "run", "--timing", "icount", "--", "--backends", "native"]
    assert continuous.with_vm_options(run, ("--kernel-variant", "/s")) == \
        ["vm", "run", "--timing", "icount", "--kernel-variant", "/s", "--", "--backends", "native"]
    assert continuous.with_vm_options(["vm", "run"], ("--kernel-variant", "x")) == ["vm", "run", "--kernel-variant", "x"]


def test_a_kernel_with_a_named_variants_inputs_is_that_variant_and_not_built_again(tmp_path):
    """A copy of kernel/patches has the benchmark kernel's cache key: the check uses that build (built again
    as a series, it would replace the shared build under the same key with another release name)."""
    from bench.commands.regression import _named_if_the_same
    from bench.measure import kernel

    copy = tmp_path / "copy"
    copy.mkdir()
    for patch in kernel.patches("bench"):
        (copy / patch.name).write_bytes(patch.read_bytes())
    (copy / "series").write_text("".join(f"{p.name}\n" for p in kernel.patches("bench")))
    assert _named_if_the_same(kernel.variant_arg(str(copy)), "b") == "bench"
    planted = tmp_path / "planted"
    planted.mkdir()
    for patch in [*kernel.patches("bench"), kernel.KERNEL_DIR.parent / "tests" / "data" / "plant-syscall-entry.patch"]:
        (planted / patch.name).write_bytes(patch.read_bytes())
    (planted / "series").write_text("".join(f"{p.name}\n" for p in kernel.patches(str(copy)))
                                    + "plant-syscall-entry.patch\n")
    assert _named_if_the_same(str(planted), "b") == str(planted)
    assert _named_if_the_same("bench", "a") == "bench"
