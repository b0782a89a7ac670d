// SPDX-License-Identifier: MIT
/* Every backend, once.  Adding one: its own file, and a line in each list. */
#include <stddef.h>

#include "vmexec.h"

extern const struct backend native, ptrace_sysemu, ptrace_sysemu_poke, ptrace_syscall, process_vm_exec;
extern const struct backend seccomp_trace, seccomp_unotify, seccomp_unotify_sync, seccomp_trap, syscall_user_dispatch;

const struct backend *const backends[] = {
	&native,
	&ptrace_sysemu,
	&ptrace_sysemu_poke,
	&ptrace_syscall,
	&process_vm_exec,
	&seccomp_trace,
	&seccomp_unotify,
	&seccomp_unotify_sync,
	&seccomp_trap,
	&syscall_user_dispatch,
	NULL,
};
