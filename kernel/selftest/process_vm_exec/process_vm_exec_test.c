// SPDX-License-Identifier: GPL-2.0
/*
 * process_vm_exec() under attack: argument checks, permissions, lifecycles,
 * the reviewers' hazards and a seeded fuzz run.  Each test asserts the safe
 * behaviour.  Run as root (it switches uids to test permissions); some tests
 * need CONFIG_MEMCG, CONFIG_COREDUMP or CONFIG_CROSS_MEMORY_ATTACH and skip
 * without them.  x86_64 only.
 *
 * The guest code is in this file; the target is a fork of the test, so it
 * sits at the same addresses in the target's mm.  Memory mapped MAP_SHARED
 * before the fork (struct shared) is seen by the guest and by the caller.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kselftest_harness.h"

#ifndef __NR_process_vm_exec
#define __NR_process_vm_exec 463	/* x86_64, the port to 6.12 */
#endif

#define SIG(s)		(1ull << ((s) - 1))
#define SLOTS		16
#define STACK_BYTES	(64 * 1024)
#define UID_A		1000
#define UID_B		1001
#define HWCAP2_FSGSBASE	(1 << 1)

/* Guest code: run on the target's mm with the registers of a sigcontext. */
asm(".text\n"
    ".globl g_syscall, g_after_syscall, g_spin, g_ud2, g_segv, g_xmm, g_rdfsbase, g_touch\n"
    ".globl g_wait_touch, g_rdpkru\n"
    "g_syscall: mov $39, %eax\n syscall\n"
    "g_after_syscall: jmp g_syscall\n"
    /* count in (%rdi) until a signal ends the call */
    "g_spin: lock incq (%rdi)\n jmp g_spin\n"
    "g_ud2: ud2\n"
    "g_segv: movq $1, 0\n jmp g_segv\n"
    /* store the xmm0 it was given at (%rdi), set xmm0 = rsi */
    "g_xmm: movq %xmm0, (%rdi)\n movq %rsi, %xmm0\n mov $39, %eax\n syscall\n jmp g_xmm\n"
    /* store the FS base it was given at (%rdi), then set it to rsi */
    "g_rdfsbase: rdfsbase %rax\n mov %rax, (%rdi)\n wrfsbase %rsi\n mov $39, %eax\n syscall\n"
    " jmp g_rdfsbase\n"
    /* touch a page every 4 KiB from rdi to rsi, then make a syscall */
    "g_touch: movb $1, (%rdi)\n add $4096, %rdi\n cmp %rsi, %rdi\n jb g_touch\n"
    " mov $39, %eax\n syscall\n jmp g_touch\n"
    /* wait until the int at (%rdx) is set, then g_touch */
    "g_wait_touch: cmpl $0, (%rdx)\n je g_wait_touch\n jmp g_touch\n"
    /* store the PKRU it was given at (%rdi) */
    "g_rdpkru: xor %ecx, %ecx\n rdpkru\n mov %eax, (%rdi)\n mov $39, %eax\n syscall\n jmp g_rdpkru\n");
extern char g_syscall[], g_after_syscall[], g_spin[], g_ud2[], g_segv[], g_xmm[], g_rdfsbase[],
	g_touch[], g_wait_touch[], g_rdpkru[];

struct shared {
	volatile uint64_t counter[SLOTS];
	volatile uint64_t word[SLOTS];
	volatile int flag[SLOTS];
	char stacks[SLOTS][STACK_BYTES] __attribute__((aligned(4096)));
};

static struct shared *sh;
/* Private (copied at fork): the caller's and the target's differ. */
static char marker[64] = "before-fork";

/*
 * An expected failure: the hazard is there, documented, and fixed only in
 * safe mode (CONFIG_PROCESS_VM_EXEC_SAFE).  A test that failed otherwise
 * stays failed.
 */
#define HAZARD(statement, fmt, ...) do { \
	if (_metadata->exit_code == KSFT_PASS) { \
		snprintf(_metadata->results->reason, \
			 sizeof(_metadata->results->reason), fmt, ##__VA_ARGS__); \
		_metadata->exit_code = KSFT_XFAIL; \
	} \
	statement; \
} while (0)

static long pvm_raw(pid_t pid, void *ctx, unsigned long flags, void *si, void *mask, size_t size)
{
	return syscall(__NR_process_vm_exec, pid, ctx, flags, si, mask, size);
}

static long pvm(pid_t pid, struct sigcontext *ctx, siginfo_t *si, uint64_t mask)
{
	return pvm_raw(pid, ctx, 0, si, &mask, 8);
}

static void init_ctx(struct sigcontext *ctx, const void *rip, int slot)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->rip = (unsigned long)rip;
	ctx->rsp = (unsigned long)sh->stacks[slot] + STACK_BYTES - 64;
	ctx->rdi = (unsigned long)&sh->counter[slot];
	ctx->cs = 0x33;
	ctx->__pad0 = 0x2b;	/* ss */
	ctx->eflags = 0x202;
}

static void nothing(int sig) { (void)sig; }

/* Ask for `sig` in `ms` milliseconds, to this thread only. */
static void signal_me(int sig, int ms)
{
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = sig };
	struct itimerspec its = { .it_value = { ms / 1000, (ms % 1000) * 1000000L } };
	timer_t t;

	sev._sigev_un._tid = gettid();
	if (timer_create(CLOCK_MONOTONIC, &sev, &t) == 0)
		timer_settime(t, 0, &its, NULL);
}

