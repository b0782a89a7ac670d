// SPDX-License-Identifier: MIT
/*
 * zpoline (Yasukata et al., USENIX ATC '23), in-process binary rewriting:
 * before the loop starts, every `syscall` of the loop (0f 05) becomes
 * `call *%rax` (ff d0), which lands in a trampoline mapped at virtual
 * address 0 (a nop sled over every syscall number, then a jump to the hook);
 * the hook emulates the loop's getppid and really performs anything else.
 * No kernel entry per call, and nothing enforced: see rewrite_common.c.
 * Needs vm.mmap_min_addr=0 (or CAP_SYS_RAWIO) for the page at address 0.
 */
#define _GNU_SOURCE
#include <stddef.h>

#include "vmexec.h"

#define MAX_SITES 32

static const char *zpoline_unavailable(void)
{
	return rw_page0_unavailable("zpoline");
}

static int zpoline_setup(struct session *s)
{
	char *sites[MAX_SITES];
	int n = rw_sites(sites, MAX_SITES);

	rw_init(s, RW_AHEAD, NULL);
	if (rw_map_trampoline(s))
		return -1;
	if (!n)
		return fail(s, "zpoline: the driver recorded no syscall sites (section vmexec_syscall_sites)");
	/* The tracee is single-threaded here: nothing runs the sites while they change. */
	for (int i = 0; i < n; i++)
		if (rw_patch_call_rax(s, sites[i]))
			return -1;
	return 0;
}

const struct backend zpoline = {
	.name = "zpoline",
	.description = "binary rewriting ahead: each syscall becomes call *%rax into a trampoline at address 0 (zpoline)",
	.unavailable = zpoline_unavailable,
	.tracee_setup = zpoline_setup,
	.tracee_done = rw_check,
	.in_process = 1,
	.rewrites_text = 1,
};
