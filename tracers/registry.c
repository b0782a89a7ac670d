// SPDX-License-Identifier: MIT
/* Every backend, once.  Adding one: its own file, and a line in each list. */
#include <stddef.h>

#include "vmexec.h"

extern const struct backend native, ptrace_sysemu, ptrace_sysemu_poke, ptrace_syscall;

const struct backend *const backends[] = {
	&native,
	&ptrace_sysemu,
	&ptrace_sysemu_poke,
	&ptrace_syscall,
	NULL,
};
