// SPDX-License-Identifier: MIT
/* native: the loop untraced, each call a real getppid(): the floor. */
#include <unistd.h>

#include "vmexec.h"

static int expect_real_parent(struct session *s)
{
	s->loop.expect = getppid();
	return 0;
}

const struct backend native = {
	.name = "native",
	.description = "no interception: each call is a real getppid() (one kernel entry)",
	.tracee_setup = expect_real_parent,
	.in_process = 1,
};
