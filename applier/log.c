// SPDX-License-Identifier: Apache-2.0
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <bpf/libbpf.h>
#include "log.h"

/* The host hears it in LOADED, which cuts it to fit. */
static char libbpf_warning[256];

void log_line(const char *format, ...)
{
	va_list args;

	va_start(args, format);
	fputs("socklb-applier: ", stderr);
	vfprintf(stderr, format, args);
	fputc('\n', stderr);
	va_end(args);
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