/* A target: a fork that marks its own copy of `marker` and waits. */
static pid_t spawn_target(uid_t uid, int dumpable)
{
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		strcpy(marker, "TARGET-memory");
		if (uid && setresuid(uid, uid, uid))
			_exit(2);
		prctl(PR_SET_DUMPABLE, dumpable);
		for (;;)
			pause();
	}
	usleep(20000);
	return pid;
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* Wait for a child for at most `seconds`; its wait status, or -1 on timeout (killed). */
static int wait_for(pid_t pid, int seconds)
{
	int status;

	for (int i = 0; i < seconds * 100; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		usleep(10000);
	}
	reap(pid);
	return -1;
}

FIXTURE(pvm) {
	pid_t target;
};

FIXTURE_SETUP(pvm)
{
	if (syscall(__NR_process_vm_exec, 0, NULL, 0, NULL, NULL, 0) == -1 && errno == ENOSYS)
		SKIP(return, "no process_vm_exec in this kernel");
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, sh);
	strcpy(marker, "CALLER-memory");
	self->target = spawn_target(0, 1);
	ASSERT_GT(self->target, 0);
	strcpy(marker, "CALLER-memory");
}

FIXTURE_TEARDOWN(pvm)
{
	if (self->target > 0)
		reap(self->target);
}

/* ---- arguments ---- */

TEST_F(pvm, flags_every_unknown_bit_einval)
{
	struct sigcontext ctx;
	uint64_t mask = 0;
	siginfo_t si;

	init_ctx(&ctx, g_syscall, 0);
	for (int bit = 0; bit < 64; bit++) {
		errno = 0;
		EXPECT_EQ(-1, pvm_raw(self->target, &ctx, 1ul << bit, &si, &mask, 8))
			TH_LOG("flag bit %d accepted", bit);
		EXPECT_EQ(EINVAL, errno);
	}
}

TEST_F(pvm, masksize_wrong_einval)
{
	size_t sizes[] = { 0, 1, 4, 7, 9, 16, 128, SIZE_MAX };
	struct sigcontext ctx;
	uint64_t mask[32] = { 0 };
	siginfo_t si;

	init_ctx(&ctx, g_syscall, 0);
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		errno = 0;
		EXPECT_EQ(-1, pvm_raw(self->target, &ctx, 0, &si, mask, sizes[i]));
		EXPECT_EQ(EINVAL, errno) TH_LOG("masksize %zu", sizes[i]);
	}
}

TEST_F(pvm, fpstate_nonzero_einval)
{
	struct sigcontext ctx;
	siginfo_t si;

	init_ctx(&ctx, g_syscall, 0);
	ctx.fpstate = (void *)sh->stacks[0];
	EXPECT_EQ(-1, pvm(self->target, &ctx, &si, 0));
	EXPECT_EQ(EINVAL, errno);
}

TEST_F(pvm, pid_zero_negative_unused_esrch)
{
	pid_t pids[] = { 0, -1, -2, INT_MIN, 0x3ffffff0 };
	struct sigcontext ctx;
	siginfo_t si;

	init_ctx(&ctx, g_syscall, 0);
	for (unsigned i = 0; i < sizeof(pids) / sizeof(pids[0]); i++) {
		errno = 0;
		EXPECT_EQ(-1, pvm(pids[i], &ctx, &si, 0));
		EXPECT_EQ(ESRCH, errno) TH_LOG("pid %d", pids[i]);
	}
}

TEST_F(pvm, pid_zombie_and_dead_esrch)
{
	struct sigcontext ctx;
	siginfo_t si;
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	usleep(50000);		/* a zombie now: no mm */
	init_ctx(&ctx, g_syscall, 0);
	EXPECT_EQ(-1, pvm(pid, &ctx, &si, 0));
	EXPECT_EQ(ESRCH, errno);
	waitpid(pid, NULL, 0);	/* gone */
	EXPECT_EQ(-1, pvm(pid, &ctx, &si, 0));
	EXPECT_EQ(ESRCH, errno);
}

TEST_F(pvm, kernel_thread_refused)
{
	struct sigcontext ctx;
	siginfo_t si;

	init_ctx(&ctx, g_syscall, 0);
	EXPECT_EQ(-1, pvm(2, &ctx, &si, 0));	/* kthreadd: no mm */
	EXPECT_TRUE(errno == ESRCH || errno == EPERM) TH_LOG("errno %d", errno);
}

TEST_F(pvm, bad_pointers_efault)
{
	void *unmapped = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *kernel = (void *)0xffffffff81000000ul, *noncanon = (void *)0x8000000000000000ul;
	void *bad[] = { NULL, unmapped, kernel, noncanon };
	struct sigcontext ctx, *ro;
	uint64_t mask = 0;
	siginfo_t si;

	munmap(unmapped, 4096);
	init_ctx(&ctx, g_syscall, 0);
	for (unsigned i = 0; i < 4; i++) {
		EXPECT_EQ(-1, pvm_raw(self->target, bad[i], 0, &si, &mask, 8));
		EXPECT_EQ(EFAULT, errno) TH_LOG("context %p", bad[i]);
		EXPECT_EQ(-1, pvm_raw(self->target, &ctx, 0, &si, bad[i], 8));
		EXPECT_EQ(EFAULT, errno) TH_LOG("mask %p", bad[i]);
		/* siginfo is written when the guest's syscall ends the call */
		init_ctx(&ctx, g_syscall, 0);
		EXPECT_EQ(-1, pvm_raw(self->target, &ctx, 0, bad[i], &mask, 8));
		EXPECT_EQ(EFAULT, errno) TH_LOG("siginfo %p", bad[i]);
	}
	/* a read-only context: read, run, and the write-back fails */
	ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	init_ctx(ro, g_syscall, 0);
	mprotect(ro, 4096, PROT_READ);
	EXPECT_EQ(-1, pvm_raw(self->target, ro, 0, &si, &mask, 8));
	EXPECT_EQ(EFAULT, errno);
	/* and the caller is intact: a good call still works */
	init_ctx(&ctx, g_syscall, 0);
	EXPECT_EQ(0, pvm(self->target, &ctx, &si, 0));
	EXPECT_EQ(SIGSYS, si.si_signo);
}

