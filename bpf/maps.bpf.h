/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Map definitions shared by every program object. Each object declares the
 * same maps with the same names; the loader creates them once (or reuses the
 * pinned ones) and hands the same fds to every object with bpf_map__reuse_fd.
 * Sizes marked "set by loader" are placeholders overwritten between open and
 * load from the daemon's configuration.
 */
#ifndef SOCKACCEL_MAPS_BPF_H
#define SOCKACCEL_MAPS_BPF_H

#include "sockaccel.h"

/*
 * Accelerated sockets: clients in one map, servers in the other, both keyed
 * by their connection's sa_conn_key. Each map carries its own sk_msg
 * program, so a sending socket's role is known without a lookup: a client
 * redirects into the servers map and a server into the clients map.
 * BPF_F_RDONLY makes the creating fd read-only; the loader also freezes the
 * maps, which is what keeps every later fd (from the pin) from inserting a
 * socket. bpf_sock_hash_update from the sock_ops program is unaffected.
 * The 8-byte value makes user-space lookups return the socket cookie.
 */
#define SA_SOCKHASH(name)                                                      \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_SOCKHASH);                           \
		__uint(max_entries, 65535); /* set by loader */                \
		__uint(map_flags, BPF_F_RDONLY);                               \
		__type(key, struct sa_conn_key);                               \
		__type(value, __u64);                                          \
	} name SEC(".maps")

SA_SOCKHASH(sa_clients);
SA_SOCKHASH(sa_servers);

/* Pairing state per connection. A plain hash, not LRU: an evicted entry
 * would make a paired client look unpaired. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65535); /* set by loader */
	__type(key, struct sa_conn_key);
	__type(value, struct sa_pair);
} sa_pairs SEC(".maps");

/* Where paired connections count their shapes, a slot each (struct
 * sa_shape_slot, services.bpf.h). An array, not a hash: sk_msg reaches its
 * slot by index, with no hashing, on every message. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65535); /* set by loader */
	__type(key, __u32);
	__type(value, struct sa_shape_slot);
} sa_shapes SEC(".maps");

/* How many connections are PENDING on the node: a server end skips its
 * pairs look-up while none is (sockops.bpf.c). Every move out of PENDING
 * is a compare-and-swap, and the one that succeeds takes the connection off
 * the count (sa_pair_leave_pending), so the count stays exact. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} sa_pending SEC(".maps");

#include "listeners.bpf.h"

/* Prefixes that count as "on this node"; filled and kept current by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sa_lpm_key);
	__type(value, __u32);
} sa_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sa_stats);
} sa_stats SEC(".maps");

#include "sk_state_map.bpf.h"
#include "mesh.bpf.h"

/* What each service's accelerated connections do (see services.bpf.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096); /* set by loader */
	__type(key, struct sa_service_key);
	__type(value, struct sa_service);
} sa_services SEC(".maps");

/* The daemon's verdict per service; written only from user space. A plain
 * hash, not LRU: a verdict must not vanish under load, the daemon prunes it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* set by loader */
	__type(key, struct sa_service_key);
	__type(value, struct sa_decision);
} sa_decisions SEC(".maps");

/* The adaptive policy's run-time switch, written by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sa_policy);
} sa_policy SEC(".maps");

/* Layout version of the pinned maps, written once by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sa_meta);
} sa_meta SEC(".maps");

/* A context field read that clang may neither narrow, sink nor merge. */
#define SA_CTX_READ(field) (*(volatile __u32 *)&(field))

static __always_inline struct sa_stats *sa_stats_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sa_stats, &zero);
}

#define SA_COUNT(field)                                                        \
	do {                                                                   \
		struct sa_stats *__s = sa_stats_get();                         \
		if (__s)                                                       \
			__s->field++;                                          \
	} while (0)

#define SA_ADD(field, n)                                                       \
	do {                                                                   \
		struct sa_stats *__s = sa_stats_get();                         \
		if (__s)                                                       \
			__s->field += (n);                                     \
	} while (0)

static __always_inline void sa_pending_add(__s64 n)
{
	__u32 zero = 0;
	__s64 *pending = bpf_map_lookup_elem(&sa_pending, &zero);

	if (pending)
		__sync_fetch_and_add(pending, n);
}

/* True only when the count says no connection is PENDING anywhere. */
static __always_inline bool sa_pending_none(void)
{
	__u32 zero = 0;
	__s64 *pending = bpf_map_lookup_elem(&sa_pending, &zero);

	return pending && *pending == 0;
}

/*
 * Moves a connection out of PENDING (to PAIRED or FALLBACK) if it still is,
 * taking it off the pending count; returns the state it was in. Of racing
 * callers exactly one sees PENDING.
 */
static __always_inline __u32 sa_pair_leave_pending(struct sa_pair *pair, __u32 to)
{
	__u32 seen = __sync_val_compare_and_swap(&pair->state, SA_PAIR_PENDING, to);

	if (seen == SA_PAIR_PENDING)
		sa_pending_add(-1);
	return seen;
}

/*
 * remote_port holds the network-order port; depending on the kernel it sits
 * in the upper or the lower 16 bits of the 32-bit field. Normalise to host
 * order either way.
 */
static __always_inline __u32 sa_remote_port(__u32 raw)
{
	__u32 port = bpf_ntohl(raw);

	if (port > 0xffff)
		port >>= 16;
	return port & 0xffff;
}

#include "services.bpf.h"

#endif /* SOCKACCEL_MAPS_BPF_H */
