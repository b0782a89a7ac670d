#!/usr/bin/env bash
# Sets up everything this project needs (idempotently, every time), then
#   ./run.sh [bench run options]   the main job: a first answer (the claim's two
#                                  backends, host and VM) in minutes, then the full
#                                  benchmark on this kernel and in a VM on the
#                                  patched kernel, then the report
#   ./run.sh test [pytest options] the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages: compiler for the C driver, Python venv, and the kernel
# build + QEMU for the patched-kernel VM.
APT_PACKAGES=(
    gcc make git python3 python3-venv python3-dev
    linux-source-6.12 patch perl flex bison bc libelf-dev libssl-dev cpio xz-utils ccache
    qemu-system-x86
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
    # First answer, in minutes: the claim's two backends, same CPU, on the
    # host and then in the guest, with native and three other C mechanisms
    # whose host-versus-guest distortion bounds the emulator's error (the
    # verdict needs at least three), and a report of their own in
    # results/first-answer/.  The full matrix below extends it.
    claim=native,ptrace-sysemu,process-vm-exec,ptrace-syscall,seccomp-trace,seccomp-trap
    VMEXEC_RESULTS_DIR=results/first-answer "$PY" -m bench run --fast --pin same --backends "$claim"
    VMEXEC_RESULTS_DIR=results/first-answer "$PY" -m bench vm run --timing icount -- \
        --pin same --backends "$claim" --processes 1 --values 3
    VMEXEC_RESULTS_DIR=results/first-answer "$PY" -m bench report
    # Host: every backend, both pinnings, both scaling sweeps.
    "$PY" -m bench run --scaling "$@"
    # Guest on the patched kernel (built and cached on first use): the same
    # harness with process-vm-exec, in deterministic icount time (the parallel
    # sweep is reported unmeasurable there: one instruction clock serves every
    # vCPU); then the RFC's own two programs.  icount repeats itself, so few
    # workers suffice.
    "$PY" -m bench vm run --timing icount -- --scaling --processes 2 --values 3
    "$PY" -m bench vm rfc --timing icount
    "$PY" -m bench report
    ;;
esac