/* ---- permissions ---- */

/* In a child as `uid`: borrow `target` once; the errno, 0 on success. */
static int borrow_as(uid_t uid, pid_t target, int dumpable)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		struct sigcontext ctx;
		siginfo_t si;

		if (setresuid(uid, uid, uid))
			_exit(100);
		prctl(PR_SET_DUMPABLE, dumpable);
		init_ctx(&ctx, g_syscall, 1);
		_exit(pvm(target, &ctx, &si, 0) ? errno : 0);
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

TEST_F(pvm, other_uid_eperm)
{
	pid_t target;

	if (geteuid())
		SKIP(return, "needs root to switch uids");
	target = spawn_target(UID_B, 1);
	EXPECT_EQ(EPERM, borrow_as(UID_A, target, 1));
	EXPECT_EQ(0, borrow_as(UID_B, target, 1));	/* the same uid may */
	reap(target);
}

TEST_F(pvm, nondumpable_target_eperm)
{
	pid_t target;

	if (geteuid())
		SKIP(return, "needs root to switch uids");
	target = spawn_target(UID_A, 0);
	EXPECT_EQ(EPERM, borrow_as(UID_A, target, 1));
	reap(target);
}

/*
 * A caller as UID_A, borrowing a dumpable UID_A target with g_spin until
 * SIGALRM (in the call's mask) after `ms`.  Its tid is in sh->word[0] and
 * sh->flag[0] is 1 while it borrows (the guest counts in counter[2]).
 */
static pid_t spawn_borrower(pid_t target, uid_t uid, int dumpable, int ms)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct sigcontext ctx;
		siginfo_t si;
		long ret;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (uid && setresuid(uid, uid, uid))
			_exit(100);
		prctl(PR_SET_DUMPABLE, dumpable);
		signal(SIGALRM, nothing);
		sh->word[0] = gettid();
		init_ctx(&ctx, g_spin, 2);
		signal_me(SIGALRM, ms);
		sh->flag[0] = 1;
		ret = pvm(target, &ctx, &si, SIG(SIGALRM));
		sh->flag[0] = 2;
		_exit(ret == 0 && si.si_signo == SIGALRM ? 0 : 10);
	}
	return pid;
}

/* Wait until the borrower's guest runs (its counter moves). */
static int borrowing_now(void)
{
	uint64_t c;

	for (int i = 0; i < 500; i++) {
		c = sh->counter[2];
		usleep(2000);
		if (sh->flag[0] == 1 && sh->counter[2] != c)
			return 1;
	}
	return 0;
}

/* Hole 1: a non-dumpable caller must stay protected while it borrows. */
TEST_F(pvm, nondumpable_caller_not_ptraceable_while_borrowing)
{
	pid_t target, borrower, tid;
	int seized = 0, opened = 0;
	uint64_t before;

	if (geteuid())
		SKIP(return, "needs root to switch uids");
	target = spawn_target(UID_A, 1);
	borrower = spawn_borrower(target, UID_A, 0, 1500);
	ASSERT_TRUE(borrowing_now());
	tid = sh->word[0];
	before = sh->counter[2];
	pid_t attacker = fork();

	if (attacker == 0) {
		char path[64];
		int fd;

		if (setresuid(UID_A, UID_A, UID_A))
			_exit(100);
		snprintf(path, sizeof(path), "/proc/%d/mem", tid);
		fd = open(path, O_RDONLY);
		opened = fd >= 0;
		seized = ptrace(PTRACE_SEIZE, tid, 0, 0) == 0;
		if (seized)
			ptrace(PTRACE_DETACH, tid, 0, 0);
		_exit(seized | opened << 1);
	}
	int status;

	waitpid(attacker, &status, 0);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_NE(100, WEXITSTATUS(status));
	seized = WEXITSTATUS(status) & 1;
	opened = WEXITSTATUS(status) >> 1 & 1;
	/* flag[0] turns 2 when the call returns: 1 now means it borrowed throughout */
	EXPECT_EQ(1, sh->flag[0]) TH_LOG("the caller was not borrowing during the whole attack");
	TH_LOG("guest counter %llu -> %llu during the attack", (unsigned long long)before,
	       (unsigned long long)sh->counter[2]);
	EXPECT_FALSE(seized) TH_LOG("a same-uid process PTRACE_SEIZEd the non-dumpable caller");
	EXPECT_FALSE(opened) TH_LOG("a same-uid process opened the non-dumpable caller's /proc/PID/mem");
	EXPECT_EQ(0, wait_for(borrower, 20));
	reap(target);
}

