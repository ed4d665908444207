// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "log.h"
#include "staged.h"

/* An OBJECT as received, checked whole before anything is done with it. */
struct object_request {
	size_t map_count;
	struct {
		char name[WIRE_NAME_SIZE];
		uint32_t max_entries;
		uint32_t flags;
	} maps[TARGET_MAX_MAPS];
	const uint8_t *elf;
	size_t elf_size;
};

static int parse_request(const uint8_t *payload, size_t size, struct object_request *request)
{
	struct wire_reader reader = { .at = payload, .left = size };
	uint16_t map_count, flags;
	uint32_t elf_size;

	if (!wire_get_u16(&reader, &map_count) || !wire_get_u16(&reader, &flags))
		return -EPROTO;
	if (flags != 0 || map_count > TARGET_MAX_MAPS)
		return -EPROTO;
	request->map_count = map_count;
	for (size_t i = 0; i < map_count; i++) {
		if (!wire_get_name(&reader, request->maps[i].name) ||
		    !wire_get_u32(&reader, &request->maps[i].max_entries) ||
		    !wire_get_u32(&reader, &request->maps[i].flags))
			return -EPROTO;
		if (request->maps[i].flags & ~WIRE_OBJECT_KEEP_PINNED)
			return -EPROTO;
	}
	if (!wire_get_u32(&reader, &elf_size) || elf_size == 0 || elf_size != reader.left)
		return -EPROTO;
	request->elf = wire_get_bytes(&reader, elf_size);
	request->elf_size = elf_size;
	return 0;
}

/*
 * A pass of its own, before the object is even opened: a capacity over the
 * limit is never allocated, and is the answer whatever else is wrong with
 * the OBJECT (docs/guest-protocol.md).
 */
static int check_capacities(const struct object_request *request, char *message, size_t message_size)
{
	for (size_t i = 0; i < request->map_count; i++) {
		if (request->maps[i].max_entries > WIRE_MAX_MAP_ENTRIES) {
			snprintf(message, message_size, "map %s: max_entries %u over the limit of %u",
				 request->maps[i].name, request->maps[i].max_entries, WIRE_MAX_MAP_ENTRIES);
			return -E2BIG;
		}
	}
	return 0;
}

/*
 * A step that failed: `message` says which, with libbpf's first warning when it gave one.
 * libbpf_strerror, not strerror: libbpf answers an ELF it cannot use with codes of its own
 * (LIBBPF_ERRNO__FORMAT, 4001...), which strerror calls "Unknown error".
 */
static int failed(int err, char *message, size_t message_size, const char *step)
{
	const char *warning = log_libbpf_warning();
	char reason[128];

	libbpf_strerror(err, reason, sizeof(reason));
	snprintf(message, message_size, "%s: %s%s%s", step, reason, *warning ? ": " : "", warning);
	return err;
}

/*
 * Reuses the live map pinned under the name of `map` when it has the same
 * type, key, value and flags (its capacity stays its own): socket storage
 * and connection entries record addresses, which survive a new object.
 */
static int keep_pinned(struct bpf_map *map, const char *maps_dir)
{
	struct bpf_map_info info = {};
	uint32_t info_size = sizeof(info);
	char path[4096];
	int err, fd;

	err = pins_path(path, sizeof(path), "%s/%s", maps_dir, bpf_map__name(map));
	if (err)
		return err;
	fd = bpf_obj_get(path);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	err = bpf_obj_get_info_by_fd(fd, &info, &info_size) < 0 ? -errno : 0;
	if (!err && info.type == bpf_map__type(map) && info.key_size == bpf_map__key_size(map) &&
	    info.value_size == bpf_map__value_size(map) && info.map_flags == bpf_map__map_flags(map))
		err = bpf_map__reuse_fd(map, fd);
	else if (!err)
		log_line("%s is not reused: another type, key, value or flags than the new object's", path);
	close(fd);
	return err;
}

static bool is_cgroup_program(enum bpf_prog_type type)
{
	return type == BPF_PROG_TYPE_CGROUP_SKB || type == BPF_PROG_TYPE_CGROUP_SOCK ||
	       type == BPF_PROG_TYPE_CGROUP_SOCK_ADDR || type == BPF_PROG_TYPE_CGROUP_SOCKOPT ||
	       type == BPF_PROG_TYPE_CGROUP_SYSCTL || type == BPF_PROG_TYPE_CGROUP_DEVICE ||
	       type == BPF_PROG_TYPE_SOCK_OPS;
}

/*
 * What COMMIT will pin and attach must be possible to pin and attach, so
 * that a commit past its point of no return has nothing left to refuse.
 */
static int check_pinnable(struct bpf_object *object, char *message, size_t message_size)
{
	struct bpf_program *program;
	size_t programs = 0;
	struct bpf_map *map;

	bpf_object__for_each_program(program, object) {
		if (!is_cgroup_program(bpf_program__type(program))) {
			snprintf(message, message_size, "program %s: not a cgroup program", bpf_program__name(program));
			return -EINVAL;
		}
		if (strlen(bpf_program__name(program)) >= PINS_NAME_SIZE || ++programs > PINS_MAX_ENTRIES) {
			snprintf(message, message_size, "program %s: too many programs, or a name too long to pin",
				 bpf_program__name(program));
			return -E2BIG;
		}
	}
	bpf_object__for_each_map(map, object) {
		if (!bpf_map__is_internal(map) && strlen(bpf_map__name(map)) >= WIRE_NAME_SIZE) {
			snprintf(message, message_size, "map %s: name longer than %d bytes", bpf_map__name(map),
				 WIRE_NAME_SIZE - 1);
			return -ENAMETOOLONG;
		}
	}
	return 0;
}

