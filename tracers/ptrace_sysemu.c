// SPDX-License-Identifier: MIT
/*
 * PTRACE_SYSEMU: the baseline of the RFC's ">5x" claim, and how UML and
 * gVisor's ptrace platform intercept syscalls.  Per syscall it does what the
 * RFC's ptrace_vm_exec.c does: wait for the stop, PTRACE_GETREGS, check the
 * call, set rax, PTRACE_SETREGS, PTRACE_SYSEMU.
 *
 * ptrace-sysemu-poke is the lean variant: PTRACE_POKEUSER of rax alone, and
 * the registers are read only to confirm the loop's end call.
 */
#include <stddef.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#include "vmexec.h"

#ifndef PTRACE_SYSEMU
#define PTRACE_SYSEMU 31	/* x86 uapi; glibc's enum has it, kept for older headers */
#endif

static int resume(struct session *s)
{
	if (ptrace(PTRACE_SYSEMU, s->tracee, 0, 0))
		return fail_errno(s, "ptrace(PTRACE_SYSEMU)");
	return 0;
}

static int wait_syscall_stop(struct session *s)
{
	int status;

	if (ptrace_wait_stop(s, &status))
		return -1;
	if (!WIFSTOPPED(status) || WSTOPSIG(status) != SIGTRAP)
		return fail(s, "expected a SYSEMU stop, got status 0x%x", status);
	return 0;
}

static int trace_getregs(struct session *s)
{
	struct user_regs_struct regs;

	if (ptrace_first_stop(s, 0))
		return -1;
	s->t0_ns = now_ns();
	if (resume(s))
		return -1;
	for (;;) {
		int kind;

		if (wait_syscall_stop(s))
			return -1;
		kind = ptrace_read_call(s, &regs);
		if (kind == CALL_FOREIGN)
			return -1;
		if (kind == CALL_END)
			break;
		regs.rax = s->cfg->inject;
		if (ptrace(PTRACE_SETREGS, s->tracee, 0, &regs))
			return fail_errno(s, "ptrace(PTRACE_SETREGS)");
		if (resume(s))
			return -1;
	}
	return ptrace_end_loop(s);	/* SYSEMU skips the end call */
}

static int trace_poke(struct session *s)
{
	struct user_regs_struct regs;
	const size_t rax = offsetof(struct user_regs_struct, rax);

	if (ptrace_first_stop(s, 0))
		return -1;
	s->t0_ns = now_ns();
	if (resume(s))
		return -1;
	for (long i = 0; i < s->cfg->syscalls; i++) {
		if (wait_syscall_stop(s))
			return -1;
		if (ptrace(PTRACE_POKEUSER, s->tracee, rax, s->cfg->inject))
			return fail_errno(s, "ptrace(PTRACE_POKEUSER)");
		if (resume(s))
			return -1;
	}
	if (wait_syscall_stop(s))
		return -1;
	if (ptrace_read_call(s, &regs) != CALL_END)
		return fail(s, "the tracee made more syscalls than the loop's");
	return ptrace_end_loop(s);
}

const struct backend ptrace_sysemu = {
	.name = "ptrace-sysemu",
	.description = "PTRACE_SYSEMU with GETREGS/SETREGS per call (the RFC's baseline, UML, gVisor ptrace)",
	.unavailable = ptrace_unavailable,
	.tracee_setup = ptrace_traceme_and_stop,
	.trace = trace_getregs,
};

const struct backend ptrace_sysemu_poke = {
	.name = "ptrace-sysemu-poke",
	.description = "PTRACE_SYSEMU with one POKEUSER of rax per call",
	.unavailable = ptrace_unavailable,
	.tracee_setup = ptrace_traceme_and_stop,
	.trace = trace_poke,
};