/* What another process reads at `marker` in the borrowing caller, via /proc/PID/mem or process_vm_readv. */
static void read_borrower_memory(struct __test_metadata *_metadata, pid_t target, int use_readv)
{
	char seen[64] = "";
	pid_t borrower, tid;
	ssize_t n;

	borrower = spawn_borrower(target, 0, 1, 1000);
	ASSERT_TRUE(borrowing_now());
	tid = sh->word[0];
	if (use_readv) {
		struct iovec local = { seen, sizeof(seen) }, remote = { marker, sizeof(seen) };

		n = process_vm_readv(tid, &local, 1, &remote, 1, 0);
		if (n < 0 && errno == ENOSYS) {
			reap(borrower);
			SKIP(return, "no process_vm_readv (CONFIG_CROSS_MEMORY_ATTACH)");
		}
	} else {
		char path[64];
		int fd;

		snprintf(path, sizeof(path), "/proc/%d/mem", tid);
		fd = open(path, O_RDONLY);
		ASSERT_LE(0, fd);
		n = pread(fd, seen, sizeof(seen), (off_t)(uintptr_t)marker);
		close(fd);
	}
	seen[sizeof(seen) - 1] = 0;
	EXPECT_EQ(1, sh->flag[0]) TH_LOG("the caller was not borrowing during the read");
	EXPECT_EQ((ssize_t)sizeof(seen), n);
	EXPECT_STREQ("CALLER-memory", seen) TH_LOG("read the borrowed target's memory through the caller");
	EXPECT_EQ(0, wait_for(borrower, 20));
}

TEST_F(pvm, proc_pid_mem_of_borrowing_caller_is_its_own)
{
	read_borrower_memory(_metadata, self->target, 0);
}

TEST_F(pvm, process_vm_readv_of_borrowing_caller_is_its_own)
{
	read_borrower_memory(_metadata, self->target, 1);
}

/* ---- lifecycles ---- */

TEST_F(pvm, syscall_trap_and_resume)
{
	struct sigcontext ctx;
	siginfo_t si;

	init_ctx(&ctx, g_syscall, 0);
	ctx.r12 = 0x1212;
	ASSERT_EQ(0, pvm(self->target, &ctx, &si, 0));
	EXPECT_EQ(SIGSYS, si.si_signo);
	EXPECT_EQ(39, si.si_syscall);
	EXPECT_EQ((unsigned long)g_after_syscall, ctx.rip);
	EXPECT_EQ(-ENOSYS, (long)ctx.rax);
	EXPECT_EQ(0x1212ul, ctx.r12);
	ASSERT_EQ(0, pvm(self->target, &ctx, &si, 0));
	EXPECT_EQ((unsigned long)g_after_syscall, ctx.rip);
}

TEST_F(pvm, signal_in_mask_returned)
{
	struct sigcontext ctx;
	siginfo_t si;

	signal(SIGALRM, nothing);
	init_ctx(&ctx, g_spin, 0);
	signal_me(SIGALRM, 50);
	ASSERT_EQ(0, pvm(self->target, &ctx, &si, SIG(SIGALRM)));
	EXPECT_EQ(SIGALRM, si.si_signo);
	EXPECT_EQ((unsigned long)g_spin, ctx.rip);
}

static volatile sig_atomic_t handled;
static void count(int sig) { (void)sig; handled++; }

TEST_F(pvm, signal_outside_mask_eintr_and_delivered)
{
	struct sigcontext ctx;
	siginfo_t si;

	signal(SIGUSR1, count);
	init_ctx(&ctx, g_spin, 0);
	signal_me(SIGUSR1, 50);
	EXPECT_EQ(-1, pvm(self->target, &ctx, &si, SIG(SIGALRM)));
	EXPECT_EQ(EINTR, errno);
	EXPECT_EQ(1, handled);
	EXPECT_EQ((unsigned long)g_spin, ctx.rip);
}

TEST_F(pvm, target_killed_mid_borrow)
{
	pid_t borrower = spawn_borrower(self->target, 0, 1, 500);

	ASSERT_TRUE(borrowing_now());
	reap(self->target);
	self->target = 0;
	/* the borrow goes on (it holds the mm) until its SIGALRM, then returns */
	EXPECT_EQ(0, wait_for(borrower, 20));
}

TEST_F(pvm, target_exits_mid_borrow)
{
	pid_t target = fork(), borrower;

	if (target == 0) {
		usleep(300000);
		_exit(0);
	}
	usleep(20000);
	borrower = spawn_borrower(target, 0, 1, 800);
	ASSERT_TRUE(borrowing_now());
	waitpid(target, NULL, 0);
	EXPECT_EQ(0, wait_for(borrower, 20));
}

TEST_F(pvm, caller_killed_mid_borrow)
{
	pid_t borrower = spawn_borrower(self->target, 0, 1, 60000);
	uint64_t c;
	int status;

	ASSERT_TRUE(borrowing_now());
	kill(borrower, SIGKILL);
	status = wait_for(borrower, 20);
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) TH_LOG("status %#x", status);
	/* the guest stopped, and the target lives on */
	c = sh->counter[2];
	usleep(50000);
	EXPECT_EQ(c, sh->counter[2]);
	EXPECT_EQ(0, kill(self->target, 0));
}

static pid_t exec_target;

static void *borrow_forever(void *arg)
{
	struct sigcontext ctx;
	siginfo_t si;

	(void)arg;
	init_ctx(&ctx, g_spin, 3);
	sh->flag[1] = 1;
	pvm(exec_target, &ctx, &si, 0);
	return NULL;
}

