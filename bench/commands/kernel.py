"""`bench kernel build` and `bench kernel package`: the guest kernel (bench.measure.kernel) and the
series as an installable Debian package (bench.measure.package)."""
from __future__ import annotations

from pathlib import Path

from bench.commands.options import alias
from bench.errors import UsageError
from bench.measure import kernel, package


def _cmd_build(args) -> int:
    if args.configure_only:
        config = kernel.configure_only(args.output or Path("."), args.kernel_variant,
                                       say=lambda msg: print(f"kernel build: {msg}", flush=True))
        print(f"config: {config}")
        carry = config.with_name(f"carry-over-{args.kernel_variant}.json")
        if carry.exists():
            print(f"not carried over from the host: {carry}")
        return 0
    if args.output is not None:
        raise UsageError("kernel build: --output-dir goes with --configure-only (a build lands in the cache)")
    kb = kernel.build(force=args.force, variant=args.kernel_variant)
    print(f"bzImage: {kb.bzimage}\nrelease: {kb.release}\nsource: {kb.source or 'not recorded'}\n"
          f"compiler: {kb.compiler or 'not recorded'}\ncached: {str(kb.cached).lower()}\n"
          f"seconds: {kb.seconds:.1f}\nconfig sha256: {kb.config_sha256 or 'not recorded'}")
    return 0


def _cmd_package(args) -> int:
    why_not = package.debian_like()
    if why_not:
        raise UsageError(f"kernel package: {why_not}")
    base = package.SLIM if args.slim else package.base_config(args.config)
    if args.configure_only:
        config = package.configure_only(base, args.output,
                                        say=lambda msg: print(f"kernel package: {msg}", flush=True))
        print(f"config: {config} (CONFIG_PROCESS_VM_EXEC=y; what `make bindeb-pkg` would build)")
        return 0
    result = package.build_package(base, args.output, force=args.force,
                                   say=lambda msg: print(f"kernel package: {msg}", flush=True))
    image_mb = result["image"].stat().st_size / 2**20
    print(f"packages ({'cached' if result['cached'] else 'built'} in {result['seconds']:.0f} s):")
    for d in result["debs"]:
        print(f"  {d}  ({d.stat().st_size / 2**20:.1f} MiB)")
    print(f"release: {result['release']}  (image {image_mb:.1f} MiB)")
    if base == package.SLIM:
        print("(--slim: the guest's tinyconfig kernel, a check of the packaging, not a kernel to boot a machine)")
    else:
        print(package.install_instructions(result["image"], result["release"]))
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("kernel", help="the patched guest kernel (process_vm_exec)")
    sub = p.add_subparsers(dest="kernel_command", required=True, parser_class=type(p))
    b = sub.add_parser("build", help="build (or find in the cache) the patched bzImage")
    b.add_argument("--force", action="store_true", help="rebuild even if a cached build exists")
    b.add_argument("--kernel-variant", type=kernel.variant_arg, default="bench", metavar="VARIANT|PATH",
                   help=f"which build: {', '.join(sorted(kernel.VARIANTS))}, or as a path {kernel.KERNEL_PATHS} "
                        "(default bench); 'debug': the attack suite's kernel (BUG, lockdep, KASAN, MEMCG; own cache key); "
                        "'mitigations': the host's speculation mitigations forced on; "
                        "'twin': this host's own configuration (/proc/config.gz; VMEXEC_TWIN_CONFIG=FILE)")
    alias(b, "--variant", "--kernel-variant", "kernel_variant", type=kernel.variant_arg)
    b.add_argument("--configure-only", action="store_true",
                   help="unpack, patch and configure (about a minute), write the final config (and a twin's "
                        "carry-over-twin.json: the host's options it does not carry over, and why) to --output-dir")
    b.add_argument("--output-dir", dest="output", type=Path, metavar="DIR",
                   help="where --configure-only writes (default: the current directory)")
    b.set_defaults(func=_cmd_build)

    p = sub.add_parser("package", help="an installable Debian kernel package of the series, for bare metal")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path,
                        help="the config to start from (default: /boot/config-$(uname -r), the running kernel's)")
    source.add_argument("--slim", action="store_true",
                        help="start from the guest's slim config (tinyconfig + kernel/config.fragment): "
                             "a quick check of the packaging, not a kernel for a machine")
    p.add_argument("--output-dir", dest="output", type=Path, default=Path("kernel-packages"), metavar="DIR",
                   help="directory the .deb files are copied to (default: ./kernel-packages)")
    alias(p, "--output", "--output-dir", "output", type=Path)
    p.add_argument("--force", action="store_true", help="rebuild even if a cached package exists")
    p.add_argument("--configure-only", action="store_true",
                   help="unpack, patch and configure (minutes), write the final config to --output-dir, build nothing")
    p.set_defaults(func=_cmd_package)
