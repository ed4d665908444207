/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OBJECT: the BPF object the host sent, loaded with the capacities it asked
 * for and with none of its maps pinned, so that the host can fill them
 * before anything reads them. COMMIT (commit.c) makes it the datapath.
 */
#ifndef SOCKLB_APPLIER_STAGED_H
#define SOCKLB_APPLIER_STAGED_H

#include <stddef.h>
#include <stdint.h>
#include "target.h"

struct bpf_object;

struct staged {
	/* NULL while nothing is staged. */
	struct bpf_object *object;
	/* Its maps (the libbpf internal ones left out), by name. */
	struct target target;
};

void staged_init(struct staged *staged);
void staged_close(struct staged *staged);

/*
 * Replaces what is staged by the OBJECT in `payload`. 0 once loaded;
 * -EPROTO when the payload is malformed (nothing was done); another -errno
 * when the object did not load, with `message` saying which step failed.
 * `maps_dir` holds the live maps that KEEP_PINNED reuses.
 */
int staged_load(struct staged *staged, const uint8_t *payload, size_t size, const char *maps_dir, char *message,
		size_t message_size);

#endif /* SOCKLB_APPLIER_STAGED_H */
