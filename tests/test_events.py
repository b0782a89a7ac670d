"""bench events / events-table / stop-prices (issue 26, items 2 and 3): counting, rendering, the stop
variants, bad input, and that the tracefs instance never outlives its command."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.measure import events, stops
from bench.render import events as render
from tests.conftest import run_bench, run_vmexec

# A trace as the instance's `trace` file has it: 100 is the driver, 101 its tracee (forked), 7 a stranger.
TRACE = """\
# tracer: nop
              sh-100     [000] .....   1.000000: sys_enter: NR 59 (1, 2, 3, 4, 5, 6)
          vmexec-100     [000] .....   1.000001: sched_process_fork: comm=vmexec pid=100 child_comm=vmexec child_pid=101
   memfd:sealed-91-7     [000] .....   1.000002: sys_enter: NR 0 (1, 2, 3, 4, 5, 6)
          vmexec-101     [000] d..2.   1.000003: signal_generate: sig=17 errno=0 code=4 comm=vmexec pid=100 grp=1 res=1
          vmexec-101     [000] dN.6.   1.000004: sched_wakeup: comm=vmexec pid=100 prio=120 target_cpu=000
          vmexec-101     [000] d..2.   1.000005: sched_switch: prev_comm=vmexec prev_pid=101 prev_prio=120 prev_state=t ==> next_comm=vmexec next_pid=100 next_prio=120
          vmexec-101     [000] d..2.   1.000006: tlb_flush: pages:0 reason:flush on task switch (0)
          vmexec-100     [000] d....   1.000007: x86_fpu_regs_activated: x86/fpu: 0000 load: 1 xfeatures: a2 xcomp_bv: 8
          vmexec-100     [000] .....   1.000008: sys_enter: NR 101 (c, 20d4, 0, 0, b, 0)
          vmexec-100     [000] d....   1.000009: write_msr: 48, value 0
          vmexec-100     [000] d..2.   1.000010: sched_switch: prev_comm=vmexec prev_pid=100 prev_prio=120 prev_state=R ==> next_comm=vmexec next_pid=101 next_prio=120
          vmexec-100     [000] d..2.   1.000010: sched_switch: prev_comm=vmexec prev_pid=100 prev_prio=120 prev_state=R+ ==> next_comm=memfd:sealed-91 next_pid=7 next_prio=120
   memfd:sealed-91-7     [000] d..3.   1.000011: sched_wakeup: comm=memfd:sealed-91 pid=7 prio=120 target_cpu=000
   memfd:sealed-91-7     [000] d..2.   1.000012: sched_switch: prev_comm=memfd:sealed-91 prev_pid=7 prev_prio=120 prev_state=S ==> next_comm=x next_pid=8 next_prio=120
          vmexec-101     [000] d..1.   1.000013: signal_deliver: sig=31 errno=0 code=1 sa_handler=1 sa_flags=4
