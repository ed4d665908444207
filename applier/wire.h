/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest stream, protocol version 1 (docs/guest-protocol.md): message
 * types, sizes and limits, and bounded readers and writers of little-endian
 * fields. src/guest/wire.ts is the host's side of the same layout.
 *
 * Every integer is little-endian on the wire, decoded byte by byte, so that
 * nothing here depends on the guest's byte order or alignment.
 */
#ifndef SOCKLB_APPLIER_WIRE_H
#define SOCKLB_APPLIER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define WIRE_VERSION 1
#define WIRE_HELLO_MAGIC 0x41424c53u /* "SLBA" */

enum frame_type {
	FRAME_HELLO = 0x01,
	FRAME_OBJECT = 0x02,
	FRAME_BATCH = 0x03,
	FRAME_COMMIT = 0x04,
	FRAME_RESYNC = 0x05,
	FRAME_LOADED = 0x81,
	FRAME_ACK = 0x82,
};

/* u32 payload length, u8 type. */
#define WIRE_FRAME_HEADER_SIZE 5
#define WIRE_MAX_HOST_PAYLOAD (1u << 20)
#define WIRE_MAX_OBJECT_PAYLOAD (4u << 20)
#define WIRE_MAX_GUEST_PAYLOAD (64u << 10)
/*
 * The max_entries an OBJECT may ask of one map. A preallocated map costs
 * its whole capacity in kernel memory at load, so that an unchecked count
 * (a broken or hostile host, one flipped byte) could make the guest's kernel
 * try gigabytes. The largest map a host sizes for a guest (src/guest/sizing.ts)
 * at the node's default capacities, full, is the slots: 262,144 of them get
 * 2^19; 2^20 leaves room for a node of twice that. src/guest/wire.ts keeps
 * the host within the same limit.
 */
#define WIRE_MAX_MAP_ENTRIES (1u << 20)
/*
 * The kernel memory all the maps of an OBJECT may take, the ones it lists
 * and the ones it does not (whose capacity is the ELF's): max_entries times
 * key and value, the value once per possible CPU for a per-CPU map, the
 * bytes of a ring buffer. The largest OBJECT a host sends, its five sized
 * maps at WIRE_MAX_MAP_ENTRIES, takes 2^20 x (136 + 32 x possible CPUs)
 * bytes, and about 1 MiB for the rest: 201 MiB with 2 possible CPUs, and
 * it fits up to 11; at the node's default capacities, full, it takes
 * 27 MiB + 4 MiB x possible CPUs, which fits up to 121 CPUs. 512 bytes an
 * entry at the entry limit: 512 MiB, which no frame may pass.
 */
#define WIRE_MAX_OBJECT_MAP_BYTES ((uint64_t)WIRE_MAX_MAP_ENTRIES * 512)

/* Fixed-size, NUL-padded text fields. */
#define WIRE_NAME_SIZE 16
#define WIRE_RELEASE_SIZE 64
#define WIRE_MESSAGE_SIZE 128

/* name, type, key size, value size, max entries, flags. */
#define WIRE_DESCRIPTOR_SIZE (WIRE_NAME_SIZE + 5 * 4)
/* magic, version, reserved, release, possible CPUs, marker, resync nonce, map count, reserved. */
#define WIRE_HELLO_FIXED_SIZE (4 + 2 + 2 + WIRE_RELEASE_SIZE + 4 + 16 + 8 + 2 + 2)
/* error, message, map count, reserved. */
#define WIRE_LOADED_FIXED_SIZE (4 + WIRE_MESSAGE_SIZE + 2 + 2)
/* epoch, seq, error, failed group, failed write. */
#define WIRE_ACK_SIZE (8 + 8 + 4 + 4 + 4)
#define WIRE_COMMIT_SIZE 16
/* name, max entries, flags. */
#define WIRE_OBJECT_MAP_SIZE (WIRE_NAME_SIZE + 4 + 4)

#define WIRE_OBJECT_KEEP_PINNED 0x1u
#define WIRE_BATCH_WAIT_FOR_READERS 0x1u
#define WIRE_GROUP_ONLY_IF_CLEAN 0x1u

enum write_op {
	WRITE_UPDATE = 1,
	WRITE_DELETE = 2,
	/* An update with an all-zero value (a service id's counters reset). */
	WRITE_ZERO = 3,
};

