// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include "batch.h"
#include "commit.h"
#include "frame.h"
#include "log.h"
#include "session.h"
#include "staged.h"
#include "target.h"

/* The largest frame the guest sends: a LOADED or a HELLO listing every map. */
#define GUEST_FRAME_SIZE \
	(WIRE_FRAME_HEADER_SIZE + WIRE_LOADED_FIXED_SIZE + WIRE_HELLO_FIXED_SIZE + TARGET_MAX_MAPS * WIRE_DESCRIPTOR_SIZE)

/* Which maps a BATCH writes. */
enum target_choice {
	/* After a failed OBJECT, and while nothing is pinned: BATCHes are refused. */
	TARGET_NONE,
	TARGET_LIVE,
	TARGET_STAGED,
};

struct session {
	const struct settings *settings;
	struct stream *stream;
	/* The RESYNC nonce HELLO echoes; a new RESYNC's, once one ends the session. */
	uint64_t nonce;
	struct target live;
	struct staged staged;
	enum target_choice choice;
};

static const char *frame_name(uint8_t type)
{
	switch (type) {
	case FRAME_OBJECT:
		return "OBJECT";
	case FRAME_BATCH:
		return "BATCH";
	case FRAME_COMMIT:
		return "COMMIT";
	case FRAME_RESYNC:
		return "RESYNC";
	default:
		return "frame";
	}
}

/* A writer of the payload of the guest frame built in `frame`: after the room its header takes. */
static struct wire_writer payload_writer(uint8_t *frame, size_t size)
{
	return (struct wire_writer){ .at = frame + WIRE_FRAME_HEADER_SIZE, .left = size - WIRE_FRAME_HEADER_SIZE };
}

/* Sends the guest frame in `frame`, whose payload `payload` (a payload_writer) wrote. */
static int send_frame(struct session *session, uint8_t type, const struct wire_writer *payload, const uint8_t *frame)
{
	if (payload->overflow)
		return -EMSGSIZE;
	return frame_write(session->stream, type, (uint8_t *)frame,
			   (size_t)(payload->at - frame) - WIRE_FRAME_HEADER_SIZE);
}

static int send_hello(struct session *session)
{
	uint8_t frame[GUEST_FRAME_SIZE];
	struct wire_writer writer = payload_writer(frame, sizeof(frame));
	uint64_t epoch = 0, seq = 0;
	struct utsname kernel;

	if (uname(&kernel) < 0)
		memset(&kernel, 0, sizeof(kernel));
	if (target_read_marker(&session->live, &epoch, &seq) < 0)
		epoch = seq = 0;
	wire_put_u32(&writer, WIRE_HELLO_MAGIC);
	wire_put_u16(&writer, WIRE_VERSION);
	wire_put_u16(&writer, 0);
	wire_put_text(&writer, kernel.release, WIRE_RELEASE_SIZE);
	wire_put_u32(&writer, (uint32_t)(possible_cpus() > 0 ? possible_cpus() : 0));
	wire_put_u64(&writer, epoch);
	wire_put_u64(&writer, seq);
	wire_put_u64(&writer, session->nonce);
	wire_put_u16(&writer, (uint16_t)session->live.count);
	wire_put_u16(&writer, 0);
	target_describe(&session->live, &writer);
	log_line("HELLO: marker %llu/%llu, %zu maps", (unsigned long long)epoch, (unsigned long long)seq,
		 session->live.count);
	return send_frame(session, FRAME_HELLO, &writer, frame);
}

static int send_ack(struct session *session, const struct batch_result *result)
{
	uint8_t frame[WIRE_FRAME_HEADER_SIZE + WIRE_ACK_SIZE];
	struct wire_writer writer = payload_writer(frame, sizeof(frame));

	wire_put_u64(&writer, result->epoch);
	wire_put_u64(&writer, result->seq);
	wire_put_u32(&writer, (uint32_t)result->error);
	wire_put_u32(&writer, result->failed_group);
	wire_put_u32(&writer, result->failed_write);
	return send_frame(session, FRAME_ACK, &writer, frame);
}

/* An ACK that names no write: a refused BATCH or a COMMIT. */
static int send_outcome(struct session *session, uint64_t epoch, uint64_t seq, int error)
{
	struct batch_result result = {
		.epoch = epoch, .seq = seq, .error = error, .failed_group = WIRE_NO_WRITE, .failed_write = WIRE_NO_WRITE,
	};

	return send_ack(session, &result);
}

static int serve_object(struct session *session, const struct frame *frame)
{
	uint8_t reply[GUEST_FRAME_SIZE];
	struct wire_writer writer = payload_writer(reply, sizeof(reply));
	char message[WIRE_MESSAGE_SIZE];
	int err;

	err = staged_load(&session->staged, frame->payload, frame->size, session->settings->maps_dir, message,
			  sizeof(message));
	if (err == -EPROTO)
		return err;
	session->choice = err ? TARGET_NONE : TARGET_STAGED;
	if (err)
		log_line("OBJECT refused: %s", message);
	else
		log_line("OBJECT loaded, staged: %zu maps", session->staged.target.count);
	wire_put_u32(&writer, (uint32_t)err);
	wire_put_text(&writer, message, WIRE_MESSAGE_SIZE);
	wire_put_u16(&writer, (uint16_t)session->staged.target.count);
	wire_put_u16(&writer, 0);
	target_describe(&session->staged.target, &writer);
	return send_frame(session, FRAME_LOADED, &writer, reply);
}