"""


def test_counts_only_the_driver_and_its_children():
    counts, detail = events.count(TRACE, 100)
    assert counts == {"syscalls": 2, "signals_generated": 1, "wakeups": 1, "switches": 2, "tlb_flushes": 1,
                      "fpu_reloads": 1, "msr_writes": 1, "preempted": 1, "signals_delivered": 1,
                      "other_switches": 1}
    assert detail["syscalls"] == {"59": 1, "101": 1}
    assert detail["msrs"] == {"48": 1}
    assert detail["signals"] == {"17 res=1": 1}
    assert detail["switch_prev_state"] == {"t": 1, "R": 1}
    # Without the fork event the tracee's own events are not ours.
    alone, _ = events.count(TRACE.replace("child_pid=101", "child_pid=999"), 100)
    assert alone["tlb_flushes"] == 0 and alone["signals_delivered"] == 0


def test_per_call_is_the_difference_over_the_extra_calls():
    assert events.per_call({"a": 10, "b": 4}, {"a": 410, "c": 2}, 100, 300) == {"a": 2.0, "b": -0.02, "c": 0.01}


def _doc(cases: dict, role="host") -> dict:
    return {"kind": "vmexec-events", "machine": {"cpu_model": "X", "kernel": "k", "role": role},
            "calls": [1000, 3000], "runs": 3, "load_before": "0", "load_after": "0",
            "cases": {name: {"kind": "mechanism", "available": True, "reason": "",
                             "per_call": {k: {"median": v, "min": v, "max": v} for k, v in pc.items()}}
                      for name, pc in cases.items()}}


def test_table_names_a_difference_and_reads_its_cause_off_the_counts():
    host = _doc({"seccomp-unotify": {"switches": 2.0, "wakeups": 1.02, "preempted": 0.98, "syscalls": 2.0},
                 "ptrace-sysemu": {"switches": 2.0, "wakeups": 2.0, "preempted": 0.0, "msr_writes": 0.0}})
    twin = _doc({"seccomp-unotify": {"switches": 2.0, "wakeups": 2.0, "preempted": 0.0, "syscalls": 2.0},
                 "ptrace-sysemu": {"switches": 2.0, "wakeups": 2.0, "preempted": 0.0, "msr_writes": 2.0,
                                   "msrs[48]": 2.0}}, role="twin")
    text = render.to_markdown(host, twin)
    assert "| `seccomp-unotify` | 2.00 / 2.00 | 1.02 / 2.00 |" in text
    line = next(x for x in text.splitlines() if x.startswith("- `seccomp-unotify`"))
    assert "wake-ups 1.02 host, 2.00 twin" in line and "wake-up preemption" in line
    msr = next(x for x in text.splitlines() if x.startswith("- `ptrace-sysemu`"))
    assert "MSR 0x48 IA32_SPEC_CTRL 0.00 host, 2.00 twin" in msr
    same = render.to_markdown(host, _doc({k: {c: s["median"] for c, s in v["per_call"].items()}
                                          for k, v in host["cases"].items()}, role="twin"))
    assert "agrees within" in same and "- `" not in same


def test_a_stop_pair_that_differs_by_more_than_its_part_fails_its_check():
    good = {"wait": {"signals_generated": 1, "wakeups": 2, "switches": 2, "syscalls": 2},
            "nocldstop": {"signals_generated": 0, "wakeups": 2, "switches": 2, "syscalls": 2},
            "yield": {"signals_generated": 1, "wakeups": 1, "switches": 2, "syscalls": 3},
            "getregs": {"signals_generated": 1, "wakeups": 2, "switches": 2, "syscalls": 3}}
    assert all(c["ok"] for c in stops.check_events(good).values())
    bad = {**good, "nocldstop": {**good["nocldstop"], "wakeups": 1}}
    checks = stops.check_events(bad)
    assert not checks["sigchld"]["ok"] and checks["sigchld"]["wrong"] == {"wakeups": 1}


def test_stop_prices_are_the_median_difference_with_an_interval():
    p = stops.price([10.0, 12.0, 11.0, 13.0, 10.0], [5.0, 5.0, 6.0, 5.0, 5.0])
    assert p["ns"] == 5.0 and p["ci95"][0] <= 5.0 <= p["ci95"][1] and p["differences"] == [5, 7, 5, 8, 5]


@pytest.mark.parametrize("variant", stops.VARIANTS)
def test_every_stop_variant_runs_its_stops_and_checks_them(variant):
    proc, report = run_vmexec("stop", variant, "-n", "300")
    assert proc.returncode == 0 and report["ok"], proc.stdout + proc.stderr
    assert report["matched"] == 300 and report["switches"] >= 0.9
    assert (report["yields"] >= 1) == (variant == "yield")


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "e.json"
    for args in (["events", "--calls", "300,100", "--output", str(out)], ["events", "--case", "bogus"],
                 ["stop-prices", "--runs", "2"]):
        proc = run_bench(*args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    (tmp_path / "x.json").write_text("{}")
    proc = run_bench("events-table", str(tmp_path / "x.json"))
    assert proc.returncode == 2 and "not a vmexec-events document" in proc.stderr
    proc = run_vmexec("stop", "bogus", "-n", "1")[0]
    assert proc.returncode == 2
    assert sorted(os.listdir(tmp_path)) == ["x.json"]


def _tracefs_usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; "
                            "test -d /sys/kernel/tracing/events/raw_syscalls && test -d /sys/kernel/tracing/instances"],
                           capture_output=True)
    return None if probe.returncode == 0 else "no tracefs with raw_syscalls here"


def _our_instances() -> list[str]:
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                          "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; "
                          "ls /sys/kernel/tracing/instances"], capture_output=True, text=True).stdout
    return [n for n in out.split() if n.startswith(events.INSTANCE_PREFIX)]


needs_tracefs = pytest.mark.skipif(_tracefs_usable() is not None, reason=str(_tracefs_usable()))


@needs_tracefs
def test_host_counts_the_issue_table_and_leaves_nothing_behind(tmp_path):
    mounts = Path("/proc/mounts").read_text()
    out = tmp_path / "events.json"
    proc = run_bench("events", "--case", "ptrace-sysemu", "--case", "seccomp-unotify", "--case", "seccomp-trap",
                     "--calls", "200,1200", "--runs", "1", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    med = {n: {k: v["median"] for k, v in c["per_call"].items()} for n, c in doc["cases"].items()}
    # Exact by construction; 0.15 covers other tasks' preemptions on a shared machine.
    for name, want in {"ptrace-sysemu": {"switches": 2, "signals_generated": 1, "syscalls": 4, "fpu_reloads": 2},
                       "seccomp-unotify": {"switches": 2, "signals_generated": 0, "syscalls": 2},
                       "seccomp-trap": {"switches": 0, "signals_generated": 1, "signals_delivered": 1}}.items():
        for k, v in want.items():
            assert abs(med[name][k] - v) <= 0.15, (name, k, med[name][k])
    assert "| `ptrace-sysemu` |" in proc.stdout and "| `seccomp-trap` |" in proc.stdout
    assert Path("/proc/mounts").read_text().count("tracefs") == mounts.count("tracefs")
    assert _our_instances() == []


@needs_tracefs
def test_the_instance_is_removed_even_when_its_owner_is_killed(tmp_path):
    ready = tmp_path / "ready"
    code = ("import pathlib, time, sys\nfrom bench.measure.events import Instance\n"
            f"with Instance(buffer_kb=64) as inst:\n    pathlib.Path({str(ready)!r}).write_text(str(inst.path))\n"
            "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(200):
            if ready.exists():
                break
            time.sleep(0.05)
        assert ready.exists() and _our_instances(), "the instance was not created"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for _ in range(100):
        if not _our_instances():
            break
        time.sleep(0.1)
    assert _our_instances() == []


class _FakeInstance:
    """Stands in for the tracefs instance: TRACE for every run, scaled by the loop length; `broken` fails."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def trace(self, argv):
        if "broken" in argv:
            return "boom", 1, "", 0
        n = int(argv[-1])
        body = TRACE.splitlines()[4:7]      # the tracee's signal, wake-up and switch: per call
        return "{}", 0, "\n".join(TRACE.splitlines()[:4] + body * n), 100


