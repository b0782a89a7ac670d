// SPDX-License-Identifier: MIT
/*
 * Syscall user dispatch (Linux 5.11), shared by syscall-user-dispatch and
 * lazypoline: the selector byte, the probe, and the installation of a SIGSYS
 * handler that returns through our own sigreturn trampoline.
 *
 * The handler's own rt_sigreturn is a syscall too, and x86-64 has no vDSO
 * sigreturn the kernel would exempt.  Flipping the selector to ALLOW in the
 * handler cannot work: it would have to go back to BLOCK after the
 * sigreturn, in the loop's code.  So the handler returns through
 * sud_restorer, and that trampoline is the one allowed region: the selector
 * can stay BLOCK for the whole loop and nothing else is exempt.  (glibc's
 * sigaction() always installs its own restorer, hence the raw rt_sigaction.)
 * One backend runs in a tracee, so one selector serves both.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
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

volatile char sud_selector = SYSCALL_DISPATCH_FILTER_ALLOW;

static int try_dispatch(long unused)
{
	(void)unused;
	return prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0, &sud_selector);
}

const char *sud_unavailable(void)
{
	int err = probe_in_child(try_dispatch, 0);

	if (!err)
		return NULL;
	return unavailable_reason(err, err == EINVAL ? "PR_SET_SYSCALL_USER_DISPATCH needs Linux 5.11+"
				  : "prctl(PR_SET_SYSCALL_USER_DISPATCH) failed");
}

int sud_install(struct session *s, void (*handler)(int, siginfo_t *, void *))
{
	struct kernel_sigaction sa = {
		.handler = handler,
		.flags = SA_SIGINFO | SA_RESTORER,
		.restorer = sud_restorer,
	};

	if (syscall(SYS_rt_sigaction, SIGSYS, &sa, NULL, sizeof(sa.mask)))
		return fail_errno(s, "rt_sigaction(SIGSYS)");
	if (prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, (unsigned long)sud_restorer,
		  (unsigned long)(sud_restorer_end - sud_restorer), &sud_selector))
		return fail_errno(s, "prctl(PR_SET_SYSCALL_USER_DISPATCH)");
	return 0;
}

void sud_let_through(const siginfo_t *info, greg_t *regs)
{
	if (info->si_code != SYS_USER_DISPATCH)
		return;
	/*
	 * Stop dispatching and run the call again (the kernel rolled rax back
	 * to the syscall number; `syscall` is 2 bytes).
	 */
	sud_selector = SYSCALL_DISPATCH_FILTER_ALLOW;
	regs[REG_RIP] -= 2;
}
