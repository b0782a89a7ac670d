"""Issue 28, section 1: a label never overrides a measurement.

What the harness measured or detected (VM or host, accelerator, timing, CPUs, pinning, kernel, clock
source) is recorded by the harness alone under names a tag cannot reach; `--tag` refuses those names;
and no reader takes a tag for a fact, so no tag can change what a report concludes."""
import json
import pathlib
import time

import pytest

from bench import results, stats, verdict
from bench.commands.options import parse_tag
from bench.measure import environment, runner
from conftest import run_bench
from data.synthetic import GUEST, HOST, HOST_UNAVAILABLE, write_suite

REPO = pathlib.Path(__file__).resolve().parent.parent
#: The issue's cases: a guest labelled as another machine, and a host labelled as a guest.
GUEST_LABELS = {"accelerator": "kvm", "timing": "wall"}
HOST_LABELS = {"vm": "1", "timing": "icount", "accelerator": "tcg"}


def one_line(proc, status=2):
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def edit_metadata(path: pathlib.Path, add: dict, remove=()) -> pathlib.Path:
    """Every metadata level of a suite (the suite's, each benchmark's, each run's), edited by hand."""
    data = json.loads(path.read_text())
    levels = [data.setdefault("metadata", {})] + [b.get("metadata", {}) for b in data["benchmarks"]] \
        + [r.get("metadata", {}) for b in data["benchmarks"] for r in b["runs"]]
    for meta in levels:
        for key in remove:
            meta.pop(key, None)
    data["metadata"].update(add)
    path.write_text(json.dumps(data))
    return path


def tagged(path: pathlib.Path, labels: dict, remove=()) -> pathlib.Path:
    return edit_metadata(path, {f"vmexec_tag_{k}": v for k, v in labels.items()}, remove)


def conclusion(paths) -> tuple:
    """What a report concludes from the runs: its headline, every run's kind and the host-versus-guest
    table it bounds the emulator with."""
    df = stats.load(paths)
    hg = stats.host_vs_guest(df)
    return (verdict.headline(df, hg=hg).sentence, tuple(results.classify(results.read_json(p)) for p in paths),
            tuple(df.groupby("run_id")[["vm", "accelerator", "timing"]].first().itertuples()),
            tuple(map(tuple, hg[["backend", "pin", "host_run", "guest_run", "accelerator", "timing"]].values)))


@pytest.mark.parametrize("key", ["accelerator", "timing", "vm", "kernel", "cpus_used", "pin", "clocksource",
                                 "qemu", "host_cpu_model", "guest_kernel", "Accelerator", "vmexec_vm", "vmexec_x"])
def test_a_tag_naming_a_fact_is_refused_in_one_line(key):
    stderr = one_line(run_bench("run", "--fast", "--tag", f"{key}=kvm"))
    assert "--tag" in stderr and "not a label" in stderr


def test_a_free_label_is_still_a_tag():
    assert parse_tag("purpose=ci-nightly") == ("purpose", "ci-nightly")
    assert parse_tag("revision=abc123") == ("revision", "abc123")    # `check --against` labels its tree's run


def test_the_issues_vm_run_is_refused_before_any_kernel_build_or_boot(tmp_path):
    start = time.monotonic()
    stderr = one_line(run_bench("vm", "run", "--timing", "icount", "--accel", "tcg", "--output-dir", str(tmp_path),
                                "--", "--fast", "--tag", "accelerator=kvm", "--tag", "timing=wall"))
    assert "'accelerator'" in stderr and "kernel:" not in stderr and "vm:" not in stderr
    assert time.monotonic() - start < 60 and list(tmp_path.iterdir()) == []


def test_no_tag_can_change_what_a_report_concludes(tmp_path):
    host = write_suite(tmp_path / "host.json", HOST, unavailable=HOST_UNAVAILABLE)
    guest = write_suite(tmp_path / "guest.json", GUEST, vm=True, accelerator="tcg", timing="icount")
    before = conclusion([host, guest])
    assert before[1] == ("host", "guest") and "KVM" not in before[0] and "icount" in before[0]
    tagged(guest, GUEST_LABELS)
    tagged(host, HOST_LABELS)
    assert conclusion([host, guest]) == before


