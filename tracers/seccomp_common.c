// SPDX-License-Identifier: MIT
/*
 * Helpers shared by the seccomp backends (seccomp-trace, seccomp-unotify*,
 * seccomp-trap) and syscall-user-dispatch: the one filter they all install,
 * probing a mechanism in a throwaway child, and failing from a signal handler.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>

#include "compat.h"
#include "vmexec.h"

/* Apply `action` to getppid (the loop's syscall), allow everything else. */
int seccomp_filter_getppid(uint32_t action, unsigned int flags)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, LOOP_SYSCALL, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, action),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };

	/* Required without CAP_SYS_ADMIN; harmless with it. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

/* probe(arg) in a throwaway child: 0 if it worked, its errno if not, -1 if it crashed. */
int probe_in_child(int (*probe)(long), long arg)
{
	int status;
	pid_t pid = fork();

	if (pid == 0)
		_exit(probe(arg) ? (errno ?: 255) : 0);
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* "ENAME: what (running Linux X)", for unavailable(); one static buffer. */
const char *unavailable_reason(int err, const char *what)
{
	static char reason[256];
	struct utsname u;

	if (uname(&u))
		strcpy(u.release, "?");
	snprintf(reason, sizeof(reason), "%s: %s (running Linux %s)",
		 err < 0 ? "probe crashed" : strerrorname_np(err) ?: "?", what, u.release);
	return reason;
}

static int try_filter(long action)
{
	unsigned int flags = action == SECCOMP_RET_USER_NOTIF ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;

	return seccomp_filter_getppid(action, flags) < 0;
}

/* Can this process install the filter with `action` (named `name`, Linux `since`)? */
const char *seccomp_unavailable(uint32_t action, const char *name, const char *since)
{
	static char what[160];
	int err = probe_in_child(try_filter, action);

	if (!err)
		return NULL;
	if (err == ENOSYS || err == EINVAL)
		snprintf(what, sizeof(what), "a seccomp filter returning %s needs CONFIG_SECCOMP_FILTER and Linux %s+",
			 name, since);
	else
		snprintf(what, sizeof(what), "installing a seccomp filter returning %s was refused", name);
	return unavailable_reason(err, what);
}

/*
 * fail() for signal handlers: no stdio, no locks, only stores (the driver
 * reads s->error once the tracee is gone).  Appends n in decimal.
 */
void fail_async(struct session *s, const char *msg, long n)
{
	unsigned long u = n < 0 ? -(unsigned long)n : (unsigned long)n;
	char digits[24];
	size_t len = 0;
	int d = 0;

	if (s->error[0])
		return;
	while (*msg && len < sizeof(s->error) - sizeof(digits))
		s->error[len++] = *msg++;
	if (n < 0)
		s->error[len++] = '-';
	do
		digits[d++] = '0' + u % 10;
	while (u /= 10);
	while (d)
		s->error[len++] = digits[--d];
	s->error[len] = '\0';
}
