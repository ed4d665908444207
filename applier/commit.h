/* SPDX-License-Identifier: Apache-2.0 */
/*
 * COMMIT: the staged object becomes the datapath, crash-safe. Everything it
 * will need is first pinned under <pin dir>/staged:
 *
 *   staged/maps/<name>                 the new maps: the set maps/ becomes
 *   staged/pending/<name>              the same maps, each moved over maps/<name> in turn
 *   staged/progs/<attach type>/<name>  the new programs, with what a fresh link needs
 *   staged/links/<name>                a fresh link, before it is moved over links/<name>
 *
 * then `staged/complete` is made: the commit point. After it, each link
 * gets its new program (bpf_link_update: no connect() ever runs without one),
 * each pending map replaces the live pin of its name, and whatever the new
 * object lacks is detached or unpinned; `complete` goes first and staged/
 * last. A restart finds either no `complete`, and drops staged/ (the old
 * datapath never stopped), or one, and finishes the job from the pins. So
 * the links never run a mix of two objects for longer than the commit
 * takes, and maps/socklb_mark_v1 names the state the programs read once
 * it returns.
 */
#ifndef SOCKLB_APPLIER_COMMIT_H
#define SOCKLB_APPLIER_COMMIT_H

#include <stdbool.h>
#include "staged.h"

/*
 * Commits `staged` into `pin_dir`, attaching new links to `cgroup_fd`.
 * 0 or -errno; `committed` says whether the commit point was passed, after
 * which a failure leaves the rest to commit_recover().
 */
int commit_staged(const char *pin_dir, int cgroup_fd, const struct staged *staged, bool *committed);

/* Finishes a commit that passed its point, or drops one that did not. 0 or -errno. */
int commit_recover(const char *pin_dir, int cgroup_fd);

#endif /* SOCKLB_APPLIER_COMMIT_H */
