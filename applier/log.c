// SPDX-License-Identifier: Apache-2.0
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <bpf/libbpf.h>
#include "log.h"

/* The host hears it in LOADED, which cuts it to fit. */
static char libbpf_warning[256];

/*
 * One write(2) a line: stderr is unbuffered, and on a console that other processes write to (the
 * guest's serial port) a line made of three writes can be split by theirs.
 */
void log_line(const char *format, ...)
{
	static const char prefix[] = "socklb-applier: ";
	char line[512];
	size_t length = sizeof(prefix) - 1;
	va_list args;
	int written;

	memcpy(line, prefix, length);
	va_start(args, format);
	written = vsnprintf(line + length, sizeof(line) - length - 1, format, args);
	va_end(args);
	if (written > 0)
		length += (size_t)written < sizeof(line) - length - 1 ? (size_t)written : sizeof(line) - length - 2;
	line[length++] = '\n';
	fwrite(line, 1, length, stderr);
}

static int print_libbpf(enum libbpf_print_level level, const char *format, va_list args)
{
	va_list copy;
	size_t length;

	if (level == LIBBPF_DEBUG)
		return 0;
	if (level == LIBBPF_WARN && libbpf_warning[0] == '\0') {
		va_copy(copy, args);
		vsnprintf(libbpf_warning, sizeof(libbpf_warning), format, copy);
		va_end(copy);
		length = strcspn(libbpf_warning, "\n");
		libbpf_warning[length] = '\0';
	}
	return vfprintf(stderr, format, args);
}

void log_capture_libbpf(void)
{
	libbpf_set_print(print_libbpf);
}

const char *log_libbpf_warning(void)
{
	return libbpf_warning;
}

void log_forget_libbpf(void)
{
	libbpf_warning[0] = '\0';
}
