// SPDX-License-Identifier: MIT
/*
 * Classic PTRACE_SYSCALL: two stops per call.  At entry the tracer turns the
 * call into an invalid one (orig_rax = -1) so the kernel skips it; at exit it
 * writes the emulated result.  This is how strace-style tools (and sandboxes
 * older than SYSEMU) emulate syscalls.
 */
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#include "vmexec.h"

static int step(struct session *s, struct user_regs_struct *regs)
{
	int status;

	if (ptrace(PTRACE_SYSCALL, s->tracee, 0, 0))
		return fail_errno(s, "ptrace(PTRACE_SYSCALL)");
	if (ptrace_wait_stop(s, &status))
		return -1;
	if (!WIFSTOPPED(status) || WSTOPSIG(status) != (SIGTRAP | 0x80))
		return fail(s, "expected a syscall stop, got status 0x%x", status);
	if (ptrace(PTRACE_GETREGS, s->tracee, 0, regs))
		return fail_errno(s, "ptrace(PTRACE_GETREGS)");
	return 0;
}

static int trace_syscall(struct session *s)
{
	struct user_regs_struct regs;

	if (ptrace_first_stop(s, PTRACE_O_TRACESYSGOOD))
		return -1;
	s->t0_ns = now_ns();
	for (;;) {
		int kind;

		if (step(s, &regs))	/* entry */
			return -1;
		kind = loop_call_kind(s, &regs);
		if (kind == CALL_FOREIGN)
			return -1;
		if (kind == CALL_END)
			break;
		regs.orig_rax = -1;
		if (ptrace(PTRACE_SETREGS, s->tracee, 0, &regs))
			return fail_errno(s, "ptrace(PTRACE_SETREGS)");
		if (step(s, &regs))	/* exit */
			return -1;
		regs.rax = s->cfg->inject;
		if (ptrace(PTRACE_SETREGS, s->tracee, 0, &regs))
			return fail_errno(s, "ptrace(PTRACE_SETREGS)");
	}
	return ptrace_end_loop(s);	/* the end call runs for real */
}

const struct backend ptrace_syscall = {
	.name = "ptrace-syscall",
	.description = "PTRACE_SYSCALL entry and exit stops: skip at entry, set the result at exit",
	.unavailable = ptrace_unavailable,
	.tracee_setup = ptrace_traceme_and_stop,
	.trace = trace_syscall,
};
