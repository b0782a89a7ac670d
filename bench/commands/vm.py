"""`bench vm run|rfc|shell`: a command in a QEMU guest on the patched kernel (bench.measure.vm)."""
from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path

from bench import outputs, results
from bench.commands.options import alias, strip_dashes
from bench.errors import BenchError, UsageError
from bench.measure import accelerators, kernel, kvmprobe, rfc
from bench.measure.environment import GUEST_FACTS, cpu_model
from bench.measure.vm import (GuestRun, add_vm_options, choose_accel, console_tail, echo_with_host_clock,
                              hidden_in_guest, host_cpus_for, qemu_version, run_in_guest)


def _prepare(args) -> tuple[kernel.KernelBuild, str]:
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    why_not = accelerators.check(args.accel, args.timing)
    if why_not:
        raise UsageError(why_not)
    if getattr(args, "pin_vcpus", False):
        if args.timing == "icount":
            raise UsageError("--pin-vcpus: under icount one host thread runs every vCPU; nothing to pin")
        args.host_cpus = host_cpus_for(args.cpus)
    kvmprobe.set_probe_timeout(getattr(args, "probe_timeout", None))
    variant = getattr(args, "kernel_variant", "bench")
    kb = kernel.build(log=lambda msg: print(f"kernel: {msg}", file=sys.stderr), variant=variant)
    # The probe boots what the run boots: this kernel, its command line under KVM, these vCPUs and memory.
    accel, why = choose_accel(args.accel, args.timing, kb.bzimage, cpus=args.cpus, memory_mb=args.memory,
                              kernel_args=_kernel_args(args, "kvm"))
    print(f"vm: {why}", file=sys.stderr)
    return kb, accel


def _kernel_args(args, accel: str) -> tuple[str, ...]:
    """The guest's kernel arguments: its variant's under accel, then --kernel-arg's."""
    return (*kernel.boot_args(getattr(args, "kernel_variant", "bench"), accel), *getattr(args, "kernel_args", ()))


def _run(args, command: list[str], kb, accel: str, output_dir: Path, measures: bool = False) -> GuestRun:
    # What the guest cannot see of its machine (the emulator, its clock, the host's CPU, the kernel's
    # source and variant, QEMU's CPU model): the guest's runs record it from here
    # (bench.measure.environment.guest), never from a tag.
    variant = getattr(args, "kernel_variant", "bench")
    qemu_cpu = kernel.cpu_model(variant, accel) or \
        kvmprobe.cpu_model_for(kb.bzimage, accel, args.cpus, args.memory, _kernel_args(args, accel))
    facts = {"accelerator": accel, "timing": args.timing, "qemu": qemu_version(), "host_cpu_model": cpu_model(),
             "host_kernel": platform.release(), "kernel_key": kb.cache_key, "kernel_source": kb.source or "",
             "vcpu_host_cpus": ",".join(map(str, getattr(args, "host_cpus", None) or ())),
             "kernel_variant": variant, "kernel_config": kb.config_sha256[:16], "qemu_cpu": qemu_cpu,
             "kernel_args": " ".join(getattr(args, "kernel_args", ()))}
    (output_dir / GUEST_FACTS).write_text(json.dumps(facts))
    return run_in_guest(command, kernel=kb.bzimage, accel=accel, timing=args.timing,
                        kernel_args=_kernel_args(args, accel),
                        cpus=args.cpus, memory_mb=args.memory, output_dir=output_dir,
                        boot_timeout=args.boot_timeout, run_timeout=args.run_timeout,
                        echo=echo_with_host_clock(), pin_vcpus=getattr(args, "host_cpus", None), measures=measures,
                        cpu_model=qemu_cpu)


def _guest_bench(args, subcommand: str, prefix: str) -> int:
    """`python -m bench SUBCOMMAND --output ... ARGS` in the guest; its results file lands in --output-dir."""
    if hidden_in_guest(Path(sys.executable)):
        raise UsageError(f"{sys.executable} is under /run, which the guest replaces "
                         "with tmpfs: use a Python (virtual environment) elsewhere")
    kb, accel = _prepare(args)
    final = results.output(None, f"{prefix}-{accel}-{args.timing}", args.results)
    name = final.name
    with outputs.scratch("vm") as share:
        guest_result = Path(share) / name
        command = [sys.executable, "-m", "bench", subcommand, "--output", str(guest_result), *args.command]
        run = _run(args, command, kb, accel, Path(share), measures=True)
        if not guest_result.exists():
            raise BenchError(f"the guest run wrote no {name}; console tail: {console_tail(run.console)}")
        # A name the harness chose: a concurrent run's file there makes this one NAME-2.json.
        final = results.publish(final, lambda staged: shutil.move(guest_result, staged), exists="rename")
        # kept even if some case failed: its metadata says which
    pinned = "".join(f", vCPU {i} on host CPU {cpu} (thread {tid})" for i, (tid, cpu) in sorted(run.vcpu_pins.items()))
    print(f"vm: {accel}/{args.timing} (-cpu {run.cpu_model}, clock source {run.clocksource}), booted in "
          f"{run.boot_seconds:.1f} s{pinned}; results: {final}")
    run.check()
    return 0


def _cmd_run(args) -> int:
    return _guest_bench(args, "run", "vm")


def _cmd_rfc(args) -> int:
    rfc.compile_programs()      # here: the guest sees the cache, where they are built, read-only
    return _guest_bench(args, "rfc", "rfc-vm")


def _cmd_shell(args) -> int:
    kb, accel = _prepare(args)
    if not args.command:
        raise UsageError("vm shell: give the command after --")
    with outputs.scratch("vm") as share:
        run = _run(args, args.command, kb, accel, Path(share))
    print(f"vm: {accel}/{args.timing}, booted in {run.boot_seconds:.1f} s, exit status {run.exit_status}",
          file=sys.stderr)
    return run.exit_status


def _output_dir(p) -> None:
    p.add_argument("--output-dir", dest="results", type=Path, metavar="DIR",
                   help="directory for the results file (default: ./results or $VMEXEC_RESULTS)")
    alias(p, "--results", "--output-dir", "results", type=Path)


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("vm", help="run in a QEMU guest on the patched kernel")
    sub = p.add_subparsers(dest="vm_command", required=True, parser_class=type(p))
    r = sub.add_parser("run", help="`bench run ARGS` inside the guest; results land in --output-dir")
    add_vm_options(r)
    _output_dir(r)
    r.set_defaults(func=_cmd_run, nested=lambda a: [["run", *strip_dashes(a.command)]])
    f = sub.add_parser("rfc", help="`bench rfc ARGS` inside the guest; results land in --output-dir")
    add_vm_options(f)
    _output_dir(f)
    f.set_defaults(func=_cmd_rfc, nested=lambda a: [["rfc", *strip_dashes(a.command)]])
    s = sub.add_parser("shell", help="run any command inside the guest (exit status: the command's)")
    add_vm_options(s)
    s.set_defaults(func=_cmd_shell)
