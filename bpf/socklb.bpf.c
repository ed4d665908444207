// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket-level Service translation: cgroup sock_addr programs rewrite the
 * destination of connect() once per socket, and of every datagram an
 * unconnected UDP socket sends to a Service, so that no packet is ever NATed
 * and nothing enters conntrack. getpeername() and recvmsg() undo the rewrite:
 * the application only ever sees the Service address. sock_release forgets a
 * closed TCP socket's connection.
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "socklb.h"
#include "socklb_sock.h"

/* A cgroup sock_addr program allows the call by returning 1. */
#define SOCK_ADDR_ALLOW 1
#define SOCK_ADDR_DENY 0

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKLB_DEFAULT_MAX_FRONTENDS);
	__type(key, struct socklb_frontend_key);
	__type(value, struct socklb_frontend);
} socklb_fe_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKLB_DEFAULT_MAX_SLOTS);
	__type(key, struct socklb_slot_key);
	__type(value, struct socklb_slot);
} socklb_slot_v2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKLB_DEFAULT_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct socklb_backend);
} socklb_be_v2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SOCKLB_DEFAULT_MAX_AFFINITY);
	__type(key, struct socklb_affinity_key);
	__type(value, struct socklb_affinity);
} socklb_aff_v1 SEC(".maps");

/*
 * Per-frontend counters, indexed by service_id. An array and not a hash: the
 * lookup is an index the verifier inlines, it cannot miss for a frontend the
 * agent wrote (every index exists, so a datapath adopted from a build without
 * counters counts at once), and resetting an id is a plain overwrite. The
 * price is memory for the whole capacity, whether used or not: 32 bytes per
 * frontend per possible CPU (2 MiB per CPU at 65536 frontends), which
 * --max-frontends scales. One copy per CPU, so that connects on different
 * CPUs never share a cache line; the adds are plain: sock_addr programs run
 * with migration disabled, and only a preemptible kernel (preempt=full) can
 * lose an add, in the three-instruction window where another task on the
 * same CPU increments the same counter.
 * The agent sets max_entries to the frontend capacity plus one (id 0 is never
 * handed out).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SOCKLB_DEFAULT_MAX_FRONTENDS + 1);
	__type(key, __u32);
	__type(value, struct socklb_stats);
} socklb_stats_v1 SEC(".maps");

/* Read by user space only; not preallocated, since most names are short-lived. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SOCKLB_DEFAULT_MAX_FRONTENDS);
	__type(key, __u32);
	__type(value, struct socklb_service_name);
} socklb_name_v1 SEC(".maps");

/* Written by a guest's host only (struct socklb_marker), never read here. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct socklb_marker);
} socklb_mark_v1 SEC(".maps");

/*
 * The cluster IPs of the Services, sized by the agent like the frontends.
 * Not preallocated: a few entries per Service rather than per Service port,
 * and the programs only test for an entry, so a recycled element cannot
 * mislead them.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SOCKLB_DEFAULT_MAX_FRONTENDS);
	__type(key, struct socklb_cluster_ip);
	__type(value, __u32);
} socklb_cip_v1 SEC(".maps");

/* The service CIDRs; empty (a lookup that returns at once) unless configured. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SOCKLB_MAX_SERVICE_RANGES);
	__type(key, struct socklb_range_key);
	__type(value, __u32);
} socklb_range_v1 SEC(".maps");

/*
 * What operators leave untranslated (docs/sandboxes.md, "Leaving calls
 * untranslated"). Not preallocated: the programs read a bypass's flags in
 * place, and a recycled element would be another cgroup's.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct socklb_config);
} socklb_cfg_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SOCKLB_MAX_BYPASS_CGROUPS);
	__type(key, __u64);
	__type(value, struct socklb_bypass);
} socklb_byp_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SOCKLB_MAX_EXCLUSIONS);
	__type(key, struct socklb_exclusion);
	__type(value, __u32);
} socklb_excl_v1 SEC(".maps");

enum lookup_result {
	NOT_A_SERVICE,
	/* A frontend left to whatever else handles it (SOCKLB_FRONTEND_SKIP): not translated, not refused. */
	LEFT_ALONE,
	/* Refused at once (ECONNREFUSED): no backend, or a service address no frontend serves. */
	NO_BACKEND,
	BACKEND_FOUND,
	/* Refused as NO_BACKEND is; told apart for `socklb trace` only. */
	UNSERVED_ADDRESS,
	FRONTEND_CHANGING,
};

/* What a socket that reached the Service before gets. */
enum stickiness {
	/* connect(): each connection is balanced anew. */
	PICK_ANY,
	/*
	 * sendmsg(): the datagrams of one socket keep to one backend while it
	 * serves the Service, as conntrack keeps a UDP flow on its endpoint.
	 */
	KEEP_BACKEND,
};

enum counter {
	CONNECT_TRANSLATED,
	CALL_REFUSED,
	DATAGRAM_TRANSLATED,
	REVERSE_NAT,
};

