// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdlib.h>
#include "frame.h"

/* How often a serial port is looked at while no host is connected to it. */
#define SERIAL_IDLE_POLL_MS 100

/* The largest payload of each host frame type; 0 for a type the host never sends. */
static uint32_t payload_limit(uint8_t type)
{
	switch (type) {
	case FRAME_OBJECT:
		return WIRE_MAX_OBJECT_PAYLOAD;
	case FRAME_BATCH:
		return WIRE_MAX_HOST_PAYLOAD;
	case FRAME_COMMIT:
		return WIRE_COMMIT_SIZE;
	case FRAME_RESYNC:
		return WIRE_RESYNC_SIZE;
	default:
		return 0;
	}
}

int frame_read(struct stream *stream, struct frame *frame)
{
	uint8_t header[WIRE_FRAME_HEADER_SIZE];
	struct wire_reader reader = { .at = header, .left = sizeof(header) };
	int64_t deadline;
	uint32_t size;
	int err;

	frame->payload = NULL;
	/* Between frames the host may be silent for as long as it likes. */
	err = stream_read(stream, header, 1, 0);
	if (err)
		return err;
	deadline = monotonic_ms() + FRAME_DEADLINE_MS;
	err = stream_read(stream, header + 1, sizeof(header) - 1, deadline);
	if (err)
		return err;
	wire_get_u32(&reader, &size);
	wire_get_u8(&reader, &frame->type);
	if (size > payload_limit(frame->type))
		return -EPROTO;
	frame->size = size;
	if (size == 0)
		return 0;
	frame->payload = malloc(size);
	if (!frame->payload)
		return -ENOMEM;
	err = stream_read(stream, frame->payload, size, deadline);
	if (err)
		frame_free(frame);
	return err;
}

void frame_free(struct frame *frame)
{
	free(frame->payload);
	frame->payload = NULL;
}

int frame_write(struct stream *stream, uint8_t type, uint8_t *frame, size_t payload_size)
{
	struct wire_writer header = { .at = frame, .left = WIRE_FRAME_HEADER_SIZE };

	if (payload_size > WIRE_MAX_GUEST_PAYLOAD)
		return -EMSGSIZE;
	wire_put_u32(&header, (uint32_t)payload_size);
	wire_put_u8(&header, type);
	return stream_write(stream, frame, WIRE_FRAME_HEADER_SIZE + payload_size);
}

int frame_resync(struct stream *stream, uint64_t *nonce)
{
	static const uint8_t token_frame[WIRE_FRAME_HEADER_SIZE + WIRE_RESYNC_TOKEN_SIZE] = {
		WIRE_RESYNC_SIZE, 0, 0, 0, FRAME_RESYNC, 'S', 'L', 'B', 'R', 'S', 'Y', 'N', 'C',
	};
	uint8_t byte, nonce_bytes[8];
	struct wire_reader reader = { .at = nonce_bytes, .left = sizeof(nonce_bytes) };
	size_t matched = 0;
	int err;

	while (matched < sizeof(token_frame)) {
		err = stream_read(stream, &byte, 1, 0);
		if (err == -ECONNRESET) {
			sleep_ms(SERIAL_IDLE_POLL_MS);
			continue;
		}
		if (err)
			return err;
		if (byte == token_frame[matched])
			matched++;
		else
			/* The token's first byte occurs nowhere else in it: no partial match survives a mismatch. */
			matched = byte == token_frame[0];
	}
	err = stream_read(stream, nonce_bytes, sizeof(nonce_bytes), monotonic_ms() + FRAME_DEADLINE_MS);
	if (err)
		return err;
	wire_get_u64(&reader, nonce);
	return 0;
}
