// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "commit.h"
#include "faults.h"
#include "log.h"
#include "pins.h"

#define PATH_SIZE 4096

/* A pin that exists, whatever it is. */
static bool exists(const char *path)
{
	struct stat status;

	return lstat(path, &status) == 0;
}

static int pin(int fd, const char *path)
{
	if (bpf_obj_pin(fd, path) < 0)
		return -errno;
	fault_point(FAULT_COMMIT);
	return 0;
}

static int move(const char *from, const char *to)
{
	if (rename(from, to) < 0)
		return -errno;
	fault_point(FAULT_COMMIT);
	return 0;
}

/* A pin that is already gone is no error (a restart redoing a step). */
static int unpin(const char *path)
{
	if (unlink(path) < 0)
		return errno == ENOENT ? 0 : -errno;
	fault_point(FAULT_COMMIT);
	return 0;
}

/* Step 1: everything the rest needs, under staged/, in any order: nothing reads it yet. */
static int pin_staged(const char *pin_dir, const struct staged *staged)
{
	struct bpf_program *program;
	char path[PATH_SIZE];
	int err;

	for (size_t i = 0; i < staged->target.count; i++) {
		const struct target_map *map = &staged->target.maps[i];

		err = pins_path(path, sizeof(path), "%s/staged/maps/%s", pin_dir, map->name);
		err = err ?: pin(map->fd, path);
		err = err ?: pins_path(path, sizeof(path), "%s/staged/pending/%s", pin_dir, map->name);
		err = err ?: pin(map->fd, path);
		if (err)
			return err;
	}
	bpf_object__for_each_program(program, staged->object) {
		err = pins_path(path, sizeof(path), "%s/staged/progs/%d", pin_dir,
				(int)bpf_program__expected_attach_type(program));
		err = err ?: pins_make_directory(path);
		err = err ?: pins_path(path, sizeof(path), "%s/staged/progs/%d/%s", pin_dir,
				       (int)bpf_program__expected_attach_type(program), bpf_program__name(program));
		err = err ?: pin(bpf_program__fd(program), path);
		if (err)
			return err;
	}
	return 0;
}

/* A link to the cgroup made afresh, pinned under staged/links, then moved over the live pin. */
static int attach_fresh(const char *pin_dir, int cgroup_fd, int program_fd, enum bpf_attach_type type,
			const char *name)
{
	char staged_link[PATH_SIZE], live_link[PATH_SIZE];
	int err, link_fd;

	err = pins_path(staged_link, sizeof(staged_link), "%s/staged/links/%s", pin_dir, name);
	err = err ?: pins_path(live_link, sizeof(live_link), "%s/links/%s", pin_dir, name);
	/* A link an interrupted run pinned here is attached too: it goes, or it would run twice. */
	err = err ?: unpin(staged_link);
	if (err)
		return err;
	link_fd = bpf_link_create(program_fd, cgroup_fd, type, NULL);
	if (link_fd < 0)
		return -errno;
	err = pin(link_fd, staged_link);
	close(link_fd);
	return err ?: move(staged_link, live_link);
}

/* Step 3 for one program: its live link runs it from now on. */
static int attach(const char *pin_dir, int cgroup_fd, enum bpf_attach_type type, const char *name)
{
	char path[PATH_SIZE];
	int err, program_fd, link_fd;

	err = pins_path(path, sizeof(path), "%s/staged/progs/%d/%s", pin_dir, (int)type, name);
	if (err)
		return err;
	program_fd = bpf_obj_get(path);
	if (program_fd < 0)
		return -errno;
	err = pins_path(path, sizeof(path), "%s/links/%s", pin_dir, name);
	if (err)
		goto out;
	link_fd = bpf_obj_get(path);
	if (link_fd >= 0) {
		err = bpf_link_update(link_fd, program_fd, NULL) < 0 ? -errno : 0;
		close(link_fd);
		if (!err) {
			fault_point(FAULT_COMMIT);
			goto out;
		}
		/* Another attach type under the old name, say: a new link replaces it. */
		log_line("%s: bpf_link_update: %s; attaching a new link in its place", path, strerror(-err));
	}
	err = attach_fresh(pin_dir, cgroup_fd, program_fd, type, name);
out:
	close(program_fd);
	return err;
}

/*
 * Unpins each entry of <pin_dir>/<directory> that `kept` does not name: what
 * the new object lacks. Links are detached first (`detach`), even if another
 * process holds one open.
 */
static int unpin_others(const char *pin_dir, const char *directory, const struct pin_names *kept, bool detach)
{
	struct pin_names present;
	char path[PATH_SIZE];
	int err, link_fd;

	err = pins_path(path, sizeof(path), "%s/%s", pin_dir, directory);
	err = err ?: pins_list(path, &present);
	for (size_t i = 0; !err && i < present.count; i++) {
		if (pins_contains(kept, present.name[i]))
			continue;
		err = pins_path(path, sizeof(path), "%s/%s/%s", pin_dir, directory, present.name[i]);
		if (err)
			break;
		link_fd = detach ? bpf_obj_get(path) : -1;
		if (link_fd >= 0) {
			bpf_link_detach(link_fd);
			close(link_fd);
		}
		err = unpin(path);
	}
	return err;
}

