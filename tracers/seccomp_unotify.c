// SPDX-License-Identifier: MIT
/*
 * SECCOMP_RET_USER_NOTIF: the tracee's getppid blocks while a supervisor
 * process receives it on a listener fd (NOTIF_RECV) and answers it
 * (NOTIF_SEND); no ptrace.  How container runtimes (LXD, crun, sysbox) and
 * the RFC's discussion of "seccomp unotify" emulate syscalls.
 *
 * seccomp-unotify-sync adds SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6):
 * the wake-ups become synchronous, so a pair on one CPU switches directly
 * between tracee and supervisor instead of going through the scheduler.
 *
 * The listener is created in the tracee (the filter must be its own) and the
 * supervisor takes a copy with pidfd_getfd() (Linux 5.6).  An SCM_RIGHTS
 * socketpair would have to exist before the fork, and the driver forks
 * without asking the backend; pidfd_getfd needs no setup, only ptrace access
 * to our own child, which unotify_unavailable() tries for real.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compat.h"
#include "vmexec.h"

/* s->backend.words[]: the tracee's listener fd, then its two hand-shake flags. */
enum { LISTENER, READY, GO };

static int try_sync_wake_up(long unused)
{
	int fd = seccomp_filter_getppid(SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);

	(void)unused;
	if (fd < 0)
		return -1;
	return ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
}

/* pidfd_getfd() on a child, as the supervisor will do: 0 or its errno. */
static int try_pidfd_getfd(void)
{
	int err = 0, pidfd, fd = -1;
	pid_t pid = fork();

	if (pid == 0) {
		pause();
		_exit(0);
	}
	if (pid < 0)
		return errno;
	pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (pidfd >= 0)
		fd = syscall(SYS_pidfd_getfd, pidfd, STDERR_FILENO, 0);
	if (fd < 0 && errno != EBADF)	/* EBADF: access granted, the child just had no stderr */
		err = errno;
	if (fd >= 0)
		close(fd);
	if (pidfd >= 0)
		close(pidfd);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return err;
}

static const char *unotify_unavailable(void)
{
	const char *why = seccomp_unavailable(SECCOMP_RET_USER_NOTIF, "SECCOMP_RET_USER_NOTIF", "5.0");
	int err;

	if (why)
		return why;
	err = try_pidfd_getfd();
	if (!err)
		return NULL;
	return unavailable_reason(err, err == ENOSYS ? "pidfd_getfd() needs Linux 5.6+"
				  : "pidfd_getfd() on a child is denied (Yama ptrace_scope or a seccomp policy)");
}

static const char *unotify_sync_unavailable(void)
{
	const char *why = unotify_unavailable();
	int err;

	if (why)
		return why;
	err = probe_in_child(try_sync_wake_up, 0);
	if (!err)
		return NULL;
	return unavailable_reason(err, err == EINVAL || err == ENOTTY
				  ? "SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP needs Linux 6.6+"
				  : "ioctl(SECCOMP_IOCTL_NOTIF_SET_FLAGS) failed");
}

static int unotify_setup(struct session *s)
{
	volatile long *w = s->backend.words;
	int fd = seccomp_filter_getppid(SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);

	if (fd < 0)
		return fail_errno(s, "seccomp(SECCOMP_RET_USER_NOTIF filter)");
	w[LISTENER] = fd;
	__atomic_store_n(&w[READY], 1, __ATOMIC_RELEASE);
	/*
	 * Held until the supervisor has its copy of the listener: a getppid
	 * now would wait for a supervisor that is not listening yet.  Only
	 * getppid is filtered, so sched_yield() and close() run normally.
	 */
	while (!__atomic_load_n(&w[GO], __ATOMIC_ACQUIRE))
		sched_yield();
	/* Ours is not needed: if the supervisor's goes, getppid fails (ENOSYS) instead of hanging. */
	close(fd);
	return 0;
}

/* Has the tracee ended?  WNOWAIT leaves its exit status to the driver's waitpid(). */
static int tracee_ended(struct session *s, siginfo_t *info)
{
	memset(info, 0, sizeof(*info));
	return waitid(P_PID, s->tracee, info, WEXITED | WNOHANG | WNOWAIT) || info->si_pid;
}

static int tracee_ended_error(struct session *s, siginfo_t *info, const char *when)
{
	if (info->si_code == CLD_EXITED)
		return fail(s, "tracee exited with status %d %s", info->si_status, when);
	return fail(s, "tracee killed by signal %s %s", sigabbrev_np(info->si_status) ?: "?", when);
}

