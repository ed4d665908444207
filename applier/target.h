/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The maps BATCHes write: the live (pinned) maps or a staged object's,
 * indexed in the order of their names, as HELLO and LOADED list them to the
 * host. A write names a map by that index, and the sizes of its key and
 * value come from here: no length on the wire, none trusted.
 */
#ifndef SOCKLB_APPLIER_TARGET_H
#define SOCKLB_APPLIER_TARGET_H

#include <stdbool.h>
#include <stdint.h>
#include "pins.h"
#include "wire.h"

#define TARGET_MAX_MAPS PINS_MAX_ENTRIES
#define MARKER_MAP_NAME "socklb_mark_v1"

struct target_map {
	char name[WIRE_NAME_SIZE];
	int fd;
	uint32_t type;
	uint32_t key_size;
	uint32_t value_size;
	uint32_t max_entries;
	uint32_t map_flags;
	/* What an update reads: a per-CPU map takes value_size rounded up to 8, once per possible CPU. */
	uint32_t update_size;
	/* A map of plain keys and values; the others hold fds, sockets or programs. */
	bool writable;
};

struct target {
	size_t count;
	struct target_map maps[TARGET_MAX_MAPS];
};

void target_init(struct target *target);
void target_close(struct target *target);

/* Adds the map `fd` (taken over, closed on failure) under `name`. 0, -E2BIG, -ENAMETOOLONG or -errno. */
int target_add(struct target *target, const char *name, int fd);

/* Puts the maps in the order of their names: the indexes the host writes by. */
void target_sort(struct target *target);

/* The maps pinned in `directory`. 0 (none when it is missing) or -errno. */
int target_open_pinned(struct target *target, const char *directory);

const struct target_map *target_find(const struct target *target, const char *name);

/* The marker of socklb_mark_v1. -ENOENT when there is no such map of the marker's shape. */
int target_read_marker(const struct target *target, uint64_t *epoch, uint64_t *seq);

/* Appends a MAP DESCRIPTOR per map. */
void target_describe(const struct target *target, struct wire_writer *writer);

/* libbpf_num_possible_cpus(), read once. */
int possible_cpus(void);

#endif /* SOCKLB_APPLIER_TARGET_H */