static __always_inline void count(__u32 service_id, enum counter counter)
{
	struct socklb_stats *stats = bpf_map_lookup_elem(&socklb_stats_v1, &service_id);

	if (!stats)
		return;
	switch (counter) {
	case CONNECT_TRANSLATED:
		stats->connects++;
		break;
	case CALL_REFUSED:
		stats->refused++;
		break;
	case DATAGRAM_TRANSLATED:
		stats->datagrams++;
		break;
	case REVERSE_NAT:
		stats->reverse_nat++;
		break;
	}
}

struct backend_choice {
	struct socklb_backend backend;
	__u32 slot;
};

/*
 * Test builds widen the window between a lookup and its copy, in which a
 * concurrent write can recycle the element (an interrupt or a preemption
 * does the same in production, rarely): -DSOCKLB_RACE_WINDOW_LOOPS=N idles
 * N bpf_loop rounds there. -DSOCKLB_UNCHECKED_READS uses every copy as the
 * layouts before the checks did, so that the race test can show it misroutes.
 */
#ifdef SOCKLB_RACE_WINDOW_LOOPS
static long idle_round(__u64 index, void *context)
{
	bpf_ktime_get_ns();
	return 0;
}
#define race_window() bpf_loop(SOCKLB_RACE_WINDOW_LOOPS, idle_round, NULL, 0)
#else
#define race_window() ((void)0)
#endif
#ifdef SOCKLB_UNCHECKED_READS
#define checked(condition) ((void)(condition), true)
#else
#define checked(condition) (condition)
#endif

/*
 * Zero when the check, the last of `words` 32-bit words of a value, matches
 * the others (socklb.h). The checks below fold every comparison into one
 * word with bitwise ors and test it once: a branch per field multiplied the
 * paths the verifier walks (the load took five times as long).
 */
static __always_inline __u32 check_mismatch(const void *value, const __u32 words)
{
	const __u32 *word = value;
	__u32 hash = SOCKLB_CHECK_BASIS;

#pragma unroll
	for (__u32 i = 0; i < words - 1; i++) {
		hash ^= word[i];
		hash *= SOCKLB_CHECK_PRIME;
	}
	return hash ^ word[words - 1];
}

static __always_inline bool
belongs_to_frontend(const struct socklb_frontend *copy, const struct socklb_frontend_key *key)
{
	__u32 mismatch = check_mismatch(copy, sizeof(*copy) / 4);

	mismatch |= copy->key.address[0] ^ key->address[0];
	mismatch |= copy->key.address[1] ^ key->address[1];
	mismatch |= copy->key.address[2] ^ key->address[2];
	mismatch |= copy->key.address[3] ^ key->address[3];
	mismatch |= (__u32)(copy->key.port ^ key->port) | (__u32)(copy->key.protocol ^ key->protocol);
	return checked(mismatch == 0);
}

static __always_inline bool belongs_to_slot(const struct socklb_slot *copy, const struct socklb_slot_key *key)
{
	__u32 mismatch = check_mismatch(copy, sizeof(*copy) / 4);

	mismatch |= (copy->service_id ^ key->service_id) | (copy->slot ^ key->slot);
	return checked(mismatch == 0);
}

static __always_inline bool belongs_to_backend(const struct socklb_backend *copy, __u32 backend_id)
{
	return checked((check_mismatch(copy, sizeof(*copy) / 4) | (copy->backend_id ^ backend_id)) == 0);
}

/*
 * Copies the frontend at key: 0, -ENOENT when there is none, or -ESTALE when
 * the copy is not its (the element was recycled under this read).
 */
static __always_inline int read_frontend(const struct socklb_frontend_key *key, struct socklb_frontend *out)
{
	const struct socklb_frontend *entry = bpf_map_lookup_elem(&socklb_fe_v3, key);

	if (!entry)
		return -ENOENT;
	race_window();
	*out = *entry;
	return belongs_to_frontend(out, key) ? 0 : -ESTALE;
}

/*
 * Reads the backend a Service's slot names; false when either is gone, or
 * when a copy is not the entry looked up. A global function: the verifier
 * checks it once, not at each of its callers' paths.
 */
__noinline bool read_slot(__u32 service_id, __u32 slot, struct backend_choice *out)
{
	struct socklb_slot_key slot_key = { .service_id = service_id, .slot = slot };
	const struct socklb_slot *entry;
	const struct socklb_backend *backend;
	struct socklb_slot copy;

	if (!out)
		return false;
	entry = bpf_map_lookup_elem(&socklb_slot_v2, &slot_key);
	if (!entry)
		return false;
	race_window();
	copy = *entry;
	if (!belongs_to_slot(&copy, &slot_key))
		return false;
	backend = bpf_map_lookup_elem(&socklb_be_v2, &copy.backend_id);
	if (!backend)
		return false;
	race_window();
	out->backend = *backend;
	out->slot = slot;
	return belongs_to_backend(&out->backend, copy.backend_id);
}

