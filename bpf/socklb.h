/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
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
 *   socklb_fe_v3    struct socklb_frontend_key -> struct socklb_frontend
 *   socklb_slot_v2  struct socklb_slot_key     -> struct socklb_slot
 *   socklb_be_v2    __u32 backend id           -> struct socklb_backend
 *   socklb_name_v1  __u32 service id           -> struct socklb_service_name
 *   socklb_conn_v1  __u64 socket cookie        -> struct socklb_translation (LRU)
 *   socklb_sock_v2  socket-local storage       -> struct socklb_sock
 *   socklb_aff_v1   struct socklb_affinity_key -> struct socklb_affinity (LRU)
 *   socklb_stats_v1 __u32 service id           -> struct socklb_stats (per CPU)
 *   socklb_mark_v1  __u32 0                    -> struct socklb_marker (one entry)
 *   socklb_cip_v1   struct socklb_cluster_ip   -> __u32 (reserved, 0)
 *   socklb_range_v1 struct socklb_range_key    -> __u32 (reserved, 0) (LPM trie)
 *   socklb_trace_v1 __u32 0                    -> struct socklb_trace_switch (one entry)
 *   socklb_ring_v1  ring buffer of struct socklb_trace_event, written only while tracing
 *   socklb_byp_v1   __u64 cgroup id            -> struct socklb_bypass
 *   socklb_excl_v1  struct socklb_exclusion    -> __u32 (reserved, 0)
 *   socklb_cfg_v1   __u32 0                    -> struct socklb_config (one entry)
 * and the socket iterators' (socklb_iter.bpf.c):
 *   socklb_stale_v1 struct socklb_stale_key    -> __u32 (reserved, 0)
 * The kernel keeps 15 characters of a map name.
 */
#ifndef SOCKLB_H
#define SOCKLB_H

#include <linux/types.h>

/* Default capacities; the agent overrides them before load. */
#define SOCKLB_DEFAULT_MAX_FRONTENDS 65536
#define SOCKLB_DEFAULT_MAX_BACKENDS 65536
#define SOCKLB_DEFAULT_MAX_SLOTS 262144
/* Clients x Services with affinity remembered; the least recently used goes first. */
#define SOCKLB_DEFAULT_MAX_AFFINITY 65536
/*
 * TCP sockets whose connect() was translated, open at once; past this many
 * the least recently used loses its entry (its peer then shows the backend).
 */
#define SOCKLB_DEFAULT_MAX_CONNECTIONS 131072
/* Stale pairs per run of the destroy iterators; the agent runs more in batches. */
#define SOCKLB_MAX_STALE 16384
/*
 * Cgroups with calls left untranslated (--skip-cgroup, --exclude-service,
 * sandboxes'), and (cgroup, frontend) pairs of excluded Services. Not
 * preallocated, but the kernel allocates a hash map's buckets whole (16
 * bytes each): 64 KiB and 256 KiB.
 */
#define SOCKLB_MAX_BYPASS_CGROUPS 4096
#define SOCKLB_MAX_EXCLUSIONS 16384
/*
 * How deep below the cgroup v2 root a caller's cgroup is looked for among
 * the bypassed ones, itself and its ancestors: a sidecar's own child cgroups
 * (kubepods.slice/.../pod/container/child) are within it.
 */
#define SOCKLB_BYPASS_DEPTH 32
/* Service CIDRs at once (--service-cluster-ip-range and ServiceCIDR objects): a cluster has a few. */
#define SOCKLB_MAX_SERVICE_RANGES 256

/*
 * The values the programs follow from map to map (frontend -> slot ->
 * backend) name the key they were written for and end with a check. The
 * kernel recycles a preallocated hash element for another key without
 * waiting for its readers, so a program that copies an element it looked up
 * can get another key's value (another Service's backend), or, when the copy
 * overlaps the rewrite, a mix of two values. A copy is used only if it names
 * the key looked up and its check holds: FNV-1a over the value's other
 * 32-bit words, in memory order (src/datapath/layout.ts computes the same).
 */
#define SOCKLB_CHECK_BASIS 2166136261u
#define SOCKLB_CHECK_PRIME 16777619u

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
	struct socklb_frontend_key key; /* the key it was written for */
	__u32 service_id;
	__u16 backend_count;
	__u16 flags; /* SOCKLB_FRONTEND_*; a build before SKIP ignores the field */
	/* sessionAffinity ClientIP: seconds a client keeps its backend; 0 for none. */
	__u32 affinity_timeout;
	__u32 check;
};

/*
 * A Service annotated socklb.io/skip: calls to the frontend are left as
 * they are (no backend, no refusal), for whatever else handles the Service.
 */
#define SOCKLB_FRONTEND_SKIP 1

/*
 * ClientIP session affinity. The client is the caller's network namespace
 * (bpf_get_netns_cookie): a sandbox has one, and one address per family in
 * it, so a namespace is what kube-proxy's client IP stands for.
 */
