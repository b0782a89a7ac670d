// SPDX-License-Identifier: MIT
/*
 * A fresh re-implementation of the RFC's baseline benchmark (patch 4/4,
 * ptrace_vm_exec.c): a child that stops itself (traced from the start:
 * PTRACE_TRACEME rather than the RFC's PTRACE_ATTACH) is made to loop on a raw syscall that
 * the tracer emulates with PTRACE_SYSEMU, GETREGS/SETREGS per call, for a
 * fixed span of CLOCK_MONOTONIC (one clock_gettime per iteration).
 *
 *   ptrace_vm_exec [SECONDS]     prints one JSON line
 */
#define _GNU_SOURCE
#include <err.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEST_SYSCALL 444
#define TEST_RET 555
#include "replica.h"

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5, start, elapsed;
	struct user_regs_struct regs;
	long iterations = 0;
	int status;
	pid_t self = getpid(), pid = fork();

	if (pid < 0)
		err(1, "fork");
	if (pid == 0) {
		die_with(self);
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		kill(getpid(), SIGSTOP);
		for (;;)
			pause();
	}
	if (waitpid(pid, &status, 0) != pid || !WIFSTOPPED(status))
		errx(1, "the child did not stop");
	if (ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_EXITKILL) || ptrace(PTRACE_GETREGS, pid, 0, &regs))
		err(1, "ptrace setup");
	regs.rip = (unsigned long)guest;
	regs.rsp = ((regs.rsp - 256) & ~15ul) - 8;	/* below the red zone, as after a call */

	start = now();
	while ((elapsed = now() - start) < seconds) {
		if (ptrace(PTRACE_SETREGS, pid, 0, &regs) || ptrace(PTRACE_SYSEMU, pid, 0, 0))
			err(1, "PTRACE_SETREGS/PTRACE_SYSEMU");
		if (waitpid(pid, &status, 0) != pid || !WIFSTOPPED(status) || WSTOPSIG(status) != SIGTRAP)
			errx(1, "expected a SYSEMU stop, got status 0x%x", status);
		if (ptrace(PTRACE_GETREGS, pid, 0, &regs))
			err(1, "PTRACE_GETREGS");
		if (regs.orig_rax != TEST_SYSCALL || regs.rdi != TEST_MARKER)
			errx(1, "unexpected syscall %lld (arg 0x%llx)", regs.orig_rax, regs.rdi);
		regs.rax = TEST_RET;
		iterations++;
	}
	kill(pid, SIGKILL);
	report("ptrace_vm_exec", elapsed, iterations);
	return 0;
}
