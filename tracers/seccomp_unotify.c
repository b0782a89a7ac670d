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
 * The listener is created in the tracee (the filter must be its own) and
 * handed to the supervisor over a socketpair made before the fork
 * (SCM_RIGHTS): no ptrace access is needed, as with a real supervisor.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compat.h"
#include "vmexec.h"

/* s->backend.words[]: the socketpair's two ends. */
enum { SUPERVISOR_END, TRACEE_END };

static int try_sync_wake_up(long unused)
{
	int fd = seccomp_filter_getppid(SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);

	(void)unused;
	if (fd < 0)
		return -1;
	return ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
}

static const char *unotify_unavailable(void)
{
	return seccomp_unavailable(SECCOMP_RET_USER_NOTIF, "SECCOMP_RET_USER_NOTIF", "5.0");
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

static int make_socketpair(struct session *s)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return fail_errno(s, "socketpair");
	s->backend.words[SUPERVISOR_END] = sv[0];
	s->backend.words[TRACEE_END] = sv[1];
	return 0;
}

static int send_fd(int sock, int fd)
{
	char byte = 0, control[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control, .msg_controllen = sizeof(control) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

/* The fd sent over sock; -1 with errno set, or with errno 0 if the sender hung up. */
static int receive_fd(int sock)
{
	char byte, control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control, .msg_controllen = sizeof(control) };
	struct cmsghdr *c;
	ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	int fd;

	if (n <= 0) {
		if (n == 0)
			errno = 0;
		return -1;
	}
	c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))) {
		errno = EPROTO;
		return -1;
	}
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

static int unotify_setup(struct session *s)
{
	int sock = s->backend.words[TRACEE_END], fd;
	char go;

	close(s->backend.words[SUPERVISOR_END]);
	fd = seccomp_filter_getppid(SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);
	if (fd < 0)
		return fail_errno(s, "seccomp(SECCOMP_RET_USER_NOTIF filter)");
	if (send_fd(sock, fd))
		return fail_errno(s, "sendmsg(listener)");
	/* Ours is not needed: if the supervisor's goes, getppid fails (ENOSYS) instead of hanging. */
	close(fd);
	/*
	 * Held until the supervisor listens and has started its clock.  Only
	 * getppid is filtered, so read() and close() run normally.
	 */
	if (read(sock, &go, 1) != 1)
		return fail(s, "the supervisor hung up before the loop");
	close(sock);
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

static int supervise(struct session *s, int listener, int sock)
{
	struct seccomp_notif_resp resp = { .val = s->cfg->inject };
	struct seccomp_notif req;
	siginfo_t info;

	if (sigsetjmp(tracee_died, 1) || tracee_ended(s, &info))
		goto ended;
	s->t0_ns = now_ns();
	if (send(sock, "", 1, MSG_NOSIGNAL) != 1)	/* no SIGPIPE if the tracee is gone */
		return fail_errno(s, "send(go)");
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
	int sock = s->backend.words[SUPERVISOR_END], listener, ret;

	close(s->backend.words[TRACEE_END]);	/* so a dead tracee reads as a hang-up */
	listener = receive_fd(sock);
	if (listener < 0) {
		ret = errno ? fail_errno(s, "recvmsg(the tracee's listener)")
			    : fail(s, "the tracee ended before sending its listener");
	} else if (sync && ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)) {
		ret = fail_errno(s, "ioctl(SECCOMP_IOCTL_NOTIF_SET_FLAGS, SYNC_WAKE_UP)");
	} else {
		armed = died = 0;	/* SA_NOCLDSTOP: only the tracee's end counts */
		sigaction(SIGCHLD, &sa, &old);
		ret = supervise(s, listener, sock);
		sigaction(SIGCHLD, &old, NULL);
	}
	if (listener >= 0)
		close(listener);
	close(sock);
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
	.before_fork = make_socketpair,
	.tracee_setup = unotify_setup,
	.trace = trace_async,
};

const struct backend seccomp_unotify_sync = {
	.name = "seccomp-unotify-sync",
	.description = "seccomp-unotify with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6+): synchronous wake-ups",
	.unavailable = unotify_sync_unavailable,
	.before_fork = make_socketpair,
	.tracee_setup = unotify_setup,
	.trace = trace_sync,
};