struct socklb_affinity_key {
	__u64 client; /* network namespace cookie */
	__u32 service_id;
	__u32 pad;
};

/* The backend a client was given, looked for at `slot` (else among the
 * frontend's slots) before reuse. */
struct socklb_affinity {
	__u64 last_used_ns; /* bpf_ktime_get_ns() of the client's last connection */
	__be32 backend_address[4];
	__be16 backend_port;
	__u16 pad;
	__u32 slot;
};

/* Slots 0..backend_count-1 of a frontend each name one backend. */
struct socklb_slot_key {
	__u32 service_id;
	__u32 slot;
};

struct socklb_slot {
	__u32 service_id; /* the key it was written for */
	__u32 slot;
	__u32 backend_id;
	__u32 check;
};

/* Backends are keyed by a __u32 backend id. IPv4 is stored IPv4-mapped. */
struct socklb_backend {
	__u32 backend_id; /* the key it was written for */
	__be32 address[4];
	__be16 port;
	__u16 pad;
	__u32 check;
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
 * What the programs did for one frontend, keyed by its service_id, one copy
 * per CPU (user space sums them). The agent zeroes a service_id's counters
 * before it hands the id to a new frontend, so a reused id starts from 0.
 * Id 0, which no frontend is given, counts in `refused` the calls to a
 * service address that no frontend serves (socklb_cip_v1, socklb_range_v1).
 */
struct socklb_stats {
	__u64 connects; /* connect() sent to a backend */
	__u64 refused; /* connect() or sendmsg() refused: no backend (ECONNREFUSED) */
	__u64 datagrams; /* sendmsg() of an unconnected UDP socket sent to a backend */
	__u64 reverse_nat; /* getpeername() or recvmsg() answered with the Service */
};

/*
 * The last batch of map writes a guest applied whole (docs/guest-mode.md):
 * the host writes it after every other write of a batch, so a guest whose
 * marker is (epoch, seq) holds that batch and every earlier one. The
 * programs never read it; it lives in the object so that it is created,
 * swapped and pinned with the maps it describes.
 */
struct socklb_marker {
	__u64 epoch; /* the host agent's run that wrote it */
	__u64 seq; /* the batch within that run */
};

/*
 * A cluster IP of a Service (socklb_cip_v1), IPv4-mapped for IPv4: a call to
 * it on a port and protocol no frontend serves is refused, as kube-proxy
 * rejects it. The value is only there to be found; the programs read nothing
 * of it, so, unlike the values above, it names no key.
 */
struct socklb_cluster_ip {
	__be32 address[4];
};

/*
 * A service CIDR (socklb_range_v1, an LPM trie): a call to an address inside
 * it that no frontend serves and that is no cluster IP is refused (kube-proxy
 * drops it). IPv4 CIDRs are stored IPv4-mapped, their prefix counted over the
 * 128 bits: 10.96.0.0/12 is ::ffff:10.96.0.0/108. Bits past the prefix are 0.
 */
struct socklb_range_key {
	__u32 prefixlen; /* the LPM trie's: how many leading bits of address match */
	__be32 address[4];
};

/*
 * Calls left untranslated, for operators who need the original address (a
 * sidecar proxy capturing to 127.0.0.1, a health checker that must reach
 * one backend; docs/sandboxes.md). Written by the agent only.
 */
struct socklb_config {
	/* Sockets whose SO_MARK is this are left alone; 0: none (--skip-mark). */
	__u32 skip_mark;
	/* Entries in socklb_byp_v1: none spares every call the cgroup walk. */
	__u32 bypass_cgroups;
	__u32 flags; /* SOCKLB_CONFIG_* */
	__u32 pad;
};

/*
 * Leave a call alone when its backend listens in the caller's own network
 * namespace (--skip-same-netns): a socket lookup per translation, so off
 * unless asked for.
 */
#define SOCKLB_CONFIG_SAME_NETNS 1u

/* socklb_byp_v1, keyed by cgroup id (the cgroup v2 directory's inode number). */
#define SOCKLB_BYPASS_ALL 1u /* translate none of its calls */
#define SOCKLB_BYPASS_SOME 2u /* its exclusions are in socklb_excl_v1 */

struct socklb_bypass {
	__u32 flags; /* SOCKLB_BYPASS_* */
	__u32 pad;
};

/*
 * A frontend (by service_id) that a bypassed cgroup leaves untranslated.
 * Only tested for, like socklb_cip_v1: the value is reserved, 0.
 */
struct socklb_exclusion {
	__u64 cgroup_id;
	__u32 service_id;
	__u32 pad;
};

/*
 * One Service a socket reached, and the backend it was given (zero: unused).
 * A TCP connect() records it by the socket's cookie (socklb_conn_v1); a UDP
 * socket's connect() or sendmsg() records it in the socket's storage, and
 * sendmsg() keeps using the backend while it serves the Service (at `slot`,
 * or at the slot it moved to); getpeername() and recvmsg() answer with the
 * Service for a peer or sender that is the backend.
 */
struct socklb_translation {
	__be32 service_address[4];
	__be32 backend_address[4];
	__be16 service_port;
	__be16 backend_port;
	__u32 slot; /* the frontend slot the backend was picked from */
};

/*
 * Power of two, so that an index is bounded with a mask. One unconnected
 * socket may talk to several Services (musl's resolver asks up to three
 * nameservers from one socket); past this many, the oldest entry is reused.
 */
#define SOCKLB_SOCK_TRANSLATIONS 4

/*
 * Socket-local storage of a UDP socket that reached a Service: created at
 * its first translation, freed by the kernel with the socket, so the reverse
 * mapping is bounded by the sockets alive, needs no cleanup, and no sandbox
 * can evict another's. TCP connections are not kept here: creating and
 * freeing storage for every short connection costs more than an entry of a
 * preallocated map (docs/udp.md).
 */
struct socklb_sock {
	struct socklb_translation translations[SOCKLB_SOCK_TRANSLATIONS];
	__u32 next; /* the entry a new Service takes, modulo SOCKLB_SOCK_TRANSLATIONS */
	__u32 last; /* the entry of the last connect() or send */
};

/*
 * A (Service frontend, backend) pair that left the datapath: the agent
 * writes the pairs of one sync, runs the socket iterators, and deletes them.
 * A connected socket whose recorded translation is such a pair is destroyed.
 */
struct socklb_stale_key {
	__be32 service_address[4];
	__be32 backend_address[4];
	__be16 service_port;
	__be16 backend_port;
	__u8 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad[3];
};

/* What the destroy iterators write for each socket they destroyed (or failed to). */
struct socklb_destroyed {
	__u64 cookie;
	struct socklb_stale_key pair;
	__s32 error; /* bpf_sock_destroy()'s result: 0 or -errno */
	__u32 pad;
};

/* What the dump iterators write for each socket socklb translated. */
struct socklb_sock_record {
	__u64 cookie;
	__u16 family; /* AF_INET or AF_INET6 */
	__u8 protocol;
	__u8 state; /* BPF_TCP_*; a connected UDP socket is BPF_TCP_ESTABLISHED */
	__u32 pad;
	struct socklb_translation connection; /* its connect()'s; zero for none */
	struct socklb_sock sock; /* its datagrams'; zero for none */
};

/*
 * `socklb trace` (docs/operations.md): while a trace runs, every translation
 * and refusal of translate() is written to socklb_ring_v1 as one event. The
 * switch is a pinned map rather than the object's global data: it outlives
 * the agent that turned it on and the program replacements of an upgrade, so
 * an agent that starts after one that died mid-trace finds it and turns it
 * off, and a guest's applier can set the same map by name.
 */
#define SOCKLB_TRACE_RING_BYTES (256 * 1024)

struct socklb_trace_switch {
	__u32 enabled; /* 0: the programs write nothing; else write every event */
	__u32 pad;
	__u64 lost; /* events dropped because the ring was full */
};

/*
 * What translate() did with a call: SOCKLB_TRACE_TRANSLATED or why it was
 * refused. Packed: one byte, in the event as in BTF.
 */
enum __attribute__((packed)) socklb_trace_reason {
	SOCKLB_TRACE_TRANSLATED = 1,
	/* The frontend has no backend. */
	SOCKLB_TRACE_NO_BACKEND = 2,
	/* A cluster IP on a port no frontend serves, or an address of a service CIDR no Service holds. */
	SOCKLB_TRACE_UNSERVED_ADDRESS = 3,
	/* Every lookup attempt met a concurrent rewrite of the frontend's entries. */
	SOCKLB_TRACE_FRONTEND_CHANGING = 4,
};

/* The hook a call came through; one byte. */
enum __attribute__((packed)) socklb_trace_hook {
	SOCKLB_TRACE_CONNECT = 1,
	SOCKLB_TRACE_SENDMSG = 2,
};

struct socklb_trace_event {
	__u64 time_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cgroup_id; /* the calling task's cgroup v2 id (its directory's inode) */
	__u64 netns_cookie;
	__u64 socket_cookie;
	__be32 service_address[4]; /* the destination asked for; IPv4-mapped for IPv4 */
	__be32 backend_address[4]; /* zero for a refusal */
	__be16 service_port;
	__be16 backend_port;
	__u32 service_id; /* the frontend's; 0 when no frontend serves the address */
	__u32 slot;
	__u8 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
	enum socklb_trace_hook hook;
	enum socklb_trace_reason reason;
	__u8 pad;
};

#endif /* SOCKLB_H */
