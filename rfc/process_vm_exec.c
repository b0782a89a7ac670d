// SPDX-License-Identifier: MIT
/*
 * A fresh re-implementation of the RFC's process_vm_exec benchmark (patch
 * 4/4, process_vm_exec.c): the tracer runs a loop on a stopped child's
 * address space; each raw syscall ends one process_vm_exec() call, the
 * tracer sets rax and calls again, for a fixed span of CLOCK_MONOTONIC.
 *
 *   process_vm_exec [SECONDS]    prints one JSON line (EXIT_UNAVAILABLE: no such syscall)
 */
#define _GNU_SOURCE
#include <err.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tracee/args.h"
#include "../tracers/process_vm_exec.h"

#define TEST_SYSCALL 123
#define TEST_RET 456
#include "replica.h"
#define STACK_SIZE (64 * 1024)

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5, start, elapsed;
	unsigned long mask = 1ul << (SIGILL - 1) | 1ul << (SIGSEGV - 1);
	struct sigcontext ctx = { 0 };
	long iterations = 0;
	siginfo_t si;
	char *stack;
	int status;
	pid_t pid, self;

	if (process_vm_exec_present() != 1) {
		printf("{\"program\": \"process_vm_exec\", \"available\": false, "
		       "\"reason\": \"ENOSYS: no %s in /proc/kallsyms\"}\n",
		       PROCESS_VM_EXEC_KSYM);
		return EXIT_UNAVAILABLE;
	}
	stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (stack == MAP_FAILED)
		err(1, "mmap");
	self = getpid();
	pid = fork();
	if (pid < 0)
		err(1, "fork");
	if (pid == 0) {
		die_with(self);
		kill(getpid(), SIGSTOP);
		for (;;)
			pause();
	}
	if (waitpid(pid, &status, WUNTRACED) != pid || !WIFSTOPPED(status))
		errx(1, "the child did not stop");

	ctx.rip = (unsigned long)guest;	/* the same address in the child: it is a fork */
	ctx.rsp = (unsigned long)stack + STACK_SIZE - 8;
	ctx.cs = 0x33;

	start = now();
	while ((elapsed = now() - start) < seconds) {
		if (syscall(NR_process_vm_exec, pid, &ctx, 0, &si, &mask, sizeof(mask)))
			err(1, "process_vm_exec");
		if (si.si_signo != SIGSYS || si.si_syscall != TEST_SYSCALL || ctx.rdi != TEST_MARKER)
			errx(1, "unexpected stop: signal %d, syscall %d", si.si_signo, si.si_syscall);
		ctx.rax = TEST_RET;
		iterations++;
	}
	kill(pid, SIGKILL);
	report("process_vm_exec", elapsed, iterations);
	return 0;
}
