/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pin directory (docs/guest-protocol.md):
 *
 *   <pin dir>/maps/<map name>        the live maps
 *   <pin dir>/links/<program name>   one cgroup link per program, at the cgroup v2 root
 *   <pin dir>/staged/...             a COMMIT in progress (commit.c)
 *
 * and the few file operations the rest needs on a BPF filesystem.
 */
#ifndef SOCKLB_APPLIER_PINS_H
#define SOCKLB_APPLIER_PINS_H

#include <stddef.h>

/* More entries in one pin directory than an object can have: not ours to read. */
#define PINS_MAX_ENTRIES 64
/* Program and map names, with their NUL. */
#define PINS_NAME_SIZE 64

struct pin_names {
	size_t count;
	char name[PINS_MAX_ENTRIES][PINS_NAME_SIZE];
};

/* snprintf into `path`; -ENAMETOOLONG instead of a cut path. */
int pins_path(char *path, size_t size, const char *format, ...) __attribute__((format(printf, 3, 4)));

/* mkdir that accepts an existing directory. 0 or -errno. */
int pins_make_directory(const char *path);

/* The entries of `directory`, sorted by name (strcmp). -ENOENT when it is missing, -E2BIG, -errno. */
int pins_list(const char *directory, struct pin_names *names);

/* Whether `name` is in `names`. */
int pins_contains(const struct pin_names *names, const char *name);

/* Removes `path` and everything below it (pins and directories); a missing one is no error. 0 or -errno. */
int pins_remove_tree(const char *path);

#endif /* SOCKLB_APPLIER_PINS_H */
