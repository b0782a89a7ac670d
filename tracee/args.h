/* SPDX-License-Identifier: MIT */
/*
 * Command-line numbers and the exit statuses every `vmexec` command shares.
 * Part of tracee/, which depends on nothing; the driver in tracers/ uses it.
 */
#ifndef VMEXEC_ARGS_H
#define VMEXEC_ARGS_H

/* 0 ok, 1 the run failed (mismatch, crash, watchdog), 2 bad usage, 3 backend unavailable. */
enum { EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE };

/* Prints msg as one line on stderr; returns EXIT_USAGE. */
int usage_error(const char *msg);
/* An integer >= min that fits a long; exits with a one-line error otherwise. */
long parse_long(const char *text, const char *option, long min);
/* parse_long(text, option, 0). */
long parse_count(const char *text, const char *option);

#endif
