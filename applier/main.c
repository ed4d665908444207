// SPDX-License-Identifier: Apache-2.0
/*
 * socklb-applier: the guest half of socklb's guest mode (docs/guest-mode.md).
 * The host plans every map write; this program only loads the object the
 * host sends, applies the writes in the order received, and swaps a new
 * datapath in atomically, all at the cgroup v2 root of its (virtual)
 * machine. It keeps no state besides its pins, so it may be killed and
 * restarted at any time.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include "commit.h"
#include "faults.h"
#include "frame.h"
#include "log.h"
#include "mounts.h"
#include "pins.h"
#include "session.h"

#define DEFAULT_PIN_DIR "/sys/fs/bpf/socklb"
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static const char usage[] =
	"usage: socklb-applier (--connect unix:PATH | --connect vsock:CID:PORT | --serial PATH)\n"
	"                      [--pin-dir DIR] [--cgroup PATH]\n"
	"\n"
	"Applies the BPF object and map writes a socklb host agent sends (docs/guest-protocol.md).\n"
	"  --connect unix:PATH      the host's Unix socket\n"
	"  --connect vsock:CID:PORT the host over vsock: CID 2 (1 over vsock_loopback), PORT the\n"
	"                           agent's --guest-vsock-port (default 1024) or the one its VMM forwards\n"
	"  --serial PATH            a virtio-serial port, e.g. /dev/virtio-ports/socklb\n"
	"  --pin-dir DIR            where maps and links are pinned (default " DEFAULT_PIN_DIR ")\n"
	"  --cgroup PATH            the cgroup to attach to (default: the cgroup v2 root)\n";

static int parse_arguments(int argc, char **argv, struct settings *settings, struct endpoint *endpoint,
			   const char **cgroup)
{
	static const struct option options[] = {
		{ "connect", required_argument, NULL, 'c' }, { "serial", required_argument, NULL, 's' },
		{ "pin-dir", required_argument, NULL, 'p' }, { "cgroup", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },	     { NULL, 0, NULL, 0 },
	};
	int option, endpoints = 0, err = 0;

	settings->pin_dir = DEFAULT_PIN_DIR;
	*cgroup = NULL;
	while (!err && (option = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (option) {
		case 'c':
			endpoints++;
			err = endpoint_parse_connect(optarg, endpoint);
			if (err)
				fprintf(stderr, "--connect %s: expected unix:PATH or vsock:CID:PORT\n", optarg);
			break;
		case 's':
			endpoints++;
			err = endpoint_parse_serial(optarg, endpoint);
			if (err)
				fprintf(stderr, "--serial %s: expected the path of a device\n", optarg);
			break;
		case 'p':
			settings->pin_dir = optarg;
			break;
		case 'g':
			*cgroup = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		default:
			err = -EINVAL;
		}
	}
	if (!err && (endpoints != 1 || optind != argc)) {
		fputs("one --connect or --serial, and no other arguments\n", stderr);
		err = -EINVAL;
	}
	if (err)
		fputs(usage, stderr);
	return err;
}

/*
 * One applier a pin directory: two would interleave their commits and
 * recoveries, and the marker would no longer name what the programs read.
 * The lock is held, its fd never closed, for as long as the process runs.
 */
static int lock_pin_dir(const char *pin_dir)
{
	int fd = open(pin_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), err;

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return 0;
}

