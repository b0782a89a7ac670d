/* SPDX-License-Identifier: MIT */
/*
 * Command-line numbers and the exit statuses every `vmexec` command shares.
 * Part of tracee/, which depends on nothing; the driver in tracers/ uses it.
 */
#ifndef VMEXEC_ARGS_H
#define VMEXEC_ARGS_H

/*
 * 0 ok, 1 the run failed (mismatch, crash, watchdog), 2 bad usage, 3 backend unavailable,
 * 4 a tracee could not set itself up (mmap, ptrace, pinning): its tracer reports the run failed.
 */
enum { EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_SETUP };

/* Prints msg as one line on stderr; returns EXIT_USAGE. */
int usage_error(const char *msg);
/* A decimal integer from min to max; exits with a one-line error (EXIT_USAGE) otherwise. */
long parse_range(const char *text, const char *option, long min, long max);
/* parse_range(text, option, min, LONG_MAX). */
long parse_long(const char *text, const char *option, long min);
/* parse_long(text, option, 0). */
long parse_count(const char *text, const char *option);
/* parse_range(text, option, 0, max), for a value kept in an int: never truncated. */
int parse_int(const char *text, const char *option, int max);

#endif
