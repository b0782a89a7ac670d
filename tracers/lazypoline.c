// SPDX-License-Identifier: MIT
/*
 * lazypoline (Jacobs et al., DSN 2024): syscall user dispatch finds each
 * `syscall` at its first execution (SIGSYS), and the handler rewrites that
 * site as zpoline does (`call *%rax` into the trampoline at address 0) and
 * emulates this first call; from then on the site never enters the kernel.
 * Exhaustive (a site nobody rewrote still traps), and after the first call
 * as fast as zpoline.  The selector stays BLOCK for the loop; the hook flips
 * it to ALLOW only around a call it really performs, and the handler around
 * its own mprotect()s; the handler returns through our own sigreturn
 * trampoline, the one allowed region (see sud_common.c).
 *
 * The first call's cost (trap, patch, return) is measured on fresh sites of
 * its own before the loop and reported as the run's "first_call_ns"; the
 * loop's own first call is one trap amortised over the measured calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <ucontext.h>
#include <unistd.h>

#include "compat.h"
#include "vmexec.h"

static struct session *lp_session;

static const char *lazypoline_unavailable(void)
{
	const char *why = sud_unavailable();

	return why ? why : rw_page0_unavailable("lazypoline");
}

static void on_sigsys(int sig, siginfo_t *info, void *context)
{
	greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
	char *site = (char *)info->si_call_addr - 2;
	long arg = regs[REG_RDI];

	(void)sig;
	if (info->si_code == SYS_USER_DISPATCH && info->si_syscall == LOOP_SYSCALL &&
	    (arg == LOOP_ARG || arg == LOOP_END_ARG) && rw_is_site(site)) {
		sud_selector = SYSCALL_DISPATCH_FILTER_ALLOW;
		regs[REG_RAX] = rw_trapped(lp_session, site);
		rw_patch_call_rax(lp_session, site);
		/* After the end call, let the tracee's exit and anything after it run. */
		if (arg != LOOP_END_ARG)
			sud_selector = SYSCALL_DISPATCH_FILTER_BLOCK;
		return;
	}
	fail_async(lp_session, info->si_syscall == SYS_clock_gettime
		   ? "lazypoline: the loop's clock_gettime fell back from the vDSO to a syscall, "
		   : "lazypoline: trapped a call that is not the loop's, syscall ", info->si_syscall);
	sud_let_through(info, regs);
}

static int lazypoline_setup(struct session *s)
{
	lp_session = s;
	rw_init(s, RW_LAZY, &sud_selector);
	if (rw_map_trampoline(s))
		return -1;
	if (sud_install(s, on_sigsys))
		return -1;
	s->first_call_ns = rw_first_call_ns(s);
	if (s->error[0])
		return -1;
	/* Last: from here on every syscall not yet rewritten traps until the end call. */
	sud_selector = SYSCALL_DISPATCH_FILTER_BLOCK;
	return 0;
}

const struct backend lazypoline = {
	.name = "lazypoline",
	.description = "binary rewriting at first use: syscall user dispatch traps a site once, which becomes call *%rax (lazypoline)",
	.unavailable = lazypoline_unavailable,
	.tracee_setup = lazypoline_setup,
	.tracee_done = rw_check,
	.in_process = 1,
	.rewrites_text = 1,
};
