// SPDX-License-Identifier: MIT
/*
 * Binary rewriting, shared by zpoline, lazypoline and systrap-patch: instead
 * of entering the kernel per call, the loop's `syscall` instructions are
 * rewritten into calls to an interposer in the same process, which emulates
 * the loop's getppid (returns the injected value) and really performs any
 * other call.
 *
 * Which bytes are patched.  Only the `syscall` instructions raw_syscall1()
 * records in the section vmexec_syscall_sites (tracee.h): exact instruction
 * addresses known at build time, never a byte scan, and each checked to still
 * read 0f 05 before it is touched.  A trap at any other address is not
 * patched.
 *
 * Two ways to patch a site:
 *   - zpoline's (rw_patch_call_rax): the 2-byte `syscall` (0f 05) becomes the
 *     2-byte `call *%rax` (ff d0).  rax holds the syscall number, so the call
 *     lands at that address in a trampoline page mapped at virtual address 0:
 *     a sled of 512 one-byte nops (one entry per syscall number), then a
 *     jump to rw_hook.  The patch is one 16-bit store where the site does not
 *     cross a cache line (x86 makes such a store atomic), so no thread could
 *     ever fetch half an instruction; where it does, two bytes written by
 *     the only thread (see below).
 *   - gVisor systrap's (rw_patch_window): the `syscall` and the instruction
 *     before it that loads rax (`mov $imm32, %eax` or `mov %r64, %rax`)
 *     become a 5-byte `call rel32` to a stub of its own near the text that
 *     replays that load and jumps to rw_hook; no page at address 0.  A site
 *     without such a load is left alone and keeps trapping, as in gVisor.
 *     This is 5 to 7 bytes, not one store.
 *
 * The tracee is single-threaded whenever it patches: zpoline before the loop,
 * lazypoline and systrap-patch from the SIGSYS handler of the only thread,
 * stopped just after the site; so nothing executes a site while it changes,
 * and the kernel's return from the signal (or the next call) serialises
 * before the new bytes run.
 *
 * Either way the text page is made writable (rwx, since the code patching it
 * may share the page) only around the store and then put back to r-x; the
 * patched pages' protection and bytes are checked after the loop
 * (rw_check(), from /proc/self/maps).
 *
 * The `call` pushes its return address below the caller's stack pointer,
 * into the 8 bytes of the red zone just below it: harmless in syscall_loop(),
 * which calls clock_gettime() and so is not a leaf function (GCC uses the
 * red zone only in leaves); rw_hook spares the rest of the red zone.  rw_hook saves every
 * register the kernel's syscall preserves, and rw_dispatch uses general
 * registers only (the loop may keep values in xmm registers across a
 * syscall).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "compat.h"
#include "vmexec.h"

#define SLED 512		/* trampoline entries: every x86-64 syscall number is below */
#define MAX_PATCHED 64
#define CALIB_SITES 16		/* fresh sites whose first call rw_first_call_ns() times */
#define CALIB_STRIDE 16
#define CALIB_AT 8		/* a site's code starts here in its stride: bytes before it are ours */
#define STUB_BYTES 32

extern const int32_t __start_vmexec_syscall_sites[], __stop_vmexec_syscall_sites[];
/* The loop's function: offsets in messages are from it, and stubs go near it. */
#define TEXT ((const char *)syscall_loop)
void rw_hook(void);

/* The interposer's state: one per tracee, set before any site is patched. */
static struct session *rw_session;
static long rw_inject;
static enum rw_mode rw_mode;
static volatile char *rw_selector;	/* lazypoline's syscall user dispatch selector, else NULL */
static volatile long rw_hook_calls, rw_trap_calls;

static struct patched {
	char *site;		/* the patched bytes' first address */
	int len;
	unsigned char bytes[8];	/* what they must read now */
} rw_patched[MAX_PATCHED];
static int rw_npatched;
int rw_fault_text_writable;

