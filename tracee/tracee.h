/* SPDX-License-Identifier: MIT */
/*
 * The syscall loop every backend drives.
 *
 * The loop issues raw `syscall` instructions (getppid with a marker argument)
 * and compares every return value with the one it was told to expect, so a
 * run proves that its syscalls were intercepted and emulated (or, natively,
 * really executed).  Its state lives in memory shared with the driver, so the
 * results are visible whichever thread ran the loop: the tracee itself, or a
 * tracer that borrowed the tracee's address space (process_vm_exec).
 */
#ifndef VMEXEC_TRACEE_H
#define VMEXEC_TRACEE_H

#include <stdint.h>
#include <sys/syscall.h>

/* The intercepted syscall: cheap, side-effect free, has one unused argument. */
#define LOOP_SYSCALL   SYS_getppid
/* First argument of each measured call, and of the single call that ends the loop. */
#define LOOP_ARG       0x5ca1ab1eL
#define LOOP_END_ARG   0xe0d0e0d0L

#define PAGE_BYTES 4096
/* Most pages a tracee writes between two calls (-k). */
#define MAX_PAGES  (1L << 20)
#define CACHE_LINE 64
#define LINES_PER_PAGE (PAGE_BYTES / CACHE_LINE)

struct loop_state {
	/* Inputs, set by the driver before the loop starts. */
	long syscalls;            /* measured calls to make */
	long expect;              /* value each call must return */
	long pages;               /* distinct pages written between two calls */
	volatile char *page_buf;  /* pages * PAGE_BYTES bytes, in the tracee's mm */
	int self_timed;           /* in-process backends: the loop times itself */

	/* Outputs, written by the loop. */
	long calls;               /* measured calls made */
	long matched;             /* calls whose return value was `expect` */
	long first_bad;           /* return value of the first mismatch */
	uint64_t t0_ns, t1_ns;    /* CLOCK_MONOTONIC around the loop, if self_timed */
};

/*
 * Run the loop on `st`, then make the end call.  Uses no libc, no TLS and no
 * stack protector, so it also runs on a borrowed thread whose FS base belongs
 * to another process.  Returns the number of mismatches.
 */
long syscall_loop(struct loop_state *st);

/* Entry point for borrowed execution: runs the loop, never returns. */
void syscall_loop_borrowed(struct loop_state *st) __attribute__((noreturn));

/* `vmexec tracee ...`: the loop in a process of its own (tracee.c). */
int tracee_main(int argc, char **argv);

/*
 * Every `syscall` instruction raw_syscall1() emits is recorded, as an offset
 * from its own entry, in the section vmexec_syscall_sites (the binary
 * rewriting backends patch exactly these addresses and nothing else; the
 * section holds data only, so the loop's instructions are the same for every
 * backend).  The linker provides __start_/__stop_vmexec_syscall_sites.
 */
static inline long raw_syscall1(long nr, long arg)
{
	long ret;

	asm volatile("1:	syscall\n"
		     "	.pushsection vmexec_syscall_sites, \"a\"\n"
		     "	.balign 4\n"
		     "	.long 1b - .\n"
		     "	.popsection"
		     : "=a"(ret) : "a"(nr), "D"(arg) : "rcx", "r11", "memory");
	return ret;
}

/*
 * Markers a QEMU TCG plugin can match to bracket the measured loop: multi-byte
 * NOPs (`nopl imm32(%rax,%rax,1)`) whose displacement spells "VMXB"/"VMXE".
 * They cost nothing and change no state.
 */
#define LOOP_MARK_BEGIN() asm volatile(".byte 0x0f,0x1f,0x84,0x00; .long 0x42584d56")
#define LOOP_MARK_END()   asm volatile(".byte 0x0f,0x1f,0x84,0x00; .long 0x45584d56")

#endif
