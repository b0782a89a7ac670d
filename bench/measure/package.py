"""`bench kernel package`: the series as an installable Debian kernel package, for bare metal.

The guest kernel (bench.measure.kernel) is a tinyconfig bzImage for QEMU.  On a spare machine the same
series can run natively: this builds linux-source-6.12 + kernel/patches with the running
kernel's own configuration (/boot/config-$(uname -r), or --config FILE) plus
CONFIG_PROCESS_VM_EXEC=y, as `make bindeb-pkg` packages it, and prints how to install and boot
it.  `bench run` on that kernel then measures process-vm-exec on the host (bare metal).

Two changes to a distribution config are needed, and printed: CONFIG_IA32_EMULATION is turned
off (the syscall intercepts only the 64-bit entry: 32-bit programs do not run on this kernel), and
debug information is turned off (no multi-GB -dbg package, and no pahole for BTF).  Debian's
signing-key paths, which exist only in Debian's own build tree, are emptied.

--slim builds from the guest's slim config instead (tinyconfig + kernel/config.fragment, as
bench.measure.kernel does): not a kernel to boot a machine with, but a quick check that the packaging
works (tests/test_package.py).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
from pathlib import Path

from bench.measure import kernel
from bench.errors import UsageError, writable_directory

#: Bump when the steps below change what they produce.
PACKAGE_SCRIPT_VERSION = "1"
#: Tools `make bindeb-pkg` runs besides those of the guest build (bench.measure.kernel.TOOLS), and their
#: Debian packages.
PACKAGE_TOOLS = {"dpkg-buildpackage": "dpkg-dev", "dpkg-deb": "dpkg", "dh_testdir": "debhelper",
                 "depmod": "kmod", "rsync": "rsync"}     # rsync: the package's Build-Depends insist
#: What a distribution config is changed by: scripts/config arguments, in order (the twin's too).
CONFIG_CHANGES = kernel.HOST_CONFIG_CHANGES
SLIM = "slim"


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    fields = {}
    try:
        text = path.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip('"')
    return fields


def debian_like(release: dict[str, str] | None = None) -> str | None:
    """None if this is Debian or a derivative (ID or ID_LIKE says debian, and dpkg is there), else why not."""
    release = os_release() if release is None else release
    ids = {release.get("ID", ""), *release.get("ID_LIKE", "").split()}
    name = release.get("PRETTY_NAME") or release.get("ID") or "unknown"
    if "debian" not in ids and "ubuntu" not in ids:
        return (f"{name} is not Debian-like (ID={release.get('ID', '?')}, ID_LIKE={release.get('ID_LIKE', '')!r}); "
                "`make bindeb-pkg` builds .deb packages: apply kernel/patches to a 6.12 tree and build it "
                "your distribution's way, with CONFIG_PROCESS_VM_EXEC=y and CONFIG_IA32_EMULATION=n")
    if not shutil.which("dpkg"):
        return f"{name} says it is Debian-like but has no dpkg"
    return None


def base_config(config: Path | None, release: str | None = None) -> Path | str:
    """The configuration to start from: the file given, SLIM, or the running kernel's; else UsageError."""
    if config is not None:
        if str(config) == SLIM:
            return SLIM
        if not Path(config).is_file():
            raise UsageError(f"no config found: {config} is not a file")
        return Path(config)
    release = release or os.uname().release
    running = Path(f"/boot/config-{release}")
    if running.is_file():
        return running
    proc_config = Path("/proc/config.gz")
    extra = " (there is /proc/config.gz: zcat it to a file and give that)" if proc_config.exists() else ""
    raise UsageError(f"no config found: {running} does not exist (this kernel was not installed from a "
                     f"package){extra}; give --config FILE")


def _check_tools() -> None:
    if not kernel.SOURCE_TARBALL.exists():
        raise UsageError(f"no kernel source: {kernel.SOURCE_TARBALL} is missing; "
                         f"apt-get install {kernel.SOURCE_PACKAGE}")
    tools = {**kernel.TOOLS, **PACKAGE_TOOLS}
    missing = sorted({pkg for tool, pkg in tools.items() if not shutil.which(tool)})
    if missing:
        raise UsageError(f"building a kernel package needs more tools: apt-get install {' '.join(missing)} "
                         "libelf-dev libssl-dev")


def package_key(base: Path | str) -> str:
    h = hashlib.sha256()
    h.update(f"package {PACKAGE_SCRIPT_VERSION}\nsource {kernel._source_version()}\n"
             f"compiler {kernel.compiler_version()}\n".encode())
    for p in kernel.patches("bench"):
        h.update(f"patch {p.name}\n".encode() + p.read_bytes())
    if base == SLIM:
        for f in kernel.fragments("bench"):
            h.update(f"fragment {f.name}\n".encode() + f.read_bytes())
    else:
        h.update(b"config\n" + Path(base).read_bytes() + repr(CONFIG_CHANGES).encode())
    return h.hexdigest()[:16]


def _final_options(config: Path) -> dict[str, str]:
    final = {}
    for line in config.read_text(errors="replace").splitlines():
        if line.startswith("CONFIG_"):
            name, _, value = line.partition("=")
            final[name] = value
    return final


