// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/vm_sockets.h>
#include "stream.h"

static int parse_u32(const char *text, char **end, uint32_t *value)
{
	unsigned long parsed;

	if (*text < '0' || *text > '9')
		return -EINVAL;
	errno = 0;
	parsed = strtoul(text, end, 10);
	if (errno || parsed > UINT32_MAX)
		return -EINVAL;
	*value = (uint32_t)parsed;
	return 0;
}

static int set_path(struct endpoint *endpoint, const char *path)
{
	size_t length = strlen(path);

	if (length == 0 || length >= sizeof(endpoint->path))
		return -EINVAL;
	memcpy(endpoint->path, path, length + 1);
	return 0;
}

int endpoint_parse_connect(const char *spec, struct endpoint *endpoint)
{
	char *end;

	memset(endpoint, 0, sizeof(*endpoint));
	if (strncmp(spec, "unix:", 5) == 0) {
		endpoint->transport = TRANSPORT_UNIX;
		return set_path(endpoint, spec + 5);
	}
	if (strncmp(spec, "vsock:", 6) != 0)
		return -EINVAL;
	endpoint->transport = TRANSPORT_VSOCK;
	if (parse_u32(spec + 6, &end, &endpoint->cid) || *end != ':')
		return -EINVAL;
	if (parse_u32(end + 1, &end, &endpoint->port) || *end != '\0')
		return -EINVAL;
	return 0;
}

int endpoint_parse_serial(const char *path, struct endpoint *endpoint)
{
	memset(endpoint, 0, sizeof(*endpoint));
	endpoint->transport = TRANSPORT_SERIAL;
	return set_path(endpoint, path);
}

/* A stream socket of the address's family, connected to it. The fd or -errno. */
static int connect_socket(const struct sockaddr *address, socklen_t size)
{
	int fd, err;

	fd = socket(address->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, address, size) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };

	/* endpoint_parse_connect bounded it to sun_path. */
	strncpy(address.sun_path, path, sizeof(address.sun_path) - 1);
	return connect_socket((struct sockaddr *)&address, sizeof(address));
}

static int connect_vsock(uint32_t cid, uint32_t port)
{
	struct sockaddr_vm address = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };

	return connect_socket((struct sockaddr *)&address, sizeof(address));
}

static int open_serial(const char *path)
{
	struct termios raw;
	int fd;

	fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* A virtio-serial port is no tty; a console port is, and its line discipline would eat bytes. */
	if (isatty(fd) && tcgetattr(fd, &raw) == 0) {
		cfmakeraw(&raw);
		tcsetattr(fd, TCSANOW, &raw);
	}
	return fd;
}

int stream_open(struct stream *stream, const struct endpoint *endpoint)
{
	int fd;

	switch (endpoint->transport) {
	case TRANSPORT_UNIX:
		fd = connect_unix(endpoint->path);
		break;
	case TRANSPORT_VSOCK:
		fd = connect_vsock(endpoint->cid, endpoint->port);
		break;
	case TRANSPORT_SERIAL:
		fd = open_serial(endpoint->path);
		break;
	default:
		fd = -EINVAL;
	}
	if (fd < 0)
		return fd;
	stream->fd = fd;
	stream->transport = endpoint->transport;
	stream->start = 0;
	stream->end = 0;
	return 0;
}

void stream_close(struct stream *stream)
{
	if (stream->fd >= 0)
		close(stream->fd);
	stream->fd = -1;
	stream->start = 0;
	stream->end = 0;
}

int64_t monotonic_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

void sleep_ms(int64_t ms)
{
	struct timespec pause = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	while (nanosleep(&pause, &pause) < 0 && errno == EINTR)
		;
}

/* Waits until the fd is readable or the deadline passes. 0, -ETIMEDOUT or -errno. */
static int wait_readable(int fd, int64_t deadline_ms)
{
	struct pollfd readable = { .fd = fd, .events = POLLIN };
	int64_t left;
	int ready;

	if (deadline_ms == 0)
		return 0;
	for (;;) {
		left = deadline_ms - monotonic_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		ready = poll(&readable, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (ready > 0)
			return 0;
		if (ready < 0 && errno != EINTR)
			return -errno;
	}
}

/* One read() of at most `size` bytes, once the fd is readable: how many (> 0), -ECONNRESET, -ETIMEDOUT or -errno. */
static ssize_t read_some(int fd, void *to, size_t size, int64_t deadline_ms)
{
	ssize_t got;
	int err;

	for (;;) {
		err = wait_readable(fd, deadline_ms);
		if (err)
			return err;
		got = read(fd, to, size);
		if (got > 0)
			return got;
		if (got == 0)
			return -ECONNRESET;
		if (errno != EINTR && errno != EAGAIN)
			return -errno;
	}
}

int stream_read(struct stream *stream, void *out, size_t size, int64_t deadline_ms)
{
	uint8_t *to = out;
	size_t step;
	ssize_t got;

	while (size > 0) {
		if (stream->start < stream->end) {
			step = stream->end - stream->start;
			if (step > size)
				step = size;
			memcpy(to, stream->buffer + stream->start, step);
			stream->start += step;
			to += step;
			size -= step;
			continue;
		}
		/* Large payloads go straight to their buffer. */
		if (size >= sizeof(stream->buffer)) {
			got = read_some(stream->fd, to, size, deadline_ms);
			if (got < 0)
				return (int)got;
			to += got;
			size -= (size_t)got;
			continue;
		}
		got = read_some(stream->fd, stream->buffer, sizeof(stream->buffer), deadline_ms);
		if (got < 0)
			return (int)got;
		stream->start = 0;
		stream->end = (size_t)got;
	}
	return 0;
}

int stream_write(struct stream *stream, const void *data, size_t size)
{
	const uint8_t *from = data;
	ssize_t put;

	while (size > 0) {
		if (stream->transport == TRANSPORT_SERIAL)
			put = write(stream->fd, from, size);
		else
			put = send(stream->fd, from, size, MSG_NOSIGNAL);
		if (put < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		from += put;
		size -= (size_t)put;
	}
	return 0;
}
