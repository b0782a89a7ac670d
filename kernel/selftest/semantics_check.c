// SPDX-License-Identifier: MIT
/*
 * Checks the kernel port's semantics (kernel/README.md) from user space, on
 * the patched kernel (tests/test_vm.py runs it in the guest).  One line per
 * check; exit status 1 if any failed, 3 if the kernel has no process_vm_exec.
 *
 *   gcc -O2 -Wall -pthread -o semantics_check kernel/selftest/semantics_check.c
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../tracers/process_vm_exec.h"

#define STACK_BYTES (64 * 1024)
#define SIG(s) (1ul << ((s) - 1))
#define HWCAP2_FSGSBASE (1 << 1)

/* Guest code, run on the child's mm (a fork: the same addresses). */
asm(".text\n"
    ".globl guest_syscall, guest_after_syscall, guest_ud2, guest_spin, guest_wrfsbase\n"
    "guest_syscall: mov $39, %eax\n syscall\n"
    "guest_after_syscall: jmp guest_syscall\n"
    "guest_ud2: ud2\n"
    "guest_spin: jmp guest_spin\n"
    "guest_wrfsbase: wrfsbase %rdi\n mov $39, %eax\n syscall\n jmp guest_wrfsbase\n");
extern char guest_syscall[], guest_after_syscall[], guest_ud2[], guest_spin[], guest_wrfsbase[];

static pid_t child;
static char *stack;
static int failures;
static volatile sig_atomic_t handled;
static __thread long tls_canary = 0x7e57;

static void check(int ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s ", ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	failures += !ok;
}

static long pvm(struct sigcontext *ctx, unsigned long flags, siginfo_t *si, unsigned long mask,
		size_t size)
{
	return syscall(NR_process_vm_exec, child, ctx, flags, si, &mask, size);
}

static void init_ctx(struct sigcontext *ctx, const void *rip)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->rip = (unsigned long)rip;
	ctx->rsp = (unsigned long)stack + STACK_BYTES - 8;
	ctx->cs = 0x33;
	ctx->__pad0 = 0x2b;	/* ss */
	ctx->eflags = 0x202;
}

static void on_signal(int sig)
{
	(void)sig;
	handled++;
}

static void test_arguments(void)
{
	struct sigcontext ctx;
	siginfo_t si;

	init_ctx(&ctx, guest_syscall);
	check(pvm(&ctx, 1, &si, 0, 8) == -1 && errno == EINVAL, "flags != 0: EINVAL");
	check(pvm(&ctx, 0, &si, 0, 4) == -1 && errno == EINVAL, "masksize != 8: EINVAL");
	ctx.fpstate = (void *)stack;
	check(pvm(&ctx, 0, &si, 0, 8) == -1 && errno == EINVAL, "fpstate != 0: EINVAL");
	init_ctx(&ctx, guest_syscall);
	check(syscall(NR_process_vm_exec, 0x7ffffff0, &ctx, 0, &si, &(unsigned long){0}, 8) == -1 &&
	      errno == ESRCH, "no such pid: ESRCH");
}

static void test_syscall_trap(void)
{
	struct sigcontext ctx;
	siginfo_t si;
	long ret;

	init_ctx(&ctx, guest_syscall);
	ctx.r12 = 0x1212;
	ctx.rbx = 0xb0b0;
	ret = pvm(&ctx, 0, &si, 0, 8);
	check(ret == 0 && si.si_signo == SIGSYS && si.si_syscall == 39,
	      "syscall ends the call: ret %ld, signal %d, si_syscall %d", ret, si.si_signo, si.si_syscall);
	check(ctx.rip == (unsigned long)guest_after_syscall && si.si_call_addr == guest_after_syscall,
	      "rip and si_call_addr point after the syscall");
	check((long)ctx.rax == -ENOSYS, "rax = -ENOSYS (%lld)", (long long)ctx.rax);
	check(ctx.r12 == 0x1212 && ctx.rbx == 0xb0b0 && ctx.rcx == ctx.rip,
	      "registers round-trip (r12, rbx; rcx = rip)");
	ret = pvm(&ctx, 0, &si, 0, 8);
	check(ret == 0 && ctx.rip == (unsigned long)guest_after_syscall, "the next call resumes the guest");
}

static void test_fault(void)
{
	struct sigcontext ctx;
	siginfo_t si;
	long ret;

	init_ctx(&ctx, guest_ud2);
	ret = pvm(&ctx, 0, &si, SIG(SIGILL), 8);
	check(ret == 0 && si.si_signo == SIGILL && ctx.rip == (unsigned long)guest_ud2,
	      "a fault in the mask is returned: ret %ld, signal %d", ret, si.si_signo);

	signal(SIGILL, on_signal);
	handled = 0;
	init_ctx(&ctx, guest_ud2);
	ret = pvm(&ctx, 0, &si, 0, 8);
	check(ret == -1 && errno == EINTR && handled == 1,
	      "a fault outside the mask: EINTR, delivered to the caller (handled %d)", (int)handled);
	signal(SIGILL, SIG_DFL);
}

