/* SPDX-License-Identifier: MIT */
/*
 * The backend interface of the `vmexec` driver.
 *
 * One backend per interception mechanism, in one file each, listed once in
 * registry.c.  The driver calls the backend's before_fork(), forks the tracee
 * (a child running syscall_loop()), calls tracee_setup() in the child and
 * trace() in the parent.  An in-process backend has no trace(): the tracee
 * intercepts its own syscalls and times its own loop.
 */
#ifndef VMEXEC_H
#define VMEXEC_H

#include <stdint.h>
#include <sys/types.h>

#include "../tracee/args.h"
#include "../tracee/tracee.h"

/* Defaults of `vmexec run`, which `vmexec constants` tells Python. */
#define DEFAULT_INJECT    555   /* the value the RFC's benchmark emulated */
#define DEFAULT_TIMEOUT_S 600
#define MAX_PARALLEL      64

/* What one run of the driver is asked to do. */
struct run_config {
	long syscalls;     /* measured syscalls per tracee */
	long inject;       /* return value the backend emulates */
	long expect;       /* return value the tracee checks for */
	long pages;        /* pages the tracee writes between two syscalls */
	int cpu_tracer;    /* CPU to pin the tracer to, -1 for none */
	int cpu_tracee;    /* CPU to pin the tracee to, -1 for none */
	int parallel;      /* tracer/tracee pairs run at once */
	int timeout_s;     /* whole-run watchdog */
};

/* Memory shared between a tracer and its tracee (MAP_SHARED, before fork). */
struct session {
	struct loop_state loop;
	const struct run_config *cfg;
	pid_t tracee;
	/* Scratch space a backend passes from its tracee_setup() to its trace(). */
	union {
		long words[16];
		char bytes[128];
	} backend;
	/* Timestamps the tracer takes around the loop (cross-process backends). */
	uint64_t t0_ns, t1_ns;
	/*
	 * The cost of the first call at a fresh syscall site (binary rewriting
	 * backends that patch a site when it first traps), ns; 0 when not measured.
	 */
	uint64_t first_call_ns;
	/* A tracer's error message, empty when it succeeded. */
	char error[256];
};

struct backend {
	const char *name;
	const char *description;
	/* NULL when the mechanism is usable here, else why not ("ENOSYS: ..."). */
	const char *(*unavailable)(void);
	/*
	 * Runs in the tracer before fork: creates what the tracee inherits (a
	 * socket, a shared file).  Returns 0, or -1 after setting s->error.
	 */
	int (*before_fork)(struct session *s);
	/*
	 * Runs in the tracee after fork, before syscall_loop().  Returns 0 to
	 * run the loop, or -1 after setting s->error.
	 */
	int (*tracee_setup)(struct session *s);
	/*
	 * Runs in the tracee after syscall_loop() returned (NULL: nothing to
	 * check).  Returns 0, or -1 after setting s->error.
	 */
	int (*tracee_done)(struct session *s);
	/*
	 * Runs in the tracer: intercept the tracee's loop until its end call,
	 * stamping s->t0_ns/t1_ns around it.  Returns 0, or -1 after setting
	 * s->error.  NULL for in-process backends.
	 */
	int (*trace)(struct session *s);
	/* The tracee intercepts its own syscalls: no tracer, the loop times itself. */
	int in_process;
	/* The tracee must not exit after the loop (it lends its mm). */
	int tracee_lends_mm;
	/*
	 * In-process, by rewriting the loop's `syscall` instructions into calls
	 * to an interposer: the kind "binary rewriting" (`vmexec list`).
	 */
	int rewrites_text;
};

extern const struct backend *const backends[];

/* What backends call back into (runtime.c). */
uint64_t now_ns(void);
int fail(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int fail_errno(struct session *s, const char *what);
int pin_to_cpu(int cpu);
/* `vmexec price`: micro-benchmarks of the mechanisms' parts (prices.c). */
int price_main(int argc, char **argv);
/* `vmexec stop`: a ptrace stop's parts, loops that differ by one (stops.c). */
int stop_main(int argc, char **argv);
/*
 * Test-only (the regression check's planted slowdowns, `run -L NS`): add about
 * NS ns of spinning to each intercepted call of the ptrace tracers.
 */
void plant_work_ns(long ns);
void planted_work(void);

/* ptrace helpers shared by the ptrace-based backends (ptrace_common.c). */
struct user_regs_struct;
int ptrace_traceme_and_stop(struct session *s);
int ptrace_wait_stop(struct session *s, int *status);
int ptrace_first_stop(struct session *s, long options);
int ptrace_end_loop(struct session *s);
int loop_call_kind(struct session *s, const struct user_regs_struct *regs);
int ptrace_read_call(struct session *s, struct user_regs_struct *regs);
const char *ptrace_unavailable(void);

/* loop_call_kind() results. */
enum { CALL_MEASURED, CALL_END, CALL_FOREIGN };

/* Helpers shared by the seccomp and syscall-user-dispatch backends (seccomp_common.c). */
int seccomp_filter_getppid(uint32_t action, unsigned int flags);
int probe_in_child(int (*probe)(long), long arg);
const char *unavailable_reason(int err, const char *what);
const char *seccomp_unavailable(uint32_t action, const char *name, const char *since);
void fail_async(struct session *s, const char *msg, long n);

/* Syscall user dispatch (sud_common.c): syscall-user-dispatch and lazypoline. */
#include <signal.h>
#include <sys/ucontext.h>
extern volatile char sud_selector;
const char *sud_unavailable(void);
int sud_install(struct session *s, void (*handler)(int, siginfo_t *, void *));
void sud_let_through(const siginfo_t *info, greg_t *regs);

/*
 * Binary rewriting (rewrite_common.c): zpoline, lazypoline, systrap-patch.
 * Only in the tracee, which is single-threaded: see rewrite_common.c.
 */
enum rw_mode { RW_AHEAD, RW_LAZY };	/* every site patched before the loop, or at its first trap */
int rw_init(struct session *s, enum rw_mode mode, volatile char *sud_selector);
const char *rw_page0_unavailable(const char *backend);
int rw_map_trampoline(struct session *s);
int rw_is_site(const char *site);
int rw_patch_call_rax(struct session *s, char *site);
int rw_patch_window(struct session *s, char *site);
long rw_trapped(struct session *s, char *site);
int rw_sites(char **out, int max);
uint64_t rw_first_call_ns(struct session *s);
int rw_check(struct session *s);
/* Test-only (-F text-writable): leave patched text pages rwx, which rw_check() must catch. */
extern int rw_fault_text_writable;

#endif
