// SPDX-License-Identifier: MIT
/*
 * What every backend calls back into: the clock, error reporting into the
 * session, CPU pinning, and the regression tests' planted work.  The driver's
 * main file only runs commands.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "vmexec.h"

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int fail(struct session *s, const char *fmt, ...)
{
	va_list ap;

	if (s->error[0])	/* keep the first, root-cause message */
		return -1;
	va_start(ap, fmt);
	vsnprintf(s->error, sizeof(s->error), fmt, ap);
	va_end(ap);
	return -1;
}

int fail_errno(struct session *s, const char *what)
{
	return fail(s, "%s: %s (%s)", what, strerrorname_np(errno) ?: "?", strerror(errno));
}

/* Spins of planted_work(): 0 unless the regression tests asked for a slowdown (-L). */
static uint64_t planted_spins;

static void spin(uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		asm volatile("" : "+r"(i));	/* a loop the compiler must keep */
}

void plant_work_ns(long ns)
{
	uint64_t n = 1 << 16, t0, elapsed;

	if (ns <= 0)
		return;
	/* Calibrate on this machine's clock (exact under icount): spins per ns over >= 20 ms. */
	do {
		n *= 2;
		t0 = now_ns();
		spin(n);
		elapsed = now_ns() - t0;
	} while (elapsed < 20000000ull);
	planted_spins = (uint64_t)((double)ns * n / elapsed + 0.5);
}

void planted_work(void)
{
	spin(planted_spins);
}

int pin_to_cpu(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return 0;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}
