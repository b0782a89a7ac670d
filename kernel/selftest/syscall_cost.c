// SPDX-License-Identifier: MIT
/*
 * What a task that never calls process_vm_exec pays: guest instructions per
 * getpid.  Run in an icount guest (QEMU -icount shift=0: one instruction =
 * 1 ns of CLOCK_MONOTONIC), where the clock counts instructions, so
 *
 *   (time of N getpid loops - time of N empty loops) / N
 *
 * is the instructions of one getpid system call, kernel entry and exit
 * included.  Prints the minimum over ROUNDS rounds (interrupts only add).
 *
 *   gcc -O2 -o syscall_cost kernel/selftest/syscall_cost.c
 *   python -m bench vm shell --timing icount --kernel-variant unpatched -- ./syscall_cost
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define N 200000
#define ROUNDS 5

static long long now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static long long loop(int with_syscall)
{
	long long t = now();

	for (int i = 0; i < N; i++) {
		long ret = 39;	/* getpid */

		if (with_syscall)
			asm volatile("syscall" : "+a"(ret) : : "rcx", "r11", "memory");
		else
			asm volatile("" : "+a"(ret) : : "rcx", "r11", "memory");
	}
	return now() - t;
}

int main(void)
{
	double best = 1e30;

	for (int r = 0; r < ROUNDS; r++) {
		long long empty = loop(0), full = loop(1);
		double per = (double)(full - empty) / N;

		printf("round %d: %.2f ns per getpid\n", r, per);
		if (per < best)
			best = per;
	}
	printf("getpid: %.2f (minimum of %d rounds of %d calls)\n", best, ROUNDS, N);
	return 0;
}
