"""The KVM path, run for real (issue 27 item 1): the `kvm` kernel variant boots under TCG, whose `-cpu max`
is AMD with SVM, and hosts KVM; inside it the main job's own KVM steps run in their shortest form: the
probe (it must choose KVM) and a `bench vm run --accel kvm` of the claim's backends, whose result file
must say what the harness saw of its machine.  One build serves both sides.  Emulated twice over: the
times mean nothing, the path is what is tested.  It fails when KVM does not boot.
"""
import json
import os
import shlex
import sys
import time
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.measure import accelerators, kernel, vm

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parent.parent
VARIANT = "kvm"
#: The outer (TCG) machine.  ONE vCPU: with two, QEMU's SVM emulation lost the guests now and then (issue 27:
#: the outer kernel panicked, "stack guard page was hit", a timer interrupt taken inside __svm_vcpu_run; the
#: inner guest reset itself or its timer stopped; 1 of 6 inner runs completed under QEMU 7.2, 0 of 2 under
#: 10.0.2).  With one, 7 of 9 runs of 2026-12-06 completed, 6 of 7 with idle=poll below, and none panicked
#: (results/kvm-nested/timeline.json): most of what is lost goes with a second outer CPU (its IPIs, its
#: timers).  Virtual GIF off made the panic rarer with two; its mitigations only slow the emulator.
OUTER_ARGS = ("kvm_amd.vgif=0", "mitigations=off")
OUTER_CPUS, OUTER_MB = 1, 4096
#: The inner (KVM) guest: one vCPU, pinned to the outer machine's one CPU, as the main job's KVM steps and
#: its probe boot on a one-CPU machine (two, their default, need two host CPUs to be pinned to).
INNER_CPUS, INNER_MB = 1, 2048
#: The emulated SVM loses the timer wake-up of a halted inner vCPU now and then (an RCU stall, "Possible
#: timer handling issue on cpu=0", no progress): 1 of 2 runs without it on one outer vCPU, both local runs
#: of an earlier day on two; an inner kernel that polls instead of halting does not wait for that wake-up.
INNER_KERNEL_ARGS = ("idle=poll",)
BACKENDS = "native,ptrace-sysemu,process-vm-exec"
#: The emulated SVM's failures, taken for its doing as the outer panic above is: the inner guest reset
#: itself (QEMU exits 0 under -no-reboot), its boot or its command stopped making progress (an RCU stall on
#: one outer vCPU, once in 7 runs with idle=poll).  Only these end an attempt, RESET_ATTEMPTS in all (two:
#: on one outer vCPU a lost run was followed by good ones, and a good attempt takes 3 to 4 min), and each is
#: kept and printed; where every attempt ends so, the test is an expected failure (xfail) naming them, never
#: a pass.  The probe has booted the same kernel under KVM before any attempt counts.
RESET_ATTEMPTS = 2
INNER_FAILURES = ("QEMU exited (status 0) before the guest command finished", "the guest command did not finish within",
                  "the guest did not start the command within")
#: A good inner run takes 190 to 220 s (its boot, Python's start and the run); one that stops making
#: progress is given up after this.
INNER_RUN_TIMEOUT = 360
#: The outer machine's bound: the main job's probe (about 1 min when it works; at most 3 models, each
#: bounded by the probe's own timeouts), then every attempt's boot and run.  Every step inside is bounded
#: by the harness's own timeouts, so an outer machine still busy past this lost its own clock, or a step
#: outlived its bound: the heartbeat below tells which.
OUTER_RUN_TIMEOUT = 600 + RESET_ATTEMPTS * (INNER_RUN_TIMEOUT + 120)
#: The outer guest writes the time to the share every HEARTBEAT s: one whose heartbeat stopped long before
#: its run was given up had lost its timers (the emulator), not waited on a step.
HEARTBEAT = 10
#: -cpu host, else a named model of the outer CPU's vendor (AMD: TCG's -cpu max): the probe's fallbacks.  In
#: one run of this test -cpu host failed its probe boot and the probe chose EPYC.
MODELS = accelerators.cpu_models("kvm", "AuthenticAMD")


def inner_script(share: Path) -> str:
    """What the outer guest runs: the main job's decision (its probe), then its KVM guest step's shortest form."""
    py = shlex.quote(sys.executable)
    return "\n".join([
        "set -u",
        f"(while :; do date +%s > {share}/heartbeat; sleep {HEARTBEAT}; done) &",
        f"cd {shlex.quote(str(REPO))}",
        "t=$(date +%s)",
        f"{py} -m bench main --dry-run --kvm-variant {VARIANT} > {share}/main.txt 2>&1; echo main=$?",
        'echo "main seconds=$(( $(date +%s) - t ))"; t=$(date +%s)',
        f"for attempt in $(seq {RESET_ATTEMPTS}); do",
        f"  rm -rf {share}/results/*",
        f"  {py} -m bench vm run --accel kvm --timing wall --kernel-variant {VARIANT} --pin-vcpus "
        f"--vcpus {INNER_CPUS} --memory {INNER_MB} --output-dir {share}/results --run-timeout {INNER_RUN_TIMEOUT} "
        + "".join(f"--kernel-arg {a} " for a in INNER_KERNEL_ARGS) +
        f"-- --backends {BACKENDS} --pin same --processes 1 --values 1 --min-time 0.01 -q "
        f"> {share}/run.txt 2>&1; status=$?",
        f'  [ $status -eq 0 ] || ! grep -Fq {" ".join("-e " + shlex.quote(f) for f in INNER_FAILURES)} {share}/run.txt '
        '&& break',
        f"  cp {share}/run.txt {share}/run-reset-$attempt.txt",
        "done",
        'echo "run=$status attempts=$attempt"',
        'echo "run seconds=$(( $(date +%s) - t ))"',
    ]) + "\n"