/*
 * What `map` makes the kernel allocate at load, as WIRE_MAX_OBJECT_MAP_BYTES
 * counts it (UINT64_MAX past that). Socket storage declares 0 entries: it
 * costs by socket, later, not at load. A map KEEP_PINNED reuses counts too,
 * at its live capacity: it is held while the object is.
 */
static uint64_t map_bytes(const struct bpf_map *map, uint64_t possible_cpus)
{
	uint64_t entries = bpf_map__max_entries(map), value = bpf_map__value_size(map), bytes;

	switch (bpf_map__type(map)) {
	case BPF_MAP_TYPE_RINGBUF:
	case BPF_MAP_TYPE_USER_RINGBUF:
		return entries;
	case BPF_MAP_TYPE_PERCPU_ARRAY:
	case BPF_MAP_TYPE_PERCPU_HASH:
	case BPF_MAP_TYPE_LRU_PERCPU_HASH:
		value = (value + 7) / 8 * 8 * possible_cpus;
		break;
	default:
		break;
	}
	if (__builtin_mul_overflow(entries, bpf_map__key_size(map) + value, &bytes))
		return UINT64_MAX;
	return bytes;
}

/*
 * After the capacities are set, before the kernel allocates any of them:
 * the maps the OBJECT does not list keep the ELF's capacities, and no
 * capacity says what a key, a value or a CPU costs (docs/guest-protocol.md).
 */
static int check_map_bytes(struct bpf_object *object, char *message, size_t message_size)
{
	int possible_cpus = libbpf_num_possible_cpus();
	uint64_t total = 0;
	struct bpf_map *map;

	if (possible_cpus < 0)
		return failed(possible_cpus, message, message_size, "libbpf_num_possible_cpus");
	bpf_object__for_each_map(map, object) {
		if (__builtin_add_overflow(total, map_bytes(map, possible_cpus), &total))
			total = UINT64_MAX;
	}
	if (total > WIRE_MAX_OBJECT_MAP_BYTES) {
		snprintf(message, message_size, "the maps take %llu bytes, over the limit of %llu",
			 (unsigned long long)total, (unsigned long long)WIRE_MAX_OBJECT_MAP_BYTES);
		return -E2BIG;
	}
	return 0;
}

/* The object's maps as a target, by name; the fds are duplicates, the target's own. */
static int describe_maps(struct bpf_object *object, struct target *target)
{
	struct bpf_map *map;
	int err, fd;

	target_init(target);
	bpf_object__for_each_map(map, object) {
		if (bpf_map__is_internal(map))
			continue;
		fd = fcntl(bpf_map__fd(map), F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			err = -errno;
			goto fail;
		}
		err = target_add(target, bpf_map__name(map), fd);
		if (err)
			goto fail;
	}
	target_sort(target);
	return 0;
fail:
	target_close(target);
	return err;
}

void staged_init(struct staged *staged)
{
	staged->object = NULL;
	target_init(&staged->target);
}

void staged_close(struct staged *staged)
{
	target_close(&staged->target);
	bpf_object__close(staged->object);
	staged->object = NULL;
}

static int configure_maps(struct bpf_object *object, const struct object_request *request, const char *maps_dir,
			  char *message, size_t message_size)
{
	struct bpf_map *map;
	int err;

	/* Staged means unpinned, whatever pinning the object declares. */
	bpf_object__for_each_map(map, object) {
		err = bpf_map__set_pin_path(map, NULL);
		if (err)
			return failed(err, message, message_size, "bpf_map__set_pin_path");
	}
	for (size_t i = 0; i < request->map_count; i++) {
		map = bpf_object__find_map_by_name(object, request->maps[i].name);
		if (!map || bpf_map__is_internal(map)) {
			snprintf(message, message_size, "map %s: not in the object", request->maps[i].name);
			return -ENOENT;
		}
		err = bpf_map__set_max_entries(map, request->maps[i].max_entries);
		if (err)
			return failed(err, message, message_size, "bpf_map__set_max_entries");
		if (request->maps[i].flags & WIRE_OBJECT_KEEP_PINNED) {
			err = keep_pinned(map, maps_dir);
			if (err)
				return failed(err, message, message_size, "reuse of a pinned map");
		}
	}
	return 0;
}

int staged_load(struct staged *staged, const uint8_t *payload, size_t size, const char *maps_dir, char *message,
		size_t message_size)
{
	LIBBPF_OPTS(bpf_object_open_opts, options, .object_name = "socklb");
	struct object_request request;
	struct bpf_object *object;
	int err;

	err = parse_request(payload, size, &request);
	if (err)
		return err;
	staged_close(staged);
	log_forget_libbpf();
	message[0] = '\0';
	err = check_capacities(&request, message, message_size);
	if (err)
		return err;
	/* libbpf copies what it keeps of the ELF: the frame may go once this returns. */
	object = bpf_object__open_mem(request.elf, request.elf_size, &options);
	if (!object)
		return failed(-errno, message, message_size, "bpf_object__open_mem");
	err = configure_maps(object, &request, maps_dir, message, message_size);
	if (!err)
		err = check_map_bytes(object, message, message_size);
	if (!err)
		err = check_pinnable(object, message, message_size);
	if (!err) {
		err = bpf_object__load(object);
		if (err)
			failed(err, message, message_size, "bpf_object__load");
	}
	if (!err) {
		err = describe_maps(object, &staged->target);
		if (err)
			failed(err, message, message_size, "describing the maps");
	}
	if (err) {
		bpf_object__close(object);
		return err;
	}
	staged->object = object;
	return 0;
}
