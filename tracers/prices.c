// SPDX-License-Identifier: MIT
/*
 * `vmexec price PART -n N [-k PAGES] [-c CPU]`: micro-benchmarks of the parts
 * the interception mechanisms are made of (issue 18, item 3), each measuring
 * one part on its own, not a mechanism:
 *
 *   entry      a syscall the kernel refuses at once (number 1023: -ENOSYS),
 *              so one kernel entry and exit and almost nothing else
 *   signal     tgkill(self, SIGUSR1) to an empty handler, and rt_sigreturn:
 *              the signal-frame kernel code of the in-process SIGSYS
 *              mechanisms, with no scheduler and no seccomp
 *   threads    two threads of one process on one CPU hand a futex word back
 *              and forth: one scheduler round trip (two context switches)
 *              per iteration, one mm
 *   processes  the same between two processes (a MAP_SHARED futex word):
 *              the same round trip with an address-space switch each way
 *   files      eventfd2() and close(): a file made and released (slab, fd
 *              table, anon inode, the close's task work), ordinary kernel
 *              code with no scheduler, no FPU and no address-space switch,
 *              so that a price per instruction is measured on a path of
 *              thousands of them, not only inferred beside a round trip
 *   poll       poll() of POLL_FDS entries (one eventfd, not ready), timeout
 *              0: the same, but a short loop run many times
 *   dup        dup() and close() of one eventfd: the file table without
 *              making or freeing a file (a probe beside files, not fitted)
 *   ret-thunk  a call to a function that returns through a copy of SRSO's
 *              Safe RET thunk (call; lea 8(%rsp),%rsp; ret): its return is
 *              mispredicted on purpose, as every return of a kernel that
 *              runs the thunk is (the AMD EPYC VM's; issue 26)
 *   ret-plain  the same five instructions with every return predicted:
 *              ret-thunk - ret-plain is the price of one such return
 *              beyond its instructions, measured rather than fitted (on
 *              the kernel's paths returns are 2.3-3.0% of the instructions
 *              everywhere, so a fit cannot tell the two prices apart)
 *
 * -k PAGES: in threads/processes, the passive side (the tracee's role) writes
 * PAGES distinct pages of its own before handing back, as the syscall loop
 * does between two calls.  They live in the same driver as the mechanisms so
 * that they are built with the same compiler and flags, and so that the
 * anatomy plugin counts their path length between the same loop markers in
 * the icount guest: a part's host time per iteration is priced against the
 * instructions, kernel entries and CR3 writes the plugin counts for it.
 *
 * Prints one JSON object like `vmexec run` ("calls", "matched",
 * "elapsed_ns") plus "switches": the timed thread's own context switches
 * (voluntary and involuntary) per iteration: 1 for a round trip (it leaves the
 * CPU once and comes back), 0 for entry and signal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmexec.h"

#define ENOSYS_NR 1023		/* above every x86-64 syscall number, below the x32 bit */
#define WARMUP 200
#define POLL_FDS 64

static const char *const parts[] = { "entry", "signal", "threads", "processes", "files", "poll", "ret-thunk",
				     "ret-plain", "dup", NULL };
enum { ENTRY, SIGNAL, THREADS, PROCESSES, FILES, POLL, RET_THUNK, RET_PLAIN, DUP };
#define PINGPONG(part) ((part) == THREADS || (part) == PROCESSES)

/* The word two sides hand back and forth: 0 the timed side's turn, 1 the other's, 2 stop. */
struct pingpong {
	int turn;
	long served;		/* iterations the passive side completed */
	long pages;
	char *buf;
};

