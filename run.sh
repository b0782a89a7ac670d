#!/usr/bin/env bash
# Sets up everything this project needs (idempotently, every time), then
#   ./run.sh [bench run options]   the main job (python -m bench main): a first answer, the full
#                                  benchmark on the host and in a guest on the patched kernel, the report
#   ./run.sh test [pytest options] the whole test suite
# What the main job runs, step by step: docs/commands.md (or `python -m bench main --dry-run`).
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages: compiler for the C driver, Python venv, and the kernel
# build + QEMU for the patched-kernel VM.
APT_PACKAGES=(
    gcc make git python3 python3-venv python3-dev
    linux-source-6.12 patch perl flex bison bc libelf-dev libssl-dev cpio xz-utils ccache
    qemu-system-x86
    dpkg-dev debhelper kmod rsync
)
# Kept at the version the registry serves today, not merely installed once: a machine that
# installed linux-source-6.12 last month must build the kernel a fresh machine builds now, or a
# green run here says nothing about a fresh one.  Offline, the installed versions are kept, loudly.
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
else
    echo "run.sh: warning: apt-get update failed: keeping the installed Debian packages, which may be older than a fresh machine's" >&2
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
fi
# What the kernel, the driver and the guest are built and run with (also recorded in every result).
dpkg-query -W -f='${Package} ${Version}\n' linux-source-6.12 qemu-system-x86 gcc-12 | paste -sd ';' \
    | sed 's/;/; /g; s/^/run.sh: using /' >&2

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 'setuptools>=64'   # setuptools: bench check --against builds a commit's driver
# Editable install: builds the C driver (tracers/vmexec) in place, every time.  Eager upgrades keep
# an old virtual environment's libraries at what a fresh one resolves today.
.venv/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[test]'
PY=.venv/bin/python

case "${1:-}" in
test)
    shift
    exec "$PY" -m pytest "$@"
    ;;
*)
    # The main job (bench/commands/mainjob.py; its steps: docs/commands.md).  Options go to its full
    # host run.
    exec "$PY" -m bench main -- "$@"
    ;;
esac
