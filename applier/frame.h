/* SPDX-License-Identifier: Apache-2.0 */
/* Frames over the stream: u32 payload length, u8 type, payload; limits by type. */
#ifndef SOCKLB_APPLIER_FRAME_H
#define SOCKLB_APPLIER_FRAME_H

#include <stdint.h>
#include "stream.h"
#include "wire.h"

/*
 * Once its first byte is in, a frame must be whole within this time: on a
 * serial port a host that reopened mid-frame would otherwise leave the
 * applier waiting for bytes that belong to no frame.
 */
#define FRAME_DEADLINE_MS 10000

/* A host frame read whole; payload is malloc'd (NULL for an empty one). */
struct frame {
	uint8_t type;
	uint32_t size;
	uint8_t *payload;
};

/*
 * Waits for the next host frame and reads it. 0; -EPROTO for a type the host
 * never sends or a size over its type's limit (refused before any payload is
 * read or allocated); -ECONNRESET, -ETIMEDOUT, -ENOMEM or -errno.
 */
int frame_read(struct stream *stream, struct frame *frame);
void frame_free(struct frame *frame);

/*
 * Sends a guest frame: `frame` holds WIRE_FRAME_HEADER_SIZE bytes for the
 * header, which this fills, then `payload_size` bytes of payload.
 */
int frame_write(struct stream *stream, uint8_t type, uint8_t *frame, size_t payload_size);

/*
 * Serial only: discards input until a whole RESYNC frame has gone by, waiting
 * while no host is connected, and gives its nonce. 0 or -errno.
 */
int frame_resync(struct stream *stream, uint64_t *nonce);

#endif /* SOCKLB_APPLIER_FRAME_H */