TEST_F(pvm, exec_by_sibling_thread)
{
	pid_t pid;
	int status;

	exec_target = self->target;
	pid = fork();
	if (pid == 0) {
		pthread_t t;
		uint64_t c;

		pthread_create(&t, NULL, borrow_forever, NULL);
		while (!sh->flag[1])
			usleep(1000);
		do {
			c = sh->counter[3];
			usleep(5000);
		} while (c == sh->counter[3]);
		execl("/bin/sh", "sh", "-c", "exit 42", (char *)NULL);
		_exit(99);
	}
	status = wait_for(pid, 30);
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 42) TH_LOG("status %#x", status);
}

struct borrower_arg {
	int slot, calls, ok;
};

static pid_t concurrent_target;

static void *borrow_loop(void *p)
{
	struct borrower_arg *a = p;
	struct sigcontext ctx;
	siginfo_t si;

	init_ctx(&ctx, g_syscall, a->slot);
	for (int i = 0; i < a->calls; i++)
		a->ok += pvm(concurrent_target, &ctx, &si, 0) == 0 && si.si_signo == SIGSYS &&
			 ctx.rip == (unsigned long)g_after_syscall;
	return NULL;
}

TEST_F_TIMEOUT(pvm, concurrent_borrowers, 300)
{
	struct borrower_arg args[8];
	pthread_t t[8];

	concurrent_target = self->target;
	for (int i = 0; i < 8; i++) {
		args[i] = (struct borrower_arg){ .slot = 4 + i, .calls = 1000 };
		pthread_create(&t[i], NULL, borrow_loop, &args[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		EXPECT_EQ(1000, args[i].ok) TH_LOG("thread %d", i);
	}
}

static long meminfo_kb(const char *field)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field)) && line[strlen(field)] == ':')
			v = atol(line + strlen(field) + 1);
	if (f)
		fclose(f);
	return v;
}

TEST_F_TIMEOUT(pvm, no_leak_in_10000_borrow_cycles, 600)
{
	const size_t big = 256 << 20;
	long free0, free1, slab0, slab1;
	struct sigcontext ctx;
	pid_t target;
	siginfo_t si;
	char *mem;
	int ok = 0;

	/* a target with 256 MiB touched: a leaked mm reference keeps it */
	mem = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, mem);
	sync();
	free0 = meminfo_kb("MemFree");
	target = fork();
	if (target == 0) {
		memset(mem, 1, big);
		for (;;)
			pause();
	}
	usleep(300000);
	slab0 = meminfo_kb("Slab");
	init_ctx(&ctx, g_syscall, 0);
	for (int i = 0; i < 10000; i++)
		ok += pvm(target, &ctx, &si, 0) == 0;
	EXPECT_EQ(10000, ok);
	slab1 = meminfo_kb("Slab");
	reap(target);
	usleep(300000);
	free1 = meminfo_kb("MemFree");
	TH_LOG("Slab %ld -> %ld kB, MemFree %ld -> %ld kB", slab0, slab1, free0, free1);
	EXPECT_LT(slab1 - slab0, 512) TH_LOG("kernel memory grew by %ld kB", slab1 - slab0);
	/* MemFree drifts by some MiB (per-CPU page lists, page cache) */
	EXPECT_GT(free1, free0 - 128 * 1024) TH_LOG("the target's 256 MiB were not freed");
}

/* ---- hole 2: guest faults and the caller's signal dispositions ---- */

