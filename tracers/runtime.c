// SPDX-License-Identifier: MIT
/*
 * What every backend calls back into: the clock, error reporting into the
 * session, CPU pinning.  The driver's main file only runs commands.
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

int pin_to_cpu(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return 0;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}
