/* SPDX-License-Identifier: Apache-2.0 */
/*
 * BATCH: groups of map writes, applied in order. A write that fails stops
 * its group (every prefix of a group is consistent, by the planner's order);
 * later groups run unless ONLY_IF_CLEAN. The whole payload is checked before
 * the first write, so a malformed batch writes nothing.
 */
#ifndef SOCKLB_APPLIER_BATCH_H
#define SOCKLB_APPLIER_BATCH_H

#include <stddef.h>
#include <stdint.h>
#include "target.h"

struct batch_result {
	uint64_t epoch;
	uint64_t seq;
	/* 0, or the first failed write's -errno and place. */
	int error;
	uint32_t failed_group;
	uint32_t failed_write;
};

/*
 * Applies the BATCH in `payload` to `target`. 0 with `result` filled (its
 * error says how the writes went); -EPROTO when the payload is malformed
 * (nothing written); -ENOMEM or -errno when it could not start.
 */
int batch_apply(const struct target *target, const uint8_t *payload, size_t size, struct batch_result *result);

/*
 * Waits for the programs' readers if a batch deleted entries since they were
 * last waited for: called once the batch is acknowledged, so that the wait a
 * later batch handing the freed ids out would need is out of its way.
 */
void batch_wait_after_deletes(void);

#endif /* SOCKLB_APPLIER_BATCH_H */