/* The pin directories, and the cgroup the links attach to. */
static int prepare(struct settings *settings, const char *cgroup)
{
	char root[4096], path[4096];
	struct statfs filesystem;
	int err;

	err = mounts_ensure_bpffs(settings->pin_dir);
	if (err) {
		log_line("BPF filesystem for %s: %s", settings->pin_dir, strerror(-err));
		return err;
	}
	err = pins_make_directory(settings->pin_dir);
	err = err ?: lock_pin_dir(settings->pin_dir);
	err = err ?: pins_path(settings->maps_dir, sizeof(settings->maps_dir), "%s/maps", settings->pin_dir);
	err = err ?: pins_make_directory(settings->maps_dir);
	err = err ?: pins_path(path, sizeof(path), "%s/links", settings->pin_dir);
	err = err ?: pins_make_directory(path);
	if (err) {
		log_line("pin directory %s: %s", settings->pin_dir,
			 err == -EWOULDBLOCK ? "another socklb-applier holds it" : strerror(-err));
		return err;
	}
	if (!cgroup) {
		err = mounts_cgroup2_root(root, sizeof(root));
		if (err) {
			log_line("cgroup v2 hierarchy: %s", strerror(-err));
			return err;
		}
		cgroup = root;
	}
	settings->cgroup_fd = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (settings->cgroup_fd < 0) {
		err = -errno;
		log_line("cgroup %s: %s", cgroup, strerror(-err));
		return err;
	}
	/* Now, not after a commit point: a link to anything else would fail there, again and again. */
	if (fstatfs(settings->cgroup_fd, &filesystem) < 0 || filesystem.f_type != CGROUP2_SUPER_MAGIC) {
		log_line("cgroup %s: not a directory of a cgroup v2 hierarchy", cgroup);
		return -ENOTDIR;
	}
	return 0;
}

/* Waits before the next attempt, twice as long as before, up to BACKOFF_MAX_MS. */
static void back_off(int64_t *backoff)
{
	sleep_ms(*backoff);
	*backoff = *backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff * 2;
}

/*
 * Connects, serves, and starts again, forever. Before each HELLO a commit
 * an earlier run left half-done is finished (or dropped), so the marker
 * the host hears names what the programs read.
 */
static void serve_forever(const struct settings *settings, const struct endpoint *endpoint)
{
	struct stream stream = { .fd = -1 };
	int64_t backoff = BACKOFF_MIN_MS;
	bool awaiting_resync = true;
	uint64_t nonce = 0;
	bool served;
	int err;

	for (;;) {
		err = commit_recover(settings->pin_dir, settings->cgroup_fd);
		if (err) {
			log_line("recovery of %s/staged: %s", settings->pin_dir, strerror(-err));
			back_off(&backoff);
			continue;
		}
		if (stream.fd < 0) {
			err = stream_open(&stream, endpoint);
			if (err) {
				log_line("%s: %s", endpoint->path[0] ? endpoint->path : "vsock", strerror(-err));
				back_off(&backoff);
				continue;
			}
			awaiting_resync = true;
		}
		/* A serial port has no connect: the host says when it is there. */
		if (stream.transport == TRANSPORT_SERIAL && awaiting_resync) {
			err = frame_resync(&stream, &nonce);
			if (err) {
				log_line("%s: %s", endpoint->path, strerror(-err));
				stream_close(&stream);
				back_off(&backoff);
				continue;
			}
		}
		err = session_run(settings, &stream, &nonce, &served);
		if (served)
			backoff = BACKOFF_MIN_MS;
		/* 0 is a RESYNC read: the serial host is back, and hears HELLO at once. */
		awaiting_resync = err != 0;
		if (!err)
			continue;
		log_line("connection ended: %s", err == -ECONNRESET ? "closed by the host" : strerror(-err));
		/* A serial port stays open: its host comes and goes behind it. */
		if (stream.transport != TRANSPORT_SERIAL || (err != -EPROTO && err != -ECONNRESET && err != -ETIMEDOUT))
			stream_close(&stream);
		back_off(&backoff);
	}
}

int main(int argc, char **argv)
{
	struct settings settings = { .cgroup_fd = -1 };
	struct endpoint endpoint;
	const char *cgroup;

	if (parse_arguments(argc, argv, &settings, &endpoint, &cgroup))
		return 2;
	/* A host gone mid-write is a failed write, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	log_capture_libbpf();
	faults_init();
	if (prepare(&settings, cgroup))
		return 1;
	serve_forever(&settings, &endpoint);
}
