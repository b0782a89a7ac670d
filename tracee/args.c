// SPDX-License-Identifier: MIT
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "args.h"

int usage_error(const char *msg)
{
	fprintf(stderr, "%s\n", msg);
	return EXIT_USAGE;
}

long parse_range(const char *text, const char *option, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	/* Decimal only: base 0 would read 010 as 8 and 0x10 as 16. */
	v = strtol(text, &end, 10);
	if (errno || *end || end == text || v < min || v > max) {
		fprintf(stderr, "vmexec: %s takes a decimal integer from %ld to %ld, not '%s'\n", option, min, max,
			text);
		exit(EXIT_USAGE);
	}
	return v;
}

long parse_long(const char *text, const char *option, long min)
{
	return parse_range(text, option, min, LONG_MAX);
}

long parse_count(const char *text, const char *option)
{
	return parse_long(text, option, 0);
}

int parse_int(const char *text, const char *option, int max)
{
	return (int)parse_range(text, option, 0, max);
}
