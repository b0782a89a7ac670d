/* SPDX-License-Identifier: MIT */
/*
 * Kernel ABI constants that userspace headers older than the running kernel
 * may lack (Debian 12 ships 6.1 uapi headers).  Values are the uapi ones;
 * each is defined only when the headers did not.
 */
#ifndef VMEXEC_COMPAT_H
#define VMEXEC_COMPAT_H

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/seccomp.h>

/* SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER, NOTIF_RECV/SEND: Linux 5.0. */
#ifndef SECCOMP_RET_USER_NOTIF
#define SECCOMP_RET_USER_NOTIF 0x7fc00000U
#endif
#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif

/* SECCOMP_IOCTL_NOTIF_SET_FLAGS and SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: Linux 6.6. */
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS _IOW('!', 4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

/* Syscall user dispatch: Linux 5.11. */
#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_OFF 0
#define PR_SYS_DISPATCH_ON 1
#define SYSCALL_DISPATCH_FILTER_ALLOW 0
#define SYSCALL_DISPATCH_FILTER_BLOCK 1
#endif
#ifndef SYS_USER_DISPATCH
#define SYS_USER_DISPATCH 2	/* si_code of its SIGSYS */
#endif

/* sa_flags bit for our own signal return trampoline: x86 uapi, always there. */
#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

/* si_code of a SECCOMP_RET_TRAP SIGSYS: Linux 3.5. */
#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1
#endif

#endif
