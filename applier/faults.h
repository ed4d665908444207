/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fault injection, in the test build only (-DSOCKLB_APPLIER_FAULTS): with
 * SOCKLB_APPLIER_EXIT_AT=write:N the applier _exit()s right after its Nth map
 * write, with commit:N right after the Nth change a COMMIT (or the recovery
 * of one) makes to the pins and links, so that a test can stop it at every
 * point and check what a restart finds. The production build compiles none
 * of it.
 */
#ifndef SOCKLB_APPLIER_FAULTS_H
#define SOCKLB_APPLIER_FAULTS_H

enum fault_site {
	FAULT_WRITE,
	FAULT_COMMIT,
};

/* The exit status of an injected fault, which no other exit uses. */
#define FAULT_EXIT_STATUS 86

#ifdef SOCKLB_APPLIER_FAULTS
/* Reads SOCKLB_APPLIER_EXIT_AT; a value it cannot read ends the applier (a test mistake). */
void faults_init(void);
/* Counts one event of `site`; exits at the one asked for. */
void fault_point(enum fault_site site);
#else
static inline void faults_init(void)
{
}

static inline void fault_point(enum fault_site site)
{
	(void)site;
}
#endif

#endif /* SOCKLB_APPLIER_FAULTS_H */
