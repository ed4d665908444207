// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket-level Service translation: cgroup sock_addr programs rewrite the
 * destination of connect() once per socket, so that no packet of the flow is
 * ever NATed and nothing enters conntrack.
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "socklb.h"

/* A cgroup sock_addr program allows the call by returning 1. */
#define SOCK_ADDR_ALLOW 1
#define SOCK_ADDR_DENY 0

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKLB_DEFAULT_MAX_FRONTENDS);
	__type(key, struct socklb_frontend_key);
	__type(value, struct socklb_frontend);
} socklb_fe_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKLB_DEFAULT_MAX_SLOTS);
	__type(key, struct socklb_slot_key);
	__type(value, struct socklb_slot);
} socklb_slot_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKLB_DEFAULT_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct socklb_backend);
} socklb_be_v1 SEC(".maps");

/* Read by user space only; not preallocated, since most names are short-lived. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SOCKLB_DEFAULT_MAX_FRONTENDS);
	__type(key, __u32);
	__type(value, struct socklb_service_name);
} socklb_name_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct socklb_translation);
} socklb_sock_v1 SEC(".maps");

enum lookup_result {
	NOT_A_SERVICE,
	NO_BACKEND,
	BACKEND_FOUND,
};

/*
 * The agent writes a growing frontend's slots before its count and shrinks
 * the count before deleting slots, so a slot below the count always exists.
 * A connect that read the count just before a shrink can still miss its slot
 * (or the backend behind it): such a lookup is retried once against the
 * frontend as it is now.
 */
static __always_inline enum lookup_result
lookup_backend(const struct socklb_frontend_key *key, struct socklb_backend *out)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		const struct socklb_frontend *frontend;
		const struct socklb_slot *slot;
		const struct socklb_backend *backend;
		struct socklb_slot_key slot_key = {};

		frontend = bpf_map_lookup_elem(&socklb_fe_v1, key);
		if (!frontend)
			return NOT_A_SERVICE;
		if (frontend->backend_count == 0)
			return NO_BACKEND;

		slot_key.service_id = frontend->service_id;
		slot_key.slot = bpf_get_prandom_u32() % frontend->backend_count;
		slot = bpf_map_lookup_elem(&socklb_slot_v1, &slot_key);
		if (!slot)
			continue;
		backend = bpf_map_lookup_elem(&socklb_be_v1, &slot->backend_id);
		if (!backend)
			continue;
		*out = *backend;
		return BACKEND_FOUND;
	}
	return NO_BACKEND;
}

static __always_inline void ipv4_mapped(__be32 address[4], __be32 ipv4)
{
	address[0] = 0;
	address[1] = 0;
	address[2] = bpf_htonl(0xffff);
	address[3] = ipv4;
}

static __always_inline void copy_address(__be32 dst[4], const __be32 src[4])
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
}

/* Remembers the translation so that getpeername() can undo it. */
static __always_inline void
record_translation(struct bpf_sock_addr *ctx, const struct socklb_frontend_key *key,
		   const struct socklb_backend *backend)
{
	struct socklb_translation *translation;

	translation = bpf_sk_storage_get(&socklb_sock_v1, ctx->sk, 0,
					 BPF_SK_STORAGE_GET_F_CREATE);
	/* Without memory for it the socket still connects; getpeername() then
	 * shows the backend. */
	if (!translation)
		return;
	copy_address(translation->service_address, key->address);
	copy_address(translation->backend_address, backend->address);
	translation->service_port = key->port;
	translation->backend_port = backend->port;
}

/*
 * Looks the destination up and says what connect() should do; on success the
 * chosen backend is in *backend and the translation is recorded.
 */
static __always_inline enum lookup_result
translate_connect(struct bpf_sock_addr *ctx, const struct socklb_frontend_key *key,
		  struct socklb_backend *backend)
{
	enum lookup_result result = lookup_backend(key, backend);

