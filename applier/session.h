/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One conversation with the host, from HELLO to the end of the connection:
 * each host frame is served in turn, and answered.
 */
#ifndef SOCKLB_APPLIER_SESSION_H
#define SOCKLB_APPLIER_SESSION_H

#include <stdbool.h>
#include "stream.h"

/* What every session shares: the command line's settings. */
struct settings {
	const char *pin_dir;
	/* <pin dir>/maps */
	char maps_dir[4096];
	/* The cgroup v2 root the links attach to. */
	int cgroup_fd;
};

/*
 * Says HELLO, echoing `*nonce` (the RESYNC's that started the session; 0 on
 * a socket), and serves the host's frames. 0 when a serial host sent RESYNC
 * again (a new session starts at once, with the new nonce in `*nonce`);
 * otherwise the -errno that ended it: -EPROTO for a malformed frame,
 * -ECONNRESET when the host closed. `served` tells whether any frame was
 * served.
 */
int session_run(const struct settings *settings, struct stream *stream, uint64_t *nonce, bool *served);

#endif /* SOCKLB_APPLIER_SESSION_H */
