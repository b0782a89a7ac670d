#!/bin/bash
# files/signal/poll/entry parts in this shell's memory cgroup (v1, a non-root one) and in the root memory cgroup
cd /work/main
run() { ./tracers/vmexec price $1 -n $2 -c 0 | python3 -c "import json,sys;d=json.load(sys.stdin);print(f'{d[\"elapsed_ns\"]/d[\"calls\"]:.1f}')"; }
orig=$(sed -n 's/^4:memory://p' /proc/self/cgroup)
for r in 1 2 3 4 5; do
  for where in own root; do
    if [ $where = root ]; then echo $BASHPID > /sys/fs/cgroup/memory/cgroup.procs; else echo $BASHPID > /sys/fs/cgroup/memory$orig/cgroup.procs; fi
    echo "$r $where $(sed -n 's/^4:memory://p' /proc/self/cgroup) files $(run files 200000) signal $(run signal 100000) poll $(run poll 100000) entry $(run entry 1000000)"
  done
done
echo $BASHPID > /sys/fs/cgroup/memory$orig/cgroup.procs
