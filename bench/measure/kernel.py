"""Build the guest kernel: linux-source-6.12 + kernel/patches + kernel/config.fragment.

Everything happens under ${XDG_CACHE_HOME:-~/.cache}/vmexec-bench/kernel/<key>/,
where the key hashes every input, so a second build() with the same inputs
returns the cached bzImage at once.  Object files go through ccache (shared by
all keys), which makes a rebuild after a patch change take about a minute.
"""
from __future__ import annotations

import dataclasses
import fcntl
import functools
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from bench.measure import guardian
from bench.measure.environment import asset
from bench.errors import BenchError, UsageError

KERNEL_DIR = asset("kernel")
SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
SOURCE_PACKAGE = "linux-source-6.12"
LOCALVERSION = "-vmexec"


@dataclasses.dataclass(frozen=True)
class Mitigations:
    """The host-specific kernel command line of the "mitigations" variant, from kernel/mitigations.json,
    which records the host it was read on (CPU model, kernel, command line), when and with what command."""
    tcg_args: tuple[str, ...]       # forced under TCG, whose CPU model advertises none of the host's bugs
    kvm_args: tuple[str, ...]       # under KVM (-cpu host) the guest picks its own, as the host does
    host: dict                      # where they came from (see the file)
    read: dict


@functools.cache
def load_mitigations(name: str = "mitigations.json") -> Mitigations:
    """kernel/NAME, read when a guest is booted (an installed package has no kernel/ to read at import)."""
    data = json.loads((KERNEL_DIR / name).read_text())
    return Mitigations(tuple(a["arg"] for a in data["tcg_args"]), tuple(data["kvm_args"]),
                       data["host"], data["read"])


@dataclasses.dataclass(frozen=True)
class Variant:
    """One build of the same source, cached under its own key (cache_key)."""
    name: str
    fragments: tuple[str, ...]      # kernel/ config fragments, applied in order after tinyconfig
    localversion: str               # ends the kernel release (bench.regression tells variants by it)
    description: str
    patched: bool = True            # False: no patch applied, PATCH_OPTIONS not requested, the name in the key
    boot_args: tuple[str, ...] = ()     # the guest's kernel command line it needs
    mitigations: str | None = None      # kernel/ file of a host's mitigation arguments (load_mitigations), added
    base: str = "tinyconfig"            # what the fragments go on: "tinyconfig", or "host" (host_config())
    patch_dir: Path | None = None       # a series of one's own (its `series` file) instead of kernel/patches
    source_dir: Path | None = None      # a kernel source tree of one's own instead of linux-source-6.12 + series

    def boot_args_for(self, accel: str) -> tuple[str, ...]:
        if self.base == "host" and accel == "tcg":
            from bench.measure.environment import memory_cgroup_arg, mitigations
            lines = mitigations()       # the host's vulnerability lines, read once for both
            return (*self.boot_args, *host_indirect_branch_args(lines.get("spectre_v2", "")),
                    *host_unaffected_args(lines), *memory_cgroup_arg())
        if self.mitigations is None:
            return self.boot_args
        m = load_mitigations(self.mitigations)
        return (*self.boot_args, *(m.kvm_args if accel == "kvm" else m.tcg_args))

    def cpu_model_for(self, accel: str) -> str | None:
        """QEMU's -cpu this variant boots with under accel, or None for the accelerator's own."""
        return (host_cpu_identity() or None) if self.base == "host" and accel == "tcg" else None


def host_cpu_identity(identity: Mapping[str, str] | None = None) -> str:
    """The twin's -cpu under TCG: QEMU's `max` with the host's vendor, family, model and stepping, or "" where
    the host does not say them all.  The twin's kernel then looks its CPU up in the host's rows of the
    vulnerability tables and picks what the host's picked where no microcode bit decides (AMD families 17h and
    19h: SRSO's Safe RET return thunk, which TCG's own AMD family 15 never runs; Intel: ITS's aligned return
    thunks), and runs the host's vendor's quirks (not AMD's FXSAVE-leak and SYSRET-SS fix-ups on an Intel
    host).  identity: environment.cpu_identity()'s fields (default: this host's)."""
    from bench.measure.environment import cpu_identity
    identity = cpu_identity() if identity is None else identity
    fields = [identity.get(k, "") for k in ("vendor_id", "cpu family", "model", "stepping")]
    if not all(f.isdigit() for f in fields[1:]) or not re.fullmatch(r"[A-Za-z]{12}", fields[0]):
        return ""
    vendor, family, model, stepping = fields
    return f"max,vendor={vendor},family={family},model={model},stepping={stepping}"