/* Pages near the text: fresh sites for the first-call measurement, and systrap's stubs. */
static char *calib_page, *stub_page;
static int stub_used;

/*
 * The hook the trampoline and the stubs jump to: [rsp] is the return address
 * after the rewritten site, rax the syscall number, rdi..r9 its arguments.
 * rcx and r11 are free (the kernel's syscall clobbers them too).
 */
asm(".pushsection .text\n"
    ".globl rw_hook\n"
    ".hidden rw_hook\n"
    ".type rw_hook, @function\n"
    "rw_hook:\n"
    "	lea -128(%rsp), %rsp\n"	/* spare the red zone below the return address, as zpoline does */
    "	push %rbp\n"
    "	mov %rsp, %rbp\n"
    "	and $-16, %rsp\n"
    "	push %rdi\n"
    "	push %rsi\n"
    "	push %rdx\n"
    "	push %r10\n"
    "	push %r8\n"
    "	push %r9\n"
    "	sub $8, %rsp\n"
    "	push %r9\n"		/* the 7th C argument: a6 */
    "	mov %r8, %r9\n"
    "	mov %r10, %r8\n"
    "	mov %rdx, %rcx\n"
    "	mov %rsi, %rdx\n"
    "	mov %rdi, %rsi\n"
    "	mov %rax, %rdi\n"
    "	call rw_dispatch\n"
    "	add $16, %rsp\n"
    "	pop %r9\n"
    "	pop %r8\n"
    "	pop %r10\n"
    "	pop %rdx\n"
    "	pop %rsi\n"
    "	pop %rdi\n"
    "	leave\n"
    "	lea 128(%rsp), %rsp\n"
    "	ret\n"
    ".size rw_hook, . - rw_hook\n"
    ".popsection\n");

static long real_syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
	register long r10 asm("r10") = a4, r8 asm("r8") = a5, r9 asm("r9") = a6;
	long ret;

	asm volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
		     : "rcx", "r11", "memory");
	return ret;
}

static int is_loop_call(long nr, long a1)
{
	return nr == LOOP_SYSCALL && (a1 == LOOP_ARG || a1 == LOOP_END_ARG);
}

/* Called by rw_hook for every call of a rewritten site. */
__attribute__((used, visibility("hidden"), target("general-regs-only")))
long rw_dispatch(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
	long ret;

	if (is_loop_call(nr, a1)) {
		rw_hook_calls++;
		/* The loop is over: let the tracee's exit and anything after it run. */
		if (a1 == LOOP_END_ARG && rw_selector)
			*rw_selector = SYSCALL_DISPATCH_FILTER_ALLOW;
		return rw_inject;
	}
	/* Not the loop's: really perform it (with dispatch off around it, under lazypoline). */
	if (!rw_selector)
		return real_syscall6(nr, a1, a2, a3, a4, a5, a6);
	*rw_selector = SYSCALL_DISPATCH_FILTER_ALLOW;
	ret = real_syscall6(nr, a1, a2, a3, a4, a5, a6);
	*rw_selector = SYSCALL_DISPATCH_FILTER_BLOCK;
	return ret;
}

int rw_init(struct session *s, enum rw_mode mode, volatile char *sud_selector)
{
	rw_session = s;
	rw_inject = s->cfg->inject;
	rw_mode = mode;
	rw_selector = sud_selector;
	return 0;
}

/* The site at `site`: a recorded raw_syscall1() one, or one of the first-call measurement's. */
int rw_is_site(const char *site)
{
	if (calib_page && site >= calib_page && site < calib_page + CALIB_SITES * CALIB_STRIDE)
		return (site - calib_page) % CALIB_STRIDE == CALIB_AT + 3;
	for (const int32_t *e = __start_vmexec_syscall_sites; e < __stop_vmexec_syscall_sites; e++)
		if ((const char *)e + *e == site)
			return 1;
	return 0;
}

