// SPDX-License-Identifier: MIT
/*
 * `vmexec stop VARIANT -n N [-c CPU]`: what a ptrace stop costs beyond a
 * scheduler round trip (issue 26, item 3), as loops that differ by one part.
 *
 * Every variant is the same PTRACE_SYSEMU loop: a traced child makes N raw
 * getppid calls, each stopped at its entry and skipped (so each returns
 * -ENOSYS, which the child checks), and the tracer, on the child's CPU,
 * waits for each stop and resumes the child with PTRACE_SYSEMU.  No
 * registers are read or written: the loop is the stop itself.  They differ
 * in exactly one thing:
 *
 *   wait       the tracer sleeps in waitpid(); each stop sends it SIGCHLD
 *              (SIG_DFL, so generated and ignored, as for every ptrace
 *              backend of the driver) and wakes it: do_notify_parent_cldstop
 *   nocldstop  the same with SIGCHLD's SA_NOCLDSTOP set in the tracer: the
 *              stop generates no SIGCHLD (the wake-up stays)
 *   yield      the tracer does not sleep: it yields the CPU with
 *              sched_yield() and collects the stop with waitpid(WNOHANG), so
 *              the stop finds no waiter to wake (the tracer is preempted-like,
 *              as seccomp-unotify's tracer is)
 *   getregs    `wait` plus one PTRACE_GETREGS per stop (checked to be the
 *              loop's call): one ptrace request on a stopped tracee
 *              (ptrace_check_attach, wait_task_inactive, the copy)
 *
 * so that wait - nocldstop is one SIGCHLD generation, wait - yield the
 * tracer's sleep and wake-up in waitpid against a yield, getregs - wait one
 * ptrace request.  `bench stop-prices` (bench.measure.stops) runs them
 * interleaved and checks each difference with the tracepoints.
 *
 * Prints one JSON object as `vmexec price` does ("calls", "matched",
 * "elapsed_ns", "switches": the tracer's own context switches per
 * iteration) plus "yields": the tracer's sched_yield() calls per iteration.
 * The timed loop lies between the anatomy plugin's loop markers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmexec.h"

#ifndef PTRACE_SYSEMU
#define PTRACE_SYSEMU 31
#endif
#define WARMUP 200

enum { WAIT, NOCLDSTOP, YIELD, GETREGS };
static const char *const variants[] = { "wait", "nocldstop", "yield", "getregs", NULL };

/* What the child reports through shared memory: its calls and those that came back -ENOSYS (skipped). */
struct child_report {
	long calls, skipped;
};

static void child(long total, struct child_report *rep)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (ptrace(PTRACE_TRACEME, 0, 0, 0))
		_exit(EXIT_SETUP);
	kill(getpid(), SIGSTOP);
	for (long i = 0; i < total; i++) {
		long r = raw_syscall1(LOOP_SYSCALL, LOOP_ARG);

		rep->calls++;
		rep->skipped += r == -ENOSYS;
	}
	raw_syscall1(LOOP_SYSCALL, LOOP_END_ARG);	/* the tracer detaches here */
	_exit(EXIT_OK);
}

static long switches(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_nvcsw + ru.ru_nivcsw;
}

/* Waits for the child's next stop as the variant does; 0, or -1 with error filled. */
static int next_stop(int variant, pid_t pid, long *yields, char *error, size_t size)
{
	int status;
	pid_t got;

	if (variant == YIELD) {
		do {
			sched_yield();
			(*yields)++;
		} while ((got = waitpid(pid, &status, __WALL | WNOHANG)) == 0);
	} else {
		got = waitpid(pid, &status, __WALL);
	}
	if (got != pid) {
		snprintf(error, size, "waitpid: %s", strerror(errno));
		return -1;
	}
	if (!WIFSTOPPED(status) || WSTOPSIG(status) != SIGTRAP) {
		snprintf(error, size, "expected a SYSEMU stop, got status 0x%x", status);
		return -1;
	}
	return 0;
}