TEST_F(pvm, guest_fault_ignored_signal_does_not_kill_caller)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		struct sigcontext ctx;
		siginfo_t si;
		long ret;

		signal(SIGSEGV, SIG_IGN);
		init_ctx(&ctx, g_segv, 0);
		ret = pvm(self->target, &ctx, &si, 0);
		/* SIGSEGV is ignored by the caller and not in the mask: EINTR */
		_exit(ret == -1 && errno == EINTR ? 0 : 10);
	}
	status = wait_for(pid, 20);
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
		TH_LOG("caller status %#x (signal %d)", status, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

TEST_F(pvm, guest_fault_keeps_caller_dispositions_and_mask)
{
	struct sigaction sa = { .sa_handler = count }, now;
	struct sigcontext ctx;
	sigset_t block, cur;
	siginfo_t si;

	sigaction(SIGSEGV, &sa, NULL);
	signal(SIGILL, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGSEGV);
	sigprocmask(SIG_BLOCK, &block, NULL);

	init_ctx(&ctx, g_segv, 0);
	ASSERT_EQ(0, pvm(self->target, &ctx, &si, SIG(SIGSEGV)));
	EXPECT_EQ(SIGSEGV, si.si_signo);
	init_ctx(&ctx, g_ud2, 0);
	ASSERT_EQ(0, pvm(self->target, &ctx, &si, SIG(SIGILL)));
	EXPECT_EQ(SIGILL, si.si_signo);

	sigaction(SIGSEGV, NULL, &now);
	EXPECT_EQ((void *)count, (void *)now.sa_handler) TH_LOG("SIGSEGV handler reset");
	sigaction(SIGILL, NULL, &now);
	EXPECT_EQ((void *)SIG_IGN, (void *)now.sa_handler) TH_LOG("ignored SIGILL reset");
	sigprocmask(SIG_BLOCK, NULL, &cur);
	EXPECT_TRUE(sigismember(&cur, SIGSEGV)) TH_LOG("SIGSEGV unblocked");
	EXPECT_EQ(0, handled);
}

TEST_F(pvm, guest_fault_outside_mask_delivered_to_handler)
{
	struct sigcontext ctx;
	siginfo_t si;

	signal(SIGILL, count);
	init_ctx(&ctx, g_ud2, 0);
	EXPECT_EQ(-1, pvm(self->target, &ctx, &si, 0));
	EXPECT_EQ(EINTR, errno);
	EXPECT_EQ(1, handled);
	EXPECT_EQ((unsigned long)g_ud2, ctx.rip);
}

/* ---- the reviewers' hazards ---- */

TEST_F(pvm, fpu_state_isolated)
{
	uint64_t caller = 0x1111222233334444ull, guest = 0x5555666677778888ull, after;
	struct sigcontext ctx;
	siginfo_t si;

	init_ctx(&ctx, g_xmm, 0);
	ctx.rsi = guest;
	sh->word[0] = 0;
	asm volatile("movq %0, %%xmm0" : : "r"(caller) : "xmm0");
	ASSERT_EQ(0, pvm(self->target, &ctx, &si, 0));
	asm volatile("movq %%xmm0, %0" : "=r"(after) : : "xmm0");
	ASSERT_EQ((uint64_t)&sh->counter[0], ctx.rdi);
	if (sh->counter[0] == caller || after == guest)
		HAZARD(return, "FPU state shared: guest read caller's xmm0 %s, caller got guest's %s",
		       sh->counter[0] == caller ? "yes" : "no", after == guest ? "yes" : "no");
	EXPECT_EQ(caller, after);
}

TEST_F(pvm, fsbase_caller_survives_wrfsbase)
{
	unsigned long before, after;
	struct sigcontext ctx;
	siginfo_t si;

	if (!(getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE))
		SKIP(return, "no FSGSBASE");
	asm volatile("rdfsbase %0" : "=r"(before));
	init_ctx(&ctx, g_rdfsbase, 0);
	ctx.rsi = 0x12340000;
	ASSERT_EQ(0, pvm(self->target, &ctx, &si, 0));
	asm volatile("rdfsbase %0" : "=r"(after));
	EXPECT_EQ(before, after);
	/* the guest saw a base: the caller's, or an isolated one */
	if (sh->counter[0] == before)
		HAZARD(return, "the guest starts with the caller's FS base (%#lx)", before);
}

TEST_F(pvm, pkru_isolated)
{
	unsigned int eax, ebx, ecx, edx, pkru = 0x55555550;	/* keys 1-15 access-disabled */
	struct sigcontext ctx;
	siginfo_t si;

	asm volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(0));
	if (!(ecx & (1 << 4)))	/* OSPKE */
		SKIP(return, "no protection keys enabled (OSPKE)");
	asm volatile("wrpkru" : : "a"(pkru), "c"(0), "d"(0));
	init_ctx(&ctx, g_rdpkru, 0);
	sh->counter[0] = 0;
	ASSERT_EQ(0, pvm(self->target, &ctx, &si, 0));
	asm volatile("wrpkru" : : "a"(0), "c"(0), "d"(0));
	if (sh->counter[0] == pkru)
		HAZARD(return, "the guest runs with the caller's PKRU (%#x)", pkru);
}

/* ---- hole 3: mm->owner (memcg) ---- */

static int have_memcg(void)
{
	char line[256];
	int found = 0;
	FILE *f = fopen("/proc/cgroups", "r");

	while (f && fgets(line, sizeof(line), f))
		found |= !strncmp(line, "memory\t", 7);
	if (f)
		fclose(f);
	return found;
}

static pid_t owner_target;

static void *borrow_touching(void *arg)
{
	long slot = (long)arg;
	struct sigcontext ctx;
	siginfo_t si;

	if (slot == 5) {
		init_ctx(&ctx, g_spin, slot);
		signal_me(SIGALRM, 300);
		sh->flag[slot] = 1;
		pvm(owner_target, &ctx, &si, SIG(SIGALRM));
	} else {
		/* once thread 5 is gone, charge new pages to the target's mm:
		 * memcg reads mm->owner */
		char *region = (char *)sh->word[1];

		init_ctx(&ctx, g_wait_touch, slot);
		ctx.rdx = (unsigned long)&sh->flag[8];
		ctx.rdi = (unsigned long)region;
		ctx.rsi = (unsigned long)region + (8 << 20);
		signal_me(SIGALRM, 10000);	/* a backstop */
		sh->flag[slot] = 1;
		sh->flag[7] = pvm(owner_target, &ctx, &si, SIG(SIGALRM)) == 0 &&
			      si.si_signo == SIGSYS ? 1000 : errno;
	}
	return NULL;
}

/*
 * The target's owner exits while two threads borrow its mm: one of them
 * becomes the owner.  Thread 5 stops borrowing and exits; thread 6 then
 * charges pages to the target's mm.  If the owner was not handed on,
 * mm->owner points to the freed thread 5 (a use-after-free for KASAN).
 */
TEST_F(pvm, mm_owner_handed_on_when_borrower_leaves)
{
	pid_t pid;
	int status;

	if (!have_memcg())
		SKIP(return, "no memory cgroup controller (CONFIG_MEMCG)");
	sh->word[1] = (unsigned long)mmap(NULL, 8 << 20, PROT_READ | PROT_WRITE,
					  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	owner_target = spawn_target(0, 1);
	pid = fork();
	if (pid == 0) {
		pthread_t t5, t6;

		signal(SIGALRM, nothing);
		pthread_create(&t5, NULL, borrow_touching, (void *)5l);
		pthread_create(&t6, NULL, borrow_touching, (void *)6l);
		while (!sh->flag[5] || !sh->flag[6])
			usleep(1000);
		usleep(50000);
		kill(owner_target, SIGKILL);	/* the owner exits: a borrower is elected */
		pthread_join(t5, NULL);		/* thread 5 has left and is gone */
		usleep(200000);			/* past an RCU grace period: freed */
		sh->flag[8] = 1;
		pthread_join(t6, NULL);
		_exit(sh->flag[7] == 1000 ? 0 : 1);
	}
	status = wait_for(pid, 60);
	waitpid(owner_target, NULL, 0);
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
		TH_LOG("status %#x, touching thread: %d", status, sh->flag[7]);
}

/* ---- hole 4: OOM ---- */

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY), ok;

	if (fd < 0)
		return -1;
	ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	close(fd);
	return ok ? 0 : -1;
}