/* failed_group and failed_write of an ACK that names no write. */
#define WIRE_NO_WRITE 0xffffffffu

/*
 * RESYNC: the token, then the host's u64 nonce, which the HELLO it causes
 * echoes. A serial reader looks for the header and the token byte by byte.
 */
#define WIRE_RESYNC_TOKEN "SLBRSYNC"
#define WIRE_RESYNC_TOKEN_SIZE 8
#define WIRE_RESYNC_SIZE (WIRE_RESYNC_TOKEN_SIZE + 8)

/* A frame's payload being read: no get ever reads past `left`. */
struct wire_reader {
	const uint8_t *at;
	size_t left;
};

static inline const uint8_t *wire_get_bytes(struct wire_reader *r, size_t size)
{
	const uint8_t *bytes = r->at;

	if (size > r->left)
		return NULL;
	r->at += size;
	r->left -= size;
	return bytes;
}

static inline bool wire_get_u64(struct wire_reader *r, uint64_t *value)
{
	const uint8_t *b = wire_get_bytes(r, 8);
	uint64_t v = 0;

	if (!b)
		return false;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	*value = v;
	return true;
}

static inline bool wire_get_u32(struct wire_reader *r, uint32_t *value)
{
	const uint8_t *b = wire_get_bytes(r, 4);

	if (!b)
		return false;
	*value = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
	return true;
}

static inline bool wire_get_u16(struct wire_reader *r, uint16_t *value)
{
	const uint8_t *b = wire_get_bytes(r, 2);

	if (!b)
		return false;
	*value = (uint16_t)(b[0] | b[1] << 8);
	return true;
}

static inline bool wire_get_u8(struct wire_reader *r, uint8_t *value)
{
	const uint8_t *b = wire_get_bytes(r, 1);

	if (!b)
		return false;
	*value = b[0];
	return true;
}

/*
 * A NUL-padded name of WIRE_NAME_SIZE bytes: non-empty, terminated within
 * the field, and NUL after its end (so that one name has one encoding).
 */
static inline bool wire_get_name(struct wire_reader *r, char name[WIRE_NAME_SIZE])
{
	const uint8_t *b = wire_get_bytes(r, WIRE_NAME_SIZE);
	size_t length;

	if (!b)
		return false;
	length = strnlen((const char *)b, WIRE_NAME_SIZE);
	if (length == 0 || length == WIRE_NAME_SIZE)
		return false;
	for (size_t i = length; i < WIRE_NAME_SIZE; i++) {
		if (b[i])
			return false;
	}
	memcpy(name, b, WIRE_NAME_SIZE);
	return true;
}

/* A guest frame being built in a buffer of known size: a put past the end sets `overflow`. */
struct wire_writer {
	uint8_t *at;
	size_t left;
	bool overflow;
};

static inline uint8_t *wire_put_space(struct wire_writer *w, size_t size)
{
	uint8_t *space = w->at;

	if (size > w->left) {
		w->overflow = true;
		return NULL;
	}
	w->at += size;
	w->left -= size;
	return space;
}

/* `value`'s low `size` bytes, least significant first. */
static inline void wire_put_le(struct wire_writer *w, uint64_t value, size_t size)
{
	uint8_t *b = wire_put_space(w, size);

	for (size_t i = 0; b && i < size; i++)
		b[i] = (uint8_t)(value >> (8 * i));
}

static inline void wire_put_u64(struct wire_writer *w, uint64_t value)
{
	wire_put_le(w, value, 8);
}

static inline void wire_put_u32(struct wire_writer *w, uint32_t value)
{
	wire_put_le(w, value, 4);
}

static inline void wire_put_u16(struct wire_writer *w, uint16_t value)
{
	wire_put_le(w, value, 2);
}

static inline void wire_put_u8(struct wire_writer *w, uint8_t value)
{
	wire_put_le(w, value, 1);
}

/* `text` cut to size - 1 bytes, NUL-padded to `size`. */
static inline void wire_put_text(struct wire_writer *w, const char *text, size_t size)
{
	uint8_t *b = wire_put_space(w, size);
	size_t length;

	if (!b)
		return;
	length = strnlen(text, size - 1);
	memset(b, 0, size);
	memcpy(b, text, length);
}

#endif /* SOCKLB_APPLIER_WIRE_H */
