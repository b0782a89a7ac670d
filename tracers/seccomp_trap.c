// SPDX-License-Identifier: MIT
/*
 * SECCOMP_RET_TRAP, in-process: the filter turns getppid into a SIGSYS whose
 * handler emulates the call by writing the result into the saved rax.  No
 * second process, but a signal delivery and an rt_sigreturn per call: the
 * model of gVisor's systrap platform.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <ucontext.h>

#include "compat.h"
#include "vmexec.h"

/* Read by the handler; set once per tracee before the filter exists. */
static struct session *trap_session;
static long trap_inject;

static const char *seccomp_trap_unavailable(void)
{
	return seccomp_unavailable(SECCOMP_RET_TRAP, "SECCOMP_RET_TRAP", "3.5");
}

static void on_sigsys(int sig, siginfo_t *info, void *context)
{
	greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
	long arg = regs[REG_RDI];

	(void)sig;
	if (info->si_code != SYS_SECCOMP || info->si_syscall != LOOP_SYSCALL ||
	    (arg != LOOP_ARG && arg != LOOP_END_ARG)) {
		fail_async(trap_session, "seccomp-trap: SIGSYS for a call that is not the loop's, syscall ",
			   info->si_syscall);
		regs[REG_RAX] = -ENOSYS;
		return;
	}
	/* The kernel skipped the call; rax is what it returns (the end call's too). */
	regs[REG_RAX] = trap_inject;
}

static int seccomp_trap_setup(struct session *s)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };

	trap_session = s;
	trap_inject = s->cfg->inject;
	if (sigaction(SIGSYS, &sa, NULL))
		return fail_errno(s, "sigaction(SIGSYS)");
	if (seccomp_filter_getppid(SECCOMP_RET_TRAP, 0) < 0)
		return fail_errno(s, "seccomp(SECCOMP_RET_TRAP filter)");
	return 0;
}

const struct backend seccomp_trap = {
	.name = "seccomp-trap",
	.description = "SECCOMP_RET_TRAP, in-process: a SIGSYS handler emulates each call (gVisor systrap)",
	.unavailable = seccomp_trap_unavailable,
	.tracee_setup = seccomp_trap_setup,
	.in_process = 1,
};
