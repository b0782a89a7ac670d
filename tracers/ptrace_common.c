// SPDX-License-Identifier: MIT
/* Helpers shared by the ptrace-based backends. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmexec.h"

/* Tracee side: become traced by the parent and stop before the loop. */
int ptrace_traceme_and_stop(struct session *s)
{
	if (ptrace(PTRACE_TRACEME, 0, 0, 0))
		return fail_errno(s, "ptrace(PTRACE_TRACEME)");
	/* kill() is one plain syscall; raise() would make more after the stop. */
	kill(getpid(), SIGSTOP);
	return 0;
}

/* Wait for the tracee's next stop; an exit or a kill is an error. */
int ptrace_wait_stop(struct session *s, int *status)
{
	if (waitpid(s->tracee, status, __WALL) < 0)
		return fail_errno(s, "waitpid");
	if (WIFEXITED(*status))
		return fail(s, "tracee exited with status %d during the loop", WEXITSTATUS(*status));
	if (WIFSIGNALED(*status))
		return fail(s, "tracee killed by signal SIG%s during the loop",
			    sigabbrev_np(WTERMSIG(*status)) ?: "?");
	if (WIFSTOPPED(*status) && WSTOPSIG(*status) != SIGTRAP &&
	    WSTOPSIG(*status) != (SIGTRAP | 0x80) && WSTOPSIG(*status) != SIGSTOP)
		return fail(s, "tracee got signal SIG%s during the loop",
			    sigabbrev_np(WSTOPSIG(*status)) ?: "?");
	return 0;
}

/* Tracer side: wait for the tracee's SIGSTOP and set the ptrace options. */
int ptrace_first_stop(struct session *s, long options)
{
	int status;

	if (ptrace_wait_stop(s, &status))
		return -1;
	if (!WIFSTOPPED(status) || WSTOPSIG(status) != SIGSTOP)
		return fail(s, "tracee stopped with status 0x%x, not SIGSTOP", status);
	if (ptrace(PTRACE_SETOPTIONS, s->tracee, 0, options | PTRACE_O_EXITKILL))
		return fail_errno(s, "ptrace(PTRACE_SETOPTIONS)");
	return 0;
}

/*
 * At the tracee's end call: stamp the loop's end and detach, so the tracee
 * runs on untraced and exits by itself.
 */
int ptrace_end_loop(struct session *s)
{
	s->t1_ns = now_ns();
	if (ptrace(PTRACE_DETACH, s->tracee, 0, 0))
		return fail_errno(s, "ptrace(PTRACE_DETACH)");
	return 0;
}

/* Read the stopped tracee's registers and classify its syscall (CALL_FOREIGN: s->error is set). */
int ptrace_read_call(struct session *s, struct user_regs_struct *regs)
{
	if (ptrace(PTRACE_GETREGS, s->tracee, 0, regs)) {
		fail_errno(s, "ptrace(PTRACE_GETREGS)");
		return CALL_FOREIGN;
	}
	return loop_call_kind(s, regs);
}

/* Is this syscall one of the loop's measured calls, its end call, or neither? */
int loop_call_kind(struct session *s, const struct user_regs_struct *regs)
{
	if ((long)regs->orig_rax == LOOP_SYSCALL && (long)regs->rdi == LOOP_ARG) {
		planted_work();
		return CALL_MEASURED;
	}
	if ((long)regs->orig_rax == LOOP_SYSCALL && (long)regs->rdi == LOOP_END_ARG)
		return CALL_END;
	fail(s, "intercepted a syscall that is not the loop's: nr %lld, arg 0x%llx",
	     (long long)regs->orig_rax, (unsigned long long)regs->rdi);
	return CALL_FOREIGN;
}

/* Can this process trace a child?  Tried for real: Yama or a seccomp policy may say no. */
const char *ptrace_unavailable(void)
{
	static char reason[128];
	int status;
	pid_t pid = fork();

	if (pid == 0)
		_exit(ptrace(PTRACE_TRACEME, 0, 0, 0) ? errno : 0);
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return "fork failed while probing ptrace";
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return NULL;
	snprintf(reason, sizeof(reason), "%s: ptrace(PTRACE_TRACEME) is denied here (Yama ptrace_scope or a seccomp policy)",
		 WIFEXITED(status) ? strerrorname_np(WEXITSTATUS(status)) ?: "?" : "crashed");
	return reason;
}
