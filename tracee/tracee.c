// SPDX-License-Identifier: MIT
/*
 * The syscall loop, and `vmexec tracee`: the loop run on its own, untraced,
 * as the native baseline (it then checks the real getppid() value).
 *
 * This file is built with -fno-stack-protector: syscall_loop() must not read
 * the stack canary through %fs, which is another process's TLS when the loop
 * runs on a borrowed thread.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "tracee.h"

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

long syscall_loop(struct loop_state *st)
{
	const long n = st->syscalls, expect = st->expect, pages = st->pages;
	volatile char *buf = st->page_buf;
	long matched = 0, first_bad = 0;

	if (st->self_timed)
		st->t0_ns = monotonic_ns();
	LOOP_MARK_BEGIN();
	for (long i = 0; i < n; i++) {
		long ret;

		/*
		 * One line per page, each at another offset: the same offset
		 * in every page would crowd all lines into 1/64 of a
		 * physically indexed cache's sets, and the cost would then
		 * follow where the pages happen to lie in physical memory
		 * (seen: four discrete levels, 25-70 us, across processes).
		 */
		for (long p = 0; p < pages; p++)
			buf[p * PAGE_BYTES + (p % LINES_PER_PAGE) * CACHE_LINE]++;
		ret = raw_syscall1(LOOP_SYSCALL, LOOP_ARG);
		if (ret == expect)
			matched++;
		else if (matched == i)
			first_bad = ret;	/* the first mismatch */
	}
	LOOP_MARK_END();
	if (st->self_timed)
		st->t1_ns = monotonic_ns();
	st->calls = n;
	st->matched = matched;
	st->first_bad = first_bad;
	raw_syscall1(LOOP_SYSCALL, LOOP_END_ARG);
	return n - matched;
}

void syscall_loop_borrowed(struct loop_state *st)
{
	syscall_loop(st);
	/* Nothing to return to: keep reporting the end until the borrower stops. */
	for (;;)
		raw_syscall1(LOOP_SYSCALL, LOOP_END_ARG);
}

/*
 * `vmexec tracee -n N [-e EXPECT] [-k PAGES] [-s]`: the loop in a process of
 * its own.  Untraced it checks the real getppid(); with -s PID it first makes its
 * parent (which must be PID) its tracer and stops, for tracers written outside the driver
 * (python-ptrace).  -k writes PAGES distinct pages between two calls, as the
 * driver's tracees do.
 */
int tracee_main(int argc, char **argv)
{
	struct loop_state st = { .self_timed = 1 };
	int opt, traced = 0, have_expect = 0;
	long tracer = 0;

	while ((opt = getopt(argc, argv, "n:e:k:s:")) != -1) {
		switch (opt) {
		case 'n': st.syscalls = parse_count(optarg, "-n"); break;
		case 'e': st.expect = parse_long(optarg, "-e", LONG_MIN); have_expect = 1; break;
		case 'k': st.pages = parse_count(optarg, "-k"); break;
		case 's': traced = 1; tracer = parse_count(optarg, "-s"); break;
		default: return usage_error("usage: vmexec tracee -n SYSCALLS [-e EXPECT] [-k PAGES] [-s TRACER_PID]");
		}
	}
	if (st.syscalls <= 0 || optind != argc)
		return usage_error("vmexec tracee: -n SYSCALLS (>= 1) is required");
	/* Only a parent that says it will trace: any other (a shell) would leave this process stopped. */
	if (traced && tracer != getppid())
		return usage_error("vmexec tracee: -s names the parent that traces this process, and is not it");
	if (st.pages > MAX_PAGES)
		return usage_error("vmexec tracee: -k is at most 1048576 pages");
	if (st.pages) {
		void *buf = mmap(NULL, st.pages * PAGE_BYTES, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (buf == MAP_FAILED) {
			perror("vmexec tracee: mmap(pages)");
			return EXIT_SETUP;
		}
		st.page_buf = buf;
		/* Fault the pages in now, so the loop measures touching, not faulting. */
		for (long p = 0; p < st.pages; p++)
			st.page_buf[p * PAGE_BYTES] = 1;
	}
	if (!have_expect)
		st.expect = getppid();
	/* A tracer times itself; reading the clock could be a syscall it intercepts. */
	st.self_timed = !traced;
	if (traced && (ptrace(PTRACE_TRACEME, 0, 0, 0) || kill(getpid(), SIGSTOP))) {
		perror("vmexec tracee: ptrace(PTRACE_TRACEME)");
		return EXIT_SETUP;
	}
	syscall_loop(&st);
	printf("{\"calls\": %ld, \"matched\": %ld, \"first_bad\": %ld, \"pages\": %ld, \"elapsed_ns\": %llu}\n",
	       st.calls, st.matched, st.first_bad, st.pages, (unsigned long long)(st.t1_ns - st.t0_ns));
	return st.matched == st.calls ? EXIT_OK : EXIT_FAILED;
}
