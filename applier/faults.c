// SPDX-License-Identifier: Apache-2.0
#ifdef SOCKLB_APPLIER_FAULTS
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "faults.h"
#include "log.h"

static const char *const site_names[] = {
	[FAULT_WRITE] = "write",
	[FAULT_COMMIT] = "commit",
};

static int exit_site = -1;
static unsigned long exit_at;
static unsigned long events[2];

void faults_init(void)
{
	const char *setting = getenv("SOCKLB_APPLIER_EXIT_AT");
	const char *colon;
	char *end = NULL;

	if (!setting)
		return;
	colon = strchr(setting, ':');
	for (int site = 0; colon && site < 2; site++) {
		if (strlen(site_names[site]) == (size_t)(colon - setting) &&
		    strncmp(setting, site_names[site], (size_t)(colon - setting)) == 0)
			exit_site = site;
	}
	exit_at = colon ? strtoul(colon + 1, &end, 10) : 0;
	if (exit_site < 0 || exit_at == 0 || !end || *end != '\0') {
		log_line("SOCKLB_APPLIER_EXIT_AT=%s: expected write:N or commit:N, N from 1", setting);
		_exit(2);
	}
}

void fault_point(enum fault_site site)
{
	if ((int)site != exit_site || ++events[site] != exit_at)
		return;
	log_line("injected fault: exit after %s %lu", site_names[site], exit_at);
	_exit(FAULT_EXIT_STATUS);
}
#endif