#: The kernel's switch for each vulnerability's mitigation.  The twin turns off those the host is "Not affected"
#: by: with the host's identity but no ARCH_CAPABILITIES (TCG has none), its kernel would think an Intel CPU
#: affected by Meltdown and MDS and run PTI and VERW on paths where the host's runs neither.
OFF_SWITCHES = {"meltdown": "pti=off", "mds": "mds=off", "mmio_stale_data": "mmio_stale_data=off",
                "tsx_async_abort": "tsx_async_abort=off", "l1tf": "l1tf=off", "srbds": "srbds=off",
                "gather_data_sampling": "gather_data_sampling=off",
                "reg_file_data_sampling": "reg_file_data_sampling=off", "retbleed": "retbleed=off",
                "spec_rstack_overflow": "spec_rstack_overflow=off", "tsa": "tsa=off",
                "indirect_target_selection": "indirect_target_selection=off",
                "spec_store_bypass": "spec_store_bypass_disable=off", "vmscape": "vmscape=off"}


def host_unaffected_args(lines: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The twin's switches for what the host is not affected by (OFF_SWITCHES); lines: the host's
    vulnerability states (default: this host's, environment.mitigations())."""
    from bench.measure.environment import mitigations
    lines = mitigations() if lines is None else lines
    return tuple(arg for name, arg in OFF_SWITCHES.items() if lines.get(name, "").strip() == "Not affected")


def return_thunk(lines: Mapping[str, str]) -> str:
    """What a kernel's returns go through, by its vulnerability states (as arch/x86/kernel/cpu/bugs.c picks
    x86_return_thunk, SRSO's over retbleed's over ITS's): "SRSO Safe RET" (a call and a return that is
    mispredicted on purpose, every return), "retbleed untrained return thunk", "call depth stuffing", "ITS
    aligned return thunk" (one aligned ret), or "" (a plain ret)."""
    srso = lines.get("spec_rstack_overflow", "")
    retbleed = lines.get("retbleed", "")
    if "Safe RET" in srso:
        return "SRSO Safe RET"
    if "untrained return thunk" in retbleed:
        return "retbleed untrained return thunk"
    if "Stuffing" in retbleed:
        return "call depth stuffing"
    if "return thunks" in lines.get("indirect_target_selection", ""):
        return "ITS aligned return thunk"
    return ""


def _thunk(spectre_v2: str) -> str:
    """The thunk a spectre_v2 line's mitigation calls through: "retpoline", "lfence" (lfence and the jump) or ""."""
    mitigation = spectre_v2.split(";")[0].lower()
    return next((w for w in ("retpoline", "lfence") if w in mitigation), "")


def uses_retpolines(spectre_v2: str) -> bool:
    """Whether a spectre_v2 line says indirect calls go through a thunk ("Mitigation: Retpolines", "LFENCE")."""
    return bool(_thunk(spectre_v2))


def host_indirect_branch_args(state: str | None = None) -> tuple[str, ...]:
    """The twin's command line under TCG for the host's indirect calls: TCG's CPU has none of the host's
    IBRS features (even with the host's identity), so the guest would pick by its own defaults, and the price of
    a retpoline call (bench.measure.prices) prices the thunks the twin counts: the twin calls through them
    exactly when the host does (issue 26)."""
    if state is None:
        from bench.measure.environment import mitigations
        state = mitigations().get("spectre_v2", "")
    if not state:
        return ()
    return ({"retpoline": "spectre_v2=retpoline", "lfence": "spectre_v2=retpoline,lfence"}.get(_thunk(state),
                                                                                         "spectre_v2=off"),)


#: Every build variant, one row each.  The debug kernel (lockdep, KASAN) is so slow under TCG that
#: ACPICA's 30 s AML loop timeout fires in QEMU's _PRT method and the boot stalls
#: (AE_AML_LOOP_TIMEOUT): it boots without ACPI (MP table, PIRQ).
VARIANTS = {v.name: v for v in (
    Variant("bench", ("config.fragment",), LOCALVERSION, "the benchmark kernel"),
    Variant("debug", ("config.fragment", "config.debug.fragment"), LOCALVERSION + "-debug",
            "the attack suite's kernel (tests/test_kernel_attacks.py): BUG, lockdep, KASAN, MEMCG, ...",
            boot_args=("acpi=off",)),
    Variant("safe", ("config.fragment", "config.safe.fragment"), LOCALVERSION + "-safe",
            "the benchmark kernel in safe mode (FPU/PKRU/FS-GS isolation)"),
    Variant("unpatched", ("config.fragment",), "-unpatched",
            "the same source and config without any patch: what the port costs tasks that never call it",
            patched=False),
    Variant("mitigations", ("config.fragment", "config.mitigations.fragment"), LOCALVERSION + "-mitigations",
            "the benchmark kernel with the development host's speculation mitigations (kernel/mitigations.json)",
            mitigations="mitigations.json"),
    Variant("kvm", ("config.fragment", "config.mitigations.fragment", "config.kvm.fragment"),
            LOCALVERSION + "-kvm",
            "the mitigations kernel that is also a KVM guest (kvm-clock: it keeps the TSC) and a KVM host "
            "(AMD SVM): the main job's KVM steps boot it, and it is the nested KVM test machine under TCG",
            mitigations="mitigations.json"),
    Variant("twin", ("config.twin.fragment",), LOCALVERSION + "-twin",
            "a twin of the running host's kernel: its own configuration (/proc/config.gz) with the series, "
            "so path lengths are counted on the kernel whose times the host measures",
            base="host"),
)}


class _TcgBootArgs(Mapping):
    """variant -> its command line under TCG, for the variants that have one (read on access)."""

    def __getitem__(self, name: str) -> tuple[str, ...]:
        args = get_variant(name).boot_args_for("tcg") if name in VARIANTS else ()
        if not args:
            raise KeyError(name)
        return args

    def __iter__(self):
        return (name for name in VARIANTS if name in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


#: Views of the table, for its readers.
LOCALVERSIONS = {v.name: v.localversion for v in VARIANTS.values()}
BOOT_ARGS = _TcgBootArgs()


#: What a kernel given by path (variant_from_path) may be, for messages.
KERNEL_PATHS = "a patch series directory (with a `series` file), a kernel source tree, or a config fragment file"


def get_variant(name: str) -> Variant:
    """A row of VARIANTS, or a kernel given by path (variant_from_path)."""
    if name in VARIANTS:
        return VARIANTS[name]
    if os.sep in name:
        return variant_from_path(name)
    raise BenchError(f"unknown kernel variant {name!r} (known: {', '.join(VARIANTS)}; or, as a path, {KERNEL_PATHS})")


@functools.cache
def variant_from_path(spec: str) -> Variant:
    """The benchmark kernel changed the way a kernel developer changes it (issue 29, two kernels):
    DIR/series: that patch series instead of kernel/patches; a source tree (Makefile, Kconfig): that
    tree instead of linux-source-6.12 and the series (process_vm_exec is asked for only if its
    arch/x86/Kconfig has it); a file: a config fragment on top of the benchmark's."""
    path = Path(spec).resolve()
    if (path / "series").is_file():
        return Variant(str(path), ("config.fragment",), LOCALVERSION + "-series",
                       f"the benchmark kernel with the patch series {path}", patch_dir=path)
    if (path / "Makefile").is_file() and (path / "Kconfig").is_file():
        kconfig = path / "arch" / "x86" / "Kconfig"
        has_series = kconfig.is_file() and "PROCESS_VM_EXEC" in kconfig.read_text(errors="replace")
        return Variant(str(path), ("config.fragment",), LOCALVERSION + "-tree",
                       f"the kernel source tree {path} with the benchmark's config", patched=has_series,
                       source_dir=path)
    if path.is_file():
        return Variant(str(path), ("config.fragment", str(path)), LOCALVERSION + "-config",
                       f"the benchmark kernel with the config fragment {path}")
    raise BenchError(f"kernel {spec}: not a kernel variant nor {KERNEL_PATHS}")


def variant_arg(text: str) -> str:
    """argparse type of --kernel-variant: a variant's name, or a kernel given by path (absolute, so a
    child process reads the same)."""
    import argparse
    try:
        return get_variant(text).name
    except BenchError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def boot_args(name: str, accel: str) -> tuple[str, ...]:
    """The kernel command line variant `name` needs under accel."""
    return get_variant(name).boot_args_for(accel)


def cpu_model(name: str, accel: str) -> str | None:
    """QEMU's -cpu variant `name` needs under accel, or None for the accelerator's own."""
    return get_variant(name).cpu_model_for(accel)


#: Where the twin reads the host's configuration, in order; VMEXEC_TWIN_CONFIG=FILE comes first.
HOST_CONFIGS = ("/proc/config.gz", "/boot/config-{release}")
#: The most a host configuration may unpack to (a distribution's is about 300 kB).
HOST_CONFIG_MAX_BYTES = 8 * 2**20
#: What a host's (or a distribution's) configuration is changed by before the fragments: scripts/config
#: arguments, in order (also `bench kernel package`'s).
HOST_CONFIG_CHANGES = (
    ("--enable", "PROCESS_VM_EXEC"),
    ("--disable", "IA32_EMULATION"),          # PROCESS_VM_EXEC depends on !IA32_EMULATION
    ("--disable", "DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT"), ("--disable", "DEBUG_INFO_DWARF4"),
    ("--disable", "DEBUG_INFO_DWARF5"), ("--enable", "DEBUG_INFO_NONE"),
    ("--set-str", "SYSTEM_TRUSTED_KEYS", ""), ("--set-str", "SYSTEM_REVOCATION_KEYS", ""),
    ("--set-str", "LOCALVERSION", ""),          # the release is 6.12.N-vmexec-twin, not the base kernel's suffix
)


@dataclasses.dataclass(frozen=True)
class HostConfig:
    """A kernel configuration the twin is built from, and where it was read."""
    text: str
    origin: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def host_config(release: str | None = None) -> HostConfig:
    """The running host's kernel configuration (VMEXEC_TWIN_CONFIG, /proc/config.gz, /boot/config-R)."""
    given = os.environ.get("VMEXEC_TWIN_CONFIG")
    release = release or os.uname().release
    paths = [given] if given else [p.format(release=release) for p in HOST_CONFIGS]
    for name in paths:
        try:
            with (gzip.open(name) if name.endswith(".gz") else open(name, "rb")) as f:
                data = f.read(HOST_CONFIG_MAX_BYTES + 1)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            if given:
                raise BenchError(f"VMEXEC_TWIN_CONFIG={given}: cannot read it ({e})") from None
            continue
        if len(data) > HOST_CONFIG_MAX_BYTES:
            raise BenchError(f"{name}: larger than {HOST_CONFIG_MAX_BYTES} bytes: not a kernel configuration")
        text = data.decode("utf-8", errors="replace")
        if not any(line.startswith("CONFIG_") for line in text.splitlines()):
            raise BenchError(f"{name}: no CONFIG_ line: not a kernel configuration")
        return HostConfig(text, name)
    raise BenchError("the twin kernel needs the host's kernel configuration: none of "
                     f"{', '.join(paths)} is readable; set VMEXEC_TWIN_CONFIG=FILE")


def config_options(text: str) -> dict[str, str]:
    """CONFIG_X -> value ('n' for '# CONFIG_X is not set') of a .config's text."""
    options = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# CONFIG_") and line.endswith(" is not set"):
            options[line[2:-len(" is not set")]] = "n"
        elif line.startswith("CONFIG_"):
            name, _, value = line.partition("=")
            options[name] = value
    return options


def config_differences(host: str, final: str, requested: Mapping[str, str]) -> list[dict]:
    """Every option of the host's configuration that the twin does not carry over as it is, and why:
    asked for (the series, the guest's needs, build time), absent from 6.12 (no such option there, or
    its dependencies are off), or changed by olddefconfig (its dependencies differ in 6.12)."""
    want, have = config_options(host), config_options(final)
    changed = {name.removeprefix("CONFIG_") for _, name, *_ in HOST_CONFIG_CHANGES}
    rows = []
    for name, value in want.items():
        got = have.get(name)
        if got == value or (got is None and value == "n"):
            continue
        if name.endswith(("_VERSION", "_VERSION_TEXT")):
            why = "toolchain (the twin is built with this machine's compiler, assembler and linker)"
        elif name in requested or name.removeprefix("CONFIG_") in changed:
            why = "changed on purpose (the series, the guest, build time)"
        elif got is None:
            why = "not in 6.12 (no such option, or its dependencies are off)"
        else:
            why = "changed by olddefconfig (dependencies differ in 6.12)"
        rows.append({"option": name, "host": value, "twin": got if got is not None else "absent", "why": why})
    return rows


#: Options that exist only with the patches: not requested of the unpatched kernel.
PATCH_OPTIONS = ("CONFIG_PROCESS_VM_EXEC",)
#: Bump when the build steps below change what they produce.
BUILD_SCRIPT_VERSION = "1"
#: Host tools the build runs, and the Debian packages that provide them.
TOOLS = {"make": "make", "gcc": "gcc", "patch": "patch", "tar": "tar", "xz": "xz-utils",
         "flex": "flex", "bison": "bison", "bc": "bc", "perl": "perl", "cpio": "cpio"}


@dataclasses.dataclass(frozen=True)
class KernelBuild:
    bzimage: Path
    release: str      # e.g. '6.12.118-vmexec'
    cache_key: str
    seconds: float    # how long this call took
    cached: bool
    source: str = ""      # the source package and its version, e.g. 'linux-source-6.12 6.12.118-1~deb12u1'
    compiler: str = ""    # the compiler's first line of --version
    config_sha256: str = ""   # of the final .config (a twin's says which host configuration it copies)

    @property
    def host_config_sha256(self) -> str:
        """A twin's: the sha256 of the host configuration it was made from (its carry-over.json); else ""."""
        return twin_origin(self.bzimage.parent)


def twin_origin(build_dir: Path) -> str:
    """The host configuration's sha256 a twin build in build_dir was made from; "" for any other build."""
    carry = Path(build_dir) / "carry-over.json"
    try:
        return str(json.loads(carry.read_text()).get("host_config_sha256", "")) if carry.exists() else ""
    except (OSError, ValueError):
        return ""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "vmexec-bench"


def patches(variant: str = "bench") -> list[Path]:
    """The patches named in kernel/patches/series (or the variant's own series), in order (none for an
    unpatched variant or a source tree of one's own)."""
    v = get_variant(variant)
    if not v.patched or v.source_dir is not None:
        return []
    series = (v.patch_dir or KERNEL_DIR / "patches") / "series"
    names = [line.strip() for line in series.read_text().splitlines()]
    return [series.parent / n for n in names if n and not n.startswith("#")]


def affects_kernel(patch: Path) -> bool:
    """False for a patch that touches only tools/ (the kselftest): the bzImage does not
    depend on it, so it is applied (and must apply) but not part of the cache key."""
    paths = [line[6:].split("\t")[0] for line in patch.read_text().splitlines()
             if line.startswith("+++ b/")]
    return not paths or any(not p.startswith("tools/") for p in paths)


def fragments(variant: str = "bench") -> list[Path]:
    """The config fragments of a variant, applied in order after tinyconfig."""
    return [KERNEL_DIR / name for name in get_variant(variant).fragments]


def fragment_options(variant: str = "bench") -> dict[str, str]:
    """CONFIG_X -> value ('n' for '# CONFIG_X is not set') from the variant's fragments (last wins)."""
    options = config_options("\n".join(f.read_text() for f in fragments(variant)))
    if not get_variant(variant).patched:
        options = {k: v for k, v in options.items() if not k.startswith(PATCH_OPTIONS)}
    return options


def source_package_version() -> str:
    """The installed version of SOURCE_PACKAGE as dpkg knows it, or "" (not installed with dpkg)."""
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE],
                              capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _source_version() -> str:
    """The installed package version, plus the tarball's size and mtime."""
    st = SOURCE_TARBALL.stat()
    return f"{source_package_version()} {st.st_size} {st.st_mtime_ns}"


def compiler_version() -> str:
    """The first line of `gcc --version`: a distribution's compiler update changes the code
    generated, so it is part of the cache key (a cached kernel is what a fresh build would give)."""
    try:
        out = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.splitlines()[0].strip() if out.strip() else "unknown"


def cache_key(variant: str = "bench", own_entry: bool = True) -> str:
    """The hash of a build's inputs, its cache entry's name.  own_entry=False: the inputs alone, so a kernel
    given by path can be found to be a named variant's (bench.commands.regression)."""
    h = hashlib.sha256()
    h.update(f"script {BUILD_SCRIPT_VERSION}\nsource {_source_version()}\n"
             f"compiler {compiler_version()}\n".encode())
    if not get_variant(variant).patched:
        h.update(f"{variant}\n".encode())     # "unpatched\n", as before the table
    for p in patches(variant):
        if affects_kernel(p):
            h.update(f"patch {p.name}\n".encode() + p.read_bytes())
    if get_variant(variant).base == "host":
        h.update(f"host config {host_config().sha256}\n{HOST_CONFIG_CHANGES!r}\n".encode())
    if own_entry and variant not in VARIANTS:     # a kernel given by path: never the cache entry of a named variant, whose
        h.update(f"given {get_variant(variant).localversion}\n".encode())     # release differs (-series ...)
    if get_variant(variant).source_dir is not None:
        h.update(f"source tree {tree_identity(get_variant(variant).source_dir)}\n".encode())
    for i, f in enumerate(fragments(variant)):
        # The benchmark kernel's key is unchanged by the variants' existence.
        h.update((b"fragment\n" if i == 0 else f"fragment {f.name}\n".encode()) + f.read_bytes())
    return h.hexdigest()[:16]


def tree_identity(tree: Path) -> str:
    """A hash of a source tree's files (paths, sizes, modification times; .git left out): a changed
    file in a developer's tree is a new build."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            p = os.path.join(root, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            h.update(f"{os.path.relpath(p, tree)} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _check_prerequisites() -> None:
    if not SOURCE_TARBALL.exists():
        raise BenchError(f"no kernel source: {SOURCE_TARBALL} is missing; "
                         f"install it with 'apt-get install {SOURCE_PACKAGE}'")
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
    if missing:
        raise BenchError(f"the kernel build needs more tools: apt-get install {' '.join(missing)} "
                         "libelf-dev libssl-dev")


class _Log:
    """Runs build steps with their output appended to build.log."""

    def __init__(self, path: Path, env: dict[str, str]):
        self.path = path
        self.env = env

    def run(self, step: str, cmd: list[str], cwd: Path) -> None:
        with self.path.open("a") as f:
            f.write(f"\n=== {step}: {' '.join(cmd)}\n")
            f.flush()
            # A process group of its own, killed whole if this ends in any way (make's cc1s, tar's xz).
            proc = guardian.run_group(cmd, cwd=cwd, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        if proc.returncode:
            self.fail(f"{step} failed (exit status {proc.returncode})")

    def fail(self, what: str):
        lines = self.path.read_text(errors="replace").splitlines()[-12:]
        raise BenchError(f"kernel build: {what}; log: {self.path}; last lines: "
                         + " | ".join(line.strip() for line in lines))


def _check_config(config: Path, log: _Log, variant: str) -> None:
    """olddefconfig drops options with unmet dependencies: insist on every requested one."""
    final = {k: v for k, v in config_options(config.read_text()).items() if v != "n"}
    wrong = [f"{name}={want} (got {final.get(name, 'n')})"
             for name, want in fragment_options(variant).items() if final.get(name, "n") != want]
    if wrong:
        with log.path.open("a") as f:
            f.write("options not set as requested: " + ", ".join(wrong) + "\n")
        log.fail("the final .config lacks requested options (unmet dependencies?): " + ", ".join(wrong))


#: A line of `make`'s output that stands for one object built (CC, AS, LD, AR and the like).
_BUILT = re.compile(r"^\s{2}(CC|AS|LD|AR|HOSTCC|HOSTLD|GEN|OBJCOPY|CPP|VDSO\w*)\s")
#: How often the build says how far it got.
PROGRESS_SECONDS = 30.0


def _built_so_far(log_path: Path, offset: int) -> int:
    with log_path.open("rb") as f:
        f.seek(offset)
        return sum(1 for line in f if _BUILT.match(line.decode(errors="replace")))


def _size_key(variant: str) -> str:
    v = get_variant(variant)
    return f"{v.base}/{Path(v.fragments[-1]).name}"


def _expected_objects(variant: str) -> int | None:
    """How many objects the last build of this kind of configuration made here, else on the machine
    kernel/build-sizes.json was measured on (None: neither knows)."""
    for path in (cache_root() / "build-sizes.json", KERNEL_DIR / "build-sizes.json"):
        try:
            count = json.loads(path.read_text())[_size_key(variant)]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(count, int) and count > 0:
            return count
    return None


def _remember_objects(variant: str, count: int) -> None:
    path = cache_root() / "build-sizes.json"
    try:
        sizes = json.loads(path.read_text())
        sizes = sizes if isinstance(sizes, dict) else {}
    except (OSError, ValueError):
        sizes = {}
    sizes[_size_key(variant)] = count
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:        # only a better estimate next time: a build never fails for it
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(sizes, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


class _Progress:
    """Says every PROGRESS_SECONDS how many objects the build has made (of how many the last build of
    this kind of configuration made, and the time left at the rate so far), instead of minutes of silence."""

    def __init__(self, log_path: Path, variant: str, say):
        self.log_path, self.variant, self.say = log_path, variant, say
        self.offset = log_path.stat().st_size
        self.expected = _expected_objects(variant)
        self.done = threading.Event()

    def __enter__(self):
        self.start = time.monotonic()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while not self.done.wait(PROGRESS_SECONDS):
            self.say(self.line(_built_so_far(self.log_path, self.offset), time.monotonic() - self.start))

    def line(self, built: int, elapsed: float) -> str:
        minutes, seconds = divmod(int(elapsed), 60)
        if not self.expected:
            return (f"building: {built} objects built in {minutes} min {seconds:02d} s "
                    "(first build of this configuration here: no total known yet)")
        share = min(built / self.expected, 0.99)
        rest = f", about {max(1, round(elapsed * (1 - share) / share / 60))} min left" if share > 0 else ""
        return f"building: {built} of about {self.expected} objects ({share:.0%}) in {minutes} min {seconds:02d} s{rest}"

    def __exit__(self, kind, value, tb):
        self.done.set()
        self.thread.join()
        if kind is None:
            _remember_objects(self.variant, _built_so_far(self.log_path, self.offset))
        return False


def _configure(work: Path, log: _Log, say, variant: str) -> list[str]:
    """Unpack, patch and configure in `work` (work/obj/.config); returns the make command line.
    A twin (base "host") starts from the host's configuration and writes what did not carry over
    to work/obj/carry-over.json."""
    src, obj = work / "src", work / "obj"
    src.mkdir(parents=True)
    obj.mkdir()
    tree = get_variant(variant).source_dir
    if tree is None:
        say(f"unpacking {SOURCE_TARBALL.name}")
        log.run("unpack", ["tar", "-xf", str(SOURCE_TARBALL), "--strip-components=1", "-C", str(src)], work)
    else:
        say(f"copying the source tree {tree}")
        log.run("copy", ["cp", "-a", f"{tree}/.", str(src)], work)
        shutil.rmtree(src / ".git", ignore_errors=True)
    for p in patches(variant):
        say(f"applying {p.name}")
        log.run(f"patch {p.name}", ["patch", "-p1", "--forward", "--batch", "-i", str(p)], src)
    make = ["make", f"O={obj}", f"LOCALVERSION={get_variant(variant).localversion}", "CC=" + log.env["VMEXEC_CC"]]
    names = " + ".join(f.name for f in fragments(variant))
    host = host_config() if get_variant(variant).base == "host" else None
    if host is None:
        say(f"configuring: tinyconfig + {names} + olddefconfig")
        log.run("tinyconfig", make + ["tinyconfig"], src)
    else:
        say(f"configuring: the host's {host.origin} (sha256 {host.sha256[:16]}) + {names} + olddefconfig")
        (obj / ".config").write_text(host.text)
        changes = [a for change in HOST_CONFIG_CHANGES for a in change]
        log.run("scripts/config", [str(src / "scripts" / "config"), "--file", str(obj / ".config"), *changes], src)
    with (obj / ".config").open("a") as f:
        for fragment in fragments(variant):
            f.write("\n" + fragment.read_text())
    log.run("olddefconfig", make + ["olddefconfig"], src)
    _check_config(obj / ".config", log, variant)
    if host is not None:
        rows = config_differences(host.text, (obj / ".config").read_text(), fragment_options(variant))
        (obj / "carry-over.json").write_text(json.dumps(
            {"host_config": host.origin, "host_config_sha256": host.sha256, "not_carried_over": rows},
            indent=1) + "\n")
        say(f"{len(rows)} of the host's options not carried over as they are (carry-over.json)")
    return make


def configure_only(output: Path, variant: str, say=print) -> Path:
    """The variant's final .config (and a twin's carry-over.json) in output: unpack, patch and
    configure (about a minute), no build."""
    _check_prerequisites()
    output.mkdir(parents=True, exist_ok=True)
    cache_root().mkdir(parents=True, exist_ok=True)     # a fresh machine has none yet
    with tempfile.TemporaryDirectory(prefix="vmexec-config-", dir=cache_root()) as tmp:
        work = Path(tmp)
        env = dict(os.environ, VMEXEC_CC="gcc")
        log = _Log(work / "config.log", env)
        log.path.write_text(f"vmexec-bench kernel configuration ({variant})\n")
        _configure(work / "tree", log, say, variant)
        obj = work / "tree" / "obj"
        shutil.copyfile(obj / ".config", output / f"config-{variant}")
        if (obj / "carry-over.json").exists():
            shutil.copyfile(obj / "carry-over.json", output / f"carry-over-{variant}.json")
    return output / f"config-{variant}"


def _build_into(work: Path, log: _Log, say, variant: str) -> str:
    """Unpack, patch, configure and build in `work`; returns the kernel release."""
    src, obj = work / "src", work / "obj"
    make = _configure(work, log, say, variant)
    jobs = len(os.sched_getaffinity(0))
    say(f"building bzImage with {jobs} jobs (log: {log.path})")
    with _Progress(log.path, variant, say):
        log.run("make bzImage", make + [f"-j{jobs}", "bzImage"], src)
    return subprocess.run(make + ["-s", "kernelrelease"], cwd=src, env=log.env, text=True,
                          capture_output=True, check=True).stdout.strip()


def bzimage_release(path: Path) -> str:
    """The release a bzImage names in its own header (x86 boot protocol: "HdrS" at 0x202, the version
    string at 0x200 plus the pointer at 0x20E); "" for a file that is no bzImage."""
    try:
        with path.open("rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return ""
    if head[0x202:0x206] != b"HdrS":
        return ""
    at = 0x200 + int.from_bytes(head[0x20E:0x210], "little")
    return head[at:at + 256].split(b"\0")[0].decode(errors="replace").split(" ")[0]


def cached_build(home: Path, variant: str) -> tuple[dict | None, str]:
    """(build.json's record, "") when home holds a complete build of variant: a record naming a release
    of the variant, and a bzImage whose own header names that release; else (None, what is wrong, or
    "" when nothing was ever built there)."""
    meta_path, bzimage = home / "build.json", home / "bzImage"
    if not meta_path.exists():
        return None, ""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        return None, f"build.json unreadable: {e}"
    release = meta.get("release") if isinstance(meta, dict) else None
    if not isinstance(release, str) or not release.endswith(get_variant(variant).localversion):
        return None, f"build.json names release {release!r}, not one of variant {variant}"
    found = bzimage_release(bzimage)
    if found != release:
        return None, f"bzImage is {'not a kernel image' if not found else f'release {found}'}, not {release}"
    return meta, ""


def _complete(home: Path, key: str, start: float, variant: str) -> KernelBuild | None:
    """The cached build under home if it is complete and sound (cached_build), else None."""
    meta, _ = cached_build(home, variant)
    if meta is None:
        return None
    return KernelBuild(home / "bzImage", meta["release"], key, time.monotonic() - start, True,
                       meta.get("source", ""), meta.get("compiler", ""), meta.get("config_sha256", ""))


def build(force: bool = False, log=print, variant: str = "bench") -> KernelBuild:
    """The patched kernel's bzImage, built once per set of inputs.

    variant "debug" adds config.debug.fragment (BUG, lockdep, KASAN, MEMCG, ...)
    for the attack suite; it is cached under its own key beside the benchmark's.
    """
    start = time.monotonic()
    _check_prerequisites()
    key = cache_key(variant)
    home = cache_root() / "kernel" / key
    meta_path, bzimage = home / "build.json", home / "bzImage"
    # A complete build (build.json is written last) is used as it is, without the lock: a read-only
    # cache (a guest's 9p root) works.
    done = None if force else _complete(home, key, start, variant)
    if done:
        return done
    try:
        home.mkdir(parents=True, exist_ok=True)
        lock = (home / ".lock").open("w")
    except OSError as e:
        raise UsageError(f"kernel cache {home}: no complete build of {variant!r} there and it cannot be made "
                         f"or written ({e.strerror}): build it where the cache is writable "
                         "(set XDG_CACHE_HOME to a writable directory)") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)    # one build per key at a time
        meta, corrupt = cached_build(home, variant)
        if not force and meta:
            return KernelBuild(bzimage, meta["release"], key, time.monotonic() - start, True,
                               meta.get("source", ""), meta.get("compiler", ""), meta.get("config_sha256", ""))
        if corrupt:
            log(f"the cached build in {home} is unusable ({corrupt}): building it again")

        meta_path.unlink(missing_ok=True)
        work = home / "work"
        shutil.rmtree(work, ignore_errors=True)
        # CCACHE_BASEDIR: relative paths, so objects are shared across keys' work dirs.
        env = dict(os.environ, CCACHE_DIR=str(cache_root() / "ccache"), CCACHE_BASEDIR=str(work),
                   VMEXEC_CC="ccache gcc" if shutil.which("ccache") else "gcc",
                   KBUILD_BUILD_USER="vmexec-bench", KBUILD_BUILD_HOST="vmexec-bench")
        build_log = _Log(home / "build.log", env)
        build_log.path.write_text(f"vmexec-bench kernel build ({variant}), key {key}\n")
        release = _build_into(work, build_log, log, variant)
        shutil.copyfile(work / "obj" / "arch" / "x86" / "boot" / "bzImage", bzimage)
        shutil.copyfile(work / "obj" / ".config", home / "config")
        if (work / "obj" / "carry-over.json").exists():
            shutil.copyfile(work / "obj" / "carry-over.json", home / "carry-over.json")
        seconds = time.monotonic() - start
        source = f"{SOURCE_PACKAGE} {source_package_version() or 'unknown version'}"
        compiler = compiler_version()
        config_sha256 = hashlib.sha256((home / "config").read_bytes()).hexdigest()
        # Written last: its presence marks a complete build.
        meta_path.write_text(json.dumps({"release": release, "seconds": round(seconds, 1),
                                         "source": source, "compiler": compiler,
                                         "config_sha256": config_sha256}) + "\n")
        shutil.rmtree(work)     # ~2 GB of sources and objects; ccache keeps what matters
    log(f"kernel {release} built in {seconds:.0f} s from {source} with {compiler}: {bzimage}")
    return KernelBuild(bzimage, release, key, seconds, False, source, compiler, config_sha256)
