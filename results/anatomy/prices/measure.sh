#!/bin/bash
# The measurements of issue 18 item 3: a host run of every C mechanism at pin same, then the parts'
# prices.  Usage: measure.sh [OUT] (default results/anatomy/prices), from anywhere in the repository.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${1:-results/anatomy/prices}
mkdir -p $OUT
echo "start: $(date -Is) load: $(cut -d' ' -f1-3 /proc/loadavg)"
VMEXEC_RESULTS_DIR=$OUT .venv/bin/python -m bench run --fast --pin same \
  --backends native,ptrace-sysemu,ptrace-sysemu-poke,ptrace-syscall,process-vm-exec,seccomp-trace,seccomp-unotify,seccomp-unotify-sync,seccomp-trap,syscall-user-dispatch
echo "host run done: $(date -Is) load: $(cut -d' ' -f1-3 /proc/loadavg)"
HOST=$(ls -t $OUT/*.json | grep -v prices- | head -1)
.venv/bin/python -m bench prices --runs 30 --host "$HOST" --anatomy results/anatomy --output-dir $OUT --markdown $OUT/composed.md
echo "end: $(date -Is) load: $(cut -d' ' -f1-3 /proc/loadavg)"
