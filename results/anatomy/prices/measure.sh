#!/bin/bash
# The host part of the composition (issue 18 item 3, issue 26): a host run of every C mechanism at pin same,
# then the parts' prices, on a quiet machine, committed one directory per machine.
# Usage: measure.sh [OUT] (default results/anatomy/prices/machines/<CPU model>-<kernel>), from anywhere in the
# repository.  A busy host (the busy-host warning's test, on the host run or on the prices' rounds) or prices
# that are not admissible are refused by `bench prices` in one line: measure again when the machine is quiet.
set -euo pipefail
cd "$(dirname "$0")/../../.."
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1 | tr -cs 'A-Za-z0-9' '-' | sed 's/-$//')
OUT=${1:-results/anatomy/prices/machines/$CPU-$(uname -r)}
mkdir -p "$OUT"
echo "start: $(date -Is) load: $(cut -d' ' -f1-3 /proc/loadavg)"
VMEXEC_RESULTS_DIR=$OUT .venv/bin/python -m bench run --fast --pin same \
  --backends native,ptrace-sysemu,ptrace-sysemu-poke,ptrace-syscall,process-vm-exec,seccomp-trace,seccomp-unotify,seccomp-unotify-sync,seccomp-trap,syscall-user-dispatch
echo "host run done: $(date -Is) load: $(cut -d' ' -f1-3 /proc/loadavg)"
HOST=$(ls -t "$OUT"/*.json | grep -v prices- | head -1)
.venv/bin/python -m bench prices --runs 30 --host "$HOST" --anatomy results/anatomy --output-dir "$OUT" \
  --markdown "$OUT/composed.md"
echo "end: $(date -Is) load: $(cut -d' ' -f1-3 /proc/loadavg)"