/* Step 3: every program into its link, then the links of programs the new object lacks detached. */
static int attach_all(const char *pin_dir, int cgroup_fd)
{
	struct pin_names types, names, programs = { .count = 0 };
	char path[PATH_SIZE];
	unsigned long type;
	char *end;
	int err;

	err = pins_path(path, sizeof(path), "%s/staged/links", pin_dir);
	err = err ?: pins_make_directory(path);
	err = err ?: pins_path(path, sizeof(path), "%s/staged/progs", pin_dir);
	err = err ?: pins_list(path, &types);
	for (size_t t = 0; !err && t < types.count; t++) {
		type = strtoul(types.name[t], &end, 10);
		if (*end != '\0' || type > __MAX_BPF_ATTACH_TYPE)
			return -EINVAL;
		err = pins_path(path, sizeof(path), "%s/staged/progs/%s", pin_dir, types.name[t]);
		err = err ?: pins_list(path, &names);
		for (size_t i = 0; !err && i < names.count; i++) {
			if (programs.count == PINS_MAX_ENTRIES)
				return -E2BIG;
			snprintf(programs.name[programs.count++], PINS_NAME_SIZE, "%s", names.name[i]);
			err = attach(pin_dir, cgroup_fd, (enum bpf_attach_type)type, names.name[i]);
		}
	}
	return err ?: unpin_others(pin_dir, "links", &programs, true);
}

/* Step 4: each pending map over the live pin of its name, then live pins the new object lacks removed. */
static int replace_maps(const char *pin_dir)
{
	struct pin_names maps, pending;
	char from[PATH_SIZE], to[PATH_SIZE];
	int err;

	err = pins_path(from, sizeof(from), "%s/staged/maps", pin_dir);
	err = err ?: pins_list(from, &maps);
	err = err ?: pins_path(from, sizeof(from), "%s/staged/pending", pin_dir);
	err = err ?: pins_list(from, &pending);
	for (size_t i = 0; !err && i < pending.count; i++) {
		err = pins_path(from, sizeof(from), "%s/staged/pending/%s", pin_dir, pending.name[i]);
		err = err ?: pins_path(to, sizeof(to), "%s/maps/%s", pin_dir, pending.name[i]);
		err = err ?: move(from, to);
	}
	return err ?: unpin_others(pin_dir, "maps", &maps, false);
}

/* Steps 3 to 5, from the pins alone. */
static int finish(const char *pin_dir, int cgroup_fd)
{
	char path[PATH_SIZE];
	int err;

	err = attach_all(pin_dir, cgroup_fd);
	err = err ?: replace_maps(pin_dir);
	/* `complete` first: staged/ without it is debris, which a restart removes. */
	err = err ?: pins_path(path, sizeof(path), "%s/staged/complete", pin_dir);
	if (err)
		return err;
	if (rmdir(path) < 0 && errno != ENOENT)
		return -errno;
	fault_point(FAULT_COMMIT);
	err = pins_path(path, sizeof(path), "%s/staged", pin_dir);
	return err ?: pins_remove_tree(path);
}

int commit_staged(const char *pin_dir, int cgroup_fd, const struct staged *staged, bool *committed)
{
	static const char *const directories[] = { "staged", "staged/maps", "staged/pending", "staged/progs" };
	char path[PATH_SIZE];
	int err;

	*committed = false;
	err = pins_path(path, sizeof(path), "%s/staged", pin_dir);
	err = err ?: pins_remove_tree(path);
	for (size_t i = 0; !err && i < sizeof(directories) / sizeof(directories[0]); i++) {
		err = pins_path(path, sizeof(path), "%s/%s", pin_dir, directories[i]);
		err = err ?: pins_make_directory(path);
	}
	err = err ?: pin_staged(pin_dir, staged);
	err = err ?: pins_path(path, sizeof(path), "%s/staged/complete", pin_dir);
	if (!err && mkdir(path, 0700) < 0)
		err = -errno;
	if (err) {
		/* The live datapath was never touched: the staged pins are all there is to undo. */
		pins_path(path, sizeof(path), "%s/staged", pin_dir);
		pins_remove_tree(path);
		return err;
	}
	fault_point(FAULT_COMMIT);
	*committed = true;
	return finish(pin_dir, cgroup_fd);
}

int commit_recover(const char *pin_dir, int cgroup_fd)
{
	char path[PATH_SIZE];
	int err;

	err = pins_path(path, sizeof(path), "%s/staged/complete", pin_dir);
	if (err)
		return err;
	if (exists(path)) {
		log_line("finishing the commit a previous run left at %s", path);
		return finish(pin_dir, cgroup_fd);
	}
	err = pins_path(path, sizeof(path), "%s/staged", pin_dir);
	if (err || !exists(path))
		return err;
	log_line("dropping the uncommitted %s a previous run left", path);
	return pins_remove_tree(path);
}
