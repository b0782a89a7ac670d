/* SPDX-License-Identifier: MIT */
/*
 * What the RFC's two benchmark programs share: the guest loop, the clock and
 * the report.  Each program defines TEST_SYSCALL and TEST_RET (the RFC used
 * different ones: 444/555 and 123/456) before including this.
 */
#ifndef RFC_REPLICA_H
#define RFC_REPLICA_H

#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define TEST_MARKER 0x5ca1ab1eL

/* The loop the tracer intercepts: a raw syscall whose result must be TEST_RET. */
static void guest(void)
{
	for (;;) {
		long ret;

		asm volatile("syscall" : "=a"(ret) : "a"(TEST_SYSCALL), "D"(TEST_MARKER)
			     : "rcx", "r11", "memory");
		if (ret != TEST_RET)
			__builtin_trap();
	}
}

/*
 * In the child, first thing after fork(): die with the parent.  Killed before
 * it has made the child die with it (PTRACE_O_EXITKILL, or never: a stopped
 * child), the parent would leave it pausing for good, its group unknown to
 * any guardian yet (a SIGKILL of `bench rfc` just as the program started).
 */
static void die_with(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)	/* the parent died before the prctl */
		_exit(1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The RFC divides one second by the count of a five-second loop: print that and the truth. */
static void report(const char *program, double elapsed, long iterations)
{
	printf("{\"program\": \"%s\", \"seconds\": %.3f, \"iterations\": %ld, "
	       "\"rfc_printed_ns\": %.1f, \"true_ns_per_iteration\": %.1f, \"available\": true}\n",
	       program, elapsed, iterations, 1e9 / iterations, elapsed * 1e9 / iterations);
}

#endif
