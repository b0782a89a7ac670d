// SPDX-License-Identifier: MIT
/*
 * vmexec: the driver that runs one backend on the syscall loop and prints one
 * JSON object with what it measured.
 *
 *   vmexec list                       backends, and why any is unavailable
 *   vmexec constants                  the values Python shares with the driver
 *   vmexec run BACKEND -n N [opts]    one measured run
 *   vmexec tracee -n N                the loop alone (native, untraced)
 *   vmexec price PART -n N [opts]     a micro-benchmark of one part (prices.c)
 *   vmexec stop VARIANT -n N [opts]   a ptrace stop's parts (stops.c)
 *
 * Exit statuses: tracee/args.h.  What backends call back into: runtime.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmexec.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const struct backend *find_backend(const char *name)
{
	for (int i = 0; backends[i]; i++)
		if (!strcmp(backends[i]->name, name))
			return backends[i];
	return NULL;
}

static void json_string(const char *text)
{
	putchar('"');
	for (const char *p = text; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if ((unsigned char)*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static int cmd_list(void)
{
	printf("[");
	for (int i = 0; backends[i]; i++) {
		const struct backend *b = backends[i];
		const char *why = b->unavailable ? b->unavailable() : NULL;

		printf("%s\n {\"name\": ", i ? "," : "");
		json_string(b->name);
		printf(", \"description\": ");
		json_string(b->description);
		printf(", \"in_process\": %s, \"kind\": \"%s\", \"available\": %s, \"reason\": ",
		       b->in_process ? "true" : "false",
		       b->rewrites_text ? "binary rewriting" : b->in_process ? "in-process" : "tracer",
		       why ? "false" : "true");
		json_string(why ? why : "");
		printf("}");
	}
	printf("\n]\n");
	return EXIT_OK;
}

#ifdef __clang__
#define COMPILER "clang " __clang_version__
#else
#define COMPILER "gcc " __VERSION__
#endif

/*
 * The values Python must agree on with the driver and the loop: told, never copied.
 * "compiler" is the one that built this driver (and so the timed loops): a run records it
 * as part of the machine a ratio holds on.
 */
static int cmd_constants(void)
{
	printf("{\"compiler\": \"%s\", \"loop_syscall\": %d, \"loop_arg\": %ld, \"loop_end_arg\": %ld,"
	       " \"ptrace_sysemu\": %d, \"default_inject\": %d, \"default_timeout_s\": %d,"
	       " \"max_parallel\": %d, \"max_pages\": %ld, \"page_bytes\": %d,"
	       " \"exit\": {\"ok\": %d, \"failed\": %d, \"usage\": %d, \"unavailable\": %d, \"setup\": %d}}\n",
	       COMPILER, LOOP_SYSCALL, LOOP_ARG, LOOP_END_ARG, PTRACE_SYSEMU, DEFAULT_INJECT, DEFAULT_TIMEOUT_S,
	       MAX_PARALLEL, MAX_PAGES, PAGE_BYTES, EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_SETUP);
	return EXIT_OK;
}

/*
 * Faults the reliability tests inject (-F): a tracee that segfaults inside
 * its loop, a tracer that crashes, a tracer that hangs, a binary rewriting
 * backend that leaves the text it patched writable.
 */
static enum { FAULT_NONE, FAULT_TRACEE_SEGV, FAULT_TRACER_CRASH, FAULT_HANG, FAULT_TEXT_WRITABLE } fault;
static const char *const fault_names[] = { "none", "tracee-segv", "tracer-crash", "hang", "text-writable", NULL };

static int parse_fault(const char *text)
{
	for (int i = 0; fault_names[i]; i++)
		if (!strcmp(text, fault_names[i]))
			return i;
	fprintf(stderr, "vmexec: -F takes none, tracee-segv, tracer-crash, hang or text-writable, not '%s'\n", text);
	exit(EXIT_USAGE);
}

/* Sessions live in one shared mapping; `start` releases them all at once. */
static struct {
	volatile int start;
	struct session sessions[];
} *shared;