	if (result == NO_BACKEND)
		/* As kube-proxy's REJECT: fail at once rather than time out. */
		bpf_set_retval(-ECONNREFUSED);
	if (result == BACKEND_FOUND)
		record_translation(ctx, key, backend);
	return result;
}

SEC("cgroup/connect4")
int socklb_connect4(struct bpf_sock_addr *ctx)
{
	struct socklb_frontend_key key = {
		.port = (__be16)ctx->user_port,
		.protocol = (__u8)ctx->protocol,
	};
	struct socklb_backend backend;

	ipv4_mapped(key.address, ctx->user_ip4);
	switch (translate_connect(ctx, &key, &backend)) {
	case NOT_A_SERVICE:
		return SOCK_ADDR_ALLOW;
	case NO_BACKEND:
		return SOCK_ADDR_DENY;
	case BACKEND_FOUND:
		break;
	}
	ctx->user_ip4 = backend.address[3];
	ctx->user_port = backend.port;
	return SOCK_ADDR_ALLOW;
}

/* IPv4-mapped destinations (::ffff:a.b.c.d) match IPv4 frontends as they are. */
SEC("cgroup/connect6")
int socklb_connect6(struct bpf_sock_addr *ctx)
{
	struct socklb_frontend_key key = {
		.address = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
			     ctx->user_ip6[3] },
		.port = (__be16)ctx->user_port,
		.protocol = (__u8)ctx->protocol,
	};
	struct socklb_backend backend;

	switch (translate_connect(ctx, &key, &backend)) {
	case NOT_A_SERVICE:
		return SOCK_ADDR_ALLOW;
	case NO_BACKEND:
		return SOCK_ADDR_DENY;
	case BACKEND_FOUND:
		break;
	}
	ctx->user_ip6[0] = backend.address[0];
	ctx->user_ip6[1] = backend.address[1];
	ctx->user_ip6[2] = backend.address[2];
	ctx->user_ip6[3] = backend.address[3];
	ctx->user_port = backend.port;
	return SOCK_ADDR_ALLOW;
}

/*
 * getpeername() answers with the service only while the peer is still the
 * backend recorded at connect(): a socket connected elsewhere later (UDP can
 * reconnect) shows its real peer.
 */
SEC("cgroup/getpeername4")
int socklb_getpeername4(struct bpf_sock_addr *ctx)
{
	const struct socklb_translation *translation;

	translation = bpf_sk_storage_get(&socklb_sock_v1, ctx->sk, 0, 0);
	if (!translation)
		return SOCK_ADDR_ALLOW;
	if (translation->backend_address[3] != ctx->user_ip4 ||
	    translation->backend_port != (__be16)ctx->user_port)
		return SOCK_ADDR_ALLOW;
	ctx->user_ip4 = translation->service_address[3];
	ctx->user_port = translation->service_port;
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/getpeername6")
int socklb_getpeername6(struct bpf_sock_addr *ctx)
{
	const struct socklb_translation *translation;

	translation = bpf_sk_storage_get(&socklb_sock_v1, ctx->sk, 0, 0);
	if (!translation)
		return SOCK_ADDR_ALLOW;
	if (translation->backend_address[0] != ctx->user_ip6[0] ||
	    translation->backend_address[1] != ctx->user_ip6[1] ||
	    translation->backend_address[2] != ctx->user_ip6[2] ||
	    translation->backend_address[3] != ctx->user_ip6[3] ||
	    translation->backend_port != (__be16)ctx->user_port)
		return SOCK_ADDR_ALLOW;
	ctx->user_ip6[0] = translation->service_address[0];
	ctx->user_ip6[1] = translation->service_address[1];
	ctx->user_ip6[2] = translation->service_address[2];
	ctx->user_ip6[3] = translation->service_address[3];
	ctx->user_port = translation->service_port;
	return SOCK_ADDR_ALLOW;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