/* The recorded sites (at most max), for patching them all ahead. */
int rw_sites(char **out, int max)
{
	int n = 0;

	for (const int32_t *e = __start_vmexec_syscall_sites; e < __stop_vmexec_syscall_sites && n < max; e++)
		out[n++] = (char *)e + *e;
	return n;
}

static int map_page0(long unused)
{
	void *p;

	(void)unused;
	p = mmap(NULL, PAGE_BYTES, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	if (p != NULL) {
		errno = EFAULT;
		return -1;
	}
	return 0;
}

/* Why the trampoline at address 0 cannot be mapped here, or NULL. */
const char *rw_page0_unavailable(const char *backend)
{
	char what[192], value[32] = "?";
	int err = probe_in_child(map_page0, 0), fd;
	ssize_t len;

	if (!err)
		return NULL;
	fd = open("/proc/sys/vm/mmap_min_addr", O_RDONLY);
	if (fd >= 0) {
		len = read(fd, value, sizeof(value) - 1);
		value[len > 0 ? len : 0] = '\0';
		value[strcspn(value, "\n")] = '\0';
		close(fd);
	}
	snprintf(what, sizeof(what), "%s maps its trampoline at address 0, and vm.mmap_min_addr is %s"
		 " (needs 0: sysctl -w vm.mmap_min_addr=0)", backend, value);
	return unavailable_reason(err, what);
}

int rw_map_trampoline(struct session *s)
{
	unsigned char *t;
	uint64_t hook = (uint64_t)rw_hook;

	t = mmap(NULL, PAGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (t == MAP_FAILED)
		return fail_errno(s, "mmap(trampoline at address 0)");
	if (t != NULL)
		return fail(s, "mmap(trampoline at address 0) gave %p", (void *)t);
	/* Address 0 is a null pointer to C: hide its value from the compiler before writing through it. */
	asm("" : "+r"(t));
	memset(t, 0x90, SLED);				/* nop: one entry per syscall number */
	t[SLED] = 0x49;					/* movabs $rw_hook, %r11 */
	t[SLED + 1] = 0xbb;
	memcpy(t + SLED + 2, &hook, 8);
	t[SLED + 10] = 0x41;				/* jmp *%r11 */
	t[SLED + 11] = 0xff;
	t[SLED + 12] = 0xe3;
	if (mprotect(t, PAGE_BYTES, PROT_READ | PROT_EXEC))
		return fail_errno(s, "mprotect(trampoline, r-x)");
	return 0;
}

/* Write `len` bytes of code at `at`: the page(s) rwx around the store, then r-x again. */
static int write_text(struct session *s, char *at, const void *bytes, int len, int atomic16)
{
	uintptr_t first = (uintptr_t)at & ~(uintptr_t)(PAGE_BYTES - 1);
	size_t span = ((uintptr_t)at + len - first + PAGE_BYTES - 1) & ~(uintptr_t)(PAGE_BYTES - 1);
	struct patched *p;

	if (rw_npatched == MAX_PATCHED) {
		fail_async(s, "binary rewriting: too many patched sites, at most ", MAX_PATCHED);
		return -1;
	}
	if (mprotect((void *)first, span, PROT_READ | PROT_WRITE | PROT_EXEC)) {
		fail_async(s, "binary rewriting: mprotect(text, rwx) failed, errno ", errno);
		return -1;
	}
	if (atomic16)
		__atomic_store_n((uint16_t *)at, *(const uint16_t *)bytes, __ATOMIC_RELEASE);
	else
		memcpy(at, bytes, len);
	if (!rw_fault_text_writable && mprotect((void *)first, span, PROT_READ | PROT_EXEC)) {
		fail_async(s, "binary rewriting: mprotect(text, r-x) failed, errno ", errno);
		return -1;
	}
	p = &rw_patched[rw_npatched++];
	p->site = at;
	p->len = len;
	memcpy(p->bytes, bytes, len);
	return 0;
}

/* zpoline: `syscall` (0f 05) -> `call *%rax` (ff d0), one 16-bit store. */
int rw_patch_call_rax(struct session *s, char *site)
{
	static const unsigned char call_rax[2] = { 0xff, 0xd0 };

	if (!rw_is_site(site) || site[0] != 0x0f || site[1] != 0x05) {
		fail_async(s, "binary rewriting: not a recorded syscall instruction at offset ", site - TEXT);
		return -1;
	}
	/*
	 * A 16-bit store is atomic unless it crosses a cache line; one that does
	 * (where the linker happened to put the site) is two byte stores, safe
	 * only because the tracee is single-threaded when it patches.
	 */
	return write_text(s, site, call_rax, 2, (uintptr_t)site % CACHE_LINE != CACHE_LINE - 1);
}

/* A page within rel32 reach of the text (systrap's stubs, the first-call sites), r-x. */
static char *near_text_page(void)
{
	uintptr_t text = (uintptr_t)TEXT & ~(uintptr_t)(PAGE_BYTES - 1);

	for (uintptr_t delta = 1 << 24; delta < (1UL << 30); delta <<= 1) {
		for (int dir = -1; dir <= 1; dir += 2) {
			void *want = (void *)(text + dir * (intptr_t)delta), *p;

			p = mmap(want, PAGE_BYTES, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
				 -1, 0);
			if (p == want)
				return p;
			if (p != MAP_FAILED)
				munmap(p, PAGE_BYTES);
		}
	}
	return NULL;
}

static int rel32(const char *from_end, const char *to, int32_t *out)
{
	intptr_t d = to - from_end;

	if (d < INT32_MIN || d > INT32_MAX)
		return -1;
	*out = (int32_t)d;
	return 0;
}

/*
 * gVisor systrap's patch: the load of rax before the `syscall`, and the
 * syscall, become `call rel32` to a stub (that load, then a jump to rw_hook),
 * padded with a 2-byte nop when the load was 5 bytes long.  Returns 1 if
 * patched, 0 if the site has no such load (it keeps trapping), -1 on error.
 * The window must not be a branch target inside: the load starts it, and a
 * branch to the load (the loop's own) still finds an instruction there.
 */
int rw_patch_window(struct session *s, char *site)
{
	unsigned char *b = (unsigned char *)site, patch[8], stub[STUB_BYTES];
	uint64_t hook = (uint64_t)rw_hook;
	int load, len, n = 0;
	int32_t rel;
	char *start, *at;

	if (!rw_is_site(site) || b[0] != 0x0f || b[1] != 0x05) {
		fail_async(s, "binary rewriting: not a recorded syscall instruction at offset ", site - TEXT);
		return -1;
	}
	/* The longer match first, as 3 bytes say more than 1. */
	if ((b[-3] == 0x48 || b[-3] == 0x4c) && b[-2] == 0x89 && (b[-1] & 0xc7) == 0xc0)
		load = 3;					/* mov %r64, %rax */
	else if (b[-5] == 0xb8)					/* mov $imm32, %eax */
		load = 5;
	else
		return 0;
	start = site - load;
	len = load + 2;
	if (!stub_page && !(stub_page = near_text_page())) {
		fail_async(s, "systrap-patch: no page for stubs within 2 GiB of the text, errno ", errno);
		return -1;
	}
	if (stub_used + STUB_BYTES > PAGE_BYTES) {
		fail_async(s, "systrap-patch: out of stub space after sites: ", stub_used / STUB_BYTES);
		return -1;
	}
	at = stub_page + stub_used;
	memcpy(stub, start, load);				/* the load, replayed */
	n = load;
	stub[n++] = 0x49;					/* movabs $rw_hook, %r11 */
	stub[n++] = 0xbb;
	memcpy(stub + n, &hook, 8);
	n += 8;
	stub[n++] = 0x41;					/* jmp *%r11 */
	stub[n++] = 0xff;
	stub[n++] = 0xe3;
	if (rel32(start + 5, at, &rel)) {
		fail_async(s, "systrap-patch: the stub page is out of rel32 reach of offset ", site - TEXT);
		return -1;
	}
	if (mprotect(stub_page, PAGE_BYTES, PROT_READ | PROT_WRITE)) {
		fail_async(s, "systrap-patch: mprotect(stubs, rw-) failed, errno ", errno);
		return -1;
	}
	memcpy(at, stub, n);
	stub_used += STUB_BYTES;
	if (mprotect(stub_page, PAGE_BYTES, PROT_READ | PROT_EXEC)) {
		fail_async(s, "systrap-patch: mprotect(stubs, r-x) failed, errno ", errno);
		return -1;
	}
	patch[0] = 0xe8;					/* call rel32 */
	memcpy(patch + 1, &rel, 4);
	if (len == 7) {
		patch[5] = 0x66;				/* xchg %ax,%ax: a 2-byte nop */
		patch[6] = 0x90;
	}
	return write_text(s, start, patch, len, 0) ? -1 : 1;
}

/*
 * A loop call that trapped at `site` (its first execution, or a site that
 * could not be patched): counted, and the value to return.  A site that traps
 * again after it was patched is an error: its patch did not take.
 */
long rw_trapped(struct session *s, char *site)
{
	for (int i = 0; i < rw_npatched; i++)
		if (site >= rw_patched[i].site && site < rw_patched[i].site + rw_patched[i].len)
			fail_async(s, "binary rewriting: a patched site trapped again, at offset ", site - TEXT);
	rw_trap_calls++;
	return rw_inject;
}

/* Call a site (`mov %rsi, %rax; syscall; ret`) below the red zone; returns rax. */
static long call_site(const char *site, long nr, long arg)
{
	long ret;

	asm volatile("sub $128, %%rsp\n\tcall *%[site]\n\tadd $128, %%rsp"
		     : "=a"(ret) : [site] "d"(site), "S"(nr), "D"(arg) : "rcx", "r11", "memory", "cc");
	return ret;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The first call's cost at a fresh site: CALIB_SITES sites of our own (near
 * the text, each `mov %rsi, %rax; syscall; ret`), each called once for the
 * first time and timed around the call: the trap, the patch, the return.
 * Returns the median in ns (0 after failing: s->error says why).  Runs after
 * the backend's traps are armed, before the loop; its sites are then unmapped
 * and its counts forgotten.
 */
uint64_t rw_first_call_ns(struct session *s)
{
	static const unsigned char site_code[] = { 0x48, 0x89, 0xf0, 0x0f, 0x05, 0xc3 };
	uint64_t ns[CALIB_SITES];
	int ok = 1;

	if (!(calib_page = near_text_page())) {
		fail_errno(s, "binary rewriting: mmap(first-call sites near the text)");
		return 0;
	}
	if (mprotect(calib_page, PAGE_BYTES, PROT_READ | PROT_WRITE)) {
		fail_errno(s, "binary rewriting: mprotect(first-call sites, rw-)");
		return 0;
	}
	for (int i = 0; i < CALIB_SITES; i++)
		memcpy(calib_page + i * CALIB_STRIDE + CALIB_AT, site_code, sizeof(site_code));
	if (mprotect(calib_page, PAGE_BYTES, PROT_READ | PROT_EXEC)) {
		fail_errno(s, "binary rewriting: mprotect(first-call sites, r-x)");
		return 0;
	}
	if (rw_selector)
		*rw_selector = SYSCALL_DISPATCH_FILTER_BLOCK;
	for (int i = 0; i < CALIB_SITES; i++) {
		const char *site = calib_page + i * CALIB_STRIDE + CALIB_AT;
		uint64_t t0 = now_ns();
		long first = call_site(site, LOOP_SYSCALL, LOOP_ARG);

		ns[i] = now_ns() - t0;
		/* The second call takes the patched path: it must emulate too. */
		ok &= first == rw_inject && call_site(site, LOOP_SYSCALL, LOOP_ARG) == rw_inject;
	}
	if (rw_selector)
		*rw_selector = SYSCALL_DISPATCH_FILTER_ALLOW;
	if (!ok || rw_hook_calls != CALIB_SITES || rw_trap_calls != CALIB_SITES) {
		fail(s, "binary rewriting: the first-call sites were not emulated (%ld trapped, %ld rewritten, of %d)",
		     (long)rw_trap_calls, (long)rw_hook_calls, CALIB_SITES);
		return 0;
	}
	munmap(calib_page, PAGE_BYTES);
	calib_page = NULL;
	rw_npatched = 0;
	rw_hook_calls = rw_trap_calls = 0;
	qsort(ns, CALIB_SITES, sizeof(ns[0]), cmp_u64);
	return (ns[CALIB_SITES / 2 - 1] + ns[CALIB_SITES / 2]) / 2;
}

/* The protection of the mapping holding `addr` in /proc/self/maps ("r-xp"), or "?". */
static void protection_of(const char *maps, const char *addr, char out[5])
{
	for (const char *line = maps; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		unsigned long lo, hi;
		char perms[5];

		if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 && (uintptr_t)addr >= lo && (uintptr_t)addr < hi) {
			memcpy(out, perms, 5);
			return;
		}
	}
	strcpy(out, "?");
}

/*
 * After the loop: every call was emulated by us (through the rewritten path
 * but for each site's first trap), and every patched site reads its patch,
 * in pages that are r-x again (/proc/self/maps).
 */
int rw_check(struct session *s)
{
	static char maps[1 << 16];
	long calls = s->loop.calls + 1;		/* the measured calls and the end call */
	long hooked = rw_hook_calls, trapped = rw_trap_calls;
	ssize_t len = 0, got;
	int fd;

	if (s->error[0])
		return -1;
	if (hooked + trapped != calls)
		return fail(s, "binary rewriting: %ld of the loop's %ld calls were emulated (%ld rewritten, %ld trapped)",
			    hooked + trapped, calls, hooked, trapped);
	if (rw_mode == RW_AHEAD && trapped)
		return fail(s, "binary rewriting: %ld calls trapped although every site was patched ahead", trapped);
	/* Lazily: one trap per site at most (the measured site's first call, the end call's). */
	if (rw_mode == RW_LAZY && hooked < s->loop.calls - 1)
		return fail(s, "binary rewriting: only %ld of %ld measured calls took the rewritten path"
			    " (the loop's site was not patched)", hooked, s->loop.calls);
	fd = open("/proc/self/maps", O_RDONLY);
	if (fd < 0)
		return fail_errno(s, "open(/proc/self/maps)");
	while (len < (ssize_t)sizeof(maps) - 1 && (got = read(fd, maps + len, sizeof(maps) - 1 - len)) > 0)
		len += got;
	close(fd);
	maps[len] = '\0';
	for (int i = 0; i < rw_npatched; i++) {
		const struct patched *p = &rw_patched[i];
		char first[5], last[5];

		if (memcmp(p->site, p->bytes, p->len))
			return fail(s, "binary rewriting: the patch at offset %ld does not read as written",
				    (long)(p->site - TEXT));
		protection_of(maps, p->site, first);
		protection_of(maps, p->site + p->len - 1, last);
		if (strcmp(first, "r-xp") || strcmp(last, "r-xp"))
			return fail(s, "binary rewriting: the page patched at offset %ld is %s/%s, not r-xp again",
				    (long)(p->site - TEXT), first, last);
	}
	if (!rw_npatched)
		return fail(s, "binary rewriting: no site was patched");
	return 0;
}
