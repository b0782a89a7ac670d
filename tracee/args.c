// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "args.h"

int usage_error(const char *msg)
{
	fprintf(stderr, "%s\n", msg);
	return EXIT_USAGE;
}

long parse_long(const char *text, const char *option, long min)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(text, &end, 0);
	if (errno || *end || end == text || v < min) {
		fprintf(stderr, "vmexec: %s takes an integer >= %ld, not '%s'\n", option, min, text);
		exit(EXIT_USAGE);
	}
	return v;
}

long parse_count(const char *text, const char *option)
{
	return parse_long(text, option, 0);
}
