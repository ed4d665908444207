/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The single definition of every socklb map key and value.
 *
 * src/datapath/layout.ts mirrors these structs byte for byte, and
 * test/unit/layout.test.ts checks both against the BTF of the compiled
 * object. Change a struct here, bump the map's version suffix (a pinned map
 * of the old layout must never be read with the new one), then the codec.
 *
 * Byte order is part of the type: __be* fields are network order, as the
 * kernel hands them to sock_addr programs; __u* fields are host order.
 * Every struct has explicit padding so that its size is the same in C, in
 * BTF and in TypeScript.
 *
 * Maps (declared in socklb.bpf.c) carry their layout version in their name:
 *   socklb_fe_v1    struct socklb_frontend_key -> struct socklb_frontend
 *   socklb_slot_v1  struct socklb_slot_key     -> struct socklb_slot
 *   socklb_be_v1    __u32 backend id           -> struct socklb_backend
 *   socklb_name_v1  __u32 service id           -> struct socklb_service_name
 *   socklb_sock_v1  socket-local storage       -> struct socklb_translation
 * The kernel keeps 15 characters of a map name.
 */
#ifndef SOCKLB_H
#define SOCKLB_H

#include <linux/types.h>

/* Default capacities; the agent overrides them before load. */
#define SOCKLB_DEFAULT_MAX_FRONTENDS 65536
#define SOCKLB_DEFAULT_MAX_BACKENDS 65536
#define SOCKLB_DEFAULT_MAX_SLOTS 262144

/*
 * A frontend is one address, port and protocol of a Service. IPv4 addresses
 * are stored IPv4-mapped (::ffff:a.b.c.d) so that an AF_INET socket and an
 * AF_INET6 socket connecting to ::ffff:a.b.c.d find the same entry.
 */
struct socklb_frontend_key {
	__be32 address[4];
	__be16 port;
	__u8 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

/*
 * service_id names this frontend's slots: every frontend (not every Service)
 * has its own, because each Service port resolves to its own backend ports.
 * A frontend with backend_count 0 refuses connections.
 */
struct socklb_frontend {
	__u32 service_id;
	__u16 backend_count;
	__u16 flags; /* reserved, always 0 in this layout version */
};

/* Slots 0..backend_count-1 of a frontend each name one backend. */
struct socklb_slot_key {
	__u32 service_id;
	__u32 slot;
};

struct socklb_slot {
	__u32 backend_id;
};

/* Backends are keyed by a __u32 backend id. IPv4 is stored IPv4-mapped. */
struct socklb_backend {
	__be32 address[4];
	__be16 port;
	__u16 pad;
};

/*
 * Who a frontend belongs to, keyed by service_id: written by the agent for
 * `socklb services` and never read by the programs. NUL-terminated; the
 * sizes are Kubernetes' limits plus one.
 */
struct socklb_service_name {
	char namespace[64];
	char name[64];
	char port_name[16];
};

/*
 * Per-socket record of a translation (socket-local storage, freed with the
 * socket): getpeername() answers with the service address while the socket
 * is still connected to the backend it was given.
 */
struct socklb_translation {
	__be32 service_address[4];
	__be32 backend_address[4];
	__be16 service_port;
	__be16 backend_port;
};

#endif /* SOCKLB_H */
