#!/bin/sh
# PID 1 of a vmexec-bench guest (see bench/measure/vm.py).  The root file system is
# the host's, read-only over virtio-9p.  The kernel command line passes
# vmexec_out (where to mount the writable share, which holds the command
# script) and vmexec_nonce (makes the console markers unique) as environment
# variables.  The command's status is printed in the end marker, because
# QEMU's exit status cannot carry it.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
# zpoline's and lazypoline's trampoline lives at address 0 (issue 22); the guest is ours to set.
echo 0 >/proc/sys/vm/mmap_min_addr
# /tmp stays the host's (read-only), so a checkout or venv there still works;
# scratch space is /run/tmp (TMPDIR, HOME).
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -m 1777 /run/tmp
mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# The share's mount point may not exist in the read-only root (or be hidden by /run).
mkdir -p "$vmexec_out" 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out "$vmexec_out"

# A twin runs its workload in a child memory cgroup where the host runs in one (vmexec_memcg=v1|v2,
# bench.measure.environment.memory_cgroup_arg): the kernel then charges every accounted allocation, as the
# host's does; in the root cgroup it skips the charge.
case "${vmexec_memcg:-}" in
v1) mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup && mkdir /sys/fs/cgroup/memory &&
    mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory && mkdir /sys/fs/cgroup/memory/vmexec &&
    echo $$ >/sys/fs/cgroup/memory/vmexec/cgroup.procs || echo "vmexec: no child memory cgroup (v1)" >&2 ;;
v2) mount -t cgroup2 cgroup2 /sys/fs/cgroup && echo +memory >/sys/fs/cgroup/cgroup.subtree_control &&
    mkdir /sys/fs/cgroup/vmexec && echo $$ >/sys/fs/cgroup/vmexec/cgroup.procs ||
    echo "vmexec: no child memory cgroup (v2)" >&2 ;;
esac

echo "VMEXEC-BEGIN $vmexec_nonce"
sh "$vmexec_out/.vmexec-command-$vmexec_nonce.sh" </dev/null
status=$?
sync
echo "VMEXEC-END $vmexec_nonce status=$status"

# Give the tty time to drain the marker to the serial port, then reset:
# QEMU runs with -no-reboot, so it exits.  (Should sysrq fail, init exits,
# the kernel panics and panic=-1 resets just the same.)
sleep 1
echo b >/proc/sysrq-trigger
