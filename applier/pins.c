// SPDX-License-Identifier: Apache-2.0
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "pins.h"

/* staged/progs/<attach type>/<name> is the deepest a pin directory goes. */
#define PINS_MAX_DEPTH 4

int pins_path(char *path, size_t size, const char *format, ...)
{
	va_list args;
	int length;

	va_start(args, format);
	length = vsnprintf(path, size, format, args);
	va_end(args);
	if (length < 0)
		return -EINVAL;
	return (size_t)length < size ? 0 : -ENAMETOOLONG;
}

int pins_make_directory(const char *path)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(a, b);
}

int pins_list(const char *directory, struct pin_names *names)
{
	struct dirent *entry;
	size_t length;
	int err = 0;
	DIR *dir;

	names->count = 0;
	dir = opendir(directory);
	if (!dir)
		return -errno;
	while (!err && (entry = readdir(dir))) {
		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
			continue;
		length = strlen(entry->d_name);
		if (length >= PINS_NAME_SIZE)
			err = -ENAMETOOLONG;
		else if (names->count == PINS_MAX_ENTRIES)
			err = -E2BIG;
		else
			memcpy(names->name[names->count++], entry->d_name, length + 1);
	}
	closedir(dir);
	qsort(names->name, names->count, PINS_NAME_SIZE, compare_names);
	return err;
}

int pins_contains(const struct pin_names *names, const char *name)
{
	for (size_t i = 0; i < names->count; i++) {
		if (strcmp(names->name[i], name) == 0)
			return 1;
	}
	return 0;
}

static int remove_below(int depth, const char *path)
{
	char child[4096];
	struct dirent *entry;
	struct stat status;
	int err = 0;
	DIR *dir;

	if (lstat(path, &status) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(status.st_mode))
		return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
	if (depth == PINS_MAX_DEPTH)
		return -ELOOP;
	dir = opendir(path);
	if (!dir)
		return -errno;
	while (!err && (entry = readdir(dir))) {
		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
			continue;
		err = pins_path(child, sizeof(child), "%s/%s", path, entry->d_name);
		if (!err)
			err = remove_below(depth + 1, child);
	}
	closedir(dir);
	if (err)
		return err;
	return rmdir(path) < 0 && errno != ENOENT ? -errno : 0;
}

int pins_remove_tree(const char *path)
{
	return remove_below(0, path);
}