static void wait_for_start(void)
{
	while (!shared->start)
		sched_yield();
}

/* The tracee: set up by the backend, then run the loop. Never returns. */
static void tracee_child(const struct backend *b, struct session *s, pid_t tracer)
{
	long mismatches;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != tracer)	/* the tracer died before prctl() took effect */
		_exit(EXIT_SETUP);
	if (pin_to_cpu(s->cfg->cpu_tracee)) {
		fail_errno(s, "sched_setaffinity(tracee)");
		_exit(EXIT_SETUP);
	}
	/* Fault the pages in now, so the loop measures touching, not faulting. */
	for (long p = 0; p < s->loop.pages; p++)
		s->loop.page_buf[p * PAGE_BYTES] = 1;
	if (b->in_process)
		wait_for_start();
	if (b->tracee_setup && b->tracee_setup(s))
		_exit(EXIT_SETUP);
	if (fault == FAULT_TRACEE_SEGV) {
		/* The loop's first page write hits an unmapped page: a real fault mid-loop. */
		s->loop.pages = 1;
		s->loop.page_buf = (volatile char *)PAGE_BYTES;
	}
	mismatches = syscall_loop(&s->loop);
	if (b->tracee_done && b->tracee_done(s))
		_exit(EXIT_FAILED);
	_exit(mismatches ? EXIT_FAILED : EXIT_OK);
}

static void describe_exit(struct session *s, int status)
{
	if (WIFSIGNALED(status))
		fail(s, "tracee killed by signal SIG%s", sigabbrev_np(WTERMSIG(status)) ?: "?");
	else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_FAILED)
		fail(s, "tracee saw %ld wrong return values of %ld (first: %ld, expected %ld)",
		     s->loop.calls - s->loop.matched, s->loop.calls, s->loop.first_bad,
		     s->loop.expect);
	else if (WIFEXITED(status) && WEXITSTATUS(status) != EXIT_OK)
		fail(s, "tracee set-up failed (exit status %d)", WEXITSTATUS(status));
}

