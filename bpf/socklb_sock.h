/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What both objects need of a socket's records: the maps, declared once (the
 * datapath, socklb.bpf.c, writes them; the socket iterators,
 * socklb_iter.bpf.c, read them: the agent hands the datapath's maps to the
 * iterator object by fd, which libbpf accepts only if both declarations
 * agree), and the helpers their entries are read with.
 */
#ifndef SOCKLB_SOCK_H
#define SOCKLB_SOCK_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "socklb.h"

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct socklb_sock);
} socklb_sock_v2 SEC(".maps");

/*
 * A TCP socket's connect() translation by its cookie, which the kernel never
 * hands out twice, so an entry outliving its socket describes no other.
 * Preallocated: recording a connection takes an element from a free list,
 * where socket storage would allocate, and free through RCU, at every
 * connect() of every short connection. cgroup/sock_release deletes the entry
 * when the socket goes; the LRU is what bounds it when that misses (a socket
 * closed in a cgroup the programs were detached from), and what makes room
 * when more translated connections are open at once than it holds.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SOCKLB_DEFAULT_MAX_CONNECTIONS);
	__type(key, __u64);
	__type(value, struct socklb_translation);
} socklb_conn_v1 SEC(".maps");

/* Both families' addresses are kept IPv4-mapped (::ffff:a.b.c.d) for IPv4. */
static __always_inline void ipv4_mapped(__be32 address[4], __be32 ipv4)
{
	address[0] = 0;
	address[1] = 0;
	address[2] = bpf_htonl(0xffff);
	address[3] = ipv4;
}

static __always_inline bool is_ipv4_mapped(const __be32 address[4])
{
	return !address[0] && !address[1] && address[2] == bpf_htonl(0xffff);
}

static __always_inline bool same_address(const __be32 a[4], const __be32 b[4])
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

static __always_inline void copy_address(__be32 dst[4], const __be32 src[4])
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
}

static __always_inline bool
same_endpoint(const __be32 address[4], __be16 port, const __be32 other_address[4], __be16 other_port)
{
	return port == other_port && same_address(address, other_address);
}

static __always_inline bool
is_backend(const struct socklb_translation *entry, const __be32 address[4], __be16 port)
{
	return same_endpoint(entry->backend_address, entry->backend_port, address, port);
}

/*
 * The storage's entry whose backend is address:port. Unused entries have port 0, which
 * no peer or sender has. When several of the socket's Services share the
 * backend, nothing in a reply tells them apart: the one last connected or
 * sent to wins, which is right for one request and its answer at a time.
 */
static __always_inline const struct socklb_translation *
find_backend(const struct socklb_sock *sock, const __be32 address[4], __be16 port)
{
	const struct socklb_translation *last = &sock->translations[sock->last % SOCKLB_SOCK_TRANSLATIONS];

	if (is_backend(last, address, port))
		return last;
	for (int i = 0; i < SOCKLB_SOCK_TRANSLATIONS; i++) {
		const struct socklb_translation *entry = &sock->translations[i];

		if (is_backend(entry, address, port))
			return entry;
	}
	return NULL;
}

/*
 * The translation that sent a socket to address:port, copied to *out: its
 * connection's (`connection`, its socklb_conn_v1 entry or NULL), else one of
 * its storage's (`sock`, or NULL). False when no Service sent it there.
 * Copied at once because an LRU element can be evicted and reused for another
 * socket while it is read.
 */
static __always_inline bool
find_translation(const struct socklb_translation *connection, const struct socklb_sock *sock,
		 const __be32 address[4], __be16 port, struct socklb_translation *out)
{
	const struct socklb_translation *entry;

	if (connection) {
		*out = *connection;
		if (is_backend(out, address, port))
			return true;
	}
	if (!sock)
		return false;
	entry = find_backend(sock, address, port);
	if (!entry)
		return false;
	*out = *entry;
	return true;
}

#endif /* SOCKLB_SOCK_H */
