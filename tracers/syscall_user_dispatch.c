// SPDX-License-Identifier: MIT
/*
 * Syscall user dispatch (Linux 5.11), in-process: while a selector byte in
 * our memory says BLOCK, every syscall made outside one allowed code region
 * raises SIGSYS instead of running, whatever its number; the handler emulates
 * it.  Made for Wine (Windows syscalls issued straight from application
 * code); like seccomp-trap, a signal delivery and an rt_sigreturn per call.
 *
 * The handler's own rt_sigreturn is a syscall too, and x86-64 has no vDSO
 * sigreturn the kernel would exempt.  Flipping the selector to ALLOW in the
 * handler cannot work here: it would have to go back to BLOCK after the
 * sigreturn, in the loop's code.  So the handler returns through our own
 * sigreturn trampoline, and that trampoline is the allowed region: the
 * selector stays BLOCK for the whole loop and nothing else is exempt.
 * (glibc's sigaction() always installs its own restorer, hence the raw
 * rt_sigaction below.)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <ucontext.h>
#include <unistd.h>

#include "compat.h"
#include "vmexec.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/*
 * The region is checked against the address after the `syscall`
 * instruction, so the ud2 (never reached: rt_sigreturn does not return)
 * also keeps that address inside it.
 */
asm(".pushsection .text\n"
    ".type sud_restorer, @function\n"
    "sud_restorer:\n"
    "	mov $" STR(SYS_rt_sigreturn) ", %eax\n"
    "	syscall\n"
    "	ud2\n"
    "sud_restorer_end:\n"
    ".popsection\n");
extern const char sud_restorer[], sud_restorer_end[];

/* The kernel's struct sigaction for rt_sigaction (not glibc's). */
struct kernel_sigaction {
	void (*handler)(int, siginfo_t *, void *);
	unsigned long flags;
	const void *restorer;
	uint64_t mask;
};

/* Per tracee: set before dispatch is switched on, read by the handler. */
static volatile char selector = SYSCALL_DISPATCH_FILTER_ALLOW;
static struct session *sud_session;
static long sud_inject;

static int try_dispatch(long unused)
{
	(void)unused;
	return prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0, &selector);
}

static const char *sud_unavailable(void)
{
	int err = probe_in_child(try_dispatch, 0);

	if (!err)
		return NULL;
	return unavailable_reason(err, err == EINVAL ? "PR_SET_SYSCALL_USER_DISPATCH needs Linux 5.11+"
				  : "prctl(PR_SET_SYSCALL_USER_DISPATCH) failed");
}

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
			selector = SYSCALL_DISPATCH_FILTER_ALLOW;
		return;
	}
	fail_async(sud_session, info->si_syscall == SYS_clock_gettime
		   ? "syscall-user-dispatch: the loop's clock_gettime fell back from the vDSO to a syscall, "
		   : "syscall-user-dispatch: trapped a call that is not the loop's, syscall ",
		   info->si_syscall);
	if (info->si_code != SYS_USER_DISPATCH)
		return;
	/*
	 * Let it through: stop dispatching and run the call again (the kernel
	 * rolled rax back to the syscall number; `syscall` is 2 bytes).
	 */
	selector = SYSCALL_DISPATCH_FILTER_ALLOW;
	regs[REG_RIP] -= 2;
}

static int sud_setup(struct session *s)
{
	struct kernel_sigaction sa = {
		.handler = on_sigsys,
		.flags = SA_SIGINFO | SA_RESTORER,
		.restorer = sud_restorer,
	};

	sud_session = s;
	sud_inject = s->cfg->inject;
	if (syscall(SYS_rt_sigaction, SIGSYS, &sa, NULL, sizeof(sa.mask)))
		return fail_errno(s, "rt_sigaction(SIGSYS)");
	if (prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, (unsigned long)sud_restorer,
		  (unsigned long)(sud_restorer_end - sud_restorer), &selector))
		return fail_errno(s, "prctl(PR_SET_SYSCALL_USER_DISPATCH)");
	/* Last: from here on every syscall traps until the end call. */
	selector = SYSCALL_DISPATCH_FILTER_BLOCK;
	return 0;
}

const struct backend syscall_user_dispatch = {
	.name = "syscall-user-dispatch",
	.description = "PR_SET_SYSCALL_USER_DISPATCH, in-process: a SIGSYS handler emulates each call (Wine)",
	.unavailable = sud_unavailable,
	.tracee_setup = sud_setup,
	.in_process = 1,
};