/* Whether `slot` is below the count and names the backend at address:port (read into *out). */
static __always_inline bool
slot_names(const struct socklb_frontend *frontend, __u32 slot, const __be32 address[4],
	   __be16 port, struct backend_choice *out)
{
	return slot < frontend->backend_count && read_slot(frontend->service_id, slot, out) &&
	       same_endpoint(out->backend.address, out->backend.port, address, port);
}

/*
 * Slots searched for a backend that is no longer where it was: a frontend
 * whose list shrinks moves its last slot into the hole, so a backend that
 * stays can change slot. The search runs only when the slot a socket or
 * client remembers no longer names its backend (another backend is there,
 * or the slot is past the count), once per change for each; a backend that
 * moved past this many slots is not found, and its sockets and clients pick
 * again.
 */
#define SOCKLB_SLOTS_SEARCHED 256

struct slot_search {
	__u32 service_id;
	__be32 address[4];
	__be16 port;
	__u32 skip;
	bool found;
	struct backend_choice choice;
};

/* bpf_loop's body: whether slot `index` names the backend searched for (1 stops the loop). */
static long search_slot(__u64 index, void *context)
{
	struct slot_search *search = context;

	if (index == search->skip || !read_slot(search->service_id, index, &search->choice) ||
	    !same_endpoint(search->choice.backend.address, search->choice.backend.port, search->address, search->port))
		return 0;
	search->found = true;
	return 1;
}

/*
 * Whether the backend a socket or client was given still serves the
 * frontend: at its slot, or else at another one (it moved when the list
 * shrank), which is then out->slot. A backend that left is found nowhere,
 * and the caller picks again. The search is a bpf_loop, whose body the
 * verifier checks once: an unrolled loop here made every program's load
 * take seconds.
 */
static __always_inline bool
keep_backend(const struct socklb_frontend *frontend, __u32 slot, const __be32 address[4],
	     __be16 port, struct backend_choice *out)
{
	__u32 slots = frontend->backend_count;
	struct slot_search search;

	if (slot_names(frontend, slot, address, port, out))
		return true;
	/* Built only now: every sendmsg() of a sticky socket comes through here. */
	search = (struct slot_search){
		.service_id = frontend->service_id,
		.port = port,
		.skip = slot,
	};
	copy_address(search.address, address);
	bpf_loop(slots < SOCKLB_SLOTS_SEARCHED ? slots : SOCKLB_SLOTS_SEARCHED, search_slot, &search, 0);
	if (!search.found)
		return false;
	*out = search.choice;
	return true;
}

/*
 * The backend this client was given within the affinity timeout, if it
 * still serves the frontend; the timeout restarts with each connection, as
 * kube-proxy's `recent` match does.
 */
static __always_inline bool
affine_backend(const struct socklb_affinity_key *client, const struct socklb_frontend *frontend,
	       struct backend_choice *out)
{
	struct socklb_affinity *affinity = bpf_map_lookup_elem(&socklb_aff_v1, client);
	__u64 now = bpf_ktime_get_ns();

	/* Signed: another CPU may have stamped the entry a little after this CPU read its clock. */
	if (!affinity || (__s64)(now - affinity->last_used_ns) > (__s64)frontend->affinity_timeout * 1000000000LL)
		return false;
	if (!keep_backend(frontend, affinity->slot, affinity->backend_address, affinity->backend_port, out))
		return false;
	affinity->last_used_ns = now;
	affinity->slot = out->slot;
	return true;
}

static __always_inline void
remember_affinity(const struct socklb_affinity_key *client, const struct backend_choice *choice)
{
	struct socklb_affinity affinity = {
		.last_used_ns = bpf_ktime_get_ns(),
		.backend_port = choice->backend.port,
		.slot = choice->slot,
	};

	copy_address(affinity.backend_address, choice->backend.address);
	bpf_map_update_elem(&socklb_aff_v1, client, &affinity, BPF_ANY);
}

/*
 * The agent writes a growing frontend's slots before its count and shrinks
 * the count before deleting slots, so a slot below the count exists when the
 * count is read. A lookup that read the count just before a shrink can still
 * miss its slot (or the backend behind it), and one whose element was
 * recycled under it copies a value that is not its: either is retried
 * against the frontend as it is now. Two attempts suffice for one write
 * racing the lookup; after them the call is refused, never sent elsewhere.
 * The load tests build a variant with -DSOCKLB_LOOKUP_ATTEMPTS=3 as the "new
 * build" of an upgrade (other instructions, the same maps).
 */
#ifndef SOCKLB_LOOKUP_ATTEMPTS
#define SOCKLB_LOOKUP_ATTEMPTS 2
#endif

