/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The two filesystems the applier needs, found in /proc/self/mountinfo and
 * mounted when a minimal guest init left them out: a BPF filesystem for the
 * pins, and the cgroup v2 hierarchy whose root the programs attach to (the
 * whole guest is the sandbox).
 */
#ifndef SOCKLB_APPLIER_MOUNTS_H
#define SOCKLB_APPLIER_MOUNTS_H

#include <stddef.h>

/* Pins go to a bpffs: mounts one at /sys/fs/bpf if `pin_dir` is below it and none is mounted. 0 or -errno. */
int mounts_ensure_bpffs(const char *pin_dir);

/* The first cgroup v2 mount point into `path`, mounting one at /sys/fs/cgroup if there is none. 0 or -errno. */
int mounts_cgroup2_root(char *path, size_t size);

#endif /* SOCKLB_APPLIER_MOUNTS_H */
