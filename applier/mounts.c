// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include "log.h"
#include "mounts.h"

#define BPFFS_MOUNT_POINT "/sys/fs/bpf"
#define CGROUP2_MOUNT_POINT "/sys/fs/cgroup"

/* mountinfo escapes space, tab, newline and backslash as \ and three octal digits; decoded in place. */
static void unescape(char *text)
{
	char *to = text;

	for (char *from = text; *from; to++) {
		if (from[0] == '\\' && from[1] >= '0' && from[1] <= '3' && from[2] >= '0' && from[2] <= '7' &&
		    from[3] >= '0' && from[3] <= '7') {
			*to = (char)((from[1] - '0') << 6 | (from[2] - '0') << 3 | (from[3] - '0'));
			from += 4;
		} else {
			*to = *from++;
		}
	}
	*to = '\0';
}

/* Whether `path` is `mount_point` or below it. */
static bool is_below(const char *path, const char *mount_point)
{
	size_t length = strlen(mount_point);

	if (strcmp(mount_point, "/") == 0)
		return true;
	return strncmp(path, mount_point, length) == 0 && (path[length] == '\0' || path[length] == '/');
}

/*
 * The first mount of `fstype` whose root is its filesystem's root (a bind
 * mount of a sub-tree is not the hierarchy's root), and that holds `path`
 * when `path` is given. 0, -ENOENT or -errno.
 */
static int find_mount(const char *fstype, const char *path, char *found, size_t size)
{
	char *line = NULL, *fields[5], *separator, *type, *state;
	size_t capacity = 0;
	int err = -ENOENT;
	FILE *mountinfo;

	mountinfo = fopen("/proc/self/mountinfo", "re");
	if (!mountinfo)
		return -errno;
	/* "36 25 0:31 / /sys/fs/cgroup rw,relatime shared:10 - cgroup2 cgroup2 rw" */
	while (err == -ENOENT && getline(&line, &capacity, mountinfo) > 0) {
		separator = strstr(line, " - ");
		if (!separator)
			continue;
		*separator = '\0';
		type = strtok_r(separator + 3, " \n", &state);
		if (!type || strcmp(type, fstype) != 0)
			continue;
		fields[0] = strtok_r(line, " ", &state);
		for (int i = 1; i < 5 && fields[i - 1]; i++)
			fields[i] = strtok_r(NULL, " ", &state);
		if (!fields[0] || !fields[4])
			continue;
		unescape(fields[3]);
		unescape(fields[4]);
		if (strcmp(fields[3], "/") != 0 || (path && !is_below(path, fields[4])))
			continue;
		if (snprintf(found, size, "%s", fields[4]) >= (int)size)
			err = -ENAMETOOLONG;
		else
			err = 0;
	}
	free(line);
	fclose(mountinfo);
	return err;
}

int mounts_ensure_bpffs(const char *pin_dir)
{
	char mount_point[4096];
	int err;

	err = find_mount("bpf", pin_dir, mount_point, sizeof(mount_point));
	if (err != -ENOENT)
		return err;
	if (!is_below(pin_dir, BPFFS_MOUNT_POINT)) {
		log_line("--pin-dir %s is on no BPF filesystem, and only %s is mounted when missing", pin_dir,
			 BPFFS_MOUNT_POINT);
		return -ENOTDIR;
	}
	if (mkdir(BPFFS_MOUNT_POINT, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (mount("bpf", BPFFS_MOUNT_POINT, "bpf", 0, "mode=0700") < 0)
		return -errno;
	log_line("mounted a BPF filesystem at %s", BPFFS_MOUNT_POINT);
	return 0;
}

int mounts_cgroup2_root(char *path, size_t size)
{
	int err;

	err = find_mount("cgroup2", NULL, path, size);
	if (err != -ENOENT)
		return err;
	if (mkdir(CGROUP2_MOUNT_POINT, 0755) < 0 && errno != EEXIST)
		return -errno;
	if (mount("cgroup2", CGROUP2_MOUNT_POINT, "cgroup2", 0, NULL) < 0)
		return -errno;
	log_line("mounted the cgroup v2 hierarchy at %s", CGROUP2_MOUNT_POINT);
	if (snprintf(path, size, "%s", CGROUP2_MOUNT_POINT) >= (int)size)
		return -ENAMETOOLONG;
	return 0;
}
