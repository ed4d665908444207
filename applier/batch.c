// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "batch.h"
#include "faults.h"
#include "log.h"

struct group_header {
	uint16_t flags;
	uint32_t write_count;
};

struct map_write {
	uint8_t op;
	const struct target_map *map;
	const uint8_t *key;
	/* NULL for a delete or a zeroing. */
	const uint8_t *value;
};

static bool read_group(struct wire_reader *reader, struct group_header *group)
{
	uint16_t reserved;

	return wire_get_u16(reader, &group->flags) && wire_get_u16(reader, &reserved) &&
	       wire_get_u32(reader, &group->write_count) && reserved == 0 &&
	       !(group->flags & ~WIRE_GROUP_ONLY_IF_CLEAN);
}

/* One write, whose sizes come from the map it names. */
static bool read_write(struct wire_reader *reader, const struct target *target, struct map_write *write)
{
	uint8_t index;

	if (!wire_get_u8(reader, &write->op) || !wire_get_u8(reader, &index))
		return false;
	if (index >= target->count || !target->maps[index].writable)
		return false;
	write->map = &target->maps[index];
	write->key = wire_get_bytes(reader, write->map->key_size);
	write->value = NULL;
	switch (write->op) {
	case WRITE_UPDATE:
		write->value = wire_get_bytes(reader, write->map->update_size);
		return write->key && write->value;
	case WRITE_DELETE:
	case WRITE_ZERO:
		return write->key != NULL;
	default:
		return false;
	}
}

/*
 * Whether a write, or a delete, went in since the programs' readers were
 * last waited for. A batch that hands ids out again (WAIT_FOR_READERS)
 * waits only after some write; the wait after a batch that deleted entries
 * (batch_wait_after_deletes), once it is acknowledged, makes that rare.
 */
static bool written_since_wait = true;
static bool deleted_since_wait;

/* -errno of the kernel's refusal, or 0. */
static int perform(const struct map_write *write, const uint8_t *zeroes)
{
	int err;

	switch (write->op) {
	case WRITE_UPDATE:
		err = bpf_map_update_elem(write->map->fd, write->key, write->value, BPF_ANY);
		break;
	case WRITE_ZERO:
		err = bpf_map_update_elem(write->map->fd, write->key, zeroes, BPF_ANY);
		break;
	default:
		err = bpf_map_delete_elem(write->map->fd, write->key);
		/* Deleting what is not there is what a replay does. */
		if (err < 0 && errno == ENOENT)
			err = 0;
	}
	if (err < 0)
		return -errno;
	written_since_wait = true;
	if (write->op == WRITE_DELETE)
		deleted_since_wait = true;
	fault_point(FAULT_WRITE);
	return 0;
}

/*
 * Walks the groups after the header; writes only when `zeroes` is given.
 * The walk is the check: both passes read the same fields the same way.
 */
static int walk(struct wire_reader reader, uint32_t group_count, const struct target *target, const uint8_t *zeroes,
		struct batch_result *result)
{
	struct group_header group;
	struct map_write write;
	bool stopped;
	int err;

	for (uint32_t g = 0; g < group_count; g++) {
		if (!read_group(&reader, &group))
			return -EPROTO;
		stopped = (group.flags & WIRE_GROUP_ONLY_IF_CLEAN) && result->error;
		for (uint32_t w = 0; w < group.write_count; w++) {
			if (!read_write(&reader, target, &write))
				return -EPROTO;
			if (!zeroes || stopped)
				continue;
			err = perform(&write, zeroes);
			if (!err)
				continue;
			stopped = true;
			if (!result->error) {
				result->error = err;
				result->failed_group = g;
				result->failed_write = w;
			}
		}
	}
	return reader.left == 0 ? 0 : -EPROTO;
}

/* An ARRAY_OF_MAPS update makes the kernel wait for every program run already started (synchronize_rcu). */
static int wait_for_readers(void)
{
	static int outer_fd = -1, inner_fd = -1;
	LIBBPF_OPTS(bpf_map_create_opts, options);
	uint32_t key = 0;

	if (inner_fd < 0)
		inner_fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "socklb_wait_in", 4, 4, 1, NULL);
	if (inner_fd < 0)
		return -errno;
	if (outer_fd < 0) {
		options.inner_map_fd = inner_fd;
		outer_fd = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "socklb_wait", 4, 4, 1, &options);
	}
	if (outer_fd < 0)
		return -errno;
	if (bpf_map_update_elem(outer_fd, &key, &inner_fd, BPF_ANY) < 0)
		return -errno;
	written_since_wait = false;
	deleted_since_wait = false;
	return 0;
}

void batch_wait_after_deletes(void)
{
	int err;

	if (!deleted_since_wait)
		return;
	err = wait_for_readers();
	/* Not fatal: the next WAIT_FOR_READERS batch waits, or fails, then. */
	if (err)
		log_line("waiting for readers after deletes: %s", strerror(-err));
}

/* The largest value an update of a target map reads: what a zeroing passes. */
static size_t largest_update(const struct target *target)
{
	size_t largest = 1;

	for (size_t i = 0; i < target->count; i++) {
		if (target->maps[i].writable && target->maps[i].update_size > largest)
			largest = target->maps[i].update_size;
	}
	return largest;
}

int batch_apply(const struct target *target, const uint8_t *payload, size_t size, struct batch_result *result)
{
	struct wire_reader reader = { .at = payload, .left = size };
	uint32_t flags, group_count;
	uint8_t *zeroes;
	int err;

	if (!wire_get_u64(&reader, &result->epoch) || !wire_get_u64(&reader, &result->seq) ||
	    !wire_get_u32(&reader, &flags) || !wire_get_u32(&reader, &group_count))
		return -EPROTO;
	if (flags & ~WIRE_BATCH_WAIT_FOR_READERS)
		return -EPROTO;
	result->error = 0;
	result->failed_group = WIRE_NO_WRITE;
	result->failed_write = WIRE_NO_WRITE;
	err = walk(reader, group_count, target, NULL, result);
	if (err)
		return err;
	if ((flags & WIRE_BATCH_WAIT_FOR_READERS) && written_since_wait) {
		err = wait_for_readers();
		if (err) {
			/* Writing now could free what a program still reads: nothing is written. */
			log_line("WAIT_FOR_READERS: %s", strerror(-err));
			result->error = err;
			return 0;
		}
	}
	zeroes = calloc(1, largest_update(target));
	if (!zeroes)
		return -ENOMEM;
	err = walk(reader, group_count, target, zeroes, result);
	free(zeroes);
	return err;
}
