// SPDX-License-Identifier: MIT
/* Every backend, once.  Adding one: its own file, and one line here. */
#include <stddef.h>

#include "vmexec.h"

#define BACKENDS(X) \
	X(native) \
	X(ptrace_sysemu) \
	X(ptrace_sysemu_poke) \
	X(ptrace_syscall) \
	X(process_vm_exec) \
	X(seccomp_trace) \
	X(seccomp_unotify) \
	X(seccomp_unotify_sync) \
	X(seccomp_trap) \
	X(syscall_user_dispatch) \
	X(zpoline) \
	X(lazypoline) \
	X(systrap_patch)

#define DECLARE(name) extern const struct backend name;
#define ADDRESS(name) &name,
BACKENDS(DECLARE)

const struct backend *const backends[] = { BACKENDS(ADDRESS) NULL };
