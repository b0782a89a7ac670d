// SPDX-License-Identifier: MIT
/*
 * gVisor systrap's syscall patching: SECCOMP_RET_TRAP catches a site's first
 * call (SIGSYS); the handler emulates it and rewrites the site (the load of
 * rax before the `syscall`, and the syscall) into a `call rel32` to a stub
 * near the text, which replays the load and jumps to the hook; from then on
 * the site never enters the kernel.  No page at address 0.  The seccomp
 * filter stays installed: the patched path must, and does, emulate the
 * loop's getppid without a real `syscall` (one would trap again, and
 * rw_trapped() fails the run if a patched site ever does).  A site with no
 * rax load before it (the loop's end call) keeps trapping, as in gVisor.
 *
 * The first call's cost (trap, patch, return) is measured on fresh sites of
 * its own before the loop and reported as the run's "first_call_ns".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <ucontext.h>

#include "compat.h"
#include "vmexec.h"

static struct session *sp_session;

static const char *systrap_patch_unavailable(void)
{
	return seccomp_unavailable(SECCOMP_RET_TRAP, "SECCOMP_RET_TRAP", "3.5");
}

static void on_sigsys(int sig, siginfo_t *info, void *context)
{
	greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
	char *site = (char *)info->si_call_addr - 2;
	long arg = regs[REG_RDI];

	(void)sig;
	if (info->si_code != SYS_SECCOMP || info->si_syscall != LOOP_SYSCALL ||
	    (arg != LOOP_ARG && arg != LOOP_END_ARG) || !rw_is_site(site)) {
		fail_async(sp_session, "systrap-patch: SIGSYS for a call that is not the loop's, syscall ",
			   info->si_syscall);
		regs[REG_RAX] = -ENOSYS;
		return;
	}
	/* The kernel skipped the call; rax is what it returns. */
	regs[REG_RAX] = rw_trapped(sp_session, site);
	rw_patch_window(sp_session, site);
}

static int systrap_patch_setup(struct session *s)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };

	sp_session = s;
	rw_init(s, RW_LAZY, NULL);
	if (sigaction(SIGSYS, &sa, NULL))
		return fail_errno(s, "sigaction(SIGSYS)");
	if (seccomp_filter_getppid(SECCOMP_RET_TRAP, 0) < 0)
		return fail_errno(s, "seccomp(SECCOMP_RET_TRAP filter)");
	s->first_call_ns = rw_first_call_ns(s);
	return s->error[0] ? -1 : 0;
}

const struct backend systrap_patch = {
	.name = "systrap-patch",
	.description = "SECCOMP_RET_TRAP for a site's first call, then the site calls a stub that emulates (gVisor systrap's patching)",
	.unavailable = systrap_patch_unavailable,
	.tracee_setup = systrap_patch_setup,
	.tracee_done = rw_check,
	.in_process = 1,
	.rewrites_text = 1,
};