def test_a_legacy_file_whose_tags_contradict_its_facts_is_reported_by_its_facts(tmp_path):
    """The issue's file, as the harness wrote it before the facts had names of their own: the guest's
    facts only as tags, the user's --tag accelerator=kvm --tag timing=wall last (so winning)."""
    host = write_suite(tmp_path / "host.json", HOST, unavailable=HOST_UNAVAILABLE)
    guest = write_suite(tmp_path / "guest.json", GUEST, vm=True, accelerator="tcg", timing="icount")
    facts = ("vmexec_vm", "vmexec_timing", "vmexec_qemu", "vmexec_host_cpu_model")
    tagged(guest, {"vm": "1", **GUEST_LABELS}, remove=facts)
    df = stats.load([host, guest])
    run = df[df["run_id"] == "guest"].iloc[0]
    assert (run["vm"], run["accelerator"], run["timing"]) == (True, "tcg", "wall")
    sentence = verdict.headline(df).sentence
    assert "under TCG" in sentence and "KVM" not in sentence and "95% CI 4.90–5.10 covers repeats only" in sentence
    # A legacy host run labelled as a guest: its own detection (bare metal) says host.
    tagged(host, HOST_LABELS, remove=facts)
    assert results.classify(results.read_json(host)) == "host"
    assert not stats.load([host])["vm"].any()


def test_the_committed_legacy_results_still_read_as_measured():
    """Files written before the facts had their own names: the icount guest, and a host that is itself
    a KVM virtual machine (detected `virtualized (kvm)`, no tags): never a guest."""
    guest = REPO / "results" / "vm-tcg-icount-20261126-141613.json"
    cloud_host = REPO / "results" / "vm-20261126-151706.json"
    assert results.classify(results.read_json(guest)) == "guest"
    assert results.classify(results.read_json(cloud_host)) == "host"
    df = stats.load([guest, cloud_host])
    first = df.groupby("run_id")[["vm", "accelerator", "timing"]].first()
    assert tuple(first.loc[guest.stem]) == (True, "tcg", "icount")
    assert tuple(first.loc[cloud_host.stem]) == (False, "virtualized (kvm)", "wall")


def test_a_zero_width_interval_on_a_wall_clock_is_never_judged(tmp_path):
    """Every value alike: on icount a property of the clock, on a wall clock a sign of fabricated input."""
    same = write_suite(tmp_path / "kvm.json", GUEST, vm=True, accelerator="kvm", timing="wall",
                       sigma=0.0, between=0.0)
    h = verdict.headline(stats.load([same]))
    assert h.assessment.clock == "kvm" and h.assessment.low is None
    assert "cannot be judged" in h.sentence and "zero width" in h.sentence and "fabricated" in h.sentence
    varied = write_suite(tmp_path / "kvm2.json", GUEST, vm=True, accelerator="kvm", timing="wall")
    assert "claim is" in verdict.headline(stats.load([varied])).sentence


def test_a_cross_pinning_the_cpus_cannot_honour_is_refused():
    stderr = one_line(run_bench("run", "--fast", "--cpus", "0,0", "--pin", "same,cross"))
    assert "two different CPUs" in stderr
    assert runner.pins_for(None, (0, 0)) == ["same"] and runner.pins_for(None, (0, 1)) == ["same", "cross"]


def test_the_guest_facts_come_from_the_guests_boot_never_from_an_option(tmp_path, monkeypatch):
    assert environment.where_facts() == {"vmexec_vm": "0", "vmexec_timing": "wall"}    # this host
    (tmp_path / environment.GUEST_FACTS).write_text(json.dumps({"accelerator": "tcg", "timing": "icount",
                                                                "qemu": "QEMU emulator version 7.2.0"}))
    real = environment._read
    monkeypatch.setattr(environment, "_read", lambda p: f"console=ttyS0 vmexec_out={tmp_path} vmexec_nonce=ab12"
                        if str(p) == "/proc/cmdline" else real(p))
    assert environment.where_facts()["vmexec_timing"] == "icount" and environment.accelerator() == "tcg"
    assert environment.where_facts()["vmexec_vm"] == "1"