def test_a_failed_case_is_kept_as_its_own_result_and_the_others_are_counted():
    cases = [{"name": "good", "kind": "mechanism", "available": True, "reason": "", "argv": ["vmexec", "good", "-n"]},
             {"name": "bad", "kind": "mechanism", "available": True, "reason": "", "argv": ["vmexec", "broken", "-n"]},
             {"name": "gone", "kind": "mechanism", "available": False, "reason": "ENOSYS", "argv": ["vmexec", "gone", "-n"]}]
    doc = events.measure(cases, (10, 30), 2, log=lambda m: None, instance_factory=_FakeInstance)
    good = doc["cases"]["good"]["per_call"]
    assert good["signals_generated"]["median"] == 1 and good["wakeups"]["median"] == 1
    assert good["switches"]["median"] == 1 and good["syscalls"]["median"] == 0
    assert "boom" in doc["cases"]["bad"]["errors"][0] and "per_call" not in doc["cases"]["bad"]
    text = render.to_markdown(doc)
    assert "failed: vmexec broken" in text and "unavailable: ENOSYS" in text


def test_a_twin_of_another_configuration_is_called_so():
    host = _doc({"native": {"syscalls": 1.0}})
    twin = _doc({"native": {"syscalls": 1.0}}, role="twin")
    host["machine"]["host_config_sha256"] = "a" * 64
    twin["machine"].update({"host_config_sha256": "a" * 64, "twin_config_sha256": "c" * 64})
    assert "no twin of this host" not in render.to_markdown(host, twin)
    twin["machine"]["host_config_sha256"] = "b" * 64
    assert "no twin of this host" in render.to_markdown(host, twin)