static long futex(int *word, int op, int val)
{
	/* Not FUTEX_PRIVATE_FLAG: threads and processes take the same kernel path but for the mm. */
	return syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

static void touch(const struct pingpong *pp)
{
	volatile char *buf = pp->buf;

	for (long p = 0; p < pp->pages; p++)
		buf[p * PAGE_BYTES + (p % LINES_PER_PAGE) * CACHE_LINE]++;
}

/* The passive side: waits for its turn, writes its pages, hands back; until told to stop. */
static void *serve(void *arg)
{
	struct pingpong *pp = arg;

	for (long p = 0; p < pp->pages; p++)	/* fault in before the loop */
		pp->buf[p * PAGE_BYTES] = 1;
	for (;;) {
		int t;

		while ((t = __atomic_load_n(&pp->turn, __ATOMIC_ACQUIRE)) == 0)
			futex(&pp->turn, FUTEX_WAIT, 0);
		if (t == 2)
			return NULL;
		touch(pp);
		pp->served++;
		__atomic_store_n(&pp->turn, 0, __ATOMIC_RELEASE);
		futex(&pp->turn, FUTEX_WAKE, 1);
	}
}

static void hand_over(struct pingpong *pp)
{
	__atomic_store_n(&pp->turn, 1, __ATOMIC_RELEASE);
	futex(&pp->turn, FUTEX_WAKE, 1);
	while (__atomic_load_n(&pp->turn, __ATOMIC_ACQUIRE) == 1)
		futex(&pp->turn, FUTEX_WAIT, 1);
}

/*
 * arch/x86/lib/retpoline.S's srso_safe_ret and srso_return_thunk, and a function returning 1 through them; its
 * twin returns 1 through the same instructions (mov, call, lea, ret, ret against mov, jmp, call, lea, ret), each
 * return to where the call pushed it.
 */
asm(".pushsection .text\n"
    "vmexec_safe_ret: lea 8(%rsp), %rsp\n ret\n int3\n"
    "vmexec_return_thunk: call vmexec_safe_ret\n ud2\n"
    ".globl vmexec_ret_thunk\n vmexec_ret_thunk: mov $1, %eax\n jmp vmexec_return_thunk\n"
    "vmexec_plain_ret: lea 0(%rsp), %rsp\n ret\n int3\n"
    ".globl vmexec_ret_plain\n vmexec_ret_plain: mov $1, %eax\n call vmexec_plain_ret\n ret\n"
    ".popsection");
int vmexec_ret_thunk(void);
int vmexec_ret_plain(void);

static volatile long handled;

static void on_usr1(int sig)
{
	(void)sig;
	handled++;
}

static long switches(int who)
{
	struct rusage ru;

	getrusage(who, &ru);
	return ru.ru_nvcsw + ru.ru_nivcsw;
}

int price_main(int argc, char **argv)
{
	long n = 0, pages = 0, matched = 0, sw0, sw1;
	uint64_t t0, t1;
	int opt, cpu = 0, part = -1;
	char error[160] = "";
	struct pingpong *pp;
	pthread_t thread;
	pid_t child = 0, self = getpid(), tid = gettid();
	struct pollfd fds[POLL_FDS];

	while ((opt = getopt(argc, argv, "n:k:c:")) != -1) {
		switch (opt) {
		case 'n': n = parse_count(optarg, "-n"); break;
		case 'k': pages = parse_count(optarg, "-k"); break;
		case 'c': cpu = (int)parse_count(optarg, "-c"); break;
		default: return usage_error("usage: vmexec price entry|signal|threads|processes|files|poll|"
					    "ret-thunk|ret-plain|dup -n N [-k PAGES] [-c CPU]");
		}
	}
	for (int i = 0; optind == argc - 1 && parts[i]; i++)
		if (!strcmp(argv[optind], parts[i]))
			part = i;
	if (part < 0)
		return usage_error("vmexec price: exactly one PART is required: entry, signal, threads, processes, "
				   "files, poll, ret-thunk, ret-plain or dup");
	if (n < 1 || pages > (1L << 20))
		return usage_error("vmexec price: -n must be >= 1 and -k at most 1048576 pages");
	if (pages && !PINGPONG(part))
		return usage_error("vmexec price: -k applies to threads and processes only");
	if (pin_to_cpu(cpu)) {
		fprintf(stderr, "vmexec: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
		return EXIT_USAGE;
	}
	alarm(DEFAULT_TIMEOUT_S);	/* default action: the run dies, and its child with it */

	pp = mmap(NULL, sizeof(*pp), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (pp == MAP_FAILED) {
		perror("vmexec: mmap");
		return EXIT_FAILED;
	}
	pp->pages = pages;
	/* Private: in processes each side faults in its own copy. */
	pp->buf = pages ? mmap(NULL, pages * PAGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
			: NULL;
	if (pp->buf == MAP_FAILED) {
		perror("vmexec: mmap");
		return EXIT_FAILED;
	}
	if (part == SIGNAL && signal(SIGUSR1, on_usr1) == SIG_ERR) {
		perror("vmexec: signal");
		return EXIT_FAILED;
	}
	if (part == POLL || part == DUP) {
		int fd = eventfd(0, EFD_CLOEXEC);

		if (fd < 0) {
			perror("vmexec: eventfd");
			return EXIT_FAILED;
		}
		for (int i = 0; i < POLL_FDS; i++)
			fds[i] = (struct pollfd){ .fd = fd, .events = POLLIN };
	}
	if (part == THREADS && (errno = pthread_create(&thread, NULL, serve, pp))) {
		perror("vmexec: pthread_create");
		return EXIT_FAILED;
	}
	if (part == PROCESSES) {
		child = fork();
		if (child < 0) {
			perror("vmexec: fork");
			return EXIT_FAILED;
		}
		if (child == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != self)
				_exit(EXIT_FAILED);
			serve(pp);
			_exit(EXIT_OK);
		}
	}

	for (long w = 0; PINGPONG(part) && w < WARMUP; w++)
		hand_over(pp);
	pp->served = 0;
	handled = 0;
	sw0 = switches(RUSAGE_THREAD);
	t0 = now_ns();
	LOOP_MARK_BEGIN();
	switch (part) {
	case ENTRY:
		for (long i = 0; i < n; i++)
			matched += raw_syscall1(ENOSYS_NR, 0) == -ENOSYS;
		break;
	case FILES:
		for (long i = 0; i < n; i++) {
			int fd = eventfd(0, EFD_CLOEXEC);

			matched += fd >= 0 && close(fd) == 0;
		}
		break;
	case POLL:		/* an eventfd at 0 is not readable: every entry checked, none ready */
		for (long i = 0; i < n; i++)
			matched += poll(fds, POLL_FDS, 0) == 0;
		break;
	case DUP:
		for (long i = 0; i < n; i++) {
			int fd = dup(fds[0].fd);

			matched += fd >= 0 && close(fd) == 0;
		}
		break;
	case RET_THUNK:
		for (long i = 0; i < n; i++)
			matched += vmexec_ret_thunk() == 1;
		break;
	case RET_PLAIN:
		for (long i = 0; i < n; i++)
			matched += vmexec_ret_plain() == 1;
		break;
	case SIGNAL:
		for (long i = 0; i < n; i++)
			matched += syscall(SYS_tgkill, self, tid, SIGUSR1) == 0;
		matched = matched == n ? handled : 0;	/* every call returned 0 and ran the handler */
		break;
	default:
		for (long i = 0; i < n; i++)
			hand_over(pp);
		matched = pp->served;
	}
	LOOP_MARK_END();
	t1 = now_ns();
	sw1 = switches(RUSAGE_THREAD);

	if (PINGPONG(part)) {
		__atomic_store_n(&pp->turn, 2, __ATOMIC_RELEASE);
		futex(&pp->turn, FUTEX_WAKE, 1);
		if (part == THREADS)
			pthread_join(thread, NULL);
		if (part == PROCESSES) {
			int status;

			if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
				snprintf(error, sizeof(error), "the serving process ended badly (status 0x%x)", status);
		}
	}
	if (matched != n && !error[0])
		snprintf(error, sizeof(error), "%ld of %ld iterations completed as expected", matched, n);
	printf("{\"price\": \"%s\", \"ok\": %s, \"calls\": %ld, \"matched\": %ld, \"pages\": %ld, \"cpu\": %d, "
	       "\"elapsed_ns\": %llu, \"switches\": %.3f, \"error\": \"%s\"}\n",
	       parts[part], error[0] ? "false" : "true", n, matched, pages, cpu,
	       (unsigned long long)(t1 - t0), (double)(sw1 - sw0) / n, error);
	return error[0] ? EXIT_FAILED : EXIT_OK;
}