/*
 * NOTIF_RECV sleeps until a notification comes, even after the tracee is
 * gone, and the SIGCHLD telling us could land just before a RECV starts.  So
 * the SIGCHLD handler jumps out of a RECV that is about to start or blocked
 * ("armed"); outside one it only leaves `died` for the next RECV to see.
 */
static sigjmp_buf tracee_died;
static volatile sig_atomic_t armed, died;

static void on_sigchld(int sig)
{
	(void)sig;
	died = 1;
	if (armed)
		siglongjmp(tracee_died, 1);
}

static int supervise(struct session *s, int listener)
{
	struct seccomp_notif_resp resp = { .val = s->cfg->inject };
	struct seccomp_notif req;
	siginfo_t info;

	if (sigsetjmp(tracee_died, 1) || tracee_ended(s, &info))
		goto ended;
	s->t0_ns = now_ns();
	__atomic_store_n(&s->backend.words[GO], 1, __ATOMIC_RELEASE);
	for (;;) {
		long arg;
		int ret;

		memset(&req, 0, sizeof(req));	/* NOTIF_RECV insists on a zeroed buffer */
		armed = 1;
		if (died)
			goto ended;
		ret = ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req);
		armed = 0;
		/* ENOENT: the call was withdrawn (the tracee was interrupted, or is dying). */
		if (ret && (errno == ENOENT || errno == EINTR))
			continue;
		if (ret)
			return fail_errno(s, "ioctl(SECCOMP_IOCTL_NOTIF_RECV)");
		arg = (long)req.data.args[0];
		if (req.data.nr != LOOP_SYSCALL || (arg != LOOP_ARG && arg != LOOP_END_ARG))
			return fail(s, "intercepted a syscall that is not the loop's: nr %d, arg 0x%lx",
				    req.data.nr, arg);
		if (arg == LOOP_END_ARG)
			s->t1_ns = now_ns();
		resp.id = req.id;
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp)) {
			if (errno == ENOENT)
				continue;
			return fail_errno(s, "ioctl(SECCOMP_IOCTL_NOTIF_SEND)");
		}
		if (arg == LOOP_END_ARG)
			return 0;
	}
ended:
	armed = 0;
	tracee_ended(s, &info);
	return tracee_ended_error(s, &info, "during the loop");
}

static int trace_unotify(struct session *s, int sync)
{
	struct sigaction sa = { .sa_handler = on_sigchld, .sa_flags = SA_NOCLDSTOP }, old;
	volatile long *w = s->backend.words;
	int pidfd, listener, ret;
	siginfo_t info;

	while (!__atomic_load_n(&w[READY], __ATOMIC_ACQUIRE)) {
		if (tracee_ended(s, &info))
			return tracee_ended_error(s, &info, "before installing its filter");
		sched_yield();
	}
	pidfd = syscall(SYS_pidfd_open, s->tracee, 0);
	if (pidfd < 0)
		return fail_errno(s, "pidfd_open(tracee)");
	listener = syscall(SYS_pidfd_getfd, pidfd, (int)w[LISTENER], 0);
	close(pidfd);
	if (listener < 0)
		return fail_errno(s, "pidfd_getfd(tracee's listener)");
	if (sync && ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)) {
		ret = fail_errno(s, "ioctl(SECCOMP_IOCTL_NOTIF_SET_FLAGS, SYNC_WAKE_UP)");
	} else {
		armed = died = 0;	/* SA_NOCLDSTOP: only the tracee's end counts */
		sigaction(SIGCHLD, &sa, &old);
		ret = supervise(s, listener);
		sigaction(SIGCHLD, &old, NULL);
	}
	close(listener);
	return ret;
}

static int trace_async(struct session *s)
{
	return trace_unotify(s, 0);
}

static int trace_sync(struct session *s)
{
	return trace_unotify(s, 1);
}

const struct backend seccomp_unotify = {
	.name = "seccomp-unotify",
	.description = "SECCOMP_RET_USER_NOTIF: a supervisor answers each call with NOTIF_RECV/NOTIF_SEND",
	.unavailable = unotify_unavailable,
	.tracee_setup = unotify_setup,
	.trace = trace_async,
};

const struct backend seccomp_unotify_sync = {
	.name = "seccomp-unotify-sync",
	.description = "seccomp-unotify with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6+): synchronous wake-ups",
	.unavailable = unotify_sync_unavailable,
	.tracee_setup = unotify_setup,
	.trace = trace_sync,
};
