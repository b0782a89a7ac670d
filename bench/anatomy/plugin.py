"""The project's QEMU plugin (anatomy/vmexec_anatomy.c), built against the installed QEMU.

Debian ships no qemu-plugin.h: plugin_header() takes it from Debian's own source package of the
installed qemu-system-x86 (a deb-src entry, `apt-get source --download-only`), once, into the
cache (~/.cache/vmexec-bench/qemu-plugin/, beside the kernel builds: bench.measure.kernel.cache_root).
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tarfile
from pathlib import Path

from bench import outputs
from bench.errors import BenchError
from bench.measure.environment import asset
from bench.measure.kernel import cache_root

PLUGIN_SOURCE = asset("anatomy/vmexec_anatomy.c")
QEMU_PACKAGE = "qemu-system-x86"
SOURCES_DIR = Path("/etc/apt/sources.list.d")
SOURCES_FILE = SOURCES_DIR / "vmexec-bench-src.sources"

def installed_qemu_source_version() -> str:
    """The Debian source version of the installed qemu-system-x86 (binNMU suffix dropped)."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${source:Version}", QEMU_PACKAGE],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise BenchError(f"{QEMU_PACKAGE} is not installed (apt-get install {QEMU_PACKAGE})") from None
    if not out:
        raise BenchError(f"cannot read the version of {QEMU_PACKAGE}")
    return out


def _deb_src_entry(directory: Path = SOURCES_DIR) -> str:
    """deb-src entries for the archives and suites this machine's Debian sources already use:
    each deb822 stanza of directory/*.sources that names the Debian archive, with its type changed
    to deb-src (Debian 12's default layout)."""
    stanzas = []
    for path in sorted(directory.glob("*.sources")):
        if path.name == SOURCES_FILE.name:
            continue
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            lines = [line for line in stanza.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            fields = dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith(" "))
            if "deb" in fields.get("Types", "").split() and "debian" in fields.get("URIs", ""):
                stanzas.append("\n".join("Types: deb-src" if line.startswith("Types:") else line for line in lines))
    if not stanzas:
        raise BenchError(f"no Debian archive among this machine's deb822 apt sources "
                         f"({directory}/*.sources): add deb-src entries for it by hand, then run again")
    return "# Added by vmexec-bench (bench/anatomy/plugin.py): Debian's source packages, for qemu-plugin.h.\n" \
        + "\n\n".join(stanzas) + "\n"


def plugin_header(log=lambda msg: None) -> Path:
    """qemu-plugin.h of the installed QEMU, from Debian's source package of that very version
    (cached).  The first call, as root, adds a deb-src entry, runs apt-get update and
    `apt-get source --download-only qemu=VERSION`, and takes the header out of the original
    tarball, after checking that none of Debian's patches changes it."""
    version = installed_qemu_source_version()
    where = cache_root() / "qemu-plugin" / version.replace(":", "_")
    header = where / "qemu-plugin.h"
    if header.exists():
        return header
    if os.geteuid() != 0:
        raise BenchError(f"qemu-plugin.h is not cached yet ({header}); fetching it from Debian's "
                         "qemu source package needs root once (apt-get source): run the command as root")
    if not SOURCES_FILE.exists():
        log(f"adding Debian's source lists ({SOURCES_FILE})")
        SOURCES_FILE.write_text(_deb_src_entry())
    with outputs.scratch("qemu-src") as tmp:
        def download() -> subprocess.CompletedProcess:
            return subprocess.run(["apt-get", "source", "--download-only", "-q", f"qemu={version}"],
                                  cwd=tmp, capture_output=True, text=True)
        log(f"downloading Debian's qemu {version} source package (about 24 MB)")
        proc = download()
        if proc.returncode:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True)
            proc = download()
        if proc.returncode:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise BenchError(f"apt-get source qemu={version} failed: {tail}")
        orig = next(Path(tmp).glob("qemu_*.orig.tar.*"), None)
        debian = next(Path(tmp).glob("qemu_*.debian.tar.*"), None)
        if orig is None or debian is None:
            raise BenchError(f"apt-get source qemu={version} gave no original and Debian tarballs")
        with tarfile.open(debian) as t:
            for m in t.getmembers():
                if m.isfile() and m.name.startswith("debian/patches/"):
                    if b"qemu-plugin.h" in t.extractfile(m).read():
                        raise BenchError(f"Debian's patch {m.name} changes qemu-plugin.h: "
                                         "this set-up takes the header from the original tarball only")
        with tarfile.open(orig) as t:
            member = next((m for m in t if m.name.endswith("/include/qemu/qemu-plugin.h")), None)
            if member is None:
                raise BenchError(f"{orig.name} has no include/qemu/qemu-plugin.h")
            text = t.extractfile(member).read()
        where.mkdir(parents=True, exist_ok=True)
        (where / "SOURCE").write_text(
            f"Debian source package qemu {version}: {orig.name} (sha256 "
            f"{hashlib.sha256(orig.read_bytes()).hexdigest()}), {member.name}; "
            f"no patch in {debian.name} touches it\n")
        staged = header.with_suffix(".tmp")
        staged.write_bytes(text)
        staged.replace(header)
    return header


def build_plugin(log=lambda msg: None) -> Path:
    """The plugin, compiled against the installed QEMU's header (cached by source and header)."""
    header = plugin_header(log)
    key = hashlib.sha256(PLUGIN_SOURCE.read_bytes() + header.read_bytes()).hexdigest()[:16]
    lib = cache_root() / "anatomy-plugin" / key / "libvmexec_anatomy.so"
    if not lib.exists():
        lib.parent.mkdir(parents=True, exist_ok=True)
        staged = lib.with_suffix(".tmp")
        cmd = ["gcc", "-O2", "-Wall", "-shared", "-fPIC", f"-I{header.parent}", "-o", str(staged),
               str(PLUGIN_SOURCE), "-lpthread"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise BenchError(f"compiling the anatomy plugin failed: {proc.stderr.strip()[-500:]}")
        staged.replace(lib)
        log(f"built {lib}")
    return lib

