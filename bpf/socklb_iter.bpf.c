// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The agent's socket iterators, an object apart from the datapath so that
 * the datapath still loads on kernels without them (bpf_sock_destroy needs
 * Linux 6.5):
 *
 *   iter/udp, iter/tcp       destroy each connected socket whose peer is a
 *                            backend it was translated to, when that
 *                            (Service, backend) pair is in socklb_stale_v1.
 *                            The application sees ECONNABORTED and connects
 *                            again, to a live backend. A socket iterator
 *                            walks the network namespace of the thread that
 *                            creates it: the agent runs these once in each
 *                            namespace of the attached cgroups.
 *   iter/udp, iter/tcp       (dump) write the record of each socket that
 *                            has one (a connection entry, storage, or
 *                            both), for `socklb sockets` and the tests.
 *
 * The kernel types below declare only the fields read; libbpf relocates
 * them against the running kernel's BTF (CO-RE), so the build does not
 * depend on the build machine's kernel (no generated vmlinux.h).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "socklb.h"
#include "socklb_sock.h"

#define AF_INET 2
#define AF_INET6 10

struct seq_file;
struct udp_sock;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct in6_addr {
	union {
		__be32 u6_addr32[4];
	} in6_u;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be16 skc_dport;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

struct bpf_iter__udp {
	struct bpf_iter_meta *meta;
	struct udp_sock *udp_sk;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
} __attribute__((preserve_access_index));

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* Written by the agent just before a run, emptied after it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SOCKLB_MAX_STALE);
	__type(key, struct socklb_stale_key);
	__type(value, __u32);
} socklb_stale_v1 SEC(".maps");

/*
 * The records the iterators write live on the stack, and locals leave no BTF:
 * these pointers put their types in the object's BTF, where
 * test/unit/layout.test.ts compares them with the codecs that read them.
 */
const struct socklb_destroyed *socklb_destroyed_btf __attribute__((unused));
const struct socklb_sock_record *socklb_sock_record_btf __attribute__((unused));

/* The socket's peer, IPv4-mapped for AF_INET as the records keep it. */
static __always_inline bool peer_address(const struct sock *sk, __be32 address[4])
{
	const struct sock_common *skc = &sk->__sk_common;

	switch (skc->skc_family) {
	case AF_INET:
		ipv4_mapped(address, skc->skc_daddr);
		return true;
	case AF_INET6:
		address[0] = skc->skc_v6_daddr.in6_u.u6_addr32[0];
		address[1] = skc->skc_v6_daddr.in6_u.u6_addr32[1];
		address[2] = skc->skc_v6_daddr.in6_u.u6_addr32[2];
		address[3] = skc->skc_v6_daddr.in6_u.u6_addr32[3];
		return true;
	}
	return false;
}

/*
 * Destroys the socket if it is connected to a backend it was translated to
 * and that (Service, backend) pair is stale, and reports it. `sk` is read;
 * `skc` is the same socket as the iterator handed it, the trusted pointer
 * bpf_sock_destroy() requires. The iterator holds the socket's lock.
 */
static __always_inline void
destroy_if_stale(struct bpf_iter_meta *meta, struct sock *sk, struct sock_common *skc, __u8 protocol)
{
	struct socklb_destroyed record = {};
	const struct socklb_translation *connection;
	struct socklb_translation entry;
	__be32 peer[4];

	/* An unconnected UDP socket has no peer: its next datagram finds a
	 * live backend by itself. Listeners have none either. */
	if (sk->__sk_common.skc_state == BPF_TCP_CLOSE || sk->__sk_common.skc_state == BPF_TCP_LISTEN)
		return;
	if (!peer_address(sk, peer))
		return;
	record.cookie = bpf_get_socket_cookie(sk);
	connection = protocol == IPPROTO_TCP ? bpf_map_lookup_elem(&socklb_conn_v1, &record.cookie) : NULL;
	if (!find_translation(connection, bpf_sk_storage_get(&socklb_sock_v2, sk, 0, 0), peer,
			      sk->__sk_common.skc_dport, &entry))
		return;
	copy_address(record.pair.service_address, entry.service_address);
	copy_address(record.pair.backend_address, entry.backend_address);
	record.pair.service_port = entry.service_port;
	record.pair.backend_port = entry.backend_port;
	record.pair.protocol = protocol;
	if (!bpf_map_lookup_elem(&socklb_stale_v1, &record.pair))
		return;
	record.error = bpf_sock_destroy(skc);
	bpf_seq_write(meta->seq, &record, sizeof(record));
}

/* Writes the socket's record, if socklb translated it. */
static __always_inline void dump_record(struct bpf_iter_meta *meta, struct sock *sk)
{
	struct socklb_sock_record record = {};
	const struct socklb_translation *connection;
	const struct socklb_sock *sock;

	record.cookie = bpf_get_socket_cookie(sk);
	connection = bpf_map_lookup_elem(&socklb_conn_v1, &record.cookie);
	sock = bpf_sk_storage_get(&socklb_sock_v2, sk, 0, 0);
	/* Tested one at a time: the verifier refuses the OR of two pointers clang makes of `!a && !b`. */
	if (connection)
		record.connection = *connection;
	if (sock)
		record.sock = *sock;
	else if (!connection)
		return;
	record.family = sk->__sk_common.skc_family;
	record.protocol = (__u8)sk->sk_protocol;
	record.state = sk->__sk_common.skc_state;
	bpf_seq_write(meta->seq, &record, sizeof(record));
}

/* Full TCP sockets only: time-wait and request sockets have no application
 * to tell. */
static __always_inline struct sock *full_tcp_socket(struct sock_common *skc)
{
	return (struct sock *)bpf_skc_to_tcp_sock(skc);
}

SEC("iter/udp")
int socklb_destroy_udp(struct bpf_iter__udp *ctx)
{
	struct sock *sk = (struct sock *)ctx->udp_sk;

	if (sk)
		destroy_if_stale(ctx->meta, sk, &sk->__sk_common, IPPROTO_UDP);
	return 0;
}

SEC("iter/tcp")
int socklb_destroy_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct sock *sk;

	if (!skc)
		return 0;
	sk = full_tcp_socket(skc);
	if (sk)
		destroy_if_stale(ctx->meta, sk, skc, IPPROTO_TCP);
	return 0;
}

SEC("iter/udp")
int socklb_dump_udp(struct bpf_iter__udp *ctx)
{
	struct sock *sk = (struct sock *)ctx->udp_sk;

	if (sk)
		dump_record(ctx->meta, sk);
	return 0;
}

SEC("iter/tcp")
int socklb_dump_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct sock *sk;

	if (!skc)
		return 0;
	sk = full_tcp_socket(skc);
	if (sk)
		dump_record(ctx->meta, sk);
	return 0;
}

/*
 * The code's licence, GPL-2.0-only OR BSD-2-Clause (bpf/LICENSE.*), as the
 * kernel spells it: the kernel loads a program that calls bpf_seq_write (a
 * GPL-only helper) or a kfunc (bpf_sock_destroy) only under a GPL-compatible
 * licence, which "Dual BSD/GPL" is.
 */
char LICENSE[] SEC("license") = "Dual BSD/GPL";