def test_the_guest_count_never_builds_a_kernel(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "bench", "events", "--kernel-variant", "twin", "--output",
                           str(tmp_path / "t.json")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "kernel build --kernel-variant twin" in proc.stderr or "cannot find" in proc.stderr
    assert not (tmp_path / "t.json").exists()
    assert not list((tmp_path / "cache").glob("vmexec-bench/kernel/*/build.log"))     # nothing was built


def _twin_cached() -> bool:
    from bench.commands.events import _twin_build
    try:
        _twin_build("twin")
        return True
    except Exception:
        return False


@pytest.mark.vm
@pytest.mark.skipif(not _twin_cached(), reason="no cached twin kernel (python -m bench kernel build --kernel-variant twin)")
def test_the_twin_guest_counts_the_same_way(tmp_path):
    out = tmp_path / "twin.json"
    proc = run_bench("events", "--kernel-variant", "twin", "--case", "ptrace-sysemu", "--case", "process-vm-exec",
                     "--calls", "100,300", "--runs", "1", "--output", str(out), timeout=3600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["machine"]["role"] == "twin" and len(doc["machine"]["twin_config_sha256"]) == 64
    sysemu = {k: v["median"] for k, v in doc["cases"]["ptrace-sysemu"]["per_call"].items()}
    assert abs(sysemu["signals_generated"] - 1) <= 0.15 and abs(sysemu["syscalls"] - 4) <= 0.15
    assert "per_call" in doc["cases"]["process-vm-exec"]      # the twin is patched: the candidate is counted


def test_the_report_shows_the_host_and_twin_counts_of_the_newest_machine(tmp_path):
    """Issue 26 item 2: the counts side by side in the report, of the newest machine among its inputs (the
    headline's), whether or not its prices composed an estimate; a report without a host run shows none."""
    from types import SimpleNamespace

    from bench.anatomy.composed import machine_of
    from bench.render import document, report
    from data.synthetic import HOST, write_suite

    run = write_suite(tmp_path / "host.json", HOST)
    machine, where = machine_of(run), tmp_path / "anatomy" / "events"
    where.mkdir(parents=True)
    docs = {"events-host-1.json": _doc({"native": {"syscalls": 1.0}}),
            "events-twin-1.json": _doc({"native": {"syscalls": 1.0}}, role="twin"),
            "events-host-other.json": _doc({"native": {"syscalls": 9.0}})}
    docs["events-host-1.json"]["machine"].update(cpu_model=machine["cpu_model"], kernel=machine["kernel"])
    docs["events-twin-1.json"]["machine"].update(host_cpu_model=machine["cpu_model"], host_kernel=machine["kernel"])
    for name, doc in docs.items():      # another machine's counts are the newest: never taken for this one's
        doc["started"] = "2026-12-07T09:00:00" if "other" in name else "2026-12-07T08:00:00"
        (where / name).write_text(json.dumps(doc))
    inputs = SimpleNamespace(suites=[run], paths=[run], composed=object())
    text = document.to_markdown(report._events_blocks(inputs))
    assert "events-host-1.json" in text and "events-twin-1.json" in text and "events-host-other" not in text
    assert "| 1.00 / 1.00 |" in text and "9.00" not in text
    assert report._events_blocks(SimpleNamespace(suites=[run], paths=[run], composed=None)) != []
    guest = write_suite(tmp_path / "guest.json", HOST, vm=True)
    assert report._events_blocks(SimpleNamespace(suites=[guest], paths=[guest], composed=None)) == []