static __always_inline enum lookup_result
lookup_backend(struct bpf_sock_addr *ctx, const struct socklb_frontend_key *key,
	       const struct socklb_translation *previous, struct backend_choice *out,
	       __u32 *service_id)
{
	for (int attempt = 0; attempt < SOCKLB_LOOKUP_ATTEMPTS; attempt++) {
		struct socklb_affinity_key client = {};
		struct socklb_frontend copy;
		const struct socklb_frontend *frontend = &copy;
		int error = read_frontend(key, &copy);

		if (error == -ENOENT)
			return NOT_A_SERVICE;
		if (error)
			continue;
		*service_id = frontend->service_id;
		if (frontend->flags & SOCKLB_FRONTEND_SKIP)
			return LEFT_ALONE;
		if (frontend->backend_count == 0)
			return NO_BACKEND;
		if (previous && keep_backend(frontend, previous->slot, previous->backend_address,
					     previous->backend_port, out))
			return BACKEND_FOUND;
		if (frontend->affinity_timeout) {
			client.client = bpf_get_netns_cookie(ctx);
			client.service_id = frontend->service_id;
			if (affine_backend(&client, frontend, out))
				return BACKEND_FOUND;
		}
		if (!read_slot(frontend->service_id, bpf_get_prandom_u32() % frontend->backend_count, out))
			continue;
		if (frontend->affinity_timeout)
			remember_affinity(&client, out);
		return BACKEND_FOUND;
	}
	return FRONTEND_CHANGING;
}

/*
 * Whether a destination that no frontend serves belongs to the Services all
 * the same: a cluster IP on another port or protocol (kube-proxy rejects
 * it), or an address of the service CIDRs that no Service holds (kube-proxy
 * drops it). Either way nothing would answer, so the call is refused at once
 * rather than left to time out (TCP) or be lost (UDP). A global function:
 * the verifier checks it once, not at each of its callers' paths.
 */
__noinline bool unserved_service_address(const struct socklb_frontend_key *key)
{
	struct socklb_cluster_ip cluster_ip;
	struct socklb_range_key range = { .prefixlen = 128 };

	if (!key)
		return false;
	copy_address(cluster_ip.address, key->address);
	if (bpf_map_lookup_elem(&socklb_cip_v1, &cluster_ip))
		return true;
	copy_address(range.address, key->address);
	return bpf_map_lookup_elem(&socklb_range_v1, &range) != NULL;
}

/* The index of the socket's entry for the Service at key; SOCKLB_SOCK_TRANSLATIONS when none. */
static __always_inline __u32 find_service(const struct socklb_sock *sock, const struct socklb_frontend_key *key)
{
	for (__u32 i = 0; i < SOCKLB_SOCK_TRANSLATIONS; i++) {
		const struct socklb_translation *entry = &sock->translations[i];

		if (same_endpoint(entry->service_address, entry->service_port, key->address, key->port))
			return i;
	}
	return SOCKLB_SOCK_TRANSLATIONS;
}

static __always_inline void
fill_translation(struct socklb_translation *entry, const struct socklb_frontend_key *key,
		 const struct backend_choice *choice)
{
	copy_address(entry->service_address, key->address);
	copy_address(entry->backend_address, choice->backend.address);
	entry->service_port = key->port;
	entry->backend_port = choice->backend.port;
	entry->slot = choice->slot;
}

/*
 * Remembers a TCP connection's translation so that getpeername() can undo
 * it. When the map is full the least recently used entry makes room; if even
 * that fails, the socket is still translated and its peer shows the backend.
 */
static __always_inline void
record_connection(struct bpf_sock_addr *ctx, const struct socklb_frontend_key *key,
		  const struct backend_choice *choice)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct socklb_translation entry = {};

	fill_translation(&entry, key, choice);
	bpf_map_update_elem(&socklb_conn_v1, &cookie, &entry, BPF_ANY);
}

/*
 * Remembers a UDP socket's translation in its storage, so that getpeername()
 * and recvmsg() can undo it and sendmsg() can keep to the backend. A Service
 * new to the socket takes the entry after the last one taken, so the oldest
 * goes first. Not in socklb_conn_v1, whose LRU is shared by every sandbox: a
 * sandbox connecting more UDP sockets than it holds would evict the entries
 * of the others, whose resolvers would then drop their DNS answers as coming
 * from an unknown source. Storage is the socket's own.
 */
