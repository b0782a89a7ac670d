// SPDX-License-Identifier: MIT
/*
 * SECCOMP_RET_TRACE: a filter in the tracee sends only getppid to the ptrace
 * tracer (PTRACE_EVENT_SECCOMP stop), every other syscall runs untraced.  The
 * tracer skips the call (orig_rax = -1) and sets the result.  One stop per
 * call, like SYSEMU, but only for the filtered syscalls: how seccomp-aided
 * tracers (strace --seccomp-bpf, Chromium's and Firejail's tools) work.
 */
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#include "compat.h"
#include "vmexec.h"

static const char *seccomp_trace_unavailable(void)
{
	return ptrace_unavailable() ?: seccomp_unavailable(SECCOMP_RET_TRACE, "SECCOMP_RET_TRACE", "3.5");
}

static int seccomp_trace_setup(struct session *s)
{
	/* Filter before the stop: the tracer must see the loop's first call. */
	if (seccomp_filter_getppid(SECCOMP_RET_TRACE, 0) < 0)
		return fail_errno(s, "seccomp(SECCOMP_RET_TRACE filter)");
	return ptrace_traceme_and_stop(s);
}

static int trace_seccomp(struct session *s)
{
	struct user_regs_struct regs;
	int status;

	if (ptrace_first_stop(s, PTRACE_O_TRACESECCOMP))
		return -1;
	s->t0_ns = now_ns();
	for (;;) {
		int kind;

		if (ptrace(PTRACE_CONT, s->tracee, 0, 0))
			return fail_errno(s, "ptrace(PTRACE_CONT)");
		if (ptrace_wait_stop(s, &status))
			return -1;
		if (status >> 8 != (SIGTRAP | PTRACE_EVENT_SECCOMP << 8))
			return fail(s, "expected a seccomp stop, got status 0x%x", status);
		kind = ptrace_read_call(s, &regs);
		if (kind == CALL_FOREIGN)
			return -1;
		if (kind == CALL_END)
			break;
		regs.orig_rax = -1;	/* skip the call; rax is its result */
		regs.rax = s->cfg->inject;
		if (ptrace(PTRACE_SETREGS, s->tracee, 0, &regs))
			return fail_errno(s, "ptrace(PTRACE_SETREGS)");
	}
	return ptrace_end_loop(s);	/* the end call runs for real */
}

const struct backend seccomp_trace = {
	.name = "seccomp-trace",
	.description = "SECCOMP_RET_TRACE for getppid only: one PTRACE_EVENT_SECCOMP stop per call, skip and set rax",
	.unavailable = seccomp_trace_unavailable,
	.tracee_setup = seccomp_trace_setup,
	.trace = trace_seccomp,
};