static void arm_timer(int ms)
{
	struct itimerval it = { .it_value = { .tv_usec = ms * 1000 } };

	setitimer(ITIMER_REAL, &it, NULL);
}

static void test_async_signal(void)
{
	struct sigcontext ctx;
	siginfo_t si;
	long ret;

	signal(SIGALRM, on_signal);
	handled = 0;
	init_ctx(&ctx, guest_spin);
	arm_timer(50);
	ret = pvm(&ctx, 0, &si, SIG(SIGALRM), 8);
	check(ret == 0 && si.si_signo == SIGALRM && handled == 0,
	      "a signal in the mask is dequeued and returned (ret %ld, signal %d)", ret, si.si_signo);

	arm_timer(50);
	ret = pvm(&ctx, 0, &si, 0, 8);
	check(ret == -1 && errno == EINTR && handled == 1 && ctx.rip == (unsigned long)guest_spin,
	      "a signal outside the mask: EINTR, handler ran, guest state saved");
	signal(SIGALRM, SIG_DFL);
}

static void test_fsbase(void)
{
	unsigned long before, after;
	struct sigcontext ctx;
	siginfo_t si;

	if (!(getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE)) {
		printf("skip FS base (no FSGSBASE)\n");
		return;
	}
	syscall(SYS_arch_prctl, ARCH_GET_FS, &before);
	init_ctx(&ctx, guest_wrfsbase);
	ctx.rdi = 0x12340000;
	pvm(&ctx, 0, &si, 0, 8);
	syscall(SYS_arch_prctl, ARCH_GET_FS, &after);
	check(before == after && tls_canary == 0x7e57,
	      "the caller's FS base survives WRFSBASE in the guest (%#lx -> %#lx)", before, after);
}

static pid_t borrower;

/* Migrate the borrowing thread back and forth: rseq events while borrowed. */
static void *migrate(void *arg)
{
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);	/* SIGALRM is for the borrower */
	for (int i = 0; i < 40; i++) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(i % 2, &set);
		sched_setaffinity(borrower, sizeof(set), &set);
		usleep(5000);
	}
	return NULL;
}

static void test_rseq(void)
{
	struct rseq *rs = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	const unsigned sentinel = 0xdeadbeef;
	unsigned child_cpu = 0, cpu = 0;
	struct sigcontext ctx;
	char mem_path[64];
	pthread_t helper;
	siginfo_t si;
	FILE *mem;

	if (__rseq_size == 0 || sysconf(_SC_NPROCESSORS_ONLN) < 2) {
		printf("skip rseq (glibc rseq off or one CPU)\n");
		return;
	}
	/* The child is stopped: nothing but a stray kernel write changes its cpu_id. */
	snprintf(mem_path, sizeof(mem_path), "/proc/%d/mem", child);
	mem = fopen(mem_path, "r+");
	if (!mem || fseek(mem, (long)&rs->cpu_id, SEEK_SET) || fwrite(&sentinel, 4, 1, mem) != 1 ||
	    fflush(mem)) {
		check(0, "writing %s: %s", mem_path, strerror(errno));
		return;
	}
	signal(SIGALRM, on_signal);
	borrower = gettid();
	pthread_create(&helper, NULL, migrate, NULL);
	init_ctx(&ctx, guest_spin);
	arm_timer(150);
	pvm(&ctx, 0, &si, SIG(SIGALRM), 8);
	pthread_join(helper, NULL);
	signal(SIGALRM, SIG_DFL);

	if (fseek(mem, (long)&rs->cpu_id, SEEK_SET) || fread(&child_cpu, 4, 1, mem) != 1)
		child_cpu = 0;
	check(child_cpu == sentinel, "the caller's rseq area is not written into the target (%#x)",
	      child_cpu);
	fclose(mem);
	syscall(SYS_getcpu, &cpu, NULL, NULL);
	check(rs->cpu_id == cpu, "the caller's own rseq cpu_id is current (%u, getcpu %u)",
	      rs->cpu_id, cpu);
}

int main(void)
{
	int status;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (process_vm_exec_present() != 1) {
		printf("skip: no %s in /proc/kallsyms\n", PROCESS_VM_EXEC_KSYM);
		return 3;
	}
	stack = mmap(NULL, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	child = fork();
	if (child == 0) {
		kill(getpid(), SIGSTOP);
		for (;;)
			pause();
	}
	waitpid(child, &status, WUNTRACED);

	test_arguments();
	test_syscall_trap();
	test_fault();
	test_async_signal();
	test_fsbase();
	test_rseq();

	kill(child, SIGKILL);
	printf("%d failed\n", failures);
	return failures ? 1 : 0;
}
