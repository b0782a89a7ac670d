// SPDX-License-Identifier: MIT
/*
 * process-vm-exec: the RFC's mechanism (kernel/patches).  The tracee only
 * lends its address space: it stops itself, and the tracer runs the loop
 * on the tracee's mm.  Each loop syscall ends one process_vm_exec() call
 * with a SIGSYS siginfo and the loop's registers; the tracer sets rax and
 * calls again.  The loop's results land in the shared session memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process_vm_exec.h"
#include "vmexec.h"

#define STACK_BYTES (64 * 1024)

/* Signals that end a call with their siginfo instead of going to the tracer. */
#define SIG_BIT(sig) (1ul << ((sig) - 1))
static const unsigned long fault_signals =
	SIG_BIT(SIGSEGV) | SIG_BIT(SIGBUS) | SIG_BIT(SIGILL) | SIG_BIT(SIGFPE) | SIG_BIT(SIGTRAP);

static const char *pvm_unavailable(void)
{
	static char reason[256];
	struct utsname u;
	int present = process_vm_exec_present();

	if (present == 1)
		return NULL;
	uname(&u);
	snprintf(reason, sizeof(reason),
		 "ENOSYS: this kernel (%s) has no process_vm_exec (%s; boot the patched kernel: 'bench vm run')",
		 u.release, present == 0 ? "no " PROCESS_VM_EXEC_KSYM " in /proc/kallsyms"
				    : "/proc/kallsyms is unreadable");
	return reason;
}

/* Tracee: a stack for the borrowed loop, then stop and wait to be killed. */
static int lend_mm(struct session *s)
{
	void *stack = mmap(NULL, STACK_BYTES, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);

	if (stack == MAP_FAILED)
		return fail_errno(s, "mmap(stack)");
	s->backend.words[0] = (long)stack;
	kill(getpid(), SIGSTOP);
	for (;;)
		pause();
}

static long pvm_call(pid_t pid, struct sigcontext *ctx, siginfo_t *info,
			    const unsigned long *mask)
{
	return syscall(NR_process_vm_exec, pid, ctx, 0, info, mask, sizeof(*mask));
}

static int trace_borrowed(struct session *s)
{
	struct sigcontext ctx = { 0 };
	siginfo_t si;
	int status;

	if (waitpid(s->tracee, &status, WUNTRACED) < 0)
		return fail_errno(s, "waitpid");
	if (!WIFSTOPPED(status))
		return fail(s, "tracee did not stop (status 0x%x)", status);

	/* The tracee is a fork: the loop has the same address there. */
	ctx.rip = (unsigned long)syscall_loop_borrowed;
	ctx.rsp = ((s->backend.words[0] + STACK_BYTES) & ~15ul) - 8;	/* as after a call */
	ctx.rdi = (unsigned long)&s->loop;
	ctx.cs = 0x33;		/* __USER_CS */
	ctx.__pad0 = 0x2b;	/* ss = __USER_DS */
	ctx.eflags = 0x202;

	s->t0_ns = now_ns();
	for (;;) {
		if (pvm_call(s->tracee, &ctx, &si, &fault_signals)) {
			if (errno == EINTR)	/* a signal for the tracer: resume */
				continue;
			return fail_errno(s, "process_vm_exec");
		}
		if (si.si_signo != SIGSYS)
			return fail(s, "the borrowed loop got %s at rip 0x%llx",
				    sigabbrev_np(si.si_signo) ?: "a signal", (unsigned long long)ctx.rip);
		if (si.si_syscall == LOOP_SYSCALL && (long)ctx.rdi == LOOP_ARG) {
			ctx.rax = s->cfg->inject;
			continue;
		}
		if (si.si_syscall == LOOP_SYSCALL && (long)ctx.rdi == LOOP_END_ARG)
			break;
		return fail(s, "intercepted a syscall that is not the loop's: nr %d, arg 0x%llx",
			    si.si_syscall, (unsigned long long)ctx.rdi);
	}
	s->t1_ns = now_ns();
	return 0;
}

const struct backend process_vm_exec = {
	.name = "process-vm-exec",
	.description = "process_vm_exec(): the tracer runs the loop on the tracee's mm (the RFC, patched kernel only)",
	.unavailable = pvm_unavailable,
	.tracee_setup = lend_mm,
	.trace = trace_borrowed,
	.tracee_lends_mm = 1,
};