static __always_inline void
record_in_storage(struct bpf_sock *sk, struct socklb_sock *sock,
		  const struct socklb_frontend_key *key, const struct backend_choice *choice)
{
	struct socklb_translation *entry;
	__u32 index;

	if (!sock)
		sock = bpf_sk_storage_get(&socklb_sock_v2, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	/* Without memory for it the socket is still translated; its peer and
	 * its replies then show the backend. */
	if (!sock)
		return;
	index = find_service(sock, key);
	if (index == SOCKLB_SOCK_TRANSLATIONS)
		index = sock->next++;
	/* Also what bounds the index for the verifier. */
	index %= SOCKLB_SOCK_TRANSLATIONS;
	sock->last = index;
	entry = &sock->translations[index];
	fill_translation(entry, key, choice);
}

/* socklb_trace_v1 and socklb_ring_v1 (bpf/socklb.h): `socklb trace`. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct socklb_trace_switch);
} socklb_trace_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SOCKLB_TRACE_RING_BYTES);
} socklb_ring_v1 SEC(".maps");

static __always_inline enum socklb_trace_reason trace_reason(enum lookup_result result)
{
	switch (result) {
	case BACKEND_FOUND:
		return SOCKLB_TRACE_TRANSLATED;
	case UNSERVED_ADDRESS:
		return SOCKLB_TRACE_UNSERVED_ADDRESS;
	case FRONTEND_CHANGING:
		return SOCKLB_TRACE_FRONTEND_CHANGING;
	default:
		return SOCKLB_TRACE_NO_BACKEND;
	}
}

/*
 * Who made the call. A function of its own, not inlined, so that its
 * prototype puts struct socklb_trace_event in the object's BTF (a ring
 * buffer declares no value type), where test/unit/layout.test.ts checks it;
 * the call is paid only while tracing.
 */
static __noinline void trace_caller(struct socklb_trace_event *event, struct bpf_sock_addr *ctx)
{
	event->time_ns = bpf_ktime_get_ns();
	event->cgroup_id = bpf_get_current_cgroup_id();
	event->netns_cookie = bpf_get_netns_cookie(ctx);
	event->socket_cookie = bpf_get_socket_cookie(ctx);
}

/*
 * One event per call translate() translated or refused, only while a trace
 * runs: otherwise an array lookup (which the verifier inlines) and a test.
 * A full ring drops the event and counts it, never delays the call. No
 * event wakes the reader, which reads the ring on a timer: a wakeup is an
 * interrupt and a scheduler call inside the program's run
 * (bench/results/trace-cost/).
 */
static __always_inline void
trace_call(struct bpf_sock_addr *ctx, const struct socklb_frontend_key *key, enum stickiness stickiness,
	   enum lookup_result result, __u32 service_id, const struct backend_choice *choice)
{
	__u32 zero = 0;
	struct socklb_trace_switch *trace;
	struct socklb_trace_event *event;

	if (result == NOT_A_SERVICE)
		return;
	trace = bpf_map_lookup_elem(&socklb_trace_v1, &zero);
	if (!trace || !trace->enabled)
		return;
	event = bpf_ringbuf_reserve(&socklb_ring_v1, sizeof(*event), 0);
	if (!event) {
		__sync_fetch_and_add(&trace->lost, 1);
		return;
	}
	__builtin_memset(event, 0, sizeof(*event));
	trace_caller(event, ctx);
	copy_address(event->service_address, key->address);
	event->service_port = key->port;
	event->service_id = service_id;
	event->protocol = key->protocol;
	event->hook = stickiness == PICK_ANY ? SOCKLB_TRACE_CONNECT : SOCKLB_TRACE_SENDMSG;
	event->reason = trace_reason(result);
	if (result == BACKEND_FOUND) {
		copy_address(event->backend_address, choice->backend.address);
		event->backend_port = choice->backend.port;
		event->slot = choice->slot;
	}
	/* The reader looks every few milliseconds: a wakeup per event cost 12 us a call. */
	bpf_ringbuf_submit(event, BPF_RB_NO_WAKEUP);
}

/* What the configuration asks of a call that is not skipped, read once per call. */
struct call_policy {
	/* The caller's bypassed cgroup when it excludes some Services, else 0. */
	__u64 excluding;
	/* --skip-same-netns */
	bool same_netns;
};

/*
 * Whether a call is left as it is, before any lookup: its socket carries the
 * skip mark, or the caller's cgroup (the current task's, or its nearest
 * bypassed ancestor, so that a sidecar's child cgroups count) translates
 * nothing. Otherwise *policy says what else applies to it. Without bypassed
 * cgroups the walk is not made.
 */
static __always_inline bool skip_call(struct bpf_sock_addr *ctx, struct call_policy *policy)
{
	const __u32 zero = 0;
	const struct socklb_config *config = bpf_map_lookup_elem(&socklb_cfg_v1, &zero);
	__u32 flags = 0;

	policy->excluding = 0;
	policy->same_netns = false;
	if (!config)
		return false;
	if (config->skip_mark && ctx->sk->mark == config->skip_mark)
		return true;
	policy->same_netns = config->flags & SOCKLB_CONFIG_SAME_NETNS;
	if (!config->bypass_cgroups)
		return false;
	for (int level = 1; level <= SOCKLB_BYPASS_DEPTH; level++) {
		__u64 cgroup = bpf_get_current_ancestor_cgroup_id(level);
		const struct socklb_bypass *bypass;

		if (!cgroup)
			break;
		bypass = bpf_map_lookup_elem(&socklb_byp_v1, &cgroup);
		if (bypass) {
			flags = bypass->flags;
			policy->excluding = cgroup;
		}
	}
	if (!(flags & SOCKLB_BYPASS_SOME))
		policy->excluding = 0;
	return flags & SOCKLB_BYPASS_ALL;
}

/* Whether the caller's bypassed cgroup (0: none) leaves this frontend untranslated. */
static __always_inline bool excluded(__u64 cgroup, __u32 service_id)
{
	struct socklb_exclusion exclusion = { .cgroup_id = cgroup, .service_id = service_id };

	return cgroup && bpf_map_lookup_elem(&socklb_excl_v1, &exclusion);
}

/*
 * A socket's source or destination address (which: src or dst) into out,
 * IPv4-mapped when ipv4. A macro: a function would take the field's address,
 * arithmetic the verifier refuses on a socket pointer. The IPv4 field is kept
 * a load of its own, or clang picks between two field addresses.
 */
#define read_socket_address(out, sk, which, ipv4)                  \
	do {                                                       \
		__be32 ipv4_field = (sk)->which##_ip4;             \
		asm volatile("" : "+r"(ipv4_field));               \
		if (ipv4) {                                        \
			ipv4_mapped(out, ipv4_field);              \
		} else {                                           \
			(out)[0] = (sk)->which##_ip6[0];           \
			(out)[1] = (sk)->which##_ip6[1];           \
			(out)[2] = (sk)->which##_ip6[2];           \
			(out)[3] = (sk)->which##_ip6[3];           \
		}                                                  \
	} while (0)

/*
 * The socket of the caller's network namespace that a packet from source to
 * destination would reach (a zero source: from anywhere), or NULL; the
 * caller releases it. IPv4-mapped addresses find IPv4 sockets.
 */
static __always_inline struct bpf_sock *
find_local_socket(struct bpf_sock_addr *ctx, const __be32 source[4], __be16 source_port, const __be32 destination[4],
		  __be16 destination_port)
{
	struct bpf_sock_tuple tuple = {};
	bool ipv4 = is_ipv4_mapped(destination);
	__u32 size = ipv4 ? sizeof(tuple.ipv4) : sizeof(tuple.ipv6);

	if (ipv4) {
		tuple.ipv4.saddr = source[3];
		tuple.ipv4.sport = source_port;
		tuple.ipv4.daddr = destination[3];
		tuple.ipv4.dport = destination_port;
	} else {
		copy_address(tuple.ipv6.saddr, source);
		tuple.ipv6.sport = source_port;
		copy_address(tuple.ipv6.daddr, destination);
		tuple.ipv6.dport = destination_port;
	}
	if (ctx->protocol == IPPROTO_TCP)
		return bpf_sk_lookup_tcp(ctx, &tuple, size, BPF_F_CURRENT_NETNS, 0);
	return bpf_sk_lookup_udp(ctx, &tuple, size, BPF_F_CURRENT_NETNS, 0);
}

/*
 * Whether the backend listens in the caller's own network namespace, as
 * Cilium's sock4_skip_xlate_if_same_netns asks: a socket found there for its
 * address and port, bound to that address itself. A socket bound to the
 * wildcard does not count: the lookup cannot tell whether the backend's
 * address is one of the namespace's, and a sandbox serving on 0.0.0.0:8080
 * would lose every Service whose backends use port 8080 elsewhere.
 */
static __always_inline bool backend_is_local(struct bpf_sock_addr *ctx, const struct socklb_backend *backend)
{
	const __be32 anywhere[4] = {};
	bool ipv4 = is_ipv4_mapped(backend->address);
	struct bpf_sock *sk = find_local_socket(ctx, anywhere, 0, backend->address, backend->port);
	__be32 bound[4];
	bool local;

	if (!sk)
		return false;
	read_socket_address(bound, sk, src, ipv4);
	local = sk->family == (ipv4 ? 2 /* AF_INET */ : 10 /* AF_INET6 */) && same_address(bound, backend->address);
	bpf_sk_release(sk);
	return local;
}

/*
 * Whether a datagram goes to the peer its socket is connected to. An
 * AF_INET6 socket connected to an IPv4-mapped address passes its peer to
 * udp_sendmsg() as an explicit destination, so sendmsg4 runs for every
 * datagram it sends: its peer is where connect6 left it, translated or left
 * alone on purpose (--skip-same-netns), and is not balanced again per
 * datagram. A sendto() naming the peer of any connected socket is the same
 * call and goes the same way.
 */
static __always_inline bool sends_to_peer(const struct bpf_sock_addr *ctx, const struct socklb_frontend_key *key)
{
	const struct bpf_sock *sk = ctx->sk;
	__be32 peer[4];

	if (sk->state != BPF_TCP_ESTABLISHED || sk->dst_port != key->port)
		return false;
	read_socket_address(peer, sk, dst, sk->family == 2 /* AF_INET */);
	return same_address(peer, key->address);
}

/*
 * Whether a datagram to a Service address, at a port no Service serves,
 * would reach a socket of the sender's own namespace: the answer of a
 * node-local cache, which holds its Service's address, to a client of its
 * own sandbox that reached it there (--skip-same-netns). kube-proxy passes
 * it as the reply of a tracked flow, and it is not a call to a Service.
 * Looked up only on the way to refusing the datagram.
 */
static __always_inline bool reaches_local_socket(struct bpf_sock_addr *ctx, const struct socklb_frontend_key *key)
{
	const struct bpf_sock *sender = ctx->sk;
	__be16 sender_port = bpf_htons((__u16)sender->src_port);
	struct bpf_sock *sk;
	__be32 source[4];

	read_socket_address(source, sender, src, is_ipv4_mapped(key->address));
	sk = find_local_socket(ctx, source, sender_port, key->address, key->port);
	if (!sk)
		return false;
	bpf_sk_release(sk);
	return true;
}

/*
 * Looks the destination up and says what the call should do; on success the
 * backend is in *backend and the translation is recorded. Hooks run under
 * the socket's lock, so its storage needs no other.
 */
static __always_inline enum lookup_result
translate(struct bpf_sock_addr *ctx, const struct socklb_frontend_key *key,
	  enum stickiness stickiness, const struct call_policy *policy, struct socklb_backend *backend)
{
	const struct socklb_translation *previous = NULL;
	struct socklb_sock *sock = NULL;
	struct backend_choice choice;
	enum lookup_result result;
	__u32 service_id = 0;
	__u32 index;

	if (stickiness == KEEP_BACKEND) {
		if (sends_to_peer(ctx, key))
			return NOT_A_SERVICE;
		/* A socket that never sent to a Service has no storage: one pointer test. */
		sock = bpf_sk_storage_get(&socklb_sock_v2, ctx->sk, 0, 0);
		if (sock) {
			index = find_service(sock, key);
			if (index < SOCKLB_SOCK_TRANSLATIONS)
				previous = &sock->translations[index];
		}
	}
	result = lookup_backend(ctx, key, previous, &choice, &service_id);
	if (result == LEFT_ALONE || (result != NOT_A_SERVICE && excluded(policy->excluding, service_id)))
		return NOT_A_SERVICE;
	/* Reached at the Service address as it is, not translated back into itself. */
	if (result == BACKEND_FOUND && policy->same_netns && backend_is_local(ctx, &choice.backend))
		return NOT_A_SERVICE;
	/* Counted at service id 0, which no frontend is given. */
	if (result == NOT_A_SERVICE && unserved_service_address(key) &&
	    !(stickiness == KEEP_BACKEND && reaches_local_socket(ctx, key)))
		result = UNSERVED_ADDRESS;
	trace_call(ctx, key, stickiness, result, service_id, &choice);
	if (result == NOT_A_SERVICE)
		return result;
	if (result != BACKEND_FOUND) {
		/* As kube-proxy's REJECT: fail at once rather than time out. */
		bpf_set_retval(-ECONNREFUSED);
		count(service_id, CALL_REFUSED);
		return NO_BACKEND;
	}
	count(service_id, stickiness == PICK_ANY ? CONNECT_TRANSLATED : DATAGRAM_TRANSLATED);
	/*
	 * An MPTCP connection's first subflow is a kernel socket: no
	 * sock_release runs for it, so an entry by its cookie would stay until
	 * evicted. Its storage goes with it.
	 */
	if (key->protocol == IPPROTO_TCP && !bpf_skc_to_mptcp_sock(ctx->sk))
		record_connection(ctx, key, &choice);
	else
		record_in_storage(ctx->sk, sock, key, &choice);
	*backend = choice.backend;
	return BACKEND_FOUND;
}

/* Sends a call to a Service to one of its backends; the call's verdict. */
static __always_inline int redirect4(struct bpf_sock_addr *ctx, enum stickiness stickiness)
{
	struct socklb_frontend_key key = {
		.port = (__be16)ctx->user_port,
		.protocol = (__u8)ctx->protocol,
	};
	struct socklb_backend backend;
	struct call_policy policy;

	if (skip_call(ctx, &policy))
		return SOCK_ADDR_ALLOW;
	ipv4_mapped(key.address, ctx->user_ip4);
	switch (translate(ctx, &key, stickiness, &policy, &backend)) {
	case NOT_A_SERVICE:
		return SOCK_ADDR_ALLOW;
	default: /* refused: translate() returns NO_BACKEND */
		return SOCK_ADDR_DENY;
	case BACKEND_FOUND:
		break;
	}
	ctx->user_ip4 = backend.address[3];
	ctx->user_port = backend.port;
	return SOCK_ADDR_ALLOW;
}

/* IPv4-mapped destinations (::ffff:a.b.c.d) match IPv4 frontends as they are. */
static __always_inline int redirect6(struct bpf_sock_addr *ctx, enum stickiness stickiness)
{
	struct socklb_frontend_key key = {
		.address = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
			     ctx->user_ip6[3] },
		.port = (__be16)ctx->user_port,
		.protocol = (__u8)ctx->protocol,
	};
	struct socklb_backend backend;
	struct call_policy policy;

	if (skip_call(ctx, &policy))
		return SOCK_ADDR_ALLOW;
	switch (translate(ctx, &key, stickiness, &policy, &backend)) {
	case NOT_A_SERVICE:
		return SOCK_ADDR_ALLOW;
	default: /* refused: translate() returns NO_BACKEND */
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
 * Counts a rewrite for the frontend the socket reached, if it is still
 * there: the socket's entry names the Service's address and port, and the
 * frontend (with its id) is found again from them and the socket's protocol.
 */
static __always_inline void count_reverse_nat(const struct bpf_sock_addr *ctx, const struct socklb_translation *entry)
{
	struct socklb_frontend_key key = {
		.address = { entry->service_address[0], entry->service_address[1],
			     entry->service_address[2], entry->service_address[3] },
		.port = entry->service_port,
		.protocol = (__u8)ctx->protocol,
	};
	struct socklb_frontend frontend;

	if (!read_frontend(&key, &frontend))
		count(frontend.service_id, REVERSE_NAT);
}

/*
 * The translation that sent the socket to the peer or sender in ctx, if any:
 * a TCP socket's connection entry, else its storage (a TCP socket has one
 * only if it connected under a build that kept connections there).
 */
static __always_inline bool
find_restore(struct bpf_sock_addr *ctx, const __be32 address[4], struct socklb_translation *entry)
{
	const struct socklb_translation *connection = NULL;
	__u64 cookie;

	if (ctx->protocol == IPPROTO_TCP) {
		cookie = bpf_get_socket_cookie(ctx);
		connection = bpf_map_lookup_elem(&socklb_conn_v1, &cookie);
	}
	return find_translation(connection, bpf_sk_storage_get(&socklb_sock_v2, ctx->sk, 0, 0), address,
				(__be16)ctx->user_port, entry);
}

/*
 * Shows the Service in place of a backend the socket was sent to: the peer
 * for getpeername(), the sender for recvmsg(). Any other address (a socket
 * connected elsewhere later, a datagram from someone else) is left as it is.
 */
static __always_inline int restore4(struct bpf_sock_addr *ctx)
{
	struct socklb_translation entry;
	__be32 address[4];

	ipv4_mapped(address, ctx->user_ip4);
	if (!find_restore(ctx, address, &entry))
		return SOCK_ADDR_ALLOW;
	count_reverse_nat(ctx, &entry);
	ctx->user_ip4 = entry.service_address[3];
	ctx->user_port = entry.service_port;
	return SOCK_ADDR_ALLOW;
}

static __always_inline int restore6(struct bpf_sock_addr *ctx)
{
	struct socklb_translation entry;
	__be32 address[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
			      ctx->user_ip6[3] };

	if (!find_restore(ctx, address, &entry))
		return SOCK_ADDR_ALLOW;
	count_reverse_nat(ctx, &entry);
	ctx->user_ip6[0] = entry.service_address[0];
	ctx->user_ip6[1] = entry.service_address[1];
	ctx->user_ip6[2] = entry.service_address[2];
	ctx->user_ip6[3] = entry.service_address[3];
	ctx->user_port = entry.service_port;
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/connect4")
int socklb_connect4(struct bpf_sock_addr *ctx)
{
	return redirect4(ctx, PICK_ANY);
}

SEC("cgroup/connect6")
int socklb_connect6(struct bpf_sock_addr *ctx)
{
	return redirect6(ctx, PICK_ANY);
}

/*
 * Runs for datagrams sent with a destination: unconnected UDP, and every
 * datagram of an AF_INET6 socket connected to an IPv4-mapped address.
 */
SEC("cgroup/sendmsg4")
int socklb_sendmsg4(struct bpf_sock_addr *ctx)
{
	return redirect4(ctx, KEEP_BACKEND);
}

SEC("cgroup/sendmsg6")
int socklb_sendmsg6(struct bpf_sock_addr *ctx)
{
	return redirect6(ctx, KEEP_BACKEND);
}

SEC("cgroup/getpeername4")
int socklb_getpeername4(struct bpf_sock_addr *ctx)
{
	return restore4(ctx);
}

SEC("cgroup/getpeername6")
int socklb_getpeername6(struct bpf_sock_addr *ctx)
{
	return restore6(ctx);
}

/* Runs for UDP receives that ask for the sender's address (recvfrom, recvmsg). */
SEC("cgroup/recvmsg4")
int socklb_recvmsg4(struct bpf_sock_addr *ctx)
{
	return restore4(ctx);
}

SEC("cgroup/recvmsg6")
int socklb_recvmsg6(struct bpf_sock_addr *ctx)
{
	return restore6(ctx);
}

/*
 * A TCP socket's connection entry goes with it. Looked up first: a delete
 * takes the bucket's lock even for a socket that has no entry, as every
 * accepted one.
 */
SEC("cgroup/sock_release")
int socklb_sock_release(struct bpf_sock *ctx)
{
	__u64 cookie;

	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_lookup_elem(&socklb_conn_v1, &cookie))
		bpf_map_delete_elem(&socklb_conn_v1, &cookie);
	return 1;
}

/*
 * The code's licence, GPL-2.0-only OR BSD-2-Clause (bpf/LICENSE.*), as the
 * kernel spells it. Nothing here needs a GPL-compatible licence, but
 * socklb_iter.bpf.c does, and both are built from socklb_sock.h.
 */
char LICENSE[] SEC("license") = "Dual BSD/GPL";
