// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "../bpf/socklb.h"
#include "target.h"

int possible_cpus(void)
{
	static int cpus;

	if (cpus <= 0)
		cpus = libbpf_num_possible_cpus();
	return cpus;
}

static bool is_per_cpu(uint32_t type)
{
	return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

/* Maps of plain keys and values: the LPM trie holds the service CIDRs. */
static bool is_writable(uint32_t type)
{
	return type == BPF_MAP_TYPE_HASH || type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_LRU_HASH ||
	       type == BPF_MAP_TYPE_LPM_TRIE || is_per_cpu(type);
}

void target_init(struct target *target)
{
	target->count = 0;
}

void target_close(struct target *target)
{
	for (size_t i = 0; i < target->count; i++)
		close(target->maps[i].fd);
	target->count = 0;
}

int target_add(struct target *target, const char *name, int fd)
{
	struct bpf_map_info info = {};
	uint32_t info_size = sizeof(info);
	struct target_map *map;
	uint64_t update_size;
	int cpus, err;

	if (target->count == TARGET_MAX_MAPS) {
		err = -E2BIG;
		goto fail;
	}
	if (strlen(name) >= WIRE_NAME_SIZE) {
		err = -ENAMETOOLONG;
		goto fail;
	}
	if (bpf_obj_get_info_by_fd(fd, &info, &info_size) < 0) {
		err = -errno;
		goto fail;
	}
	map = &target->maps[target->count];
	memset(map, 0, sizeof(*map));
	strcpy(map->name, name);
	map->fd = fd;
	map->type = info.type;
	map->key_size = info.key_size;
	map->value_size = info.value_size;
	map->max_entries = info.max_entries;
	map->map_flags = info.map_flags;
	map->writable = is_writable(info.type) && info.key_size > 0;
	update_size = info.value_size;
	if (is_per_cpu(info.type)) {
		cpus = possible_cpus();
		update_size = cpus > 0 ? ((update_size + 7) & ~7ull) * (uint64_t)cpus : 0;
	}
	/* No write of it could fit a frame anyway. */
	if (update_size == 0 || update_size > WIRE_MAX_HOST_PAYLOAD)
		map->writable = false;
	else
		map->update_size = (uint32_t)update_size;
	target->count++;
	return 0;
fail:
	close(fd);
	return err;
}

static int compare_maps(const void *a, const void *b)
{
	return strcmp(((const struct target_map *)a)->name, ((const struct target_map *)b)->name);
}

void target_sort(struct target *target)
{
	qsort(target->maps, target->count, sizeof(target->maps[0]), compare_maps);
}

int target_open_pinned(struct target *target, const char *directory)
{
	struct pin_names names;
	char path[4096];
	int err, fd;

	target_init(target);
	err = pins_list(directory, &names);
	if (err == -ENOENT)
		return 0;
	if (err)
		return err;
	for (size_t i = 0; i < names.count; i++) {
		err = pins_path(path, sizeof(path), "%s/%s", directory, names.name[i]);
		if (err)
			goto fail;
		fd = bpf_obj_get(path);
		if (fd < 0) {
			err = -errno;
			goto fail;
		}
		err = target_add(target, names.name[i], fd);
		if (err)
			goto fail;
	}
	/* pins_list sorted the names already. */
	return 0;
fail:
	target_close(target);
	return err;
}

const struct target_map *target_find(const struct target *target, const char *name)
{
	for (size_t i = 0; i < target->count; i++) {
		if (strcmp(target->maps[i].name, name) == 0)
			return &target->maps[i];
	}
	return NULL;
}

int target_read_marker(const struct target *target, uint64_t *epoch, uint64_t *seq)
{
	const struct target_map *map = target_find(target, MARKER_MAP_NAME);
	struct socklb_marker marker;
	__u32 key = 0;

	if (!map || map->type != BPF_MAP_TYPE_ARRAY || map->key_size != sizeof(key) ||
	    map->value_size != sizeof(marker))
		return -ENOENT;
	if (bpf_map_lookup_elem(map->fd, &key, &marker) < 0)
		return -errno;
	*epoch = marker.epoch;
	*seq = marker.seq;
	return 0;
}

void target_describe(const struct target *target, struct wire_writer *writer)
{
	for (size_t i = 0; i < target->count; i++) {
		const struct target_map *map = &target->maps[i];

		wire_put_text(writer, map->name, WIRE_NAME_SIZE);
		wire_put_u32(writer, map->type);
		wire_put_u32(writer, map->key_size);
		wire_put_u32(writer, map->value_size);
		wire_put_u32(writer, map->max_entries);
		wire_put_u32(writer, map->map_flags);
	}
}
