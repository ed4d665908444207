/* SPDX-License-Identifier: Apache-2.0 */
/* What the applier tells people: one line per event on stderr. */
#ifndef SOCKLB_APPLIER_LOG_H
#define SOCKLB_APPLIER_LOG_H

#include <stddef.h>

void log_line(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Routes libbpf's messages to stderr, remembering its first warning. */
void log_capture_libbpf(void);

/*
 * libbpf's first warning since log_forget_libbpf(), its first line only; ""
 * for none. The first says what failed; the ones after it that it failed.
 */
const char *log_libbpf_warning(void);
void log_forget_libbpf(void);

#endif /* SOCKLB_APPLIER_LOG_H */