#: The outer machine's QEMU gone before its command finished: the guest reset itself under -no-reboot (status
#: 0: a triple fault, or a panic) or the emulator died.  In the CI check of 8237972 it went four minutes into
#: the inner KVM run, the probe having chosen KVM: the emulator's loss, as the inner guest's resets are.
OUTER_LOST = "before the guest command finished"


def main_chose_kvm(main: str) -> bool:
    """The main job's decision (its probe) in main.txt: KVM, with the kvm variant and one of MODELS."""
    decision = next((line for line in main.splitlines() if line.startswith("main job: clock:")), "")
    return (decision.startswith(f"main job: clock: KVM wall clock (kernel variant {VARIANT}, -cpu ")
            and decision.split("-cpu ")[1].split(",")[0] in MODELS)


def test_the_main_jobs_kvm_steps_run_in_a_nested_svm_guest(tmp_path):
    kb = kernel.build(log=lambda *_: None, variant=VARIANT)
    share = tmp_path / "share"
    share.mkdir()
    (share / "results").mkdir()
    script = share / "inner.sh"
    script.write_text(inner_script(share))
    try:
        run = vm.run_in_guest(["sh", str(script)], kernel=kb.bzimage, accel="tcg", timing="wall", cpus=OUTER_CPUS,
                              memory_mb=OUTER_MB, output_dir=share, kernel_args=OUTER_ARGS, boot_timeout=300,
                              run_timeout=OUTER_RUN_TIMEOUT)
    except BenchError as e:
        beat = share / "heartbeat"
        silent = time.time() - beat.stat().st_mtime if beat.exists() else None
        main = (share / "main.txt").read_text() if (share / "main.txt").exists() else ""
        if "did not finish within" in str(e) and silent is not None and silent > OUTER_RUN_TIMEOUT / 4:
            pytest.xfail(f"the emulated outer machine lost its clock: no heartbeat for {silent:.0f} s of its "
                         f"{OUTER_RUN_TIMEOUT} s (main: {main[-300:]!r})")
        ran = (share / "run.txt").read_text() if (share / "run.txt").exists() else ""
        if str(e).startswith("QEMU exited (") and OUTER_LOST in str(e) and main_chose_kvm(main) and \
                "vm: KVM" in ran:
            # KVM booted (the probe chose it, the inner run began under it) and the outer machine was then lost
            # to the emulator, not to a step: an expected failure naming how, never a pass
            words = [line for line in getattr(e, "console", "").splitlines()
                     if any(w in line for w in ("Kernel panic", "BUG:", "Oops", "general protection"))]
            last = "; ".join(words[-3:]) or "no last words: a triple fault?"
            pytest.xfail(f"the emulated outer machine was lost while its KVM guest ran ({str(e).split(' [')[0]}; "
                         f"{last}; run: {ran[-300:]!r})")
        raise
    main = (share / "main.txt").read_text() if (share / "main.txt").exists() else ""
    ran = (share / "run.txt").read_text() if (share / "run.txt").exists() else ""
    context = f"outer output: {run.output!r}; main: {main[-2000:]!r}; run: {ran[-3000:]!r}"
    assert "/dev/kvm" not in main or "KVM cannot boot" not in main, context
    decision = next((line for line in main.splitlines() if line.startswith("main job: clock:")), "")
    assert main_chose_kvm(main), context
    failed = sorted(share.glob("run-reset-*.txt"))
    if "run=0" not in run.output and len(failed) == RESET_ATTEMPTS:
        # KVM booted (the probe) and the command began, every time; the emulator then lost the guest.  Not a
        # pass: an expected failure that names itself in the summary, with what each attempt printed.
        pytest.xfail(f"the emulated SVM lost the inner guest in all {RESET_ATTEMPTS} attempts (" + "; ".join(
            f"{f.name}: {next((s for s in INNER_FAILURES if s in f.read_text()), '?')}" for f in failed) + ")")
    assert "run=0" in run.output, context
    results = list((share / "results").glob("vm-kvm-wall-*.json"))
    assert len(results) == 1, context
    data = json.loads(results[0].read_text())
    meta = {**data["metadata"], **data["benchmarks"][0]["metadata"]}
    assert meta["vmexec_vm"] == "1" and meta["vmexec_accelerator"] == "kvm" and meta["vmexec_timing"] == "wall"
    assert meta["vmexec_kernel_variant"] == VARIANT and meta["vmexec_kernel"].endswith("-vmexec-kvm")
    assert meta["vmexec_qemu_cpu"] in MODELS, context
    assert meta["vmexec_kernel_args"] == " ".join(INNER_KERNEL_ARGS)
    assert meta["vmexec_vcpu_host_cpus"] == ",".join(map(str, range(INNER_CPUS)))
    assert meta["vmexec_clocksource"] in vm.WALL_CLOCKSOURCES
    measured = {b["metadata"]["name"].split(":")[0] for b in data["benchmarks"]}
    assert measured == set(BACKENDS.split(",")), context
    for reset in failed:
        print(f"an attempt the emulator lost ({reset.name}): {reset.read_text()[-1000:]}")
    print(f"outer boot {run.boot_seconds} s; {run.output}")
    print(f"{decision}\ninner machine: accelerator={meta['vmexec_accelerator']} "
          f"clocksource={meta['vmexec_clocksource']} variant={meta['vmexec_kernel_variant']} "
          f"qemu_cpu={meta['vmexec_qemu_cpu']} vcpu_host_cpus={meta['vmexec_vcpu_host_cpus']}")