static const struct target *chosen_target(const struct session *session)
{
	switch (session->choice) {
	case TARGET_LIVE:
		return &session->live;
	case TARGET_STAGED:
		return &session->staged.target;
	default:
		return NULL;
	}
}

static int serve_batch(struct session *session, const struct frame *frame)
{
	const struct target *target = chosen_target(session);
	struct wire_reader reader = { .at = frame->payload, .left = frame->size };
	struct batch_result result;
	uint64_t epoch, seq;
	int err;

	if (!target) {
		if (!wire_get_u64(&reader, &epoch) || !wire_get_u64(&reader, &seq))
			return -EPROTO;
		return send_outcome(session, epoch, seq, -ENOENT);
	}
	err = batch_apply(target, frame->payload, frame->size, &result);
	if (err)
		return err;
	if (result.error)
		log_line("BATCH %llu/%llu: write %u of group %u failed: %s", (unsigned long long)result.epoch,
			 (unsigned long long)result.seq, result.failed_write, result.failed_group,
			 strerror(-result.error));
	err = send_ack(session, &result);
	if (!err)
		batch_wait_after_deletes();
	return err;
}

static int serve_commit(struct session *session, const struct frame *frame)
{
	struct wire_reader reader = { .at = frame->payload, .left = frame->size };
	uint64_t epoch, seq, staged_epoch, staged_seq;
	bool committed;
	int err, sent;

	if (!wire_get_u64(&reader, &epoch) || !wire_get_u64(&reader, &seq) || reader.left != 0)
		return -EPROTO;
	if (session->choice != TARGET_STAGED)
		return send_outcome(session, epoch, seq, -ENOENT);
	/* A snapshot whose last batch did not run whole must not become the datapath. */
	err = target_read_marker(&session->staged.target, &staged_epoch, &staged_seq);
	if (!err && (staged_epoch != epoch || staged_seq != seq))
		err = -ESTALE;
	if (err) {
		log_line("COMMIT %llu/%llu refused: the staged maps hold no such marker", (unsigned long long)epoch,
			 (unsigned long long)seq);
		return send_outcome(session, epoch, seq, err);
	}
	err = commit_staged(session->settings->pin_dir, session->settings->cgroup_fd, &session->staged, &committed);
	if (err) {
		log_line("COMMIT %llu/%llu: %s%s", (unsigned long long)epoch, (unsigned long long)seq, strerror(-err),
			 committed ? "; the next start finishes it" : "; the old datapath stays");
		sent = send_outcome(session, epoch, seq, err);
		/* Past its point a commit must be finished before anything else: by the recovery, on reconnect. */
		return committed ? err : sent;
	}
	staged_close(&session->staged);
	target_close(&session->live);
	err = target_open_pinned(&session->live, session->settings->maps_dir);
	session->choice = err ? TARGET_NONE : TARGET_LIVE;
	log_line("COMMIT %llu/%llu: the staged object is the datapath", (unsigned long long)epoch,
		 (unsigned long long)seq);
	return send_outcome(session, epoch, seq, err);
}

/* A RESYNC between frames: the serial host reopened its end. 1, with its nonce kept, or -EPROTO. */
static int serve_resync(struct session *session, const struct frame *frame)
{
	struct wire_reader reader = { .at = frame->payload, .left = frame->size };
	const uint8_t *token = wire_get_bytes(&reader, WIRE_RESYNC_TOKEN_SIZE);

	if (session->stream->transport != TRANSPORT_SERIAL || !token ||
	    memcmp(token, WIRE_RESYNC_TOKEN, WIRE_RESYNC_TOKEN_SIZE) != 0 || !wire_get_u64(&reader, &session->nonce) ||
	    reader.left != 0)
		return -EPROTO;
	return 1;
}

/* 1: RESYNC on a serial port; 0: another frame served; -errno: the session ends. */
static int serve(struct session *session, const struct frame *frame)
{
	switch (frame->type) {
	case FRAME_OBJECT:
		return serve_object(session, frame);
	case FRAME_BATCH:
		return serve_batch(session, frame);
	case FRAME_COMMIT:
		return serve_commit(session, frame);
	case FRAME_RESYNC:
		return serve_resync(session, frame);
	default:
		return -EPROTO;
	}
}

int session_run(const struct settings *settings, struct stream *stream, uint64_t *nonce, bool *served)
{
	struct session session = { .settings = settings, .stream = stream, .nonce = *nonce };
	struct frame frame;
	int err;

	*served = false;
	staged_init(&session.staged);
	err = target_open_pinned(&session.live, settings->maps_dir);
	if (err) {
		/* The host hears of no maps, and sends an object whose commit replaces these pins. */
		log_line("%s: %s; saying HELLO without maps", settings->maps_dir, strerror(-err));
		target_init(&session.live);
	}
	session.choice = session.live.count ? TARGET_LIVE : TARGET_NONE;
	err = send_hello(&session);
	while (!err) {
		err = frame_read(stream, &frame);
		if (err == -EPROTO)
			log_line("a frame over its limit or of an unknown type from the host: closing the connection");
		if (err)
			break;
		err = serve(&session, &frame);
		if (err == -EPROTO)
			log_line("malformed %s from the host (%u bytes): closing the connection", frame_name(frame.type),
				 frame.size);
		frame_free(&frame);
		if (err >= 0)
			*served = true;
	}
	staged_close(&session.staged);
	target_close(&session.live);
	*nonce = session.nonce;
	return err > 0 ? 0 : err;
}