def _configure(src: Path, obj: Path, make: list[str], base: Path | str, log) -> None:
    if base == SLIM:
        log.run("tinyconfig", make + ["tinyconfig"], src)
        with (obj / ".config").open("a") as f:
            for fragment in kernel.fragments("bench"):
                f.write(fragment.read_text())
    else:
        shutil.copyfile(base, obj / ".config")
        changes = [a for change in CONFIG_CHANGES for a in change]
        log.run("scripts/config", [str(src / "scripts" / "config"), "--file", str(obj / ".config"), *changes], src)
    log.run("olddefconfig", make + ["olddefconfig"], src)
    final = _final_options(obj / ".config")
    if final.get("CONFIG_PROCESS_VM_EXEC") != "y":
        why = "CONFIG_IA32_EMULATION is still on" if final.get("CONFIG_IA32_EMULATION") == "y" else \
              "CONFIG_X86_64 is off" if final.get("CONFIG_X86_64") != "y" else "unmet dependencies"
        log.fail(f"the final .config lacks CONFIG_PROCESS_VM_EXEC=y ({why})")
    if base == SLIM:
        kernel._check_config(obj / ".config", log, "bench")


def configure_only(base: Path | str, output: Path, say=print) -> Path:
    """The .config `make bindeb-pkg` would build, written to output/config-vmexec: unpack, patch,
    configure (minutes), no build."""
    _check_tools()
    output = writable_directory(Path(output), create=True)
    home = kernel.cache_root() / "package" / f"{package_key(base)}-config"
    with _tree(home, base, say) as (src, obj, make, log):
        say(f"configuring from {base} with CONFIG_PROCESS_VM_EXEC=y")
        _configure(src, obj, make, base, log)
        shutil.copyfile(obj / ".config", output / "config-vmexec")
    return output / "config-vmexec"


class _tree:
    """A patched source tree under home/work (removed afterwards) and how to run make in it."""

    def __init__(self, home: Path, base, say):
        self.home, self.base, self.say = home, base, say

    def __enter__(self):
        self.home.mkdir(parents=True, exist_ok=True)
        self.lock = (self.home / ".lock").open("w")
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.work = work = self.home / "work"
        shutil.rmtree(work, ignore_errors=True)
        src, obj = work / "src", work / "obj"
        src.mkdir(parents=True)
        obj.mkdir()
        env = dict(os.environ, CCACHE_DIR=str(kernel.cache_root() / "ccache"), CCACHE_BASEDIR=str(work),
                   VMEXEC_CC="ccache gcc" if shutil.which("ccache") else "gcc",
                   KBUILD_BUILD_USER="vmexec-bench", KBUILD_BUILD_HOST="vmexec-bench")
        log = kernel._Log(self.home / "build.log", env)
        log.path.write_text(f"vmexec-bench kernel package ({self.base}), {self.home.name}\n")
        self.say(f"unpacking {kernel.SOURCE_TARBALL.name}")
        log.run("unpack", ["tar", "-xf", str(kernel.SOURCE_TARBALL), "--strip-components=1", "-C", str(src)], work)
        for p in kernel.patches("bench"):
            self.say(f"applying {p.name}")
            log.run(f"patch {p.name}", ["patch", "-p1", "--forward", "--batch", "-i", str(p)], src)
        make = ["make", f"O={obj}", f"LOCALVERSION={kernel.LOCALVERSION}", "CC=" + env["VMEXEC_CC"]]
        return src, obj, make, log

    def __exit__(self, kind, exc, tb):
        if kind is None:
            shutil.rmtree(self.work)    # ~1-2 GB; a failed build's stays for its log's sake, until the next
        self.lock.close()
        return False


def build_package(base: Path | str, output: Path, *, force: bool = False, say=print) -> dict:
    """Build (or find in the cache) the linux-image .deb of the series on `base`; copies every .deb
    into output and returns {'debs': [...], 'image': Path, 'release': str, 'seconds': float, 'cached': bool}."""
    start = time.monotonic()
    _check_tools()
    output = writable_directory(Path(output), create=True)
    home = kernel.cache_root() / "package" / package_key(base)
    done = home / "debs"
    cached = not force and done.is_dir() and any(done.glob("linux-image-*.deb"))
    if not cached:
        with _tree(home, base, say) as (src, obj, make, log):
            shutil.rmtree(done, ignore_errors=True)
            say(f"configuring from {base} with CONFIG_PROCESS_VM_EXEC=y")
            _configure(src, obj, make, base, log)
            jobs = len(os.sched_getaffinity(0))
            say(f"make bindeb-pkg with {jobs} jobs (log: {log.path})")
            log.run("make bindeb-pkg", make + [f"-j{jobs}", "bindeb-pkg"], src)
            work = obj.parent
            debs = sorted({*work.glob("*.deb"), *obj.glob("*.deb")})
            if not any(d.name.startswith("linux-image-") for d in debs):
                log.fail("make bindeb-pkg made no linux-image package")
            done.mkdir()
            for d in debs:
                shutil.move(str(d), done / d.name)
            shutil.copyfile(obj / ".config", done / "config")
    copied = []
    for d in sorted(done.glob("*.deb")):
        shutil.copyfile(d, output / d.name)
        copied.append(output / d.name)
    image = next(d for d in copied if d.name.startswith("linux-image-") and "-dbg_" not in d.name)
    release = image.name.split("_")[0][len("linux-image-"):]
    return {"debs": copied, "image": image, "release": release, "cached": cached,
            "seconds": time.monotonic() - start}


def install_instructions(image: Path, release: str) -> str:
    return "\n".join([
        "to install and boot it (as root, on the machine it was built for):",
        f"  dpkg -i {image}",
        f"  grub-reboot 'Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux {release}'  "
        "# once; or pick it in GRUB's menu (update-grub ran on install)",
        "  reboot",
        f"then check: uname -r    # {release}",
        "            grep -w __x64_sys_process_vm_exec /proc/kallsyms",
        "and measure on bare metal: .venv/bin/python -m bench run --scaling   # then: bench report",
        "(32-bit programs do not run on this kernel: CONFIG_IA32_EMULATION is off; "
        f"remove it with: apt-get remove linux-image-{release})",
    ])