static int one_stop(int variant, pid_t pid, long *yields, char *error, size_t size)
{
	struct user_regs_struct regs;

	if (next_stop(variant, pid, yields, error, size))
		return -1;
	if (variant == GETREGS) {
		if (ptrace(PTRACE_GETREGS, pid, 0, &regs)) {
			snprintf(error, size, "PTRACE_GETREGS: %s", strerror(errno));
			return -1;
		}
		if ((long)regs.orig_rax != LOOP_SYSCALL || (long)regs.rdi != LOOP_ARG) {
			snprintf(error, size, "stopped at syscall %lld (arg 0x%llx), not the loop's",
				 (long long)regs.orig_rax, (unsigned long long)regs.rdi);
			return -1;
		}
	}
	if (ptrace(PTRACE_SYSEMU, pid, 0, 0)) {
		snprintf(error, size, "PTRACE_SYSEMU: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int stop_main(int argc, char **argv)
{
	long n = 0, yields = 0, sw0 = 0, sw1 = 0, stops = 0;
	int opt, cpu = 0, variant = -1, status;
	uint64_t t0 = 0, t1 = 0;
	char error[200] = "";
	struct child_report *rep;
	struct sigaction sa = { .sa_handler = SIG_DFL };
	pid_t pid;

	while ((opt = getopt(argc, argv, "n:c:")) != -1) {
		switch (opt) {
		case 'n': n = parse_count(optarg, "-n"); break;
		case 'c': cpu = (int)parse_count(optarg, "-c"); break;
		default: return usage_error("usage: vmexec stop wait|nocldstop|yield|getregs -n N [-c CPU]");
		}
	}
	for (int i = 0; optind == argc - 1 && variants[i]; i++)
		if (!strcmp(argv[optind], variants[i]))
			variant = i;
	if (variant < 0)
		return usage_error("vmexec stop: exactly one VARIANT is required: wait, nocldstop, yield or getregs");
	if (n < 1)
		return usage_error("vmexec stop: -n must be >= 1");
	if (pin_to_cpu(cpu)) {	/* inherited by the child: one CPU for both */
		fprintf(stderr, "vmexec: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
		return EXIT_USAGE;
	}
	alarm(DEFAULT_TIMEOUT_S);
	sa.sa_flags = variant == NOCLDSTOP ? SA_NOCLDSTOP : 0;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGCHLD, &sa, NULL)) {
		perror("vmexec: sigaction");
		return EXIT_FAILED;
	}
	rep = mmap(NULL, sizeof(*rep), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (rep == MAP_FAILED) {
		perror("vmexec: mmap");
		return EXIT_FAILED;
	}
	pid = fork();
	if (pid < 0) {
		perror("vmexec: fork");
		return EXIT_FAILED;
	}
	if (pid == 0)
		child(WARMUP + n, rep);

	if (waitpid(pid, &status, __WALL) != pid || !WIFSTOPPED(status) || WSTOPSIG(status) != SIGSTOP) {
		snprintf(error, sizeof(error), "the child did not stop for its tracer (status 0x%x)", status);
		goto out;
	}
	if (ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_EXITKILL) || ptrace(PTRACE_SYSEMU, pid, 0, 0)) {
		snprintf(error, sizeof(error), "ptrace: %s", strerror(errno));
		goto out;
	}
	for (long w = 0; w < WARMUP; w++)
		if (one_stop(variant, pid, &yields, error, sizeof(error)))
			goto out;
	yields = 0;
	sw0 = switches();
	t0 = now_ns();
	LOOP_MARK_BEGIN();
	for (; stops < n; stops++)
		if (one_stop(variant, pid, &yields, error, sizeof(error)))
			break;
	LOOP_MARK_END();
	t1 = now_ns();
	sw1 = switches();
	if (error[0])
		goto out;
	/* The end call: detach, and the child exits by itself. */
	if (next_stop(variant == YIELD ? WAIT : variant, pid, &yields, error, sizeof(error)))
		goto out;
	if (ptrace(PTRACE_DETACH, pid, 0, 0)) {
		snprintf(error, sizeof(error), "PTRACE_DETACH: %s", strerror(errno));
		goto out;
	}
	if (waitpid(pid, &status, __WALL) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		snprintf(error, sizeof(error), "the child ended badly (status 0x%x)", status);
	else if (rep->calls != WARMUP + n || rep->skipped != rep->calls)
		snprintf(error, sizeof(error), "the child made %ld calls, %ld of them skipped, not %ld",
			 rep->calls, rep->skipped, WARMUP + n);
out:
	if (error[0]) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, __WALL);
	}
	printf("{\"stop\": \"%s\", \"ok\": %s, \"calls\": %ld, \"matched\": %ld, \"cpu\": %d, \"elapsed_ns\": %llu, "
	       "\"switches\": %.3f, \"yields\": %.3f, \"error\": \"%s\"}\n",
	       variants[variant], error[0] ? "false" : "true", n, error[0] ? 0 : stops, cpu,
	       (unsigned long long)(t1 - t0), error[0] ? 0.0 : (double)(sw1 - sw0) / n,
	       (double)yields / n, error);
	return error[0] ? EXIT_FAILED : EXIT_OK;
}