/*
 * A target in a memory cgroup limited to 32 MiB; the borrowing caller,
 * outside it, touches 128 MiB of the target's memory.  The OOM killer
 * must kill the target, not the borrower (which shared the target's mm
 * only as a borrower).
 */
TEST_F_TIMEOUT(pvm, oom_kill_of_target_spares_borrower, 120)
{
	const char *cg = "/sys/fs/cgroup/pvm-oom";
	char pidtext[32];
	pid_t target, borrower;
	int status, tstatus;
	char *region;

	if (!have_memcg())
		SKIP(return, "no memory cgroup controller (CONFIG_MEMCG)");
	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK))
		mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, NULL);
	if (write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory"))
		SKIP(return, "cannot enable the memory controller: %s", strerror(errno));
	mkdir(cg, 0755);
	ASSERT_EQ(0, write_file("/sys/fs/cgroup/pvm-oom/memory.max", "33554432"));
	region = mmap(NULL, 128 << 20, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(MAP_FAILED, region);
	target = spawn_target(0, 1);
	snprintf(pidtext, sizeof(pidtext), "%d", target);
	ASSERT_EQ(0, write_file("/sys/fs/cgroup/pvm-oom/cgroup.procs", pidtext));
	borrower = fork();
	if (borrower == 0) {
		struct sigcontext ctx;
		siginfo_t si;

		signal(SIGALRM, nothing);
		signal_me(SIGALRM, 30000);	/* a backstop */
		init_ctx(&ctx, g_touch, 0);
		ctx.rdi = (unsigned long)region;
		ctx.rsi = (unsigned long)region + (128 << 20);
		/*
		 * Once the OOM reaper has reaped the target's mm, faults in
		 * it get SIGBUS (MMF_UNSTABLE): in the mask, so returned.
		 */
		pvm(target, &ctx, &si, SIG(SIGALRM) | SIG(SIGBUS) | SIG(SIGSEGV));
		_exit(0);
	}
	status = wait_for(borrower, 90);
	waitpid(target, &tstatus, 0);
	rmdir(cg);
	EXPECT_TRUE(WIFSIGNALED(tstatus) && WTERMSIG(tstatus) == SIGKILL)
		TH_LOG("target status %#x: not OOM-killed?", tstatus);
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
		TH_LOG("borrower status %#x (signal %d): taken down with the target", status,
		       WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* ---- core dump while borrowing ---- */

TEST_F_TIMEOUT(pvm, core_dump_while_borrowing_holds_callers_memory, 120)
{
	const char *dir = "/run/tmp/pvm-core";
	char path[128], *buf;
	int status, fd, has_caller = 0, has_target = 0;
	pid_t pid;
	ssize_t n;

	char old_pattern[256] = "";
	FILE *f = fopen("/proc/sys/kernel/core_pattern", "r");

	if (!f || !fgets(old_pattern, sizeof(old_pattern), f))
		SKIP(return, "no /proc/sys/kernel/core_pattern (CONFIG_COREDUMP?)");
	fclose(f);
	mkdir(dir, 0755);
	if (write_file("/proc/sys/kernel/core_pattern", "/run/tmp/pvm-core/core.%p"))
		SKIP(return, "cannot set core_pattern: %s", strerror(errno));
	pid = fork();
	if (pid == 0) {
		struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
		struct sigcontext ctx;
		siginfo_t si;

		setrlimit(RLIMIT_CORE, &rl);
		prctl(PR_SET_DUMPABLE, 1);
		strcpy(marker, "CALLER-memory");
		init_ctx(&ctx, g_spin, 0);
		signal_me(SIGQUIT, 200);	/* SIGQUIT: dumps core; not in the mask */
		pvm(self->target, &ctx, &si, 0);
		_exit(0);
	}
	status = wait_for(pid, 60);
	write_file("/proc/sys/kernel/core_pattern", old_pattern);
	ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGQUIT) TH_LOG("status %#x", status);
	if (!WCOREDUMP(status))
		SKIP(return, "no core dumped (CONFIG_COREDUMP off?)");
	snprintf(path, sizeof(path), "%s/core.%d", dir, pid);
	fd = open(path, O_RDONLY);
	ASSERT_LE(0, fd);
	buf = malloc(1 << 20);
	while ((n = read(fd, buf, 1 << 20)) > 0) {
		has_caller |= memmem(buf, n, "CALLER-memory", 13) != NULL;
		has_target |= memmem(buf, n, "TARGET-memory", 13) != NULL;
	}
	close(fd);
	unlink(path);
	EXPECT_TRUE(has_caller) TH_LOG("the core lacks the caller's memory");
	EXPECT_FALSE(has_target) TH_LOG("the core holds the target's memory");
}

/* ---- fuzz ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t pick(const uint64_t *v, int n)
{
	return v[next() % n];
}

#define FUZZ_CALLS 100000

/*
 * FUZZ_CALLS calls with random and adversarial arguments from a fixed seed
 * (PVM_FUZZ_SEED overrides it): every call must return one of the allowed
 * results, and the caller and the kernel must live through it.
 */
TEST_F_TIMEOUT(pvm, fuzz_100000_calls_seeded, 3000)
{
	uint64_t seed = getenv("PVM_FUZZ_SEED") ? strtoull(getenv("PVM_FUZZ_SEED"), NULL, 0) : 12;
	int counts[5] = { 0 }, unexpected = 0;
	const int sigs[] = { SIGSEGV, SIGILL, SIGBUS, SIGFPE, SIGTRAP, SIGALRM, SIGUSR1 };
	struct sigcontext *ctx_ro, ctx;
	pid_t dead, foreign;
	char *ro;

	rng ^= seed * 0x2545f4914f6cdd1dull;
	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct sigaction sa = { .sa_handler = nothing };

		sigaction(sigs[i], &sa, NULL);
	}
	dead = fork();
	if (dead == 0)
		_exit(0);
	waitpid(dead, NULL, 0);
	foreign = spawn_target(UID_B, 1);
	ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ctx_ro = (void *)ro;

	/* a periodic signal ends guests that loop */
	struct itimerval it = { { 0, 20000 }, { 0, 20000 } };

	setitimer(ITIMER_REAL, &it, NULL);

	const uint64_t addrs[] = {
		(uint64_t)g_syscall, (uint64_t)g_ud2, (uint64_t)g_segv, (uint64_t)g_spin, 0, 1,
		0x7ffffffff000ull, 0x800000000000ull, 0x8000000000000000ull,
		0xffff800000000000ull, 0xffffffff81000000ull, 0xffffffffff600000ull, ~0ull,
	};
	const uint64_t selectors[] = { 0x33, 0x2b, 0x23, 0x10, 0x18, 0, 3, 0xffff, 0x1234, 0x43 };

	for (int i = 0; i < FUZZ_CALLS; i++) {
		uint64_t mask = next(), flags = 0, size = 8, r = next();
		void *pctx = &ctx, *pinfo, *pmask = &mask;
		pid_t pid;
		siginfo_t si;
		long ret;

		switch (r % 16) {
		case 0: pid = dead; break;
		case 1: pid = foreign; break;
		case 2: pid = (pid_t)(next() | 0x40000000); break;	/* none such, or negative */
		case 3: pid = 0; break;
		case 4: pid = 2; break;
		default: pid = self->target; break;
		}
		init_ctx(&ctx, g_syscall, 0);
		ctx.rip = next() % 4 ? pick(addrs, 13) : next();
		ctx.rsp = next() % 4 ? ctx.rsp : pick(addrs, 13);
		ctx.eflags = next() % 2 ? next() : 0x202 | (next() & 0x40dd5);
		if (next() % 4 == 0) {
			ctx.cs = pick(selectors, 10);
			ctx.__pad0 = pick(selectors, 10);
		}
		if (next() % 8 == 0) {
			uint64_t *regs = (uint64_t *)&ctx;

			for (int k = 0; k < 8; k++)
				regs[next() % 24] = next();
		}
		ctx.fpstate = next() % 64 ? 0 : (void *)next();
		if (next() % 32 == 0)
			flags = next() % 2 ? 1ull << (next() % 64) : next();
		if (next() % 32 == 0)
			size = next() % 2 ? next() % 17 : next();
		switch (next() % 16) {
		case 0: pctx = NULL; break;
		case 1: pctx = (void *)pick(addrs, 13); break;
		case 2: pctx = ctx_ro; break;
		}
		pinfo = next() % 16 ? (void *)&si : (void *)pick(addrs, 13);
		if (next() % 32 == 0)
			pmask = (void *)pick(addrs, 13);

		errno = 0;
		ret = pvm_raw(pid, pctx, flags, pinfo, pmask, size);
		if (ret == 0)
			counts[0]++;
		else if (ret == -1 && (errno == EINVAL || errno == ESRCH || errno == EPERM))
			counts[1]++;
		else if (ret == -1 && errno == EFAULT)
			counts[2]++;
		else if (ret == -1 && errno == EINTR)
			counts[3]++;
		else if (unexpected++ < 10)
			TH_LOG("call %d: ret %ld errno %d (rip %#llx flags %#llx size %#llx)", i, ret,
			       errno, (unsigned long long)ctx.rip, (unsigned long long)flags,
			       (unsigned long long)size);
		counts[4]++;
		if (kill(self->target, 0))	/* a guest may kill the target (e.g. exit_group) */
			self->target = spawn_target(0, 1);
	}
	it = (struct itimerval){ 0 };
	setitimer(ITIMER_REAL, &it, NULL);
	TH_LOG("seed %llu: %d calls: %d returned 0, %d EINVAL/ESRCH/EPERM, %d EFAULT, %d EINTR",
	       (unsigned long long)seed, counts[4], counts[0], counts[1], counts[2], counts[3]);
	EXPECT_EQ(0, unexpected);
	EXPECT_EQ(FUZZ_CALLS, counts[4]);
	EXPECT_LT(0, counts[0]);
	/* still working */
	init_ctx(&ctx, g_syscall, 0);
	ASSERT_EQ(0, pvm(self->target, &ctx, &(siginfo_t){ 0 }, 0));
	EXPECT_EQ((unsigned long)g_after_syscall, ctx.rip);
	reap(foreign);
}

TEST_HARNESS_MAIN
