// SPDX-License-Identifier: Apache-2.0
/*
 * The glibc symbols that Debian's libbpf.a, libelf.a and libz.a reference
 * and musl lacks, for the static musl build: the entry points of
 * _FORTIFY_SOURCE, which glibc's headers made those archives call, and
 * fcntl64. The checks are glibc's own: a buffer overflow the compiler could
 * bound aborts the program, as it would have with glibc, instead of
 * writing past the buffer.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* glibc's __chk_fail: the message, then abort(). */
static _Noreturn void overflow_detected(void)
{
	static const char message[] = "*** buffer overflow detected ***: terminated\n";

	write(STDERR_FILENO, message, sizeof(message) - 1);
	abort();
}

int __vsnprintf_chk(char *buffer, size_t size, int flag, size_t buffer_size, const char *format, va_list args)
{
	(void)flag;
	if (size > buffer_size)
		overflow_detected();
	return vsnprintf(buffer, size, format, args);
}

int __snprintf_chk(char *buffer, size_t size, int flag, size_t buffer_size, const char *format, ...)
{
	va_list args;
	int length;

	va_start(args, format);
	length = __vsnprintf_chk(buffer, size, flag, buffer_size, format, args);
	va_end(args);
	return length;
}

int __sprintf_chk(char *buffer, int flag, size_t buffer_size, const char *format, ...)
{
	va_list args;
	int length;

	(void)flag;
	if (buffer_size == 0)
		overflow_detected();
	va_start(args, format);
	length = vsnprintf(buffer, buffer_size, format, args);
	va_end(args);
	if (length >= 0 && (size_t)length >= buffer_size)
		overflow_detected();
	return length;
}

/* The flag asks glibc to refuse %n in writable formats; musl's printf has no such check to ask for. */
int __vfprintf_chk(FILE *stream, int flag, const char *format, va_list args)
{
	(void)flag;
	return vfprintf(stream, format, args);
}

int __vdprintf_chk(int fd, int flag, const char *format, va_list args)
{
	(void)flag;
	return vdprintf(fd, format, args);
}

char *__strcpy_chk(char *destination, const char *source, size_t destination_size)
{
	if (strlen(source) >= destination_size)
		overflow_detected();
	return strcpy(destination, source);
}

char *__strcat_chk(char *destination, const char *source, size_t destination_size)
{
	size_t length = strlen(destination);

	if (length >= destination_size || strlen(source) >= destination_size - length)
		overflow_detected();
	return strcat(destination, source);
}

char *__realpath_chk(const char *path, char *resolved, size_t resolved_size)
{
	if (resolved_size < PATH_MAX)
		overflow_detected();
	return realpath(path, resolved);
}

/* glibc's 64-bit-offset fcntl; musl's fcntl is that already. The argument is an int or a pointer: a long holds both. */
int fcntl64(int fd, int command, ...)
{
	va_list args;
	long argument;

	va_start(args, command);
	argument = va_arg(args, long);
	va_end(args);
	return fcntl(fd, command, argument);
}
