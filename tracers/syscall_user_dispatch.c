// SPDX-License-Identifier: MIT
/*
 * Syscall user dispatch (Linux 5.11), in-process: while a selector byte in
 * our memory says BLOCK, every syscall made outside one allowed code region
 * raises SIGSYS instead of running, whatever its number; the handler emulates
 * it.  Made for Wine (Windows syscalls issued straight from application
 * code); like seccomp-trap, a signal delivery and an rt_sigreturn per call.
 *
 * The handler returns through our own sigreturn trampoline, the one allowed
 * region, so the selector stays BLOCK for the whole loop (sud_common.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <ucontext.h>
#include <unistd.h>

#include "compat.h"
#include "vmexec.h"

/* Per tracee: set before dispatch is switched on, read by the handler. */
static struct session *sud_session;
static long sud_inject;

static void on_sigsys(int sig, siginfo_t *info, void *context)
{
	greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
	long arg = regs[REG_RDI];

	(void)sig;
	if (info->si_code == SYS_USER_DISPATCH && info->si_syscall == LOOP_SYSCALL &&
	    (arg == LOOP_ARG || arg == LOOP_END_ARG)) {
		regs[REG_RAX] = sud_inject;
		/* The loop is over: let the tracee's exit and anything after it run. */
		if (arg == LOOP_END_ARG)
			sud_selector = SYSCALL_DISPATCH_FILTER_ALLOW;
		return;
	}
	fail_async(sud_session, info->si_syscall == SYS_clock_gettime
		   ? "syscall-user-dispatch: the loop's clock_gettime fell back from the vDSO to a syscall, "
		   : "syscall-user-dispatch: trapped a call that is not the loop's, syscall ",
		   info->si_syscall);
	sud_let_through(info, regs);
}

static int sud_setup(struct session *s)
{
	sud_session = s;
	sud_inject = s->cfg->inject;
	if (sud_install(s, on_sigsys))
		return -1;
	/* Last: from here on every syscall traps until the end call. */
	sud_selector = SYSCALL_DISPATCH_FILTER_BLOCK;
	return 0;
}

const struct backend syscall_user_dispatch = {
	.name = "syscall-user-dispatch",
	.description = "PR_SET_SYSCALL_USER_DISPATCH, in-process: a SIGSYS handler emulates each call (Wine)",
	.unavailable = sud_unavailable,
	.tracee_setup = sud_setup,
	.in_process = 1,
};