/* One tracer/tracee pair; fills s->error on failure. */
static void run_session(const struct backend *b, struct session *s)
{
	int status;
	pid_t tracer = getpid(), pid;

	if (b->before_fork && b->before_fork(s))
		return;
	/* s is shared: only the parent may store the pid in it. */
	pid = fork();
	if (pid < 0) {
		fail_errno(s, "fork");
		return;
	}
	if (pid == 0)
		tracee_child(b, s, tracer);
	s->tracee = pid;
	if (fault == FAULT_TRACER_CRASH)
		raise(SIGSEGV);
	if (fault == FAULT_HANG)
		for (;;)
			pause();

	if (!b->in_process) {
		wait_for_start();
		b->trace(s);
		if (b->tracee_lends_mm || s->error[0])
			kill(s->tracee, SIGKILL);
	}
	if (waitpid(s->tracee, &status, __WALL) < 0)
		fail_errno(s, "waitpid(tracee)");
	else if (!(b->tracee_lends_mm && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		describe_exit(s, status);
	if (b->in_process) {
		s->t0_ns = s->loop.t0_ns;
		s->t1_ns = s->loop.t1_ns;
	}
	if (!s->error[0] && s->loop.calls != s->cfg->syscalls)
		fail(s, "the tracee's loop did not finish (%ld of %ld calls)", s->loop.calls, s->cfg->syscalls);
	else if (!s->error[0] && s->loop.matched != s->loop.calls)
		describe_exit(s, 1 << 8);	/* borrowed loops have no exit status */
}

static void on_watchdog(int sig)
{
	static const char msg[] = "{\"ok\": false, \"error\": \"timeout: watchdog expired\"}\n";

	(void)sig;
	fflush(NULL);
	(void)!write(STDOUT_FILENO, msg, sizeof(msg) - 1);
	signal(SIGTERM, SIG_IGN);
	kill(0, SIGKILL);	/* our process group: tracers and tracees */
}

static void print_result(const struct backend *b, const struct run_config *cfg)
{
	uint64_t t0 = UINT64_MAX, t1 = 0, first_call = 0;
	long calls = 0, matched = 0;
	const char *error = "";

	for (int i = 0; i < cfg->parallel; i++) {
		struct session *s = &shared->sessions[i];

		if (s->error[0] && !error[0])
			error = s->error;
		t0 = s->t0_ns < t0 ? s->t0_ns : t0;
		t1 = s->t1_ns > t1 ? s->t1_ns : t1;
		calls += s->loop.calls;
		first_call = s->first_call_ns > first_call ? s->first_call_ns : first_call;
		matched += s->loop.matched;
	}
	printf("{\"backend\": ");
	json_string(b->name);
	printf(", \"ok\": %s, \"syscalls\": %ld, \"parallel\": %d, \"pages\": %ld,"
	       " \"calls\": %ld, \"matched\": %ld, \"elapsed_ns\": %llu",
	       error[0] ? "false" : "true", cfg->syscalls, cfg->parallel, cfg->pages,
	       calls, matched, (unsigned long long)(t1 > t0 ? t1 - t0 : 0));
	/* Backends that patch a site at its first trap: that first call's cost. */
	if (first_call)
		printf(", \"first_call_ns\": %llu", (unsigned long long)first_call);
	printf(", \"error\": ");
	json_string(error);
	printf("}\n");
}

static int cmd_run(int argc, char **argv)
{
	struct run_config cfg = { .inject = DEFAULT_INJECT, .expect = DEFAULT_INJECT, .cpu_tracer = -1,
				  .cpu_tracee = -1, .parallel = 1, .timeout_s = DEFAULT_TIMEOUT_S };
	const struct backend *b;
	const char *why;
	size_t size;
	char *pages = NULL;
	int opt, failed = 0;
	long plant_ns = 0;

	while ((opt = getopt(argc, argv, "n:i:e:k:t:T:P:w:F:L:")) != -1) {
		switch (opt) {
		case 'n': cfg.syscalls = parse_count(optarg, "-n"); break;
		case 'i': cfg.inject = parse_long(optarg, "-i", LONG_MIN); break;
		case 'e': cfg.expect = parse_long(optarg, "-e", LONG_MIN); break;
		case 'k': cfg.pages = parse_count(optarg, "-k"); break;
		case 't': cfg.cpu_tracer = parse_int(optarg, "-t", CPU_SETSIZE - 1); break;
		case 'T': cfg.cpu_tracee = parse_int(optarg, "-T", CPU_SETSIZE - 1); break;
		case 'P': cfg.parallel = parse_int(optarg, "-P", MAX_PARALLEL); break;
		case 'w': cfg.timeout_s = parse_int(optarg, "-w", INT_MAX); break;
		case 'F': fault = parse_fault(optarg); rw_fault_text_writable = fault == FAULT_TEXT_WRITABLE; break;
		case 'L': plant_ns = parse_count(optarg, "-L"); break;
		default: return usage_error("usage: vmexec run BACKEND -n SYSCALLS [-i INJECT] [-e EXPECT] "
					    "[-k PAGES] [-t TRACER_CPU] [-T TRACEE_CPU] [-P PAIRS] [-w TIMEOUT_S] [-F FAULT] [-L PLANTED_NS]");
		}
	}
	if (optind != argc - 1)
		return usage_error("vmexec run: exactly one BACKEND is required (see 'vmexec list')");
	b = find_backend(argv[optind]);
	if (!b) {
		fprintf(stderr, "vmexec: unknown backend '%s' (see 'vmexec list')\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (cfg.syscalls < 1 || cfg.parallel < 1 || cfg.parallel > MAX_PARALLEL || cfg.timeout_s < 1)
		return usage_error("vmexec run: -n must be >= 1, -P between 1 and " STR(MAX_PARALLEL) ", -w >= 1");
	if (cfg.pages > MAX_PAGES)
		return usage_error("vmexec run: -k is at most 1048576 pages");
	/* Both CPUs checked alike, here: the tracee's would otherwise fail later, in its child, as a failed run. */
	for (int i = 0; i < 2; i++) {
		int cpu = i ? cfg.cpu_tracee : cfg.cpu_tracer;
		cpu_set_t usable;

		if (cpu >= 0 && (sched_getaffinity(0, sizeof(usable), &usable) || !CPU_ISSET(cpu, &usable))) {
			fprintf(stderr, "vmexec: %s %d: not a CPU this process may use\n", i ? "-T" : "-t", cpu);
			return EXIT_USAGE;
		}
	}
	why = b->unavailable ? b->unavailable() : NULL;
	if (why) {
		printf("{\"backend\": ");
		json_string(b->name);
		printf(", \"ok\": false, \"unavailable\": true, \"error\": ");
		json_string(why);
		printf("}\n");
		return EXIT_UNAVAILABLE;
	}

	size = sizeof(*shared) + cfg.parallel * sizeof(struct session);
	shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	/* Private and untouched: each forked tracee faults in its own copy. */
	if (cfg.pages)
		pages = mmap(NULL, cfg.pages * PAGE_BYTES, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED || pages == MAP_FAILED) {
		perror("vmexec: mmap");
		return EXIT_FAILED;
	}

	plant_work_ns(plant_ns);
	setpgid(0, 0);
	signal(SIGALRM, on_watchdog);
	alarm(cfg.timeout_s);
	if (cfg.parallel == 1 && pin_to_cpu(cfg.cpu_tracer)) {
		fprintf(stderr, "vmexec: cannot pin to CPU %d: %s\n", cfg.cpu_tracer, strerror(errno));
		return EXIT_USAGE;
	}

	for (int i = 0; i < cfg.parallel; i++) {
		struct session *s = &shared->sessions[i];

		s->cfg = &cfg;
		s->loop.syscalls = cfg.syscalls;
		s->loop.expect = cfg.expect;
		s->loop.pages = cfg.pages;
		s->loop.page_buf = pages;
		s->loop.self_timed = b->in_process;
	}
	if (cfg.parallel == 1) {
		shared->start = 1;
		run_session(b, &shared->sessions[0]);
	} else {
		/* One tracer process per pair, released together. */
		for (int i = 0; i < cfg.parallel; i++) {
			pid_t pid = fork();

			if (pid == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				run_session(b, &shared->sessions[i]);
				_exit(0);
			}
			if (pid < 0)
				failed = fail_errno(&shared->sessions[i], "fork");
		}
		shared->start = 1;
		while (wait(NULL) > 0)
			;
		for (int i = 0; i < cfg.parallel; i++) {
			struct session *s = &shared->sessions[i];

			if (s->loop.calls != cfg.syscalls)	/* its tracer died */
				fail(s, "pair %d ended after %ld of %ld calls", i, s->loop.calls, cfg.syscalls);
		}
	}
	alarm(0);
	print_result(b, &cfg);
	for (int i = 0; i < cfg.parallel; i++)
		failed |= shared->sessions[i].error[0];
	return failed ? EXIT_FAILED : EXIT_OK;
}

int main(int argc, char **argv)
{
	/* Die with whoever started us (a pyperf worker), so nothing outlives a killed run. */
	pid_t parent = getppid();

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		return EXIT_FAILED;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; backends[i]; i++)
		if (!backends[i]->in_process == !backends[i]->trace) {
			fprintf(stderr, "vmexec: backend %s must be in-process or have a trace(), not both or neither\n",
				backends[i]->name);
			return EXIT_FAILED;
		}
	if (argc >= 2 && !strcmp(argv[1], "list"))
		return cmd_list();
	if (argc >= 2 && !strcmp(argv[1], "constants"))
		return cmd_constants();
	if (argc >= 2 && !strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "tracee"))
		return tracee_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "price"))
		return price_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "stop"))
		return stop_main(argc - 1, argv + 1);
	return usage_error("usage: vmexec list | vmexec constants | vmexec run BACKEND -n SYSCALLS [...] | vmexec tracee -n SYSCALLS"
			   " | vmexec price PART -n N [...] | vmexec stop VARIANT -n N [...]");
}
