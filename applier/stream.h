/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The byte stream to the host: a Unix socket, a vsock connection
 * (Firecracker and Cloud Hypervisor hand a guest's connect to PORT to the
 * host's Unix socket <uds_path>_<PORT>), or a virtio-serial port.
 */
#ifndef SOCKLB_APPLIER_STREAM_H
#define SOCKLB_APPLIER_STREAM_H

#include <stddef.h>
#include <stdint.h>

enum transport {
	TRANSPORT_UNIX,
	TRANSPORT_VSOCK,
	TRANSPORT_SERIAL,
};

/* Where the host is, from --connect or --serial. */
struct endpoint {
	enum transport transport;
	/* The Unix socket or the serial device; fits a sockaddr_un's sun_path. */
	char path[108];
	uint32_t cid;
	uint32_t port;
};

/* `spec` of --connect: unix:PATH or vsock:CID:PORT. 0 or -EINVAL. */
int endpoint_parse_connect(const char *spec, struct endpoint *endpoint);
/* PATH of --serial. 0 or -EINVAL. */
int endpoint_parse_serial(const char *path, struct endpoint *endpoint);

/* An open connection, with a read buffer so that headers and resync cost few system calls. */
struct stream {
	int fd;
	enum transport transport;
	size_t start;
	size_t end;
	uint8_t buffer[4096];
};

/* Connects (or opens the port). 0 or -errno. */
int stream_open(struct stream *stream, const struct endpoint *endpoint);
void stream_close(struct stream *stream);

/*
 * Reads exactly `size` bytes. `deadline_ms` is a monotonic_ms() time after
 * which the read gives up, or 0 for none. 0, -ECONNRESET when the host
 * closed its end (a serial port reads 0 bytes while no host is connected),
 * -ETIMEDOUT, or -errno.
 */
int stream_read(struct stream *stream, void *out, size_t size, int64_t deadline_ms);

/* Writes all of `data`. 0 or -errno. */
int stream_write(struct stream *stream, const void *data, size_t size);

int64_t monotonic_ms(void);
void sleep_ms(int64_t ms);

#endif /* SOCKLB_APPLIER_STREAM_H */
